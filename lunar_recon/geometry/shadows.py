"""Shadows as a bound on the terrain: shape from shadows for the hazard map.

The Moon has no sky light, so a pixel the sun does not reach is almost black (only earthshine
and sensor noise), and a low sun -- the usual case at a polar landing site -- makes small relief
cast long shadows: a 0.3 m rock under a 10 deg sun throws 1.7 m of shadow.  Passive-imaging
hazard detection has long used that cue.  Here it enters the geometry exactly: a cell of the
gravity-aligned elevation grid is in shadow only if terrain toward the sun rises above the sun
ray through it, i.e.

    z(c) < H(c) = max over upsun cells c' of [ z(c') - dist(c, c') tan(sun elevation) ],

an upper bound on the shadowed cell's elevation given the lit terrain upsun.  A network or a
matcher smooths exactly where shadows fall (crater walls facing away from the sun, the lee of
rocks: no texture, no match), so its surface there is too high; clamping it to the bound
restores the depth of craters and the relief behind rocks that the hazard map must see.  The
bound never lifts a cell and leaves any terrain consistent with the shadows unchanged.

The simulator casts its shadows with its own code (``sim.render.shadow_map``, the forward
problem on the true DEM); it is kept apart on purpose, so the tests check this bound against an
independent caster.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .frames import normalize

# A pixel is in shadow below this fraction of the lit regolith's brightness (the image's 90th
# percentile).  On the calibration pairs 0.15-0.4 score alike (hazard F1 0.19, 0.15 without).
SHADOW_INTENSITY_FRACTION = 0.25
# A grid cell counts as shadowed when at least this fraction of its pixels are.
SHADOW_CELL_FRACTION = 0.5


def shadow_mask(image: np.ndarray, fraction: float = SHADOW_INTENSITY_FRACTION) -> np.ndarray:
    """Boolean (H, W) mask of the pixels darker than ``fraction`` of the lit level (the 90th
    percentile of the image's brightness).  Mono or colour, any integer or float type."""
    if not 0 < fraction < 1:
        raise ValueError(f"shadow intensity fraction must be in (0, 1), got {fraction}")
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.mean(axis=2, dtype=np.float32)
    elif img.ndim != 2:
        raise ValueError(f"shadow_mask needs an (H, W) or (H, W, C) image, got shape {img.shape}")
    lit = float(np.percentile(img[::4, ::4], 90))  # a subsample is plenty for a percentile
    if not np.isfinite(lit) or lit <= 0:
        return np.zeros(img.shape, bool)  # a black or broken frame: no usable shadow cue
    return img < fraction * lit


def shadow_bounded_elevation(elevation: np.ndarray, shadowed: np.ndarray, resolution: float, sun_grid: np.ndarray) -> np.ndarray:
    """Elevation grid (rows = y, cols = x, z up; NaN unknown) with every shadowed cell lowered to
    at most the sun ray grazing the terrain upsun of it (the module docstring's bound).
    ``sun_grid``: direction toward the sun in the grid frame.  A sun at or below the horizon,
    or overhead, bounds nothing.

    The grid is rotated (nearest neighbour) so that shadows run along its rows, the horizon is
    a running maximum along each row from the sun's side, and it is rotated back."""
    Z = np.asarray(elevation)
    if Z.shape != np.shape(shadowed):
        raise ValueError(f"shadow mask {np.shape(shadowed)} does not match the elevation grid {Z.shape}")
    sun = normalize(sun_grid)
    horizontal = math.hypot(sun[0], sun[1])
    if sun[2] <= 0 or horizontal < 1e-6 or not np.any(shadowed):
        return Z
    drop = np.float32(resolution * sun[2] / horizontal)  # the sun ray's fall per cell
    dx, dy = -sun[0] / horizontal, -sun[1] / horizontal  # where shadows point, in (col, row)
    rows, cols = Z.shape
    diag = int(math.ceil(math.hypot(rows, cols))) + 2
    # Canvas sides of the grid's parity: an axis-aligned sun then maps cells onto cells exactly.
    width, height = diag + (diag - cols) % 2, diag + (diag - rows) % 2
    A = np.array([[dx, -dy], [dy, dx]])  # a step along a rotated row is a step along the shadow
    src_c = np.array([(cols - 1) / 2, (rows - 1) / 2])
    dst_c = np.array([(width - 1) / 2, (height - 1) / 2])
    to_src = np.hstack([A, (src_c - A @ dst_c)[:, None]])
    warp = dict(flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    # The casters: lit cells, each the highest of its 3 x 3 neighbourhood, so that a thin rim or
    # rock lying between two rotated rows still casts.
    shadowed = np.asarray(shadowed, bool)
    lit = np.where(np.isfinite(Z) & ~shadowed, Z, -np.inf).astype(np.float32)
    lit = cv2.dilate(lit, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    caster = cv2.warpAffine(lit, to_src, (width, height), borderValue=-np.inf, **warp)
    # H(c) = max over lit c' < c of [z(c') + c' drop] - c drop: one running maximum per row.  A
    # shadowed cell, once bounded, lies under the horizon and cannot raise it further on.
    ramp = np.arange(width, dtype=np.float32) * drop
    horizon = np.full_like(caster, -np.inf)
    horizon[:, 1:] = np.maximum.accumulate(caster + ramp, axis=1)[:, :-1]
    horizon -= ramp
    # Back on the grid; a cell takes the highest horizon around it, as a nearest-neighbour
    # sample may come from a neighbour's ray (no bound below the terrain from resampling).
    to_rot = np.hstack([A.T, (dst_c - A.T @ src_c)[:, None]])
    horizon[~np.isfinite(horizon)] = np.inf  # nothing casts: no bound
    horizon = cv2.warpAffine(horizon, to_rot, (cols, rows), borderValue=np.inf, **warp)
    horizon = cv2.dilate(horizon, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore"):
        clamp = shadowed & (Z > horizon) & np.isfinite(horizon)  # NaN (unknown) cells stay unknown
    return np.where(clamp, horizon, Z).astype(Z.dtype, copy=False)
