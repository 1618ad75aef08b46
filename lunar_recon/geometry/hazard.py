"""Gravity-aligned elevation grid and slope / roughness / step hazard over the lander footprint.

For every cell a least-squares plane is fitted to the cell elevations inside the lander
footprint (a disc).  The plane comes from ten moment images (sums of 1, x, y, z, x^2, xy,
y^2, xz, yz, z^2) summed over the disc with box filters, so the cost does not grow with the
footprint: the disc is the union of a few centred boxes (its bands), summed with running
row and column sums, O(1) per cell.  From the plane: slope, RMS residual; from the
residuals: the largest deviation (roughness) and the local step height anywhere under the
footprint.

Measured clouds are noisy (stereo depth noise grows as Z^2 / (f B)).  Given each point's
elevation uncertainty, every footprint gets bounds ``noise_sigmas`` standard deviations wide
on its relief, step and slope: HAZARD when a limit is certainly exceeded (a large boulder is
seen from far away), SAFE only when no limit can be exceeded, UNKNOWN in between (hazards of
the set size are not resolvable there).  Without uncertainties (ground truth, lidar-grade
clouds) the bounds coincide and the map is the plain geometric one.

Given the sun's direction and which points lie in shadow, shadowed cells are first lowered to
the sun ray grazing the lit terrain upsun (:mod:`lunar_recon.geometry.shadows`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .frames import normalize, rotation_aligning
from .shadows import SHADOW_CELL_FRACTION, shadow_bounded_elevation

SAFE, HAZARD, UNKNOWN = 0, 1, -1


@dataclass
class HazardParams:
    """Thresholds and grid geometry (defaults: commonly cited lander design values)."""

    slope_max_deg: float = 10.0
    roughness_max_m: float = 0.3  # largest deviation from the footprint plane (rocks, holes)
    step_max_m: float = 0.3  # local step height
    footprint_diameter_m: float = 4.0
    resolution_m: float = 0.15  # at most half the hazard size
    coverage_min: float = 0.7  # fraction of the footprint's cells that must hold data
    extent_m: float | None = None  # square grid side centred on the data; None: the points' bounding box
    max_cells: int = 4_000_000
    min_points_per_cell: int = 1
    footprint_bands: int = 3  # rectangles per half-disc approximating the footprint
    noise_sigmas: float = 3.0  # significance margin, in elevation standard deviations (when given)
    # Maps of a descent whose certain hazards fill this map's unknown cells, this one included
    # (needs the camera's pose; geometry.hazard_memory); 1: this map alone
    memory_frames: int = 3
    memory_keyframe_distance_m: float = 4.0  # camera travel between remembered maps (a footprint)

    def validate(self) -> None:
        checks = [
            (0 < self.slope_max_deg < 90, "slope_max_deg must be in (0, 90)"),
            (self.roughness_max_m > 0, "roughness_max_m must be positive"),
            (self.step_max_m > 0, "step_max_m must be positive"),
            (self.resolution_m > 0, "resolution_m must be positive"),
            (self.footprint_diameter_m >= 2 * self.resolution_m, "footprint must span at least two cells"),
            (0 < self.coverage_min <= 1, "coverage_min must be in (0, 1]"),
            (self.extent_m is None or self.extent_m > 2 * self.resolution_m, "extent_m too small"),
            (self.max_cells > 0, "max_cells must be positive"),
            (self.min_points_per_cell >= 1, "min_points_per_cell must be >= 1"),
            (self.footprint_bands >= 1, "footprint_bands must be >= 1"),
            (self.noise_sigmas >= 0, "noise_sigmas must be >= 0"),
            (self.memory_frames >= 1, "memory_frames must be >= 1 (1: no memory)"),
            (self.memory_keyframe_distance_m >= 0, "memory_keyframe_distance_m must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid hazard parameters: {msg}")


@dataclass(frozen=True)
class GridSpec:
    """Cell [row, col] covers x in [ox + col r, ox + (col+1) r), y in [oy + row r, ...)."""

    origin: tuple[float, float]
    resolution: float
    shape: tuple[int, int]  # rows, cols

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.shape
        x = self.origin[0] + (np.arange(cols) + 0.5) * self.resolution
        y = self.origin[1] + (np.arange(rows) + 0.5) * self.resolution
        return np.meshgrid(x, y)

    def centres_of(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of the centres of cells [rows, cols] (no full meshgrid)."""
        return (self.origin[0] + (np.asarray(cols) + 0.5) * self.resolution,
                self.origin[1] + (np.asarray(rows) + 0.5) * self.resolution)

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        return (int(math.floor((y - self.origin[1]) / self.resolution)),
                int(math.floor((x - self.origin[0]) / self.resolution)))


