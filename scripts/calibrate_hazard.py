"""Write a fitted hazard-probability calibration and its best-F1 hazard threshold into the
shipped default student (same weights).

    lunar-recon evaluate-bag CALIBRATION_DATA --split val --model default --fit-hazard-calibration --out R
    .venv/bin/python scripts/calibrate_hazard.py R/hazard_calibration.json "the evaluate-bag command line"

The table and the threshold (card ``hazard_calibration``, ``hazard_above``) go into the
checkpoint's embedded card (what the node reads), model_card.json (with the new sha256 and the
command in its log) and MODEL_CARD.md.  Fit it on calibration pairs, never on
the test split the card reports.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from lunar_recon.models.checkpoint import atomic_torch_save
from lunar_recon.models.registry import SHIPPED_DIR, shipped_model_path

SECTION = "## Hazard probability calibration"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    fitted, command = json.loads(Path(argv[0]).read_text()), argv[1]
    path = shipped_model_path()
    entry = next((v for k, v in fitted.items() if path.name in k), None)
    if entry is None:
        print(f"{argv[0]} has no table for {path.name} (it has: {sorted(fitted)})", file=sys.stderr)
        return 2
    table = [float(v) for v in entry["hazard_calibration"]]
    threshold = float(entry["hazard_above"])
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["meta"]["card"].update(hazard_calibration=table, hazard_above=threshold)
    atomic_torch_save(ckpt, path)
    card_path = SHIPPED_DIR / "model_card.json"
    card = json.loads(card_path.read_text())
    card.update(hazard_calibration=table, hazard_above=threshold)
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card["commands"] = [
        *card["commands"],
        f"# hazard calibration ({entry['sites']} sites, {entry['frames']} frames):",
        command,
        f"python scripts/calibrate_hazard.py {argv[0]} '...'",
    ]
    card_path.write_text(json.dumps(card, indent=1, default=str))
    md_path = SHIPPED_DIR / "MODEL_CARD.md"
    md = md_path.read_text()
    md = md.replace(md.split("(sha256 `")[1].split("…`)")[0], card["sha256"][:16], 1) if "(sha256 `" in md else md
    section = (
        f"{SECTION}\n\nCalibrated hazard probability at raw probabilities 0, 0.1, ..., 1 (monotone fit of the "
        f"observed hazard frequency, {entry['sites']} sites of {entry['frames']} calibration frames):\n\n"
        f"`{table}`\n\nA site is called a hazard at calibrated P >= {threshold} (`hazard_above`: the threshold "
        "with the best hazard F1 on the same calibration frames).\n\n"
    )
    if SECTION in md:  # replace the section up to the next heading, keep the rest
        head, rest = md.split(SECTION, 1)
        tail = rest[rest.index("\n## ") + 1 :] if "\n## " in rest else ""
        md = head + section + tail
    else:
        md = md.rstrip("\n") + "\n\n" + section
    if "```\n" in md and md.rstrip().endswith("```"):  # the card ends with its command log
        md = md.rstrip().removesuffix("```") + "\n".join(card["commands"][-3:]) + "\n```\n"
    md_path.write_text(md)
    print(f"{path}: hazard calibration {table}, hazard at P >= {threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
