"""Time-stamped sequences over one terrain: a lander descending, or a rover driving."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator

import numpy as np

from .render import look_at
from ..data.frame import StereoFrame
from .scene import ScenePlan, plan_scene, render_scene
from .terrain import generate_terrain

SEQUENCES = ("descent", "rover")


def descent_plan(seed: int, width: int, height: int, bits: int, start_altitude_m: float, end_altitude_m: float) -> ScenePlan:
    """A descent's scene: planned at its start altitude (the widest view) with the terrain's
    detail of its end altitude.  One DEM serves every frame, so it may be as large as the
    terrain allows (a single pair's is bounded tighter); the frames at altitude see its shading
    averaged over their pixels (``render.shading_prefilter_sigma``)."""
    plan = plan_scene("descent", seed, width, height, bits, altitude_m=start_altitude_m, off_nadir_deg=10.0, baseline_m=2.0)
    lo = plan_scene("descent", seed, width, height, bits, altitude_m=end_altitude_m, off_nadir_deg=10.0, baseline_m=2.0)
    cell = max(lo.terrain.cell_m, plan.terrain.extent_m / (math.isqrt(plan.terrain.max_cells) - 1))
    return replace(plan, terrain=replace(plan.terrain, cell_m=cell))


def render_sequence(
    kind: str,
    frames: int,
    seed: int,
    width: int = 512,
    height: int = 384,
    start_altitude_m: float | None = None,
    end_altitude_m: float | None = None,
    bits: int = 8,
) -> Iterator[StereoFrame]:
    """Frames of one sequence: ``descent`` (nadir-ish camera descending, 80 m -> 20 m by
    default, drifting sideways) or ``rover`` (1.5 m high camera driving 0.25 m per frame)."""
    if kind not in SEQUENCES:
        raise ValueError(f"unknown sequence {kind!r}; choose one of {SEQUENCES}")
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if kind == "descent":
        a0 = start_altitude_m if start_altitude_m is not None else 80.0
        a1 = end_altitude_m if end_altitude_m is not None else 20.0
        if a0 <= 0 or a1 <= 0:
            raise ValueError("altitudes must be above the ground")
        plan = descent_plan(seed, width, height, bits, a0, a1)
        terrain = generate_terrain(plan.terrain, seed)
        fwd = plan.look_target[:2] / max(np.linalg.norm(plan.look_target[:2]), 1e-9)
        for i in range(frames):
            f = i / max(frames - 1, 1)
            alt = a0 + (a1 - a0) * f
            drift = fwd * 0.1 * a0 * f
            ground = float(np.nan_to_num(terrain.height_at(np.array([drift[0]]), np.array([drift[1]]))[0]))
            pos = np.array([drift[0], drift[1], ground + alt])
            tgt = np.array(
                [
                    drift[0] + fwd[0] * alt * math.tan(math.radians(10)),
                    drift[1] + fwd[1] * alt * math.tan(math.radians(10)),
                    ground,
                ]
            )
            T = look_at(pos, tgt)
            T[:3, 3] -= T[:3, 0] * plan.rig.baseline_m / 2
            yield render_scene(plan, terrain, T, keep_terrain=False).frame(name=f"{kind} {seed} {i}")
    else:
        plan = plan_scene("rover", seed, width, height, bits, altitude_m=1.5, off_nadir_deg=75.0, baseline_m=0.3)
        step = 0.25
        plan = replace(
            plan,
            terrain=replace(
                plan.terrain, extent_m=plan.terrain.extent_m + 2 * step * frames, cell_m=max(plan.terrain.cell_m, 0.02)
            ),
        )
        terrain = generate_terrain(plan.terrain, seed)
        heading = plan.look_target[:2] / max(np.linalg.norm(plan.look_target[:2]), 1e-9)
        for i in range(frames):
            xy = heading * step * i - heading * step * frames / 2
            ground = float(np.nan_to_num(terrain.height_at(np.array([xy[0]]), np.array([xy[1]]))[0]))
            pos = np.array([xy[0], xy[1], ground + 1.5])
            tgt = np.array([xy[0] + heading[0] * 6, xy[1] + heading[1] * 6, ground])
            T = look_at(pos, tgt)
            T[:3, 3] -= T[:3, 0] * plan.rig.baseline_m / 2
            yield render_scene(plan, terrain, T, keep_terrain=False).frame(name=f"{kind} {seed} {i}")
