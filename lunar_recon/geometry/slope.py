"""Per-pixel surface normals and slope of an organised point cloud.

Slope is measured over a physical baseline (metres), not over one pixel: a one-pixel
finite difference on orbital imagery is dominated by noise and saturates near 90 deg.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .frames import normalize


def normals_from_points(points: np.ndarray, step_px: int = 1) -> np.ndarray:
    """Unit normals (H, W, 3) from central differences ``step_px`` pixels apart, oriented
    towards the camera; NaN where a neighbour is missing or at the border."""
    p = np.asarray(points, dtype=np.float32)
    h, w = p.shape[:2]
    s = int(step_px)
    out = np.full((h, w, 3), np.nan, dtype=np.float32)
    if s < 1 or h <= 2 * s or w <= 2 * s:
        return out
    n = _cross_components(p, s)
    norm = np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
    c = p[s:-s, s:-s]
    # Face the camera (the viewing ray is p itself in the camera frame).
    sign = np.where(n[0] * c[..., 0] + n[1] * c[..., 1] + n[2] * c[..., 2] > 0, -1.0, 1.0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = sign / norm
    for k in range(3):
        out[s:-s, s:-s, k] = n[k] * scale
    return out


def _cross_components(p: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of (p[u+s] - p[u-s]) x (p[v+s] - p[v-s]), without (..., 3) temporaries."""
    dux, duy, duz = (p[s:-s, 2 * s :, k] - p[s:-s, : -2 * s, k] for k in range(3))
    dvx, dvy, dvz = (p[2 * s :, s:-s, k] - p[: -2 * s, s:-s, k] for k in range(3))
    return duy * dvz - duz * dvy, duz * dvx - dux * dvz, dux * dvy - duy * dvx


def slope_from_normals(normals: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each normal and gravity 'up' (both in the same frame)."""
    up = normalize(up).astype(np.float32)
    cos = np.abs(normals @ up)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0))).astype(np.float32)


def baseline_step_px(depth: np.ndarray, fx: float, baseline_m: float, median_range_m: float | None = None) -> int:
    """Pixel step that spans ``baseline_m`` metres at the frame's median range (fronto-parallel);
    ``median_range_m``: that range when the caller already has it (else the median of ``depth``)."""
    if median_range_m is None:
        z = np.asarray(depth, dtype=np.float32)
        z = z[np.isfinite(z) & (z > 0)]
        if z.size == 0:
            return 1
        median_range_m = float(np.median(z))
    if not (np.isfinite(median_range_m) and median_range_m > 0):
        return 1
    return max(1, int(round(baseline_m * fx / median_range_m / 2)))


@numba.njit(cache=True, nogil=True)
def _slope_kernel(p, s, ux, uy, uz, out):  # pragma: no cover - compiled
    # per pixel, |n . up| / |n| of n = (p[u+s] - p[u-s]) x (p[v+s] - p[v-s]): one pass, no
    # whole-image temporaries (the same float32 arithmetic as the array expression it replaces)
    h, w = out.shape
    to_deg = np.float32(180.0 / math.pi)
    for y in range(s, h - s):
        for x in range(s, w - s):
            dux = p[y, x + s, 0] - p[y, x - s, 0]
            duy = p[y, x + s, 1] - p[y, x - s, 1]
            duz = p[y, x + s, 2] - p[y, x - s, 2]
            dvx = p[y + s, x, 0] - p[y - s, x, 0]
            dvy = p[y + s, x, 1] - p[y - s, x, 1]
            dvz = p[y + s, x, 2] - p[y - s, x, 2]
            cx = duy * dvz - duz * dvy
            cy = duz * dvx - dux * dvz
            cz = dux * dvy - duy * dvx
            norm = math.sqrt(cx * cx + cy * cy + cz * cz)
            cos = abs(cx * ux + cy * uy + cz * uz) / norm if norm > 0 else np.float32(np.nan)
            out[y, x] = np.float32(math.acos(min(cos, np.float32(1.0)))) * to_deg if cos == cos else np.float32(np.nan)


def slope_image(
    points: np.ndarray,
    up: np.ndarray,
    baseline_m: float | None = None,
    fx: float | None = None,
    step_px: int | None = None,
    median_range_m: float | None = None,
) -> np.ndarray:
    """Slope (degrees, float32, NaN invalid) of every pixel of an organised cloud against
    gravity 'up' given in the cloud's frame.  The surface is differenced over ``step_px``
    pixels, or over the step that spans ``baseline_m`` metres at the frame's median range
    (needs ``fx``; ``median_range_m``: that range, when the caller has it)."""
    if step_px is None:
        if baseline_m is None or fx is None:
            step_px = 1
        else:
            step_px = baseline_step_px(np.asarray(points)[..., 2], fx, baseline_m, median_range_m)
    p = np.ascontiguousarray(points, dtype=np.float32)
    h, w = p.shape[:2]
    s = int(step_px)
    out = np.full((h, w), np.nan, dtype=np.float32)
    if h <= 2 * s or w <= 2 * s:
        return out
    u = normalize(up).astype(np.float32)
    _slope_kernel(p, s, u[0], u[1], u[2], out)
    return out
