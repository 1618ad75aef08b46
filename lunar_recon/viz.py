"""Pictures of results (ROS-free): hazard overlays on the camera image, colour maps."""

from __future__ import annotations

import cv2
import numpy as np

from .geometry.hazard import HAZARD, SAFE, HazardMap, cells_of_points

SAFE_BGR = np.array([60, 200, 60], np.float32)
HAZARD_BGR = np.array([40, 40, 230], np.float32)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any mono/RGB image (uint8/uint16/float) -> bgr8 for display."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a) * 255, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2BGR)


def hazard_overlay(
    image: np.ndarray, points: np.ndarray, hmap: HazardMap | None, alpha: float = 0.45, image_is_rgb: bool = True
) -> np.ndarray:
    """bgr8 image with every pixel tinted by the hazard class of the grid cell its 3-D point
    falls in (red hazard, green safe, untouched unknown) and the landing site marked."""
    bgr = to_bgr8(image) if image_is_rgb or np.asarray(image).ndim == 2 else np.asarray(image, np.uint8).copy()
    if hmap is None:
        return bgr
    row, col, ok = cells_of_points(hmap, points)
    # Tint index per pixel (0 untouched, 1 safe, 2 hazard) through a per-cell lookup, then one
    # blend of the whole image: a few ms at 512x384, where per-class masking took ~10.
    cell_tint = np.zeros(hmap.shape, np.uint8)
    cell_tint[hmap.hazard == SAFE] = 1
    cell_tint[hmap.hazard == HAZARD] = 2
    tint = np.where(ok, cell_tint[row, col], 0).astype(np.uint8)
    palette = np.stack([np.zeros(3, np.float32), SAFE_BGR, HAZARD_BGR]).astype(np.uint8)
    blended = cv2.addWeighted(bgr, 1 - alpha, palette[tint], alpha, 0.0)
    out = np.where(tint[..., None] > 0, blended, bgr)
    site = hmap.landing_site
    if site is not None:
        hit = ok & (row == site.row) & (col == site.col)
        if hit.any():
            v, u = np.argwhere(hit).mean(axis=0)
            cv2.drawMarker(out, (int(u), int(v)), (255, 255, 0), cv2.MARKER_STAR, 18, 2)
    return out


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """Float map -> bgr8 with NaN black."""
    v = np.asarray(values, np.float32)
    norm = np.clip((np.nan_to_num(v, nan=vmin) - vmin) / max(vmax - vmin, 1e-9), 0, 1)
    out = cv2.applyColorMap((norm * 255).astype(np.uint8), cmap)
    out[~np.isfinite(v)] = 0
    return out
