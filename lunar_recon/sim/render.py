"""Stereo renderer for height-field terrain with exact ground truth.

Each pixel's ray is marched against the height field (geometric steps, then bisection),
which gives depth, the 3-D point and the surface normal exactly.  Shading is the
lunar-Lambert law (McEwen 1991) with hard cast shadows from a low Sun (no atmosphere, no
sky light; optional faint earthshine), then a sensor model: exposure, shot and read noise,
Gaussian PSF, 8/12/16-bit quantisation.  Runs in PyTorch (vectorised, multi-threaded on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.camera import Intrinsics
from ..geometry.frames import normalize
from .terrain import Terrain


@dataclass
class SunParams:
    elevation_deg: float = 15.0
    azimuth_deg: float = 45.0  # from +x (east) towards +y (north)
    earthshine: float = 0.0  # ambient fraction of the direct illumination (0 = none)
    shadows: bool = True

    def direction(self) -> np.ndarray:
        """Unit vector from the ground towards the Sun, world frame."""
        e, a = math.radians(self.elevation_deg), math.radians(self.azimuth_deg)
        return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])

    def validate(self) -> None:
        if self.shadows and self.elevation_deg <= 0:
            raise ValueError(
                f"Sun elevation {self.elevation_deg} deg is below the horizon: with shadows "
                "requested the whole scene would be dark"
            )
        if not -90 < self.elevation_deg <= 90:
            raise ValueError("Sun elevation must be in (-90, 90]")
        if self.earthshine < 0:
            raise ValueError("earthshine must be >= 0")


@dataclass
class SensorParams:
    bits: int = 8  # 8, 12 or 16 (12-bit values are left-aligned in 16-bit images)
    exposure: float = 1.0  # I/F that reaches full scale is 0.25 / exposure
    full_well_e: float = 20000.0
    read_noise_e: float = 8.0
    psf_sigma_px: float = 0.6
    noise: bool = True

    def validate(self) -> None:
        if self.bits not in (8, 12, 16):
            raise ValueError(f"sensor bits must be 8, 12 or 16, got {self.bits}")
        if self.exposure <= 0 or self.full_well_e <= 0 or self.read_noise_e < 0 or self.psf_sigma_px < 0:
            raise ValueError("invalid sensor parameters")


@dataclass
class Camera:
    K: Intrinsics
    T_world_from_cam: np.ndarray  # 4x4, optical frame (x right, y down, z forward)

    @property
    def position(self) -> np.ndarray:
        return self.T_world_from_cam[:3, 3]


def look_at(position, target, world_up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_world_from_cam of an optical-frame camera at ``position`` looking at ``target``."""
    position = np.asarray(position, np.float64)
    f = normalize(np.asarray(target, np.float64) - position)
    up = np.asarray(world_up, np.float64)
    if abs(np.dot(f, normalize(up))) > 0.999:  # looking straight down/up: image 'up' is north
        up = np.array([0.0, 1.0, 0.0])
    r = normalize(np.cross(f, up))
    d = np.cross(f, r)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = r, d, f, position
    return T


@dataclass
class RenderedView:
    image: np.ndarray  # uint8 or uint16 (H, W)
    radiance: np.ndarray  # float32 I/F before the sensor
    depth: np.ndarray  # float32, NaN where the ray leaves the terrain
    points_world: np.ndarray  # (H, W, 3) float64
    normal_world: np.ndarray  # (H, W, 3) float32
    shadow: np.ndarray  # bool
    valid: np.ndarray  # bool


