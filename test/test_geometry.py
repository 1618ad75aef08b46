"""Geometry core on analytic data: cameras, frames, pose and metric scale, slope, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from lunar_recon.geometry import (
    Intrinsics,
    confidence_mask,
    depth_to_points,
    estimate_focal,
    normals_from_points,
    metric_scale_from_baseline,
    pointmap_to_depth,
    points_to_depth,
    quaternion_to_matrix,
    rotation_aligning,
    slope_image,
    umeyama,
    up_from_attitude,
)
from lunar_recon.geometry.frames import matrix_to_quaternion
from lunar_recon.geometry.metrics import depth_metrics, point_metrics

K = Intrinsics.from_fov(60.0, 160, 120)


def ground_depth(K: Intrinsics, height_m: float, tilt_deg: float = 0.0) -> np.ndarray:
    """Depth of a plane seen by a camera looking down at it (optical axis pitched down 90-tilt)."""
    u, v = np.meshgrid(np.arange(K.width), np.arange(K.height))
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, float)], -1)
    # Camera looking straight down at a plane tilted about the camera x axis.
    n = np.array([0.0, np.sin(np.radians(tilt_deg)), -np.cos(np.radians(tilt_deg))])  # normal towards camera
    d = height_m  # plane: n . p = -d  (camera at distance d from the plane)
    t = -d / (rays @ n)
    return (rays[..., 2] * t).astype(np.float32)


def test_depth_points_round_trip_and_z_buffer():
    depth = ground_depth(K, 20.0)
    pts = depth_to_points(depth, K)
    assert np.allclose(pointmap_to_depth(pts), depth)
    back = points_to_depth(pts.reshape(-1, 3), K, K.height, K.width)
    assert np.nanmax(np.abs(back - depth)) < 1e-3
    pts[0, 0] = np.nan
    pts[1, 1, 2] = -1.0
    d = pointmap_to_depth(pts)
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1])


def test_intrinsics_scaling_keeps_pixel_centres():
    k2 = K.scaled(80, 60)
    assert k2.fx == pytest.approx(K.fx / 2) and k2.cx == pytest.approx((K.cx + 0.5) / 2 - 0.5)


def test_estimate_focal_recovers_the_camera():
    pts = depth_to_points(ground_depth(K, 15.0, tilt_deg=20), K)
    assert estimate_focal(pts) == pytest.approx(K.fx, rel=1e-3)


def test_confidence_threshold_and_quantile():
    conf = np.array([[1.0, 1.5], [3.0, np.nan]])
    assert confidence_mask(conf).sum() == 3
    assert confidence_mask(conf, threshold=0.5).sum() == 3  # below 1 filters nothing on MASt3R confidences
    assert confidence_mask(conf, threshold=1.4).tolist() == [[False, True], [True, False]]
    assert confidence_mask(conf, quantile=0.5).sum() == 2
    with pytest.raises(ValueError):
        confidence_mask(conf, quantile=1.5)


def test_frames():
    R = rotation_aligning([0, 0, 1], [0, 0, 1])
    assert np.allclose(R, np.eye(3))
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.normal(size=3)
        R = rotation_aligning(a)
        assert np.allclose(R @ (a / np.linalg.norm(a)), [0, 0, 1]) and np.isclose(np.linalg.det(R), 1)
    assert np.allclose(rotation_aligning([0, 0, -1]) @ [0, 0, -1], [0, 0, 1])
    # A nadir camera (optical axis = world down): up is -z in the camera frame.
    R_wc = np.diag([1.0, -1.0, -1.0])  # camera x = world x, y = -world y, z = -world z
    assert np.allclose(up_from_attitude(matrix_to_quaternion(R_wc)), [0, 0, -1])
    assert np.allclose(quaternion_to_matrix(matrix_to_quaternion(R_wc)), R_wc)


def _rig_pointmaps(scale_pred: float):
    """Ground-truth pointmaps of a rectified rig (B = 0.8 m) over tilted ground, then shrunk."""
    B = 0.8
    depth_r = ground_depth(K, 12.0, tilt_deg=15)
    pts_r = depth_to_points(depth_r, K)  # right camera frame
    pts_r_in_left = pts_r + np.array([B, 0, 0], np.float32)  # right camera sits at +B in the left frame
    return pts_r_in_left / scale_pred, B


def test_metric_scale_from_baseline_recovers_3_7():
    pts, B = _rig_pointmaps(3.7)
    rng = np.random.default_rng(1)
    noisy = pts + rng.normal(scale=0.002, size=pts.shape).astype(np.float32)
    noisy[::7, ::5] = rng.uniform(-5, 5, size=noisy[::7, ::5].shape)  # outliers
    est = metric_scale_from_baseline(noisy, K, B)
    assert est.scale == pytest.approx(3.7, rel=0.01)
    assert np.allclose(est.pose.center_in_left / np.linalg.norm(est.pose.center_in_left), [1, 0, 0], atol=0.02)
    with pytest.raises(ValueError, match="positive"):
        metric_scale_from_baseline(pts, K, -1.0)


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(100, 3))
    R = quaternion_to_matrix(rng.normal(size=4))
    dst = 2.5 * src @ R.T + [1, 2, 3]
    s, R2, t = umeyama(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1, 2, 3])


@pytest.mark.parametrize("tilt", [0.0, 10.0, 25.0])
def test_slope_image_of_tilted_ground(tilt):
    depth = ground_depth(K, 20.0, tilt_deg=tilt)
    pts = depth_to_points(depth, K)
    slope = slope_image(pts, up=[0, 0, -1], baseline_m=1.0, fx=K.fx)  # nadir camera: up = -z
    inner = slope[5:-5, 5:-5]
    assert np.nanmax(np.abs(inner - tilt)) < 0.1
    assert np.isnan(slope[0, 0])  # border has no neighbours


def test_slope_image_is_the_slope_of_the_cloud_normals():
    """The compiled slope is the angle of the central-difference normals to gravity, NaN where
    a neighbour is missing, on a rough cloud with holes."""
    from lunar_recon.geometry.slope import slope_from_normals

    rng = np.random.default_rng(3)
    pts = depth_to_points(ground_depth(K, 20.0, tilt_deg=12.0), K).astype(np.float32)
    pts += rng.normal(0, 0.05, pts.shape).astype(np.float32)
    pts[rng.random(pts.shape[:2]) < 0.02] = np.nan
    up = np.array([0.1, -0.3, -1.0])
    for step in (1, 4):
        slope = slope_image(pts, up, step_px=step)
        expected = slope_from_normals(normals_from_points(pts, step), up)
        assert np.array_equal(np.isnan(slope), np.isnan(expected))
        assert np.nanmax(np.abs(slope - expected)) < 1e-3
        # a pixel needs its four neighbours: 1 - 0.98^4 of the inner pixels are NaN
        assert 0.05 < np.isnan(slope[step:-step, step:-step]).mean() < 0.11


def test_depth_metrics_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, np.nan]])
    pred = np.array([[1.0, 2.0], [4.0, 5.0]])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["mae"] == 0 and m["delta1"] == 1 and m["completeness"] == 1
    pred = np.array([[2.0, 2.0], [np.nan, 5.0]])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.5) and m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt(0.5)) and m["delta1"] == pytest.approx(0.5)
    assert m["completeness"] == pytest.approx(2 / 3)
    # relief-normalised: MAE over the (p95 - p5) spread of the true depth
    assert m["relief_norm_mae"] == pytest.approx(0.5 / (np.percentile([1, 2], 95) - np.percentile([1, 2], 5)))
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.zeros((2, 3)), gt)


def test_point_metrics_perfect_scaled_and_aligned():
    pts = depth_to_points(ground_depth(K, 10.0, 20), K)
    m = point_metrics(pts, pts)
    assert m["chamfer"] == 0 and m["accuracy"] == 0
    m = point_metrics(pts * 1.1, pts)
    assert m["chamfer"] > 0.1  # scale errors count by default
    m = point_metrics(pts * 1.1, pts, align=True)
    assert m["chamfer"] < 1e-4 and m["aligned_scale"] == pytest.approx(1 / 1.1) and m["aligned"] == 1.0


@pytest.mark.parametrize("angle_deg", [0.0, 15.0, 60.0, 120.0])
@pytest.mark.parametrize("b_over_z", [0.02, 0.1, 0.3])
def test_metric_scale_from_a_known_rotated_rig_is_exact(angle_deg, b_over_z):
    """A right-view pointmap in the left frame, shrunk by an unknown factor: the rig's known pose
    (rotated 0-120 deg, B/Z 0.02-0.3) brings the scale back exactly, 5 % wild points included."""
    from lunar_recon.geometry.camera import Intrinsics
    from lunar_recon.geometry.pose import metric_scale_from_rig

    K = Intrinsics.from_fov(50.0, 64, 48)
    a = np.radians(angle_deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # right camera turned about y
    depth = 100.0
    t = np.array([b_over_z * depth, 0.0, 0.0])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    rng = np.random.default_rng(int(angle_deg * 10 + b_over_z * 100))
    v, u = np.mgrid[0:48, 0:64]
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones((48, 64))], -1)
    z_right = rng.uniform(0.8, 1.2, (48, 64)) * depth  # depth along the right camera's axis
    X = (rays * z_right[..., None]) @ R.T + t  # right-view points in the left frame, metric
    shrunk = X / 3.7
    wild = rng.random((48, 64)) < 0.05
    shrunk[wild] *= rng.uniform(0.2, 5.0, wild.sum())[:, None]
    assert metric_scale_from_rig(shrunk, K, T) == pytest.approx(3.7, rel=1e-6)


def test_metric_scale_from_rig_rejects_a_zero_or_nan_baseline():
    from lunar_recon.geometry.camera import Intrinsics
    from lunar_recon.geometry.pose import metric_scale_from_rig

    K = Intrinsics.from_fov(50.0, 8, 8)
    pts = np.ones((8, 8, 3))
    for bad in (np.eye(4), np.where(np.eye(4) > 0, 1.0, np.nan)):
        with pytest.raises(ValueError, match="non-zero baseline"):
            metric_scale_from_rig(pts, K, bad)
