"""Procedural lunar terrain: a metric, gravity-aligned height field (x east, y north, z up).

Fractal regolith (spectral synthesis, Hurst exponent), a crater population from a power-law
size-frequency distribution (fresh bowls of depth ~0.2 D with raised rims and ejecta, and
degraded, shallower ones), rocks from a cumulative size-frequency law resting on the
surface, and a regional tilt.  Level of detail follows the camera: the grid spacing is
chosen from the camera's ground sample distance and features smaller than two cells are
not drawn, so a 500 m descent view and a rover view are both resolved to a few pixels
without exhausting memory.  Deterministic per seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TerrainParams:
    extent_m: float = 200.0  # square side
    cell_m: float = 0.1
    center_xy: tuple[float, float] = (0.0, 0.0)
    hurst: float = 0.8  # fractal roughness: RMS height difference grows as lag^H
    rms_height_at_1m: float = 0.03  # RMS height difference of points 1 m apart (m)
    crater_density: float = 0.02  # N(>D) = density * D^-2 per m^2, D in metres (equilibrium ~0.08)
    crater_sfd_slope: float = 2.0
    crater_max_fraction: float = 0.4  # largest crater diameter as a fraction of the extent
    fresh_crater_fraction: float = 0.3
    rock_density: float = 0.02  # rocks with D > 0.1 m per m^2 (cumulative N(>D) ~ D^-2.5)
    rock_sfd_slope: float = 2.5
    rock_max_m: float = 3.0
    rock_min_m: float = 0.1  # smallest rock drawn (and never under two cells)
    crater_min_m: float = 0.0  # smallest crater drawn (and never under four cells)
    crater_max_m: float | None = None  # largest crater; None: crater_max_fraction of the extent
    tilt_deg: float = 0.0
    tilt_azimuth_deg: float = 0.0
    max_cells: int = 16_000_000
    max_rocks: int = 200_000

    def validate(self) -> None:
        if self.extent_m <= 0 or self.cell_m <= 0:
            raise ValueError("terrain extent_m and cell_m must be positive")
        n = (self.extent_m / self.cell_m) ** 2
        if n > self.max_cells:
            raise ValueError(
                f"terrain of {self.extent_m} m at {self.cell_m} m cells needs {n:.3g} cells "
                f"(> max_cells {self.max_cells}): coarser cells or a smaller extent"
            )
        if not 0 < self.hurst < 1:
            raise ValueError("hurst must be in (0, 1)")
        if not 0 <= self.tilt_deg < 60:
            raise ValueError("tilt_deg must be in [0, 60)")


@dataclass
class Terrain:
    """Height field ``z[row, col]`` at cell centres x = x0 + (col + 0.5) cell, y = y0 + (row + 0.5) cell."""

    z: np.ndarray  # float32 (rows, cols)
    albedo: np.ndarray  # float32 (rows, cols), normal albedo
    x0: float
    y0: float
    cell: float
    rocks: np.ndarray  # (N, 5): x, y, diameter, height, base z
    craters: np.ndarray  # (M, 4): x, y, diameter, depth
    params: TerrainParams = field(repr=False, default_factory=TerrainParams)

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.z.shape
        x = self.x0 + (np.arange(cols) + 0.5) * self.cell
        y = self.y0 + (np.arange(rows) + 0.5) * self.cell
        return np.meshgrid(x, y)

    def height_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear height; NaN outside the grid."""
        fx = (np.asarray(x, np.float64) - self.x0) / self.cell - 0.5
        fy = (np.asarray(y, np.float64) - self.y0) / self.cell - 0.5
        rows, cols = self.z.shape
        inside = (fx >= 0) & (fx <= cols - 1) & (fy >= 0) & (fy <= rows - 1)
        fx, fy = np.clip(fx, 0, cols - 1.000001), np.clip(fy, 0, rows - 1.000001)
        c, r = np.floor(fx).astype(int), np.floor(fy).astype(int)
        ax, ay = fx - c, fy - r
        z = self.z
        h = z[r, c] * (1 - ax) * (1 - ay) + z[r, c + 1] * ax * (1 - ay) + z[r + 1, c] * (1 - ax) * ay + z[r + 1, c + 1] * ax * ay
        return np.where(inside, h, np.nan)

    def gradient(self) -> tuple[np.ndarray, np.ndarray]:
        gy, gx = np.gradient(self.z.astype(np.float64), self.cell)
        return np.asarray(gx), np.asarray(gy)

    def slope_deg(self, baseline_m: float | None = None) -> np.ndarray:
        """Slope w.r.t. gravity per cell, from the gradient over ``baseline_m`` (default: one cell)."""
        z = self.z.astype(np.float64)
        if baseline_m is not None and baseline_m > 2 * self.cell:
            import cv2

            k = int(round(baseline_m / self.cell)) | 1
            z = cv2.blur(z, (k, k), borderType=cv2.BORDER_REFLECT)
        gy, gx = np.gradient(z, self.cell)
        return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)

    def points(self) -> np.ndarray:
        X, Y = self.cell_centres()
        return np.stack([X, Y, self.z], axis=-1).reshape(-1, 3)


