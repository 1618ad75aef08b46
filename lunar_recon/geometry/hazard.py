"""The landing-site safety map: every cell of a gravity-aligned grid is a candidate centre of
the lander, judged as hazard-detection-and-avoidance systems judge a site (ALHAT, the open
``pydem`` code).

1. **Cell elevation, robustly.**  Points are binned into cells of ``resolution_m``; a cell's
   height is the *median* of its points (wild stereo matches do not move it) and its variance
   comes from the depth noise model of its points (``elevation_sigma``, which the pipeline
   widens where the network is less confident) plus the spread of its points (their median
   absolute deviation: wild points widen it no more than they move the median).
2. **The site's plane.**  A least-squares plane through the cell heights under the footprint
   disc (diameter ``footprint_diameter_m``) centred on the site, each cell weighted by its
   inverse height variance where heights are measured; its tilt against gravity is the site's
   slope.  The sums come from ten moment images summed over the footprint with box
   filters (the disc is the union of a few centred boxes), so the cost does not grow with it.
3. **The site's roughness.**  The largest height of any cell inside the same footprint above
   that plane, and the largest depth below it (holes) -- each site against its own plane
   (:mod:`lunar_recon.geometry.site_relief`).
4. **A hazard probability per site.**
   ``P(hazard) = 1 - P(slope <= limit) P(height above <= limit) P(depth below <= limit)`` under
   a Gaussian model: the slope with the plane's standard deviation, the height above (depth
   below) as ``Phi(max_j (h_j - limit) / sigma_j)`` over the footprint's cells j, each cell
   judged on its own sigma (a poorly measured cell that sets the largest height does not borrow
   the precision of the rest); SAFE below ``safe_below``, HAZARD at or above ``hazard_above``, UNKNOWN in
   between and where the footprint has too little data.  Without uncertainties (ground truth)
   the map is the plain geometric one: P is 0 or 1.
5. **Calling hazards under a relief prior.**  With ``relief_prior_m``, HAZARD is called on a
   second probability with each cell's height judged on its posterior under a zero-mean
   Gaussian prior of that sigma (the measurement shrunk by k = prior^2 / (prior^2 + sigma^2),
   its sigma by sqrt(k)): the largest of many noisy heights is no rock.  SAFE stays on the
   measurements alone, which cannot rule out a rock hidden in that noise.  The published cost
   is ``100 P`` of one value per site whose thresholds give these classes; -1 only where there
   is no data.

Given the sun's direction and which points lie in shadow, shadowed cells are first lowered to
the sun ray grazing the lit terrain upsun (:mod:`lunar_recon.geometry.shadows`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field

import cv2
import numba
import numpy as np
from scipy.special import ndtr

from .cell_statistics import cell_ranks
from .frames import normalize, quaternion_to_matrix, rotation_aligning
from .parallel import balanced_ranges, check_threads, run_ranges
from .shadows import SHADOW_CELL_FRACTION, shadow_bounded_elevation
from .site_planes import site_planes
from .site_relief import SIGMA_FLOOR, site_relief

SAFE, HAZARD, UNKNOWN = 0, 1, -1


@dataclass
class HazardParams:
    """Limits, decision thresholds and grid geometry (defaults: commonly cited lander design values)."""

    slope_max_deg: float = 10.0  # largest safe tilt of the site's plane against gravity
    roughness_max_m: float = 0.3  # largest safe height above (or depth below) the site's plane
    footprint_diameter_m: float = 4.0
    resolution_m: float = 0.15  # at most half the hazard size; 0: two ground pixels at the median range
    coverage_min: float = 0.7  # fraction of the footprint's cells that must hold data
    extent_m: float | None = None  # square grid side centred on the data; None: the points' bounding box
    max_cells: int = 4_000_000
    min_points_per_cell: int = 1
    footprint_bands: int = 3  # rectangles per half-disc approximating the footprint
    # A site is certified SAFE when its hazard probability is below this; 0: the depth source's
    # own (its card's: the largest probability whose false-safe share on calibration data stays
    # within FALSE_SAFE_BUDGET at 95 % confidence: fit_safe_threshold), else 0.05
    safe_below: float = 0.0
    # and called a HAZARD at or above this (UNKNOWN in between); 0: the depth source's own (its
    # card's, the best-F1 threshold on calibration data: hazard_threshold), else 0.5
    hazard_above: float = 0.0
    # Maps of a descent whose hazards fill this map's unknown cells, this one included
    # (needs the camera's pose; geometry.hazard_memory); 1: this map alone
    memory_frames: int = 3
    memory_keyframe_distance_m: float = 4.0  # camera travel between remembered maps (a footprint)
    # A landing site is proposed only this far (m) from any cell not certified safe: room for the
    # touchdown dispersion and for the map's errors at the edge of safe ground
    landing_margin_m: float = 1.0
    # Measured heights only (the truth keeps every cell): for the relief, each cell clipped to the
    # range of its 8 neighbours, where cells are at most half the roughness limit -- a rock tall
    # enough to matter then spans more than one cell, so a lone cell standing out is a depth
    # outlier, which would otherwise make every site whose footprint holds it hazardous
    despike: bool = True
    # Measured heights only: a site is called a HAZARD on its probability with each cell's height
    # above (below) the site's plane judged on its posterior under a zero-mean Gaussian prior of
    # this sigma (m), the terrain's relief about a site's plane (site_relief.site_relief), so that
    # the largest of many noisy heights is no rock; it is certified SAFE on the measurements
    # alone, which cannot hide a rock in noise.  0: both on the measurements alone
    relief_prior_m: float = 0.1

    def validate(self) -> None:
        checks = [
            (0 < self.slope_max_deg < 90, "slope_max_deg must be in (0, 90)"),
            (self.roughness_max_m > 0, "roughness_max_m must be positive"),
            (self.resolution_m >= 0, "resolution_m must be positive (0: follow the ground sample distance)"),
            (self.footprint_diameter_m > 0, "footprint_diameter_m must be positive"),
            (
                self.footprint_diameter_m >= 2 * self.resolution_m,
                f"footprint must span at least two cells (footprint_diameter_m {self.footprint_diameter_m} m, "
                f"resolution_m {self.resolution_m} m)",
            ),
            (0 < self.coverage_min <= 1, "coverage_min must be in (0, 1]"),
            (self.extent_m is None or self.extent_m > 2 * self.resolution_m, "extent_m too small"),
            (self.max_cells > 0, "max_cells must be positive"),
            (self.min_points_per_cell >= 1, "min_points_per_cell must be >= 1"),
            (self.footprint_bands >= 1, "footprint_bands must be >= 1"),
            (
                0 <= self.safe_below <= 1
                and 0 <= self.hazard_above <= 1
                and (self.hazard_above == 0 or self.safe_below <= self.hazard_above),
                "need 0 <= safe_below <= hazard_above <= 1 (hazard probabilities; 0: the depth source's own)",
            ),
            (self.memory_frames >= 1, "memory_frames must be >= 1 (1: no memory)"),
            (self.memory_keyframe_distance_m >= 0, "memory_keyframe_distance_m must be >= 0"),
            (self.landing_margin_m >= 0, "landing_margin_m must be >= 0"),
            (self.relief_prior_m >= 0, "relief_prior_m must be >= 0 (0: no prior)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid hazard parameters: {msg}")


class HazardGridError(ValueError):
    """No meaningful hazard map at these settings (cells coarser than the footprint, or more
    cells than ``max_cells``): the reconstruction goes on without one and says why."""


DEFAULT_HAZARD_ABOVE = 0.5
DEFAULT_SAFE_BELOW = 0.05
FALSE_SAFE_BUDGET = 0.01  # the share of certified sites that may be hazards, for fit_safe_threshold


def safe_threshold(params: HazardParams, source_threshold: float | None = None) -> float:
    """The probability below which a site is certified SAFE: ``params.safe_below`` when set,
    else the depth source's own (``source_threshold``, e.g. its card's), else 0.05."""
    if params.safe_below > 0:
        return params.safe_below
    return source_threshold if source_threshold else DEFAULT_SAFE_BELOW


def safe_threshold_at_range(pooled: float, by_range, range_m: float) -> float:
    """A depth source's safe threshold at a frame's median range: the ``pooled`` one, tightened
    to its band's from ``by_range`` (``[(upper range m, threshold), ...]`` ascending, fitted so
    that the false-safe budget holds within each band, not only over all frames).  A band never
    loosens it: a band holds fewer calibration frames, and its own bound is the noisier one."""
    for upper, threshold in by_range or ():
        if range_m < float(upper):
            return min(pooled, float(threshold))
    return pooled


def fit_safe_thresholds_by_range(
    cluster_counts: np.ndarray, cluster_ranges: np.ndarray, table, band_edges_m, min_clusters: int = 4, **fit
) -> list[tuple[float, float]]:
    """:func:`fit_safe_threshold` within each range band ``[edge_k, edge_k+1)`` that holds at
    least ``min_clusters`` calibration clusters (``cluster_counts`` (C, 3, bins), each at its
    median range ``cluster_ranges``): ``[(upper edge, threshold), ...]`` for
    :func:`safe_threshold_at_range`.  Bands without enough clusters are left out (the pooled
    threshold serves them)."""
    counts = np.asarray(cluster_counts, dtype=np.float64)
    ranges = np.asarray(cluster_ranges, dtype=np.float64)
    out = []
    for lo, hi in zip(band_edges_m[:-1], band_edges_m[1:]):
        inside = (ranges >= lo) & (ranges < hi)
        if inside.sum() >= min_clusters:
            out.append((float(hi), fit_safe_threshold(counts[inside], table, **fit)))
    return out


def hazard_threshold(params: HazardParams, source_threshold: float | None = None) -> float:
    """The probability at which a site is called a HAZARD: ``params.hazard_above`` when set,
    else the depth source's own (``source_threshold``, e.g. its card's), else 0.5; never below
    the safe threshold."""
    if params.hazard_above > 0:
        return params.hazard_above
    return max(source_threshold if source_threshold else DEFAULT_HAZARD_ABOVE, safe_threshold(params))


def params_for_range(params: HazardParams, range_m: float, fx: float) -> HazardParams:
    """``params`` with ``resolution_m`` 0 resolved to two ground pixels at ``range_m`` (the
    ground sample distance of a camera of focal length ``fx`` px), at least 1 cm.  Raises
    :class:`HazardGridError` when the cells come out coarser than half the footprint: a
    lander-footprint map is meaningless at that range."""
    if params.resolution_m > 0:
        return params
    if not (np.isfinite(range_m) and range_m > 0 and fx > 0):
        raise HazardGridError(f"no hazard map: the cell size follows the range, and the range is {range_m}")
    resolution = max(2.0 * range_m / fx, 0.01)
    if params.footprint_diameter_m < 2 * resolution:
        raise HazardGridError(
            f"no hazard map: at {range_m:.4g} m range two ground pixels span {resolution:.3g} m, "
            f"coarser than half the {params.footprint_diameter_m:g} m footprint (a lander-size "
            "hazard is not resolvable there)"
        )
    return dataclasses.replace(params, resolution_m=resolution)


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
        return (
            self.origin[0] + (np.asarray(cols) + 0.5) * self.resolution,
            self.origin[1] + (np.asarray(rows) + 0.5) * self.resolution,
        )

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        return (int(math.floor((y - self.origin[1]) / self.resolution)), int(math.floor((x - self.origin[0]) / self.resolution)))

    def cells_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col) of the cells holding points (x, y) and whether each is on the grid (off
        the grid, or not finite: row and col 0)."""
        with np.errstate(invalid="ignore"):
            col = np.floor((x - self.origin[0]) / self.resolution)
            row = np.floor((y - self.origin[1]) / self.resolution)
            on = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        return np.where(on, row, 0).astype(np.int64), np.where(on, col, 0).astype(np.int64), on


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
    """Grids indexed [row, col] = [y, x] as nav_msgs/OccupancyGrid (cell [0, 0] at ``origin``);
    per-site layers are NaN where the footprint has too little data."""

    grid: GridSpec
    elevation_m: np.ndarray  # cell height (median of its points), NaN without points
    slope_deg: np.ndarray  # tilt of the site's plane against gravity
    roughness_m: np.ndarray  # largest height above / depth below the site's plane inside the footprint
    roughness_rms_m: np.ndarray  # RMS residual of the cells about the site's plane
    coverage: np.ndarray
    hazard: np.ndarray  # int8: SAFE 0, HAZARD 1, UNKNOWN -1 (no data, or between the thresholds)
    cost: np.ndarray  # int8: round(100 P), -1 without data (OccupancyGrid values): its thresholds give ``hazard``
    R_grid_from_input: np.ndarray
    params: HazardParams
    landing_site: LandingSite | None = None
    probability: np.ndarray | None = None  # float32 P(hazard) per site, NaN without data
    elevation_sigma_m: np.ndarray | None = None  # 1-sigma of each cell's height, NaN without points
    # float32 P(hazard) per site with each cell's relief judged under the relief prior, the one
    # HAZARD is called on (None: ``probability`` is); NaN without data.  ``cost`` then carries it
    # where it calls a hazard, ``probability`` where that certifies the site, else the call
    # probability raised to the safe threshold
    call_probability: np.ndarray | None = None
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
        raise HazardGridError(
            f"hazard grid of {rows}x{cols} cells exceeds max_cells={params.max_cells}: "
            "set extent_m or a coarser resolution_m (0: follow the ground sample distance)"
        )
    return GridSpec((float(lo[0]), float(lo[1])), r, (rows, cols))


