"""The descent map's cost and memory over a long sequence (issue 31): the time of one fused
update per 512x384 frame (its ~196k points with their noise), the landing-site map made on the
fused cells, and the process's resident memory over a soak of many frames.

    .venv/bin/python benchmarks/bench_descent_map.py                      # 10,000 frames
    .venv/bin/python benchmarks/bench_descent_map.py --frames 500 --map-every 50
    .venv/bin/python benchmarks/bench_descent_map.py --levels 2           # multi-resolution
    .venv/bin/python benchmarks/bench_descent_map.py --threads 2          # both cores (map_threads)

A nadir camera descends from 80 m to 20 m and then traverses at 20 m (so the window keeps
moving and cells keep leaving it), over flat ground with a few boulders, seeing it with the
stereo noise model's sigma.  Prints the update and map times (p50, p90) and the RSS series.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lunar_recon.runtime import prefer_single_threaded_blas  # noqa: E402

prefer_single_threaded_blas()  # before numpy loads, as lunar_recon's programs run

import numpy as np  # noqa: E402

from lunar_recon.geometry.camera import Intrinsics, depth_to_points  # noqa: E402
from lunar_recon.geometry.descent_map import DescentMap, DescentMapParams  # noqa: E402
from lunar_recon.geometry.hazard import HazardParams  # noqa: E402
from lunar_recon.geometry.stereo import stereo_elevation_sigma  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pose(x: float, y: float, altitude: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])  # looking straight down
    T[:3, 3] = [x, y, altitude]
    return T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--map-every", type=int, default=100, help="make the landing-site map every N frames")
    ap.add_argument("--disparity-sigma", type=float, default=0.074)
    ap.add_argument("--levels", type=int, default=DescentMapParams().levels, help="resolution levels (descent_map.levels)")
    ap.add_argument("--threads", type=int, default=1, help="the maps' compiled passes over this many threads (map_threads)")
    args = ap.parse_args()
    K = Intrinsics.from_fov(60.0, args.width, args.height)
    baseline = 1.5
    rng = np.random.default_rng(0)
    hp = HazardParams(resolution_m=0.15)
    m = DescentMap(hp.resolution_m, DescentMapParams(levels=args.levels))
    update_ms, map_ms, rss = [], [], [(0, rss_mib())]
    descent = min(args.frames // 4, 300)
    for k in range(args.frames):
        altitude = 80.0 - 60.0 * k / descent if k < descent else 20.0
        x = 0.2 * max(k - descent, 0)  # then a traverse: the window keeps moving
        T = pose(x, 0.0, altitude)
        depth = np.full((args.height, args.width), altitude, np.float32)
        points = depth_to_points(depth, K)
        sigma = stereo_elevation_sigma(points, np.array([0.0, 0.0, -1.0]), K.fx, baseline, args.disparity_sigma)
        points[..., 2] += rng.normal(0.0, 1.0, depth.shape).astype(np.float32) * sigma
        t0 = time.perf_counter()
        m.update(points.reshape(-1, 3), sigma.reshape(-1), T, hp.min_points_per_cell, K.fx, args.threads)
        update_ms.append(1e3 * (time.perf_counter() - t0))
        if k % args.map_every == 0:
            t0 = time.perf_counter()
            m.hazard_map(T, hp, threads=args.threads)
            map_ms.append(1e3 * (time.perf_counter() - t0))
        if (k + 1) % max(args.frames // 20, 1) == 0:
            rss.append((k + 1, rss_mib()))
    q = lambda a, p: float(np.percentile(a, p))  # noqa: E731
    window = f"window {m.params.window_m} m, {args.levels} level(s), {args.threads} thread(s)"
    print(f"frames {args.frames} at {args.width}x{args.height}, {window}, cells {m.mean.size}")
    print(f"update ms: p50 {q(update_ms, 50):.1f}, p90 {q(update_ms, 90):.1f} (first 100: p50 {q(update_ms[:100], 50):.1f})")
    print(f"landing-site map on the fused cells ms: p50 {q(map_ms, 50):.1f}, p90 {q(map_ms, 90):.1f}")
    print(f"map arrays {m.nbytes / 2**20:.1f} MiB; resets {m.resets}")
    print("RSS MiB by frame: " + ", ".join(f"{k}: {v:.0f}" for k, v in rss))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
