"""Each landing site's relief against its own plane: the largest height above and depth below
that plane of the cells inside the footprint centred on the site.

Every site has its own plane, so the maximum is not a filter over the grid: it visits the
footprint's ~560 cells (4 m at 0.15 m) for every site.  Compiled kernels do it a grid row of
sites at a time (their accumulators stay in cache), the footprint row's plane offset added once
per row.  With each cell's height sigma they also give the footprint's largest *standardised*
exceedance, ``max_j (height_j - limit) / sigma_j``: a poorly measured cell that sets the
largest height is judged on its own sigma, not on the footprint's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .parallel import balanced_ranges, check_threads, run_ranges


SIGMA_FLOOR = 1e-6  # m: a cell's height sigma below this counts as exact


@dataclass
class SiteRelief:
    """Per-site relief (grid arrays; ``-inf`` / ``+inf`` where the footprint holds no cell)."""

    highest: np.ndarray  # largest z_j - (plane rise from the site to cell j)
    lowest: np.ndarray  # smallest of the same
    # with sigmas: max_j over the footprint of (height above the plane - limit) / sigma_j,
    # and of (depth below the plane - limit) / sigma_j
    above_score: np.ndarray | None = None
    below_score: np.ndarray | None = None
    # with a prior on the relief too: the same scores of each cell's posterior
    prior_above_score: np.ndarray | None = None
    prior_below_score: np.ndarray | None = None


@numba.njit(cache=True, nogil=True)
def _relief_rows(z_hi, z_lo, gx, gy, rects, pad, span, hi, lo, y_start, y_stop):  # pragma: no cover - compiled
    # grid rows [y_start, y_stop) of ``hi`` / ``lo`` (filled with -inf / +inf by the caller)
    cols = gx.shape[1]
    row_hi = np.empty(cols, np.float32)
    row_lo = np.empty(cols, np.float32)
    for y in range(y_start, y_stop):
        x0, x1 = span[y, 0], span[y, 1]
        n = x1 - x0
        h, low, gxr, gyr = hi[y, x0:x1], lo[y, x0:x1], gx[y, x0:x1], gy[y, x0:x1]
        for k in range(rects.shape[0]):
            for dy in range(rects[k, 0], rects[k, 1] + 1):
                row_hi[:n] = -np.inf
                row_lo[:n] = np.inf
                for dx in range(rects[k, 2], rects[k, 3] + 1):
                    fdx = np.float32(dx)
                    r, o0, o1 = y + pad + dy, pad + dx + x0, pad + dx + x1
                    zh, zl = z_hi[r, o0:o1], z_lo[r, o0:o1]
                    for x in range(n):
                        t = gxr[x] * fdx
                        row_hi[x] = max(row_hi[x], zh[x] - t)
                        row_lo[x] = min(row_lo[x], zl[x] - t)
                fdy = np.float32(dy)
                for x in range(n):
                    s = gyr[x] * fdy
                    h[x] = max(h[x], row_hi[x] - s)
                    low[x] = min(low[x], row_lo[x] - s)


@numba.njit(cache=True, nogil=True)
def _score_rows(  # pragma: no cover - compiled
    above_base, below_base, weight, gx, gy, centre, rects, pad, span, above, below, y_start, y_stop
):
    # grid rows [y_start, y_stop) of ``above`` / ``below`` (filled with -inf by the caller).  For
    # each of the K score sets (axis 0) the score above at cell j is (z_j - limit) w_j - t w_j and
    # below (-z_j - limit) w_j + t w_j, t the site's plane height at cell j: the bases are per
    # cell, t per site and offset, computed once for every set
    sets = weight.shape[0]
    cols = gx.shape[1]
    plane_row = np.empty(cols, np.float32)
    plane = np.empty(cols, np.float32)
    row_above = np.empty((sets, cols), np.float32)  # a grid row's accumulators, in cache
    row_below = np.empty((sets, cols), np.float32)
    for y in range(y_start, y_stop):
        x0, x1 = span[y, 0], span[y, 1]
        n = x1 - x0
        if n <= 0:
            continue
        gxr, gyr, c = gx[y, x0:x1], gy[y, x0:x1], centre[y, x0:x1]
        row_above[:, :n] = -np.inf
        row_below[:, :n] = -np.inf
        for k in range(rects.shape[0]):
            for dy in range(rects[k, 0], rects[k, 1] + 1):
                fdy = np.float32(dy)
                for x in range(n):
                    plane_row[x] = gyr[x] * fdy + c[x]
                r = y + pad + dy
                for dx in range(rects[k, 2], rects[k, 3] + 1):
                    fdx = np.float32(dx)
                    o0 = pad + dx + x0
                    for x in range(n):
                        plane[x] = gxr[x] * fdx + plane_row[x]
                    for m in range(sets):  # row slices: the inner loop vectorises
                        ab, bb, w = above_base[m, r, o0 : o0 + n], below_base[m, r, o0 : o0 + n], weight[m, r, o0 : o0 + n]
                        up, down = row_above[m], row_below[m]
                        for x in range(n):
                            tw = plane[x] * w[x]
                            up[x] = max(up[x], ab[x] - tw)
                            down[x] = max(down[x], bb[x] + tw)
        above[:, y, x0:x1] = row_above[:, :n]
        below[:, y, x0:x1] = row_below[:, :n]


@numba.njit(cache=True, nogil=True)
def _padded_heights(z, valid, pad):  # pragma: no cover - compiled
    # the heights padded by ``pad`` cells, as float32: no data -inf for the largest, +inf for the smallest
    rows, cols = z.shape
    high = np.full((rows + 2 * pad, cols + 2 * pad), -np.inf, np.float32)
    low = np.full((rows + 2 * pad, cols + 2 * pad), np.inf, np.float32)
    for y in range(rows):
        for x in range(cols):
            if valid[y, x]:
                high[y + pad, x + pad] = low[y + pad, x + pad] = np.float32(z[y, x])
    return high, low


@numba.njit(cache=True, nogil=True)
def _score_bases(z, valid, cell_sigma, root_k, limit, pad):  # pragma: no cover - compiled
    # (k r - limit) / (sigma sqrt k) = r w - limit u, with w = sqrt(k) / sigma, u = 1 / (sigma sqrt(k)):
    # per score set the cells' bases above (z w - limit u) and below (-z w - limit u) and their
    # weights w, padded by ``pad`` cells (bases -inf, weights 0: no data)
    sets = root_k.shape[0]
    rows, cols = z.shape
    shape = (sets, rows + 2 * pad, cols + 2 * pad)
    above = np.full(shape, -np.inf, np.float32)
    below = np.full(shape, -np.inf, np.float32)
    weight = np.zeros(shape, np.float32)
    for m in range(sets):
        for y in range(rows):
            for x in range(cols):
                if valid[y, x]:
                    w = root_k[m, y, x] / cell_sigma[y, x]
                    u = 1.0 / (cell_sigma[y, x] * root_k[m, y, x])
                    above[m, y + pad, x + pad] = np.float32(z[y, x] * w - limit * u)
                    below[m, y + pad, x + pad] = np.float32(-z[y, x] * w - limit * u)
                    weight[m, y + pad, x + pad] = np.float32(w)
    return above, below, weight


def _row_spans(sites: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Per grid row, the [first, last + 1) columns of the sites to judge (all without a mask)."""
    if sites is None:
        return np.tile(np.array([0, shape[1]], np.int64), (shape[0], 1))
    if sites.shape != shape:
        raise ValueError(f"the site mask {sites.shape} and the grid {shape} differ in shape")
    any_site = sites.any(axis=1)
    first = np.where(any_site, np.argmax(sites, axis=1), 0)
    last = np.where(any_site, shape[1] - np.argmax(sites[:, ::-1], axis=1), 0)
    return np.stack([first, last], axis=1).astype(np.int64)


