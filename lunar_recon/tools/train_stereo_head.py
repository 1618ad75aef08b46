"""Train the student's calibrated-stereo head on simulated datasets, and attach it to a student.

lunar-recon train-stereo-head --data DATASET [DATASET ...] --out RUN [--steps N] [--seed S] [--resume]
lunar-recon train-stereo-head --attach RUN/stereo_head.pt --to STUDENT.pt --out NEW.pt
"""

from __future__ import annotations

HELP = "train the student's calibrated-stereo head (or attach a trained one to a student checkpoint)"


def add_arguments(p) -> None:
    p.add_argument("--data", nargs="+", help="lunar_recon datasets whose 'train' split is used")
    p.add_argument("--out", required=True, help="run folder (training), or the new checkpoint (--attach)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue RUN/last.pt (same settings)")
    p.add_argument("--init", default="", help="start from a trained head's weights (fine-tuning)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--fine-hidden-dim",
        type=int,
        help="channels of the fine features' hidden convolutions (default: --init's, else as many as the features'); "
        "a wider head started from --init computes the same features at step 0",
    )
    p.add_argument("--attach", help="a trained head (stereo_head.pt) to put into --to")
    p.add_argument("--to", help="the student checkpoint that receives the head")


def run(args) -> int:
    if args.attach:
        from ..models.checkpoint import attach_stereo_head

        if not args.to:
            raise ValueError("--attach needs --to STUDENT.pt")
        path = attach_stereo_head(args.to, args.attach, args.out)
        print(f"wrote {path}")
        return 0
    if not args.data:
        raise ValueError("give --data DATASET (or --attach)")
    from ..distill.stereo_head import StereoHeadTraining, train_stereo_head
    from ..models.checkpoint import read_checkpoint
    from ..models.stereo_head import StereoHeadConfig

    cfg = StereoHeadTraining(steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr, init=args.init)
    sizes = dict(read_checkpoint(args.init).get("config") or {}) if args.init else {}
    if args.fine_hidden_dim is not None:
        sizes["fine_hidden_dim"] = args.fine_hidden_dim
    head_cfg = StereoHeadConfig.from_dict(sizes)
    path = train_stereo_head(args.data, args.out, cfg, head_cfg=head_cfg, resume=args.resume, log=lambda m: print(m, flush=True))
    print(f"wrote {path}")
    return 0
