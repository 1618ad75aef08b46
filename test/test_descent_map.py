"""The descent map: frames fused into one probabilistic elevation map (issue 31)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from lunar_recon.geometry.descent_map import DescentMap, DescentMapParams
from lunar_recon.geometry.hazard import HAZARD, SAFE


def _pose(x=0.0, y=0.0, z=20.0):
    """A camera looking straight down (its z along world -z) at (x, y, z)."""
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T[:3, 3] = [x, y, z]
    return T


def _plane_view(T, height=0.0, sigma=0.0, n=200_000, half=8.0, rng=None, bump=None):
    """Points of the plane z = height (plus an optional bump) in the camera frame, with noise."""
    rng = rng or np.random.default_rng(0)
    xy = rng.uniform(-half, half, (n, 2)) + T[:2, 3]
    z = np.full(n, height)
    if bump is not None:
        cx, cy, r, h = bump
        z[np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) < r] += h
    z = z + rng.normal(0.0, sigma, n) if sigma else z
    world = np.c_[xy, z]
    Ti = np.linalg.inv(T)
    return world @ Ti[:3, :3].T + Ti[:3, 3]


def test_two_noisy_views_of_a_plane_fuse_to_the_variance_weighted_mean():
    m = DescentMap(0.5, DescentMapParams(window_m=12.0))
    T = _pose()
    # one point per cell, exact heights 1.0 and 1.3 with stated sigmas 0.2 and 0.1
    g = np.arange(-5.75, 6.0, 0.5)
    X, Y = np.meshgrid(g, g)
    world = lambda h: np.c_[X.ravel(), Y.ravel(), np.full(X.size, h)]  # noqa: E731
    Ti = np.linalg.inv(T)
    for h, s in ((1.0, 0.2), (1.3, 0.1)):
        u = m.update(world(h) @ Ti[:3, :3].T + Ti[:3, 3], np.full(X.size, s), T)
        assert u.gated == 0 and not u.reset
    seen = np.isfinite(m.mean)
    assert seen.sum() >= X.size * 0.9
    w1, w2 = 1 / 0.2**2, 1 / 0.1**2
    np.testing.assert_allclose(m.mean[seen], (1.0 * w1 + 1.3 * w2) / (w1 + w2), atol=1e-9)
    np.testing.assert_allclose(m.var[seen], 1 / (w1 + w2), rtol=1e-9)


def test_an_observation_beyond_the_gate_is_rejected():
    m = DescentMap(0.5, DescentMapParams(window_m=12.0, gate_sigmas=3.0))
    T = _pose()
    g = np.arange(-5.75, 6.0, 0.5)
    X, Y = np.meshgrid(g, g)
    Ti = np.linalg.inv(T)
    view = lambda h: np.c_[X.ravel(), Y.ravel(), np.full(X.size, h)] @ Ti[:3, :3].T + Ti[:3, 3]  # noqa: E731
    m.update(view(0.0), np.full(X.size, 0.05), T)
    u = m.update(view(2.0), np.full(X.size, 0.05), T)  # 2 m off at sigma 0.07 together: an outlier everywhere
    seen = np.isfinite(m.mean)
    assert u.gated == seen.sum() and u.fused == 0
    assert np.allclose(m.mean[seen], 0.0)


def test_memory_is_bounded_over_a_long_traverse_and_the_window_follows():
    m = DescentMap(0.25, DescentMapParams(window_m=16.0, reset_distance_m=50.0))
    size = m.nbytes
    rng = np.random.default_rng(1)
    for k in range(40):  # 40 frames, 2 m apart: 80 m of ground, five windows' worth
        T = _pose(x=2.0 * k)
        m.update(_plane_view(T, n=20_000, half=6.0, rng=rng), np.full(20_000, 0.02), T)
        assert m.nbytes == size
    centre = m.origin + m.mean.shape[0] * m.resolution / 2
    assert abs(centre[0] - 78.0) <= 16.0 / 4 + 0.25
    assert np.isfinite(m.mean).mean() > 0.3 and m.resets == 0


def test_a_pose_jump_resets_the_map_and_says_so():
    m = DescentMap(0.5, DescentMapParams(window_m=12.0, reset_distance_m=10.0))
    T = _pose()
    m.update(_plane_view(T, height=0.0, n=20_000, half=5.0), np.full(20_000, 0.05), T)
    T2 = _pose(x=30.0)  # 30 m in one frame: navigation reset
    u = m.update(_plane_view(T2, height=5.0, n=20_000, half=5.0), np.full(20_000, 0.05), T2)
    assert u.reset and m.resets == 1 and u.fused == 0 and u.gated == 0
    assert np.allclose(m.mean[np.isfinite(m.mean)], 5.0)


def test_fusing_noisy_frames_certifies_ground_one_frame_cannot():
    """A 0.4 m rock on flat ground seen ten times at a noise one frame cannot judge: the fused
    map calls the rock's sites hazards and certifies the far ground, the single frame does not."""
    from lunar_recon.geometry.hazard import hazard_map

    params = DescentMapParams(window_m=20.0)
    m = DescentMap(0.25, params)
    rng = np.random.default_rng(2)
    rock = (1.0, 1.0, 0.4, 0.4)
    sigma = 0.25  # per point; with ~4 points per cell a frame's cell is good to ~0.13 m
    for k in range(12):
        T = _pose(x=0.1 * k, z=20.0 - k)
        pts = _plane_view(T, sigma=sigma, n=40_000, half=7.0, rng=rng, bump=rock)
        m.update(pts, np.full(len(pts), sigma), T)
    from lunar_recon.geometry.hazard import HazardParams

    hp = HazardParams(resolution_m=0.25)
    fused = m.hazard_map(T, hp)
    single = hazard_map(pts, [0, 0, -1], hp, elevation_sigma=np.full(len(pts), sigma))
    rock_cell = fused.grid.cell_of(1.0 - T[0, 3], 1.0 - T[1, 3])
    assert fused.hazard[rock_cell] == HAZARD
    far = fused.grid.cell_of(-4.0 - T[0, 3], -4.0 - T[1, 3])
    assert fused.hazard[far] == SAFE
    assert (fused.hazard == SAFE).sum() > 5 * max((single.hazard == SAFE).sum(), 1)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="window_m"):
        DescentMap(0.5, DescentMapParams(window_m=0.0))
    m = DescentMap(0.5)
    with pytest.raises(ValueError, match="pose"):
        m.update(np.zeros((3, 3)), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="sigmas"):
        m.update(np.zeros((3, 3)), np.zeros(2), np.eye(4))


