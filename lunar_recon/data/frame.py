"""The one stereo frame every source yields: rosbag2 recordings, dataset folders (lunar_recon's
own and StereoLunar) and the simulator's renders, and every consumer reads (the evaluation,
the live replay, training)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry.camera import Intrinsics
from ..geometry.hazard import HazardMap
from ..geometry.stereo import StereoCalibration

DEFAULT_FRAME_ID = "left_camera_optical_frame"


def rig_calibration(K_left: Intrinsics, K_right: Intrinsics, T_left_from_right: np.ndarray, rectified: bool) -> StereoCalibration:
    """The calibration of a rig given by its cameras' poses: on a rig posed rectified, exactly
    a translation along x (the poses' products carry rounding)."""
    if rectified:
        baseline = float(np.linalg.norm(np.asarray(T_left_from_right)[:3, 3]))
        return StereoCalibration(K_left, K_right, StereoCalibration.rectified(K_left, baseline).T_left_from_right)
    return StereoCalibration(K_left, K_right, np.asarray(T_left_from_right, dtype=np.float64))


@dataclass
class GroundTruth:
    """What a simulator or a dataset knows of a frame: depth along each camera's optical axis
    (metres, NaN where nothing) and the landing-site truth on its own grid (its cells, slope,
    roughness and heights; its ``params`` set by whoever scores against it)."""

    depth_left: np.ndarray | None = None
    depth_right: np.ndarray | None = None
    hazard: HazardMap | None = None
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # a simulator's more: slope, shadows, DEM, rocks


@dataclass
class StereoFrame:
    """A stereo pair with its calibrated rig, when it was taken and what is known around it:
    gravity and the sun in the left camera frame, the left camera's pose in a world frame
    (navigation, or the simulator's), and, for recorded or simulated data, the ground truth."""

    left: np.ndarray
    right: np.ndarray
    calibration: StereoCalibration
    stamp_ns: int = 0
    frame_id: str = DEFAULT_FRAME_ID
    name: str = ""
    up_left: np.ndarray | None = None  # gravity 'up', left camera frame
    sun_left: np.ndarray | None = None  # toward the sun, left camera frame
    T_world_from_left: np.ndarray | None = None  # 4x4 pose of the left camera
    attitude_xyzw: np.ndarray | None = None  # the attitude message 'up' came from, when recorded
    truth: GroundTruth = field(default_factory=GroundTruth)
    notes: list[str] = field(default_factory=list)  # what its reader could not use (reported, not raised)
    meta: dict = field(default_factory=dict)  # provenance: the dataset's or the simulator's description

    @property
    def K_left(self) -> Intrinsics:
        return self.calibration.K_left

    @property
    def K_right(self) -> Intrinsics:
        return self.calibration.K_right

    @property
    def T_left_from_right(self) -> np.ndarray:
        return self.calibration.T_left_from_right

    @property
    def baseline_m(self) -> float:
        return self.calibration.baseline_m

    @property
    def rectified(self) -> bool:
        return self.calibration.is_rectified

    @property
    def T_world_from_right(self) -> np.ndarray | None:
        return None if self.T_world_from_left is None else self.T_world_from_left @ self.calibration.T_left_from_right

    @property
    def depth_left(self) -> np.ndarray | None:
        return self.truth.depth_left

    @property
    def depth_right(self) -> np.ndarray | None:
        return self.truth.depth_right

    @property
    def focal_baseline(self) -> float | None:
        """f B (px m) of a rectified rig (disparity = f B / depth), else None."""
        return float(self.K_left.fx * self.baseline_m) if self.rectified and self.baseline_m > 0 else None
