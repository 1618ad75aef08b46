"""rosbag2 sequences (sqlite3 and MCAP) written and read with the pure-Python ``rosbags``.

Topics (relative names, as the node subscribes them):

| topic | type | content |
|---|---|---|
| ``left/image_rect``, ``right/image_rect`` | sensor_msgs/Image | mono8 or mono16, rectified |
| ``left/camera_info``, ``right/camera_info`` | sensor_msgs/CameraInfo | right ``P[3] = -fx * B`` |
| ``attitude`` | geometry_msgs/QuaternionStamped | left optical frame in a gravity-aligned frame (z up) |
| ``pose`` | geometry_msgs/PoseStamped | left optical frame in that world frame (navigation), for the hazard memory |
| ``sun_direction`` | geometry_msgs/Vector3Stamped | unit vector toward the sun, left optical frame |
| ``ground_truth/depth`` | sensor_msgs/Image | 32FC1 metres, NaN = no surface (REP 118) |
| ``ground_truth/hazard`` | nav_msgs/OccupancyGrid | 0 safe .. 100 hazard, -1 unknown |
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..geometry.camera import Intrinsics
from ..geometry.camera_info import stereo_calibration_from_camera_infos
from ..geometry.frames import matrix_to_quaternion, pose_matrix, quaternion_to_matrix
from ..geometry.hazard import HazardParams, hazard_map_from_grid
from .encodings import array_to_image_fields, image_to_array
from .frame import GroundTruth, StereoFrame

TOPICS = {
    "left_image": "left/image_rect",
    "right_image": "right/image_rect",
    "left_info": "left/camera_info",
    "right_info": "right/camera_info",
    "attitude": "attitude",
    "pose": "pose",
    "sun": "sun_direction",
    "depth": "ground_truth/depth",
    "hazard": "ground_truth/hazard",
}
REQUIRED = ("left_image", "right_image", "left_info", "right_info")


class BagError(RuntimeError):
    """A bag that cannot be used; the message names the bag and, for missing topics, lists
    the topics it has."""


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)


# ---- message builders (rosbags dataclasses) ------------------------------------------------------
def _header(ts, stamp_ns: int, frame_id: str):
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)), frame_id=frame_id)


def image_msg(ts, arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    f = array_to_image_fields(arr, encoding)
    return ts.types["sensor_msgs/msg/Image"](
        header=_header(ts, stamp_ns, frame_id),
        height=f["height"],
        width=f["width"],
        encoding=encoding,
        is_bigendian=0,
        step=f["step"],
        data=np.frombuffer(f["data"], np.uint8),
    )


def camera_info_msg(ts, K: Intrinsics, stamp_ns: int, frame_id: str, tx_m: float = 0.0):
    """Rectified camera: P = [K | (-fx * B, 0, 0)] for the right camera (B = ``tx_m``)."""
    RoI = ts.types["sensor_msgs/msg/RegionOfInterest"]
    P = np.array([K.fx, 0, K.cx, -K.fx * tx_m, 0, K.fy, K.cy, 0, 0, 0, 1, 0], np.float64)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(ts, stamp_ns, frame_id),
        height=K.height,
        width=K.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=P,
        binning_x=0,
        binning_y=0,
        roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def quaternion_msg(ts, q_xyzw: np.ndarray, stamp_ns: int, frame_id: str):
    Q = ts.types["geometry_msgs/msg/Quaternion"]
    return ts.types["geometry_msgs/msg/QuaternionStamped"](
        header=_header(ts, stamp_ns, frame_id), quaternion=Q(x=q_xyzw[0], y=q_xyzw[1], z=q_xyzw[2], w=q_xyzw[3])
    )


def pose_msg(ts, T_world_from_camera: np.ndarray, stamp_ns: int, frame_id: str):
    g = ts.types
    q = matrix_to_quaternion(T_world_from_camera[:3, :3])
    t = T_world_from_camera[:3, 3]
    position = g["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2]))
    pose = g["geometry_msgs/msg/Pose"](
        position=position, orientation=g["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
    )
    return g["geometry_msgs/msg/PoseStamped"](header=_header(ts, stamp_ns, frame_id), pose=pose)


def vector_msg(ts, v: np.ndarray, stamp_ns: int, frame_id: str):
    V = ts.types["geometry_msgs/msg/Vector3"]
    return ts.types["geometry_msgs/msg/Vector3Stamped"](
        header=_header(ts, stamp_ns, frame_id), vector=V(x=float(v[0]), y=float(v[1]), z=float(v[2]))
    )


def occupancy_msg(ts, hmap, stamp_ns: int, frame_id: str):
    """OccupancyGrid lying on the gravity-aligned ground plane, expressed in the camera frame."""
    from ..geometry.hazard import grid_origin_pose

    g = ts.types
    rows, cols = hmap.shape
    pos, q = grid_origin_pose(hmap)
    pose = g["geometry_msgs/msg/Pose"](
        position=g["geometry_msgs/msg/Point"](x=pos[0], y=pos[1], z=pos[2]),
        orientation=g["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
    )
    Time = g["builtin_interfaces/msg/Time"]
    info = g["nav_msgs/msg/MapMetaData"](
        map_load_time=Time(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9)),
        resolution=float(hmap.resolution),
        width=cols,
        height=rows,
        origin=pose,
    )
    return g["nav_msgs/msg/OccupancyGrid"](
        header=_header(ts, stamp_ns, frame_id), info=info, data=np.ascontiguousarray(hmap.cost, np.int8).reshape(-1)
    )


# ---- writing ------------------------------------------------------------------------------------------
def write_stereo_bag(
    path: str | Path,
    frames: Iterable,
    storage: str = "sqlite3",
    encoding: str = "mono8",
    frame_id: str = "left_camera_optical_frame",
    right_frame_id: str = "right_camera_optical_frame",
    rate_hz: float = 5.0,
    start_ns: int = 1_000_000_000_000_000_000,
) -> int:
    """Write :class:`~lunar_recon.data.frame.StereoFrame`\\ s with their pose, sun and ground
    truth (a simulated sequence, rectified rig) as a rosbag2; returns the frame count."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if path.exists():
        raise BagError(f"{path}: already exists (rosbag2 writers never overwrite)")
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise BagError(f"unknown bag storage {storage!r} (sqlite3 or mcap)")
    ts = typestore()
    n = 0
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {
            "left_image": w.add_connection(TOPICS["left_image"], "sensor_msgs/msg/Image", typestore=ts),
            "right_image": w.add_connection(TOPICS["right_image"], "sensor_msgs/msg/Image", typestore=ts),
            "left_info": w.add_connection(TOPICS["left_info"], "sensor_msgs/msg/CameraInfo", typestore=ts),
            "right_info": w.add_connection(TOPICS["right_info"], "sensor_msgs/msg/CameraInfo", typestore=ts),
            "attitude": w.add_connection(TOPICS["attitude"], "geometry_msgs/msg/QuaternionStamped", typestore=ts),
            "pose": w.add_connection(TOPICS["pose"], "geometry_msgs/msg/PoseStamped", typestore=ts),
            "sun": w.add_connection(TOPICS["sun"], "geometry_msgs/msg/Vector3Stamped", typestore=ts),
            "depth": w.add_connection(TOPICS["depth"], "sensor_msgs/msg/Image", typestore=ts),
            "hazard": w.add_connection(TOPICS["hazard"], "nav_msgs/msg/OccupancyGrid", typestore=ts),
        }

        def put(key, msg, msgtype, stamp):
            w.write(conns[key], stamp, ts.serialize_cdr(msg, msgtype))

        for i, fr in enumerate(frames):
            stamp = start_ns + int(round(i * 1e9 / rate_hz))
            enc = encoding if fr.left.dtype == np.uint8 or encoding != "mono8" else "mono16"
            if fr.left.dtype == np.uint16:
                enc = "mono16"
            put("left_image", image_msg(ts, fr.left, enc, stamp, frame_id), "sensor_msgs/msg/Image", stamp)
            put("right_image", image_msg(ts, fr.right, enc, stamp, right_frame_id), "sensor_msgs/msg/Image", stamp)
            put("left_info", camera_info_msg(ts, fr.K_left, stamp, frame_id), "sensor_msgs/msg/CameraInfo", stamp)
            put(
                "right_info",
                camera_info_msg(ts, fr.K_right, stamp, right_frame_id, fr.baseline_m),
                "sensor_msgs/msg/CameraInfo",
                stamp,
            )
            q = matrix_to_quaternion(fr.T_world_from_left[:3, :3])
            put("attitude", quaternion_msg(ts, q, stamp, "world"), "geometry_msgs/msg/QuaternionStamped", stamp)
            put("pose", pose_msg(ts, fr.T_world_from_left, stamp, "world"), "geometry_msgs/msg/PoseStamped", stamp)
            put("sun", vector_msg(ts, fr.sun_left, stamp, frame_id), "geometry_msgs/msg/Vector3Stamped", stamp)
            depth = np.where(np.isfinite(fr.depth_left), fr.depth_left, np.nan).astype(np.float32)
            put("depth", image_msg(ts, depth, "32FC1", stamp, frame_id), "sensor_msgs/msg/Image", stamp)
            if fr.truth.hazard is not None:
                put("hazard", occupancy_msg(ts, fr.truth.hazard, stamp, frame_id), "nav_msgs/msg/OccupancyGrid", stamp)
            n += 1
    return n


