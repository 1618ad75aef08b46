"""Compiled passes split over threads (the landing-site map's, the stereo head's features):
contiguous ranges of grid rows (or cells, or images) with about equal work, one per thread.
The kernels release the GIL (numba ``nogil``), so the ranges run on separate cores; the calling
thread takes the first range and a small shared pool the others.  Every range writes its own
rows of preallocated outputs, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_THREADS = 64

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def check_threads(threads: int) -> int:
    if not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"map_threads must be an integer in [1, {MAX_THREADS}], got {threads!r}")
    return int(threads)


def balanced_ranges(work: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split ``range(len(work))`` into at most ``parts`` contiguous, non-empty ranges of about
    equal total ``work`` (non-negative, one value per item)."""
    n = len(work)
    parts = max(1, min(parts, n))
    if parts == 1:
        return [(0, n)] if n else []
    cumulative = np.cumsum(np.asarray(work, dtype=np.float64))
    total = cumulative[-1]
    if total > 0:  # each boundary after the item at which the running work reaches its share
        bounds = np.searchsorted(cumulative, total * np.arange(1, parts) / parts, side="left") + 1
    else:  # no work anywhere: equal numbers of items
        bounds = (n * np.arange(1, parts)) // parts
    edges = sorted({0, n, *(int(min(max(b, 1), n - 1)) for b in bounds)})
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lunar_recon_map")
            _pool_workers = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run_ranges(task: Callable[[int, int], object], ranges: list[tuple[int, int]]) -> None:
    """``task(start, stop)`` for every range: the first on this thread, the others on the pool;
    returns when all are done (re-raising the first error)."""
    if not ranges:
        return
    if len(ranges) == 1:
        task(*ranges[0])
        return
    pool = _executor(len(ranges) - 1)
    futures = [pool.submit(task, a, b) for a, b in ranges[1:]]
    try:
        task(*ranges[0])
    finally:
        for f in futures:
            f.result()