def test_the_pipeline_fuses_a_sequence_and_evaluate_bag_scores_it(tmp_path):
    """Through the node's path: with descent_map on and poses, each reconstruction carries the
    fused map's landing-site map; evaluate-bag scores it beside the single-frame map, at the
    last frame too."""
    import json

    from lunar_recon.data.rosbag import read_stereo_bag, write_stereo_bag
    from lunar_recon.geometry.hazard import UNKNOWN, resample_hazard_map
    from lunar_recon.geometry.stereo import StereoCalibration
    from lunar_recon.models.sgbm import SGBMModel
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, model_safe_below
    from lunar_recon.sim.sequence import render_sequence

    bag = tmp_path / "descent"
    write_stereo_bag(
        bag, render_sequence("descent", 3, seed=5, width=256, height=192, start_altitude_m=30, end_altitude_m=24), rate_hz=2.0
    )
    # the fused map alone (its own calibration, below); the single frame's fallback has its test
    alone = DescentMapParams(single_frame_fallback=False)
    rec = StereoReconstructor(SGBMModel(), ReconstructionParams(descent_map=True, descent=alone))
    with_single = StereoReconstructor(SGBMModel(), ReconstructionParams(descent_map=True))  # the default
    updates = []
    for fr in read_stereo_bag(bag):
        calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
        r = rec.reconstruct(fr.left, fr.right, calib, fr.up_left, camera_pose=fr.T_world_from_left)
        assert r.descent_hazard is not None and r.descent_hazard.probability is not None
        # by default the sites the fused map leaves undecided take the single frame's judgement
        both = with_single.reconstruct(fr.left, fr.right, calib, fr.up_left, camera_pose=fr.T_world_from_left)
        fused, combined = r.descent_hazard.hazard, both.descent_hazard.hazard
        decided = fused != UNKNOWN
        assert np.array_equal(combined[decided], fused[decided])
        single = resample_hazard_map(
            r.hazard, r.descent_hazard.grid, r.descent_hazard.R_grid_from_input, r.descent_hazard.elevation_m
        )
        taken = ~decided & (combined != UNKNOWN)
        assert taken.any() and np.array_equal(combined[taken], single.hazard[taken])
        assert np.array_equal(combined == UNKNOWN, ~decided & (single.hazard == UNKNOWN))
        # the fused map through the model's own fused-map calibration, the single frame through its own
        assert r.descent_hazard.params.hazard_above == SGBMModel.descent_map_hazard_above != SGBMModel.hazard_above
        assert r.hazard.params.hazard_above == SGBMModel.hazard_above
        # its safe threshold: the fused map's own, at the frame's range band where that is tighter
        band = model_safe_below(SGBMModel(), descent_map=True, range_m=float(np.nanmedian(r.depth)))
        assert r.descent_hazard.params.safe_below == band <= SGBMModel.descent_map_hazard_safe_below
        assert r.hazard.params.safe_below == SGBMModel.hazard_safe_below
        known = np.isfinite(r.descent_hazard.probability)
        assert known.any() and r.descent_hazard.probability[known].min() >= SGBMModel.descent_map_hazard_calibration[0]
        updates.append(r.descent_update)
    assert updates[0].new > 0 and updates[-1].fused > 0 and not any(u.reset for u in updates)
    out = tmp_path / "report"
    res = run_cli(
        "evaluate-bag",
        str(bag),
        "--model",
        "sgbm",
        "--no-references",
        "--descent-map",
        "--descent-levels",
        "2",
        "--figures",
        "0",
        "--fit-hazard-calibration",
        "--out",
        str(out),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["sgbm + descent map"]["frames"] == 3 and "hazard_f1_pooled" in summary["sgbm + descent map"]
    fitted = json.loads((out / "hazard_calibration.json").read_text())  # the fused map's table beside the single frame's
    assert {"sgbm", "sgbm + descent map"} <= set(fitted) and len(fitted["sgbm + descent map"]["hazard_calibration"]) == 21
    assert 0 < fitted["sgbm + descent map"]["hazard_safe_below"] <= fitted["sgbm + descent map"]["hazard_above"]
    assert "## Last frame of each sequence" in (out / "report.md").read_text()


def _rotation(axis_angle):
    import cv2

    return cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))[0]