# ---- reading ------------------------------------------------------------------------------------------
def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _image(msg) -> np.ndarray:
    return image_to_array(msg.encoding, msg.height, msg.width, msg.step, np.asarray(msg.data), bool(msg.is_bigendian))


def _open(path: Path):
    # rosbag2 only: rosbags' AnyReader would take a folder named '*.bag' for a ROS 1 bag.
    from rosbags.rosbag2 import Reader

    if not Path(path).exists():
        raise BagError(f"{path}: no such bag")
    try:
        reader = Reader(Path(path))
        reader.open()
        return reader
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for corrupt files
        raise BagError(f"{path}: cannot open bag (not a rosbag2 folder, or corrupt): {exc}") from None


def bag_topics(path: str | Path) -> dict[str, str]:
    reader = _open(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def _normalise(topic: str) -> str:
    return topic.lstrip("/")


def read_stereo_bag(path: str | Path, namespace: str = "", tolerance_ns: int = 0) -> Iterator[StereoFrame]:
    """Yield synchronised frames of a stereo bag: left/right images and camera infos paired
    by stamp (exactly, or within ``tolerance_ns``), with attitude (gravity), pose, sun,
    ground-truth depth and hazard attached when the bag has them.  A corrupt message is
    reported in ``frame.notes`` of the next frame, never raised."""
    path = Path(path)
    have = bag_topics(path)
    ns = namespace.strip("/")
    want = {k: (f"{ns}/{v}" if ns else v) for k, v in TOPICS.items()}
    norm = {_normalise(t): t for t in have}
    missing = [want[k] for k in REQUIRED if want[k] not in norm]
    if missing:
        raise BagError(f"{path}: missing topics {missing}; the bag has: {sorted(have)}")
    ts = typestore()
    buffers: dict[str, dict[int, object]] = {k: {} for k in TOPICS}
    errors: list[str] = []
    reader = _open(path)
    try:
        conns = [c for c in reader.connections if _normalise(c.topic) in {want[k] for k in TOPICS if want[k] in norm}]
        key_of = {want[k]: k for k in TOPICS}
        optional = [k for k in ("attitude", "pose", "sun", "depth", "hazard") if want[k] in norm]  # wait only for these
        for conn, t_ns, raw in reader.messages(connections=conns):
            key = key_of[_normalise(conn.topic)]
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                buffers[key][_stamp_ns(msg)] = msg
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{conn.topic} @ {t_ns}: undecodable message ({exc})")
                continue
            for stamp in sorted(buffers["left_image"]):
                frame = _assemble(buffers, stamp, tolerance_ns, errors, optional)
                if frame is None:
                    break
                errors = []
                yield frame
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken storage file ends the bag, reported
        errors.append(f"{path}: bag ends early: {exc}")
    finally:
        reader.close()
    # Whatever remains (e.g. optional topics arrive later than the images) is assembled at the end.
    for stamp in sorted(buffers["left_image"]):
        frame = _assemble(buffers, stamp, tolerance_ns, errors, [], final=True)
        if frame is not None:
            yield frame


def _match(buf: dict[int, object], stamp: int, tol: int):
    if stamp in buf:
        return stamp
    if tol <= 0 or not buf:
        return None
    best = min(buf, key=lambda s: abs(s - stamp))
    return best if abs(best - stamp) <= tol else None


def _assemble(buffers, stamp: int, tol: int, errors: list[str], optional: list[str], final: bool = False) -> StereoFrame | None:
    keys = {}
    for k in ("right_image", "left_info", "right_info", "attitude", "pose", "sun", "depth", "hazard"):
        keys[k] = _match(buffers[k], stamp, tol)
    if any(keys[k] is None for k in ("right_image", "left_info", "right_info")):
        return None
    if not final and any(keys[k] is None for k in optional):
        # This stamp's optional messages may still be on their way: wait, unless a later image
        # already arrived (then this frame simply has none).
        if not any(s > stamp for s in buffers["left_image"]):
            return None
    left_msg = buffers["left_image"].pop(stamp)
    right_msg = buffers["right_image"].pop(keys["right_image"])
    li, ri = buffers["left_info"].pop(keys["left_info"]), buffers["right_info"].pop(keys["right_info"])
    try:
        left, right = _image(left_msg), _image(right_msg)
        rig = stereo_calibration_from_camera_infos(li, ri, left.shape[:2])  # the node's own parser
        frame = StereoFrame(left, right, rig, stamp, left_msg.header.frame_id, notes=list(errors))
    except Exception as exc:  # noqa: BLE001 - a corrupt frame is skipped and reported
        errors.append(f"frame @ {stamp}: {exc}")
        return None
    if keys["attitude"] is not None:
        q = buffers["attitude"].pop(keys["attitude"]).quaternion
        frame.attitude_xyzw = np.array([q.x, q.y, q.z, q.w])
        frame.up_left = quaternion_to_matrix(frame.attitude_xyzw).T @ np.array([0.0, 0.0, 1.0])
    if keys["pose"] is not None:
        pm = buffers["pose"].pop(keys["pose"]).pose
        try:
            frame.T_world_from_left = pose_matrix(
                [pm.orientation.x, pm.orientation.y, pm.orientation.z, pm.orientation.w],
                [pm.position.x, pm.position.y, pm.position.z],
            )
        except ValueError:  # a broken pose only costs the hazard memory
            frame.notes.append(f"frame @ {stamp}: invalid pose")
    if keys["sun"] is not None:
        v = buffers["sun"].pop(keys["sun"]).vector
        sun = np.array([v.x, v.y, v.z])
        if np.isfinite(sun).all() and np.linalg.norm(sun) > 1e-9:
            frame.sun_left = sun
        else:  # a broken sun vector only costs the shadow cue
            frame.notes.append(f"frame @ {stamp}: invalid sun direction {sun.tolist()}")
    truth = GroundTruth()
    if keys["depth"] is not None:
        truth.depth_left = _image(buffers["depth"].pop(keys["depth"])).astype(np.float32)
    if keys["hazard"] is not None:
        g = buffers["hazard"].pop(keys["hazard"])
        o, q = g.info.origin.position, g.info.origin.orientation
        cost = np.asarray(g.data, np.int8).reshape(g.info.height, g.info.width)
        truth.hazard = hazard_map_from_grid(
            cost, float(g.info.resolution), (o.x, o.y, o.z), (q.x, q.y, q.z, q.w), HazardParams()
        )[0]
    frame.truth = truth
    return frame
