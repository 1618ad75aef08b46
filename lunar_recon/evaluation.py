"""Scoring reconstructions against ground truth, and the evaluation report (ROS-free).

Used by ``lunar-recon evaluate-bag`` (offline through the pipeline, or live through a running
stereo_node) and by training validation: one scoring path for everything.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry.camera import depth_to_points
from .geometry.frames import quaternion_to_matrix
from .geometry.hazard import (
    HAZARD,
    SAFE,
    UNKNOWN,
    GridSpec,
    HazardMap,
    HazardParams,
    choose_landing_site,
    hazard_map,
    median_elevation_sigma,
    resample_hazard_map,
)
from .geometry.metrics import depth_metrics, expected_calibration_error, hazard_metrics, reliability_counts


def hazard_map_from_grid(
    cost: np.ndarray, resolution: float, origin_xyz, orientation_xyzw, params: HazardParams
) -> tuple[HazardMap, GridSpec]:
    """A published hazard OccupancyGrid (costs 100 P, -1 without data; origin pose in the camera
    frame) as a HazardMap: its probabilities, and classes by ``params``' thresholds.  A
    ground-truth grid (costs 0 / 100) reads back as its classes."""
    R_cam_from_grid = quaternion_to_matrix(orientation_xyzw)
    R = R_cam_from_grid.T
    o = R @ np.asarray(origin_xyz, dtype=np.float64)
    grid = GridSpec((float(o[0]), float(o[1])), float(resolution), tuple(cost.shape))
    cost = np.asarray(cost)
    probability = np.where(cost < 0, np.nan, cost / 100.0).astype(np.float32)
    classes = np.full(cost.shape, UNKNOWN, np.int8)
    classes[(cost >= 0) & (probability < params.safe_below)] = SAFE
    classes[(cost >= 0) & (probability >= params.hazard_above)] = HAZARD
    nan = np.full(cost.shape, np.nan, np.float32)
    ground = np.full(cost.shape, o[2], np.float32)  # the grid lies on the ground plane at the origin's height
    hm = HazardMap(
        grid=grid,
        elevation_m=ground,
        slope_deg=nan,
        roughness_m=nan,
        roughness_rms_m=nan,
        coverage=np.ones(cost.shape, np.float32),
        hazard=classes,
        cost=cost.astype(np.int8),
        R_grid_from_input=R,
        params=params,
        probability=probability,
    )
    hm.landing_site = choose_landing_site(hm)  # the node's site is this choice on the same map
    return hm, grid


@dataclass
class FrameScore:
    sequence: str
    model: str
    index: int
    stamp_ns: int
    latency_s: float
    metrics: dict = field(default_factory=dict)
    reliability: np.ndarray | None = None  # geometry.metrics.reliability_counts of the frame's hazard map


def hazard_on_truth_cells(hazard_pred: HazardMap, hazard_true: HazardMap) -> HazardMap:
    """The map the pipeline made, resampled onto the truth's cells (nearest cell), so the very
    map a node publishes is scored -- not a second map made on the truth's grid."""
    return resample_hazard_map(hazard_pred, hazard_true.grid, hazard_true.R_grid_from_input, hazard_true.elevation_m)


