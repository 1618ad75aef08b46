"""A probe for a stereo_node running in its own process: start / stop it, publish stereo
pairs into it and record everything it publishes, over real DDS.  Used by the benchmark
(end-to-end latency and rate), the benchmarks and the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np


def node_env(domain: int) -> dict:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    return env


def start_node(domain: int, *params: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """stereo_node with ``params`` (``name:=value``) on ``domain``; ``env``: variables set for it
    beyond this process's environment."""
    args = [sys.executable, "-m", "lunar_recon.ros.stereo_node", "--ros-args"]
    for p in params:
        args += ["-p", p]
    environment = dict(node_env(domain), **(env or {}))
    return subprocess.Popen(args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read() if proc.stdout else ""


OUTPUT_TOPICS = (
    "depth/image_rect",
    "depth/camera_info",
    "confidence",
    "points2",
    "slope",
    "hazard/grid",
    "hazard/elevation",
    "hazard/elevation_sigma",
    "hazard/image",
    "hazard/landing_site",
    "/diagnostics",
)


class NodeProbe:
    """A client rclpy node in its own context: publishes stereo pairs, records what stereo_node publishes."""

    def __init__(
        self, domain: int, qos: str = "reliable", namespace: str = "", record=OUTPUT_TOPICS, localhost_only: bool = True
    ):
        """``qos``: the stereo pair publishers' reliability, 'reliable' (as camera drivers and
        bag players usually publish) or 'sensor_data' (best effort).  ``namespace``: the node's
        (its topics' prefix).  ``record``: the outputs to subscribe to and keep (``got``) --
        the node computes only what someone listens to.  ``localhost_only``: discover only this
        machine's nodes (tests, benchmarks), unless the environment says otherwise."""
        if localhost_only:
            os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PointStamped, PoseStamped, QuaternionStamped, Vector3Stamped
        from nav_msgs.msg import OccupancyGrid
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("lunar_recon_probe", context=self.context)
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.Image, self.CameraInfo = Image, CameraInfo
        self.got: dict[str, list] = {}
        self.arrived: dict[str, list[float]] = {}  # time.monotonic() of each message in got, same order
        ns = namespace.strip("/")
        self.topic = lambda t: t if t.startswith("/") or not ns else f"/{ns}/{t}"  # noqa: E731
        # transient-local to get the last map on joining; 10 deep so no map of a burst is overwritten
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        types = {
            "depth/image_rect": Image,
            "depth/camera_info": CameraInfo,
            "confidence": Image,
            "points2": PointCloud2,
            "slope": Image,
            "hazard/grid": OccupancyGrid,
            "hazard/elevation": Image,
            "hazard/elevation_sigma": Image,
            "hazard/image": Image,
            "hazard/landing_site": PointStamped,
            "/diagnostics": DiagnosticArray,
        }
        for topic in record:
            if topic not in types:
                raise ValueError(f"unknown stereo_node output {topic!r}; one of {sorted(types)}")
            q = latched if topic == "hazard/grid" else 10
            self.node.create_subscription(types[topic], self.topic(topic), lambda m, t=topic: self._record(t, m), q)
        pair_qos = (
            qos_profile_sensor_data if qos == "sensor_data" else QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.pubs = [
            self.node.create_publisher(T, self.topic(t), pair_qos)
            for t, T in [
                ("left/image_rect", Image),
                ("left/camera_info", CameraInfo),
                ("right/image_rect", Image),
                ("right/camera_info", CameraInfo),
            ]
        ]
        self.attitude_pub = self.node.create_publisher(QuaternionStamped, self.topic("attitude"), 10)
        self.sun_pub = self.node.create_publisher(Vector3Stamped, self.topic("sun_direction"), 10)
        self.pose_pub = self.node.create_publisher(PoseStamped, self.topic("pose"), 10)

    def _record(self, topic: str, msg) -> None:
        self.arrived.setdefault(topic, []).append(time.monotonic())
        self.got.setdefault(topic, []).append(msg)

    def take(self, topic: str) -> list[tuple[float, object]]:
        """(arrival time, message) of everything received on ``topic`` since the last take."""
        msgs, times = self.got.pop(topic, []), self.arrived.pop(topic, [])
        return list(zip(times, msgs))

    def diagnostics(self) -> dict:
        """Key/values of the newest /diagnostics message received ({} before the first)."""
        if not self.got.get("/diagnostics"):
            return {}
        return {v.key: v.value for v in self.got["/diagnostics"][-1].status[0].values}

    def image(self, arr: np.ndarray, encoding: str = "mono8"):
        from .conversions import image_msg

        return image_msg(self.Image, arr, encoding)

    def info(self, K, baseline: float = 0.0):
        from .conversions import camera_info_msg

        return camera_info_msg(self.CameraInfo, K, baseline)

    def publish(self, msgs, stamp_ns: int, frame_id: str = "left_camera_optical_frame"):
        """The pair's messages (``pair``'s order) with this stamp; None for one that is lost."""
        from builtin_interfaces.msg import Time

        for p, m in zip(self.pubs, msgs):
            if m is None:  # this topic's message is lost
                continue
            m.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
            m.header.frame_id = frame_id
            p.publish(m)

    def pair(self, fr):
        enc = "mono8" if np.asarray(fr.left).dtype == np.uint8 else "mono16"
        return [
            self.image(fr.left, enc),
            self.info(fr.K_left),
            self.image(fr.right, enc),
            self.info(fr.K_right, fr.baseline_m),
        ]

    def publish_frame(self, fr, stamp_ns: int, frame_id: str = "left_camera_optical_frame") -> None:
        """A recorded frame (``data.frame.StereoFrame``) as a camera stack publishes it: its
        gravity (attitude), navigation pose and sun direction when it has them, first, so the node uses them for this pair,
        then the pair and its camera_info."""
        from builtin_interfaces.msg import Time
        from geometry_msgs.msg import PoseStamped, QuaternionStamped, Vector3Stamped

        from .conversions import pose_msg

        stamp = Time(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
        if getattr(fr, "attitude_xyzw", None) is not None:
            att = QuaternionStamped()
            att.header.stamp, att.header.frame_id = stamp, "world"
            q = att.quaternion
            q.x, q.y, q.z, q.w = (float(v) for v in fr.attitude_xyzw)
            self.attitude_pub.publish(att)
        if getattr(fr, "T_world_from_left", None) is not None:
            pose = pose_msg(PoseStamped, fr.T_world_from_left)
            pose.header.stamp, pose.header.frame_id = stamp, "world"
            self.pose_pub.publish(pose)
        if getattr(fr, "sun_left", None) is not None:
            sun = Vector3Stamped()
            sun.header.stamp, sun.header.frame_id = stamp, frame_id
            sun.vector.x, sun.vector.y, sun.vector.z = (float(v) for v in fr.sun_left)
            self.sun_pub.publish(sun)
        self.publish(self.pair(fr), int(stamp_ns), frame_id)

    def subscribed(self) -> bool:
        """Whether a stereo_node has matched every input: the pair's and the navigation topics'
        (attitude, pose, sun direction), so that a replay's first frame loses none of them."""
        navigation = (self.attitude_pub, self.pose_pub, self.sun_pub)
        return all(p.get_subscription_count() > 0 for p in (*self.pubs, *navigation))

    def malformed_pairs(self, fr) -> list[tuple[str, list]]:
        """(kind, the four messages) for every kind of bad input the node must reject and
        count: truncated data, an unknown encoding, mismatched sizes, an all-zero or NaN
        camera_info, an empty image, a wrong step, an odd mono16 buffer."""

        def pair(edit):
            m = self.pair(fr)
            edit(m)
            return m

        def set_(obj, **kw):
            for k, v in kw.items():
                setattr(obj, k, v)

        return [
            ("truncated data", pair(lambda m: set_(m[0], data=m[0].data[:-7]))),
            ("unknown encoding", pair(lambda m: set_(m[0], encoding="yuv422_exotic"))),
            ("left / right sizes differ", pair(lambda m: m.__setitem__(2, self.image(fr.right[:, :-16])))),
            ("all-zero camera_info", pair(lambda m: set_(m[1], p=[0.0] * 12, k=[0.0] * 9))),
            ("NaN camera_info", pair(lambda m: set_(m[3], p=[float("nan")] * 12))),
            ("empty image", pair(lambda m: set_(m[0], height=0, width=0, step=0, data=b""))),
            ("wrong step", pair(lambda m: set_(m[2], step=m[2].step + 3))),
            ("mono16 with an odd buffer", pair(lambda m: set_(m[0], encoding="mono16"))),
        ]

    def spin(self, seconds: float, until=None):
        t0 = time.time()
        while time.time() - t0 < seconds:
            self.executor.spin_once(timeout_sec=0.05)
            if until is not None and until():
                return True
        return until() if until is not None else True

    def spin_until(self, deadline: float) -> None:
        """Handle what arrives until ``time.monotonic()`` reaches ``deadline``, blocked in the wait
        set in between: a short-timeout polling loop would burn a core the node under test needs."""
        while (left := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=left)

    def wait_for_node(self, proc, timeout: float = 60.0) -> None:
        """Until stereo_node's subscriptions are matched (it is up and discovered): the pair's and
        the navigation topics', so that a first attitude sent at once is not lost to discovery."""
        ok = self.spin(timeout, lambda: self.subscribed() or proc.poll() is not None)
        if not ok or proc.poll() is not None:
            why = f": {stop_node(proc)[-2000:]}" if proc.poll() is not None else ""
            raise RuntimeError("stereo_node did not come up" + why)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
