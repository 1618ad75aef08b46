"""Pictures of results (ROS-free): hazard overlays on the camera image, colour maps, and the
evaluation's figures (matplotlib, imported when drawing): reliability diagram, example frames,
errors by range."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numba
import numpy as np

from .geometry.hazard import HAZARD, SAFE, HazardMap
from .geometry.metrics import expected_calibration_error, merged_bins

SAFE_BGR = np.array([60, 200, 60], np.float32)
HAZARD_BGR = np.array([40, 40, 230], np.float32)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any mono/RGB image (uint8/uint16/float) -> bgr8 for display."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a) * 255, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2BGR)


@numba.njit(cache=True, nogil=True)
def _tint_kernel(points, R, ox, oy, res, cell_tint, palette, alpha, site_row, site_col, out):  # pragma: no cover - compiled
    # per pixel: its point into the grid frame, the cell it falls in (GridSpec.cells_of's
    # convention), that cell's tint blended in; and the mean pixel of the landing site's cell
    # (one pass, no whole-image temporaries)
    h, w = out.shape[:2]
    rows, cols = cell_tint.shape
    keep = np.float32(1.0) - alpha
    su = sv = 0.0
    hits = 0
    for v in range(h):
        for u in range(w):
            px, py, pz = points[v, u, 0], points[v, u, 1], points[v, u, 2]
            qx = R[0, 0] * px + R[0, 1] * py + R[0, 2] * pz
            qy = R[1, 0] * px + R[1, 1] * py + R[1, 2] * pz
            qz = R[2, 0] * px + R[2, 1] * py + R[2, 2] * pz
            if not (np.isfinite(qx) and np.isfinite(qy) and np.isfinite(qz)):
                continue
            col = math.floor((qx - ox) / res)
            row = math.floor((qy - oy) / res)
            if row < 0 or row >= rows or col < 0 or col >= cols:
                continue
            if row == site_row and col == site_col:
                su += u
                sv += v
                hits += 1
            t = cell_tint[int(row), int(col)]
            if t:
                for k in range(3):
                    out[v, u, k] = np.uint8(min(255.0, round(out[v, u, k] * keep + palette[t, k] * alpha)))
    return su, sv, hits


def hazard_overlay(
    image: np.ndarray, points: np.ndarray, hmap: HazardMap | None, alpha: float = 0.45, image_is_rgb: bool = True
) -> np.ndarray:
    """bgr8 image with every pixel tinted by the hazard class of the grid cell its 3-D point
    falls in (red hazard, green safe, untouched unknown) and the landing site marked."""
    bgr = to_bgr8(image) if image_is_rgb or np.asarray(image).ndim == 2 else np.asarray(image, np.uint8).copy()
    if hmap is None:
        return bgr
    p = np.asarray(points, dtype=np.float32)
    if p.shape[:2] != bgr.shape[:2] or p.ndim != 3 or p.shape[2] != 3:
        raise ValueError(f"an overlay needs one 3-D point per pixel: points {p.shape}, image {bgr.shape[:2]}")
    cell_tint = np.zeros(hmap.shape, np.uint8)  # 0 untouched, 1 safe, 2 hazard
    cell_tint[hmap.hazard == SAFE] = 1
    cell_tint[hmap.hazard == HAZARD] = 2
    palette = np.stack([np.zeros(3, np.float32), SAFE_BGR, HAZARD_BGR]).astype(np.float32)
    site = hmap.landing_site
    out = np.ascontiguousarray(bgr)
    su, sv, hits = _tint_kernel(
        np.ascontiguousarray(p),
        hmap.R_grid_from_input.astype(np.float32),
        np.float32(hmap.origin[0]),
        np.float32(hmap.origin[1]),
        np.float32(hmap.resolution),
        cell_tint,
        palette,
        np.float32(alpha),
        -1 if site is None else site.row,
        -1 if site is None else site.col,
        out,
    )
    if hits:
        cv2.drawMarker(out, (int(su / hits), int(sv / hits)), (255, 255, 0), cv2.MARKER_STAR, 18, 2)
    return out


def compile_kernels() -> float:
    """Compile (or load from numba's cache) the overlay's kernel on a tiny map, so the first
    frame does not pay for it.  Returns the seconds it took."""
    import time

    from .geometry.hazard import hazard_map

    t0 = time.perf_counter()
    xy = np.stack(np.meshgrid(np.linspace(-3, 3, 40), np.linspace(-3, 3, 40)), axis=-1).astype(np.float32)
    points = np.concatenate([xy, np.zeros((40, 40, 1), np.float32)], axis=-1)
    hazard_overlay(np.zeros((40, 40), np.uint8), points, hazard_map(points, np.array([0.0, 0.0, 1.0])))
    return time.perf_counter() - t0


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """Float map -> bgr8 with NaN black."""
    v = np.asarray(values, np.float32)
    norm = np.clip((np.nan_to_num(v, nan=vmin) - vmin) / max(vmax - vmin, 1e-9), 0, 1)
    out = cv2.applyColorMap((norm * 255).astype(np.uint8), cmap)
    out[~np.isfinite(v)] = 0
    return out


def reliability_figure(path: Path, counts_by_model: dict[str, np.ndarray]) -> Path:
    """Reliability diagram of every model's hazard probability (``geometry.metrics.reliability_counts``
    of its frames, pooled), with the ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    for model in sorted(counts_by_model):
        rel = counts_by_model[model]
        if rel is None or rel[0].sum() == 0:
            continue
        rel = merged_bins(rel)
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


def error_by_range_figure(path: Path, frames: list[tuple[str, dict]]) -> Path:
    """Depth AbsRel and hazard F1 of every frame (``(model, metrics)``) against its median range
    (a descent's altitude axis), one line per model, with the chance F1 dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    for model in sorted({m for m, _ in frames}):
        items = sorted((s for m, s in frames if m == model), key=lambda s: s.get("range_m", np.nan))
        r = [s.get("range_m", np.nan) for s in items]
        ax[0].plot(r, [s.get("depth_abs_rel", np.nan) for s in items], "o-", ms=3, label=model)
        ax[1].plot(r, [s.get("hazard_f1", np.nan) for s in items], "o-", ms=3, label=model)
    chance = sorted((s.get("range_m", np.nan), s["hazard_f1_chance"]) for _, s in frames if "hazard_f1_chance" in s)
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
