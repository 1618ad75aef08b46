"""Geometry speed on one core: hazard grid of a 512x512 organised cloud (target <= 30 ms)
and the per-pixel slope image (target <= 10 ms).

Each allocator setting runs in its own process: as lunar_recon's programs run it (freed
memory retained, :func:`lunar_recon.runtime.retain_freed_memory`) and with glibc's defaults
(a library user's process), where re-faulting each frame's arrays costs more than the maths.

    .venv/bin/python benchmarks/bench_geometry.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np


def _median_time(fn, repeats: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(allocator: str) -> dict:
    import resource

    from lunar_recon.runtime import retain_freed_memory

    applied = retain_freed_memory() if allocator == "retained" else False
    import cv2
    import torch

    from lunar_recon.geometry import HazardParams, Intrinsics, depth_to_points, hazard_map, slope_image

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    K = Intrinsics.from_fov(60.0, 512, 512)
    rng = np.random.default_rng(0)
    # A rough ground plane seen from 40 m by a nadir camera: ~46 m wide.
    depth = (40.0 + rng.normal(scale=0.05, size=(512, 512))).astype(np.float32)
    pts = depth_to_points(depth, K)
    up = np.array([0.0, 0.0, -1.0])
    params = HazardParams()
    hm = hazard_map(pts, up, params)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_hazard = _median_time(lambda: hazard_map(pts, up, params))
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / 16
    t_slope = _median_time(lambda: slope_image(pts, up, baseline_m=1.0, fx=K.fx))
    return dict(
        allocator=allocator,
        applied=applied,
        shape=list(hm.shape),
        resolution=params.resolution_m,
        hazard_s=t_hazard,
        hazard_faults=faults,
        slope_s=t_slope,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocator", choices=("retained", "default"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allocator:  # child: one setting, JSON on stdout
        print(json.dumps(measure(args.allocator)))
        return
    rows = []
    for allocator in ("retained", "default"):
        out = subprocess.run([sys.executable, __file__, "--allocator", allocator], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| operation (1 core, 512x512 organised cloud) | allocator | median time | page faults / call "
        "| target | ratio to target |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        label = "retained (lunar_recon programs)" if r["applied"] else f"{r['allocator']} (glibc)"
        print(
            f"| hazard grid {r['shape'][0]}x{r['shape'][1]} cells @ {r['resolution']} m, 4 m footprint | {label} | "
            f"{r['hazard_s'] * 1e3:.1f} ms | {r['hazard_faults']:.0f} | 30 ms | {r['hazard_s'] / 0.030:.2f} |"
        )
    for r in rows:
        label = "retained (lunar_recon programs)" if r["applied"] else f"{r['allocator']} (glibc)"
        print(f"| slope image (1 m baseline) | {label} | {r['slope_s'] * 1e3:.1f} ms | | 10 ms | {r['slope_s'] / 0.010:.2f} |")
    print(f"\nhazard grid, default / retained allocator: {rows[1]['hazard_s'] / rows[0]['hazard_s']:.2f}x")


if __name__ == "__main__":
    main()
