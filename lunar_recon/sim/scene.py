"""Scenes: a stereo rig over procedural terrain, viewpoint presets, and one rendered pair
with every ground truth lunar_recon evaluates against."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..data.frame import GroundTruth, StereoFrame, rig_calibration
from ..geometry.camera import Intrinsics
from ..geometry.frames import RigPoses
from ..geometry.hazard import HazardMap, HazardParams, hazard_map
from . import PRESETS
from .render import Camera, RenderedView, SensorParams, SunParams, look_at, render_view, terrain_tensors
from .terrain import Terrain, TerrainParams, generate_terrain

TERRAIN_CELLS_ACROSS = 2000  # the DEM's cells per side at most (memory and render time bound)


@dataclass
class RigParams:
    width: int = 512
    height: int = 512
    hfov_deg: float = 60.0
    baseline_m: float = 1.0
    rectified: bool = True
    # Unrectified mode: extra rotation of the right camera (roll, pitch, yaw, degrees) and
    # convergence towards the look-at point, as StereoLunar's two independent cameras.
    right_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.hfov_deg, self.width, self.height)

    def validate(self) -> None:
        if self.baseline_m <= 0:
            raise ValueError(f"baseline must be positive, got {self.baseline_m} m")
        if self.width < 16 or self.height < 16:
            raise ValueError("image must be at least 16x16")
        if not 1 < self.hfov_deg < 170:
            raise ValueError("hfov_deg must be in (1, 170)")


@dataclass
class ScenePlan:
    """Everything that defines one pair, drawn from a preset and a seed."""

    preset: str
    seed: int
    rig: RigParams
    sun: SunParams
    sensor: SensorParams
    terrain: TerrainParams
    camera_position: np.ndarray
    look_target: np.ndarray
    hazard: HazardParams = field(default_factory=HazardParams)
    max_range_m: float = 1e9

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d: dict = {k: asdict(getattr(self, k)) for k in ("rig", "sun", "sensor", "terrain", "hazard")}
        d.update(
            preset=self.preset,
            seed=self.seed,
            camera_position=self.camera_position.tolist(),
            look_target=self.look_target.tolist(),
            max_range_m=self.max_range_m,
        )
        return d


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def plan_scene(
    preset: str,
    seed: int,
    width: int = 512,
    height: int = 512,
    bits: int = 8,
    altitude_m: float | None = None,
    off_nadir_deg: float | None = None,
    baseline_m: float | None = None,
    sun_elevation_deg: float | None = None,
    sun_azimuth_deg: float | None = None,
    rectified: bool = True,
    hazard: HazardParams | None = None,
) -> ScenePlan:
    """Draw a scene of a viewpoint preset; any argument given overrides the random draw.

    * ``orbital``: 3-30 km altitude, B/H 0.045-0.08 (StereoLunar-like), nadir to 20 deg.
    * ``oblique``: StereoLunar's oblique pairs: 3-30 km, off-nadir to 30 deg, B/H 0.02-0.3
      (log-uniform), sun 5-30 deg; always two independently posed cameras, the right one
      converging on the left one's look-at point (up to ~17 deg) and rolled, pitched and
      yawed further at random (+-10, +-3, +-3 deg).
    * ``descent``: the hazard-detection phase of terminal descent, where stereo can resolve
      0.3 m hazards: 10-100 m above ground, nadir to 45 deg oblique, 0.5-2 m baseline.
    * ``lander``: the last hazard-detection look of a lander, where a 0.3 m rock is resolvable:
      10-30 m above ground, nadir to 30 deg off-nadir, f 500-700 px at 512 px, 1-2 m baseline,
      sun 5-35 deg high, rocks 0.15-1.6 m (power law), craters 2-30 m.
    * ``rover``: camera 1-3 m above ground, looking forward 10-30 deg down, 0.2-0.5 m baseline.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    r = _rng(seed, 1)
    hfov = 45.0 if preset in ("orbital", "oblique") else 60.0
    if preset == "orbital":
        alt = altitude_m if altitude_m is not None else float(np.exp(r.uniform(np.log(3e3), np.log(3e4))))
        tilt = off_nadir_deg if off_nadir_deg is not None else float(r.uniform(0, 20))
        base = baseline_m if baseline_m is not None else alt * float(r.uniform(0.045, 0.08))
    elif preset == "oblique":
        alt = altitude_m if altitude_m is not None else float(np.exp(r.uniform(np.log(3e3), np.log(3e4))))
        tilt = off_nadir_deg if off_nadir_deg is not None else float(r.uniform(0, 30))
        base = baseline_m if baseline_m is not None else alt * float(np.exp(r.uniform(np.log(0.02), np.log(0.3))))
        rectified = False
    elif preset == "descent":
        alt = altitude_m if altitude_m is not None else float(np.exp(r.uniform(np.log(10), np.log(100))))
        tilt = off_nadir_deg if off_nadir_deg is not None else float(r.uniform(0, 45))
        base = baseline_m if baseline_m is not None else float(r.uniform(0.5, 2.0))
    elif preset == "lander":
        alt = altitude_m if altitude_m is not None else float(r.uniform(10, 30))
        tilt = off_nadir_deg if off_nadir_deg is not None else float(r.uniform(0, 30))
        base = baseline_m if baseline_m is not None else float(r.uniform(1.0, 2.0))
        focal_512 = float(r.uniform(500, 700))  # px at 512 px wide
        hfov = math.degrees(2 * math.atan(256 / focal_512))
    else:
        alt = altitude_m if altitude_m is not None else float(r.uniform(1.0, 3.0))
        tilt = off_nadir_deg if off_nadir_deg is not None else float(90 - r.uniform(10, 30))
        base = baseline_m if baseline_m is not None else float(r.uniform(0.2, 0.5))
    if alt <= 0:
        raise ValueError(f"camera altitude must be above the ground, got {alt} m")
    top_sun = {"lander": 35, "oblique": 30}.get(preset, 45)
    sun_el = sun_elevation_deg if sun_elevation_deg is not None else float(r.uniform(5, top_sun))
    sun_az = sun_azimuth_deg if sun_azimuth_deg is not None else float(r.uniform(0, 360))
    heading = float(r.uniform(0, 2 * math.pi))
    right_rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    if not rectified:
        jitter = r.uniform(-2, 2, 3)
        right_rotation = (float(jitter[0]), float(jitter[1]), float(jitter[2]))
    if preset == "oblique":  # converge on the look-at point (a turn about the camera's y axis), then jitter
        look = alt / max(math.cos(math.radians(tilt)), 0.05)
        converge = -math.degrees(math.atan2(base, look))
        right_rotation = (float(r.uniform(-3, 3)), converge + float(r.uniform(-3, 3)), float(r.uniform(-10, 10)))
    rig = RigParams(width, height, hfov, base, rectified, right_rotation)
    rig.validate()
    sun = SunParams(sun_el, sun_az, earthshine=0.0)
    sun.validate()
    sensor = SensorParams(bits=bits, exposure=float(r.uniform(0.8, 1.3)))
    sensor.validate()

    # Level of detail: the grid spacing follows the ground sample distance at the look-at point.
    K = rig.intrinsics()
    t = math.radians(tilt)
    look_dist = alt / max(math.cos(t), 0.05)
    if preset == "rover":
        look_dist = min(look_dist, 15.0)
    gsd = look_dist / K.fx
    fwd = np.array([math.cos(heading), math.sin(heading)])
    ground_range = look_dist * math.sin(t)
    position = np.array([0.0, 0.0, alt])
    target = np.array([fwd[0] * ground_range, fwd[1] * ground_range, 0.0])
    # Extent: the ground the frustum can see, bounded by a maximum range.
    max_range = {"orbital": 3.0 * alt, "oblique": 3.0 * alt, "descent": 4.0 * alt, "lander": 4.0 * alt, "rover": 40.0}[preset]
    half_fov = math.radians(hfov / 2) * math.hypot(1, height / width)
    far_angle = min(t + half_fov, math.radians(85))
    far_ground = min(alt * math.tan(far_angle), max_range)
    extent = 2.2 * max(far_ground, alt * math.tan(half_fov)) + 4 * base
    cell = max(gsd, extent / TERRAIN_CELLS_ACROSS)  # about a pixel of detail, bounded in memory
    if preset == "rover":
        cell = max(cell, 0.01)
    terrain = TerrainParams(
        extent_m=extent,
        cell_m=cell,
        center_xy=(float(target[0]), float(target[1])),
        hurst=float(r.uniform(0.7, 0.9)),
        rms_height_at_1m=float(r.uniform(0.02, 0.06)) * (0.3 if preset in ("orbital", "oblique") else 1.0),
        crater_density=float(r.uniform(0.005, 0.04)),  # lunar equilibrium is ~0.08 (N(>D) per m^2, D in m)
        rock_density=0.0 if preset in ("orbital", "oblique") else float(r.uniform(0.005, 0.04)),
        tilt_deg=float(r.uniform(0, 8)),
        tilt_azimuth_deg=float(r.uniform(0, 360)),
        crater_max_fraction=0.35,
    )
    if preset == "lander":
        terrain = replace(terrain, rock_min_m=0.15, rock_max_m=1.6, crater_min_m=2.0, crater_max_m=30.0)
    if hazard is None:
        # The hazard grid follows the imagery: at orbital range cells of a few metres.
        hazard = HazardParams()
        if 2 * gsd > hazard.resolution_m:
            res = 2 * gsd
            hazard = HazardParams(
                resolution_m=res,
                footprint_diameter_m=max(hazard.footprint_diameter_m, 8 * res),
                roughness_max_m=max(hazard.roughness_max_m, res),
            )
    return ScenePlan(preset, int(seed), rig, sun, sensor, terrain, position, target, hazard, max_range)


