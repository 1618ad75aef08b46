"""Describe a model file: architecture, parameters, GFLOPs at a resolution."""

from __future__ import annotations

HELP = "describe a model checkpoint (config, parameters, GFLOPs)"


def add_arguments(p) -> None:
    p.add_argument("model", help="a checkpoint, or 'default' (the shipped student)")
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=512)


def run(args) -> int:
    from ..models import load_model
    from ..models.profile import count_parameters, pair_gflops
    from ..models.registry import resolve_network_file

    model = load_model(resolve_network_file(args.model))
    print(model.config.to_yaml().rstrip())
    print(f"parameters: {count_parameters(model):,}")
    print(f"GFLOPs per pair at {args.width}x{args.height}: {pair_gflops(model, args.height, args.width):.1f}")
    return 0
