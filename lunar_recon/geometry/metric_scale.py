"""Metric scale and stereo fusion: how a scale-ambiguous network pointmap is made metric on a
calibrated rig and corrected toward a matcher's precise points near the ground.

The reference is a matcher's depth of the same pair: the student's own calibrated-stereo head
(``models.stereo_head``) on a rectified rig when it has one, else SGBM (coarse for the scale,
full resolution for the fusion), or triangulated sparse matches where dense matching finds
nothing.  Why each constant has its value: docs/design-notes.md ("Metric scale", "Stereo fusion").
"""

from __future__ import annotations

import numpy as np

from .camera import depth_to_points
from .stereo import SGBMParams, StereoCalibration, matched_depths, sgbm_depth

# 'stereo_local': Gaussian sigma of the scale field, a fraction of the image width.
SCALE_FIELD_SIGMA = 0.09
# Stereo fusion: the disparity (px of the left image) at which the points move halfway toward the
# matcher's (there the matcher's sigma_d / d is about the network's relative precision), and the
# Gaussian (px) the correction is smoothed over (the matcher's detail is what resolves rocks).
STEREO_FUSION_DISPARITY_PX = 14.0
STEREO_FUSION_SIGMA_PX = 1.0
# Below this say (1 / (1 + (d0 / d)^8)) nowhere in the frame, the fusion would change nothing
# and the full-resolution matching is skipped (at altitude).
STEREO_FUSION_MIN_SAY = 0.05


def stereo_reference_depth(
    image_left: np.ndarray, image_right: np.ndarray, calibration: StereoCalibration, max_side: int = 256
) -> np.ndarray:
    """Coarse SGBM depth of the calibrated pair, its long side downscaled to ``max_side`` (a
    few ms): the metric reference of the 'stereo' and 'stereo_local' scale modes."""
    import cv2

    h, w = np.asarray(image_left).shape[:2]
    sw, sh = coarse_size(h, w, max_side)

    def small(img):
        img = np.asarray(img)
        return img if (sw, sh) == (w, h) else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)

    cal = StereoCalibration(calibration.K_left.scaled(sw, sh), calibration.K_right.scaled(sw, sh), calibration.T_left_from_right)
    return sgbm_depth(small(image_left), small(image_right), cal, SGBMParams(num_disparities=64 if max(sw, sh) <= 320 else 128))


# An affine trend of the scale field needs this many matches per coefficient (three); fewer keep
# the median.
TREND_MIN_MATCHES_PER_COEFFICIENT = 4
TREND_IRLS_ITERATIONS = 10
HUBER_K = 1.345  # the Huber weight's knee, in robust sigmas (95 % efficiency on Gaussian residuals)
# Sparse matches as the metric reference: enough for the field's affine trend give a scale field
# (the trend carries the frame between matches); fewer, down to SPARSE_MIN_MATCHES, one scale.
SPARSE_FIELD_MIN_MATCHES = 3 * TREND_MIN_MATCHES_PER_COEFFICIENT
SPARSE_MIN_MATCHES = 8
# An unrectified rig's dense reference is trusted where it agrees with the triangulated sparse
# matches: median |log(dense / sparse)| within this, over at least REFERENCE_CHECK_MIN_PIXELS.
REFERENCE_AGREEMENT_LOG = 0.05
REFERENCE_CHECK_MIN_PIXELS = 5


def reference_agrees_with_matches(
    reference: np.ndarray,
    sparse: np.ndarray,
    tolerance: float = REFERENCE_AGREEMENT_LOG,
    min_pixels: int = REFERENCE_CHECK_MIN_PIXELS,
) -> bool:
    """Whether a dense matcher's depth agrees with triangulated sparse matches of the same
    grid (NaN between them).  Dense matching of a strongly rotated or wide-baseline pair in its
    rectified frame can fail wholesale (a search range the warped views exceed, few and wrong
    matches) while SIFT matches with the known poses stay metric; it is trusted when the median
    log ratio over their common pixels is within ``tolerance``.  With fewer than ``min_pixels``
    common pixels it is trusted only when the sparse matches are too few to check it."""
    both = np.isfinite(reference) & np.isfinite(sparse) & (reference > 0) & (sparse > 0)
    if both.sum() < min_pixels:
        return int(np.isfinite(sparse).sum()) < min_pixels
    return float(np.median(np.abs(np.log(reference[both] / sparse[both])))) <= tolerance


