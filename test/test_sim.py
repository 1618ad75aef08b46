"""The synthetic Moon: geometry of the renderer, ground truth, determinism, files on disk."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lunar_recon.geometry import HAZARD, SAFE, Intrinsics
from lunar_recon.sim.render import SensorParams, SunParams
from lunar_recon.sim.scene import RigParams, ScenePlan, plan_scene, render_scene
from lunar_recon.sim.terrain import TerrainParams, add_rock, flat_terrain, generate_terrain
from lunar_recon.geometry.hazard import HazardParams
from lunar_recon.sim.render import look_at


def _plan(rig: RigParams, sun=None, sensor=None, hazard=None, seed=0) -> ScenePlan:
    return ScenePlan(
        "descent",
        seed,
        rig,
        sun or SunParams(30, 45),
        sensor or SensorParams(noise=False),
        TerrainParams(),
        np.zeros(3),
        np.zeros(3),
        hazard or HazardParams(),
        1e4,
    )


@pytest.fixture(scope="module")
def descent_frame():
    return render_scene(plan_scene("descent", 11, width=192, height=160, altitude_m=60, off_nadir_deg=20, baseline_m=2.0))


def _project(K: Intrinsics, pts: np.ndarray):
    return pts[..., 0] / pts[..., 2] * K.fx + K.cx, pts[..., 1] / pts[..., 2] * K.fy + K.cy


def test_left_and_right_depth_agree_under_the_rig_transform(descent_frame):
    fr = descent_frame
    T_rl = np.linalg.inv(fr.T_left_from_right)
    pts = fr.points_left[fr.valid_left]  # left frame
    in_right = pts @ T_rl[:3, :3].T + T_rl[:3, 3]
    u, v = _project(fr.K_right, in_right)
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    ok = (ui >= 1) & (ui < fr.K_right.width - 1) & (vi >= 1) & (vi < fr.K_right.height - 1)
    assert ok.mean() > 0.8
    z_seen = fr.depth_right[vi[ok], ui[ok]]
    rel = np.abs(z_seen - in_right[ok, 2]) / in_right[ok, 2]
    assert np.nanmedian(rel) < 2e-3  # nearest-pixel sampling of a smooth surface
    # and the right pointmap expressed in the left frame really is the right depth moved by the rig
    pr = fr.points_right_in_left[fr.valid_right]
    back = pr @ T_rl[:3, :3].T + T_rl[:3, 3]
    assert np.allclose(back[:, 2], fr.depth_right[fr.valid_right], rtol=1e-4, atol=1e-3)


def test_triangulated_point_lands_on_ground_truth_depth(descent_frame):
    fr = descent_frame
    T_rl = np.linalg.inv(fr.T_left_from_right)
    P1 = fr.K_left.K @ np.eye(4)[:3]
    P2 = fr.K_right.K @ T_rl[:3]
    vs, us = np.nonzero(fr.valid_left)
    pick = np.linspace(0, len(us) - 1, 50).astype(int)
    pts = fr.points_left[vs[pick], us[pick]].astype(np.float64)
    in_right = pts @ T_rl[:3, :3].T + T_rl[:3, 3]
    ur, vr = _project(fr.K_right, in_right)
    X = cv2.triangulatePoints(P1, P2, np.stack([us[pick], vs[pick]]).astype(np.float64), np.stack([ur, vr]))
    z = X[2] / X[3]
    assert np.allclose(z, fr.depth_left[vs[pick], us[pick]], rtol=1e-4)


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_slope_truth_of_a_tilted_plane_equals_its_tilt(tilt):
    terrain = flat_terrain(120, 0.1, tilt_deg=tilt, tilt_azimuth_deg=30)
    rig = RigParams(128, 128, 60, 1.0)
    T = look_at([0, 0, 40.0], [0, 0, 0])
    fr = render_scene(_plan(rig, hazard=HazardParams(resolution_m=0.5)), terrain, T)
    assert np.nanmax(np.abs(fr.slope_left_deg[fr.valid_left] - tilt)) < 0.05
    known = np.isfinite(fr.hazard.slope_deg)
    assert known.sum() > 100 and np.nanmax(np.abs(fr.hazard.slope_deg - tilt)) < 0.2


def test_rock_of_hazard_size_flagged_smaller_not():
    terrain = flat_terrain(60, 0.05)
    add_rock(terrain, 3.0, 2.0, diameter=0.8, height=0.4)
    add_rock(terrain, -4.0, -3.0, diameter=0.3, height=0.12)
    rig = RigParams(256, 256, 60, 0.5)
    fr = render_scene(_plan(rig, hazard=HazardParams(resolution_m=0.1)), terrain, look_at([0, 0, 15.0], [0, 0, 0]))
    h = fr.hazard
    T_lw = np.linalg.inv(fr.T_world_from_left)

    def cell(x, y):
        p = T_lw[:3, :3] @ np.array([x, y, 0.0]) + T_lw[:3, 3]
        q = h.R_grid_from_input @ p
        return h.grid.cell_of(q[0], q[1])

    assert h.hazard[cell(3.0, 2.0)] == HAZARD
    assert h.hazard[cell(-4.0, -3.0)] == SAFE


def test_shadowed_fraction_grows_as_the_sun_lowers():
    terrain = generate_terrain(TerrainParams(extent_m=80, cell_m=0.1, crater_density=0.05, rock_density=0.03), seed=2)
    rig = RigParams(128, 128, 60, 1.0)
    T = look_at([0, 0, 40.0], [0, 0, 0])
    fractions = []
    for elev in (45, 20, 8, 3):
        fr = render_scene(_plan(rig, sun=SunParams(elev, 120)), terrain, T, with_hazard=False)
        fractions.append(fr.shadow_left[fr.valid_left].mean())
    assert all(a < b for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[-1] > 0.05


def test_bad_parameters_fail_before_any_work():
    with pytest.raises(ValueError, match="baseline must be positive"):
        plan_scene("descent", 0, baseline_m=-1.0)
    with pytest.raises(ValueError, match="below the horizon"):
        plan_scene("descent", 0, sun_elevation_deg=-5)
    with pytest.raises(ValueError, match="unknown preset"):
        plan_scene("mars", 0)
    with pytest.raises(ValueError, match="above the ground"):
        plan_scene("rover", 0, altitude_m=-1)
    terrain = flat_terrain(40, 0.1, height=5.0)
    with pytest.raises(ValueError, match="under the ground"):
        render_scene(_plan(RigParams(64, 64, 60, 1.0)), terrain, look_at([0, 0, 2.0], [0, 1, 0]))
    with pytest.raises(ValueError, match="bits"):
        SensorParams(bits=10).validate()


def test_sensor_bit_depths():
    for bits, dtype in ((8, np.uint8), (12, np.uint16), (16, np.uint16)):
        fr = render_scene(plan_scene("descent", 5, width=64, height=64, bits=bits, altitude_m=50), with_hazard=False)
        assert fr.left.dtype == dtype
        if bits == 12:
            assert (fr.left % 16 == 0).all()  # 12-bit data left-aligned in 16 bits


def _simulate(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lunar_recon",
            "simulate",
            "--preset",
            "descent",
            "--pairs",
            "3",
            "--seed",
            "7",
            "--width",
            "96",
            "--height",
            "64",
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_simulate_same_seed_same_bytes_splits_and_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _simulate(a).returncode == 0
    assert _simulate(b).returncode == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 7
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    info = json.loads((a / "dataset.json").read_text())
    assert info["splits"] == {"train": 1, "val": 1, "test": 1}
    seeds = [json.loads((a / s / "000000" / "meta.json").read_text())["seed"] for s in ("train", "val", "test")]
    assert len(set(seeds)) == 3  # no split shares a seed (hence a terrain)
    # Interrupted run: one pair missing, one half-written folder left behind.
    import shutil

    keep = (a / "train" / "000000" / "left.png").stat().st_mtime_ns
    shutil.rmtree(a / "test" / "000000")
    (a / "val" / ".000001.abc.tmp").mkdir()
    res = _simulate(a)
    assert res.returncode == 0 and "partial" in res.stderr
    assert (a / "test" / "000000" / "left.png").read_bytes() == (b / "test" / "000000" / "left.png").read_bytes()
    assert (a / "train" / "000000" / "left.png").stat().st_mtime_ns == keep  # finished work kept
    assert not list(a.rglob(".*.tmp"))
    bad = _simulate(tmp_path / "c", "--baseline", "-2")
    assert bad.returncode == 2 and "baseline must be positive" in bad.stderr and not (tmp_path / "c").exists()


def test_dataset_reader_reads_what_simulate_wrote(tmp_path):
    from lunar_recon.data.dataset import StereoDataset

    assert _simulate(tmp_path / "d").returncode == 0
    ds = StereoDataset(tmp_path / "d", split="test")
    assert len(ds) == 1
    s = ds[0]
    assert s.left.shape == (64, 96) and s.depth_left.dtype == np.float32 and s.rectified
    assert s.baseline_m > 0 and np.isclose(np.linalg.norm(s.up_left), 1)
    assert np.isclose(np.linalg.norm(s.sun_left), 1) and s.sun_left @ s.up_left > 0  # the sun is up
    assert s.truth.hazard is not None and {"slope_left_deg", "dem_z"} <= set(s.truth.layers)
    assert len(StereoDataset(tmp_path / "d")) == 3
    # pairs missing (an interrupted run): read, with a warning that says so
    import shutil
    import warnings

    shutil.rmtree(tmp_path / "d" / "test" / "000000")
    with pytest.warns(UserWarning, match=r"split 'test' holds 0 of its 1 pairs"):
        assert len(StereoDataset(tmp_path / "d", split="test")) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(StereoDataset(tmp_path / "d", split="train")) >= 1  # a whole split: no warning


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_round_trip(tmp_path, storage):
    from lunar_recon.data.rosbag import bag_topics, read_stereo_bag, write_stereo_bag
    from lunar_recon.sim.sequence import render_sequence

    frames = list(render_sequence("descent", 3, seed=4, width=96, height=64))
    path = tmp_path / f"seq_{storage}"
    assert write_stereo_bag(path, frames, storage=storage, rate_hz=10.0) == 3
    assert (path / "metadata.yaml").exists()
    assert set(bag_topics(path)) >= {
        "left/image_rect",
        "right/camera_info",
        "attitude",
        "pose",
        "ground_truth/depth",
        "ground_truth/hazard",
        "sun_direction",
    }
    back = list(read_stereo_bag(path))
    assert len(back) == 3
    for i, (fr, bf) in enumerate(zip(frames, back)):
        assert bf.stamp_ns == 1_000_000_000_000_000_000 + i * 100_000_000
        assert np.array_equal(bf.left, fr.left) and np.array_equal(bf.right, fr.right)
        assert bf.K_left == fr.K_left and bf.baseline_m == pytest.approx(fr.baseline_m)
        assert np.allclose(bf.up_left, fr.up_left) and np.allclose(bf.sun_left, fr.sun_left)
        assert np.allclose(bf.T_world_from_left, fr.T_world_from_left, atol=1e-6)  # the navigation pose
        assert np.array_equal(np.isnan(bf.depth_left), np.isnan(fr.depth_left))
        assert np.allclose(bf.depth_left[np.isfinite(bf.depth_left)], fr.depth_left[np.isfinite(fr.depth_left)])
        assert np.array_equal(bf.truth.hazard.cost, fr.truth.hazard.cost)


def test_bag_metadata_is_what_ros2_bag_info_reads(tmp_path):
    import yaml

    from lunar_recon.data.rosbag import write_stereo_bag
    from lunar_recon.sim.sequence import render_sequence

    path = tmp_path / "bag"
    write_stereo_bag(path, render_sequence("rover", 2, seed=1, width=64, height=48))
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "sqlite3" and meta["message_count"] == 18  # 9 topics x 2
    for f in meta["relative_file_paths"]:
        assert (path / f).exists()
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta["topics_with_message_count"]}
    assert topics["left/camera_info"] == "sensor_msgs/msg/CameraInfo"
    assert topics["sun_direction"] == "geometry_msgs/msg/Vector3Stamped"
    assert topics["pose"] == "geometry_msgs/msg/PoseStamped"


def test_stereolunar_sample_depth_and_poses_are_consistent(stereolunar_dir):
    from lunar_recon.data.dataset import StereoDataset

    ds = StereoDataset(stereolunar_dir)
    assert len(ds) == 18 and ds.format == "stereolunar"
    for s in (ds[0], ds[len(ds) - 1]):
        assert s.left.shape == (512, 512) and s.depth_left.dtype == np.float32
        assert 500 < s.baseline_m < 5000  # kilometre baselines (B/H 0.045-0.08 at 3.5-31 km)
        v, u = np.nonzero(np.isfinite(s.depth_left))
        pick = np.linspace(0, len(u) - 1, 2000).astype(int)
        u, v = u[pick], v[pick]
        z = s.depth_left[v, u].astype(np.float64)
        K = s.K_left
        pts = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], -1)
        T_rl = np.linalg.inv(s.T_left_from_right)
        pr = pts @ T_rl[:3, :3].T + T_rl[:3, 3]
        ur, vr = _project(s.K_right, pr)
        inside = (ur >= 0) & (ur < 511) & (vr >= 0) & (vr < 511)
        assert inside.mean() > 0.5  # the views overlap where the geometry says
        zr = s.depth_right[np.round(vr[inside]).astype(int), np.round(ur[inside]).astype(int)]
        rel = np.abs(zr - pr[inside, 2]) / pr[inside, 2]
        assert np.nanmedian(rel) < 0.005  # half-float depth steps are ~0.1% at these ranges


def test_unreadable_files_give_clear_errors(tmp_path):
    from lunar_recon.data.dataset import DatasetError, StereoDataset, read_exr_depth
    from lunar_recon.data.rosbag import BagError, read_stereo_bag

    with pytest.raises(DatasetError, match="no such dataset"):
        StereoDataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither"):
        StereoDataset(tmp_path / "empty")
    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="bad.exr"):
        read_exr_depth(bad)
    with pytest.raises(BagError, match="no such bag"):
        list(read_stereo_bag(tmp_path / "nobag"))
    (tmp_path / "notabag").mkdir()
    with pytest.raises(BagError, match="cannot open bag"):
        list(read_stereo_bag(tmp_path / "notabag"))


def test_ray_march_starts_outside_the_terrain_free_ball():
    """clearance() bounds the distance from the camera to the terrain from below: 1.5 m above a
    flat plane it is the height; a 0.5 m rock 1 m to the side brings it under the distance to the
    rock's top (1.41 m); at the grid's edge it claims nothing."""
    from lunar_recon.sim.render import SunParams, clearance, terrain_tensors
    from lunar_recon.sim.terrain import add_rock, flat_terrain

    ground = flat_terrain(20.0, 0.05, texture=0.0)
    sun = SunParams(30.0, 0.0)
    cam = np.array([0.0, 0.0, 1.5])
    assert 1.49 < clearance(terrain_tensors(ground, sun), cam) <= 1.5
    add_rock(ground, 1.0, 0.0, 0.6, 0.5)  # top 0.5 m high at 1 m: 1.41 m from the camera
    near = clearance(terrain_tensors(ground, sun), cam)
    assert 1.2 < near < np.hypot(1.0, 1.0)
    assert clearance(terrain_tensors(ground, sun), np.array([9.9, 0.0, 1.5])) == 0.0


def test_a_pixel_that_spans_many_cells_sees_their_shading_averaged(monkeypatch):
    """Ten cells per pixel of an albedo alternating cell by cell: one ray per pixel would pick
    one cell's albedo (aliasing: a random pattern of the two); the prefiltered shading sees
    their mean.  At about a cell per pixel nothing is prefiltered (single pairs render as
    before)."""
    from lunar_recon.sim import render
    from lunar_recon.sim.render import Camera, render_view, shading_prefilter_sigma, terrain_tensors

    assert shading_prefilter_sigma(0.05, 0.05) == shading_prefilter_sigma(0.07, 0.05) == 0.0
    assert shading_prefilter_sigma(0.5, 0.05) == pytest.approx(0.5 * np.sqrt(99))
    uniform = flat_terrain(16.0, 0.02, texture=0.0)
    uniform.albedo[:] = 0.12
    checker = flat_terrain(16.0, 0.02, texture=0.0)
    rows, cols = np.indices(checker.albedo.shape)
    checker.albedo[:] = np.where((rows + cols) % 2 == 0, 0.10, 0.14).astype(np.float32)
    # 97 px focal: 0.206 m per pixel, so the rays fall anywhere in a cell, not on its edges
    cam = Camera(Intrinsics(97.0, 97.0, 31.5, 31.5, 64, 64), look_at((0.0, 0.0, 20.0), (0.0, 0.0, 0.0)))
    sun = SunParams(60.0, 0.0, shadows=False)

    def radiance(ground) -> np.ndarray:
        view = render_view(terrain_tensors(ground, sun), cam, sun, SensorParams(noise=False), np.random.default_rng(0), 100.0)
        return view.radiance

    def spread() -> float:  # the checkerboard's brightness against the mean albedo's, pixel by pixel
        return float(np.std(radiance(checker) / radiance(uniform)))

    assert spread() < 0.005
    monkeypatch.setattr(render, "PREFILTER_ABOVE_CELLS_PER_PIXEL", float("inf"))
    assert spread() > 0.05


def test_a_descents_terrain_is_as_fine_as_its_last_frames_pixels():
    """The DEM one descent renders every frame from has the detail of the end altitude's pixel
    (80 -> 20 m at 512 x 384: 4.5 cm), not the start altitude's extent over 2000 cells (10 cm),
    and stays within the terrain's cell budget."""
    from lunar_recon.sim.sequence import sequence_plan

    plan = sequence_plan("descent", 41, 512, 384, 8, 80.0, 20.0)
    end_pixel = 20.0 / plan.rig.intrinsics().fx
    assert plan.terrain.cell_m <= 1.25 * end_pixel
    assert plan.terrain.extent_m / plan.terrain.cell_m > 2000
    plan.terrain.validate()


