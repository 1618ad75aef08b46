"""Gravity and frames: the 'up' vector in a camera frame, and the rotation that makes it +z."""

from __future__ import annotations

import numpy as np


def normalize(v: np.ndarray | tuple[float, ...]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(a)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"cannot normalise vector {a}")
    return a / n


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (x, y, z, w), the ROS ordering."""
    x, y, z, w = normalize(q_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(x, y, z, w) of a rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k]) * 2
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    return normalize(np.array(q))


def pose_matrix(q_xyzw: np.ndarray | list[float], t: np.ndarray | list[float]) -> np.ndarray:
    """4x4 rigid transform from a quaternion (x, y, z, w) and a translation, as a
    geometry_msgs/Pose holds them; ValueError when either is not finite or q is zero."""
    q, t = np.asarray(q_xyzw, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if not (np.isfinite(q).all() and np.isfinite(t).all()) or np.linalg.norm(q) < 1e-6:
        raise ValueError(f"invalid pose (quaternion {q.tolist()}, translation {t.tolist()})")
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quaternion_to_matrix(q), t
    return T


def up_from_attitude(
    q_camera_in_world_xyzw: np.ndarray, world_up: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """Gravity 'up' in the camera frame from the camera's attitude in a gravity-aligned world
    frame (quaternion rotating camera vectors into world vectors, e.g. from an IMU/TF)."""
    R_wc = quaternion_to_matrix(q_camera_in_world_xyzw)
    return normalize(R_wc.T @ normalize(world_up))


def rotation_aligning(a: np.ndarray, b: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Smallest rotation R with R @ a = b (Rodrigues).  Identity when a == b, so a cloud whose
    up is already +z keeps its x and y."""
    a, b = normalize(a), normalize(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    s = np.linalg.norm(v)
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # Opposite vectors: half-turn about any axis perpendicular to a.
        axis = normalize(np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0]))
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * ((1 - c) / s**2)


class RigPoses:
    """Mixin for anything with ``T_world_from_left`` and ``T_world_from_right`` (4x4)."""

    T_world_from_left: np.ndarray
    T_world_from_right: np.ndarray

    @property
    def T_left_from_right(self) -> np.ndarray:
        return np.linalg.inv(self.T_world_from_left) @ self.T_world_from_right

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.T_left_from_right[:3, 3]))
