"""lunar_recon: stereo depth and hazard maps from distilled MASt3R students."""
__version__ = "0.1.0"
