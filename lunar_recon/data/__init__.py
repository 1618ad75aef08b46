"""Datasets on disk (simulated and StereoLunar), image encodings, rosbag2 read/write."""
