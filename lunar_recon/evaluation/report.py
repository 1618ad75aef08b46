"""The evaluation report (ROS-free): tables of the scores, the headline in words, metrics files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .. import viz
from .scoring import FrameScore, pooled_reliability, summarize

MAIN_COLUMNS = (
    "frames",
    "range_m",
    "depth_abs_rel",
    "depth_abs_rel_sgbm_matched",
    "depth_mae",
    "depth_rmse",
    "depth_completeness",
    "depth_relief_norm_mae",
    "slope_mae_deg",
    "hazard_f1_pooled",
    "hazard_f1_chance_pooled",
    "hazard_certified_safe_pooled",
    "hazard_false_safe_pooled",
    "hazard_ece_pooled",
    "hazard_recall",
    "hazard_f1",
    "hazard_f1_chance",
    "hazard_known_fraction",
    "hazard_elevation_sigma_m",
    "hazard_landing_site_proposed",
    "hazard_landing_site_judged",
    "hazard_landing_site_safe",
    "hazard_landing_site_hazard_distance_m",
    "hazard_landing_site_clearance_m",
    "disparity_sigma_px",
    "latency_ms_p50",
    "latency_ms_p90",
)


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def markdown_table(summary: dict[str, dict[str, float]], columns=MAIN_COLUMNS, group: str = "sequence") -> str:
    """A :func:`summarize` result as a markdown table: the model, then the group ('all' for a
    model's row over everything), then the metrics."""
    cols = [c for c in columns if any(c in row for row in summary.values())]
    lines = [f"| model | {group} | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, row in summary.items():
        model, _, part = name.partition(" | ")
        lines.append(f"| {model} | {part or 'all'} | " + " | ".join(_fmt(row.get(c, float("nan"))) for c in cols) + " |")
    return "\n".join(lines)


def headline(summary: dict[str, dict[str, float]]) -> list[str]:
    """One sentence per model on its hazard map, saying so in words when it is no better than chance."""
    lines = []
    for name, row in summary.items():
        if " | " in name or "hazard_f1_pooled" not in row:
            continue
        f1, chance = row["hazard_f1_pooled"], row.get("hazard_f1_chance_pooled", float("nan"))
        verdict = (
            "**at or below chance: the map carries no information about the hazards**"
            if np.isfinite(f1) and np.isfinite(chance) and f1 <= chance
            else "above chance"
        )
        lines.append(
            f"- **{name}**: hazard F1 {_fmt(f1)} against {_fmt(chance)} for calling everything a hazard "
            f"({verdict}); certified safe {_fmt(row.get('hazard_certified_safe_pooled', float('nan')))}, "
            f"false safe {_fmt(row.get('hazard_false_safe_pooled', float('nan')))}, "
            f"calibration error {_fmt(row.get('hazard_ece_pooled', float('nan')))}."
        )
    return lines


def write_report(
    out: Path, scores: list[FrameScore], figures: list[Path], notes: list[str], title: str = "lunar_recon evaluation"
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(scores)
    by_range = summarize(scores, by="range")
    keys = sorted({k for s in scores for k in s.metrics})
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "model", "index", "stamp_ns", "latency_s", *keys])
        for s in scores:
            w.writerow([s.sequence, s.model, s.index, s.stamp_ns, f"{s.latency_s:.6f}", *[s.metrics.get(k, "") for k in keys]])
    frames = [
        {
            **s.__dict__,
            "reliability": None if s.reliability is None else s.reliability.tolist(),
            "call_reliability": None if s.call_reliability is None else s.call_reliability.tolist(),
        }
        for s in scores
    ]
    (out / "metrics.json").write_text(
        json.dumps(
            {"summary": summary, "by_range": by_range, "frames": frames},
            indent=1,
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
        ).replace("NaN", "null")
    )
    if any(s.reliability is not None for s in scores):
        figures = [reliability_figure(out / "reliability.png", scores), *figures]
    lines = [
        f"# {title}",
        "",
        *headline(summary),
        "",
        "Metrics are computed without any scale or Sim(3) alignment (scale is judged).",
        "Depth metrics against the ground-truth depth topic when present, else against the first model. "
        "Hazard metrics score each model's own map, as the node publishes it, on the truth's sites: "
        "`certified_safe` is the share of truly safe sites called safe, `false_safe` the share of sites "
        "called safe that are hazards, `ece` the calibration error of the hazard probability; `_pooled` "
        "columns take every frame's sites as one set, the others are means of frames. "
        "`hazard_f1_chance` is the F1 of calling every site a hazard.",
        "",
        markdown_table(summary),
        "",
    ]
    if by_range:
        lines += [
            "## By range",
            "",
            "Stereo depth noise grows as range squared over (focal length x baseline): each frame falls in "
            "the bin of its median range. `hazard_known_fraction` is the share of the truth's sites the "
            "map could judge; `hazard_elevation_sigma_m` (median over the truth's cells) is the 1-sigma of "
            "a cell's height: where it nears the roughness limit, hazards of the set size are not "
            "resolvable.",
            "",
            markdown_table(by_range, group="range"),
            "",
        ]
    last: dict[tuple[str, str], FrameScore] = {}
    for sc in scores:  # the last frame of each model's sequence: where a descent ends
        key = (sc.model, sc.sequence)
        if key not in last or sc.index > last[key].index:
            last[key] = sc
    if any(s.index > 0 for s in last.values()):
        finals = {k: v for k, v in summarize(list(last.values())).items() if " | " not in k}
        lines += [
            "## Last frame of each sequence",
            "",
            "The frame closest to the ground of every sequence, where a lander decides; a descent map has "
            "fused all the frames before it.",
            "",
            markdown_table(finals, group="last frames"),
            "",
        ]
    lines += [f"- {n}" for n in notes]
    for fig in figures:
        lines += ["", f"![{fig.stem}]({fig.name})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return summary


def reliability_figure(path: Path, scores: list[FrameScore]) -> Path:
    """The reliability diagram (``viz``) of every model's frames, pooled."""
    counts = {m: pooled_reliability([s for s in scores if s.model == m]) for m in {s.model for s in scores}}
    return viz.reliability_figure(path, {m: c for m, c in counts.items() if c is not None})


def error_by_range_figure(path: Path, scores: list[FrameScore]) -> Path:
    """Depth AbsRel and hazard F1 of every frame against its range (``viz``)."""
    return viz.error_by_range_figure(path, [(s.model, s.metrics) for s in scores])
