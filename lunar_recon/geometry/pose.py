"""Relative pose of the right camera from its pointmap, metric scale from the calibrated
baseline, and similarity alignment (Umeyama)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import Intrinsics, pixel_grid


@dataclass
class RelativePose:
    """Pose of the right camera in the left camera frame."""

    R_left_from_right: np.ndarray  # 3x3
    center_in_left: np.ndarray  # right camera centre, left frame (pointmap units)
    inliers: int
    reprojection_rmse_px: float

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.center_in_left))

    @property
    def T_left_from_right(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.R_left_from_right
        T[:3, 3] = self.center_in_left
        return T


def _sample_correspondences(points: np.ndarray, conf: np.ndarray | None, max_points: int, rng):
    h, w = points.shape[:2]
    u, v = pixel_grid(h, w)
    pts = points.reshape(-1, 3).astype(np.float64)
    uv = np.stack([u.reshape(-1), v.reshape(-1)], axis=-1).astype(np.float64)
    ok = np.isfinite(pts).all(axis=1)
    if conf is not None:
        c = np.asarray(conf).reshape(-1)
        ok &= np.isfinite(c)
        if ok.sum() > max_points:  # keep the more confident half of the candidates
            ok &= c >= np.median(c[ok])
    idx = np.flatnonzero(ok)
    if idx.size > max_points:
        idx = rng.choice(idx, max_points, replace=False)
    return pts[idx], uv[idx]


def relative_pose_pnp(
    points_right_in_left: np.ndarray,
    K_right: Intrinsics,
    conf: np.ndarray | None = None,
    reproj_px: float = 2.0,
    max_points: int = 4000,
    seed: int = 0,
) -> RelativePose:
    """Right camera pose from the right view's pointmap expressed in the left frame (MASt3R's
    ``pts3d_in_other_view``) and the right intrinsics, by RANSAC PnP + refinement."""
    rng = np.random.default_rng(seed)
    obj, img = _sample_correspondences(points_right_in_left, conf, max_points, rng)
    if len(obj) < 6:
        raise ValueError(f"relative pose: only {len(obj)} valid points")
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        obj, img, K_right.K, None, reprojectionError=reproj_px, iterationsCount=200, confidence=0.999, flags=cv2.SOLVEPNP_EPNP
    )
    if not ok or inliers is None or len(inliers) < 6:
        raise ValueError("relative pose: PnP found no consistent pose")
    inl = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K_right.K, None, rvec, tvec)
    R_rl, _ = cv2.Rodrigues(rvec)  # left -> right
    proj, _ = cv2.projectPoints(obj[inl], rvec, tvec, K_right.K, None)
    rmse = float(np.sqrt(np.mean(np.sum((proj[:, 0] - img[inl]) ** 2, axis=1))))
    R_lr = R_rl.T
    center = -R_lr @ tvec.reshape(3)
    return RelativePose(R_lr, center, int(len(inl)), rmse)


@dataclass
class ScaleEstimate:
    scale: float  # multiply the prediction by this to make it metric
    predicted_baseline: float
    calibrated_baseline_m: float
    pose: RelativePose


def metric_scale_from_baseline(
    points_right_in_left: np.ndarray, K_right: Intrinsics, baseline_m: float, conf: np.ndarray | None = None
) -> ScaleEstimate:
    """Scale that makes the recovered camera baseline equal the calibrated one."""
    if not (np.isfinite(baseline_m) and baseline_m > 0):
        raise ValueError(f"calibrated baseline must be positive, got {baseline_m}")
    pose = relative_pose_pnp(points_right_in_left, K_right, conf)
    if pose.baseline <= 1e-12:
        raise ValueError("relative pose: predicted baseline is zero, scale undefined")
    return ScaleEstimate(baseline_m / pose.baseline, pose.baseline, baseline_m, pose)


def metric_scale_from_rig(
    points_right_in_left: np.ndarray, K_right: Intrinsics, T_left_from_right: np.ndarray, conf: np.ndarray | None = None
) -> float:
    """Scale of a pointmap from a calibrated rig of any relative rotation: the factor s that puts
    each right-view point s X (in the left frame) on the ray of its own right pixel, which
    leaves the right camera (at the calibrated translation t) along R K^-1 [u, v, 1].

    Per point, the component of s X - t across the ray must vanish: s = (P X . P t) / |P X|^2
    with P the projector across the ray; the confidence-weighted median over points is robust
    to wild points.  Exact for a pointmap of the right shape, whatever the rotation; it needs
    the baseline to be seen at an angle (B / Z of a few percent is enough)."""
    T = np.asarray(T_left_from_right, dtype=np.float64)
    t = T[:3, 3]
    if T.shape != (4, 4) or not np.isfinite(T).all() or not np.linalg.norm(t) > 0:
        raise ValueError("metric scale from the rig: need a finite pose with a non-zero baseline")
    if points_right_in_left is None:
        raise ValueError("metric scale from the rig: the model gives no right-view pointmap")
    X = np.asarray(points_right_in_left, dtype=np.float64)
    h, w = X.shape[:2]
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u - K_right.cx) / K_right.fx, (v - K_right.cy) / K_right.fy, np.ones((h, w))], axis=-1)
    d = rays @ T[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    across_x = X - (X * d).sum(-1, keepdims=True) * d
    across_t = t - (d @ t)[..., None] * d
    num, den = (across_x * across_t).sum(-1), (across_x * across_x).sum(-1)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 1e-18)
    if conf is not None:
        ok &= np.isfinite(conf) & (conf > 0)
    if ok.sum() < 10:
        raise ValueError(f"metric scale from the rig: only {int(ok.sum())} usable right-view points")
    scales = num[ok] / den[ok]
    weights = np.sqrt(den[ok]) * (1.0 if conf is None else np.asarray(conf, dtype=np.float64)[ok])
    order = np.argsort(scales)
    cum = np.cumsum(weights[order])
    scale = float(scales[order][np.searchsorted(cum, cum[-1] / 2)])
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"metric scale from the rig: no positive scale (got {scale})")
    return scale


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum ||dst - (s R src + t)||^2 (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    ok = np.isfinite(src).all(axis=1) & np.isfinite(dst).all(axis=1)
    src, dst = src[ok], dst[ok]
    if len(src) < 3:
        raise ValueError("umeyama: need at least 3 valid correspondences")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t
