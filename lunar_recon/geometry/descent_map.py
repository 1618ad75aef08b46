"""The descent map: every frame of a descent fused into one probabilistic elevation map.

A lander images the same ground ten to thirty times on its way down; one pair is capped by
two-view stereo.  Like elevation_mapping_cupy and JPL's descent height map, each cell of a
gravity-aligned grid in the world frame of the navigation pose keeps a height mean and
variance, updated from every frame by a scalar Kalman step with each observation's own
variance (the frame's cell median and its noise model: sigma_Z = Z^2 sigma_d / (f B), widened
where the network is unsure, plus the relief its ground pixel Z / f cannot resolve,
``pixel_relief`` x Z / f, plus the spread of its points).  An observation further than
``gate_sigmas`` standard deviations of the two variances together from the map is an outlier
and is not fused (Mahalanobis gating) -- unless it is the more precise of the two: then the
map's estimate was the wrong one (a far frame's smoothing of a rock is not noise) and the
closer look replaces it.  Far frames observe with large variances and nearer
ones refine them, so the resolution the map holds grows as the lander descends.

With ``levels`` > 1 the map is multi-resolution, as JPL's: level k has cells 2^k times the
finest, and each observation updates the finest level whose cell spans ``pixels_per_cell`` of
its ground pixels -- coarse cells at altitude, fine ones near the ground, so a far frame's
points pool into cells it can resolve instead of scattering one noisy point per fine cell.
The map read out is the finest level, each empty cell filled from the finest coarser level
that holds it.

The grid is a window of fixed size that follows the camera's ground point (memory stays
bounded over any descent); cells leaving it are forgotten.  A pose that jumps further than
``reset_distance_m`` between frames (a navigation reset) empties the map, and the update
says so.  The landing-site safety map of :mod:`lunar_recon.geometry.hazard` is then made on
the fused cells, in the current camera's gravity-aligned frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .hazard import CellGrid, GridSpec, HazardMap, HazardParams, elevation_grid, hazard_map_from_cells


# A frame's observation of a cell claims at most this many independent points (a single
# frame's map: INDEPENDENT_POINTS_PER_CELL, 4): successive frames see a cell through the same
# matcher and its biases, which the Kalman update would otherwise average down as independent.
OBSERVATION_POINTS_PER_CELL = 2


@dataclass
class DescentMapParams:
    """The fused map's window, gate, reset and resolution levels (the finest cell size is the
    hazard map's)."""

    window_m: float = 48.0  # side of the square window of cells kept around the camera's ground point
    gate_sigmas: float = 3.0  # Mahalanobis gate of an observation against the map
    reset_distance_m: float = 25.0  # camera travel between two frames that counts as a pose jump
    # 1-sigma height error of an observation per metre of its ground pixel (range / focal
    # length): relief a far frame's pixel cannot resolve, which its stereo noise does not hold
    pixel_relief: float = 2.0
    # Resolution levels, cells 1, 2, 4, ... times the finest: an observation updates the finest
    # level whose cell spans at least ``pixels_per_cell`` of its ground pixels (coarse cells at
    # altitude, fine ones near the ground); the map read out is the finest level, its empty
    # cells filled from the coarser ones.  1: one level, every observation in the finest cells.
    levels: int = 1
    pixels_per_cell: float = 2.0
    # sites the fused map leaves undecided (neither safe nor a hazard: at altitude nearly all of
    # them, where its calibration is flat) take the current frame's own map's judgement
    single_frame_fallback: bool = True

    def validate(self) -> None:
        if not self.window_m > 0:
            raise ValueError("descent map: window_m must be positive")
        if not self.gate_sigmas > 0:
            raise ValueError("descent map: gate_sigmas must be positive")
        if not self.reset_distance_m > 0:
            raise ValueError("descent map: reset_distance_m must be positive")
        if not 0 <= self.pixel_relief < 100:
            raise ValueError("descent map: pixel_relief must be in [0, 100) (0: no resolution term)")
        if not 1 <= self.levels <= 8:
            raise ValueError("descent map: levels must be in [1, 8] (1: one resolution)")
        if not self.pixels_per_cell > 0:
            raise ValueError("descent map: pixels_per_cell must be positive")


