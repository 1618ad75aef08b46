"""Simulator speed: one 512x512 stereo pair with all ground truth (target <= 2 s on 2 cores).

    .venv/bin/python benchmarks/bench_sim.py [--pairs 5] [--threads 2]

Each preset renders ``--pairs`` scenes (seeds 0..pairs-1, each with its own terrain, which is
timed too); the table gives the median.  The process runs as ``lunar-recon simulate`` does,
freed memory retained (:func:`lunar_recon.runtime.retain_freed_memory`); ``--glibc-defaults``
measures a library user's process instead.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from lunar_recon.runtime import retain_freed_memory

if "--glibc-defaults" not in sys.argv:
    retain_freed_memory()  # before numpy and torch allocate

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lunar_recon.sim.scene import plan_scene, render_scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--glibc-defaults", action="store_true", help="do not retain freed memory (a library user's process)")
    args = ap.parse_args()
    allocator = "glibc defaults" if args.glibc_defaults else "freed memory retained"
    torch.set_num_threads(args.threads)
    render_scene(plan_scene("descent", 99, width=128, height=128))  # first-call costs (torch, allocator) once
    print(
        f"| preset | pair (512x512, all ground truth, {args.threads} threads, {allocator}) | page faults / pair "
        "| terrain cells | target | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for preset in ("orbital", "descent", "rover"):
        times, cells, faults = [], [], []
        for seed in range(args.pairs):
            plan = plan_scene(preset, seed)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fr = render_scene(plan)
            times.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
            cells.append(fr.terrain.z.size)
        t = float(np.median(times))
        print(f"| {preset} | {t:.2f} s | {np.median(faults) / 1e3:.0f} k | {np.median(cells) / 1e6:.1f} M | 2 s | {t / 2:.2f} |")


if __name__ == "__main__":
    main()
