"""ROS 2 layer: the stereo node, message conversions and the synchroniser (no science here)."""

from ..runtime import configure_program

configure_program()  # before the node imports numpy