def test_poses_drifting_one_percent_of_range_keep_the_map_consistent():
    """Navigation error as a descent has it: the pose drifts by 1 % of the range (a fixed
    direction, shrinking as the lander descends) and its attitude jitters 0.1 deg per frame.
    The fused map stays consistent: nothing is gated as an outlier or reset, the rock stays a
    hazard and the ground the true-pose map certifies stays certified."""
    from lunar_recon.geometry.hazard import HazardParams

    hp = HazardParams(resolution_m=0.25)
    rock, sigma = (1.0, 1.0, 0.4, 0.4), 0.25
    direction = np.array([0.6, -0.48, 0.64])  # unit
    maps = {}
    for name in ("true", "drifting"):
        m = DescentMap(0.25, DescentMapParams(window_m=20.0))
        rng, jitter = np.random.default_rng(2), np.random.default_rng(7)
        for k in range(12):
            T = _pose(x=0.1 * k, z=20.0 - k)
            pts = _plane_view(T, sigma=sigma, n=40_000, half=7.0, rng=rng, bump=rock)
            T_nav = T.copy()
            if name == "drifting":
                T_nav[:3, 3] += 0.01 * (20.0 - k) * direction
                axis = jitter.normal(size=3)
                T_nav[:3, :3] = _rotation(np.radians(0.1) * axis / np.linalg.norm(axis)) @ T[:3, :3]
            u = m.update(pts, np.full(len(pts), sigma), T_nav)
            assert not u.reset and u.gated <= 0.02 * max(u.fused, 1)
        maps[name] = m.hazard_map(T_nav, hp)
    true, drift = maps["true"], maps["drifting"]
    for hm, T_map in ((true, _pose(x=1.1, z=9.0)), (drift, None)):
        ox = 1.1 if T_map is not None else 1.1 + 0.01 * 9.0 * direction[0]
        oy = 0.0 if T_map is not None else 0.01 * 9.0 * direction[1]
        assert hm.hazard[hm.grid.cell_of(1.0 - ox, 1.0 - oy)] == HAZARD
    certified = true.hazard == SAFE
    assert certified.sum() > 100
    kept = (drift.hazard[certified] == SAFE).mean() if drift.hazard.shape == true.hazard.shape else 0.0
    assert kept >= 0.9, kept


