"""Metrics used everywhere (training validation, evaluation tools, tests).

No alignment by default: scale is part of what is judged.  A similarity alignment is
available as an option and is always reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from .hazard import HAZARD, SAFE, HazardMap
from .pose import umeyama


def _valid_pair(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None):
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    gt_ok = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        gt_ok &= np.asarray(mask, bool)
    both = gt_ok & np.isfinite(pred) & (pred > 0)
    return pred, gt, gt_ok, both


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """AbsRel, RMSE, MAE (m), delta < 1.25^k, completeness (fraction of valid ground truth
    with a prediction), and the relief-normalised MAE (MAE / (p95 - p5) of the true depth),
    which stays informative at orbital range where AbsRel saturates near zero."""
    pred, gt, gt_ok, both = _valid_pair(pred, gt, mask)
    n_gt = int(gt_ok.sum())
    out = {"completeness": float(both.sum() / n_gt) if n_gt else float("nan"), "n": int(both.sum())}
    if not both.any():
        out.update({k: float("nan") for k in ("abs_rel", "rmse", "mae", "delta1", "delta2", "delta3", "relief_norm_mae")})
        return out
    p, g = pred[both], gt[both]
    err = p - g
    ratio = np.maximum(p / g, g / p)
    relief = float(np.percentile(g, 95) - np.percentile(g, 5))
    out.update(
        abs_rel=float(np.mean(np.abs(err) / g)),
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(np.abs(err))),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25**2)),
        delta3=float(np.mean(ratio < 1.25**3)),
        relief_norm_mae=float(np.mean(np.abs(err)) / relief) if relief > 0 else float("nan"),
    )
    return out


@dataclass
class Alignment:
    scale: float
    R: np.ndarray
    t: np.ndarray


def point_metrics(
    pred: np.ndarray, gt: np.ndarray, align: bool = False, max_points: int = 50_000, seed: int = 0
) -> dict[str, float]:
    """Accuracy (mean distance prediction -> nearest true point), completeness (true ->
    nearest predicted) and Chamfer (their mean), in metres.  With ``align=True`` the
    prediction is first Sim(3)-aligned to the truth on corresponding pixels (organised
    inputs of the same shape) and ``aligned_scale`` is reported."""
    rng = np.random.default_rng(seed)
    P = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    G = np.asarray(gt, dtype=np.float64).reshape(-1, 3)
    out: dict[str, float] = {"aligned": float(align)}
    if align:
        if P.shape != G.shape:
            raise ValueError("alignment needs organised prediction and truth of the same shape")
        s, R, t = umeyama(P, G)
        P = s * P @ R.T + t
        out["aligned_scale"] = s
    P = P[np.isfinite(P).all(axis=1)]
    G = G[np.isfinite(G).all(axis=1)]
    if len(P) == 0 or len(G) == 0:
        return {**out, "accuracy": float("nan"), "completeness": float("nan"), "chamfer": float("nan")}
    if len(P) > max_points:
        P = P[rng.choice(len(P), max_points, replace=False)]
    if len(G) > max_points:
        G = G[rng.choice(len(G), max_points, replace=False)]
    acc = cKDTree(G).query(P)[0].mean()
    comp = cKDTree(P).query(G)[0].mean()
    return {**out, "accuracy": float(acc), "completeness": float(comp), "chamfer": float((acc + comp) / 2)}


def slope_mae(pred: HazardMap, gt: HazardMap) -> float:
    """Mean |slope error| (deg) over cells known in both maps; slopes are footprint-plane
    slopes, i.e. measured over the footprint's physical baseline in the gravity frame."""
    if pred.shape != gt.shape:
        raise ValueError("slope_mae: maps must share one grid (pass grid=gt.grid to hazard_map)")
    both = np.isfinite(pred.slope_deg) & np.isfinite(gt.slope_deg)
    return float(np.mean(np.abs(pred.slope_deg[both] - gt.slope_deg[both]))) if both.any() else float("nan")


# Equal-width bins of the hazard probability in which frames' sites are counted: fine enough to
# fit a source's thresholds on (geometry.hazard.fit_hazard_threshold / fit_safe_threshold); the
# reliability diagram and the ECE read them merged into DIAGRAM_BINS, the usual ten.
RELIABILITY_BINS = 100
DIAGRAM_BINS = 10


def reliability_counts(pred: HazardMap, gt: HazardMap) -> np.ndarray:
    """(3, RELIABILITY_BINS): per probability bin the number of sites judged in both maps, the
    sum of their predicted hazard probabilities and the number that are hazards in the truth --
    counts, so frames can be pooled into one reliability diagram."""
    out = np.zeros((3, RELIABILITY_BINS))
    if pred.probability is None:
        return out
    use = (gt.hazard != -1) & np.isfinite(pred.probability)
    prob = pred.probability[use].astype(np.float64)
    truth = (gt.hazard[use] == HAZARD).astype(np.float64)
    bins = np.clip((prob * RELIABILITY_BINS).astype(np.int64), 0, RELIABILITY_BINS - 1)
    out[0] = np.bincount(bins, minlength=RELIABILITY_BINS)
    out[1] = np.bincount(bins, weights=prob, minlength=RELIABILITY_BINS)
    out[2] = np.bincount(bins, weights=truth, minlength=RELIABILITY_BINS)
    return out