@dataclass
class CellGrid:
    """Per-cell statistics of gravity-aligned points (grid arrays, NaN where too few points)."""

    x: np.ndarray  # the cell's median-elevation point
    y: np.ndarray
    z: np.ndarray  # median elevation of the cell's points
    count: np.ndarray
    variance: np.ndarray | None = None  # of the cell's elevation: noise model and spread of its points
    shadow_share: np.ndarray | None = None  # fraction of the cell's points in shadow


@numba.njit(cache=True, nogil=True)
def _cell_indices(points, origin, resolution, rows, cols):  # pragma: no cover - compiled
    # each point's flat cell index, the arithmetic in the points' precision as numpy's is
    # (floor((x - x0) / resolution)), and whether it lies on the grid
    n = points.shape[0]
    flat = np.empty(n, np.int64)
    on_grid = np.empty(n, np.bool_)
    for i in range(n):
        col = np.int64(np.floor((points[i, 0] - origin[0]) / resolution))
        row = np.int64(np.floor((points[i, 1] - origin[1]) / resolution))
        on_grid[i] = 0 <= col < cols and 0 <= row < rows
        flat[i] = row * cols + col
    return flat, on_grid


@numba.njit(cache=True, nogil=True)
def _representatives(points, cells, lower, upper, size):  # pragma: no cover - compiled
    # each kept cell's representative point, the mean of its two middle points (in the points'
    # precision; the halving is exact); NaN elsewhere
    rep = np.full((3, size), np.nan)
    for j in range(cells.shape[0]):
        for k in range(3):
            rep[k, cells[j]] = (points[lower[j], k] + points[upper[j], k]) * 0.5
    return rep


