"""rclpy messages <-> numpy.  Validation of incoming messages raises :class:`MessageRejected`
with a short reason that the node counts and logs."""

from __future__ import annotations

import array

import numpy as np

from ..data.encodings import IMAGE_ENCODINGS, EncodingError, image_to_array, to_gray_or_rgb
from ..geometry.camera import Intrinsics
from ..geometry.camera_info import CameraInfoError, intrinsics_from_camera_info, stereo_calibration_from_camera_infos
from ..geometry.frames import matrix_to_quaternion
from ..geometry.hazard import HazardMap, grid_origin_pose


class MessageRejected(ValueError):
    """An input message the node cannot use; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


try:  # cv_bridge on a real ROS 2 install; the in-package conversion otherwise
    from cv_bridge import CvBridge as _CvBridge

    _BRIDGE = _CvBridge()
except Exception:  # noqa: BLE001 - a broken cv_bridge (the PyPI ROS 1 port) must not break the node
    _BRIDGE = None


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time in nanoseconds (the key that pairs messages of one instant)."""
    return stamp.sec * 10**9 + stamp.nanosec


def pose_msg(PoseStamped, T_world_from_frame: np.ndarray, header=None):
    """geometry_msgs/PoseStamped of a 4x4 transform (the pose of a frame in ``header.frame_id``)."""
    msg = PoseStamped()
    if header is not None:
        msg.header = header
    p, o = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(v) for v in T_world_from_frame[:3, 3])
    o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quaternion(T_world_from_frame[:3, :3]))
    return msg