@dataclass
class DescentUpdate:
    fused: int  # cells whose estimate this frame refined
    new: int  # cells this frame saw first
    gated: int  # observations rejected as outliers
    reset: bool  # the pose jumped: the map was emptied before this frame
    replaced: int = 0  # cells a more precise, disagreeing observation replaced
    # observations (points) per resolution level, finest first
    points_per_level: tuple[int, ...] = ()


class ElevationLayer:
    """One resolution level: per-cell height mean and variance over a square window of cells
    in the world frame (cell [0, 0]'s corner at ``origin``) that follows the camera."""

    def __init__(self, resolution_m: float, window_m: float):
        self.resolution = float(resolution_m)
        n = max(8, int(math.ceil(window_m / self.resolution)))
        self.mean = np.full((n, n), np.nan)
        self.var = np.full((n, n), np.nan)
        self.origin = np.zeros(2)  # world x, y of cell [0, 0]'s corner

    @property
    def grid(self) -> GridSpec:
        return GridSpec((float(self.origin[0]), float(self.origin[1])), self.resolution, self.mean.shape)

    def reset(self) -> None:
        self.mean.fill(np.nan)
        self.var.fill(np.nan)

    def centre_on(self, ground_xy: np.ndarray) -> None:
        n = self.mean.shape[0]
        self.origin = np.floor(ground_xy / self.resolution) * self.resolution - n * self.resolution / 2

    def follow(self, ground_xy: np.ndarray) -> None:
        """Keep the window centred near the camera's ground point: shift it by whole cells when
        the point leaves the middle half, forgetting the cells that fall out."""
        n = self.mean.shape[0]
        centre = self.origin + n * self.resolution / 2
        if np.all(np.abs(ground_xy - centre) <= n * self.resolution / 4) and np.isfinite(self.origin).all():
            return
        shift = np.round((ground_xy - centre) / self.resolution).astype(int)  # cells, (x, y)
        new_origin = self.origin + shift * self.resolution
        for arr in (self.mean, self.var):
            moved = np.full_like(arr, np.nan)
            dx, dy = int(shift[0]), int(shift[1])
            src = arr[max(dy, 0) : n + min(dy, 0), max(dx, 0) : n + min(dx, 0)]
            moved[max(-dy, 0) : max(-dy, 0) + src.shape[0], max(-dx, 0) : max(-dx, 0) + src.shape[1]] = src
            arr[...] = moved
        self.origin = new_origin

    def fuse(
        self, world: np.ndarray, variance: np.ndarray, gate_sigmas: float, min_points: int, threads: int = 1
    ) -> tuple[int, int, int, int]:
        """One frame's points (world frame) with their elevation variances: a scalar Kalman
        step per cell on the cell's median; returns (fused, new, gated, replaced) cells."""
        # the interquartile spread: a frame's look at a cell straddling an edge disagrees with
        # another's by the edge, not by the cell's median deviation (a pose drift of 1 % of the
        # range kept 0.98 of the certified ground with it, 0.92 with the deviation)
        cells = elevation_grid(
            world,
            self.grid,
            min_points,
            variance,
            robust_spread=False,
            independent_points=OBSERVATION_POINTS_PER_CELL,
            robust_noise=False,
            threads=threads,
        )
        z, v = cells.z, cells.variance
        if v is None:  # elevation_grid gives one with per-point variances
            raise RuntimeError("descent map: the cells carry no variance")
        seen = np.isfinite(z) & np.isfinite(v)
        known = seen & np.isfinite(self.mean)
        first = seen & ~np.isfinite(self.mean)
        total = np.where(known, self.var + v, np.nan)
        disagree = known & ((z - self.mean) ** 2 > gate_sigmas**2 * total)
        # A disagreeing observation more precise than the map (a closer look) replaces the cell:
        # the map's estimate carried an error its variance did not (a far frame's smoothing is
        # not noise); a less precise one is the outlier and is rejected.
        replace = disagree & (v < self.var)
        gated = disagree & ~replace
        fuse = known & ~disagree
        gain = np.where(fuse, self.var / np.where(fuse, total, 1.0), 0.0)
        self.mean = np.where(fuse, self.mean + gain * (z - self.mean), self.mean)
        self.var = np.where(fuse, (1.0 - gain) * self.var, self.var)
        take = first | replace
        self.mean[take], self.var[take] = z[take], v[take]
        return int(fuse.sum()), int(first.sum()), int(gated.sum()), int(replace.sum())

    def sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the cells holding world points (x, y); NaN off the window."""
        r, c, on = self.grid.cells_of(x, y)
        return np.where(on, self.mean[r, c], np.nan), np.where(on, self.var[r, c], np.nan)


class DescentMap:
    """Per-cell height mean and variance in the world frame of ``T_world_from_camera`` poses
    (world z is 'up'), over a window that follows the camera, at ``params.levels`` resolutions
    (cells ``resolution_m`` x 1, 2, 4, ...)."""

    def __init__(self, resolution_m: float, params: DescentMapParams | None = None):
        self.params = params or DescentMapParams()
        self.params.validate()
        if not resolution_m > 0:
            raise ValueError("descent map: the cell size must be positive")
        self.resolution = float(resolution_m)
        self.layers = [ElevationLayer(self.resolution * 2**k, self.params.window_m) for k in range(self.params.levels)]
        self._last_position: np.ndarray | None = None
        self.resets = 0

    # the finest level: the map's own cells
    @property
    def mean(self) -> np.ndarray:
        return self.layers[0].mean

    @property
    def var(self) -> np.ndarray:
        return self.layers[0].var

    @property
    def origin(self) -> np.ndarray:
        return self.layers[0].origin

    @property
    def grid(self) -> GridSpec:
        return self.layers[0].grid

    def reset(self) -> None:
        for layer in self.layers:
            layer.reset()
        self._last_position = None

    def level_of(self, depth: np.ndarray, fx: float | None) -> np.ndarray:
        """The resolution level each observation at ``depth`` (m) updates: the finest whose cell
        spans ``pixels_per_cell`` ground pixels (depth / fx); the finest without ``fx``."""
        if len(self.layers) == 1 or fx is None or not (np.isfinite(fx) and fx > 0):
            return np.zeros(len(depth), np.int64)
        need = self.params.pixels_per_cell * np.abs(depth) / (fx * self.resolution)  # in finest cells
        with np.errstate(divide="ignore"):
            level = np.ceil(np.log2(np.maximum(need, 1.0)))
        return np.clip(level, 0, len(self.layers) - 1).astype(np.int64)

    def update(
        self,
        points: np.ndarray,
        elevation_sigma: np.ndarray,
        T_world_from_camera: np.ndarray,
        min_points_per_cell: int = 1,
        fx: float | None = None,
        threads: int = 1,
    ) -> DescentUpdate:
        """Fuse one frame: ``points`` (N x 3 or H x W x 3, camera frame, NaN invalid) with each
        point's 1-sigma elevation uncertainty, seen from the pose ``T_world_from_camera``; with
        the camera's focal length ``fx`` (px) and ``pixel_relief`` each point's ground pixel
        (its depth / fx) adds ``pixel_relief`` x that to its sigma, in quadrature, and chooses
        the resolution level it updates."""
        T = np.asarray(T_world_from_camera, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError("descent map: the camera pose must be a finite 4x4 matrix")
        position = T[:3, 3]
        reset = (
            self._last_position is not None
            and float(np.linalg.norm(position - self._last_position)) > self.params.reset_distance_m
        )
        if reset:
            self.reset()
            self.resets += 1
        if self._last_position is None and not any(np.isfinite(layer.mean).any() for layer in self.layers):
            for layer in self.layers:
                layer.centre_on(position[:2])
        self._last_position = position.copy()
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        sigma = np.asarray(elevation_sigma, dtype=np.float64).reshape(-1)
        if sigma.shape[0] != p.shape[0]:
            raise ValueError(f"descent map: {sigma.shape[0]} sigmas for {p.shape[0]} points")
        if self.params.pixel_relief > 0 and fx is not None and np.isfinite(fx) and fx > 0:
            sigma = np.hypot(sigma, (self.params.pixel_relief / fx) * p[:, 2])
        ok = np.isfinite(p[:, 0] + p[:, 1] + p[:, 2] + sigma)  # one pass, not an axis reduction
        if not ok.all():
            keep = np.flatnonzero(ok)
            p, sigma = p.take(keep, axis=0), sigma.take(keep)  # faster than boolean rows
        level = self.level_of(p[:, 2], fx)
        world = p @ T[:3, :3].T + position
        if len(world):
            ground = np.median(world[:, :2], axis=0)
            for layer in self.layers:
                layer.follow(ground)
        counts = np.bincount(level, minlength=len(self.layers))
        totals = np.zeros(4, np.int64)
        for k, layer in enumerate(self.layers):
            if counts[k] == 0:
                continue
            if counts[k] == len(world):
                w, v = world, sigma * sigma
            else:
                idx = np.flatnonzero(level == k)
                w, v = world.take(idx, axis=0), sigma.take(idx) ** 2
            totals += layer.fuse(w, v, self.params.gate_sigmas, min_points_per_cell, threads)
        fused, new, gated, replaced = (int(t) for t in totals)
        return DescentUpdate(fused, new, gated, bool(reset), replaced, tuple(int(c) for c in counts))

    def fused_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The finest level's mean and variance, each empty cell filled from the finest coarser
        level that holds its centre (read only)."""
        mean, var = self.layers[0].mean, self.layers[0].var
        empty = ~np.isfinite(mean)
        if len(self.layers) > 1 and empty.any():  # a filled copy; one level: the arrays themselves
            mean, var = mean.copy(), var.copy()
            rows, cols = np.nonzero(empty)
            x, y = self.layers[0].grid.centres_of(rows, cols)
            for layer in self.layers[1:]:
                m, v = layer.sample(x, y)
                got = np.isfinite(m) & ~np.isfinite(mean[rows, cols])
                mean[rows[got], cols[got]], var[rows[got], cols[got]] = m[got], v[got]
        return mean, var

    def hazard_map(
        self, T_world_from_camera: np.ndarray, params: HazardParams | None = None, calibration=None, threads: int = 1
    ) -> HazardMap:
        """The landing-site map on the fused cells, in the camera's gravity-aligned frame (the
        world's axes about the camera: ``R_grid_from_input`` is the camera's attitude)."""
        T = np.asarray(T_world_from_camera, dtype=np.float64)
        t = T[:3, 3]
        g = self.grid
        rows, cols = g.shape
        mean, var = self.fused_cells()
        xs = g.origin[0] + (np.arange(cols) + 0.5) * g.resolution - t[0]
        ys = g.origin[1] + (np.arange(rows) + 0.5) * g.resolution - t[1]
        have = np.isfinite(mean)
        X, Y = np.meshgrid(xs, ys)
        cells = CellGrid(np.where(have, X, np.nan), np.where(have, Y, np.nan), mean - t[2], have.astype(float), var)
        local = GridSpec((g.origin[0] - t[0], g.origin[1] - t[1]), g.resolution, g.shape)
        # The fused variances hold each observation's noise, not the navigation error that
        # misregisters one frame's cells against another's: each cell's own (Kalman-shrunk)
        # sigma alone would over-trust such steps, so the relief judges each cell on its own
        # variance plus the squared mean sigma of the footprint around it, and the plane is
        # fitted unweighted.
        return hazard_map_from_cells(cells, local, T[:3, :3], params, calibration, per_cell_sigma=False, threads=threads)

    @property
    def nbytes(self) -> int:
        return sum(layer.mean.nbytes + layer.var.nbytes for layer in self.layers)


__all__ = ["DescentMap", "DescentMapParams", "DescentUpdate", "ElevationLayer"]
