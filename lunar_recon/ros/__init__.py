"""ROS 2 layer: the stereo node, message conversions and the synchroniser (no science here)."""