@dataclass
class LandingSite:
    row: int
    col: int
    position_grid: np.ndarray  # (x, y, z) in the gravity-aligned grid frame
    position_input: np.ndarray  # the same point in the frame of the input cloud
    clearance_m: float  # distance to the nearest hazard or unknown cell
    slope_deg: float
    roughness_m: float


@dataclass
class HazardMap:
    """Grids indexed [row, col] = [y, x] as nav_msgs/OccupancyGrid (cell [0, 0] at ``origin``)."""

    grid: GridSpec
    elevation_m: np.ndarray
    slope_deg: np.ndarray
    roughness_m: np.ndarray  # largest |residual| under the footprint
    roughness_rms_m: np.ndarray
    step_m: np.ndarray
    coverage: np.ndarray
    hazard: np.ndarray  # int8: SAFE 0, HAZARD 1, UNKNOWN -1
    cost: np.ndarray  # int8: 0 safe .. 100 hazard, -1 unknown (OccupancyGrid values)
    R_grid_from_input: np.ndarray
    params: HazardParams
    landing_site: LandingSite | None = None
    extra: dict = field(default_factory=dict)

    @property
    def origin(self) -> tuple[float, float]:
        return self.grid.origin

    @property
    def resolution(self) -> float:
        return self.grid.resolution

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape


# ---- footprint as a union of rectangles -------------------------------------------------------
@functools.lru_cache(maxsize=64)  # the same few footprints, frame after frame
def footprint_rectangles(radius_cells: float, bands: int = 3) -> tuple[tuple[int, int, int, int], ...]:
    """Disjoint rectangles (dy0, dy1, dx0, dx1), inclusive offsets, whose union approximates a
    disc of ``radius_cells``: the central band plus mirrored bands above and below."""
    r = max(radius_cells, 0.5)
    rmax = int(math.floor(r))
    edges = [int(e) for e in np.unique(np.round(np.linspace(0, rmax + 1, bands + 1)))]
    rects = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        mid = (lo + hi - 1) / 2.0
        half_w = int(math.floor(math.sqrt(max(r * r - mid * mid, 0.0))))
        if lo == 0:
            rects.append((-(hi - 1), hi - 1, -half_w, half_w))
        else:
            rects.append((lo, hi - 1, -half_w, half_w))
            rects.append((-(hi - 1), -lo, -half_w, half_w))
    return tuple(rects)


