"""Put held-out evaluation runs of the shipped default student into its card: the lander test
split, the descent test bags and the lander-approach test bags (``evaluate-bag ... --out DIR``
directories), as the card's ``test_metrics`` / ``descent_test_metrics`` /
``approach_test_metrics`` and the tables of MODEL_CARD.md.

    lunar-recon evaluate-bag runs/lander --split test --model default --stereo-ceiling 0.071 --out L
    lunar-recon evaluate-bag runs/seq41.bag runs/seq42.bag --model default --descent-map --stereo-ceiling 0.1 --out D
    lunar-recon evaluate-bag runs/lseq81.bag ... runs/lseq88.bag --model default --descent-map --stereo-ceiling 0.1 --out A
    .venv/bin/python scripts/card_test_metrics.py L D A "the command lines"

Run it after any change to what the card's numbers depend on (weights, tables, the map), on
held-out data only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lunar_recon.models.registry import SHIPPED_DIR

COLUMNS = (
    "frames",
    "range_m",
    "depth_abs_rel",
    "depth_abs_rel_sgbm_matched",
    "depth_completeness",
    "disparity_sigma_px",
    "slope_mae_deg",
    "hazard_f1_pooled",
    "hazard_f1_chance_pooled",
    "hazard_certified_safe_pooled",
    "hazard_false_safe_pooled",
    "latency_ms_p50",
)
LANDER_SECTION = "## Test metrics: lander test split (held out, 10-30 m, no alignment)"
DESCENT_SECTION = "## Test metrics: descent test bags (held out, 10-100 m)"
APPROACH_SECTION = "## Test metrics: lander approach test bags (held out, 30-12 m)"


def metrics_table(summary: dict, columns: tuple[str, ...] = COLUMNS) -> list[str]:
    """Markdown rows of an evaluate-bag summary (one row per model or model | sequence)."""
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in summary.items():
        values = [row.get(c) for c in columns]
        cells = [f"{v:.4g}" if isinstance(v, float) else "–" if v is None else str(v) for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def replace_section(md: str, heading: str, body: list[str]) -> str:
    """``md`` with the section under ``heading`` (up to the next heading) replaced by ``body``."""
    if heading not in md:
        raise ValueError(f"MODEL_CARD.md has no section {heading!r}")
    head, rest = md.split(heading, 1)
    tail = rest[rest.index("\n## ") + 1 :] if "\n## " in rest else ""
    return head + "\n".join([heading, "", *body, "", ""]) + tail


def with_command_log(md: str, commands: list[str]) -> str:
    """``md`` with ``commands`` added to the command log it ends with (unchanged if it does not)."""
    if "```\n" in md and md.rstrip().endswith("```"):
        return md.rstrip().removesuffix("```") + "\n".join(commands) + "\n```\n"
    return md


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    runs = []
    for out in argv[:3]:
        path = Path(out) / "metrics.json"
        if not path.is_file():
            print(f"{path} is missing: give evaluate-bag --out directories", file=sys.stderr)
            return 2
        runs.append(json.loads(path.read_text()))
    lander, descent, approach = runs
    card_path = SHIPPED_DIR / "model_card.json"
    card = json.loads(card_path.read_text())
    card.update(
        test_metrics=lander["summary"],
        test_metrics_by_range=lander["by_range"],
        descent_test_metrics=descent["summary"],
        approach_test_metrics=approach["summary"],
        commands=[
            *card["commands"],
            "# held-out metrics of the card (test split, descent and lander-approach test bags):",
            argv[3],
            f"python scripts/card_test_metrics.py {argv[0]} {argv[1]} {argv[2]} '...'",
        ],
    )
    card_path.write_text(json.dumps(card, indent=1, default=str))
    md_path = SHIPPED_DIR / "MODEL_CARD.md"
    md = md_path.read_text()
    md = replace_section(md, LANDER_SECTION, metrics_table(card["test_metrics"]))
    md = replace_section(md, DESCENT_SECTION, metrics_table(card["descent_test_metrics"]))
    if APPROACH_SECTION not in md:  # a card from before the approach bags: the section goes after the descent's
        head, rest = md.split(DESCENT_SECTION, 1)
        cut = rest.index("\n## ") + 1 if "\n## " in rest else len(rest)
        md = head + DESCENT_SECTION + rest[:cut] + APPROACH_SECTION + "\n\n" + rest[cut:]
    md = replace_section(md, APPROACH_SECTION, metrics_table(card["approach_test_metrics"]))
    md_path.write_text(with_command_log(md, card["commands"][-3:]))
    print(f"{md_path}: test metrics from {argv[0]}, {argv[1]} and {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