# Stereo errors of neighbouring pixels are correlated (they share a matching window): a cell's
# points average its noise down by at most this many independent samples.
INDEPENDENT_POINTS_PER_CELL = 4


def elevation_grid(
    points_grid_frame: np.ndarray,
    grid: GridSpec,
    min_points: int = 1,
    variance: np.ndarray | None = None,
    shadowed: np.ndarray | None = None,
    robust_spread: bool = True,
    independent_points: int = INDEPENDENT_POINTS_PER_CELL,
    robust_noise: bool = True,
    threads: int = 1,
) -> CellGrid:
    """Per-cell median elevation of gravity-aligned points and their count; NaN where fewer
    than ``min_points``.  With per-point elevation ``variance`` also the variance of each cell's
    height: the points' median noise variance (``robust_noise``, as the height is their median:
    a few unmatched points in a matched cell neither move it nor widen it; else their mean) over
    at most ``independent_points`` samples (their stereo errors are correlated), plus the
    squared spread of its points over their count:
    1.4826 x their median absolute deviation (``robust_spread``: wild points on one side widen
    it no more than they move the median), else their interquartile range / 1.349 (wide where
    a cell straddles an edge); with per-point ``shadowed`` flags the share of each cell's points
    in shadow.  ``threads``: the cells' order statistics are split over this many threads."""
    p = points_grid_frame
    rows, cols = grid.shape
    # the origin and cell size in the points' precision, as numpy's arithmetic with Python floats
    origin, resolution = np.asarray(grid.origin, dtype=p.dtype), p.dtype.type(grid.resolution)
    flat, ok = _cell_indices(p, origin, resolution, rows, cols)
    if len(flat) and ok.all():
        # the usual case (grid made from these points): skip the mask and the copies
        inside, var, shade = p, variance, shadowed
    else:
        flat, inside = flat[ok], p[ok]
        var = None if variance is None else variance[ok]
        shade = None if shadowed is None else shadowed[ok]
    size = rows * cols
    if not len(flat):  # no point on the grid: every cell empty, with the layers asked for
        empty = np.full((rows, cols), np.nan)
        return CellGrid(
            empty,
            empty.copy(),
            empty.copy(),
            np.zeros((rows, cols)),
            None if var is None else empty.copy(),
            None if shade is None else empty.copy(),
        )
    # A cell's representative is its median-elevation point itself (the mean of the two middle
    # ones), so a cell on a plane lies exactly on it whatever its points' layout.
    z = inside[:, 2].astype(np.float64)
    ranks = cell_ranks(flat, z, size, var if var is not None and robust_noise else None, threads)
    keep = ranks.count >= max(min_points, 1)
    cells, m = ranks.cells[keep], ranks.count[keep]
    lower, upper = ranks.median_low[keep], ranks.median_high[keep]
    rep = _representatives(inside, cells, lower, upper, size)
    variance_grid = None
    if var is not None:
        if ranks.value_median is not None:
            point_noise = ranks.value_median[keep]
        else:
            point_noise = np.bincount(flat, weights=var, minlength=size)[cells] / m
        noise = point_noise / np.minimum(m, independent_points)
        if robust_spread:
            spread = 1.4826 * ranks.mad[keep]
        else:
            spread = (z[ranks.quartile_high[keep]] - z[ranks.quartile_low[keep]]) / 1.349
        variance_flat = np.full(size, np.nan)
        variance_flat[cells] = noise + spread**2 / m
        variance_grid = variance_flat.reshape(rows, cols)
    shadow_grid = None
    if shade is not None:
        shadow_flat = np.full(size, np.nan)
        shadow_flat[cells] = np.bincount(flat, weights=shade, minlength=size)[cells] / m
        shadow_grid = shadow_flat.reshape(rows, cols)
    x, y, zc = (r.reshape(rows, cols) for r in rep)
    n = np.zeros(size)
    n[ranks.cells] = ranks.count  # every occupied cell's points, those under min_points too
    return CellGrid(x, y, zc, n.reshape(rows, cols), variance_grid, shadow_grid)