def sparse_reference_depth(
    image_left: np.ndarray, image_right: np.ndarray, calibration: StereoCalibration, shape: tuple[int, int]
) -> np.ndarray:
    """Triangulated SIFT matches of the calibrated pair (any relative rotation) as a depth image
    of ``shape`` (NaN between matches): the metric reference where dense matching finds
    nothing (rotated rigs that cannot be planar-rectified, oblique views)."""
    px, z = matched_depths(image_left, image_right, calibration.K_left, calibration.K_right, calibration.T_left_from_right)
    h, w = np.asarray(image_left).shape[:2]
    out = np.full(shape, np.nan, np.float32)
    u = np.clip((px[:, 0] + 0.5) * shape[1] / w - 0.5, 0, shape[1] - 1).round().astype(int)
    v = np.clip((px[:, 1] + 0.5) * shape[0] / h - 0.5, 0, shape[0] - 1).round().astype(int)
    out[v, u] = z
    return out


def _log_ratio_to_stereo(
    depth_pred: np.ndarray,
    image_left: np.ndarray,
    image_right: np.ndarray,
    calibration: StereoCalibration,
    max_side: int,
    min_matched_fraction: float,
    reference: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """log(SGBM / prediction) on the coarse SGBM grid, and where both are usable; None when
    too few pixels match.  ``reference``: that SGBM depth when already computed."""
    import cv2

    if reference is None:
        reference = stereo_reference_depth(image_left, image_right, calibration, max_side)
    pred = np.asarray(depth_pred, np.float32)
    if pred.shape != reference.shape:
        pred = cv2.resize(pred, reference.shape[::-1], interpolation=cv2.INTER_NEAREST)  # nearest: NaN-safe
    ok = np.isfinite(reference) & np.isfinite(pred) & (reference > 0) & (pred > 0)
    log_ratio = np.zeros(reference.shape, np.float32)
    log_ratio[ok] = np.log(reference[ok] / pred[ok])
    return (log_ratio, ok) if ok.mean() >= min_matched_fraction else None


def metric_scale_from_stereo(
    depth_pred: np.ndarray,
    image_left: np.ndarray,
    image_right: np.ndarray,
    calibration: StereoCalibration,
    max_side: int = 256,
    min_matched_fraction: float = 0.02,
    reference: np.ndarray | None = None,
) -> float | None:
    """Scale that makes a scale-ambiguous depth agree, in the median, with a coarse SGBM depth
    from the calibrated pair.  A small network gets shape right long before it resolves the
    sub-pixel disparities that fix metric scale; one robust number from classical matching
    on a downscaled pair (a few ms) anchors it.  None when too few pixels match."""
    matched = _log_ratio_to_stereo(depth_pred, image_left, image_right, calibration, max_side, min_matched_fraction, reference)
    if matched is None:
        return None
    log_ratio, ok = matched
    return float(np.exp(np.median(log_ratio[ok])))


def metric_scale_field_from_stereo(
    depth_pred: np.ndarray,
    image_left: np.ndarray,
    image_right: np.ndarray,
    calibration: StereoCalibration,
    sigma: float = SCALE_FIELD_SIGMA,
    max_side: int = 256,
    min_matched_fraction: float = 0.02,
    prior_weight: float = 5e-4,
    reference: np.ndarray | None = None,
    trend: str = "median",
) -> np.ndarray | None:
    """Per-pixel scale field (shape of ``depth_pred``) that brings a depth onto a coarse SGBM
    depth of the calibrated pair, smoothly.  A small network's depth errors are mostly
    low-frequency (a tilted or bent surface) while its detail is right and it is dense;
    matching is noisy per pixel and has holes, but is unbiased.  So: log(SGBM / network) on
    the matched pixels, averaged under a Gaussian of ``sigma`` (fraction of the image width)
    over matched pixels only (normalised convolution) -- a region the matcher misses (the left
    border, shadows) takes the ratio of its matched neighbours; ``prior_weight`` (in units of
    matched fraction) pulls only regions with no match for several sigma to the frame's
    ``trend``: its median, or (``"affine"``, for sparse matches, which leave most of the frame
    several sigma from any match) a robust plane of log(reference / network) over the image, so
    that a tilted or bent network surface is corrected between the matches too.  None when too
    few pixels match.  ``reference``: the coarse SGBM depth when already computed."""
    import cv2

    matched = _log_ratio_to_stereo(depth_pred, image_left, image_right, calibration, max_side, min_matched_fraction, reference)
    if matched is None:
        return None
    log_ratio, ok = matched
    sh, sw = ok.shape
    if trend == "affine":
        coefficients = robust_log_ratio_plane(log_ratio, ok)
    elif trend == "median":
        coefficients = None
    else:
        raise ValueError(f"trend must be 'median' or 'affine', got {trend!r}")
    if coefficients is None:
        coefficients = np.array([np.median(log_ratio[ok]), 0.0, 0.0])
    # The field is the trend plus a normalised convolution of the matches' residuals from it.
    log_ratio = log_ratio - _plane(coefficients, sh, sw)
    weight = ok.astype(np.float32)
    sigma_px = sigma * sw
    # The field is smooth: filter on a grid pooled to ~4 px per sigma (cheap for any sigma).
    pool = max(1, int(sigma_px / 4))
    if pool > 1:
        size = (max(1, sw // pool), max(1, sh // pool))
        num = cv2.resize(weight * log_ratio, size, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        sigma_px /= pool
    else:
        num = weight * log_ratio
    num = cv2.GaussianBlur(num, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(weight, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    residual = num / (den + prior_weight)
    h, w = np.asarray(depth_pred).shape[:2]
    field = cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR) + _plane(coefficients, h, w)
    return np.exp(field).astype(np.float32)


def _plane(coefficients: np.ndarray, h: int, w: int) -> np.ndarray:
    """c0 + c1 x + c2 y over an (h, w) grid, x and y the pixel centres in image widths and
    heights from the centre (the same plane on any grid of the image)."""
    x = ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5)[None, :]
    y = ((np.arange(h, dtype=np.float32) + 0.5) / h - 0.5)[:, None]
    return (np.float32(coefficients[0]) + np.float32(coefficients[1]) * x + np.float32(coefficients[2]) * y).astype(np.float32)


def robust_log_ratio_plane(log_ratio: np.ndarray, ok: np.ndarray) -> np.ndarray | None:
    """(c0, c1, c2) of the plane c0 + c1 x + c2 y through ``log_ratio`` at the ``ok`` pixels
    (x, y as in ``_plane``), by iteratively reweighted least squares with Huber weights (a
    wrong match moves it little); None when there are too few matches for three coefficients."""
    v, u = np.nonzero(ok)
    if u.size < 3 * TREND_MIN_MATCHES_PER_COEFFICIENT:
        return None
    sh, sw = ok.shape
    design = np.stack([np.ones(u.size), (u + 0.5) / sw - 0.5, (v + 0.5) / sh - 0.5], axis=1)
    r = log_ratio[ok].astype(np.float64)
    weight = np.ones_like(r)
    coefficients = np.zeros(3)
    for _ in range(TREND_IRLS_ITERATIONS):
        root = np.sqrt(weight)
        coefficients = np.linalg.lstsq(design * root[:, None], r * root, rcond=None)[0]
        residual = np.abs(r - design @ coefficients)
        sigma = 1.4826 * float(np.median(residual))
        if sigma <= 0:
            break
        weight = np.minimum(1.0, HUBER_K * sigma / np.maximum(residual, 1e-12))
    return coefficients


def fusion_reference_depth(
    image_left: np.ndarray,
    image_right: np.ndarray,
    calibration: StereoCalibration,
    coarse: np.ndarray,
    equal_weight_disparity_px: float = STEREO_FUSION_DISPARITY_PX,
) -> np.ndarray | None:
    """Full-resolution SGBM depth for the stereo fusion, coarse to fine: on a rectified rig the
    search covers only the disparities the ``coarse`` reference saw (with margins), ~30 instead
    of 128 -- a few times faster, and fewer false matches and a narrower unmatched left border
    than a full search.  None when no coarse disparity reaches where the matcher would have a
    say (``STEREO_FUSION_MIN_SAY``): at altitude the fusion changes nothing, so it costs nothing."""
    ok = np.isfinite(coarse) & (coarse > 0)
    if ok.sum() < 16:
        return None
    fb = calibration.K_left.fx * calibration.baseline_m
    disparity = fb / coarse[ok]  # in the left image's pixels
    lo, hi = np.percentile(disparity, [1.0, 99.5])
    if hi < equal_weight_disparity_px * (1 / STEREO_FUSION_MIN_SAY - 1) ** -0.125:
        return None
    # Margins for what the coarse grid blurred or missed (shadows, rims); an unrectified rig is
    # matched in its rectified frame, where the disparities differ: search from 0 there.
    low = max(0, int(0.8 * lo) - 4) if calibration.is_rectified else 0
    count = max(16, int(np.ceil((1.2 * hi + 4 - low) / 16)) * 16)
    return sgbm_depth(image_left, image_right, calibration, SGBMParams(num_disparities=count, min_disparity=low))


def fuse_with_matcher(
    points: np.ndarray,
    reference: np.ndarray,
    calibration: StereoCalibration,
    equal_weight_disparity_px: float = STEREO_FUSION_DISPARITY_PX,
    sigma_px: float = STEREO_FUSION_SIGMA_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """Metric pointmap (H, W, 3): a network's metric ``points`` corrected toward a matcher's
    ``reference`` depth's own points (on the calibrated rays) where matching is precise; and,
    per pixel, how much of each point is the matcher's rather than the network's (0-1: its say,
    smoothed like the correction).

    Matching's relative depth precision sigma_d / d improves with disparity d (near ground),
    the network's does not; near the ground the matcher resolves the rocks, crater walls and
    borders the network smooths or bends.  Per reference pixel the matcher's say is
    a = 1 / (1 + (d0 / d)^8) (0 where it did not match); the correction is the Gaussian
    (``sigma_px``) of a x (matcher's point - network's point), added to the network's points.
    So where the matcher is trusted the map takes its shape below sigma and the network's
    detail above it, and the correction fades out over ~sigma into the matcher's holes (no
    seam; the map stays as dense as the network's).  The matcher's points are taken whole
    (depth and ray): its depth on the network's rays did not help.  ``d0`` and ``sigma_px``
    are in the left image's pixels, whatever the reference's resolution."""
    import cv2

    if equal_weight_disparity_px <= 0 or sigma_px <= 0:
        raise ValueError("equal_weight_disparity_px and sigma_px must be positive")
    h, w = points.shape[:2]
    sh, sw = reference.shape
    K_ref = calibration.K_left.scaled(sw, sh)
    ref_per_image_px = sw / w
    small = (
        points
        if (sh, sw) == (h, w)
        else cv2.resize(np.ascontiguousarray(points, dtype=np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    )
    matched = np.isfinite(reference) & (reference > 0) & np.isfinite(small[..., 2])
    depth = np.where(matched, reference, np.float32(0)).astype(np.float32, copy=False)
    say = _say(depth, matched, K_ref.fx * calibration.baseline_m, equal_weight_disparity_px * ref_per_image_px)
    pull = depth_to_points(depth, K_ref)  # the matcher's points (0 where it did not match) ...
    pull -= np.nan_to_num(small)  # ... minus the network's, weighted by the matcher's say
    pull *= say[..., None]
    blur = sigma_px * ref_per_image_px
    correction = cv2.GaussianBlur(pull, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
    say = cv2.GaussianBlur(say, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
    if (sh, sw) != (h, w):
        correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
        say = cv2.resize(say, (w, h), interpolation=cv2.INTER_LINEAR)
    correction += points  # NaN where the network has no point
    return correction, say


def _say(depth: np.ndarray, matched: np.ndarray, focal_baseline: float, d0: float) -> np.ndarray:
    """The matcher's say 1 / (1 + (d0 / d)^8) per pixel of its ``depth`` (0 where not ``matched``)."""
    q = depth * np.float32(d0 / focal_baseline)  # d0 / d
    for _ in range(3):
        q *= q  # (d0 / d)^8
    return np.where(matched, 1.0 / (1.0 + q), 0.0).astype(np.float32)


def coarse_size(h: int, w: int, max_side: int = 256) -> tuple[int, int]:
    """(width, height) of the coarse reference grid of an h x w image: long side ``max_side``."""
    f = min(1.0, max_side / max(h, w))
    return max(16, round(w * f)), max(16, round(h * f))


def coarse_copy(depth: np.ndarray, max_side: int = 256) -> np.ndarray:
    """``depth`` on the coarse reference grid of the scale field (long side ``max_side``), nearest
    neighbour (NaN stays NaN)."""
    import cv2

    h, w = depth.shape
    size = coarse_size(h, w, max_side)
    return depth if size == (w, h) else cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
