"""ROS 2 layer: the stereo node, message conversions and the synchroniser (no science here)."""

from ..runtime import configure_program, prefer_one_intra_op_thread, prefer_sleeping_openmp_threads

configure_program()  # before the node imports numpy
prefer_sleeping_openmp_threads()  # and torch
prefer_one_intra_op_thread()
