"""Geometry speed on one core: hazard grid of a 512x512 organised cloud (target <= 30 ms)
and the per-pixel slope image (target <= 10 ms).

    .venv/bin/python benchmarks/bench_geometry.py
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from lunar_recon.geometry import HazardParams, Intrinsics, depth_to_points, hazard_map, slope_image


def _best_of(fn, repeats: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
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
    t_hazard = _best_of(lambda: hazard_map(pts, up, params))
    t_slope = _best_of(lambda: slope_image(pts, up, baseline_m=1.0, fx=K.fx))
    print("| operation (1 core, 512x512 organised cloud) | median time | target | ratio to target |")
    print("|---|---:|---:|---:|")
    print(f"| hazard grid {hm.shape[0]}x{hm.shape[1]} cells @ {params.resolution_m} m, 4 m footprint | "
          f"{t_hazard * 1e3:.1f} ms | 30 ms | {t_hazard / 0.030:.2f} |")
    print(f"| slope image (1 m baseline) | {t_slope * 1e3:.1f} ms | 10 ms | {t_slope / 0.010:.2f} |")


if __name__ == "__main__":
    main()
