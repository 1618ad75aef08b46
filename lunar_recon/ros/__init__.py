"""ROS 2 layer: the stereo node, message conversions and the synchroniser (no science here)."""
from ..runtime import prefer_single_threaded_blas

prefer_single_threaded_blas()  # before the node imports numpy
