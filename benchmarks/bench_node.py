"""stereo_node end to end: latency (left stamp -> depth published), sustained rate, and
resident memory over a soak, with the node in its own process over Fast DDS (localhost).

    .venv/bin/python benchmarks/bench_node.py [--model default] [--frames 10000] [--rate 10]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=10.0, help="publish rate (Hz)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    args = ap.parse_args()
    from lunar_recon.ros.probe import NodeProbe, start_node, stop_node

    from lunar_recon.sim.scene import plan_scene, render_scene

    fr = render_scene(plan_scene("descent", 5, width=args.width, height=args.height, altitude_m=60,
                                 off_nadir_deg=10, baseline_m=2.0))
    dom = random.randint(100, 200)
    up = "up_vector:=[%f,%f,%f]" % tuple(fr.up_left)
    proc = start_node(dom, f"model:={args.model}", "use_attitude:=false", up, "hazard.resolution_m:=0.3")
    t = NodeProbe(dom)
    try:
        t.wait_for_node(proc)
        msgs = t.pair(fr)
        sent: dict[int, float] = {}
        latencies, rss = [], []
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for i in range(args.frames):
            stamp = 1_700_000_000 * 10**9 + i * int(period * 1e9)
            sent[stamp] = time.monotonic()
            t.publish(msgs, stamp)
            t.spin_until(t0 + (i + 1) * period)
            for arrived, m in t.take("depth"):
                latencies.append(arrived - sent[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec])
            if i % max(1, args.frames // 20) == 0:
                rss.append(rss_mib(proc.pid))
        elapsed = time.monotonic() - t0
        t.spin(2.0)
        latencies += [arrived - sent[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec]
                      for arrived, m in t.take("depth")]
        rss.append(rss_mib(proc.pid))
    finally:
        t.close()
        stop_node(proc)
    lat = np.array(latencies) * 1e3
    # RSS after warm-up (second sample), half-way and at the end: flat from half-way on = no leak.
    first, mid = (rss[1] if len(rss) > 1 else rss[0]), rss[len(rss) // 2]
    print(f"| model | input | frames sent @ {args.rate:g} Hz | answered | output rate | latency p50 / p90 | "
          "RSS first / half-way / last (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(f"| {args.model} | {args.width}x{args.height} mono8 | {args.frames} | {len(lat)} | "
          f"{len(lat) / elapsed:.2f} pairs/s | {np.median(lat):.0f} / {np.percentile(lat, 90):.0f} ms | "
          f"{first:.0f} / {mid:.0f} / {rss[-1]:.0f} |")


if __name__ == "__main__":
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    main()