# ---- generation --------------------------------------------------------------------------------
def _fractal(rng: np.random.Generator, rows: int, cols: int, cell: float, hurst: float, rms_1m: float) -> np.ndarray:
    """Gaussian fractal surface with structure function S(lag) = rms_1m^2 * lag^(2H) (metres).
    Spectral synthesis with torch's FFT (float32, multi-threaded); the random phases come from
    ``rng`` so the surface is a pure function of the seed."""
    import torch

    n = 1 << int(math.ceil(math.log2(max(rows, cols, 8))))
    kx = np.fft.fftfreq(n, d=cell).astype(np.float32)
    ky = np.fft.rfftfreq(n, d=cell).astype(np.float32)
    k = np.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)
    k[0, 0] = np.inf
    amp = k ** np.float32(-(hurst + 1.0))  # 2-D power spectrum ~ k^-(2H + 2)
    re = rng.standard_normal(size=amp.shape, dtype=np.float32)
    im = rng.standard_normal(size=amp.shape, dtype=np.float32)
    spec = torch.complex(torch.from_numpy(re * amp), torch.from_numpy(im * amp))
    surf = torch.fft.irfft2(spec, s=(n, n))[:rows, :cols].numpy()
    # Normalise so points 1 m apart differ by rms_1m (measured along x).
    lag = max(1, int(round(1.0 / cell)))
    if surf.shape[1] > lag:
        d = surf[:, lag:] - surf[:, :-lag]
        measured = float(np.sqrt(np.mean(d * d))) / (lag * cell) ** hurst
    else:
        measured = float(np.std(surf)) + 1e-12
    return (surf * (rms_1m / max(measured, 1e-12))).astype(np.float32)


def _power_law_sizes(rng, count: int, dmin: float, dmax: float, slope: float) -> np.ndarray:
    """Diameters with cumulative N(>D) ~ D^-slope between dmin and dmax (inverse transform)."""
    u = rng.uniform(size=count)
    a, b = dmin**-slope, dmax**-slope
    return (a - u * (a - b)) ** (-1.0 / slope)


EJECTA_REACH = 2.5  # ejecta blanket radius, in crater radii


def _crater_profile(r: np.ndarray, diameter, depth, fresh) -> np.ndarray:
    """Height change at normalised radius r = distance / radius: a parabolic bowl, a raised
    rim and an ejecta blanket decaying as r^-3 (degraded craters: shallower, softer rim).
    ``diameter``, ``depth`` and ``fresh`` are scalars or arrays that broadcast against ``r``."""
    rim = np.where(fresh, 0.04, 0.015) * diameter
    # Ejecta ~ r^-3, shifted to reach exactly zero at r = 2.5 so the blanket has no edge.
    edge = EJECTA_REACH**-3.0
    with np.errstate(divide="ignore"):
        ejecta = rim * np.clip((np.maximum(r, 1.0) ** -3.0 - edge) / (1 - edge), 0.0, None)
    h = np.where(r <= 1.0, -depth + (depth + rim) * r**2, ejecta)
    soften = ~np.asarray(fresh) & (np.abs(r - 1) < 0.15)  # degraded craters: a softer rim crest
    return np.where(soften, h * (1 - 0.5 * (1 - np.abs(r - 1) / 0.15)), h)


def _ejecta_brightening(r: np.ndarray) -> np.ndarray:
    """Albedo factor of a fresh crater at normalised radius r (fresh ejecta is brighter)."""
    return 1 + 0.25 * np.clip(1.5 - r, 0, 1)


# Craters are drawn together, on patches of one size per class of ejecta reach (cells); only
# those beyond the last class get a patch each.
CRATER_PATCH_CLASSES = (4, 6, 8, 11, 16, 23, 32, 45, 64)