def image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image -> mono or RGB array (a view of the message buffer when possible)."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise MessageRejected("encoding", f"unsupported encoding {msg.encoding!r} (supported: {IMAGE_ENCODINGS})")
    if msg.height == 0 or msg.width == 0 or len(msg.data) != msg.step * msg.height:
        raise MessageRejected(
            "malformed_image", f"{msg.width}x{msg.height} image, step {msg.step}, {len(msg.data)} bytes of data"
        )
    try:
        if _BRIDGE is not None:
            arr = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough")
        else:
            arr = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
    except EncodingError as exc:
        raise MessageRejected("malformed_image", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
        raise MessageRejected("malformed_image", f"cv_bridge: {exc}") from None
    return to_gray_or_rgb(arr, msg.encoding)


def intrinsics_from_info(msg, image_hw: tuple[int, int] | None = None) -> tuple[Intrinsics, float]:
    """``geometry.camera_info.intrinsics_from_camera_info``, its errors as rejects."""
    try:
        return intrinsics_from_camera_info(msg, image_hw)
    except CameraInfoError as exc:
        raise MessageRejected(exc.reason, str(exc)) from None


def stereo_calibration_from_infos(left_info, right_info, image_hw: tuple[int, int]):
    """``geometry.camera_info.stereo_calibration_from_camera_infos``, its errors as rejects
    ('camera_info' or 'calibration')."""
    try:
        return stereo_calibration_from_camera_infos(left_info, right_info, image_hw)
    except CameraInfoError as exc:
        raise MessageRejected(exc.reason, str(exc)) from None


def image_msg(Image, arr: np.ndarray, encoding: str, header=None):
    """numpy image -> sensor_msgs/Image (publishers of raw inputs: replay tools, tests)."""
    from ..data.encodings import array_to_image_fields

    f = array_to_image_fields(arr, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding, msg.is_bigendian = f["height"], f["width"], encoding, 0
    msg.step, msg.data = f["step"], f["data"]
    return msg


def camera_info_msg(CameraInfo, K: Intrinsics, baseline_m: float = 0.0, header=None):
    """Rectified CameraInfo: P = [K | (-fx * B, 0, 0)] (B = 0 for the left camera)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.height, msg.width = K.height, K.width
    msg.k = K.K.reshape(-1).tolist()
    msg.p = [K.fx, 0.0, K.cx, -K.fx * baseline_m, 0.0, K.fy, K.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def unknown_grid_msg(OccupancyGrid, header, resolution: float):
    """A one-cell, all-unknown hazard grid: what hazard/grid carries when no map could be made
    for a pair (the reason goes to the diagnostics), so a subscriber never keeps a stale map."""
    msg = OccupancyGrid()
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(resolution)
    msg.info.width = msg.info.height = 1
    msg.info.origin.orientation.w = 1.0
    msg.data = array.array("b", [-1])
    return msg


def float_image_msg(Image, header, values: np.ndarray):
    """A 32FC1 image (depth in metres, confidence, slope, a grid's cell heights), NaN invalid."""
    msg = Image()
    msg.header = header
    msg.height, msg.width = values.shape
    msg.encoding = "32FC1"
    msg.is_bigendian = 0
    msg.step = values.shape[1] * 4
    msg.data = np.ascontiguousarray(values, dtype=np.float32).tobytes()
    return msg


def bgr_image_msg(Image, header, bgr: np.ndarray):
    msg = Image()
    msg.header = header
    msg.height, msg.width = bgr.shape[:2]
    msg.encoding = "bgr8"
    msg.is_bigendian = 0
    msg.step = bgr.shape[1] * 3
    msg.data = np.ascontiguousarray(bgr, dtype=np.uint8).tobytes()
    return msg


def pointcloud2_msg(PointCloud2, PointField, header, points: np.ndarray, intensity: np.ndarray, decimation: int = 1):
    """Organised cloud (H, W) with fields x y z intensity (float32), NaN for invalid points.

    Packed here even where sensor_msgs_py imports: its create_cloud takes a 2-D array's first
    axis as the width (ros2/common_interfaces#236), which swaps an image's height and width."""
    pts = points[::decimation, ::decimation]
    inten = intensity[::decimation, ::decimation]
    h, w = pts.shape[:2]
    buf = np.empty((h, w, 4), np.float32)
    buf[..., :3] = pts
    buf[..., 3] = inten
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = h, w
    msg.fields = [
        PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(("x", "y", "z", "intensity"))
    ]
    msg.is_bigendian = False
    msg.point_step = 16
    msg.row_step = 16 * w
    msg.is_dense = bool(np.isfinite(pts).all())
    msg.data = buf.tobytes()
    return msg


def occupancy_grid_msg(OccupancyGrid, header, hmap: HazardMap):
    """Hazard cost grid lying on the gravity-aligned ground plane, in the camera frame."""
    msg = OccupancyGrid()
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(hmap.resolution)
    msg.info.height, msg.info.width = hmap.shape
    pos, q = grid_origin_pose(hmap)
    msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.position.z = (float(v) for v in pos)
    o = msg.info.origin.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    # array('b') is taken as is; a list is type-checked element by element (~3 ms per 60k cells).
    msg.data = array.array("b", np.ascontiguousarray(hmap.cost, np.int8).tobytes())
    return msg


def grid_map_message_types() -> tuple | None:
    """(GridMap, Float32MultiArray, MultiArrayDimension) where grid_map_msgs imports, else None."""
    try:
        from grid_map_msgs.msg import GridMap
    except ImportError:
        return None
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    return GridMap, Float32MultiArray, MultiArrayDimension


def grid_map_msg(GridMap, Float32MultiArray, MultiArrayDimension, header, hmap: HazardMap, offset=(0.0, 0.0, 0.0)):
    """grid_map_msgs/GridMap of a hazard map whose grid axes are the header frame's (the descent
    map in the pose topic's world frame, ``offset``: the map's origin in that frame, e.g. the
    camera's position the descent map is centred on).  Layers: elevation (m), variance (m²),
    hazard_probability (0-1), slope_deg, roughness_m; NaN where unknown.  grid_map's layout:
    index (0, 0) is the cell of largest x and y, each layer an Eigen column-major matrix of
    (cells along x) x (cells along y) -- our [row = y, col = x] grid reversed on both axes."""
    rows, cols = hmap.shape
    res = float(hmap.resolution)
    msg = GridMap()
    msg.header = header
    msg.info.resolution = res
    msg.info.length_x, msg.info.length_y = cols * res, rows * res
    p = msg.info.pose.position
    p.x = float(offset[0] + hmap.origin[0] + cols * res / 2)
    p.y = float(offset[1] + hmap.origin[1] + rows * res / 2)
    p.z = float(offset[2])
    msg.info.pose.orientation.w = 1.0
    sigma = hmap.elevation_sigma_m
    layers = {
        "elevation": hmap.elevation_m + np.float32(offset[2]),
        "variance": np.full(hmap.shape, np.nan, np.float32) if sigma is None else sigma**2,
        "hazard_probability": np.full(hmap.shape, np.nan, np.float32) if hmap.probability is None else hmap.probability,
        "slope_deg": hmap.slope_deg,
        "roughness_m": hmap.roughness_m,
    }
    msg.layers = list(layers)
    msg.basic_layers = ["elevation"]
    data = []
    for values in layers.values():
        arr = Float32MultiArray()
        outer, inner = MultiArrayDimension(), MultiArrayDimension()
        outer.label, outer.size, outer.stride = "column_index", rows, rows * cols
        inner.label, inner.size, inner.stride = "row_index", cols, cols
        arr.layout.dim = [outer, inner]
        arr.data = array.array("f", np.ascontiguousarray(np.asarray(values, np.float32)[::-1, ::-1]).tobytes())
        data.append(arr)
    msg.data = data
    msg.outer_start_index = msg.inner_start_index = 0
    return msg
