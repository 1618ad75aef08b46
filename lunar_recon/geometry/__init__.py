"""ROS-free geometry: cameras, pointmaps, depth, clouds, pose and metric scale, slope,
hazard maps and metrics.  Vectorised numpy, NaN-safe."""

from .camera import (
    Intrinsics,
    confidence_mask,
    depth_to_points,
    estimate_focal,
    pointmap_to_depth,
    points_to_depth,
    transform_points,
)
from .frames import quaternion_to_matrix, rotation_aligning, up_from_attitude
from .hazard import HAZARD, SAFE, UNKNOWN, GridSpec, HazardMap, HazardParams, LandingSite, hazard_map
from .pose import metric_scale_from_baseline, relative_pose_pnp, umeyama
from .slope import normals_from_points, slope_image

__all__ = [
    "HAZARD",
    "SAFE",
    "UNKNOWN",
    "GridSpec",
    "HazardMap",
    "HazardParams",
    "Intrinsics",
    "LandingSite",
    "confidence_mask",
    "depth_to_points",
    "estimate_focal",
    "hazard_map",
    "metric_scale_from_baseline",
    "normals_from_points",
    "pointmap_to_depth",
    "points_to_depth",
    "quaternion_to_matrix",
    "relative_pose_pnp",
    "rotation_aligning",
    "slope_image",
    "transform_points",
    "umeyama",
    "up_from_attitude",
]