@dataclass
class RenderedPair(RigPoses):
    """What the renderer makes of one pair: the images and every truth layer (left camera frame
    unless stated), the scene's terrain and plan.  :meth:`frame` is the pair as every other
    source yields it (``data.frame.StereoFrame``)."""

    left: np.ndarray
    right: np.ndarray
    K_left: Intrinsics
    K_right: Intrinsics
    T_world_from_left: np.ndarray
    T_world_from_right: np.ndarray
    depth_left: np.ndarray
    depth_right: np.ndarray
    points_left: np.ndarray  # left pixels, left frame (MASt3R's pts3d)
    points_right_in_left: np.ndarray  # right pixels, left frame (pts3d_in_other_view)
    valid_left: np.ndarray
    valid_right: np.ndarray
    slope_left_deg: np.ndarray  # per-pixel slope w.r.t. gravity (terrain gradient at the hit point)
    shadow_left: np.ndarray
    up_left: np.ndarray  # gravity 'up' in the left camera frame
    sun_world: np.ndarray
    sun_left: np.ndarray
    hazard: HazardMap | None  # truth: slope/roughness over the footprint + rocks above size
    terrain: Terrain | None = None
    plan: ScenePlan | None = None

    def frame(self, stamp_ns: int = 0, name: str = "") -> StereoFrame:
        """The pair as a :class:`~lunar_recon.data.frame.StereoFrame`, its truth the depths, the
        landing-site map and the per-pixel slope and shadows."""
        rectified = self.plan.rig.rectified if self.plan is not None else False
        return StereoFrame(
            left=self.left,
            right=self.right,
            calibration=rig_calibration(self.K_left, self.K_right, self.T_left_from_right, rectified),
            stamp_ns=stamp_ns,
            name=name,
            up_left=self.up_left,
            sun_left=self.sun_left,
            T_world_from_left=self.T_world_from_left,
            truth=GroundTruth(
                self.depth_left,
                self.depth_right,
                self.hazard,
                {"slope_left_deg": self.slope_left_deg, "shadow_left": self.shadow_left},
            ),
        )


