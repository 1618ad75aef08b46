"""Each landing site's least-squares plane from its footprint's moment sums: the plane's
gradient, slope, the slope's standard deviation, the plane's height at the site and the RMS
residual, in one compiled pass over the sites (the same formulas as array arithmetic cost
~20 passes over float64 grids).  The sums may be weighted by each cell's inverse height
variance (weighted least squares: a poorly measured cell barely tilts the plane).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .parallel import balanced_ranges, check_threads, run_ranges

DET_MIN = 1e-12  # m^4: a footprint's cells spread less than this in x, y fit no plane


@dataclass
class SitePlanes:
    """Per-site plane (grid arrays; NaN where no plane fits)."""

    gradient_x: np.ndarray  # dz/dx of the plane
    gradient_y: np.ndarray
    slope_deg: np.ndarray  # tilt against gravity
    slope_sigma_deg: np.ndarray  # from the least-squares variance of the gradient
    centre: np.ndarray  # the plane's height at the site's cell centre
    rms: np.ndarray  # RMS residual of the footprint's cells about the plane
    mean_variance: np.ndarray  # the footprint's mean cell height variance (harmonic when weighted)
    fits: np.ndarray  # bool: a plane fits (cells spread in x and y)


@numba.njit(cache=True, nogil=True)
def _planes_rows(  # pragma: no cover - compiled
    n, sx, sy, sz, sxx, sxy, syy, szz, sxz, syz, svv, xc, yc, weighted, out, fits, r_start, r_stop
):
    # grid rows [r_start, r_stop) of ``out`` (NaN) and ``fits`` (False), as the caller made them
    cols = n.shape[1]
    for r in range(r_start, r_stop):
        for c in range(cols):
            if not n[r, c] > 0:
                continue
            inv = 1.0 / n[r, c]
            mx, my, mz = sx[r, c] * inv, sy[r, c] * inv, sz[r, c] * inv
            # covariances from raw moments: E[uv] - E[u] E[v]
            cxx, cyy, cxy = sxx[r, c] * inv - mx * mx, syy[r, c] * inv - my * my, sxy[r, c] * inv - mx * my
            cxz, cyz, czz = sxz[r, c] * inv - mx * mz, syz[r, c] * inv - my * mz, szz[r, c] * inv - mz * mz
            det = cxx * cyy - cxy * cxy
            mean_var = svv[r, c] * inv
            out[6, r, c] = mean_var
            if not det > DET_MIN:
                continue
            a = (cxz * cyy - cyz * cxy) / det
            b = (cyz * cxx - cxz * cxy) / det
            grad = math.sqrt(a * a + b * b)
            fits[r, c] = True
            out[0, r, c] = a
            out[1, r, c] = b
            out[2, r, c] = math.degrees(math.atan(grad))
            # the gradient's variance Var(a) + Var(b) = tr(C^-1) / n, times the cells' variance
            # unless the weights are their inverse variances; in degrees
            var_grad = (cxx + cyy) / det * inv * (1.0 if weighted else mean_var)
            out[3, r, c] = math.degrees(math.sqrt(var_grad) / (1.0 + grad * grad))
            out[4, r, c] = mz + a * (xc[c] - mx) + b * (yc[r] - my)
            out[5, r, c] = math.sqrt(max(czz - a * cxz - b * cyz, 0.0))


def site_planes(
    sums: dict[str, np.ndarray], x_centres: np.ndarray, y_centres: np.ndarray, weighted: bool = False, threads: int = 1
) -> SitePlanes:
    """The planes of every site from its footprint's sums (``sums``: ``n`` cells with data and
    the sums of their ``x y z xx xy yy zz xz yz`` and height variances ``vv``, each a grid
    array, coordinates relative to one origin for conditioning) and the cell centres'
    coordinates (``x_centres`` per column, ``y_centres`` per row, same origin).
    ``weighted``: every sum is weighted by the cell's inverse height variance (``n`` their sum,
    ``vv`` the sum of weight x variance, i.e. the cells' count: ``mean_variance`` is then the
    harmonic mean of the cells' variances).  ``threads``: the grid's rows are split over this
    many threads (the same result)."""
    keys = ("n", "x", "y", "z", "xx", "xy", "yy", "zz", "xz", "yz", "vv")
    missing = [k for k in keys if k not in sums]
    if missing:
        raise ValueError(f"footprint sums missing {missing}")
    grids = [np.ascontiguousarray(sums[k], dtype=np.float64) for k in keys]
    shape = grids[0].shape
    if any(g.shape != shape for g in grids) or len(x_centres) != shape[1] or len(y_centres) != shape[0]:
        raise ValueError("footprint sums and cell centres must share the grid's shape")
    xc, yc = np.ascontiguousarray(x_centres, dtype=np.float64), np.ascontiguousarray(y_centres, dtype=np.float64)
    out = np.full((7,) + shape, np.nan)
    fits = np.zeros(shape, np.bool_)
    rows = balanced_ranges(np.ones(shape[0]), check_threads(threads))
    run_ranges(lambda a, b: _planes_rows(*grids, xc, yc, bool(weighted), out, fits, a, b), rows)
    return SitePlanes(out[0], out[1], out[2], out[3], out[4], out[5], out[6], fits)
