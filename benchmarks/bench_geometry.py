"""Geometry speed on one core: hazard grid of a 512x512 organised cloud (target <= 30 ms)
and the per-pixel slope image (target <= 10 ms).

The hazard grid is timed on the lander preset's views (10-30 m, f 500-700 px at 512^2, up to
30 deg off-nadir: the widest ground the preset sees) and on a wider stress view (40 m, 60 deg
field of view: 46 m of ground, 310^2 cells); its cost grows with the cells the view covers.
Then on rendered lander pairs, each through the default model as the node runs it (its
noise model, shadows and calibration tables): the map's time per frame, on one core and with
its compiled passes split over both (``map_threads`` 2).

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

from lunar_recon.runtime import prefer_single_threaded_blas

# Before numpy loads, here and (inherited) in the measuring processes, as lunar_recon's programs
# run: OpenBLAS threads left spinning after numpy's small products would take the second core
# from the map's threads.
prefer_single_threaded_blas()

import numpy as np  # noqa: E402


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
    lander = []
    if applied:  # the lander preset's views, with the noise model the pipeline passes
        for range_m, fx, off_nadir in LANDER_VIEWS:
            view, view_up = _ground_view(range_m, fx, off_nadir)
            sigma = np.full(view.shape[:2], 0.05, np.float32)
            run = lambda: hazard_map(view, view_up, params, elevation_sigma=sigma)  # noqa: E731
            lander.append(dict(range_m=range_m, fx=fx, off_nadir=off_nadir, shape=list(run().shape), hazard_s=_median_time(run)))
    rendered = _rendered_lander_maps() if applied else []
    return dict(
        allocator=allocator,
        applied=applied,
        rendered=rendered,
        shape=list(hm.shape),
        resolution=params.resolution_m,
        hazard_s=t_hazard,
        hazard_faults=faults,
        slope_s=t_slope,
        lander=lander,
    )


# (range m, focal length px, off-nadir deg) at 512x512: the lander preset's nearest, middle,
# farthest nadir views and its widest (farthest, shortest lens, most tilted)
LANDER_VIEWS = ((10.0, 700.0, 0.0), (20.0, 600.0, 0.0), (30.0, 500.0, 0.0), (30.0, 500.0, 30.0))


# Rendered lander-preset pairs (512^2) through the default model as the node runs them, gravity
# and the sun given: each frame's own map (its grid, noise model, shadows and calibration tables)
RENDERED_LANDER_SEEDS = tuple(range(12))


def _rendered_lander_maps(repeats: int = 3) -> list[dict]:
    import cv2

    from lunar_recon import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor
    from lunar_recon.sim.scene import plan_scene, render_scene

    model = load_stereo_model("default")
    reconstructors = {t: StereoReconstructor(model, ReconstructionParams(map_threads=t)) for t in (1, 2)}
    frames = []
    for seed in RENDERED_LANDER_SEEDS:
        pair = render_scene(plan_scene("lander", seed)).frame()
        times: dict[int, list[float]] = {1: [], 2: []}
        rec = None
        for i in range(repeats + 1):  # the first is a warm-up
            for threads, reconstructor in reconstructors.items():
                cv2.setNumThreads(threads)  # the footprint sums' box filters
                rec = reconstructor.reconstruct(pair.left, pair.right, pair.calibration, pair.up_left, pair.sun_left)
                if i:
                    times[threads].append(rec.timings_s["hazard_map"])
        cv2.setNumThreads(1)
        if rec is None or rec.hazard is None:
            continue
        frames.append(
            dict(
                seed=seed,
                shape=list(rec.hazard.shape),
                hazard_s=float(np.median(times[1])),
                hazard_2_threads_s=float(np.median(times[2])),
            )
        )
    return frames


def _ground_view(range_m: float, fx: float, off_nadir_deg: float, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Organised cloud of rough flat ground seen from ``range_m`` along the optical axis,
    tilted ``off_nadir_deg`` about the camera's x axis; with the up direction in the camera frame."""
    t = np.radians(off_nadir_deg)
    down = np.array([0.0, np.sin(t), np.cos(t)])  # gravity in the camera frame
    height = range_m * np.cos(t)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    rays = np.stack([(u + 0.5 - size / 2) / fx, (v + 0.5 - size / 2) / fx, np.ones_like(u)], axis=-1)
    along = rays @ down
    rng = np.random.default_rng(0)
    depth = np.where(along > 0.05, (height + rng.normal(scale=0.05, size=u.shape)) / np.maximum(along, 0.05), np.nan)
    return (rays * depth[..., None]).astype(np.float32), -down


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
        "| operation (one core unless stated; 512x512 organised cloud; stress view 40 m, 60 deg FOV) | allocator | median time "
        "| page faults / call | target | ratio to target |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        label = "retained (lunar_recon programs)" if r["applied"] else f"{r['allocator']} (glibc)"
        print(
            f"| hazard grid {r['shape'][0]}x{r['shape'][1]} cells @ {r['resolution']} m, 4 m footprint | {label} | "
            f"{r['hazard_s'] * 1e3:.1f} ms | {r['hazard_faults']:.0f} | 30 ms | {r['hazard_s'] / 0.030:.2f} |"
        )
    for v in rows[0]["lander"]:
        print(
            f"| hazard grid, lander view {v['range_m']:.0f} m, f {v['fx']:.0f} px, {v['off_nadir']:.0f} deg off-nadir: "
            f"{v['shape'][0]}x{v['shape'][1]} cells | retained (lunar_recon programs) | {v['hazard_s'] * 1e3:.1f} ms | "
            f"| 30 ms | {v['hazard_s'] / 0.030:.2f} |"
        )
    rendered = rows[0]["rendered"]
    if rendered:
        cells = [f["shape"][0] * f["shape"][1] for f in rendered]
        for key, cores in (("hazard_s", "1 core"), ("hazard_2_threads_s", "2 cores (map_threads 2)")):
            t = np.array([f[key] for f in rendered]) * 1e3
            print(
                f"| hazard grid, {len(t)} rendered lander frames (seeds {RENDERED_LANDER_SEEDS[0]}-"
                f"{RENDERED_LANDER_SEEDS[-1]}, {min(cells)}-{max(cells)} cells), {cores}: median / p90 / max, "
                f"{np.mean(t <= 30):.0%} within target | retained (lunar_recon programs) | "
                f"{np.median(t):.1f} / {np.percentile(t, 90):.1f} / {t.max():.1f} ms | | 30 ms | {np.median(t) / 30:.2f} |"
            )
    for r in rows:
        label = "retained (lunar_recon programs)" if r["applied"] else f"{r['allocator']} (glibc)"
        print(f"| slope image (1 m baseline) | {label} | {r['slope_s'] * 1e3:.1f} ms | | 10 ms | {r['slope_s'] / 0.010:.2f} |")
    print(f"\nhazard grid, default / retained allocator: {rows[1]['hazard_s'] / rows[0]['hazard_s']:.2f}x")


if __name__ == "__main__":
    main()
