"""Hazards certified in the last few maps of a descent, carried into the current map.

A lander descending toward a site images the same ground several times.  A rock or slope
that one map certified as a hazard (it cleared the limit by the map's noise margin) does not
move, so where the current map cannot decide (UNKNOWN) it stays a hazard.  Only hazards are
carried and only into unknown cells: a cell the current, closer view certifies safe stays
safe, so the safe set -- and the landing site -- never changes.

Why not fuse the points of several frames instead: measured on simulated descents (README,
"Hazard memory"), averaging the elevations of several frames lowered the hazard F1, because a
network's errors are not independent noise -- a rock of one or two pixels is flattened in the
farther frame, and the average flattens it in the nearer one too.  A hazard call made with its
own margin does not suffer from that.

The memory holds keyframes: a map enters it only when its camera has moved some distance from
the last one kept (a descent imaged at 10 Hz would otherwise fill it with near-copies of one
view), and the last ``frames - 1`` keyframes are kept.

Maps are related through the pose of the camera in a world frame (``T_world_from_camera``,
4x4, e.g. from the lander's navigation); each map's grid is given in its camera frame
(``HazardMap.R_grid_from_input``).
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from .hazard import HAZARD, UNKNOWN, HazardMap, cells_of_points


def _check_pose(T: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"camera pose must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) <= 0:
        raise ValueError("camera pose's rotation is not a proper rotation matrix")
    return T


class HazardMemory:
    """The last ``frames - 1`` keyframe hazard maps with their camera poses (``frames`` counts
    the current map; 1 keeps nothing), keyframes at least ``keyframe_distance_m`` of camera
    travel apart."""

    def __init__(self, frames: int = 3, keyframe_distance_m: float = 0.0):
        self.frames = frames
        self.keyframe_distance_m = keyframe_distance_m
        self._past: deque[tuple[HazardMap, np.ndarray]] = deque()

    def __len__(self) -> int:
        return len(self._past)

    def update(
        self,
        hmap: HazardMap,
        T_world_from_camera: np.ndarray,
        frames: int | None = None,
        keyframe_distance_m: float | None = None,
    ) -> HazardMap:
        """``hmap`` with the remembered hazards in its unknown cells (a new map; ``hmap`` is
        kept as made, so a hazard is remembered for ``frames - 1`` keyframes after the one that
        saw it, not forever).  ``extra["remembered_hazard"]`` marks the cells filled.
        ``frames`` / ``keyframe_distance_m`` override the memory's own (runtime parameters)."""
        frames = self.frames if frames is None else int(frames)
        gap = self.keyframe_distance_m if keyframe_distance_m is None else float(keyframe_distance_m)
        if frames < 1:
            raise ValueError(f"hazard memory frames must be >= 1, got {frames}")
        T = _check_pose(T_world_from_camera)
        filled = np.zeros(hmap.shape, bool)
        unknown = hmap.hazard == UNKNOWN
        while len(self._past) > max(frames - 1, 0):
            self._past.popleft()
        if self._past and unknown.any():
            rows, cols = np.nonzero(unknown)
            x, y = hmap.grid.centres_of(rows, cols)
            z = hmap.elevation_m[rows, cols].astype(np.float64)
            ground = float(np.nanmedian(hmap.elevation_m)) if np.isfinite(hmap.elevation_m).any() else 0.0
            # Unknown cells often have no elevation; with gravity-aligned grids the height moves
            # a cell along the vertical only, so the map's median ground stands in for it.
            z = np.where(np.isfinite(z), z, ground)
            cells = np.c_[x, y, z]
            world = (cells @ hmap.R_grid_from_input) @ T[:3, :3].T + T[:3, 3]  # grid -> camera -> world
            for past, T_past in self._past:
                T_inv = np.linalg.inv(T_past)
                r, c, on = cells_of_points(past, world @ T_inv[:3, :3].T + T_inv[:3, 3])
                hit = on & (past.hazard[r, c] == HAZARD)
                filled[rows[hit], cols[hit]] = True
        if frames > 1 and (not self._past or np.linalg.norm(T[:3, 3] - self._past[-1][1][:3, 3]) >= gap):
            self._past.append((hmap, T))
            if len(self._past) > frames - 1:
                self._past.popleft()
        if not filled.any():
            return dataclasses.replace(hmap, extra={**hmap.extra, "remembered_hazard": filled})
        hazard, cost = hmap.hazard.copy(), hmap.cost.copy()
        hazard[filled], cost[filled] = HAZARD, 100
        # Unknown -> hazard leaves the safe cells and their distance to the nearest non-safe
        # cell as they were: the landing site stands.
        return dataclasses.replace(hmap, hazard=hazard, cost=cost, extra={**hmap.extra, "remembered_hazard": filled})


__all__ = ["HazardMemory"]
