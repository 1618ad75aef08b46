"""Export a model to TorchScript and ONNX (opset >= 17) and check parity with eager.

lunar-recon export MODEL --out runs/export --height 192 --width 256
"""

from __future__ import annotations

HELP = "export a model to TorchScript and ONNX, with a parity check"


def add_arguments(p) -> None:
    p.add_argument("model", help="a checkpoint, or 'default' (the shipped student)")
    p.add_argument("--out", required=True)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--opset", type=int, default=17)


def run(args) -> int:
    from ..distill.export import export_model
    from ..models.registry import resolve_network_file

    report = export_model(resolve_network_file(args.model), args.out, args.height, args.width, args.opset)
    for k, v in report.items():
        print(f"{k}: {v}")
    return 0