def merged_bins(counts: np.ndarray, bins: int = DIAGRAM_BINS) -> np.ndarray:
    """Reliability ``counts`` with their bins merged into ``bins`` equal-width ones (counts of
    fewer bins, or of a number ``bins`` does not divide, are returned as they are)."""
    counts = np.asarray(counts, dtype=np.float64)
    have = counts.shape[-1]
    if have <= bins or have % bins:
        return counts
    return counts.reshape(*counts.shape[:-1], bins, have // bins).sum(axis=-1)


def expected_calibration_error(counts: np.ndarray) -> float:
    """ECE of :func:`reliability_counts` (summed over frames) in the diagram's ``DIAGRAM_BINS``:
    the count-weighted mean gap between the mean predicted probability and the observed hazard
    frequency per bin."""
    counts = merged_bins(counts)
    n = counts[0]
    if n.sum() == 0:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(counts[1] - counts[2]) / n
    return float(np.nansum(gap * n) / n.sum())


def hazard_metrics(pred: HazardMap, gt: HazardMap, counts: np.ndarray | None = None) -> dict[str, float]:
    """How an HDA engineer reads a hazard map, over the sites known in the ground truth:

    * ``certified_safe``: share of the truly safe sites the map calls SAFE;
    * ``false_safe``: share of the sites called SAFE that are hazards (the error that breaks a lander);
    * precision / recall / F1 / IoU of the HAZARD class (UNKNOWN counts as not a hazard call),
      with ``f1_chance``, the F1 of calling every site a hazard, which needs no data at all;
    * ``ece``: expected calibration error of the hazard probability;
    * the landing site: whether one was proposed, whether the truth knows its cell (a fused
      map's site can lie beyond the frame's true DEM) and then whether it is safe there, its
      distance to the nearest true hazard (m) and its clearance in the map itself (m to the
      nearest cell the map does not call safe).

    ``counts``: the pair's :func:`reliability_counts` when already made."""
    if pred.shape != gt.shape:
        raise ValueError("hazard_metrics: maps must share one grid (resample the prediction onto the truth's)")
    known = gt.hazard != -1
    t = (gt.hazard == HAZARD) & known
    p = (pred.hazard == HAZARD) & known
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    truly_safe = (gt.hazard == SAFE) & known
    called_safe = (pred.hazard == SAFE) & known
    safe_ok, safe_bad = int((called_safe & truly_safe).sum()), int((called_safe & t).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    iou = tp / (tp + fp + fn) if (tp + fp + fn) else float("nan")
    n_true, n_known = int(t.sum()), int(known.sum())
    f1_chance = 2 * n_true / (n_true + n_known) if n_known else float("nan")
    counts = reliability_counts(pred, gt) if counts is None else counts
    site = pred.landing_site
    site_safe = site_distance = float("nan")
    # a site off the truth's grid, or on a cell where the truth has no data, is not judged
    judged = site is not None and 0 <= site.row < gt.shape[0] and 0 <= site.col < gt.shape[1] and bool(known[site.row, site.col])
    if site is not None and judged:
        site_safe = float(gt.hazard[site.row, site.col] == SAFE)
        if t.any():
            clear = np.pad((~t).astype(np.uint8), 1, constant_values=1)
            dist = cv2.distanceTransform(clear, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
            site_distance = float(dist[site.row, site.col] * gt.resolution)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "f1_chance": f1_chance,
        "iou": iou,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "cells": n_known,  # counts: frames can be scored as one set (pooled)
        "safe_called": int(called_safe.sum()),
        "safe_true": int(truly_safe.sum()),
        "safe_ok": safe_ok,
        "safe_bad": safe_bad,
        "certified_safe": safe_ok / truly_safe.sum() if truly_safe.any() else float("nan"),
        "false_safe": safe_bad / called_safe.sum() if called_safe.any() else float("nan"),
        "ece": expected_calibration_error(counts),
        "known_fraction": float(((pred.hazard != -1) & known).sum() / max(known.sum(), 1)),
        "landing_site_proposed": float(site is not None),
        "landing_site_judged": float(judged),  # proposed on a cell the truth knows
        "landing_site_safe": site_safe,
        "landing_site_hazard_distance_m": site_distance,
        "landing_site_clearance_m": float("nan") if site is None else site.clearance_m,
        "slope_mae_deg": slope_mae(pred, gt),
    }