def test_a_fused_maps_poorly_measured_cells_keep_their_own_variance_in_the_relief():
    """The fused map judges each cell's relief on its own variance plus the squared mean sigma of
    the footprint around the cell (which stands in for the registration error its variances miss):
    a patch of cells whose heights are a guess (sigma 1 m) on well-measured flat ground blocks
    certification of every site whose footprint holds it, which the footprint's mean sigma alone
    (~0.17 m here) would certify; ground farther than two footprint radii from the patch (beyond
    every cell whose footprint holds it) is certified."""
    from lunar_recon.geometry.hazard import CellGrid, GridSpec, HazardParams, hazard_map_from_cells

    grid = GridSpec((-8.0, -8.0), 0.2, (80, 80))
    X, Y = grid.cell_centres()
    var = np.full(grid.shape, 0.01**2)
    patch = (np.abs(X) < 0.3) & (np.abs(Y) < 0.3)  # 3 x 3 cells at the centre
    var[patch] = 1.0
    cells = CellGrid(X, Y, np.zeros(grid.shape), np.ones(grid.shape), var)
    hmap = hazard_map_from_cells(cells, grid, np.eye(3), HazardParams(resolution_m=0.2), per_cell_sigma=False)
    reach = np.hypot(X, Y)  # a site's distance from the patch's centre
    assert not (hmap.hazard[reach < 1.5] == SAFE).any()
    far = (reach > 4.5) & (hmap.coverage >= 0.99)
    assert far.sum() > 500 and (hmap.hazard[far] == SAFE).all()
    # the footprint's mean alone would have certified the centre
    mean_sigma = np.sqrt((var[reach <= 2.0]).mean())
    assert 0.1 < mean_sigma < 0.3 and hmap.probability[grid.cell_of(0.0, 0.0)] > 0.2


def test_a_fused_maps_shared_error_is_the_footprints_mean_sigma_not_its_mean_variance():
    """A harmless 0.2 m step cell 1.6 m from a patch of guessed heights (sigma 1 m) on
    well-measured flat ground: the step's footprint holds the patch.  Its shared error is the mean
    sigma there (~0.04 m), so the site 3.2 m from the patch (its footprint holds the step, not
    the patch) is certified; the footprint's mean variance would have lent the step the patch's
    sigma (~0.14 m), and a 0.1 m margin under the limit at that sigma is no certification."""
    from scipy.special import ndtr

    from lunar_recon.geometry.hazard import CellGrid, GridSpec, HazardParams, hazard_map_from_cells

    grid = GridSpec((-8.0, -8.0), 0.2, (80, 80))
    X, Y = grid.cell_centres()
    var = np.full(grid.shape, 0.01**2)
    patch = (np.abs(X) < 0.3) & (np.abs(Y) < 0.3)
    var[patch] = 1.0
    z = np.zeros(grid.shape)
    step = grid.cell_of(1.7, 0.1)
    z[step] = 0.2
    cells = CellGrid(X, Y, z, np.ones(grid.shape), var)
    params = HazardParams(resolution_m=0.2)
    hmap = hazard_map_from_cells(cells, grid, np.eye(3), params, per_cell_sigma=False)
    site = grid.cell_of(3.3, 0.1)
    assert np.hypot(X[site], Y[site]) > 2.0 + 0.3 and np.hypot(X[site] - X[step], Y[site] - Y[step]) < 2.0
    assert hmap.hazard[site] == SAFE
    # the step's footprint: the mean variance would have made its sigma ~0.14 m, and failed it
    around = np.hypot(X - X[step], Y - Y[step]) <= 2.0
    assert np.sqrt(var[around].mean()) > 0.12 and ndtr((0.2 - 0.3) / np.sqrt(var[around].mean())) > 0.2
    assert np.sqrt(var[around]).mean() < 0.05


