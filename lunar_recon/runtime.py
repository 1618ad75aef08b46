"""Process settings for lunar_recon's programs (``stereo_node``, ``lunar-recon``), applied
before numpy loads its BLAS.  Library users keep their own settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: arrays below it come from the heap
_TRIM_THRESHOLD_BYTES = 256 << 20  # freed heap kept up to this much above the live data


def prefer_single_threaded_blas() -> None:
    """numpy's OpenBLAS threads keep spinning after each call.  The geometry's (N, 3) x (3, 3)
    products gain nothing from them, and the spinning threads take the cores from the network
    that runs next: on 2 cores the pipeline measured 122 ms per pair with them and 75 ms with
    one BLAS thread (torch's own thread pool is not affected).  A user's setting wins; no
    effect once numpy is loaded."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def prefer_sleeping_openmp_threads() -> None:
    """torch's OpenMP workers spin between parallel regions before they sleep; in the node three
    threads share the cores with them (network, stereo head, geometry), and the spinning takes
    those threads' time (measured: docs/results.md, "The node's rate").  For the node only (a
    lone network times best with spinning workers); a user's OMP_WAIT_POLICY wins; no effect
    once torch is loaded."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def prefer_one_intra_op_thread() -> None:
    """One torch intra-op thread per calling thread.  The node runs its stages on their own
    threads (network, stereo head, geometry), which already keep both cores busy; parallel
    regions inside each only add hand-overs between them (docs/results.md, "The node's rate":
    512x384 7.0 against 6.5-6.7 pairs/s, 1024^2 the same).  For the node only; a user's
    OMP_NUM_THREADS wins (e.g. 2 for a megapixel rig matched at camera resolution, where the head's
    convolutions gain from both cores); no effect once torch is loaded."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def retain_freed_memory() -> bool:
    """Have glibc keep freed memory for the next frame instead of returning it to the kernel.

    Each frame allocates and frees the same few dozen arrays of 0.1-10 MB.  By default glibc
    serves large ones with fresh mmaps and trims the heap after frees, so every frame
    page-faults its arrays in again: the hazard map of a 512 x 512 cloud took 15,000 faults
    and 60-75 ms on a 2-core VM, and 0 faults and 30 ms with these thresholds (both are
    needed; either alone made it slower).  The process then holds its peak working set.
    A user's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins.  Returns whether the
    setting was applied (False off glibc)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))


def configure_program() -> None:
    """Settings of lunar_recon's own programs (node, command line, benchmarks)."""
    prefer_single_threaded_blas()
    retain_freed_memory()