def test_lander_sequence_glides_down_onto_its_landing_area():
    """The lander's final approach: the lander preset's rig and terrain (rocks from 0.15 m),
    30 -> 12 m above ground, its line of sight held on one aim point (the middle of every
    frame looks at the same ground), a DEM as fine as the last frame's pixel there."""
    from lunar_recon.sim.sequence import render_sequence, sequence_plan

    plan = sequence_plan("lander", 81, 512, 384, 8, 30.0, 12.0)
    assert plan.terrain.rock_min_m == pytest.approx(0.15) and plan.terrain.crater_max_m == pytest.approx(30.0)
    slant = math.hypot(1.0, float(np.linalg.norm(plan.look_target[:2])) / 30.0)  # line-of-sight / altitude
    assert plan.terrain.cell_m <= 1.25 * 12.0 * slant / plan.rig.intrinsics().fx
    frames = list(render_sequence("lander", 3, seed=81, width=96, height=64))
    heights = [f.T_world_from_left[2, 3] for f in frames]
    assert heights[0] > heights[1] > heights[2]
    from lunar_recon.geometry.camera import depth_to_points

    aims = []  # the ground at the middle of each frame, in the world
    for f in frames:
        T = f.T_world_from_left
        aims.append(T[:3, :3] @ depth_to_points(f.depth_left, f.K_left)[32, 48] + T[:3, 3])
    for a in aims[1:]:  # the same ground to within the half baseline the left camera sits aside
        assert np.linalg.norm(a[:2] - aims[0][:2]) < 0.6 * plan.rig.baseline_m + 0.2
    with pytest.raises(ValueError, match="unknown sequence"):
        next(render_sequence("orbit", 2, seed=1))