def test_a_far_frames_pixel_adds_its_resolution_error_to_the_variance():
    """pixel_relief: each observation's sigma gains pixel_relief x its ground pixel (depth / fx)
    in quadrature, so a far frame's heights count for less than a near one's."""
    T_far, fx, sigma = _pose(z=80.0), 400.0, 0.05
    pts = _plane_view(T_far, n=50_000, half=5.0)
    plain = DescentMap(0.5, DescentMapParams(window_m=12.0, pixel_relief=0.0))
    widened = DescentMap(0.5, DescentMapParams(window_m=12.0, pixel_relief=1.0))
    plain.update(pts, np.full(len(pts), sigma), T_far, fx=fx)
    widened.update(pts, np.full(len(pts), sigma), T_far, fx=fx)
    seen = np.isfinite(plain.var)
    # an exact plane: a cell's variance is its points' mean variance over (at most 4) samples
    ratio = widened.var[seen] / plain.var[seen]
    assert ratio == pytest.approx((sigma**2 + (80.0 / fx) ** 2) / sigma**2, rel=1e-6)
    no_fx = DescentMap(0.5, DescentMapParams(window_m=12.0, pixel_relief=1.0))
    no_fx.update(pts, np.full(len(pts), sigma), T_far)  # without the focal length: no term
    assert np.allclose(no_fx.var[seen], plain.var[seen])
    with pytest.raises(ValueError, match="pixel_relief"):
        DescentMapParams(pixel_relief=-1.0).validate()


def test_observations_update_the_level_their_ground_pixel_resolves():
    """levels: an observation updates the finest level whose cell spans pixels_per_cell of its
    ground pixels (depth / fx); the map read out is the finest level with its empty cells
    filled from the coarser ones, and a nearer look takes them over."""
    params = DescentMapParams(window_m=12.0, levels=3, pixels_per_cell=2.0, pixel_relief=0.0, reset_distance_m=100.0)
    m = DescentMap(0.25, params)
    fx = 400.0
    # a ground pixel of depth / 400: 2 of them fit a 0.25 m cell up to 50 m, 0.5 m to 100 m
    assert m.level_of(np.array([10.0, 50.0, 51.0, 100.0, 101.0, 1e4]), fx).tolist() == [0, 0, 1, 1, 2, 2]
    assert m.level_of(np.array([1e4]), None).tolist() == [0]  # no focal length: the finest
    assert [layer.resolution for layer in m.layers] == [0.25, 0.5, 1.0]

    T_far = _pose(z=90.0)
    u = m.update(_plane_view(T_far, height=0.5, n=50_000, half=5.0), np.full(50_000, 0.05), T_far, fx=fx)
    assert u.points_per_level == (0, 50_000, 0) and u.new > 0
    assert not np.isfinite(m.mean).any()  # nothing in the finest cells ...
    mean, var = m.fused_cells()
    seen = np.isfinite(mean)
    assert seen.sum() > 0.5 * (10 / 0.25) ** 2  # ... but the read-out holds the far frame's heights
    np.testing.assert_allclose(mean[seen], 0.5, atol=1e-9)
    hm = m.hazard_map(T_far)
    assert (hm.hazard == SAFE).any()

    T_near = _pose(z=20.0)
    m.update(_plane_view(T_near, height=0.8, n=50_000, half=3.0), np.full(50_000, 0.05), T_near, fx=fx)
    mean, _ = m.fused_cells()
    near = np.isfinite(m.mean)
    assert near.sum() > 0.5 * (6 / 0.25) ** 2
    np.testing.assert_allclose(mean[near], 0.8, atol=1e-9)  # the near look, where it looked
    far_only = seen & ~near
    np.testing.assert_allclose(mean[far_only], 0.5, atol=1e-9)  # the far one elsewhere
    assert m.nbytes == sum(2 * 8 * n * n for n in (48, 24, 12))  # each level's window: bounded
    # a level whose points all fall outside its window (far points at the view's edge) is left as it was
    before = m.layers[2].mean.copy()
    far_off = np.array([[300.0, 0.0, 300.0]] * 10)  # 300 m deep, 300 m aside: level 2, off every window
    near = _plane_view(T_near, height=0.8, n=1000, half=3.0)
    u = m.update(np.r_[near, far_off], np.full(1010, 0.05), T_near, fx=fx)
    assert u.points_per_level == (1000, 0, 10)
    np.testing.assert_array_equal(m.layers[2].mean, before)
    with pytest.raises(ValueError, match="levels"):
        DescentMapParams(levels=0).validate()
    with pytest.raises(ValueError, match="pixels_per_cell"):
        DescentMapParams(pixels_per_cell=0.0).validate()


