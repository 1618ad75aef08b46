"""The ``lunar-recon`` command line: one entry point, one subcommand per offline tool.

Each tool module registers itself through ``add_parser(subparsers)`` and a ``run(args)``
function, imported lazily so ``lunar-recon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under lunar_recon.tools
TOOLS = {
    "info": "info",
    "simulate": "simulate",
    "evaluate-bag": "evaluate_bag",
    "cache": "cache",
    "distill": "distill",
    "train-stereo-head": "train_stereo_head",
    "export": "export",
    "ablate": "ablate",
    "benchmark": "benchmark",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lunar-recon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in TOOLS.items():
        mod = importlib.import_module(f"lunar_recon.tools.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .runtime import configure_program

    configure_program()  # before the tools import numpy
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"lunar-recon {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