@functools.lru_cache(maxsize=64)
def footprint_boxes(rects: tuple[tuple[int, int, int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The footprint's bands as centred boxes (half height, half width), widest first: their
    union is the footprint, since each band is narrower than the bands inside it."""
    half_height: dict[int, int] = {}
    for dy0, dy1, _, dx1 in rects:
        half_height[dx1] = max(half_height.get(dx1, 0), abs(dy0), abs(dy1))
    return tuple(sorted(((g, w) for w, g in half_height.items()), key=lambda box: -box[1]))


def _box(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sum over a centred width x height box; cells off the grid count as 0."""
    return cv2.boxFilter(img, -1, (width, height), normalize=False, borderType=cv2.BORDER_CONSTANT)


def footprint_sum(img: np.ndarray, boxes) -> np.ndarray:
    """Sum of ``img`` (H x W x up to 4 channels: OpenCV's fast path) over the footprint placed
    on each cell, cells off the grid counting as 0.  Widest box first: the footprint is box 0,
    plus for each taller, narrower box k the rows it adds beyond box k-1's height -- the box
    less the same width at box k-1's height.  OpenCV's box filter keeps running row and column
    sums in one pass, O(1) per cell, so the cost does not grow with the footprint."""
    g, w = boxes[0]
    out = _box(img, 2 * w + 1, 2 * g + 1)
    for (g_inner, _), (g, w) in zip(boxes[:-1], boxes[1:]):
        out += _box(img, 2 * w + 1, 2 * g + 1)
        out -= _box(img, 2 * w + 1, 2 * g_inner + 1)
    return out


def footprint_max(img: np.ndarray, boxes) -> np.ndarray:
    """Largest value of a non-negative float32 ``img`` under the footprint placed on each cell
    (cells off the grid count as 0): the largest of one dilation per box."""
    out = None
    for g, w in boxes:
        r = cv2.dilate(img, np.ones((2 * g + 1, 2 * w + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0)
        out = r if out is None else np.maximum(out, r, out=out)
    return out


# ---- the map ------------------------------------------------------------------------------------
def grid_for_points(xy: np.ndarray, params: HazardParams) -> GridSpec:
    r = params.resolution_m
    if params.extent_m is not None:
        cx, cy = np.median(xy, axis=0)
        half = params.extent_m / 2
        lo, hi = np.array([cx - half, cy - half]), np.array([cx + half, cy + half])
    else:
        # Column-wise reductions: much faster than axis=0 on an (N, 2) array.
        lo = np.array([xy[:, 0].min(), xy[:, 1].min()])
        hi = np.array([xy[:, 0].max(), xy[:, 1].max()])
        if (hi - lo).prod() / r**2 > params.max_cells and len(xy) > 100:
            lo, hi = np.percentile(xy, 0.5, axis=0), np.percentile(xy, 99.5, axis=0)  # outliers
    lo = np.floor(lo / r) * r
    cols = max(1, int(math.ceil((hi[0] - lo[0]) / r + 1e-9)))
    rows = max(1, int(math.ceil((hi[1] - lo[1]) / r + 1e-9)))
    if rows * cols > params.max_cells:
        raise ValueError(f"hazard grid of {rows}x{cols} cells exceeds max_cells={params.max_cells}: "
                         "set extent_m or a coarser resolution_m")
    return GridSpec((float(lo[0]), float(lo[1])), r, (rows, cols))


@dataclass
class CellGrid:
    """Per-cell aggregates of gravity-aligned points (grid arrays, NaN where too few points)."""

    x: np.ndarray  # centroid
    y: np.ndarray
    z: np.ndarray
    count: np.ndarray
    variance: np.ndarray | None = None  # of the cell's mean elevation
    shadow_share: np.ndarray | None = None  # fraction of the cell's points in shadow


def elevation_grid(points_grid_frame: np.ndarray, grid: GridSpec, min_points: int = 1,
                   variance: np.ndarray | None = None, shadowed: np.ndarray | None = None) -> CellGrid:
    """Per-cell centroid (x, y, z) of gravity-aligned points and point count; NaN where fewer
    than ``min_points``.  With per-point elevation ``variance`` also the variance of each
    cell's mean elevation (independent points: sum of variances / n^2); with per-point
    ``shadowed`` flags the share of each cell's points in shadow -- in the same pass."""
    p = points_grid_frame
    rows, cols = grid.shape
    col = np.floor((p[:, 0] - grid.origin[0]) / grid.resolution).astype(np.int64)
    row = np.floor((p[:, 1] - grid.origin[1]) / grid.resolution).astype(np.int64)
    if len(col) and col.min() >= 0 and col.max() < cols and row.min() >= 0 and row.max() < rows:
        # the usual case (grid made from these points): skip the mask and the copies
        flat, inside, var, shade = row * cols + col, p, variance, shadowed
    else:
        ok = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        flat, inside = row[ok] * cols + col[ok], p[ok]
        var = None if variance is None else variance[ok]
        shade = None if shadowed is None else shadowed[ok]
    n = np.bincount(flat, minlength=rows * cols).astype(np.float64)
    valid = n >= min_points

    def cell_mean(weights, power=1):
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.bincount(flat, weights=weights, minlength=rows * cols)
            return np.where(valid, total / n**power, np.nan).reshape(rows, cols)

    return CellGrid(*(cell_mean(inside[:, k]) for k in range(3)), n.reshape(rows, cols),
                    None if var is None else cell_mean(var, 2), None if shade is None else cell_mean(shade))


def hazard_map(points: np.ndarray, up: np.ndarray, params: HazardParams | None = None,
               grid: GridSpec | None = None, elevation_sigma: np.ndarray | None = None,
               shadowed: np.ndarray | None = None, sun: np.ndarray | None = None) -> HazardMap:
    """Hazard map of an N x 3 (or organised H x W x 3) cloud in any frame, given gravity 'up'
    in that frame.  The grid lives in the gravity-aligned frame obtained by the smallest
    rotation taking ``up`` to +z (so with up = +z the grid's x, y are the points' x, y).
    ``grid`` pins the cell layout (e.g. to score a prediction on the ground truth's grid).
    ``elevation_sigma``: optional 1-sigma vertical uncertainty of each point (m), e.g. from
    :func:`lunar_recon.geometry.stereo.stereo_elevation_sigma`; hazards must then clear the
    noise by ``params.noise_sigmas`` standard deviations (see the module docstring).
    ``shadowed`` (one flag per point, e.g. :func:`~lunar_recon.geometry.shadows.shadow_mask` of
    the image the points came from) and ``sun`` (direction toward the sun, same frame): shadowed
    cells are lowered to the sun ray grazing the terrain upsun
    (:func:`~lunar_recon.geometry.shadows.shadow_bounded_elevation`)."""
    params = params or HazardParams()
    params.validate()
    R = rotation_aligning(normalize(up), np.array([0.0, 0.0, 1.0]))
    p = np.asarray(points).reshape(-1, 3)
    finite = np.isfinite(p[:, 0] + p[:, 1] + p[:, 2])  # one pass instead of an axis reduction
    point_var = None
    if elevation_sigma is not None:
        sig = np.asarray(elevation_sigma, dtype=np.float64).reshape(-1)
        if sig.shape[0] != p.shape[0]:
            raise ValueError(f"elevation_sigma has {sig.shape[0]} values for {p.shape[0]} points")
        finite &= np.isfinite(sig)
        point_var = sig**2
    in_shadow = None
    if shadowed is not None and sun is not None:
        in_shadow = np.asarray(shadowed, dtype=bool).reshape(-1)
        if in_shadow.shape[0] != p.shape[0]:
            raise ValueError(f"shadowed has {in_shadow.shape[0]} flags for {p.shape[0]} points")
    if not finite.all():
        keep = np.flatnonzero(finite)
        p = p.take(keep, axis=0)  # ~5x faster than boolean indexing of (N, 3) rows
        point_var = None if point_var is None else point_var.take(keep)
        in_shadow = None if in_shadow is None else in_shadow.take(keep)
    if len(p) < 3:
        raise ValueError(f"hazard map needs at least 3 finite points, got {len(p)}")
    q = p if np.array_equal(R, np.eye(3)) else p @ R.T.astype(p.dtype)
    if grid is None:
        grid = grid_for_points(q[:, :2], params)
    res = grid.resolution
    k = params.noise_sigmas
    if in_shadow is not None and not in_shadow.any():
        in_shadow = None  # nothing to bound
    cells = elevation_grid(q, grid, params.min_points_per_cell, point_var, in_shadow)
    X, Y, Z = cells.x, cells.y, cells.z
    cell_sigma = np.zeros(grid.shape) if cells.variance is None else np.sqrt(np.nan_to_num(cells.variance, nan=0.0))
    if cells.shadow_share is not None:
        shadowed_cells = np.nan_to_num(cells.shadow_share) >= SHADOW_CELL_FRACTION
        Z = shadow_bounded_elevation(Z, shadowed_cells, res, R @ normalize(sun))
    valid = np.isfinite(Z)

    # Moments over the footprint, coordinates relative to the grid centre and the mean
    # elevation for conditioning.  They stay float64: the covariances are differences of raw
    # moments (E[xx] - E[x]^2), and in float32 that cancellation cost up to 1.6 cm of RMS
    # residual on a 120 m field.
    x0 = grid.origin[0] + grid.shape[1] * res / 2
    y0 = grid.origin[1] + grid.shape[0] * res / 2
    z0 = float(np.mean(Z, where=valid)) if valid.any() else 0.0
    x = np.where(valid, X - x0, 0.0)
    y = np.where(valid, Y - y0, 0.0)
    z = np.where(valid, Z - z0, 0.0)
    rects = footprint_rectangles(params.footprint_diameter_m / 2 / res, params.footprint_bands)
    boxes = footprint_boxes(rects)
    # The cell count in float32 (its sums are exact small integers), the other nine moments
    # (and the summed cell variance, when given) as float64 images of up to four channels
    # (OpenCV's fast path): one filter pass per 1-4 moments.
    names = [["x", "y", "z", "xx"], ["xy", "yy", "zz", "xz"], ["yz"]]
    planes = dict(x=x, y=y, z=z, xx=x * x, xy=x * y, yy=y * y, zz=z * z, xz=x * z, yz=y * z)
    if point_var is not None:
        names[2].append("vv")
        planes["vv"] = cell_sigma**2
    S = {"n": footprint_sum(valid.astype(np.float32), boxes).astype(np.float64)}
    for group in names:
        summed = footprint_sum(cv2.merge([planes[k] for k in group]) if len(group) > 1 else planes[group[0]], boxes)
        S.update({k: summed[..., i] if summed.ndim == 3 else summed for i, k in enumerate(group)})
    n = S["n"]
    coverage = (n / sum((dy1 - dy0 + 1) * (dx1 - dx0 + 1) for dy0, dy1, dx0, dx1 in rects)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_n = 1.0 / n
        mx, my, mz = S["x"] * inv_n, S["y"] * inv_n, S["z"] * inv_n

        def centred(moment, m1, m2):  # covariance from a raw moment: E[uv] - E[u] E[v]
            c = S[moment] * inv_n
            c -= m1 * m2
            return c

        cxx, cyy, cxy = centred("xx", mx, mx), centred("yy", my, my), centred("xy", mx, my)
        cxz, cyz, czz = centred("xz", mx, mz), centred("yz", my, mz), centred("zz", mz, mz)
        det = cxx * cyy - cxy * cxy
        a = (cxz * cyy - cyz * cxy) / det
        b = (cyz * cxx - cxz * cxy) / det
        rms = np.sqrt(np.clip(czz - a * cxz - b * cyz, 0.0, None))
        # Each cell's deviation from its own footprint plane, then the largest one under
        # every footprint (max filter over the same rectangles).
        relief = np.where(valid, z - (mz + a * (x - mx) + b * (y - my)), np.nan)
        grad = np.sqrt(a * a + b * b)
        slope = np.degrees(np.arctan(grad))
        if point_var is None:
            slope_margin = np.zeros(grid.shape)
        else:  # least-squares gradient variance, Var(a) + Var(b) = mean var / n * tr(C^-1), in degrees
            slope_sigma = np.degrees(np.sqrt(S["vv"] * inv_n * inv_n * (cxx + cyy) / det) / (1.0 + grad**2))
            slope_margin = k * np.nan_to_num(slope_sigma, nan=np.inf)
    relief_abs = np.nan_to_num(np.abs(relief), nan=0.0, posinf=0.0)
    margin = k * cell_sigma
    rough = footprint_max(relief_abs.astype(np.float32), boxes)
    if point_var is None:
        rough_lo = rough_hi = rough
    else:  # bounds: the largest relief that is certainly there / that may be there
        rough_lo = footprint_max(np.clip(relief_abs - margin, 0.0, None).astype(np.float32), boxes)
        rough_hi = footprint_max((relief_abs + margin).astype(np.float32), boxes)
    # Local step: range of the detrended relief over 3x3 cells, then its largest value under the footprint.
    hi = cv2.dilate(np.where(valid, relief, -np.inf).astype(np.float32), np.ones((3, 3), np.uint8),
                    borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    lo = cv2.erode(np.where(valid, relief, np.inf).astype(np.float32), np.ones((3, 3), np.uint8),
                   borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)
    local_step = np.where(valid & np.isfinite(hi) & np.isfinite(lo), hi - lo, 0.0).astype(np.float32)
    step = footprint_max(local_step, boxes)
    if point_var is None:
        step_lo = step_hi = step
    else:
        step_margin = math.sqrt(2.0) * cv2.dilate(margin.astype(np.float32), np.ones((3, 3), np.uint8))
        step_lo = footprint_max(np.clip(local_step - step_margin, 0.0, None), boxes)
        step_hi = footprint_max(local_step + step_margin, boxes)

    # Three-way decision under noise: HAZARD when a limit is certainly exceeded, SAFE only when
    # no limit can be exceeded, UNKNOWN in between (a lander must not be sent to a maybe).
    known = (coverage >= params.coverage_min) & np.isfinite(slope) & (det > 1e-12)
    is_hazard = known & ((slope - slope_margin > params.slope_max_deg) | (rough_lo > params.roughness_max_m)
                         | (step_lo > params.step_max_m))
    is_safe = known & ~is_hazard & (slope + slope_margin <= params.slope_max_deg) \
        & (rough_hi <= params.roughness_max_m) & (step_hi <= params.step_max_m)
    hazard = np.full(grid.shape, UNKNOWN, np.int8)
    hazard[is_safe] = SAFE
    hazard[is_hazard] = HAZARD
    with np.errstate(invalid="ignore"):  # graded cost of a safe cell: its worst case against the limits
        ratio = np.fmax(np.fmax((slope + slope_margin) / params.slope_max_deg, rough_hi / params.roughness_max_m),
                        step_hi / params.step_max_m)
    cost = np.full(grid.shape, -1, np.int8)
    cost[is_safe] = np.clip(np.round(np.nan_to_num(ratio[is_safe]) * 99), 0, 99).astype(np.int8)
    cost[is_hazard] = 100

    f32 = lambda arr: np.where(known, arr, np.nan).astype(np.float32)  # noqa: E731
    hmap = HazardMap(
        grid=grid, elevation_m=np.where(valid, Z, np.nan).astype(np.float32), slope_deg=f32(slope),
        roughness_m=f32(rough), roughness_rms_m=f32(rms), step_m=f32(step), coverage=coverage,
        hazard=hazard, cost=cost, R_grid_from_input=R, params=params,
        extra={"uncertain": known & ~is_hazard & ~is_safe,
               "slope_sigma_deg": np.where(known, slope_margin / max(k, 1e-9), np.nan).astype(np.float32),
               # how far a cell's relief must clear a limit to be certain: where it exceeds the
               # roughness limit itself, nothing there can be called safe
               "relief_margin_m": np.where(valid, margin, np.nan).astype(np.float32)},
    )
    hmap.landing_site = choose_landing_site(hmap)
    return hmap


def median_relief_margin(hmap: HazardMap, cells: np.ndarray | None = None) -> float:
    """Median relief margin (m) of the map's cells with data (or of ``cells`` among them): how
    far relief must clear a limit for the map to be certain -- its resolving power, which
    grows with range squared for stereo.  NaN without data."""
    margin = hmap.extra.get("relief_margin_m")
    if margin is None:
        return float("nan")
    use = np.isfinite(margin) if cells is None else np.isfinite(margin) & cells
    return float(np.median(margin[use])) if use.any() else float("nan")


def grid_origin_pose(hmap: HazardMap) -> tuple[np.ndarray, np.ndarray]:
    """Pose of cell [0, 0]'s corner in the input (e.g. camera) frame, lying on the
    gravity-aligned ground plane: (position, quaternion x y z w), as OccupancyGrid.info.origin."""
    from .frames import matrix_to_quaternion

    ground = float(np.nanmedian(hmap.elevation_m)) if np.isfinite(hmap.elevation_m).any() else 0.0
    R_in_from_grid = hmap.R_grid_from_input.T
    pos = R_in_from_grid @ np.array([hmap.origin[0], hmap.origin[1], ground])
    return pos, matrix_to_quaternion(R_in_from_grid)


def cells_of_points(hmap: HazardMap, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid (row, col) of each point given in the input frame, and whether it is on the grid."""
    p = np.asarray(points, dtype=np.float32)
    q = p @ hmap.R_grid_from_input.T.astype(np.float32)
    finite = np.isfinite(q[..., 0] + q[..., 1] + q[..., 2])  # one pass; an axis=-1 reduction is ~5x slower
    q = np.where(finite[..., None], q, 0.0)
    col = np.floor((q[..., 0] - hmap.origin[0]) / hmap.resolution).astype(np.int64)
    row = np.floor((q[..., 1] - hmap.origin[1]) / hmap.resolution).astype(np.int64)
    ok = finite & (row >= 0) & (row < hmap.shape[0]) & (col >= 0) & (col < hmap.shape[1])
    return np.where(ok, row, 0), np.where(ok, col, 0), ok


def choose_landing_site(hmap: HazardMap) -> LandingSite | None:
    """The safe cell farthest from any hazard or unknown cell (outside the grid counts as
    unknown); ties go to the lowest cost."""
    safe = hmap.hazard == SAFE
    if not safe.any():
        return None
    padded = np.pad(safe.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    score = dist - hmap.cost.astype(np.float32) * 1e-3  # lower cost breaks ties
    score[~safe] = -np.inf
    row, col = np.unravel_index(int(np.argmax(score)), safe.shape)
    pos = np.array([*hmap.grid.centres_of(row, col), hmap.elevation_m[row, col]], dtype=np.float64)
    if not np.isfinite(pos[2]):  # a safe footprint centred on an empty cell: use the plane height
        pos[2] = float(np.nanmedian(hmap.elevation_m))
    return LandingSite(int(row), int(col), pos, hmap.R_grid_from_input.T @ pos,
                       float(dist[row, col] * hmap.resolution), float(hmap.slope_deg[row, col]),
                       float(hmap.roughness_m[row, col]))