def _crater_patches(
    x0: float, y0: float, cell: float, shape: tuple[int, int], craters: np.ndarray, fresh: np.ndarray, reach_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Many craters at once on patches of +-``reach_cells``: the flat grid index of every cell
    within a crater's ejecta reach, its height change and its log albedo factor."""
    rows, cols = shape
    m = reach_cells + 1
    offs = np.arange(-m, m + 1)
    cx, cy, d, dep = (craters[:, i] for i in range(4))
    ci = np.floor((cx - x0) / cell).astype(np.int64)[:, None] + offs  # (n, P) patch columns
    ri = np.floor((cy - y0) / cell).astype(np.int64)[:, None] + offs
    dx = (x0 + (ci + 0.5) * cell - cx[:, None]).astype(np.float32)
    dy = (y0 + (ri + 0.5) * cell - cy[:, None]).astype(np.float32)
    rr = np.hypot(dx[:, None, :], dy[:, :, None]) / (d / 2).astype(np.float32)[:, None, None]  # (n, P, P)
    inside = ((ci >= 0) & (ci < cols))[:, None, :] & ((ri >= 0) & (ri < rows))[:, :, None] & (rr < EJECTA_REACH)
    k, pr, pc = np.nonzero(inside)  # crater, patch row and column of every cell within reach
    r = rr[k, pr, pc]
    h = _crater_profile(r, d[k], dep[k], fresh[k])
    flat = ri[k, pr] * cols + ci[k, pc]
    brighten = np.log(_ejecta_brightening(r)) * fresh[k]
    return flat, h, brighten


def _add_craters(
    z: np.ndarray, albedo: np.ndarray, x0: float, y0: float, cell: float, craters: np.ndarray, fresh: np.ndarray
) -> np.ndarray:
    """Draw the craters up to the last patch class together (heights add and albedo factors
    multiply, so the order is free: one accumulation for all); return which are left."""
    reach_cells = EJECTA_REACH * craters[:, 2] / 2 / cell
    parts, lower = [], 0.0
    for upper in CRATER_PATCH_CLASSES:
        cls = np.flatnonzero((reach_cells > lower) & (reach_cells <= upper))
        per_batch = max(1, 1_000_000 // (2 * upper + 3) ** 2)  # bounds the patches' memory
        parts += [
            _crater_patches(x0, y0, cell, z.shape, craters[sel], fresh[sel], upper)
            for sel in (cls[i : i + per_batch] for i in range(0, len(cls), per_batch))
        ]
        lower = upper
    if parts:
        flat, h, brighten = (np.concatenate(p) for p in zip(*parts))
        z += np.bincount(flat, weights=h, minlength=z.size).reshape(z.shape).astype(np.float32)
        albedo *= np.exp(np.bincount(flat, weights=brighten, minlength=z.size)).reshape(z.shape)
    return reach_cells > CRATER_PATCH_CLASSES[-1]


def generate_terrain(params: TerrainParams, seed: int) -> Terrain:
    params.validate()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E55A1]))
    cell = params.cell_m
    cols = rows = max(8, int(math.ceil(params.extent_m / cell)))
    x0 = params.center_xy[0] - cols * cell / 2
    y0 = params.center_xy[1] - rows * cell / 2
    z = _fractal(rng, rows, cols, cell, params.hurst, params.rms_height_at_1m)
    # Albedo texture at half resolution (it only modulates brightness), ~8% variation.
    import cv2

    tex = _fractal(rng, (rows + 1) // 2, (cols + 1) // 2, 2 * cell, 0.6, 1.0)
    tex = cv2.resize(tex, (cols, rows), interpolation=cv2.INTER_LINEAR)
    albedo = 0.12 * (1 + 0.08 * tex / (float(np.std(tex)) + 1e-9))
    X = x0 + (np.arange(cols) + 0.5) * cell
    Y = y0 + (np.arange(rows) + 0.5) * cell
    area = params.extent_m**2

    # Craters: only those at least four cells across are drawn (level of detail).
    dmin = max(4 * cell, params.crater_min_m)
    largest = params.crater_max_fraction * params.extent_m
    dmax = max(dmin * 1.01, largest if params.crater_max_m is None else min(largest, params.crater_max_m))
    expected = params.crater_density * area * dmin**-params.crater_sfd_slope  # N(>D) per m^2 ~ D^-slope
    n_craters = int(min(rng.poisson(min(expected, 5e4)), 5e4))
    diam = np.sort(_power_law_sizes(rng, n_craters, dmin, dmax, params.crater_sfd_slope))[::-1]
    cxy = rng.uniform([x0, y0], [x0 + cols * cell, y0 + rows * cell], size=(n_craters, 2))
    fresh = rng.uniform(size=n_craters) < params.fresh_crater_fraction
    depth_ratio = np.where(fresh, rng.uniform(0.17, 0.22, n_craters), rng.uniform(0.05, 0.12, n_craters))
    craters = np.c_[cxy, diam, depth_ratio * diam]
    large = _add_craters(z, albedo, x0, y0, cell, craters, fresh)
    for (cx, cy, d, dep), fr in zip(craters[large], fresh[large]):
        reach = EJECTA_REACH * d / 2
        c0, c1 = np.searchsorted(X, [cx - reach, cx + reach])
        r0, r1 = np.searchsorted(Y, [cy - reach, cy + reach])
        if c1 <= c0 or r1 <= r0:
            continue
        rr = np.hypot(X[None, c0:c1] - cx, Y[r0:r1, None] - cy) / (d / 2)
        z[r0:r1, c0:c1] += _crater_profile(rr, d, dep, bool(fr)).astype(np.float32)
        if fr:
            albedo[r0:r1, c0:c1] *= _ejecta_brightening(rr).astype(np.float32)

    # Regional tilt (before rocks, which rest on the final surface).
    if params.tilt_deg > 0:
        az = math.radians(params.tilt_azimuth_deg)
        g = math.tan(math.radians(params.tilt_deg))
        z += (g * (math.cos(az) * (X[None, :] - params.center_xy[0]) + math.sin(az) * (Y[:, None] - params.center_xy[1]))).astype(
            np.float32
        )

    # Rocks: half-ellipsoids resting on the surface, at least two cells across.
    rmin = max(2 * cell, params.rock_min_m)
    rmax = max(rmin * 1.01, params.rock_max_m)
    expected = params.rock_density * area * (rmin / 0.1) ** -params.rock_sfd_slope
    n_rocks = int(min(rng.poisson(min(expected, params.max_rocks)), params.max_rocks))
    rd = _power_law_sizes(rng, n_rocks, rmin, rmax, params.rock_sfd_slope)
    rxy = rng.uniform([x0, y0], [x0 + cols * cell, y0 + rows * cell], size=(n_rocks, 2))
    rh = rd * rng.uniform(0.4, 0.7, n_rocks)
    base = np.zeros(n_rocks)
    for i in range(n_rocks):
        cx, cy, d, h = rxy[i, 0], rxy[i, 1], rd[i], rh[i]
        c0, c1 = np.searchsorted(X, [cx - d / 2, cx + d / 2])
        r0, r1 = np.searchsorted(Y, [cy - d / 2, cy + d / 2])
        if c1 <= c0 or r1 <= r0:
            continue
        patch = z[r0:r1, c0:c1]
        base[i] = float(patch.min())
        q = 1 - (np.hypot(X[None, c0:c1] - cx, Y[r0:r1, None] - cy) / (d / 2)) ** 2
        top = base[i] + h * np.sqrt(np.clip(q, 0, None))
        z[r0:r1, c0:c1] = np.where(q > 0, np.maximum(patch, top), patch).astype(np.float32)
        albedo[r0:r1, c0:c1] = np.where(q > 0, albedo[r0:r1, c0:c1] * 1.3, albedo[r0:r1, c0:c1])
    rocks = np.c_[rxy, rd, rh, base] if n_rocks else np.zeros((0, 5))
    return Terrain(z.astype(np.float32), np.clip(albedo, 0.02, 0.5).astype(np.float32), x0, y0, cell, rocks, craters, params)


def flat_terrain(
    extent_m: float,
    cell_m: float,
    height: float = 0.0,
    tilt_deg: float = 0.0,
    tilt_azimuth_deg: float = 0.0,
    seed: int = 0,
    texture: float = 0.3,
) -> Terrain:
    """A plane (optionally tilted) with albedo texture only: analytic ground truth for tests."""
    n = int(math.ceil(extent_m / cell_m))
    x0 = y0 = -n * cell_m / 2
    X, Y = np.meshgrid(x0 + (np.arange(n) + 0.5) * cell_m, y0 + (np.arange(n) + 0.5) * cell_m)
    az = math.radians(tilt_azimuth_deg)
    z = height + math.tan(math.radians(tilt_deg)) * (math.cos(az) * X + math.sin(az) * Y)
    rng = np.random.default_rng(seed)
    tex = _fractal(rng, n, n, cell_m, 0.5, 1.0)
    albedo = 0.12 * (1 + texture * tex / (np.std(tex) + 1e-9))
    return Terrain(
        z.astype(np.float32),
        np.clip(albedo, 0.02, 0.5).astype(np.float32),
        x0,
        y0,
        cell_m,
        np.zeros((0, 5)),
        np.zeros((0, 4)),
        TerrainParams(extent_m=n * cell_m, cell_m=cell_m),
    )


def add_rock(terrain: Terrain, x: float, y: float, diameter: float, height: float) -> None:
    """Place one half-ellipsoid rock resting on the surface (for tests and scenarios)."""
    X, Y = terrain.cell_centres()
    q = 1 - (np.hypot(X - x, Y - y) / (diameter / 2)) ** 2
    base = float(np.nanmin(np.where(q > 0, terrain.z, np.inf)))
    top = base + height * np.sqrt(np.clip(q, 0, None))
    terrain.z = np.where(q > 0, np.maximum(terrain.z, top), terrain.z).astype(np.float32)
    terrain.rocks = np.vstack([terrain.rocks, [[x, y, diameter, height, base]]])
