"""Render a synthetic lunar stereo dataset (train/val/test splits) or a time-stamped rosbag2 sequence.

    lunar-recon simulate --preset descent --pairs 100 --seed 0 --out data/descent
    lunar-recon simulate --sequence descent --frames 20 --out runs/descent.bag [--storage mcap]
    lunar-recon simulate --sequence lander --frames 16 --out runs/approach.bag

Datasets are resumable: re-running the same command keeps finished pairs and redoes partial ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "render a synthetic lunar stereo dataset or rosbag2 sequence with ground truth"
SPLITS = ("train", "val", "test")


def add_arguments(p) -> None:
    from ..sim import PRESETS, SEQUENCES

    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preset", choices=PRESETS, help="dataset of independent pairs")
    mode.add_argument("--sequence", choices=SEQUENCES, help="time-stamped sequence written as a bag")
    p.add_argument("--pairs", type=int, default=10, help="pairs in the dataset (all splits)")
    p.add_argument("--frames", type=int, default=10, help="frames in the sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="dataset folder, or bag path")
    p.add_argument("--split-fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--only-split", choices=SPLITS, help="write every pair into this split")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--bits", type=int, choices=[8, 12, 16], default=8)
    p.add_argument("--altitude", type=float, help="camera altitude (m); default: drawn from the preset")
    p.add_argument("--baseline", type=float, help="stereo baseline (m); default: drawn from the preset")
    p.add_argument("--sun-elevation", type=float, help="Sun elevation (deg); default: drawn (5-45)")
    p.add_argument("--unrectified", action="store_true", help="two independently posed cameras (StereoLunar-like)")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], default="sqlite3")
    p.add_argument("--rate", type=float, default=5.0, help="sequence frame rate (Hz)")


def split_counts(n: int, fractions) -> dict[str, int]:
    if n < 1:
        raise ValueError("--pairs must be >= 1")
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError("split fractions must be >= 0 and not all zero")
    total = sum(fractions)
    val = int(round(n * fractions[1] / total))
    test = int(round(n * fractions[2] / total))
    if n >= 3:
        val, test = max(val, 1 if fractions[1] > 0 else 0), max(test, 1 if fractions[2] > 0 else 0)
    return {"train": max(n - val - test, 0), "val": val, "test": test}


def pair_seed(base: int, split: str, index: int) -> int:
    """Distinct seed (hence distinct terrain) per split and pair; splits never share one."""
    import numpy as np

    ss = np.random.SeedSequence([int(base), SPLITS.index(split), int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _plan_kwargs(args) -> dict:
    return dict(
        width=args.width,
        height=args.height,
        bits=args.bits,
        altitude_m=args.altitude,
        baseline_m=args.baseline,
        sun_elevation_deg=args.sun_elevation,
        rectified=not args.unrectified,
    )


def run(args) -> int:
    from ..sim.scene import plan_scene

    if args.sequence:
        return _run_sequence(args)
    out = Path(args.out)
    counts = {args.only_split: args.pairs} if args.only_split else split_counts(args.pairs, args.split_fractions)
    plan_scene(args.preset, args.seed, **_plan_kwargs(args))  # validate every parameter before any work
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / "dataset.json"
    info = {
        "format": "lunar_recon.dataset/1",
        "preset": args.preset,
        "seed": args.seed,
        "splits": counts,
        "plan_overrides": _plan_kwargs(args),
    }
    if info_path.exists():
        old = json.loads(info_path.read_text())
        same = {k: old.get(k) for k in ("preset", "seed", "plan_overrides")} == {
            k: info[k] for k in ("preset", "seed", "plan_overrides")
        }
        if not same:
            raise ValueError(
                f"{out} holds a dataset made with other settings ({old.get('preset')}, seed "
                f"{old.get('seed')}); choose another --out"
            )
        for s, n in old.get("splits", {}).items():
            counts[s] = max(n, counts.get(s, 0))
        info["splits"] = counts
    from ..data.dataset import clean_partial, write_pair
    from ..fileio import write_text_durable
    from ..sim.scene import render_scene

    removed = clean_partial(out)
    if removed:
        print(f"removed {removed} partial pair(s) of an interrupted run", file=sys.stderr)
    write_text_durable(info_path, json.dumps(info, indent=1))
    todo = [(s, i) for s in SPLITS for i in range(counts.get(s, 0)) if not (out / s / f"{i:06d}").is_dir()]
    done = sum(counts.values()) - len(todo)
    for s, i in _progress(todo, total=sum(counts.values()), initial=done, desc=f"simulate {args.preset}"):
        seed = pair_seed(args.seed, s, i)
        frame = render_scene(plan_scene(args.preset, seed, **_plan_kwargs(args)))
        write_pair(out / s / f"{i:06d}", frame, {"split": s, "index": i, "seed": seed})
    print(f"{out}: {sum(counts.values())} pairs ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def _run_sequence(args) -> int:
    from ..data.rosbag import write_stereo_bag
    from ..sim.sequence import render_sequence

    preset_only = [f"--{n.replace('_', '-')}" for n in ("altitude", "baseline", "sun_elevation") if getattr(args, n) is not None]
    if args.unrectified:
        preset_only.append("--unrectified")
    if preset_only:  # a sequence's rig, altitudes and sun are its kind's; nothing is silently ignored
        raise ValueError(f"{' '.join(preset_only)} apply to --preset datasets, not to --sequence {args.sequence}")

    out = Path(args.out)
    if out.exists():
        raise ValueError(f"{out} already exists; rosbag2 bags are never overwritten")
    frames = render_sequence(
        args.sequence, args.frames, args.seed, width=args.width, height=args.height if args.height != 512 else 384, bits=args.bits
    )
    n = write_bag_atomically(
        out,
        lambda path: write_stereo_bag(
            path, _progress(frames, total=args.frames, desc=f"sequence {args.sequence}"), storage=args.storage, rate_hz=args.rate
        ),
    )
    print(f"{out}: {n} frames ({args.storage})")
    return 0


def write_bag_atomically(out: Path, write) -> int:
    """``write(path)`` a bag under its final name inside a hidden sibling folder, then move it
    into place: an interrupted run leaves no bag at ``out``, and the finished bag's files carry
    its own name (rosbag2 names them after the bag's folder, and metadata.yaml lists them)."""
    import shutil

    from ..fileio import durable_replace

    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)  # an interrupted run's leftovers
    staging.mkdir(parents=True)
    n = write(staging / out.name)
    durable_replace(staging / out.name, out)
    staging.rmdir()
    return n


def _progress(it, total: int, desc: str, initial: int = 0):
    from ..progress import progress

    return progress(it, total=total, initial=initial, desc=desc, unit="pair")
