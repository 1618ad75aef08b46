"""sensor_msgs/CameraInfo -> the stereo rig, in ROS conventions: the one parser the node (rclpy
messages) and the bag reader (rosbags messages) share; it reads only the fields ``k``, ``p``,
``r``, ``width`` and ``height``, so any message object with them will do."""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics
from .stereo import StereoCalibration


class CameraInfoError(ValueError):
    """A CameraInfo (``reason`` 'camera_info') or a rig (``reason`` 'calibration') that cannot be used."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def intrinsics_from_camera_info(msg, image_hw: tuple[int, int] | None = None) -> tuple[Intrinsics, float]:
    """CameraInfo -> (rectified intrinsics from P, baseline from P[3] = -fx * B); K where P is all zero."""
    p = np.asarray(msg.p, dtype=np.float64)
    k = np.asarray(msg.k, dtype=np.float64)
    if p.size != 12 or k.size != 9:
        raise CameraInfoError("camera_info", "P must have 12 and K 9 elements")
    if not np.isfinite(p).all() or not np.isfinite(k).all():
        raise CameraInfoError("camera_info", "NaN or infinity in the projection matrix")
    if not p.any():
        if not k.any():
            raise CameraInfoError("camera_info", "all-zero camera_info (uncalibrated camera)")
        p = np.array([k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1, 0])
    fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    if fx <= 0 or fy <= 0:
        raise CameraInfoError("camera_info", f"non-positive focal length ({fx}, {fy})")
    w, h = int(msg.width), int(msg.height)
    if image_hw is not None and (h, w) != tuple(image_hw) and (w, h) != (0, 0):
        raise CameraInfoError("camera_info", f"camera_info is {w}x{h} but the image is {image_hw[1]}x{image_hw[0]}")
    if image_hw is not None:
        h, w = image_hw
    return Intrinsics(fx, fy, cx, cy, w, h), float(-p[3] / fx)


# Plausible stereo rigs: focal lengths and baselines outside these are calibration errors.
FOCAL_RANGE_PX = (1.0, 1e6)
BASELINE_RANGE_M = (1e-4, 1e5)


def stereo_calibration_from_camera_infos(left_info, right_info, image_hw: tuple[int, int]) -> StereoCalibration:
    """The rig of a left/right CameraInfo pair (ROS conventions), as a ``StereoCalibration``:

    * rectified images (both R identity or unset): intrinsics from P, the right camera at
      +B along x, B from the right P's Tx = -fx B;
    * raw images of a calibrated rig (R set): intrinsics from K, and the right camera's pose in
      the left frame from the rectifying rotations, T = [R_l^T R_r | R_l^T (B, 0, 0)].

    Raises CameraInfoError ('calibration') for a missing, NaN or implausible baseline or focal length."""

    K_l, _ = intrinsics_from_camera_info(left_info, image_hw)
    K_r, baseline = intrinsics_from_camera_info(right_info, image_hw)
    for name, K in (("left", K_l), ("right", K_r)):
        if not (FOCAL_RANGE_PX[0] <= K.fx <= FOCAL_RANGE_PX[1] and FOCAL_RANGE_PX[0] <= K.fy <= FOCAL_RANGE_PX[1]):
            raise CameraInfoError("calibration", f"{name} focal length ({K.fx:.3g}, {K.fy:.3g}) px outside {FOCAL_RANGE_PX}")
    if not (np.isfinite(baseline) and BASELINE_RANGE_M[0] <= baseline <= BASELINE_RANGE_M[1]):
        raise CameraInfoError(
            "calibration", f"baseline {baseline:.3g} m (from the right camera_info's P[3] = -fx B) outside {BASELINE_RANGE_M} m"
        )
    rotations = []
    for info in (left_info, right_info):
        r = np.asarray(info.r, dtype=np.float64)
        rotations.append(np.eye(3) if r.size != 9 or not r.any() else r.reshape(3, 3))
    R_l, R_r = rotations
    for R in rotations:
        if not (np.isfinite(R).all() and np.allclose(R @ R.T, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0):
            raise CameraInfoError("calibration", "camera_info R is not a rotation matrix")
    if np.allclose(R_l, np.eye(3), atol=1e-9) and np.allclose(R_r, np.eye(3), atol=1e-9):
        return (
            StereoCalibration.rectified(K_l, baseline)
            if K_l == K_r
            else StereoCalibration(K_l, K_r, StereoCalibration.rectified(K_l, baseline).T_left_from_right)
        )
    raw = []
    for info in (left_info, right_info):
        k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        raw.append(Intrinsics.from_matrix(k, image_hw[1], image_hw[0]))
    T = np.eye(4)
    T[:3, :3] = R_l.T @ R_r
    T[:3, 3] = R_l.T @ np.array([baseline, 0.0, 0.0])
    return StereoCalibration(raw[0], raw[1], T)