def clip_to_neighbours(z: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """Each cell's height clipped to the range of its 8 neighbours with data, widened by
    ``tolerance`` (per cell; NaN cells and cells without a neighbour stay as they are): removes
    single-cell spikes and pits, keeps any relief that spans two cells or more.  Heights at the
    cell centres on a plane of gradient g per cell never pass a neighbour by more than |g| sqrt 2,
    so that tolerance keeps every plane exact, at the grid's edges too."""
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    valid = np.isfinite(z)
    z32 = z.astype(np.float32)
    kw = dict(borderType=cv2.BORDER_CONSTANT)
    hi = cv2.dilate(np.where(valid, z32, -np.inf).astype(np.float32), ring, borderValue=-np.inf, **kw)
    lo = cv2.erode(np.where(valid, z32, np.inf).astype(np.float32), ring, borderValue=np.inf, **kw)
    return np.where(valid & np.isfinite(hi), np.clip(z, lo - tolerance, hi + tolerance), z)


def _exceedance(value: np.ndarray, limit: float, sigma: np.ndarray) -> np.ndarray:
    """P(true value > limit) for a Gaussian estimate ``value`` +- ``sigma``; a step where sigma is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sigma > 0, ndtr((value - limit) / np.where(sigma > 0, sigma, 1.0)), (value > limit).astype(np.float64))


def calibrate_probability(p: np.ndarray, table) -> np.ndarray:
    """Map raw hazard probabilities through a calibration ``table``: the calibrated value at the
    raw probabilities 0, 1/(n-1), ..., 1, linear between (see :func:`fit_probability_calibration`)."""
    table = np.asarray(table, dtype=np.float64)
    return np.interp(p, np.linspace(0.0, 1.0, len(table)), table)


def fit_probability_calibration(counts: np.ndarray, knots: int = 21) -> tuple[float, ...]:
    """A monotone calibration table from reliability counts (``geometry.metrics.reliability_counts``
    of raw probabilities, summed over calibration frames): the observed hazard frequency per bin,
    made non-decreasing by pooling adjacent violators, at ``knots`` raw probabilities (0, 0.05,
    ..., 1 by default)."""
    n, sum_p, hits = (np.asarray(c, dtype=np.float64) for c in counts)
    used = n > 0
    if not used.any():
        raise ValueError("no sites to fit a hazard probability calibration on")
    x, y, w = sum_p[used] / n[used], hits[used] / n[used], n[used]
    blocks = [[yi, wi, 1] for yi, wi in zip(y, w)]  # pool adjacent violators: (mean, weight, bins)
    merged: list[list[float]] = []
    for b in blocks:
        merged.append(b)
        while len(merged) > 1 and merged[-2][0] > merged[-1][0]:
            (y1, w1, k1), (y2, w2, k2) = merged[-2], merged[-1]
            merged[-2:] = [[(y1 * w1 + y2 * w2) / (w1 + w2), w1 + w2, k1 + k2]]
    fitted = np.repeat([m[0] for m in merged], [int(m[2]) for m in merged])
    grid = np.linspace(0.0, 1.0, knots)
    return tuple(float(round(v, 4)) for v in np.interp(grid, x, fitted))


def _table_at_edges(table, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated probability at each raw bin's lower and upper edge (non-decreasing)."""
    at = np.maximum.accumulate(calibrate_probability(np.arange(bins + 1) / bins, table))
    return at[:-1], at[1:]


def fit_hazard_threshold(counts: np.ndarray, hazards: int, table) -> float:
    """The calibrated probability at which calling a site a HAZARD gives the best F1 on
    calibration data: ``counts`` are the raw probabilities' reliability counts
    (``geometry.metrics.reliability_counts``, summed over frames), ``hazards`` every true
    hazard site (those the map left unknown too: they count as missed), ``table`` the
    calibration fitted on the same counts.  Thresholds are tried at the raw bins' lower edges
    (a calibrated classifier's best-F1 threshold is half its best F1, so well below 0.5 where
    the map is unsure); each is scored on every bin the map would call at it, the bins below
    the edge that the table maps flat onto the same value included."""
    n, _, hits = (np.asarray(c, dtype=np.float64) for c in counts)
    bins = len(n)
    lower, _ = _table_at_edges(table, bins)
    thresholds = np.round(lower, 4)
    # the first bin the map calls at each threshold (to the rounding's half step)
    start = np.searchsorted(lower, thresholds - 5e-5, side="left")
    called = np.cumsum(n[::-1])[::-1][start]  # sites from that bin up
    caught = np.cumsum(hits[::-1])[::-1][start]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * caught / (called + max(hazards, 1))
    f1[start == 0] = -1.0  # a threshold that calls everything a hazard
    best = int(np.nanargmax(f1))
    return round(float(thresholds[best]), 4)


def fit_safe_threshold(
    frame_counts: np.ndarray,
    table,
    budget: float = FALSE_SAFE_BUDGET,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> float:
    """The largest calibrated probability below which certifying sites SAFE keeps their
    false-safe share (hazards among the certified) within ``budget`` on calibration data, with
    ``confidence``: ``frame_counts`` (F, 3, bins) are each calibration frame's reliability
    counts of raw probabilities (``geometry.metrics.reliability_counts``), ``table`` the
    calibration fitted on them.  Candidates are the raw bins' upper edges; the threshold
    returned is the table's value there plus 1e-4 (its rounding step), which certifies every bin
    the table maps at or below that value: the bins above the edge that the table maps flat onto
    it too.  So each candidate is judged on all the bins it certifies, not only those below its
    edge.
    A frame's sites share its depth errors, so the bound resamples whole frames (a cluster
    bootstrap, ``resamples`` draws, seeded): pooled site counts would overstate the evidence
    and the fit would not transfer between scenes.  Where frames are not independent either
    (a descent map's frames of one sequence), pass each cluster's summed counts instead.
    Where no edge meets the budget nothing is certified (the table's first value, at least
    1e-4)."""
    counts = np.asarray(frame_counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[1] != 3 or len(counts) == 0:
        raise ValueError(f"need per-frame reliability counts of shape (frames, 3, bins), got {counts.shape}")
    if not (0 < budget < 1 and 0 < confidence < 1 and resamples >= 1):
        raise ValueError("need 0 < budget < 1, 0 < confidence < 1 and resamples >= 1")
    bins = counts.shape[2]
    sites = np.cumsum(counts[:, 0], axis=1)  # per frame, the sites below each bin's upper edge
    hits = np.cumsum(counts[:, 2], axis=1)
    draws = np.random.default_rng(seed).integers(0, len(counts), (resamples, len(counts)))
    drawn_sites, drawn_hits = sites[draws].sum(axis=1), hits[draws].sum(axis=1)  # (resamples, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(drawn_sites > 0, drawn_hits / drawn_sites, 0.0)
    bound = np.quantile(share, confidence, axis=0)
    _, upper = _table_at_edges(table, bins)
    thresholds = np.round(upper + 1e-4, 4)
    reach = np.searchsorted(upper, thresholds, side="left") - 1  # the last bin each one certifies whole
    within = np.flatnonzero((bound[reach] <= budget) & (sites.sum(axis=0)[reach] > 0))
    if not within.size:
        return round(max(float(table[0]), 1e-4), 4)  # no site's calibrated probability is below it
    return float(thresholds[int(within.max())])


def hazard_map(
    points: np.ndarray,
    up: np.ndarray,
    params: HazardParams | None = None,
    grid: GridSpec | None = None,
    elevation_sigma: np.ndarray | None = None,
    shadowed: np.ndarray | None = None,
    sun: np.ndarray | None = None,
    calibration=None,
    call_calibration=None,
    threads: int = 1,
) -> HazardMap:
    """Landing-site safety map of an N x 3 (or organised H x W x 3) cloud in any frame, given
    gravity 'up' in that frame (see the module docstring).  The grid lives in the
    gravity-aligned frame obtained by the smallest rotation taking ``up`` to +z (so with up = +z
    the grid's x, y are the points' x, y); ``grid`` pins the cell layout.
    ``elevation_sigma``: optional 1-sigma vertical uncertainty of each point (m), e.g. from
    :func:`lunar_recon.geometry.stereo.stereo_elevation_sigma`; without it the map is the plain
    geometric one (probabilities 0 or 1), as with every sigma 0.  ``shadowed`` (one flag per point) and ``sun``
    (direction toward the sun, same frame): shadowed cells are lowered to the sun ray grazing
    the terrain upsun (:func:`~lunar_recon.geometry.shadows.shadow_bounded_elevation`).
    ``calibration``: a table of :func:`calibrate_probability` for the probabilities of this
    depth source (its model's, chosen on calibration data); None: the Gaussian model's own;
    ``call_calibration`` the same for its call probabilities (under the relief prior).
    ``threads``: the compiled passes (cell statistics, planes, relief) are split over this many
    threads (:mod:`lunar_recon.geometry.parallel`; the same map).  They gain only where numpy
    runs one BLAS thread (``OPENBLAS_NUM_THREADS=1`` before numpy loads, as lunar_recon's
    programs set it: :func:`lunar_recon.runtime.prefer_single_threaded_blas`); otherwise
    OpenBLAS threads left spinning after the points' rotation hold the other cores."""
    params = params or HazardParams()
    params.validate()
    if params.resolution_m == 0 and grid is None:
        raise ValueError("resolution_m 0 (follow the range) must be resolved first: params_for_range()")
    R = rotation_aligning(normalize(up), np.array([0.0, 0.0, 1.0]))
    p = np.asarray(points).reshape(-1, 3)
    finite = np.isfinite(p[:, 0] + p[:, 1] + p[:, 2])  # one pass instead of an axis reduction
    point_var = None
    if elevation_sigma is not None:
        sig = np.asarray(elevation_sigma, dtype=np.float64).reshape(-1)
        if sig.shape[0] != p.shape[0]:
            raise ValueError(f"elevation_sigma has {sig.shape[0]} values for {p.shape[0]} points")
        finite &= np.isfinite(sig)
        point_var = sig**2 if np.any(sig > 0) else None  # all 0: exact points, the plain map
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
    if in_shadow is not None and not in_shadow.any():
        in_shadow = None  # nothing to bound
    cells = elevation_grid(q, grid, params.min_points_per_cell, point_var, in_shadow, threads=threads)
    if cells.shadow_share is not None and sun is not None:
        shadowed_cells = np.nan_to_num(cells.shadow_share) >= SHADOW_CELL_FRACTION
        cells.z = shadow_bounded_elevation(cells.z, shadowed_cells, res, R @ normalize(sun))
    measured = point_var is not None
    return hazard_map_from_cells(
        cells,
        grid,
        R,
        params,
        calibration if measured else None,
        call_calibration=call_calibration if measured else None,
        threads=threads,
    )


def hazard_map_from_cells(
    cells: CellGrid,
    grid: GridSpec,
    R_grid_from_input: np.ndarray,
    params: HazardParams | None = None,
    calibration=None,
    per_cell_sigma: bool = True,
    call_calibration=None,
    threads: int = 1,
) -> HazardMap:
    """The landing-site map of cell heights already made (``cells``: each cell's representative
    point and, when known, its height variance; NaN without data) on ``grid``, whose frame is
    ``R_grid_from_input`` applied to the input frame (e.g. a fused descent map's cells).
    ``per_cell_sigma``: the relief's exceedance judges each cell on its own sigma (see the
    module docstring); False: on its own variance plus the squared mean sigma of the footprint
    around it, for variances that miss an error shared between cells (a fused map's
    registration), and the plane unweighted.  With measured per-cell sigmas and a
    ``params.relief_prior_m``, HAZARD is called on the probability under the relief prior
    (``call_probability``, through ``call_calibration``) and SAFE certified on the measurements
    alone (``probability``, the published one).  ``threads``: as for :func:`hazard_map`."""
    params = params or HazardParams()
    params.validate()
    threads = check_threads(threads)
    R = np.asarray(R_grid_from_input, dtype=np.float64)
    res = grid.resolution
    Z = cells.z
    valid = np.isfinite(Z)
    cell_var = np.zeros(grid.shape) if cells.variance is None else np.where(valid, np.nan_to_num(cells.variance), 0.0)

    # Plane moments over the footprint at the cells' representative points, relative to the grid centre and
    # the mean elevation for conditioning; float64, since covariances are differences of raw moments.
    rows_n, cols_n = grid.shape
    x0 = grid.origin[0] + cols_n * res / 2
    y0 = grid.origin[1] + rows_n * res / 2
    xc = ((np.arange(cols_n) + 0.5 - cols_n / 2) * res)[None, :]  # cell centres, same origin
    yc = ((np.arange(rows_n) + 0.5 - rows_n / 2) * res)[:, None]
    z0 = float(np.mean(Z, where=valid)) if valid.any() else 0.0
    x = np.where(valid, cells.x - x0, 0.0)
    y = np.where(valid, cells.y - y0, 0.0)
    z = np.where(valid, Z - z0, 0.0)
    rects = footprint_rectangles(params.footprint_diameter_m / 2 / res, params.footprint_bands)
    boxes = footprint_boxes(rects)
    # With measured heights each cell counts by its precision, in the plane (weighted least
    # squares) as in the relief below: a network-filled cell (sigma x8) barely tilts the plane.
    measured = cells.variance is not None and per_cell_sigma
    shared_error = cells.variance is not None and not per_cell_sigma  # a fused map's (below)
    count = valid.astype(np.float64)
    w = np.where(valid, 1.0 / np.maximum(cell_var, SIGMA_FLOOR**2), 0.0) if measured else count
    names = [["n", "x", "y", "z"], ["xx", "xy", "yy", "zz"], ["xz", "yz", "vv"] + (["ss"] if shared_error else [])]
    wx, wy, wz = w * x, w * y, w * z
    moments = dict(n=w, x=wx, y=wy, z=wz, xx=wx * x, xy=wx * y, yy=wy * y, zz=wz * z, xz=wx * z, yz=wy * z)
    moments["vv"] = count if measured else cell_var  # weighted: the sum of weight x variance
    if shared_error:
        moments["ss"] = np.sqrt(cell_var)  # the cells' sigmas (0 without data)
    merged = [cv2.merge([moments[k] for k in group]) for group in names]
    summed: list[np.ndarray] = [np.empty(0)] * len(names)

    def sum_groups(first: int, stop: int) -> None:  # OpenCV releases the GIL: groups on separate threads
        for g in range(first, stop):
            summed[g] = footprint_sum(merged[g], boxes)

    run_ranges(sum_groups, balanced_ranges(np.array([len(g) for g in names]), threads))
    S = {k: summed[g][..., i] for g, group in enumerate(names) for i, k in enumerate(group)}
    footprint_cells = sum((dy1 - dy0 + 1) * (dx1 - dx0 + 1) for dy0, dy1, dx0, dx1 in rects)
    # the footprint's cells with data, summed already: measured, by the variance moment (weight x
    # variance = 1 per cell); otherwise the weight is the count itself
    cells_with_data = (S["vv"] if measured else S["n"]).astype(np.float32)
    coverage = (cells_with_data / footprint_cells).astype(np.float32)
    planes = site_planes(S, xc[0], yc[:, 0], weighted=measured, threads=threads)
    slope, slope_sigma, centre = planes.slope_deg, planes.slope_sigma_deg, planes.centre
    known = (coverage >= params.coverage_min) & planes.fits
    with np.errstate(invalid="ignore", divide="ignore"):
        # each cell's height moved from its point to its centre along its own footprint plane,
        # so the sites' planes can be evaluated at the cell centres
        ga = np.where(planes.fits, planes.gradient_x, 0.0)  # a plane fits, whatever the coverage
        gb = np.where(planes.fits, planes.gradient_y, 0.0)
        z_at_centre = np.where(valid, z + ga * (xc - x) + gb * (yc - y), np.nan)
        if params.despike and res <= params.roughness_max_m / 2:
            z_at_centre = clip_to_neighbours(z_at_centre, np.hypot(ga, gb) * res * math.sqrt(2) + 1e-6)
        # with measured heights each cell's exceedance is judged on its own sigma: a poorly
        # measured cell that sets the largest height does not borrow the footprint's precision
        relief_sigma = None  # the truth's exact heights: a step at the limit (below)
        if measured:
            relief_sigma = np.sqrt(cell_var)
        elif shared_error:
            # a fused map's variances miss the error its frames share (their registration): each
            # cell on its own variance plus the square of the mean sigma over the footprint around
            # it, which stands in for that error.  A mean of sigmas, not of variances: the few
            # poorly measured cells, judged on their own variance already, would dominate the
            # mean variance and lend it to every well-measured cell within a footprint of them
            shared = np.where(cells_with_data > 0, S["ss"] / np.maximum(cells_with_data, 1.0), 0.0)
            relief_sigma = np.sqrt(cell_var + shared**2)
        relief = site_relief(
            z_at_centre,
            ga * res,
            gb * res,
            rects,
            sigma=relief_sigma,
            centre=None if relief_sigma is None else np.where(np.isfinite(centre), centre, 0.0),  # no plane: unknown
            limit=params.roughness_max_m,
            sites=known,
            prior_sigma=params.relief_prior_m if measured else 0.0,
            threads=threads,
        )
        above = relief.highest - centre
        below = centre - relief.lowest
        if relief.above_score is not None and relief.below_score is not None:
            p_above, p_below = ndtr(relief.above_score), ndtr(relief.below_score)
        else:  # without variances (the truth's exact heights, or a grid with none): its mean
            footprint_sigma = np.sqrt(planes.mean_variance)
            p_above = _exceedance(above, params.roughness_max_m, footprint_sigma)
            p_below = _exceedance(below, params.roughness_max_m, footprint_sigma)
        p_slope = _exceedance(slope, params.slope_max_deg, np.nan_to_num(slope_sigma, nan=np.inf))
        p_hazard = 1.0 - (1.0 - p_slope) * (1.0 - p_above) * (1.0 - p_below)
        p_call = None
        if relief.prior_above_score is not None and relief.prior_below_score is not None:
            p_call = 1.0 - (1.0 - p_slope) * (1.0 - ndtr(relief.prior_above_score)) * (1.0 - ndtr(relief.prior_below_score))
    if calibration is not None:
        p_hazard = calibrate_probability(p_hazard, calibration)
    p_hazard = np.where(known, p_hazard, np.nan)
    if p_call is not None:
        p_call = np.where(known, p_call if call_calibration is None else calibrate_probability(p_call, call_calibration), np.nan)
    safe_t, hazard_t = safe_threshold(params), hazard_threshold(params)
    published = p_hazard
    if p_call is not None:
        # one value per site from which a consumer thresholding the grid reaches the map's own
        # classes: the call probability where it calls a hazard, the probability where that
        # certifies the site, else the call probability but at least the safe threshold
        published = np.where(p_call >= hazard_t, p_call, np.where(p_hazard < safe_t, p_hazard, np.fmax(p_call, safe_t)))
    hazard = np.full(grid.shape, UNKNOWN, np.int8)
    hazard[known & (published < safe_t)] = SAFE
    hazard[known & (published >= hazard_t)] = HAZARD
    cost = np.full(grid.shape, -1, np.int8)
    cost[known] = np.clip(np.round(published[known] * 100), 0, 100).astype(np.int8)

    f32 = lambda arr: np.where(known, arr, np.nan).astype(np.float32)  # noqa: E731
    cell_sigma = np.where(valid, np.sqrt(cell_var), np.nan)
    hmap = HazardMap(
        grid=grid,
        elevation_m=np.where(valid, Z, np.nan).astype(np.float32),
        slope_deg=f32(slope),
        roughness_m=f32(np.fmax(above, below)),
        roughness_rms_m=f32(planes.rms),
        coverage=coverage,
        hazard=hazard,
        cost=cost,
        R_grid_from_input=R,
        params=params,
        probability=p_hazard.astype(np.float32),
        elevation_sigma_m=cell_sigma.astype(np.float32),
        call_probability=None if p_call is None else p_call.astype(np.float32),
        extra={
            "slope_sigma_deg": f32(np.where(np.isfinite(slope_sigma), slope_sigma, 0.0)),
            "height_above_m": f32(above),
            "depth_below_m": f32(below),
        },
    )
    hmap.landing_site = choose_landing_site(hmap)
    return hmap


def compile_kernels() -> float:
    """Compile (or load from numba's cache) the map's and the slope's kernels on a tiny field, so the
    first real frame does not pay for it: ~8 s the first time after an install, well under 1 s
    from the cache.  Returns the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    xy = rng.uniform(-3.0, 3.0, (4000, 2))
    xy[:1000] = rng.uniform(-0.1, 0.1, (1000, 2))  # one crowded cell: the per-cell selection too
    points = np.c_[xy, rng.normal(0.0, 0.02, len(xy))]
    hazard_map(points, np.array([0.0, 0.0, 1.0]), elevation_sigma=np.full(len(points), 0.02))
    from .slope import slope_image

    slope_image(points[:400].reshape(20, 20, 3), np.array([0.0, 0.0, 1.0]), step_px=2)
    return time.perf_counter() - t0


def median_elevation_sigma(hmap: HazardMap, cells: np.ndarray | None = None) -> float:
    """Median 1-sigma height uncertainty (m) of the map's cells with data (or of ``cells`` among
    them): its resolving power, which grows with range squared for stereo.  NaN without data
    or without a noise model."""
    sigma = hmap.elevation_sigma_m
    if sigma is None:
        return float("nan")
    use = np.isfinite(sigma) if cells is None else np.isfinite(sigma) & cells
    return float(np.median(sigma[use])) if use.any() else float("nan")


def fallback_share(hmap: HazardMap | None) -> float:
    """Of a combined map's decided sites (SAFE or HAZARD), the share its fallback decided
    (:func:`with_fallback`); NaN for a map without a fallback or without decided sites."""
    taken = None if hmap is None else hmap.extra.get("from_fallback")
    if hmap is None or taken is None:
        return float("nan")
    decided = hmap.hazard != UNKNOWN
    return float(taken[decided].mean()) if decided.any() else float("nan")


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
    return hmap.grid.cells_of(np.where(finite, q[..., 0], np.nan), q[..., 1])


def resample_hazard_map(
    hmap: HazardMap, grid: GridSpec, R_grid_from_input: np.ndarray, elevation_m: np.ndarray | None = None
) -> HazardMap:
    """``hmap`` seen on another grid (e.g. the ground truth's), nearest cell: each cell centre of
    ``grid`` (at ``elevation_m`` where finite, else ``hmap``'s median ground) is looked up in
    ``hmap``.  Cells off ``hmap`` are UNKNOWN without data.  The landing site keeps its place,
    re-indexed on the new grid.  Scoring a map this way scores the very map that was made."""
    rows, cols = grid.shape
    r_idx, c_idx = np.mgrid[0:rows, 0:cols]
    x, y = grid.centres_of(r_idx, c_idx)
    ground = float(np.nanmedian(hmap.elevation_m)) if np.isfinite(hmap.elevation_m).any() else 0.0
    z = np.full(grid.shape, ground) if elevation_m is None else np.where(np.isfinite(elevation_m), elevation_m, ground)
    in_input = np.stack([x, y, z], axis=-1) @ np.asarray(R_grid_from_input)  # grid -> input frame (R^T p)
    r, c, on = cells_of_points(hmap, in_input)

    def take(layer, fill, dtype):
        if layer is None:
            return None
        return np.where(on, layer[r, c], fill).astype(dtype)

    out = HazardMap(
        grid=grid,
        elevation_m=take(hmap.elevation_m, np.nan, np.float32),
        slope_deg=take(hmap.slope_deg, np.nan, np.float32),
        roughness_m=take(hmap.roughness_m, np.nan, np.float32),
        roughness_rms_m=take(hmap.roughness_rms_m, np.nan, np.float32),
        coverage=take(hmap.coverage, 0.0, np.float32),
        hazard=take(hmap.hazard, UNKNOWN, np.int8),
        cost=take(hmap.cost, -1, np.int8),
        R_grid_from_input=np.asarray(R_grid_from_input),
        params=hmap.params,
        probability=take(hmap.probability, np.nan, np.float32),
        elevation_sigma_m=take(hmap.elevation_sigma_m, np.nan, np.float32),
        call_probability=take(hmap.call_probability, np.nan, np.float32),
    )
    site = hmap.landing_site
    if site is not None:
        q = np.asarray(R_grid_from_input) @ site.position_input
        row, col = grid.cell_of(float(q[0]), float(q[1]))
        out.landing_site = dataclasses.replace(site, row=row, col=col, position_grid=q)
    return out


def with_fallback(primary: HazardMap, fallback: HazardMap) -> HazardMap:
    """``primary`` where it judges a site (SAFE or HAZARD), elsewhere ``fallback``'s judgement
    seen on ``primary``'s grid (nearest cell, :func:`resample_hazard_map`): e.g. a fused descent
    map that its flat calibration leaves undecided at altitude, with the current frame's own
    map where that map decides.  Those sites take the fallback's class, probability, slope and
    roughness; their published value (``cost``) is moved into ``primary``'s classes (below its
    safe threshold, at or above its hazard threshold), so one pair of thresholds still reads the
    grid.  The landing site is chosen again on the combined classes.  ``extra["from_fallback"]``
    marks the sites the fallback decided."""
    seen = resample_hazard_map(fallback, primary.grid, primary.R_grid_from_input, primary.elevation_m)
    use = (primary.hazard == UNKNOWN) & (seen.hazard != UNKNOWN)
    out = dataclasses.replace(primary, hazard=np.where(use, seen.hazard, primary.hazard).astype(np.int8))
    for name in ("probability", "slope_deg", "roughness_m"):
        mine, theirs = getattr(primary, name), getattr(seen, name)
        if mine is not None and theirs is not None:
            setattr(out, name, np.where(use, theirs, mine).astype(mine.dtype))
    out.extra = {**primary.extra, "from_fallback": use}  # which sites the fallback decided
    value = seen.cost.astype(np.float64) / 100.0
    safe_t, hazard_t = safe_threshold(primary.params), hazard_threshold(primary.params)
    value = np.where(seen.hazard == SAFE, np.minimum(value, safe_t - 0.01), np.maximum(value, hazard_t))
    out.cost = np.where(use, np.clip(np.round(value * 100), 0, 100), primary.cost).astype(np.int8)
    out.landing_site = choose_landing_site(out)
    return out


def hazard_map_from_grid(
    cost: np.ndarray, resolution: float, origin_xyz, orientation_xyzw, params: HazardParams
) -> tuple[HazardMap, GridSpec]:
    """A published hazard OccupancyGrid (costs 100 P, -1 without data; origin pose in the camera
    frame) as a HazardMap: its probabilities, and classes by ``params``' thresholds.  A
    ground-truth grid (costs 0 / 100) reads back as its classes."""
    R_cam_from_grid = quaternion_to_matrix(orientation_xyzw)
    R = R_cam_from_grid.T
    o = R @ np.asarray(origin_xyz, dtype=np.float64)
    grid = GridSpec((float(o[0]), float(o[1])), float(resolution), tuple(cost.shape))
    cost = np.asarray(cost)
    probability = np.where(cost < 0, np.nan, cost / 100.0).astype(np.float32)
    classes = np.full(cost.shape, UNKNOWN, np.int8)
    classes[(cost >= 0) & (probability < safe_threshold(params))] = SAFE
    classes[(cost >= 0) & (probability >= hazard_threshold(params))] = HAZARD
    nan = np.full(cost.shape, np.nan, np.float32)
    ground = np.full(cost.shape, o[2], np.float32)  # the grid lies on the ground plane at the origin's height
    hm = HazardMap(
        grid=grid,
        elevation_m=ground,
        slope_deg=nan,
        roughness_m=nan,
        roughness_rms_m=nan,
        coverage=np.ones(cost.shape, np.float32),
        hazard=classes,
        cost=cost.astype(np.int8),
        R_grid_from_input=R,
        params=params,
        probability=probability,
    )
    hm.landing_site = choose_landing_site(hm)  # the node's site is this choice on the same map
    return hm, grid


def choose_landing_site(hmap: HazardMap) -> LandingSite | None:
    """The safe cell farthest from any hazard or unknown cell (outside the grid counts as
    unknown); ties go to the lowest cost.  None where no safe cell lies ``landing_margin_m``
    (``hmap.params``) from the nearest cell that is not safe."""
    safe = hmap.hazard == SAFE
    if not safe.any():
        return None
    padded = np.pad(safe.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    score = dist - hmap.cost.astype(np.float32) * 1e-3  # lower cost breaks ties
    score[~safe] = -np.inf
    row, col = np.unravel_index(int(np.argmax(score)), safe.shape)
    if dist[row, col] * hmap.resolution < hmap.params.landing_margin_m:
        return None
    pos = np.array([*hmap.grid.centres_of(row, col), hmap.elevation_m[row, col]], dtype=np.float64)
    if not np.isfinite(pos[2]):  # a safe footprint centred on an empty cell: use the plane height
        pos[2] = float(np.nanmedian(hmap.elevation_m))
    return LandingSite(
        int(row),
        int(col),
        pos,
        hmap.R_grid_from_input.T @ pos,
        float(dist[row, col] * hmap.resolution),
        float(hmap.slope_deg[row, col]),
        float(hmap.roughness_m[row, col]),
    )