def site_relief(
    z: np.ndarray,
    plane_gx: np.ndarray,
    plane_gy: np.ndarray,
    rects: tuple[tuple[int, int, int, int], ...],
    sigma: np.ndarray | None = None,
    centre: np.ndarray | None = None,
    limit: float = 0.0,
    sites: np.ndarray | None = None,
    prior_sigma: float = 0.0,
    threads: int = 1,
) -> SiteRelief:
    """For every site (cell) the largest and smallest of ``z[j] - dx_j gx - dy_j gy`` over the
    cells j at the footprint's offsets (dy, dx) from it (``rects``: the footprint as
    rectangles of inclusive offsets (dy0, dy1, dx0, dx1)), where (gx, gy) is the site's own
    plane gradient per cell: less the plane's height at the site, the largest height above and
    depth below the site's plane.  NaN cells are ignored.

    With each cell's height ``sigma`` and each site's plane height ``centre`` (same units as
    ``z``) also the largest standardised exceedances of ``limit`` above and below the plane.
    ``sites`` (bool, shaped as ``z``): judge only these (and the sites between them on a grid
    row); the others read as sites without cells.  None: every site.

    ``prior_sigma`` > 0: also the same scores with each cell's height above the plane judged on
    its posterior under a zero-mean Gaussian prior of that sigma (the terrain's relief about a
    site's plane): the measurement shrunk by k = prior^2 / (prior^2 + sigma^2), its sigma by
    sqrt(k), so ``(k r_j - limit) / (sigma_j sqrt(k))`` with r_j the height above the plane.
    A well-measured cell keeps its height; a cell whose sigma dwarfs the prior (a network guess
    no right pixel saw) says little about a rock, and the largest of many such noisy heights
    no longer reads as one.

    ``threads``: the sites' grid rows are split over this many threads (the same result)."""
    if z.shape != plane_gx.shape or z.shape != plane_gy.shape:
        raise ValueError(f"z {z.shape} and the plane gradients {plane_gx.shape}, {plane_gy.shape} differ in shape")
    table = np.array(rects, dtype=np.int64).reshape(-1, 4)
    if not len(table):
        raise ValueError("the footprint has no cells")
    pad = int(np.abs(table).max())
    valid = np.isfinite(z)
    gx, gy = plane_gx.astype(np.float32), plane_gy.astype(np.float32)

    threads = check_threads(threads)
    z_hi, z_lo = _padded_heights(np.asarray(z, np.float64), valid, pad)
    span = _row_spans(sites, z.shape)
    rows = balanced_ranges((span[:, 1] - span[:, 0]).clip(min=0), threads)
    hi = np.full(z.shape, -np.inf, np.float32)
    lo = np.full(z.shape, np.inf, np.float32)
    run_ranges(lambda a, b: _relief_rows(z_hi, z_lo, gx, gy, table, pad, span, hi, lo, a, b), rows)
    if sigma is None:
        return SiteRelief(hi, lo)
    if centre is None or sigma.shape != z.shape or centre.shape != z.shape:
        raise ValueError("a standardised relief needs a sigma per cell and a plane height per site, shaped as z")
    if prior_sigma < 0:
        raise ValueError(f"the relief prior's sigma must be >= 0 (0: none), got {prior_sigma}")
    cell_sigma = np.maximum(np.nan_to_num(sigma), SIGMA_FLOOR)  # a cell known exactly decides its sites outright
    # one score set on the measurements alone (sqrt(k) = 1), a second under the prior
    root_ks = [np.ones_like(cell_sigma)] + ([prior_sigma / np.hypot(prior_sigma, cell_sigma)] if prior_sigma > 0 else [])
    bases_above, bases_below, weights = _score_bases(
        np.asarray(z, np.float64), valid, cell_sigma.astype(np.float64), np.stack(root_ks).astype(np.float64), float(limit), pad
    )
    above = np.full((len(root_ks),) + z.shape, -np.inf, np.float32)
    below = np.full((len(root_ks),) + z.shape, -np.inf, np.float32)
    centre32 = centre.astype(np.float32)
    run_ranges(
        lambda a, b: _score_rows(bases_above, bases_below, weights, gx, gy, centre32, table, pad, span, above, below, a, b),
        rows,
    )
    if prior_sigma == 0:
        return SiteRelief(hi, lo, above[0], below[0])
    return SiteRelief(hi, lo, above[0], below[0], above[1], below[1])