def _rotation_rpy(rpy_deg) -> np.ndarray:
    r, p, y = np.radians(rpy_deg)
    Rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    Ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    Rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def rig_cameras(rig: RigParams, T_world_from_left: np.ndarray) -> tuple[Camera, Camera]:
    K = rig.intrinsics()
    T_lr = np.eye(4)
    T_lr[0, 3] = rig.baseline_m  # right camera at +B along the left camera's x axis
    if not rig.rectified:
        T_lr[:3, :3] = _rotation_rpy(rig.right_rotation_deg)
    return Camera(K, T_world_from_left), Camera(K, T_world_from_left @ T_lr)


def visible_dem_points(terrain: Terrain, cam: Camera, depth: np.ndarray, spacing_m: float = 0.0) -> np.ndarray:
    """Terrain grid points (in the camera frame) that the camera sees: inside the image and
    not hidden (their depth matches the rendered depth at their pixel).  ``spacing_m`` thins
    the grid to about that spacing (no need for more points than hazard cells can use)."""
    stride = max(1, int(spacing_m / terrain.cell))
    rows, cols = terrain.z.shape
    T_cw = np.linalg.inv(cam.T_world_from_cam)
    R, c = T_cw[:3, :3], cam.position
    # Camera-frame coordinates from camera-relative grid axes (float32 keeps millimetres that
    # way, and broadcasting the axes avoids building the world grid: ~4x faster).
    x = (terrain.x0 + (np.arange(0, cols, stride) + 0.5) * terrain.cell - c[0]).astype(np.float32)
    y = (terrain.y0 + (np.arange(0, rows, stride) + 0.5) * terrain.cell - c[1]).astype(np.float32)
    dz = terrain.z[::stride, ::stride] - np.float32(c[2])
    px, py, pz = (
        np.float32(R[k, 0]) * x[None, :] + np.float32(R[k, 1]) * y[:, None] + np.float32(R[k, 2]) * dz for k in range(3)
    )
    K = cam.K
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(px / pz * np.float32(K.fx) + np.float32(K.cx))
        v = np.round(py / pz * np.float32(K.fy) + np.float32(K.cy))
    # Most of the terrain is out of view: select first, gather only what is in the image.
    keep = np.flatnonzero((pz > 1e-6) & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height))
    P = np.stack([a.reshape(-1)[keep] for a in (px, py, pz)], axis=-1)
    z, u, v = P[:, 2], u.reshape(-1)[keep].astype(np.int64), v.reshape(-1)[keep].astype(np.int64)
    seen = depth[v, u]
    # A grid point is visible when the surface at its pixel is at its depth (within a couple of cells).
    tol = 3 * terrain.cell + 0.002 * z
    return P[np.isfinite(seen) & (np.abs(seen - z) <= tol)].astype(np.float32)


