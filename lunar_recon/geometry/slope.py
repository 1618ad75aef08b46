"""Per-pixel surface normals and slope of an organised point cloud.

Slope is measured over a physical baseline (metres), not over one pixel: a one-pixel
finite difference on orbital imagery is dominated by noise and saturates near 90 deg.
"""
from __future__ import annotations

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
    du = p[s:-s, 2 * s:] - p[s:-s, :-2 * s]
    dv = p[2 * s:, s:-s] - p[:-2 * s, s:-s]
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    # Face the camera (the viewing ray is p itself in the camera frame).
    flip = np.sum(n * p[s:-s, s:-s], axis=-1) > 0
    n[flip] *= -1
    out[s:-s, s:-s] = n
    return out


def slope_from_normals(normals: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each normal and gravity 'up' (both in the same frame)."""
    up = normalize(up).astype(np.float32)
    cos = np.abs(normals @ up)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0))).astype(np.float32)


def baseline_step_px(depth: np.ndarray, fx: float, baseline_m: float) -> int:
    """Pixel step that spans ``baseline_m`` metres at the frame's median range (fronto-parallel)."""
    z = np.asarray(depth, dtype=np.float32)
    z = z[np.isfinite(z) & (z > 0)]
    if z.size == 0:
        return 1
    return max(1, int(round(baseline_m * fx / float(np.median(z)) / 2)))


def slope_image(points: np.ndarray, up: np.ndarray, baseline_m: float | None = None, fx: float | None = None,
                step_px: int | None = None) -> np.ndarray:
    """Slope (degrees, float32, NaN invalid) of every pixel of an organised cloud against
    gravity 'up' given in the cloud's frame.  The surface is differenced over ``step_px``
    pixels, or over the step that spans ``baseline_m`` metres at the frame's median range
    (needs ``fx``)."""
    if step_px is None:
        if baseline_m is None or fx is None:
            step_px = 1
        else:
            step_px = baseline_step_px(np.asarray(points)[..., 2], fx, baseline_m)
    return slope_from_normals(normals_from_points(points, step_px), up)
