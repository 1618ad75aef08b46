"""Time-stamped sequences over one terrain: a lander descending (``descent``), a lander's final
approach onto its landing area (``lander``), or a rover driving."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator

import numpy as np

from . import SEQUENCES
from .render import look_at
from ..data.frame import StereoFrame
from .scene import ScenePlan, plan_scene, render_scene
from .terrain import generate_terrain

# start and end altitude (m) of a sequence when none is given
DEFAULT_ALTITUDES_M = {"descent": (80.0, 20.0), "lander": (30.0, 12.0)}


def sequence_plan(
    kind: str, seed: int, width: int, height: int, bits: int, start_altitude_m: float, end_altitude_m: float
) -> ScenePlan:
    """A descending sequence's scene (``kind`` descent or lander): planned at its start
    altitude (the widest view) with the terrain's detail of its end altitude.  One DEM serves
    every frame, so it may be as large as the terrain allows (a single pair's is bounded
    tighter); the frames at altitude see its shading averaged over their pixels
    (``render.shading_prefilter_sigma``).  ``descent``: the descent preset 10 deg off nadir with
    a 2 m baseline; ``lander``: the lander preset's draws of the seed (off-nadir angle, focal
    length, baseline, sun, rocks and craters)."""
    tilt, baseline = (10.0, 2.0) if kind == "descent" else (None, None)
    plan = plan_scene(kind, seed, width, height, bits, altitude_m=start_altitude_m, off_nadir_deg=tilt, baseline_m=baseline)
    lo = plan_scene(kind, seed, width, height, bits, altitude_m=end_altitude_m, off_nadir_deg=tilt, baseline_m=baseline)
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
    default, drifting sideways), ``lander`` (a lander's final approach, 30 m -> 12 m by
    default: the lander preset's rig, terrain and off-nadir angle, gliding down its line of
    sight so that the landing area it aims at stays at the image centre) or ``rover`` (1.5 m
    high camera driving 0.25 m per frame)."""
    if kind not in SEQUENCES:
        raise ValueError(f"unknown sequence {kind!r}; choose one of {SEQUENCES}")
    if frames < 1:
        raise ValueError("frames must be >= 1")
    a0, a1 = DEFAULT_ALTITUDES_M.get(kind, (ROVER_HEIGHT_M, ROVER_HEIGHT_M))
    if kind in DEFAULT_ALTITUDES_M:
        a0 = start_altitude_m if start_altitude_m is not None else a0
        a1 = end_altitude_m if end_altitude_m is not None else a1
        if a0 <= 0 or a1 <= 0:
            raise ValueError("altitudes must be above the ground")
        plan = sequence_plan(kind, seed, width, height, bits, a0, a1)
    else:
        plan = plan_scene("rover", seed, width, height, bits, altitude_m=ROVER_HEIGHT_M, off_nadir_deg=75.0, baseline_m=0.3)
        plan = replace(
            plan,
            terrain=replace(
                plan.terrain, extent_m=plan.terrain.extent_m + 2 * ROVER_STEP_M * frames, cell_m=max(plan.terrain.cell_m, 0.02)
            ),
        )
    terrain = generate_terrain(plan.terrain, seed)
    for i in range(frames):
        position, target = _viewpoint(kind, plan, terrain, i / max(frames - 1, 1), i, frames, a0, a1)
        T = look_at(position, target)
        T[:3, 3] -= T[:3, 0] * plan.rig.baseline_m / 2  # the rig's centre at the viewpoint
        yield render_scene(plan, terrain, T, keep_terrain=False).frame(name=f"{kind} {seed} {i}")


ROVER_STEP_M = 0.25  # the rover's travel per frame
ROVER_HEIGHT_M = 1.5  # its camera above the ground


def _ground(terrain, x: float, y: float) -> float:
    return float(np.nan_to_num(terrain.height_at(np.array([x]), np.array([y]))[0]))


def _viewpoint(kind: str, plan: ScenePlan, terrain, f: float, i: int, frames: int, a0: float, a1: float):
    """Frame ``i``'s (camera position, look-at point) in the world; ``f`` = i / (frames - 1)."""
    if kind == "lander":  # down the line of sight onto the aim point
        aim = plan.look_target[:2]
        ahead = float(np.linalg.norm(aim))  # the aim point's ground distance at the start altitude
        fwd = aim / max(ahead, 1e-9)
        alt = a0 + (a1 - a0) * f
        xy = aim - fwd * ahead * alt / a0
        return np.array([xy[0], xy[1], _ground(terrain, xy[0], xy[1]) + alt]), np.array(
            [aim[0], aim[1], _ground(terrain, aim[0], aim[1])]
        )
    if kind == "descent":  # drifting sideways, 10 deg off nadir
        fwd = plan.look_target[:2] / max(np.linalg.norm(plan.look_target[:2]), 1e-9)
        alt = a0 + (a1 - a0) * f
        drift = fwd * 0.1 * a0 * f
        ground = _ground(terrain, drift[0], drift[1])
        tan = math.tan(math.radians(10))
        return np.array([drift[0], drift[1], ground + alt]), np.array(
            [drift[0] + fwd[0] * alt * tan, drift[1] + fwd[1] * alt * tan, ground]
        )
    heading = plan.look_target[:2] / max(np.linalg.norm(plan.look_target[:2]), 1e-9)  # rover: driving forward
    xy = heading * ROVER_STEP_M * i - heading * ROVER_STEP_M * frames / 2
    ground = _ground(terrain, xy[0], xy[1])
    return np.array([xy[0], xy[1], ground + ROVER_HEIGHT_M]), np.array([xy[0] + heading[0] * 6, xy[1] + heading[1] * 6, ground])