def test_a_sequence_refuses_the_options_of_a_preset_dataset(tmp_path, capsys):
    from lunar_recon.cli import main

    assert main(["simulate", "--sequence", "lander", "--frames", "1", "--altitude", "40", "--out", str(tmp_path / "b")]) == 2
    assert "--altitude apply to --preset datasets" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_simulated_sequence_bag_files_carry_the_bags_name(tmp_path):
    from lunar_recon.cli import main

    out = tmp_path / "seq_bag"
    (tmp_path / ".seq_bag.partial").mkdir()  # an interrupted run's leftovers are cleared
    assert main(["simulate", "--sequence", "rover", "--frames", "1", "--width", "64", "--height", "48", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "metadata.yaml" in names and not any("partial" in n for n in names), names
    assert not any("partial" in p.name for p in tmp_path.iterdir())
    assert "partial" not in (out / "metadata.yaml").read_text()
    from lunar_recon.data.rosbag import read_stereo_bag

    assert len(list(read_stereo_bag(out))) == 1


def test_oblique_preset_is_an_unrectified_converging_rig_with_metric_truth(tmp_path):
    """StereoLunar's oblique geometry: two independently posed cameras, the right one turned
    toward the left one's look-at point, B/H 0.02-0.3; the truth of both views is consistent
    under the rig's transform, and evaluate-bag scores every frame's depth even though the
    truth's hazard cells (metres at km range) are coarser than a lander footprint."""
    import json

    from conftest import run_cli

    from lunar_recon.sim.scene import plan_scene

    for seed in range(6):
        plan = plan_scene("oblique", seed, width=128, height=96)
        assert not plan.rig.rectified
        assert 3e3 <= plan.camera_position[2] <= 3e4 and 0.02 <= plan.rig.baseline_m / plan.camera_position[2] <= 0.3 * 1.0001
        pitch = plan.rig.right_rotation_deg[1]
        look = np.linalg.norm(plan.look_target - plan.camera_position)
        assert abs(pitch + np.degrees(np.arctan2(plan.rig.baseline_m, look))) <= 3.0 + 1e-6  # converging
    out = tmp_path / "obl"
    res = run_cli(
        "simulate",
        "--preset",
        "oblique",
        "--pairs",
        "2",
        "--seed",
        "3",
        "--width",
        "160",
        "--height",
        "128",
        "--split-fractions",
        "0",
        "1",
        "1",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr
    res = run_cli(
        "evaluate-bag", out, "--split", "val", "--model", "sgbm", "--no-references", "--figures", "0", "--out", tmp_path / "ev"
    )
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert data["summary"]["sgbm"]["frames"] == 1 and "range_m" in data["frames"][0]["metrics"]
    assert "hazard truth not scored" in (tmp_path / "ev" / "report.md").read_text()
