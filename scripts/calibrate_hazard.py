"""Write a fitted hazard-probability calibration, its best-F1 hazard threshold and its safe
threshold (false safe within budget) into the shipped default student (same weights).

    lunar-recon evaluate-bag CALIBRATION_DATA --split val --model default --fit-hazard-calibration --out R
    .venv/bin/python scripts/calibrate_hazard.py R/hazard_calibration.json "the evaluate-bag command line"

The table and the thresholds (card ``hazard_calibration``, ``hazard_above``,
``hazard_safe_below``) go into the
checkpoint's embedded card (what the node reads), model_card.json (with the new sha256 and the
command in its log) and MODEL_CARD.md.  Fit it on calibration pairs, never on
the test split the card reports.

The descent map's own (the same keys prefixed ``descent_map_``):

    lunar-recon evaluate-bag CALIBRATION_DESCENTS --model default --descent-map --fit-hazard-calibration --out R
    .venv/bin/python scripts/calibrate_hazard.py --descent-map R/hazard_calibration.json "the command line"
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from lunar_recon.evaluation.runner import descent_map_label
from lunar_recon.models.checkpoint import atomic_torch_save
from lunar_recon.models.registry import ORBITAL_STUDENT, SHIPPED_DIR, shipped_model_path
from lunar_recon.pipeline import DESCENT_MAP_KEY_PREFIX

from card_test_metrics import replace_section, with_command_log  # scripts/: the card's markdown

SECTION = "## Hazard probability calibration"
DESCENT_SECTION = "## Descent map hazard probability calibration"
DESCENT_LABEL = descent_map_label("")  # the suffix of a fused map's entry


def with_calibration_section(md: str, descent: bool, table: list[float], safe: float, threshold: float, entry: dict) -> str:
    """``md`` (MODEL_CARD.md) with its section on the single-frame (or the descent map's)
    probability calibration written again: the table, the thresholds and how they were fitted."""
    prefix = DESCENT_MAP_KEY_PREFIX if descent else ""
    heading = DESCENT_SECTION if descent else SECTION
    of_what = "the fused descent map's probabilities" if descent else "the single-frame map's probabilities"
    section = (
        f"{heading}\n\nCalibrated hazard probability at {len(table)} evenly spaced raw probabilities from 0 to 1 of {of_what} "
        f"(monotone fit of the observed hazard frequency, {entry['sites']} sites of {entry['frames']} calibration "
        f"frames):\n\n`{table}`\n\nA site is certified safe at calibrated P < {safe} (`{prefix}hazard_safe_below`: "
        "the largest threshold whose share of hazards among the certified sites stays within 1 % on the same "
        f"calibration frames, at 95 % confidence over resampled {entry.get('safe_below_clusters', 'frames')}) "
        "and called a hazard at calibrated "
        f"P >= {threshold} (`{prefix}hazard_above`: the threshold with the best hazard F1 there)."
    )
    if entry.get("hazard_call_calibration"):
        section += (
            " Hazards are called on the call probability, each cell's relief judged under the relief prior "
            f"(`hazard.relief_prior_m`), through its own table (`{prefix}hazard_call_calibration`): "
            f"`{[float(v) for v in entry['hazard_call_calibration']]}`; the hazard threshold is on it."
        )
    bands = entry.get("hazard_safe_below_by_range") or []
    if bands:
        edges = [0.0] + [float(upper) for upper, _ in bands[:-1]]
        listed = ", ".join(f"{lo:g}-{float(upper):g} m: P < {t}" for lo, (upper, t) in zip(edges, bands))
        section += (
            f" Within each range band of the frame's median range that held enough calibration "
            f"{entry.get('safe_below_clusters', 'frames')}, the same budget fitted there "
            f"(`{prefix}hazard_safe_below_by_range`): {listed}; a band's threshold only tightens the "
            "pooled one (a band holds fewer frames: its bound is the noisier one)."
        )
    section += "\n\n"
    if heading in md:
        return replace_section(md, heading, section.split("\n")[2:-2])
    if descent and SECTION in md:  # right after the single-frame calibration
        head, rest = md.split(SECTION, 1)
        cut = rest.index("\n## ") + 1 if "\n## " in rest else len(rest)
        return head + SECTION + rest[:cut] + section + rest[cut:]
    return md.rstrip("\n") + "\n\n" + section


def main(argv: list[str]) -> int:
    descent = "--descent-map" in argv
    argv = [a for a in argv if a != "--descent-map"]
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    fitted, command = json.loads(Path(argv[0]).read_text()), argv[1]
    path = shipped_model_path()
    entry = next((v for k, v in fitted.items() if path.name in k and k.endswith(DESCENT_LABEL) == descent), None)
    if entry is None:
        what = f"{path.name}{DESCENT_LABEL}" if descent else path.name
        print(f"{argv[0]} has no table for {what} (it has: {sorted(fitted)})", file=sys.stderr)
        return 2
    table = [float(v) for v in entry["hazard_calibration"]]
    threshold = float(entry["hazard_above"])
    safe = float(entry["hazard_safe_below"])
    prefix = DESCENT_MAP_KEY_PREFIX if descent else ""
    keys = {
        f"{prefix}hazard_calibration": table,
        f"{prefix}hazard_above": threshold,
        f"{prefix}hazard_safe_below": safe,
        f"{prefix}hazard_safe_below_by_range": [[float(u), float(t)] for u, t in entry.get("hazard_safe_below_by_range") or []],
    }
    call_key = f"{prefix}hazard_call_calibration"  # a fit without call probabilities drops a stale table

    def updated(card: dict) -> dict:
        card.update(keys)
        if entry.get("hazard_call_calibration"):
            card[call_key] = [float(v) for v in entry["hazard_call_calibration"]]
        else:
            card.pop(call_key, None)
        return card

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    updated(ckpt["meta"]["card"])
    atomic_torch_save(ckpt, path)
    orbital = SHIPPED_DIR / ORBITAL_STUDENT  # the range-selected network shares the default's head and tables
    if orbital.exists():
        other = torch.load(orbital, map_location="cpu", weights_only=True)
        updated(other["meta"]["card"])
        atomic_torch_save(other, orbital)
    card_path = SHIPPED_DIR / "model_card.json"
    card = updated(json.loads(card_path.read_text()))
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card["commands"] = [
        *card["commands"],
        f"# {'descent map ' if descent else ''}hazard calibration ({entry['sites']} sites, {entry['frames']} frames):",
        command,
        f"python scripts/calibrate_hazard.py {'--descent-map ' if descent else ''}{argv[0]} '...'",
    ]
    card_path.write_text(json.dumps(card, indent=1, default=str))
    md_path = SHIPPED_DIR / "MODEL_CARD.md"
    md = md_path.read_text()
    md = md.replace(md.split("(sha256 `")[1].split("…`)")[0], card["sha256"][:16], 1) if "(sha256 `" in md else md
    marker = f"`{ORBITAL_STUDENT}` (sha256 `"
    if orbital.exists() and marker in md:
        old_digest = md.split(marker)[1].split("…`")[0]
        md = md.replace(marker + old_digest, marker + hashlib.sha256(orbital.read_bytes()).hexdigest()[:16], 1)
    md = with_calibration_section(md, descent, table, safe, threshold, entry)
    md_path.write_text(with_command_log(md, card["commands"][-3:]))
    print(f"{path}: hazard calibration {table}, safe at P < {safe}, hazard at P >= {threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