def test_the_descent_map_as_a_grid_map_message_keeps_grid_maps_layout():
    """hazard/grid_map (published where grid_map_msgs imports): in the world frame, each layer
    an Eigen column-major matrix whose index (0, 0) is the cell of largest x and y, as
    grid_map's converters read it; a bump placed in the world is found where it is.  The
    message types stand in for grid_map_msgs (not on PyPI) with its fields."""
    from geometry_msgs.msg import Pose
    from std_msgs.msg import Float32MultiArray, Header, MultiArrayDimension

    from lunar_recon.geometry.hazard import HazardParams
    from lunar_recon.ros.conversions import grid_map_msg

    class GridMapInfo:  # grid_map_msgs/GridMapInfo
        def __init__(self):
            self.resolution, self.length_x, self.length_y, self.pose = 0.0, 0.0, 0.0, Pose()

    class GridMap:  # grid_map_msgs/GridMap
        def __init__(self):
            self.header, self.info, self.layers, self.basic_layers, self.data = Header(), GridMapInfo(), [], [], []
            self.outer_start_index = self.inner_start_index = 0

    T = _pose(x=103.0, y=-41.0, z=20.0)
    m = DescentMap(0.25, DescentMapParams(window_m=12.0))
    bump = (105.0, -39.5, 0.4, 0.8)  # world x, y, radius, height
    m.update(_plane_view(T, height=7.0, bump=bump), np.full(200_000, 0.02), T)
    hmap = m.hazard_map(T, HazardParams(resolution_m=0.25))
    header = Header(frame_id="world")
    msg = grid_map_msg(GridMap, Float32MultiArray, MultiArrayDimension, header, hmap, T[:3, 3])
    assert msg.header.frame_id == "world" and msg.layers[0] == "elevation" and msg.basic_layers == ["elevation"]
    assert len(msg.data) == len(msg.layers) and "variance" in msg.layers and "hazard_probability" in msg.layers
    layer = msg.data[0]
    assert [d.label for d in layer.layout.dim] == ["column_index", "row_index"]
    size_x, size_y = layer.layout.dim[1].size, layer.layout.dim[0].size  # Eigen rows: along x
    res, info = msg.info.resolution, msg.info
    assert size_x * res == pytest.approx(info.length_x) and size_y * res == pytest.approx(info.length_y)
    M = np.asarray(layer.data, np.float32).reshape(size_y, size_x).T  # column-major: M[i, j] = data[j * size_x + i]
    i, j = np.unravel_index(np.nanargmax(M), M.shape)
    x = info.pose.position.x + info.length_x / 2 - (i + 0.5) * res  # grid_map's getPositionFromIndex
    y = info.pose.position.y + info.length_y / 2 - (j + 0.5) * res
    assert np.hypot(x - bump[0], y - bump[1]) < bump[2] and M[i, j] == pytest.approx(7.8, abs=0.05)
    assert np.nanmedian(M) == pytest.approx(7.0, abs=0.01)  # the ground's world height
    variance = np.asarray(msg.data[msg.layers.index("variance")].data).reshape(size_y, size_x).T
    assert np.isfinite(variance[i, j]) and variance[i, j] > 0