def render_scene(
    plan: ScenePlan,
    terrain: Terrain | None = None,
    T_world_from_left: np.ndarray | None = None,
    with_hazard: bool = True,
    keep_terrain: bool = True,
) -> RenderedPair:
    """Render the pair of ``plan`` (terrain generated from the plan's seed unless given)."""
    if terrain is None:
        terrain = generate_terrain(plan.terrain, plan.seed)
    if T_world_from_left is None:
        ground = terrain.height_at(np.array([plan.camera_position[0]]), np.array([plan.camera_position[1]]))[0]
        pos = plan.camera_position + np.array([0, 0, 0 if not np.isfinite(ground) else ground])
        tgt_h = terrain.height_at(np.array([plan.look_target[0]]), np.array([plan.look_target[1]]))[0]
        tgt = plan.look_target + np.array([0, 0, 0 if not np.isfinite(tgt_h) else tgt_h])
        # look_at with the baseline centred on the nominal position
        T_world_from_left = look_at(pos, tgt)
        T_world_from_left[:3, 3] -= T_world_from_left[:3, 0] * plan.rig.baseline_m / 2
    cam_l, cam_r = rig_cameras(plan.rig, T_world_from_left)
    for cam, name in ((cam_l, "left"), (cam_r, "right")):
        h = terrain.height_at(cam.position[:1], cam.position[1:2])[0]
        if np.isfinite(h) and cam.position[2] <= h:
            raise ValueError(f"the {name} camera is under the ground ({cam.position[2]:.2f} m <= terrain {h:.2f} m)")
    tt = terrain_tensors(terrain, plan.sun)
    rng = np.random.default_rng(np.random.SeedSequence([plan.seed, 99]))
    with torch.inference_mode():
        vl = render_view(tt, cam_l, plan.sun, plan.sensor, rng, plan.max_range_m)
        vr = render_view(tt, cam_r, plan.sun, plan.sensor, rng, plan.max_range_m)
    return _frame(plan, terrain, cam_l, cam_r, vl, vr, with_hazard, keep_terrain)


def _frame(
    plan, terrain, cam_l: Camera, cam_r: Camera, vl: RenderedView, vr: RenderedView, with_hazard: bool, keep_terrain: bool
) -> RenderedPair:
    T_lw = np.linalg.inv(cam_l.T_world_from_cam)
    to_left = lambda p: (p @ T_lw[:3, :3].T + T_lw[:3, 3]).astype(np.float32)  # noqa: E731
    pts_l, pts_r = to_left(vl.points_world), to_left(vr.points_world)
    up_left = T_lw[:3, :3] @ np.array([0.0, 0.0, 1.0])
    sun_w = plan.sun.direction()
    slope = np.degrees(np.arccos(np.clip(vl.normal_world[..., 2], -1, 1))).astype(np.float32)
    slope[~vl.valid] = np.nan
    hmap = None
    if with_hazard and vl.valid.sum() >= 3:
        # Truth from the terrain itself (dense, exact), restricted to what the left camera sees:
        # the DEM at the grid's resolution through the same landing-site definition.
        pts = visible_dem_points(terrain, cam_l, vl.depth, spacing_m=plan.hazard.resolution_m / 3)
        hmap = hazard_map(pts, up_left, replace(plan.hazard, despike=False))  # the definition, every cell
    return RenderedPair(
        left=vl.image,
        right=vr.image,
        K_left=cam_l.K,
        K_right=cam_r.K,
        T_world_from_left=cam_l.T_world_from_cam,
        T_world_from_right=cam_r.T_world_from_cam,
        depth_left=vl.depth,
        depth_right=vr.depth,
        points_left=pts_l,
        points_right_in_left=pts_r,
        valid_left=vl.valid,
        valid_right=vr.valid,
        slope_left_deg=slope,
        shadow_left=vl.shadow,
        up_left=up_left,
        sun_world=sun_w,
        sun_left=T_lw[:3, :3] @ sun_w,
        hazard=hmap,
        terrain=terrain if keep_terrain else None,
        plan=plan,
    )
