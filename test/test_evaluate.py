"""Evaluation: oracle vs SGBM scores, report files, missing topics, live replay into the node."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli

from lunar_recon.data.rosbag import BagError, read_stereo_bag, write_stereo_bag
from lunar_recon.evaluation import FrameScore, hazard_on_truth_cells, score_frame, summarize
from lunar_recon.geometry.camera import depth_to_points
from lunar_recon.geometry.hazard import HazardParams
from lunar_recon.geometry.metrics import hazard_metrics
from lunar_recon.sim.sequence import render_sequence


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "descent"
    write_stereo_bag(
        path, render_sequence("descent", 3, seed=3, width=256, height=192, start_altitude_m=50, end_altitude_m=40), rate_hz=2.0
    )
    return path


def test_oracle_scores_zero_and_sgbm_positive(bag):
    from lunar_recon.geometry.stereo import StereoCalibration
    from lunar_recon.models.sgbm import SGBMModel
    from lunar_recon.pipeline import StereoReconstructor

    for fr in read_stereo_bag(bag):
        params = HazardParams(resolution_m=fr.truth.hazard.resolution)
        truth = dataclasses.replace(fr.truth.hazard, params=params)
        fB = fr.K_left.fx * fr.baseline_m
        oracle = score_frame(
            fr.depth_left, depth_to_points(fr.depth_left, fr.K_left), fr.depth_left, None, fr.up_left, params, focal_baseline=fB
        )
        assert oracle["depth_abs_rel"] == 0 and oracle["depth_mae"] == 0 and oracle["depth_delta1"] == 1
        assert oracle["disparity_sigma_px"] == 0 and oracle["range_m"] == pytest.approx(np.nanmedian(fr.depth_left))
        calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
        r = StereoReconstructor(SGBMModel()).reconstruct(fr.left, fr.right, calib, fr.up_left)
        sgbm = score_frame(r.depth, r.points, fr.depth_left, truth, fr.up_left, params, r.elevation_sigma, fB)
        assert sgbm["depth_abs_rel"] > 0 and sgbm["depth_mae"] > 0
        assert 0.02 < sgbm["disparity_sigma_px"] < 2.0  # sub-pixel matching, but not perfect
        # The pipeline's noise model: SGBM's stated disparity sigma through Z^2 / (f B).
        z = np.nanmedian(r.depth)
        assert np.nanmedian(r.elevation_sigma) == pytest.approx(z * z / fB * SGBMModel.disparity_sigma_px, rel=0.3)
        assert 0 <= sgbm["hazard_f1"] <= 1 or np.isnan(sgbm["hazard_f1"])
        tp, fp, fn = sgbm["hazard_tp"], sgbm["hazard_fp"], sgbm["hazard_fn"]
        assert sgbm["hazard_cells"] >= tp + fp + fn and (tp + fn) / sgbm["hazard_cells"] == pytest.approx(
            sgbm["hazard_f1_chance"] / (2 - sgbm["hazard_f1_chance"])
        )
        assert 2 * tp + fp + fn == 0 or sgbm["hazard_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        # The map's resolving power: its cell height sigma follows the noise model (sigma_Z ~ Z^2),
        # and the oracle's exact map has none.
        doubled = score_frame(r.depth, r.points, fr.depth_left, truth, fr.up_left, params, 2 * r.elevation_sigma, fB)
        assert sgbm["hazard_elevation_sigma_m"] > 0
        assert doubled["hazard_elevation_sigma_m"] > 1.5 * sgbm["hazard_elevation_sigma_m"]
        exact = score_frame(fr.depth_left, depth_to_points(fr.depth_left, fr.K_left), fr.depth_left, truth, fr.up_left, params)
        assert exact["hazard_elevation_sigma_m"] == 0
        # With the bag's sun direction the left image's shadows bound the hazard map's terrain:
        # the same points, never a higher cell, and the evaluation scores that very map.
        assert fr.sun_left is not None
        rs = StereoReconstructor(SGBMModel()).reconstruct(fr.left, fr.right, calib, fr.up_left, fr.sun_left)
        assert rs.shadowed is not None and rs.shadowed.shape == rs.depth.shape and r.shadowed is None
        assert np.array_equal(rs.points, r.points, equal_nan=True)
        both = np.isfinite(rs.hazard.elevation_m) & np.isfinite(r.hazard.elevation_m)
        assert np.all(rs.hazard.elevation_m[both] <= r.hazard.elevation_m[both] + 1e-6)
        scored = score_frame(
            rs.depth, rs.points, fr.depth_left, truth, fr.up_left, params, rs.elevation_sigma, fB, hazard_pred=rs.hazard
        )
        direct = hazard_on_truth_cells(rs.hazard, truth)
        assert scored["hazard_f1"] == pytest.approx(hazard_metrics(direct, truth)["f1"], nan_ok=True)
        assert scored["hazard_false_safe"] == pytest.approx(hazard_metrics(direct, truth)["false_safe"], nan_ok=True)
        break


def test_a_frame_whose_points_make_no_map_is_scored_on_its_depth(bag):
    """A few wild matches kilometres away (a matcher's outliers on a megapixel frame) make a
    grid beyond ``max_cells``: the frame keeps its depth scores and has no hazard metrics, and
    the run goes on; where the pipeline said why it has no map, no second map is tried."""
    fr = next(iter(read_stereo_bag(bag)))
    params = HazardParams(resolution_m=fr.truth.hazard.resolution, max_cells=200_000)
    truth = dataclasses.replace(fr.truth.hazard, params=params)
    depth = fr.depth_left.copy()
    depth[::9, ::7] = 3000.0  # 1.6 % of the pixels: beyond the grid's 0.5-99.5 % outlier cut
    scored = score_frame(depth, depth_to_points(depth, fr.K_left), fr.depth_left, truth, fr.up_left, params)
    assert scored["depth_abs_rel"] > 0.5 and not any(k.startswith("hazard_") for k in scored)
    fine = score_frame(fr.depth_left, depth_to_points(fr.depth_left, fr.K_left), fr.depth_left, truth, fr.up_left, params)
    assert "hazard_f1" in fine
    skipped = score_frame(
        fr.depth_left, depth_to_points(fr.depth_left, fr.K_left), fr.depth_left, truth, fr.up_left, params, make_hazard=False
    )
    assert "depth_abs_rel" in skipped and not any(k.startswith("hazard_") for k in skipped)


def test_ideal_stereo_depth_carries_the_requested_disparity_noise_and_nothing_else():
    from lunar_recon.evaluation import ideal_stereo_depth

    fb = 443.0 * 1.2
    depth = np.random.default_rng(1).uniform(15, 90, (200, 300)).astype(np.float32)
    depth[0, :5] = np.nan
    exact = ideal_stereo_depth(depth, fb, 0.0, np.random.default_rng(0))
    assert np.array_equal(exact, depth, equal_nan=True)
    noisy = ideal_stereo_depth(depth, fb, 0.1, np.random.default_rng(0))
    err = (fb / noisy - fb / depth)[1:]
    assert abs(np.median(err)) < 0.005 and np.std(err) == pytest.approx(0.1, rel=0.03)  # unbiased, sigma as asked
    assert np.isnan(noisy[0, :5]).all() and np.isfinite(noisy[1:]).all()
    far = ideal_stereo_depth(np.full((50, 50), 5e4, np.float32), fb, 1.0, np.random.default_rng(0))
    assert np.isnan(far).any() and (far[np.isfinite(far)] > 0).all()  # a negative disparity matches nothing
    with pytest.raises(ValueError, match="sigma"):
        ideal_stereo_depth(depth, fb, -0.1, np.random.default_rng(0))


def test_stereo_ceiling_is_reproducible_and_falls_with_the_noise(bag):
    from lunar_recon.evaluation.runner import score_ceiling as _score_ceiling, truth_of as _truth

    fr = next(iter(read_stereo_bag(bag)))
    params = HazardParams(resolution_m=fr.truth.hazard.resolution)
    label, first = _score_ceiling(0.1, "descent", 0, fr, _truth(fr, params), params, {})
    _, again = _score_ceiling(0.1, "descent", 0, fr, _truth(fr, params), params, {})
    assert label == "ideal stereo, 0.1 px" and first.keys() == again.keys()
    assert all(np.allclose(first[k], again[k], rtol=0, atol=0, equal_nan=True) for k in first)
    assert first["disparity_sigma_px"] == pytest.approx(0.1, rel=0.1)
    _, exact = _score_ceiling(0.0, "descent", 0, fr, _truth(fr, params), params, {})
    _, coarse = _score_ceiling(1.0, "descent", 0, fr, _truth(fr, params), params, {})
    assert exact["depth_abs_rel"] == 0 and exact["hazard_elevation_sigma_m"] == 0
    assert exact["hazard_f1"] >= coarse["hazard_f1"]
    assert coarse["hazard_elevation_sigma_m"] > first["hazard_elevation_sigma_m"]
    fr.truth.depth_left = None
    assert "needs ground-truth depth" in _score_ceiling(0.1, "descent", 0, fr, None, params, {})


def test_summary_is_nan_aware():
    s = summarize([FrameScore("a", "m", 0, 0, 0.1, {"x": 1.0}), FrameScore("a", "m", 1, 1, 0.3, {"x": float("nan")})])
    assert s["m"]["x"] == 1.0 and s["m"]["frames"] == 2 and s["m | a"]["latency_ms_p50"] == pytest.approx(200)


def test_pooled_hazard_f1_scores_the_frames_cells_as_one_set():
    # A frame full of hazards found well, one whose single small rock was missed, one without any.
    big = {"hazard_f1": 0.9, "hazard_tp": 900, "hazard_fp": 100, "hazard_fn": 100, "hazard_cells": 5000}
    rock = {"hazard_f1": 0.0, "hazard_tp": 0, "hazard_fp": 0, "hazard_fn": 10, "hazard_cells": 5000}
    empty = {"hazard_f1": float("nan"), "hazard_tp": 0, "hazard_fp": 0, "hazard_fn": 0, "hazard_cells": 5000}
    s = summarize([FrameScore("a", "m", i, i, 0.1, m) for i, m in enumerate([big, rock, empty])])["m"]
    assert s["hazard_f1"] == pytest.approx(0.45)  # the rock frame weighs as much as the full one
    assert s["hazard_f1_pooled"] == pytest.approx(1800 / (1800 + 100 + 110))
    assert s["hazard_f1_chance_pooled"] == pytest.approx(2 * 1010 / (1010 + 15000))


def test_summary_by_range_bins_frames_by_their_median_range():
    scores = [FrameScore("a", "m", i, i, 0.1, {"range_m": r, "x": float(i)}) for i, r in enumerate([12.0, 25.0, 70.0])]
    s = summarize(scores, by="range")
    assert set(s) == {"m | 0-30 m", "m | 60-100 m"}
    assert s["m | 0-30 m"]["frames"] == 2 and s["m | 0-30 m"]["x"] == 0.5 and s["m | 60-100 m"]["x"] == 2.0


def test_evaluate_bag_command_writes_a_report(bag, tmp_path):
    out = tmp_path / "report"
    res = run_cli(
        "evaluate-bag",
        str(bag),
        "--model",
        "sgbm",
        "--out",
        str(out),
        "--figures",
        "1",
        "--stereo-ceiling",
        "0",
        "--stereo-ceiling",
        "0.5",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert (out / "report.md").read_text().startswith("# lunar_recon evaluation")
    data = json.loads((out / "metrics.json").read_text())
    assert data["summary"]["sgbm"]["frames"] == 3 and data["summary"]["sgbm"]["depth_abs_rel"] > 0
    exact, noisy = data["summary"]["ideal stereo, 0 px"], data["summary"]["ideal stereo, 0.5 px"]
    assert exact["frames"] == noisy["frames"] == 3 and exact["depth_abs_rel"] == 0 < noisy["depth_abs_rel"]
    assert noisy["disparity_sigma_px"] == pytest.approx(0.5, rel=0.1)
    assert sum(row["frames"] for row in data["by_range"].values()) == 3 * 4  # every frame in one range bin
    constant = data["summary"]["constant depth (true median)"]  # the reference that needs no images
    assert constant["frames"] == 3 and constant["depth_abs_rel"] > exact["depth_abs_rel"]
    report = (out / "report.md").read_text()
    assert "## By range" in report
    tables = [ln for ln in report.splitlines() if ln.startswith("|")]
    assert "| sgbm | all |" in report and "| model | range |" in report
    header_cells = tables[0].count("|")
    assert all(ln.count("|") == header_cells for ln in tables)  # every row lines up with its header
    assert "| ideal stereo, 0.5 px | all |" in report
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 4 and "depth_abs_rel" in rows[0]
    bad = run_cli(
        "evaluate-bag", str(bag), "--model", "sgbm", "--out", str(tmp_path / "bad"), "--stereo-ceiling", "-0.1", timeout=300
    )
    assert bad.returncode == 2 and "--stereo-ceiling" in bad.stderr and "Traceback" not in bad.stderr
    assert (out / "error_by_range.png").stat().st_size > 1000
    assert (out / "reliability.png").stat().st_size > 1000 and "![reliability](reliability.png)" in report
    assert list(out.glob("example_*.png"))
    headline = report.splitlines()[2]
    assert headline.startswith("- **") and "hazard F1" in headline and "chance" in headline
    assert "hazard_false_safe_pooled" in tables[0] and "hazard_certified_safe_pooled" in tables[0]


def test_missing_topic_lists_the_bag_topics(tmp_path):
    from rosbags.rosbag2 import Writer

    from lunar_recon.data.rosbag import typestore

    path = tmp_path / "incomplete"
    ts = typestore()
    with Writer(path, version=9) as w:
        w.add_connection("left/image_rect", "sensor_msgs/msg/Image", typestore=ts)
        w.add_connection("imu", "sensor_msgs/msg/Imu", typestore=ts)
    with pytest.raises(BagError, match=r"missing topics .*right/image_rect.*the bag has: \['imu', 'left/image_rect'\]"):
        list(read_stereo_bag(path))
    res = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "evaluate-bag", str(path), "--model", "sgbm", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "imu" in res.stderr


def test_corrupt_bag_is_reported_not_a_crash(bag, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bag, broken)
    db = next(broken.glob("*.db3"))
    data = bytearray(db.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\x00" * 4096
    db.write_bytes(bytes(data))
    res = subprocess.run(
        [sys.executable, "-m", "lunar_recon", "evaluate-bag", str(broken), "--model", "sgbm", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in res.stderr
    assert res.returncode in (0, 2)


@pytest.mark.slow
def test_live_replay_receives_every_frame_at_a_slow_rate(bag, tmp_path):
    from lunar_recon.ros.probe import node_env, start_node, stop_node

    dom = random.randint(20, 200)
    proc = start_node(dom, "model:=sgbm", "hazard.resolution_m:=0.5")
    try:
        res = run_cli(
            "evaluate-bag", str(bag), "--live", "--speed", "0.5", "--out", str(tmp_path / "live"), timeout=300, env=node_env(dom)
        )
    finally:
        stop_node(proc)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "3 frames sent, 3 answered, 0 dropped" in res.stdout
    data = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert data["summary"]["stereo_node (live)"]["frames"] == 3


def test_bag_poses_carry_one_frames_hazards_onto_the_next_frames_truth(bag):
    """The hazard memory as evaluate-bag runs it, on the bag's poses: the truth's hazards of
    frame 0, remembered into a map of frame 1 that knows nothing, land on frame 1's truth
    hazards (so poses, grids and frames agree); memories are kept per model and sequence."""
    import dataclasses

    from lunar_recon.geometry.hazard import HAZARD, UNKNOWN
    from lunar_recon.geometry.hazard_memory import HazardMemory
    from lunar_recon.evaluation.runner import truth_of as _truth

    f0, f1 = list(read_stereo_bag(bag))[:2]
    assert f0.T_world_from_left is not None and not np.allclose(f0.T_world_from_left, f1.T_world_from_left)
    t0, t1 = _truth(f0, HazardParams()), _truth(f1, HazardParams())
    memory = HazardMemory(frames=2)
    memory.update(t0, f0.T_world_from_left)
    blind = dataclasses.replace(t1, hazard=np.full_like(t1.hazard, UNKNOWN))
    merged = memory.update(blind, f1.T_world_from_left)
    known, truth = t1.hazard != UNKNOWN, t1.hazard == HAZARD
    called = (merged.hazard == HAZARD) & known
    assert truth.sum() > 20 and called.sum() > 20
    assert (called & truth).sum() / called.sum() > 0.8  # remembered hazards are where the truth has them
    assert (HazardMemory(frames=2).update(blind, f1.T_world_from_left).hazard == UNKNOWN).all()  # a fresh stream


def test_stereolunar_folder_runs_through_evaluate_bag_with_every_frame_scored(stereolunar_dir, tmp_path):
    """Orbital range: the hazard map follows the ground sample distance and, coarser than the
    footprint there, is left out with a note -- the depth of every frame is still scored."""
    sample = tmp_path / "Nadir"
    import shutil

    shutil.copytree(stereolunar_dir / "Nadir_baseline_sample" / "paire1", sample / "paire1")
    out = tmp_path / "report"
    res = run_cli(
        "evaluate-bag", str(sample), "--model", "sgbm", "--no-references", "--out", str(out), "--figures", "0", timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((out / "metrics.json").read_text())
    frames = data["summary"]["sgbm"]["frames"]
    assert frames == 3 and data["summary"]["sgbm"]["depth_abs_rel"] < 0.05
    report = (out / "report.md").read_text()
    assert "coarser than half the 4 m footprint" in report and "skipped" not in report


def test_hazard_cells_follow_the_range_and_a_meaningless_map_says_why():
    from lunar_recon.geometry.hazard import HazardGridError, params_for_range

    auto = HazardParams(resolution_m=0.0)
    assert params_for_range(auto, 30.0, 600.0).resolution_m == pytest.approx(0.1)
    assert params_for_range(HazardParams(resolution_m=0.2), 3e4, 600.0).resolution_m == 0.2  # given: kept
    with pytest.raises(HazardGridError, match="coarser than half the 4 m footprint"):
        params_for_range(auto, 3e4, 600.0)
    with pytest.raises(ValueError, match="resolved first"):
        from lunar_recon.geometry.hazard import hazard_map

        hazard_map(np.zeros((10, 3)), [0, 0, 1], auto)


def test_a_bag_replayed_offline_and_live_gives_the_same_hazard_maps(bag):
    """One code path: the pipeline run offline (one reconstructor for the sequence, as
    evaluate-bag runs it) and a running stereo_node fed the same bag over DDS
    (ros.replay.LiveReplay) publish the same hazard map for every frame."""
    from lunar_recon.data.rosbag import read_stereo_bag
    from lunar_recon.evaluation.runner import with_node_thresholds
    from lunar_recon.geometry.hazard import HazardParams, hazard_map_from_grid
    from lunar_recon.models.sgbm import SGBMModel
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor
    from lunar_recon.ros.probe import start_node, stop_node
    from lunar_recon.ros.replay import LiveReplay

    frames = list(read_stereo_bag(bag))
    rec = StereoReconstructor(SGBMModel(), ReconstructionParams(hazard=HazardParams(resolution_m=0.5)))
    offline = {}
    for fr in frames:
        r = rec.reconstruct(fr.left, fr.right, fr.calibration, fr.up_left, fr.sun_left, camera_pose=fr.T_world_from_left)
        offline[int(fr.stamp_ns)] = r.hazard
    dom = random.randint(20, 200)
    proc = start_node(dom, "model:=sgbm", "hazard.resolution_m:=0.5")
    replay = LiveReplay(domain=dom)
    try:
        replay.wait_for_node(60.0)
        replay.replay(frames, speed=0.5)
        answers = replay.collect(60.0)
        kv = replay.diagnostics()
    finally:
        replay.close()
        stop_node(proc)
    assert set(answers) == set(offline)
    # the live scorer reads the grid's classes at the node's own threshold (its model's)
    params = with_node_thresholds(HazardParams(resolution_m=0.5), kv)
    assert params.hazard_above == SGBMModel.hazard_above and params.safe_below == SGBMModel.hazard_safe_below
    for stamp, hmap in offline.items():
        grid = answers[stamp].grid
        assert grid is not None, f"no hazard/grid for stamp {stamp}"
        assert grid[0].shape == hmap.cost.shape and np.array_equal(grid[0], hmap.cost)
        published = hazard_map_from_grid(*grid, params)[0]
        # the same classes, but where a probability rounds to a whole percent across a threshold
        p = np.where(hmap.cost >= 0, hmap.cost / 100.0, np.nan)
        clear = (hmap.cost >= 0) & (np.abs(p - params.safe_below) > 0.005) & (np.abs(p - params.hazard_above) > 0.005)
        assert clear.mean() > 0.5 and (published.hazard == hmap.hazard)[clear].all()
        assert (published.hazard == hmap.hazard).mean() > 0.95