def ideal_stereo_depth(
    depth_true: np.ndarray, focal_baseline: float, disparity_sigma_px: float, rng: np.random.Generator
) -> np.ndarray:
    """The ground-truth depth as an ideal rectified matcher would measure it: every pixel
    matched (shadows too), no bias, independent Gaussian disparity noise of the given sigma.

    Its hazard map is the ceiling of two-view stereo at that precision on the rig
    (``focal_baseline`` = f B in px m): real matchers and networks do worse, smoothing small
    relief away, biased toward whole pixels and leaving holes where nothing matches."""
    if not (focal_baseline > 0 and disparity_sigma_px >= 0):
        raise ValueError(f"need f B > 0 and a disparity sigma >= 0 (got {focal_baseline}, {disparity_sigma_px})")
    depth = np.asarray(depth_true, dtype=np.float32)
    if disparity_sigma_px == 0:  # the truth itself, not its float32 round trip through disparity
        return np.where(depth > 0, depth, np.float32(np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        disparity = np.float32(focal_baseline) / depth
        disparity = disparity + np.float32(disparity_sigma_px) * rng.standard_normal(depth.shape, dtype=np.float32)
        noisy = np.float32(focal_baseline) / disparity
    noisy[~(np.isfinite(depth) & (depth > 0) & (disparity > 0))] = np.nan  # a negative disparity matches nothing
    return noisy


def disparity_error_samples(
    depth_pred: np.ndarray,
    depth_true: np.ndarray,
    focal_baseline: float,
    image_left: np.ndarray,
    matched: np.ndarray | None = None,
    samples: int = 20000,
    seed: int = 0,
    window: int = 9,
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute disparity errors (px) of a rectified rig's depth and the matching Cramer-Rao bound
    at the same pixels (``geometry.stereo.matching_crlb``), at most ``samples`` random pixels
    among those ``matched`` (e.g. a matcher's, not the network's): the data
    ``geometry.stereo.fit_disparity_precision`` fits."""
    from .geometry.stereo import matching_crlb

    crlb = matching_crlb(image_left, window)
    if crlb.shape != depth_pred.shape:
        raise ValueError(f"image {crlb.shape} and depth {depth_pred.shape} differ in size")
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.abs(np.float32(focal_baseline) / depth_pred - np.float32(focal_baseline) / depth_true)
    use = np.isfinite(e) & (depth_true > 0)
    if matched is not None:
        use &= matched
    idx = np.flatnonzero(use)
    if idx.size > samples:
        idx = np.random.default_rng(seed).choice(idx, samples, replace=False)
    return e.reshape(-1)[idx], crlb.reshape(-1)[idx]


def score_frame(
    depth_pred: np.ndarray,
    points_pred: np.ndarray,
    depth_true: np.ndarray | None,
    hazard_true: HazardMap | None,
    up: np.ndarray | None,
    params: HazardParams,
    elevation_sigma: np.ndarray | None = None,
    focal_baseline: float | None = None,
    hazard_pred: HazardMap | None = None,
) -> dict:
    """Depth metrics (no alignment), the frame's range, for a rectified rig (``focal_baseline``
    = f B in px m) the disparity error in pixels (the precision figure of stereo, comparable
    across ranges), and hazard metrics of ``hazard_pred`` (the pipeline's own map; made here
    from ``points_pred`` with ``elevation_sigma`` when not given) resampled onto the truth's
    cells.  The frame's reliability counts are under the key ``"_reliability"``."""
    out: dict = {}
    reference = depth_true if depth_true is not None else depth_pred
    finite = reference[np.isfinite(reference) & (reference > 0)]
    if finite.size:
        out["range_m"] = float(np.median(finite))
    if depth_true is not None:
        out.update({f"depth_{k}": v for k, v in depth_metrics(depth_pred, depth_true).items()})
        if focal_baseline:
            with np.errstate(divide="ignore", invalid="ignore"):
                e = focal_baseline / depth_pred - focal_baseline / depth_true
            e = e[np.isfinite(e)]
            if e.size:
                med = float(np.median(e))
                out["disparity_bias_px"] = med
                out["disparity_sigma_px"] = float(1.4826 * np.median(np.abs(e - med)))  # robust (MAD) sigma
    if hazard_true is not None and up is not None:
        if hazard_pred is None:
            usable = np.isfinite(points_pred[..., 0] + points_pred[..., 1] + points_pred[..., 2])
            if elevation_sigma is not None:
                usable &= np.isfinite(elevation_sigma)
            if usable.sum() >= 3:
                hazard_pred = hazard_map(points_pred, up, params, elevation_sigma=elevation_sigma)
        if hazard_pred is not None:
            pred = hazard_on_truth_cells(hazard_pred, hazard_true)
            counts = reliability_counts(pred, hazard_true)
            hz = hazard_metrics(pred, hazard_true, counts)
            out.update({f"hazard_{k}": v for k, v in hz.items() if k != "slope_mae_deg"})
            out["_reliability"] = counts
            sigma = median_elevation_sigma(pred, hazard_true.hazard != -1)  # its resolving power here
            if np.isfinite(sigma):
                out["hazard_elevation_sigma_m"] = sigma
            if np.isfinite(hazard_true.slope_deg).any():
                out["slope_mae_deg"] = hz["slope_mae_deg"]
    return out


def frame_score(sequence: str, model: str, index: int, stamp_ns: int, latency_s: float, metrics: dict) -> FrameScore:
    """A FrameScore from :func:`score_frame`'s result (its reliability counts moved to their field)."""
    metrics = dict(metrics)
    return FrameScore(sequence, model, index, stamp_ns, latency_s, metrics, metrics.pop("_reliability", None))


# Range bins of the per-range breakdown (m): stereo precision falls as range squared, so a
# hazard size is detectable only up to some range; one mean over all ranges would hide it.
RANGE_BINS_M = (0.0, 30.0, 60.0, 100.0, 300.0, 1e3, 1e4, 1e5)


def range_bin(range_m: float) -> str | None:
    for lo, hi in zip(RANGE_BINS_M[:-1], RANGE_BINS_M[1:]):
        if lo <= range_m < hi:
            return f"{lo:g}-{hi:g} m"
    return None


def pooled_hazard_f1(scores: list[FrameScore]) -> tuple[float, float]:
    """Hazard F1, and its chance F1 (every cell a hazard), of the frames' cells taken as one
    set.  The mean of per-frame F1s gives a frame with one small rock at the limit (where one
    noisy cell flips its F1 between 0 and 1) the weight of a frame full of hazards, and drops
    frames without any; this does neither."""
    tp, fp, fn, cells = (sum(s.metrics.get(f"hazard_{k}", 0) for s in scores) for k in ("tp", "fp", "fn", "cells"))
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan")
    return f1, 2 * (tp + fn) / (tp + fn + cells) if cells else float("nan")


def pooled_reliability(scores: list[FrameScore]) -> np.ndarray | None:
    parts = [s.reliability for s in scores if s.reliability is not None]
    return np.sum(parts, axis=0) if parts else None


def pooled_safety(scores: list[FrameScore]) -> dict[str, float]:
    """Certified-safe and false-safe shares and the calibration error of the frames' sites taken
    as one set."""
    ok, bad, called, true = (
        sum(s.metrics.get(f"hazard_{k}", 0) for s in scores) for k in ("safe_ok", "safe_bad", "safe_called", "safe_true")
    )
    rel = pooled_reliability(scores)
    return {
        "hazard_certified_safe_pooled": ok / true if true else float("nan"),
        "hazard_false_safe_pooled": bad / called if called else float("nan"),
        "hazard_ece_pooled": expected_calibration_error(rel) if rel is not None else float("nan"),
    }


def summarize(scores: list[FrameScore], by: str = "sequence") -> dict[str, dict[str, float]]:
    """Mean of every metric (NaN-aware), per model and per (model, sequence), or with
    ``by='range'`` per (model, range bin of the frame's median range)."""
    groups: dict[str, list[FrameScore]] = {}
    for s in scores:
        if by == "range":
            b = range_bin(s.metrics.get("range_m", float("nan")))
            if b is not None:
                groups.setdefault(f"{s.model} | {b}", []).append(s)
            continue
        groups.setdefault(s.model, []).append(s)
        groups.setdefault(f"{s.model} | {s.sequence}", []).append(s)
    out = {}
    for name, items in groups.items():
        keys = sorted({k for s in items for k in s.metrics})
        row = {
            "frames": len(items),
            "latency_ms_p50": 1e3 * float(np.median([s.latency_s for s in items])),
            "latency_ms_p90": 1e3 * float(np.percentile([s.latency_s for s in items], 90)),
        }
        for k in keys:
            vals = np.array([s.metrics.get(k, np.nan) for s in items], dtype=np.float64)
            row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        if "hazard_tp" in keys:
            row["hazard_f1_pooled"], row["hazard_f1_chance_pooled"] = pooled_hazard_f1(items)
            row.update(pooled_safety(items))
        out[name] = row
    return out


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
    "hazard_landing_site_safe",
    "hazard_landing_site_hazard_distance_m",
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
    frames = [{**s.__dict__, "reliability": None if s.reliability is None else s.reliability.tolist()} for s in scores]
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
    """Reliability diagram of every model's hazard probability (frames pooled), with the ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    for model in sorted({s.model for s in scores}):
        rel = pooled_reliability([s for s in scores if s.model == model])
        if rel is None or rel[0].sum() == 0:
            continue
        used = rel[0] > 0
        ax[0].plot(
            rel[1][used] / rel[0][used],
            rel[2][used] / rel[0][used],
            "o-",
            label=f"{model} (ECE {expected_calibration_error(rel):.3f})",
        )
        centres = (np.arange(rel.shape[1]) + 0.5) / rel.shape[1]
        ax[1].bar(centres, rel[0] / rel[0].sum(), width=1 / rel.shape[1], alpha=0.4, label=model)
    ax[0].set_xlabel("predicted hazard probability")
    ax[0].set_ylabel("observed hazard frequency")
    ax[0].set_title("reliability of the hazard probability")
    ax[0].legend(fontsize=8)
    ax[1].set_xlabel("predicted hazard probability")
    ax[1].set_ylabel("share of sites")
    ax[1].set_yscale("log")
    ax[1].set_title("sites per probability bin")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def example_figure(
    path: Path,
    left: np.ndarray,
    depth_pred: np.ndarray,
    depth_true: np.ndarray | None,
    slope: np.ndarray | None,
    hazard_pred: HazardMap | None,
    hazard_true: HazardMap | None,
    points: np.ndarray,
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 4, figsize=(16, 7.5))
    ax = ax.ravel()
    ax[0].imshow(left, cmap="gray")
    ax[0].set_title("left image")
    # One colour scale for every model of a frame: the truth's depth range, and errors up to 2 %
    # of its median range.
    reference = depth_true if depth_true is not None else depth_pred
    finite = reference[np.isfinite(reference)]
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0, 1)
    im = ax[1].imshow(depth_pred, cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    ax[1].set_title("predicted depth (m)")
    if depth_true is not None:
        err = np.abs(depth_pred - depth_true)
        im = ax[2].imshow(err, cmap="inferno", vmin=0, vmax=0.02 * float(np.median(finite)) if finite.size else 1)
        fig.colorbar(im, ax=ax[2], fraction=0.046)
        ax[2].set_title("|depth error| (m), 0-2 % of range")
    if slope is not None:
        im = ax[3].imshow(slope, cmap="magma", vmin=0, vmax=30)
        fig.colorbar(im, ax=ax[3], fraction=0.046)
        ax[3].set_title("slope (deg)")
    from matplotlib.colors import ListedColormap

    from matplotlib.patches import Patch

    classes = ListedColormap(["0.8", "tab:green", "tab:red"])  # unknown grey, safe green, hazard red
    if hazard_pred is not None and hazard_pred.probability is not None:
        im = ax[4].imshow(hazard_pred.probability, cmap="RdYlGn_r", vmin=0, vmax=1, origin="lower", interpolation="nearest")
        fig.colorbar(im, ax=ax[4], fraction=0.046)
        ax[4].set_title("predicted P(hazard) per site")
    elif hazard_pred is not None:
        ax[4].imshow(hazard_pred.hazard.astype(float), cmap=classes, vmin=-1.5, vmax=1.5, origin="lower", interpolation="nearest")
        ax[4].set_title("predicted hazard")
    if hazard_true is not None:
        ax[5].imshow(hazard_true.hazard.astype(float), cmap=classes, vmin=-1.5, vmax=1.5, origin="lower", interpolation="nearest")
        ax[5].legend(
            handles=[
                Patch(color="tab:green", label="safe"),
                Patch(color="tab:red", label="hazard"),
                Patch(color="0.8", label="unknown"),
                Patch(color="c", label="landing site (pred.)"),
            ],
            fontsize=7,
            loc="upper right",
        )
        ax[5].set_title("hazard truth")
    for a in (ax[4], ax[5]):  # the proposed site on both: is it safe in the truth?
        if hazard_pred is not None and hazard_pred.landing_site is not None:
            a.plot(hazard_pred.landing_site.col, hazard_pred.landing_site.row, "c*", ms=12)
    if depth_true is not None:
        d = (depth_pred - depth_true)[np.isfinite(depth_pred) & np.isfinite(depth_true)]
        ax[6].hist(d, bins=60, color="tab:blue")
        ax[6].set_title("depth error histogram (m)")
    valid = np.isfinite(points).all(axis=-1)
    p = points[valid][:: max(1, valid.sum() // 20000)]
    if len(p):
        ax[7].scatter(p[:, 0], p[:, 2], c=-p[:, 1], s=0.3, cmap="terrain")
        ax[7].set_title("point cloud (x vs z, colour: height)")
        ax[7].set_aspect("equal", adjustable="datalim")
    for a in ax[:6]:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def error_by_range_figure(path: Path, scores: list[FrameScore]) -> Path:
    """Depth AbsRel and hazard F1 of every frame against its median range (a descent's altitude
    axis), one line per model, with the chance F1 dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    for model in sorted({s.model for s in scores}):
        items = sorted((s for s in scores if s.model == model), key=lambda s: s.metrics.get("range_m", np.nan))
        r = [s.metrics.get("range_m", np.nan) for s in items]
        ax[0].plot(r, [s.metrics.get("depth_abs_rel", np.nan) for s in items], "o-", ms=3, label=model)
        ax[1].plot(r, [s.metrics.get("hazard_f1", np.nan) for s in items], "o-", ms=3, label=model)
    chance = sorted(
        (s.metrics.get("range_m", np.nan), s.metrics["hazard_f1_chance"]) for s in scores if "hazard_f1_chance" in s.metrics
    )
    if chance:
        ax[1].plot(*zip(*chance), "k:", label="chance (everything a hazard)")
    ax[0].set_title("depth AbsRel by range")
    ax[0].set_ylabel("AbsRel")
    ax[1].set_title("hazard F1 by range")
    ax[1].set_ylabel("F1")
    for a in ax:
        a.set_xlabel("median range of the frame (m)")
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


__all__ = [
    "FrameScore",
    "depth_to_points",
    "error_by_range_figure",
    "example_figure",
    "frame_score",
    "hazard_map_from_grid",
    "hazard_on_truth_cells",
    "markdown_table",
    "reliability_figure",
    "score_frame",
    "summarize",
    "write_report",
]
