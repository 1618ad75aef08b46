"""stereo_node end to end: latency (left stamp -> depth published), sustained rate, and
resident memory over a soak, with the node in its own process over Fast DDS (localhost).

    .venv/bin/python benchmarks/bench_node.py [--model default] [--frames 10000] [--rate 10] [--pose-step 5]
    .venv/bin/python benchmarks/bench_node.py --width 1024 --height 1024 --encoding rgb8 --frames 600   # colour soak
    .venv/bin/python benchmarks/bench_node.py --storm 10000   # malformed messages, then a valid pair

Each pair also gets a pose (the camera moved ``--pose-step`` metres sideways per pair), so the
hazard memory is exercised as on a descent; 0 sends no pose.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def colour_pair(t, fr) -> list:
    import cv2

    return [
        t.image(cv2.cvtColor(fr.left, cv2.COLOR_GRAY2RGB), "rgb8"),
        t.info(fr.K_left),
        t.image(cv2.cvtColor(fr.right, cv2.COLOR_GRAY2RGB), "rgb8"),
        t.info(fr.K_right, fr.baseline_m),
    ]


def storm(args) -> None:
    """``args.storm`` malformed pairs (every kind in turn) into a running node, then the valid
    pair it answered before the storm: the answer must be the same bytes."""
    from lunar_recon.ros.probe import NodeProbe, start_node, stop_node
    from lunar_recon.sim.scene import plan_scene, render_scene

    fr = render_scene(
        plan_scene("descent", 5, width=args.width, height=args.height, altitude_m=60, off_nadir_deg=10, baseline_m=2.0)
    )
    dom = random.randint(100, 200)
    up = "up_vector:=[%f,%f,%f]" % tuple(fr.up_left)
    proc = start_node(dom, f"model:={args.model}", "use_attitude:=false", up)
    t = NodeProbe(dom)
    try:
        t.wait_for_node(proc)
        good = t.pair(fr)

        def answer(stamp: int):
            t.take("depth/image_rect")
            t.publish(good, stamp)
            t.spin(30.0, lambda: "depth/image_rect" in t.got)
            got = t.take("depth/image_rect")
            return bytes(got[-1][1].data) if got else None

        before, rss_before = answer(1), rss_mib(proc.pid)
        kinds = t.malformed_pairs(fr)
        sent = {k: 0 for k, _ in kinds}
        rss, t0 = [rss_before], time.monotonic()
        for i in range(args.storm):
            kind, msgs = kinds[i % len(kinds)]
            t.publish(msgs, 10**18 + i * 10**6)
            sent[kind] += 1
            t.spin(0.002)  # paced: the reliable publishers' history must not overwrite unsent pairs
            if i % max(1, args.storm // 10) == 0:
                rss.append(rss_mib(proc.pid))
        elapsed = time.monotonic() - t0
        t.spin(3.0)
        after = answer(2 * 10**18)
        rss.append(rss_mib(proc.pid))
        t.spin(1.5)
        diag = t.diagnostics()
        alive = proc.poll() is None
    finally:
        t.close()
        stop_node(proc)
    print(
        "| malformed pairs sent | in | node alive | valid pair answered identically | rejected (node) | "
        "RSS before / after (MiB) |"
    )
    print("|---:|---:|---|---|---:|---:|")
    print(
        f"| {args.storm} | {elapsed:.0f} s | {'yes' if alive else 'NO'} | "
        f"{'yes' if before is not None and before == after else 'NO'} | {diag.get('rejected_messages', '?')} | "
        f"{rss_before:.0f} / {rss[-1]:.0f} |"
    )
    print("\nsent by kind: " + ", ".join(f"{k} {n}" for k, n in sent.items()))
    print("rejected by reason (node): " + ", ".join(f"{k[9:]} {v}" for k, v in diag.items() if k.startswith("rejected.")))
    print(
        f"node: pairs received {diag.get('pairs_received', '?')}, dropped for a newer pair "
        f"{diag.get('dropped_pairs', '?')}, messages dropped by the synchroniser {diag.get('dropped_messages_sync', '?')}, "
        f"incomplete pairs {diag.get('incomplete_pairs', '?')}"
    )
    print("RSS every 10% of the storm (MiB): " + " ".join(f"{r:.0f}" for r in rss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=10.0, help="publish rate (Hz)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--pose-step", type=float, default=5.0, help="metres the published pose moves per pair (0: no pose topic)")
    ap.add_argument("--encoding", choices=["mono8", "rgb8"], default="mono8")
    ap.add_argument(
        "--storm",
        type=int,
        default=0,
        help="instead of the soak: this many malformed pairs of every kind, then the valid pair again",
    )
    args = ap.parse_args()
    if args.storm:
        storm(args)
        return
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import PoseStamped

    from lunar_recon.ros.conversions import pose_msg, stamp_ns
    from lunar_recon.ros.probe import NodeProbe, start_node, stop_node

    from lunar_recon.sim.scene import plan_scene, render_scene

    fr = render_scene(
        plan_scene("descent", 5, width=args.width, height=args.height, altitude_m=60, off_nadir_deg=10, baseline_m=2.0)
    )
    dom = random.randint(100, 200)
    up = "up_vector:=[%f,%f,%f]" % tuple(fr.up_left)
    proc = start_node(dom, f"model:={args.model}", "use_attitude:=false", up, "hazard.resolution_m:=0.3")
    t = NodeProbe(dom)
    try:
        t.wait_for_node(proc)
        msgs = colour_pair(t, fr) if args.encoding == "rgb8" else t.pair(fr)
        pose_pub = t.node.create_publisher(PoseStamped, "pose", 10) if args.pose_step > 0 else None
        sent: dict[int, float] = {}
        latencies, rss = [], []
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for i in range(args.frames):
            stamp = 1_700_000_000 * 10**9 + i * int(period * 1e9)
            sent[stamp] = time.monotonic()
            if pose_pub is not None:
                T = np.eye(4)
                T[0, 3] = i * args.pose_step
                pose = pose_msg(PoseStamped, T)
                pose.header.stamp = Time(sec=stamp // 10**9, nanosec=stamp % 10**9)
                pose.header.frame_id = "map"
                pose_pub.publish(pose)
            t.publish(msgs, stamp)
            t.spin_until(t0 + (i + 1) * period)
            for arrived, m in t.take("depth/image_rect"):
                latencies.append(arrived - sent[stamp_ns(m.header.stamp)])
            if i % max(1, args.frames // 20) == 0:
                rss.append(rss_mib(proc.pid))
        elapsed = time.monotonic() - t0
        t.spin(2.0)
        latencies += [arrived - sent[stamp_ns(m.header.stamp)] for arrived, m in t.take("depth/image_rect")]
        rss.append(rss_mib(proc.pid))
        diag = t.diagnostics()
    finally:
        t.close()
        stop_node(proc)
    lat = np.array(latencies) * 1e3
    # RSS after warm-up (second sample), half-way and at the end: flat from half-way on = no leak.
    first, mid = (rss[1] if len(rss) > 1 else rss[0]), rss[len(rss) // 2]
    print(
        f"| model | input | frames sent @ {args.rate:g} Hz | answered | output rate | latency p50 / p90 | "
        "RSS first / half-way / last (MiB) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    print(
        f"| {args.model} | {args.width}x{args.height} {args.encoding} | {args.frames} | {len(lat)} | "
        f"{len(lat) / elapsed:.2f} pairs/s | {np.median(lat):.0f} / {np.percentile(lat, 90):.0f} ms | "
        f"{first:.0f} / {mid:.0f} / {rss[-1]:.0f} |"
    )
    print("\nRSS every 5% of the run (MiB): " + " ".join(f"{r:.0f}" for r in rss))
    print(
        f"node diagnostics at the end: pairs received {diag.get('pairs_received', '?')} "
        f"(incomplete {diag.get('incomplete_pairs', '?')}, completed with a camera's newest camera_info "
        f"{diag.get('camera_info_substitutes', '?')}, before any camera_info {diag.get('rejected.no_camera_info', 0)}), "
        f"dropped for a newer pair {diag.get('dropped_pairs', '?')}, hazard memory maps {diag.get('hazard_memory_maps', '?')}"
    )


if __name__ == "__main__":
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    main()
