"""Reference cost of the released MASt3R configuration (random weights) on this CPU.

Prints parameters, GFLOPs per pair (split encoder / decoder / heads) and the CPU latency
of one 512x384 pair: the yardstick every student is measured against.

    .venv/bin/python benchmarks/bench_teacher.py [--threads 2] [--repeats 1] [--arch mast3r|dust3r]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from lunar_recon.models import DUST3R_RELEASED, MAST3R_RELEASED, build_model
from lunar_recon.models.profile import count_parameters, gflops_by_part, pair_gflops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--arch", choices=["mast3r", "dust3r"], default="mast3r")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = MAST3R_RELEASED if args.arch == "mast3r" else DUST3R_RELEASED
    h, w = args.height, args.width

    gflops = pair_gflops(cfg, h, w)
    parts = gflops_by_part(cfg, h, w)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    build_s = time.perf_counter() - t0
    img = torch.rand(1, 3, h, w) * 2 - 1
    times = []
    with torch.inference_mode():
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model({"img": img}, {"img": img.flip(-1)})
            times.append(time.perf_counter() - t0)
    latency = sorted(times)[len(times) // 2]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    print(
        f"| model | params | GFLOPs/pair @{w}x{h} | encoder | decoder | heads | "
        f"CPU latency/pair ({args.threads} threads) | achieved GFLOP/s | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {cfg.name} | {count_parameters(model) / 1e6:.1f}M | {gflops:.0f} | {parts['encoder']:.0f} | "
        f"{parts['decoder']:.0f} | {parts['heads']:.0f} | {latency:.1f} s | {gflops / latency:.1f} | "
        f"{peak_gib:.1f} GiB |"
    )
    print(f"(model built with random weights in {build_s:.1f} s; {args.repeats} timed pair(s))")


if __name__ == "__main__":
    main()
