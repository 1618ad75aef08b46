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


INSERTION_SORT_MAX = 24  # points per cell up to which an insertion sort beats a merge sort


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
def _kth_in_input_order(points, values, k, value):  # pragma: no cover - compiled
    # the point a stable sort would put k-th: among those at ``value``, the one whose turn it is
    below = 0
    for v in values:
        if v < value:
            below += 1
    turn = k - below
    for i in range(values.shape[0]):
        if values[i] == value:
            if turn == 0:
                return points[i]
            turn -= 1
    return points[0]


@numba.njit(cache=True, nogil=True)
def _select(buf, n, k):  # pragma: no cover - compiled
    # Hoare's selection in place: buf[k] becomes the k-th smallest of buf[:n], the values after
    # it no smaller
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = buf[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return buf[k]


@numba.njit(cache=True, nogil=True)
def _kth(values, buf, k):  # pragma: no cover - compiled
    m = values.shape[0]
    buf[:m] = values
    return _select(buf, m, k)


@numba.njit(cache=True, nogil=True)
def _select_ranks(points, values, buf, ranks, k):  # pragma: no cover - compiled
    # a crowded cell: selections on its values (in input order), O(m) each
    m = values.shape[0]
    v_lo = _kth(values, buf, (m - 1) // 2)
    v_hi = v_lo if m % 2 else buf[m // 2 : m].min()  # after the selection: the values above
    median = 0.5 * (v_lo + v_hi)
    ranks[0, k] = _kth_in_input_order(points, values, (m - 1) // 2, v_lo)
    ranks[1, k] = _kth_in_input_order(points, values, m // 2, v_hi)
    for r, q in ((2, (m - 1) // 4), (3, (m - 1) * 3 // 4)):
        ranks[r, k] = _kth_in_input_order(points, values, q, _kth(values, buf, q))
    for i in range(m):
        buf[i] = abs(values[i] - median)
    d_lo = _select(buf, m, (m - 1) // 2)
    d_hi = d_lo if m % 2 else buf[m // 2 : m].min()
    return 0.5 * (d_lo + d_hi)


@numba.njit(cache=True, nogil=True)
def _ranks_kernel(flat, z, size, values_b):  # pragma: no cover - compiled
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
    for i in range(n):  # stable: a cell's points keep their input order before the sort
        c = flat[i]
        order[fill[c]] = i
        values[fill[c]] = z[i]
        fill[c] += 1
    occupied = 0
    for c in range(size):
        if count[c] > 0:
            occupied += 1
    cells = np.empty(occupied, np.int64)
    m_out = np.empty(occupied, np.int64)
    ranks = np.empty((4, occupied), np.int64)
    mad = np.empty(occupied, np.float64)
    scratch = np.empty(count.max() if size else 0, np.float64)
    with_b = values_b.shape[0] == n
    b_median = np.empty(occupied if with_b else 0, np.float64)
    k = 0
    for c in range(size):
        m = count[c]
        if m == 0:
            continue
        s = start[c]
        cells[k] = c
        m_out[k] = m
        if with_b:  # before the elevation sort: the selection uses the scratch buffer
            for a in range(m):
                scratch[a] = values_b[order[s + a]]
            b_lo = _select(scratch, m, (m - 1) // 2)
            b_median[k] = b_lo if m % 2 else 0.5 * (b_lo + scratch[m // 2 : m].min())
        if m > INSERTION_SORT_MAX:
            mad[k] = _select_ranks(order[s : s + m], values[s : s + m], scratch, ranks, k)
            k += 1
            continue
        for a in range(s + 1, s + m):  # insertion sort of the cell's points by elevation
            idx, v = order[a], values[a]
            b = a - 1
            while b >= s and values[b] > v:
                order[b + 1], values[b + 1] = order[b], values[b]
                b -= 1
            order[b + 1], values[b + 1] = idx, v
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
        k += 1
    return cells, m_out, ranks, mad, b_median


def cell_ranks(flat_cell: np.ndarray, elevation: np.ndarray, cell_count: int, values: np.ndarray | None = None) -> CellRanks:
    """The median and quartile points and the median absolute deviation of each occupied cell: ``flat_cell`` is each point's
    flat cell index in ``[0, cell_count)``, ``elevation`` its height (finite).  Ties keep the
    points' input order.  With ``values`` (finite, one per point) also their median in each cell."""
    flat = np.ascontiguousarray(flat_cell, dtype=np.int64)
    z = np.ascontiguousarray(elevation, dtype=np.float64)
    if flat.shape != z.shape or flat.ndim != 1:
        raise ValueError(f"need one flat cell index per elevation, got {flat.shape} and {z.shape}")
    if len(flat) and (flat.min() < 0 or flat.max() >= cell_count):
        raise ValueError(f"flat cell indices must lie in [0, {cell_count})")
    b = np.empty(0) if values is None else np.ascontiguousarray(values, dtype=np.float64)
    if values is not None and b.shape != z.shape:
        raise ValueError(f"need one value per elevation, got {b.shape} and {z.shape}")
    cells, count, ranks, mad, b_median = _ranks_kernel(flat, z, int(cell_count), b)
    return CellRanks(cells, count, ranks[0], ranks[1], ranks[2], ranks[3], mad, None if values is None else b_median)
