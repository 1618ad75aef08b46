"""Scoring reconstructions against ground truth (ROS-free): depth, disparity, the hazard map on
the truth's sites, pooled and by range.  One scoring path for the offline and live evaluations
and for training validation."""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field

import numpy as np

from ..geometry.hazard import (
    HazardGridError,
    HazardMap,
    HazardParams,
    hazard_map,
    median_elevation_sigma,
    resample_hazard_map,
)
from ..geometry.metrics import depth_metrics, expected_calibration_error, hazard_metrics, reliability_counts


@dataclass
class FrameScore:
    sequence: str
    model: str
    index: int
    stamp_ns: int
    latency_s: float
    metrics: dict = field(default_factory=dict)
    reliability: np.ndarray | None = None  # geometry.metrics.reliability_counts of the frame's hazard map
    call_reliability: np.ndarray | None = None  # the same of its call probabilities, where it has them


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
    from ..geometry.stereo import matching_crlb

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
    make_hazard: bool = True,
) -> dict:
    """Depth metrics (no alignment), the frame's range, for a rectified rig (``focal_baseline``
    = f B in px m) the disparity error in pixels (the precision figure of stereo, comparable
    across ranges), and hazard metrics of ``hazard_pred`` (the pipeline's own map; made here
    from ``points_pred`` with ``elevation_sigma`` when not given and ``make_hazard``: False
    where the pipeline already said why it has none) resampled onto the truth's cells; a frame
    whose points make no map (a grid too large for ``params.max_cells``) has no hazard
    metrics, as a frame without points.  The frame's reliability counts are under the key ``"_reliability"`` (those of its
    call probabilities, where the map has them, under ``"_call_reliability"``)."""
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
        if hazard_pred is None and make_hazard:
            usable = np.isfinite(points_pred[..., 0] + points_pred[..., 1] + points_pred[..., 2])
            if elevation_sigma is not None:
                usable &= np.isfinite(elevation_sigma)
            if usable.sum() >= 3:
                try:
                    hazard_pred = hazard_map(points_pred, up, params, elevation_sigma=elevation_sigma)
                except HazardGridError:
                    hazard_pred = None
        if hazard_pred is not None:
            pred = hazard_on_truth_cells(hazard_pred, hazard_true)
            counts = reliability_counts(pred, hazard_true)
            hz = hazard_metrics(pred, hazard_true, counts)
            out.update({f"hazard_{k}": v for k, v in hz.items() if k != "slope_mae_deg"})
            out["_reliability"] = counts
            if pred.call_probability is not None:
                out["_call_reliability"] = reliability_counts(
                    dataclasses.replace(pred, probability=pred.call_probability), hazard_true
                )
            sigma = median_elevation_sigma(pred, hazard_true.hazard != -1)  # its resolving power here
            if np.isfinite(sigma):
                out["hazard_elevation_sigma_m"] = sigma
            if np.isfinite(hazard_true.slope_deg).any():
                out["slope_mae_deg"] = hz["slope_mae_deg"]
    return out


def frame_score(sequence: str, model: str, index: int, stamp_ns: int, latency_s: float, metrics: dict) -> FrameScore:
    """A FrameScore from :func:`score_frame`'s result (its reliability counts moved to their fields)."""
    metrics = dict(metrics)
    reliability, call_reliability = metrics.pop("_reliability", None), metrics.pop("_call_reliability", None)
    return FrameScore(sequence, model, index, stamp_ns, latency_s, metrics, reliability, call_reliability)


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
