"""Run a teacher once over a dataset split and store compressed supervision (the teacher cache).

lunar-recon cache --teacher TEACHER.pt --data data/descent --out runs/cache [--features view1.enc_out ...]
"""

from __future__ import annotations

HELP = "cache a teacher's outputs (fp16 pointmaps, RLE masks, optional low-rank features)"


def add_arguments(p) -> None:
    p.add_argument("--teacher", required=True, help="any checkpoint load_model accepts")
    p.add_argument("--data", required=True, help="lunar_recon dataset folder (never the StereoLunar sample)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--size", type=int, default=256, help="network input long side")
    p.add_argument("--features", nargs="*", default=[], help="token names, e.g. view1.enc_out view1.dec_block.03")
    p.add_argument("--rank", type=int, default=0, help="low-rank feature compression (0 = fp16 tokens)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--device", default="auto")


def run(args) -> int:
    from ..progress import progress

    from ..distill.cache import build_cache
    from ..distill.data import TrainPairs
    from ..models.checkpoint import load_model

    teacher = load_model(args.teacher, device=args.device)
    pairs = TrainPairs(args.data, args.split, args.size)
    meta = build_cache(
        teacher,
        pairs,
        args.out,
        args.features,
        args.rank,
        args.shard_size,
        args.batch_size,
        teacher_label=str(args.teacher),
        progress=lambda it: progress(it, desc="cache", unit="shard"),
    )
    print(
        f"{args.out}: {meta['pairs']} pairs, {meta['bytes_per_pair'] / 1024:.1f} KiB per pair, "
        f"compression x{meta['compression_ratio']:.2f} vs float32"
    )
    return 0
