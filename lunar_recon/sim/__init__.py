"""Simulated Moon: procedural terrain and a stereo renderer with exact ground truth."""
