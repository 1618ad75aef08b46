"""Train a student (or fine-tune a teacher) from a YAML config.

lunar-recon distill --config configs/student_nano.yaml [--resume]
torchrun --nproc_per_node 2 -m lunar_recon distill --config FILE      # DistributedDataParallel
"""

from __future__ import annotations

HELP = "distil a student from a teacher cache, or fine-tune on ground truth"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config entries")


def run(args) -> int:
    import yaml
    from ..progress import progress

    from ..distill.trainer import DistillConfig, Trainer

    cfg = DistillConfig.from_yaml(args.config)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in DistillConfig.__dataclass_fields__:
            raise ValueError(f"--set: unknown setting {key!r}")
        setattr(cfg, key, yaml.safe_load(value))
    cfg.validate()
    trainer = Trainer(cfg, resume=args.resume)
    history = trainer.train(progress=lambda r: progress(r, desc="distill", unit="step", initial=trainer.step, total=cfg.steps))
    last = history[-1] if history else {}
    print(
        f"{cfg.out}: step {trainer.step}/{cfg.steps}, loss {last.get('loss', float('nan')):.4f}, "
        f"best val AbsRel {trainer.best:.4f}"
    )
    return 0
