"""Ship the default student's range-selected second network, for pairs from orbit.

    .venv/bin/python scripts/ship_orbital.py runs/geo/student_ft/final.pt --min-range 1000 \
        --calibration oblique=runs/oblique_val orbital=runs/orbital_val --commands runs/geo/commands.log

CHECKPOINT is the default student fine-tuned on orbital / oblique geometry (``lunar-recon
distill`` with ``init: teacher`` on the shipped student, so it carries the same calibrated-stereo
head).  It inherits the default's card (network input, scale mode, the head's disparity
precision and hazard calibration: its metric path is the same head), states the range beyond
which the pipeline selects it, and records the commands and the calibration-data metrics that
chose it; it is installed as ``models/shipped/lunar_student_orbital.pt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from lunar_recon.models.checkpoint import atomic_torch_save, read_checkpoint
from lunar_recon.models.registry import ORBITAL_STUDENT, SHIPPED_DIR, shipped_model_path

KEPT = (
    "config",
    "parameters",
    "gflops_per_pair",
    "cpu_latency_ms_2_threads",
    "inference_size",
    "scale_mode",
    "disparity_sigma_px",
    "disparity_sigma_texture_gain",
    "hazard_calibration",
    "hazard_above",
)


SECTION = "## Orbital network (range-selected)"


def write_card_section(card: dict, digest: str) -> None:
    """The orbital network's section of MODEL_CARD.md (replaced when shipped again)."""
    path = SHIPPED_DIR / "MODEL_CARD.md"
    text = path.read_text()
    text = text.split("\n" + SECTION)[0].rstrip("\n")

    def value(v):  # a metrics dict's AbsRel, or the number itself
        return v["depth_abs_rel"] if isinstance(v, dict) else v

    rows = [f"| {name} | {value(m['shipped'])} | {value(m['orbital'])} |" for name, m in card["calibration_metrics"].items()]
    lines = [
        SECTION,
        "",
        f"- file: `{card['file']}` (sha256 `{digest[:16]}…`): the default's architecture and stereo head, its own network",
        f"- selected by `model: default` for pairs whose metric median range is beyond {card['selected_above_range_m']:g} m",
        f"- data: {card['data']}",
        f"- base: {card['base']}",
        "",
        "Calibration data (simulated val splits, never StereoLunar): AbsRel, or slope MAE in degrees",
        "",
        "| calibration split | default's network | orbital network |",
        "|---|---:|---:|",
        *rows,
        "",
        "Commands:",
        "",
        "```",
        *card["commands"],
        "```",
    ]
    path.write_text(text + "\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--min-range", type=float, required=True, help="metric median range (m) beyond which it serves")
    ap.add_argument("--calibration", nargs="*", default=[], help="NAME=JSON metrics of the calibration data (shipped vs this)")
    ap.add_argument("--data", required=True, help="what it was trained on, in words")
    ap.add_argument("--commands", required=True, help="the command log that made it")
    args = ap.parse_args()
    if not args.min_range > 0:
        raise SystemExit("--min-range must be > 0 m")
    default = read_checkpoint(shipped_model_path())
    ckpt = dict(read_checkpoint(args.checkpoint))
    if ckpt.get("config") != default.get("config"):
        raise SystemExit(f"{args.checkpoint}: not the default student's architecture")
    base = default["meta"]["card"]
    card = {k: base[k] for k in KEPT if k in base}
    card.update(
        name="lunar_recon default student, orbital network (range-selected)",
        file=ORBITAL_STUDENT,
        selected_above_range_m=args.min_range,
        data=args.data,
        commands=Path(args.commands).read_text().splitlines(),
        calibration_metrics={k: json.loads(v) for k, v in (item.split("=", 1) for item in args.calibration)},
        base=f"{shipped_model_path().name} sha256 {hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()}",
    )
    ckpt["meta"] = dict(ckpt.get("meta") or {}, card=card)
    out = SHIPPED_DIR / ORBITAL_STUDENT
    atomic_torch_save(ckpt, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    write_card_section(card, digest)
    print(json.dumps({k: v for k, v in card.items() if k != "commands"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
