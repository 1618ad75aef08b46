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


def hazard_overlay(image: np.ndarray, points: np.ndarray, hmap: HazardMap | None, alpha: float = 0.45,
                   image_is_rgb: bool = True) -> np.ndarray:
    """bgr8 image with every pixel tinted by the hazard class of the grid cell its 3-D point
    falls in (red hazard, green safe, untouched unknown) and the landing site marked."""
    bgr = to_bgr8(image) if image_is_rgb or np.asarray(image).ndim == 2 else np.asarray(image, np.uint8).copy()
    if hmap is None:
        return bgr
    row, col, ok = cells_of_points(hmap, points)
    cls = np.where(ok, hmap.hazard[row, col], -1)
    out = bgr.astype(np.float32)
    for value, colour in ((SAFE, SAFE_BGR), (HAZARD, HAZARD_BGR)):
        m = cls == value
        out[m] = (1 - alpha) * out[m] + alpha * colour
    out = out.astype(np.uint8)
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
