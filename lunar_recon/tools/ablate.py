"""Ablate the distillation recipe at small scale with a fixed budget.

    lunar-recon ablate --config configs/student_nano.yaml --steps 150 --seeds 0 --out runs/ablation

Each variant changes one thing in the base config (the full recipe), trains for the same
steps with the same data and seeds, and is scored on the validation split.  Writes
``ablation.md`` and ``ablation.csv``; an interrupted run picks up where it stopped.
"""

from __future__ import annotations

HELP = "ablation table of the distillation recipe (markdown + CSV)"


def add_arguments(p) -> None:
    from ..distill.ablation import VARIANT_NAMES

    p.add_argument("--config", required=True, help="base distillation config (the full recipe)")
    p.add_argument("--out", required=True, help="folder for the runs and the tables")
    p.add_argument("--steps", type=int, default=150, help="training steps per variant (the fixed budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", choices=VARIANT_NAMES, default=list(VARIANT_NAMES))
    p.add_argument("--val-pairs", type=int, default=0, help="validation pairs (0: the config's)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the latency column")


def run(args) -> int:
    from pathlib import Path

    from ..progress import progress

    from ..distill.ablation import VARIANTS, run_variant, variant_config, write_tables
    from ..distill.trainer import DistillConfig

    if args.steps < 1:
        raise ValueError("--steps must be >= 1")
    base = DistillConfig.from_yaml(args.config)
    if args.val_pairs:
        base.val_pairs = args.val_pairs
    out = Path(args.out)
    h, w = (base.size * 3) // 4 // 16 * 16, base.size  # 4:3 network input, like the node's
    rows = []
    for variant in (v for v in VARIANTS if v.name in args.variants):
        for seed in args.seeds:
            cfg = variant_config(base, variant, out, seed, args.steps)
            print(f"ablate: {variant.name} (seed {seed}) -> {cfg.out}", flush=True)
            row = run_variant(
                cfg,
                variant,
                h,
                w,
                threads=args.threads,
                log=lambda *a, **k: None,
                progress=lambda r: progress(r, desc=variant.name, unit="step", leave=False),
            )
            rows.append(row)
            write_tables(out, rows, _header(args, base, h, w))  # partial tables survive an interruption
    md, csv_path = write_tables(out, rows, _header(args, base, h, w))
    print(md.read_text())
    print(f"wrote {md} and {csv_path}")
    return 0


def _header(args, base, h: int, w: int) -> str:
    return (
        f"Ablation: base config `{args.config}` (data `{base.data}`, teacher `{base.teacher}`), "
        f"{args.steps} steps x batch {base.batch_size} at {w}x{h} per variant, seeds {args.seeds}; "
        f"validation on {base.val_pairs} held-out pairs after a per-frame median scale; "
        f"GFLOPs and CPU latency ({args.threads} threads) per pair at {w}x{h}."
    )
