"""Replay recorded frames into a running stereo_node and collect what it answers, by stamp:
the live side of ``lunar-recon evaluate-bag --live`` (the offline side runs the node's own
pipeline in-process), on the probe the integration tests and benchmarks drive the node with."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .conversions import stamp_ns
from .probe import NodeProbe

# What the replay listens to: the node computes only the outputs someone subscribes to.
REPLAY_OUTPUTS = ("depth/image_rect", "slope", "hazard/grid", "/diagnostics")


@dataclass
class Answer:
    """What stereo_node published for one pair it was sent."""

    sent_s: float  # time.monotonic() when the pair was published
    depth: np.ndarray | None = None  # (H, W) metres
    received_s: float | None = None  # time.monotonic() when its depth arrived
    # the hazard OccupancyGrid: (cost, resolution, origin xyz, orientation xyzw), as
    # evaluation.hazard_map_from_grid takes it
    grid: tuple | None = None
    slope: np.ndarray | None = None


class LiveReplay:
    """Publishes frames (anything with ``left``, ``right``, ``K_left``, ``K_right``,
    ``baseline_m``, ``stamp_ns`` and optionally ``attitude_xyzw``, ``T_world_from_left``,
    ``sun_left``) into a stereo_node at their recorded pace and gathers its answers."""

    def __init__(self, namespace: str = "", domain: int | None = None):
        domain = int(os.environ.get("ROS_DOMAIN_ID", "0")) if domain is None else domain
        self.probe = NodeProbe(domain, namespace=namespace, record=REPLAY_OUTPUTS, localhost_only=False)
        self.sent: dict[int, float] = {}

    def wait_for_node(self, timeout_s: float = 60.0) -> None:
        if not self.probe.spin(timeout_s, self.probe.subscribed):
            raise RuntimeError("no stereo_node is subscribed to the input topics (start it first)")

    def replay(self, frames, speed: float = 1.0, frame_id: str | None = None) -> None:
        """Publish ``frames`` (one sequence) spaced as their stamps are, ``speed`` times faster,
        handling what the node answers in between."""
        if not speed > 0:
            raise ValueError(f"replay speed must be > 0, got {speed}")
        t0, stamp0 = time.monotonic(), None
        for fr in frames:
            stamp0 = fr.stamp_ns if stamp0 is None else stamp0
            self.probe.spin_until(t0 + (fr.stamp_ns - stamp0) / 1e9 / speed)
            self.probe.publish_frame(fr, int(fr.stamp_ns), frame_id or getattr(fr, "frame_id", "left_camera_optical_frame"))
            self.sent[int(fr.stamp_ns)] = time.monotonic()

    def collect(self, timeout_s: float = 10.0, grace_s: float = 1.0) -> dict[int, Answer]:
        """Every sent stamp's answer, once each has its depth (and ``grace_s`` more for the
        outputs the node publishes after it: slope, the hazard grid) or ``timeout_s`` after the call."""

        def answered() -> bool:
            return len(self.probe.got.get("depth/image_rect", [])) >= len(self.sent)

        if self.probe.spin(timeout_s, answered):
            self.probe.spin(grace_s)
        answers = {s: Answer(t) for s, t in self.sent.items()}
        for s, (t, depth) in self._depths().items():
            if s in answers:
                answers[s].depth, answers[s].received_s = depth, t
        for m in self.probe.got.get("slope", []):
            s = stamp_ns(m.header.stamp)
            if s in answers:
                answers[s].slope = np.frombuffer(bytes(m.data), np.float32).reshape(m.height, m.width).copy()
        for m in self.probe.got.get("hazard/grid", []):
            s = stamp_ns(m.header.stamp)
            if s in answers:
                p, q = m.info.origin.position, m.info.origin.orientation
                cost = np.frombuffer(bytes(m.data), np.int8).reshape(m.info.height, m.info.width).copy()
                answers[s].grid = (cost, float(m.info.resolution), (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        return answers

    def _depths(self) -> dict[int, tuple[float, np.ndarray]]:
        msgs, times = self.probe.got.get("depth/image_rect", []), self.probe.arrived.get("depth/image_rect", [])
        return {
            stamp_ns(m.header.stamp): (t, np.frombuffer(bytes(m.data), np.float32).reshape(m.height, m.width).copy())
            for t, m in zip(times, msgs)
        }

    def diagnostics(self) -> dict:
        return self.probe.diagnostics()

    def close(self) -> None:
        self.probe.close()
