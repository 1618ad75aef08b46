"""Order statistics of the points in each grid cell: which of a cell's points are its median
and quartiles by elevation, their median absolute deviation, and the median of a second
per-point value (e.g. each point's noise variance).

The points are bucketed by cell (a counting sort, O(N)) and each cell's few elevations are
sorted in place (an insertion sort for the usual handful, a merge sort for the crowded cells
of a near view), a fraction of the cost of one global sort of (cell, elevation) keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .parallel import balanced_ranges, check_threads, run_ranges


INSERTION_SORT_MAX = 128  # points per cell up to which an insertion sort beats a merge sort
INSERTION_SORT_RUN = 64  # the merge sort's runs, insertion-sorted first
INLINE_SORT_MAX = 24  # points per cell sorted inline in the kernel (a view per cell costs more)


@dataclass
class CellRanks:
    """For each cell holding at least one point (``cells``, flat indices in ascending order):
    its point count, the indices (into the points) of its points at four elevation ranks and
    the spread of its elevations."""

    cells: np.ndarray  # int64 flat cell indices
    count: np.ndarray  # int64 points in each of those cells
    median_low: np.ndarray  # the ((m - 1) // 2)-th lowest point: with median_high, the median
    median_high: np.ndarray  # the (m // 2)-th lowest
    quartile_low: np.ndarray  # the ((m - 1) // 4)-th lowest
    quartile_high: np.ndarray  # the ((m - 1) 3 // 4)-th lowest
    # the median absolute deviation of the cell's elevations from their median (the mean of
    # the two middle ones): 1.4826 of it is a Gaussian's sigma, and points on one side of the
    # median, which do not move it, widen it no more than they move the median
    mad: np.ndarray
    # the median of the ``values`` given (each cell's own, not at the elevation median's point)
    value_median: np.ndarray | None = None


@numba.njit(cache=True, nogil=True)
def _insertion_sort(values, payload):  # pragma: no cover - compiled
    # stable, in place; ``payload`` (same length) moves with ``values``
    for a in range(1, values.shape[0]):
        v, p = values[a], payload[a]
        b = a - 1
        while b >= 0 and values[b] > v:
            values[b + 1], payload[b + 1] = values[b], payload[b]
            b -= 1
        values[b + 1], payload[b + 1] = v, p


@numba.njit(cache=True, nogil=True)
def _merge_sort(values, payload, values_buf, payload_buf):  # pragma: no cover - compiled
    # stable, in place: insertion-sorted runs merged bottom-up through the buffers
    m = values.shape[0]
    run = INSERTION_SORT_RUN
    for r0 in range(0, m, run):
        r1 = min(r0 + run, m)
        _insertion_sort(values[r0:r1], payload[r0:r1])
    src_v, src_p, dst_v, dst_p = values, payload, values_buf, payload_buf
    width, in_buffer = run, False
    while width < m:
        for lo in range(0, m, 2 * width):
            mid, hi = min(lo + width, m), min(lo + 2 * width, m)
            i, j, t = lo, mid, lo
            while i < mid and j < hi:
                if src_v[j] < src_v[i]:  # strict: ties keep the left run's (earlier) point first
                    dst_v[t], dst_p[t] = src_v[j], src_p[j]
                    j += 1
                else:
                    dst_v[t], dst_p[t] = src_v[i], src_p[i]
                    i += 1
                t += 1
            while i < mid:
                dst_v[t], dst_p[t] = src_v[i], src_p[i]
                i += 1
                t += 1
            while j < hi:
                dst_v[t], dst_p[t] = src_v[j], src_p[j]
                j += 1
                t += 1
        src_v, dst_v, src_p, dst_p = dst_v, src_v, dst_p, src_p
        in_buffer = not in_buffer
        width *= 2
    if in_buffer:
        values[:] = values_buf[:m]
        payload[:] = payload_buf[:m]


@numba.njit(cache=True, nogil=True)
def _sort(values, payload, values_buf, payload_buf):  # pragma: no cover - compiled
    # stable, in place, with ``payload``; the buffers as long as the values
    if values.shape[0] <= INSERTION_SORT_MAX:
        _insertion_sort(values, payload)
    else:
        _merge_sort(values, payload, values_buf, payload_buf)


@numba.njit(cache=True, nogil=True)
def _bucket(flat, z, size, values_b):  # pragma: no cover - compiled
    # a counting sort of the points by cell; stable: a cell's points keep their input order
    n = flat.shape[0]
    count = np.zeros(size, np.int64)
    for i in range(n):
        count[flat[i]] += 1
    start = np.empty(size + 1, np.int64)
    start[0] = 0
    for c in range(size):
        start[c + 1] = start[c] + count[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    values = np.empty(n, np.float64)  # the elevations in cell order: each cell's work reads them in place
    with_b = values_b.shape[0] == n
    values_b_in_cell_order = np.empty(n if with_b else 0, np.float64)
    for i in range(n):
        c = flat[i]
        order[fill[c]] = i
        values[fill[c]] = z[i]
        if with_b:
            values_b_in_cell_order[fill[c]] = values_b[i]
        fill[c] += 1
    slot = np.empty(size + 1, np.int64)  # the output slot of each cell: occupied cells before it
    slot[0] = 0
    for c in range(size):
        slot[c + 1] = slot[c] + (1 if count[c] > 0 else 0)
    return count, start, order, values, values_b_in_cell_order, slot


@numba.njit(cache=True, nogil=True)
def _cell_ranks_range(  # pragma: no cover - compiled
    c_start, c_stop, count, start, order, values, values_b_in_cell_order, slot, cells, m_out, ranks, mad, b_median
):
    # cells [c_start, c_stop): sorts their points in place (their own stretch of order / values)
    # and writes their slots of the outputs
    with_b = b_median.shape[0] > 0
    largest = 0
    for c in range(c_start, c_stop):
        largest = max(largest, count[c])
    scratch = np.empty(largest, np.float64)
    scratch_2 = np.empty(largest, np.float64)
    index_scratch = np.empty(largest, np.int64)
    spare_index = np.empty(largest, np.int64)
    for c in range(c_start, c_stop):
        m = count[c]
        if m == 0:
            continue
        k = slot[c]
        s = start[c]
        cells[k] = c
        m_out[k] = m
        if with_b:  # before the elevation sort, which uses the scratch buffers
            if m <= INLINE_SORT_MAX:
                for a in range(m):  # insertion into the scratch buffer
                    v = values_b_in_cell_order[s + a]
                    b = a - 1
                    while b >= 0 and scratch[b] > v:
                        scratch[b + 1] = scratch[b]
                        b -= 1
                    scratch[b + 1] = v
            else:
                scratch[:m] = values_b_in_cell_order[s : s + m]
                _sort(scratch[:m], spare_index[:m], scratch_2, index_scratch)  # its payload unused
            b_median[k] = 0.5 * (scratch[(m - 1) // 2] + scratch[m // 2])
        if m <= INLINE_SORT_MAX:  # the usual handful: sorted in place, without a view per cell
            for a in range(s + 1, s + m):
                idx, v = order[a], values[a]
                b = a - 1
                while b >= s and values[b] > v:
                    order[b + 1], values[b + 1] = order[b], values[b]
                    b -= 1
                order[b + 1], values[b + 1] = idx, v
        else:
            _sort(values[s : s + m], order[s : s + m], scratch, index_scratch)  # by elevation, stable
        lo_i, hi_i = s + (m - 1) // 2, s + m // 2
        ranks[0, k], ranks[1, k] = order[lo_i], order[hi_i]
        ranks[2, k], ranks[3, k] = order[s + (m - 1) // 4], order[s + (m - 1) * 3 // 4]
        med = 0.5 * (values[lo_i] + values[hi_i])
        # deviations in ascending order, merged outward from the middle: the median of them
        i, j = lo_i, hi_i
        if lo_i == hi_i:
            j += 1
        want_lo, want_hi = (m - 1) // 2, m // 2
        d_lo = d = 0.0
        for taken in range(want_hi + 1):
            left = med - values[i] if i >= s else np.inf
            right = values[j] - med if j < s + m else np.inf
            if left <= right:
                d = left
                i -= 1
            else:
                d = right
                j += 1
            if taken == want_lo:
                d_lo = d
        mad[k] = 0.5 * (d_lo + d)


def cell_ranks(
    flat_cell: np.ndarray, elevation: np.ndarray, cell_count: int, values: np.ndarray | None = None, threads: int = 1
) -> CellRanks:
    """The median and quartile points and the median absolute deviation of each occupied cell: ``flat_cell`` is each point's
    flat cell index in ``[0, cell_count)``, ``elevation`` its height (finite).  Ties keep the
    points' input order.  With ``values`` (finite, one per point) also their median in each cell.
    ``threads``: the cells are split over this many threads (the same result)."""
    flat = np.ascontiguousarray(flat_cell, dtype=np.int64)
    z = np.ascontiguousarray(elevation, dtype=np.float64)
    if flat.shape != z.shape or flat.ndim != 1:
        raise ValueError(f"need one flat cell index per elevation, got {flat.shape} and {z.shape}")
    if len(flat) and (flat.min() < 0 or flat.max() >= cell_count):
        raise ValueError(f"flat cell indices must lie in [0, {cell_count})")
    b = np.empty(0) if values is None else np.ascontiguousarray(values, dtype=np.float64)
    if values is not None and b.shape != z.shape:
        raise ValueError(f"need one value per elevation, got {b.shape} and {z.shape}")
    count, start, order, sorted_z, sorted_b, slot = _bucket(flat, z, int(cell_count), b)
    occupied = int(slot[-1])
    cells, m_out, mad = np.empty(occupied, np.int64), np.empty(occupied, np.int64), np.empty(occupied)
    ranks = np.empty((4, occupied), np.int64)
    b_median = np.empty(occupied if values is not None else 0)
    parts = balanced_ranges(count, check_threads(threads))  # cells in ranges of about equal points
    run_ranges(
        lambda a, b: _cell_ranks_range(a, b, count, start, order, sorted_z, sorted_b, slot, cells, m_out, ranks, mad, b_median),
        parts,
    )
    return CellRanks(cells, m_out, ranks[0], ranks[1], ranks[2], ranks[3], mad, None if values is None else b_median)