def test_sites_the_fused_map_leaves_undecided_take_the_single_frames_judgement():
    """with_fallback: a site the fused map judges keeps its class; an undecided one (UNKNOWN,
    with or without data) takes the single frame's class and probability, seen on the fused
    grid, and its published value reads as that class at the fused map's own thresholds."""

    from lunar_recon.geometry.hazard import (
        HAZARD,
        UNKNOWN,
        GridSpec,
        HazardParams,
        fallback_share,
        hazard_map_from_grid,
        with_fallback,
    )

    params = HazardParams(resolution_m=0.5, safe_below=0.02, hazard_above=0.3, landing_margin_m=0.0)
    grid = GridSpec((0.0, 0.0), 0.5, (4, 6))  # both maps' grid (the single frame's resampled onto it)
    # the fused map: left half judged (safe, hazard), right half undecided or without data
    fused_cost = np.array([[1, 40, 10, 10, -1, -1]] * 4, np.int8)
    fused, _ = hazard_map_from_grid(fused_cost, 0.5, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), params)
    assert [int(fused.hazard[0, c]) for c in range(6)] == [SAFE, HAZARD, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]
    # the single frame (its own thresholds 0.05 / 0.5): safe at 4 %, a hazard at 60 %, one undecided
    single_params = HazardParams(resolution_m=0.5, safe_below=0.05, hazard_above=0.5)
    single_cost = np.array([[60, 1, 4, 60, 4, 20]] * 4, np.int8)
    single, _ = hazard_map_from_grid(single_cost, 0.5, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), single_params)
    out = with_fallback(fused, single)
    assert [int(out.hazard[0, c]) for c in range(6)] == [SAFE, HAZARD, SAFE, HAZARD, SAFE, UNKNOWN]
    assert out.probability[0, 2] == pytest.approx(0.04) and out.probability[0, 1] == pytest.approx(0.40)
    assert np.isnan(out.probability[0, 5])  # neither map decides: the fused map's (no data)
    # read back through the fused map's thresholds, the published grid gives the combined classes
    read, _ = hazard_map_from_grid(out.cost, 0.5, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), params)
    assert np.array_equal(read.hazard, out.hazard)
    # the share the fallback decided: columns 2-4 of the five decided ones
    assert fallback_share(out) == pytest.approx(3 / 5) and np.isnan(fallback_share(fused))
    assert out.landing_site is not None and out.hazard[out.landing_site.row, out.landing_site.col] == SAFE
    assert grid.shape == out.hazard.shape


def test_the_fused_map_takes_its_own_calibration_else_the_single_frame_one():
    from lunar_recon.pipeline import model_hazard_above, model_hazard_calibration, model_safe_below

    class SingleFrameOnly:
        hazard_calibration, hazard_above, hazard_safe_below = (0.1,) * 11, 0.2, 0.02

    class BothCalibrated(SingleFrameOnly):
        descent_map_hazard_calibration, descent_map_hazard_above, descent_map_hazard_safe_below = (0.3,) * 11, 0.4, 0.03

    single, both = SingleFrameOnly(), BothCalibrated()
    assert model_hazard_calibration(single, descent_map=True) == (0.1,) * 11 and model_hazard_above(single, True) == 0.2
    assert model_hazard_calibration(both, descent_map=True) == (0.3,) * 11 and model_hazard_above(both, True) == 0.4
    assert model_hazard_calibration(both) == (0.1,) * 11 and model_hazard_above(both) == 0.2
    assert model_safe_below(single, True) == 0.02 and model_safe_below(both, True) == 0.03 and model_safe_below(both) == 0.02