@dataclass
class TerrainTensors:
    """Terrain maps on the torch side, for fast bilinear sampling with grid_sample."""

    maps: torch.Tensor  # (1, C, rows, cols): z, albedo, dz/dx, dz/dy, lit
    x0: float
    y0: float
    cell: float
    zmin: float
    zmax: float
    extra: dict = field(default_factory=dict)

    def sample(self, x: torch.Tensor, y: torch.Tensor, channels: slice = slice(0, 1)) -> torch.Tensor:
        rows, cols = self.maps.shape[-2:]
        gx = (x - self.x0) / (cols * self.cell) * 2 - 1
        gy = (y - self.y0) / (rows * self.cell) * 2 - 1
        grid = torch.stack([gx, gy], dim=-1).reshape(1, 1, -1, 2)
        out = F.grid_sample(self.maps[:, channels], grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(out.shape[1], *x.shape)

    def inside(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows, cols = self.maps.shape[-2:]
        return (x >= self.x0) & (x <= self.x0 + cols * self.cell) & (y >= self.y0) & (y <= self.y0 + rows * self.cell)

    def prefiltered(self, sigma_cells: float) -> "TerrainTensors":
        """These maps with the shading channels (albedo, gradients, lit) Gaussian-blurred by
        ``sigma_cells``; the heights stay exact.  Cached per sigma: both views of a frame share it."""
        key = ("prefiltered", round(sigma_cells, 3))
        if key not in self.extra:
            maps = self.maps[0].numpy().copy()
            r = int(math.ceil(3 * sigma_cells))
            for c in range(1, maps.shape[0]):
                cv2.GaussianBlur(maps[c], (2 * r + 1, 2 * r + 1), sigma_cells, dst=maps[c], borderType=cv2.BORDER_REPLICATE)
            self.extra[key] = TerrainTensors(torch.from_numpy(maps)[None], self.x0, self.y0, self.cell, self.zmin, self.zmax)
        return self.extra[key]


# A pixel whose footprint spans more than this many terrain cells sees their shading averaged
# (the pixel's area and the lens), not the one cell its ray hits: no aliasing at altitude.
PREFILTER_ABOVE_CELLS_PER_PIXEL = 1.5


def shading_prefilter_sigma(footprint_m: float, cell_m: float) -> float:
    """Gaussian sigma (cells) that averages the terrain's shading over a pixel footprint of
    ``footprint_m``: about half the footprint, less the cell's own bilinear smoothing; 0 up to
    ``PREFILTER_ABOVE_CELLS_PER_PIXEL`` cells per pixel (the terrain is about as fine as the pixel)."""
    ratio = footprint_m / cell_m
    if not ratio > PREFILTER_ABOVE_CELLS_PER_PIXEL:
        return 0.0
    return 0.5 * math.sqrt(ratio**2 - 1)


def shadow_map(z: np.ndarray, cell: float, sun: SunParams) -> np.ndarray:
    """Lit (1) / shadowed (0) per cell: a cell is in shadow when terrain between it and the Sun
    rises above the sun ray.  The grid is rotated so sunlight runs along +x, then one running
    maximum per row decides every cell (O(N))."""
    if not sun.shadows:
        return np.ones_like(z, np.float32)
    rows, cols = z.shape
    # Light travels along -sun.  getRotationMatrix2D(angle) maps a (col, row) vector (lx, ly) to
    # (c lx + s ly, -s lx + c ly); angle = atan2(ly, lx) sends the light direction to +col.
    lx, ly = -math.cos(math.radians(sun.azimuth_deg)), -math.sin(math.radians(sun.azimuth_deg))
    ang = math.degrees(math.atan2(ly, lx))
    diag = int(math.ceil(math.hypot(rows, cols))) + 2
    centre = (cols / 2 - 0.5, rows / 2 - 0.5)
    M = cv2.getRotationMatrix2D(centre, ang, 1.0)
    M[:, 2] += [(diag - cols) / 2, (diag - rows) / 2]
    big = cv2.warpAffine(
        z.astype(np.float32),
        M,
        (diag, diag),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float(z.min()) - 1e6,
    )
    tan_e = math.tan(math.radians(sun.elevation_deg))
    g = big + (np.arange(diag, dtype=np.float32) * cell * tan_e)[None, :]
    running = np.maximum.accumulate(g, axis=1)
    # Tolerance of a quarter cell of sun-ray rise: bilinear resampling must not self-shadow.
    lit_big = (g >= running - 0.25 * cell * max(tan_e, 1e-3) - 1e-5 * float(np.abs(z).max())).astype(np.float32)
    Minv = cv2.invertAffineTransform(M)
    lit = cv2.warpAffine(lit_big, Minv, (cols, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return lit


def terrain_tensors(terrain: Terrain, sun: SunParams) -> TerrainTensors:
    gx, gy = terrain.gradient()
    lit = shadow_map(terrain.z, terrain.cell, sun)
    maps = np.stack([terrain.z, terrain.albedo, gx.astype(np.float32), gy.astype(np.float32), lit])[None]
    return TerrainTensors(
        torch.from_numpy(np.ascontiguousarray(maps)),
        terrain.x0,
        terrain.y0,
        terrain.cell,
        float(terrain.z.min()),
        float(terrain.z.max()),
    )


def camera_rays(cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origin (3,) and world directions (H, W, 3) scaled so that t is the depth (z_cam = t)."""
    K = cam.K
    v, u = torch.meshgrid(torch.arange(K.height, dtype=torch.float64), torch.arange(K.width, dtype=torch.float64), indexing="ij")
    d_cam = torch.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, torch.ones_like(u)], dim=-1)
    R = torch.from_numpy(cam.T_world_from_cam[:3, :3])
    return torch.from_numpy(cam.position.copy()), d_cam @ R.T


def clearance(tt: TerrainTensors, position: np.ndarray, half_window: int = 64) -> float:
    """A distance from ``position`` within which there is no terrain: the smallest distance to
    the boxes bounding the bilinear patches between cell centres (each as high as its highest
    corner), over a window of +-``half_window`` cells; beyond it, the window's reach.  0 when
    the window meets the grid's edge (the half-cell border there is not covered)."""
    z = tt.maps[0, 0].numpy()
    rows, cols = z.shape
    c = tt.cell
    jc = int(math.floor((position[0] - tt.x0) / c - 0.5))
    ic = int(math.floor((position[1] - tt.y0) / c - 0.5))
    j0, j1, i0, i1 = jc - half_window, jc + half_window + 1, ic - half_window, ic + half_window + 1
    if j0 < 0 or i0 < 0 or j1 >= cols or i1 >= rows:
        return 0.0
    sub = z[i0 : i1 + 1, j0 : j1 + 1]
    top = np.maximum(np.maximum(sub[:-1, :-1], sub[1:, :-1]), np.maximum(sub[:-1, 1:], sub[1:, 1:]))
    xlo = tt.x0 + (np.arange(j0, j1) + 0.5) * c  # patch j spans centres j .. j + 1
    ylo = tt.y0 + (np.arange(i0, i1) + 0.5) * c
    dx = np.maximum(np.maximum(xlo - position[0], position[0] - (xlo + c)), 0.0)
    dy = np.maximum(np.maximum(ylo - position[1], position[1] - (ylo + c)), 0.0)
    dz = np.maximum(position[2] - top, 0.0)
    inner = float(np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2 + dz**2).min())
    return min(inner, (half_window - 1) * c) * 0.999


def raycast(tt: TerrainTensors, cam: Camera, max_range: float, steps: int = 128, refine: int = 10):
    """First intersection of every pixel ray with the height field: (depth, hit mask).

    Coordinates are taken relative to the camera so float32 keeps millimetres even at orbital
    range.  Steps are geometric in t (spacing grows with range like a pixel's footprint),
    run in chunks over the rays not yet resolved, then refined by bisection and a last secant
    step on the bracket (10 halvings + secant agree with 16 plain halvings to ~1e-6 of the range)."""
    origin, dirs = camera_rays(cam)
    H, W = dirs.shape[:2]
    o = origin.double()
    d = dirs.reshape(-1, 3).float()
    oz = float(o[2])
    dz = d[:, 2]
    top, bottom = tt.zmax + 1e-3 - oz, tt.zmin - 1e-3 - oz  # terrain height range, camera-relative
    inf = torch.full_like(dz, float("inf"))
    t_top = torch.where(dz < 0, top / dz, torch.where(torch.tensor(top >= 0), torch.zeros_like(dz), inf))
    t_bot = torch.where(dz < 0, bottom / dz, inf)
    # March from where a ray leaves the camera's terrain-free ball (a rover camera sits below the
    # highest terrain: from 1 mm, half of the geometric steps would be spent in the first metre).
    t0 = torch.maximum(torch.clamp(t_top, min=1e-3), clearance(tt, o.numpy()) / d.norm(dim=1))
    t1 = torch.minimum(t_bot, max_range / d.norm(dim=1))
    alive = t1 > t0
    t0 = torch.where(alive, t0, torch.ones_like(t0))
    log_ratio = torch.where(alive, torch.log(t1 / t0), torch.zeros_like(t0))
    frac = torch.linspace(0, 1, steps + 1)
    hit_t = torch.full_like(dz, float("nan"))
    # grid_sample's coordinate of a camera-relative x (or y) is affine in it: g = x * scale + offset.
    rows, cols = tt.maps.shape[-2:]
    scale = torch.tensor([2 / (cols * tt.cell), 2 / (rows * tt.cell)], dtype=torch.float32)
    offset = torch.tensor(
        [2 * (float(o[0]) - tt.x0) / (cols * tt.cell) - 1, 2 * (float(o[1]) - tt.y0) / (rows * tt.cell) - 1], dtype=torch.float32
    )
    zmap = tt.maps[:, :1]

    def above(t: torch.Tensor, dd: torch.Tensor, with_inside: bool = False):
        """Height of the ray points t * dd (rays dd: (n, 3), t: (n,) or (n, k)) above the
        terrain under them (and whether they lie over the terrain at all)."""
        tk = t if t.dim() == 2 else t[:, None]
        grid = tk[..., None] * (dd[:, None, :2] * scale) + offset  # (n, k, 2)
        h = F.grid_sample(zmap, grid.reshape(1, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=False).reshape(
            tk.shape
        )
        f = (tk * dd[:, None, 2] - (h - oz)).reshape(t.shape)
        return (f, grid.abs().amax(dim=-1) <= 1) if with_inside else f

    prev_t = t0.clone()
    prev_f = above(t0, d)  # > 0 except where the camera is below the highest terrain
    found = ~alive
    chunk = 16
    for s0 in range(1, steps + 1, chunk):
        idx = torch.nonzero(~found).flatten()
        if idx.numel() == 0:
            break
        ts = t0[idx, None] * torch.exp(log_ratio[idx, None] * frac[None, s0 : s0 + chunk])  # (n, k)
        dd = d[idx]
        f, inside = above(ts, dd, with_inside=True)
        below = (f <= 0) & inside
        any_below = below.any(dim=1)
        first = torch.argmax(below.to(torch.int8), dim=1)
        rows_ = torch.arange(len(idx))
        before = (first - 1).clamp(min=0)
        t_hi, f_hi = ts[rows_, first], f[rows_, first]
        t_lo = torch.where(first > 0, ts[rows_, before], prev_t[idx])
        f_lo = torch.where(first > 0, f[rows_, before], prev_f[idx])
        sel = idx[any_below]
        lo, hi, flo, fhi, ds = t_lo[any_below], t_hi[any_below], f_lo[any_below], f_hi[any_below], dd[any_below]
        for _ in range(refine):  # bisection between the last point above and the first below
            mid = 0.5 * (lo + hi)
            fm = above(mid, ds)
            below_m = fm <= 0
            hi, fhi = torch.where(below_m, mid, hi), torch.where(below_m, fm, fhi)
            lo, flo = torch.where(below_m, lo, mid), torch.where(below_m, flo, fm)
        # Secant on the final bracket; the midpoint where the bracket's ends do not straddle zero.
        w = flo / (flo - fhi)
        w = torch.where((flo > 0) & (fhi <= 0) & torch.isfinite(w), w, torch.full_like(w, 0.5))
        hit_t[sel] = lo + w * (hi - lo)
        found[sel] = True
        prev_t[idx], prev_f[idx] = ts[:, -1], f[:, -1]
    depth = hit_t.reshape(H, W).double()
    valid = torch.isfinite(depth)
    return depth, valid, o, dirs


def lunar_lambert(cos_i: torch.Tensor, cos_e: torch.Tensor, phase_deg: torch.Tensor, albedo: torch.Tensor):
    """Lunar-Lambert reflectance (I/F) with McEwen's (1991) phase function L(alpha)."""
    a = phase_deg
    L = (1.0 - 0.019 * a + 2.42e-4 * a**2 - 1.46e-6 * a**3).clamp(0.0, 1.0)
    ci = cos_i.clamp(min=0.0)
    ce = cos_e.clamp(min=1e-3)
    return albedo * (2 * L * ci / (ci + ce) + (1 - L) * ci)


def apply_sensor(radiance: np.ndarray, sensor: SensorParams, rng: np.random.Generator) -> np.ndarray:
    """I/F -> digital numbers: exposure, PSF, shot + read noise, quantisation."""
    full_scale = 0.25 / sensor.exposure
    signal = radiance.astype(np.float64) / full_scale * sensor.full_well_e  # electrons
    if sensor.psf_sigma_px > 0:
        signal = cv2.GaussianBlur(signal, (0, 0), sensor.psf_sigma_px, borderType=cv2.BORDER_REFLECT)
    if sensor.noise:
        signal = signal + rng.normal(size=signal.shape) * np.sqrt(np.clip(signal, 0, None))
        signal = signal + rng.normal(scale=sensor.read_noise_e, size=signal.shape)
    levels = (1 << sensor.bits) - 1
    dn = np.clip(np.round(signal / sensor.full_well_e * levels), 0, levels)
    if sensor.bits == 8:
        return dn.astype(np.uint8)
    return (dn.astype(np.uint16) << (16 - sensor.bits)).astype(np.uint16)


def render_view(
    tt: TerrainTensors, cam: Camera, sun: SunParams, sensor: SensorParams, rng: np.random.Generator, max_range: float
) -> RenderedView:
    depth, valid, o, dirs = raycast(tt, cam, max_range)
    pts = o + depth[..., None] * dirs  # world
    x, y = pts[..., 0].float(), pts[..., 1].float()
    shading = tt
    if bool(valid.any()):
        sigma = shading_prefilter_sigma(float(depth[valid].median()) / cam.K.fx, tt.cell)
        if sigma > 0:
            shading = tt.prefiltered(sigma)
    albedo, gx, gy, lit = shading.sample(x, y, slice(1, 5))
    n = torch.stack([-gx, -gy, torch.ones_like(gx)], dim=-1)
    n = n / n.norm(dim=-1, keepdim=True)
    s = torch.from_numpy(sun.direction()).float()
    v = -(dirs / dirs.norm(dim=-1, keepdim=True)).float()  # towards the camera
    cos_i = n @ s
    cos_e = (n * v).sum(-1)
    phase = torch.rad2deg(torch.arccos((v @ s).clamp(-1, 1)))
    direct = lunar_lambert(cos_i, cos_e, phase, albedo) * (lit > 0.5).float()
    ambient = sun.earthshine * albedo * cos_e.clamp(min=0)
    radiance = torch.where(valid, direct + ambient, torch.zeros_like(direct))
    rad = radiance.numpy().astype(np.float32)
    image = apply_sensor(rad, sensor, rng)
    valid_np = valid.numpy()
    return RenderedView(
        image,
        rad,
        np.where(valid_np, depth.numpy(), np.nan).astype(np.float32),
        np.where(valid_np[..., None], pts.numpy(), np.nan),
        n.numpy().astype(np.float32),
        (lit.numpy() <= 0.5) & valid_np,
        valid_np,
    )
