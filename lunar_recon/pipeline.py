"""StereoReconstructor: images + calibration -> Reconstruction (depth, points, slope, hazard).

The one code path the ROS node, the offline tools and the tests all run, so an offline
evaluation measures exactly what runs on the lander.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .geometry.camera import Intrinsics, confidence_mask, depth_to_points
from .geometry.frames import normalize
from .geometry.hazard import HazardGridError, HazardMap, HazardParams, hazard_map, params_for_range
from .geometry.descent_map import DescentMap, DescentMapParams, DescentUpdate
from .geometry.hazard_memory import HazardMemory
from .geometry.pose import metric_scale_from_rig
from .geometry.shadows import SHADOW_INTENSITY_FRACTION, shadow_mask
from .geometry.slope import slope_image
from .geometry.stereo import (SGBMParams, disparity_to_depth, matched_depths, sgbm_depth_unrectified,
                               sgbm_disparity, stereo_elevation_sigma)
from .models.predict import PairPrediction

# predicted: as the network says; baseline: the right view's pointmap put on the calibrated rig's rays
# (any relative rotation); stereo: median ratio to a coarse SGBM depth (the calibrated rig's metric anchor);
# stereo_local: a smooth per-pixel scale field from the same SGBM depth (the network keeps the
# fine shape, the matcher fixes the low-frequency metric structure); auto: the model card's choice.
SCALE_MODES = ("predicted", "baseline", "stereo", "stereo_local", "auto")
# 'stereo_local' field sigma (fraction of the image width), chosen on the default student's
# calibration pairs (never its test pairs); 0.03-0.125 all helped there.
SCALE_FIELD_SIGMA = 0.09
# Stereo fusion: the disparity (px of the left image) at which the points move halfway toward
# the full-resolution matcher's.  There the matcher's relative depth precision, sigma_d / d with
# sigma_d ~ 0.1 px, is under 1%, about the network's; the correction is smoothed over 1 px (the
# matcher's detail is what resolves rocks and crater rims).  Chosen on the default student's
# calibration pairs (never its test pairs): with the 256-px reference (d0 20, sigma 8 image px)
# footprint slope 2.19 deg and hazard F1 0.19; full resolution, d0 14 / sigma 1: 1.95 deg and
# 0.32 (d0 10: 2.36 deg, 0.34; d0 7: 2.96 deg, 0.35; sigma 2: 1.95 deg, 0.31).
STEREO_FUSION_DISPARITY_PX = 14.0
STEREO_FUSION_SIGMA_PX = 1.0
# Below this say (1 / (1 + (d0 / d)^8)) nowhere in the frame, the fusion would change nothing
# and the full-resolution matching is skipped (at altitude).
STEREO_FUSION_MIN_SAY = 0.05


@dataclass
class StereoCalibration:
    """Two pinhole cameras and the pose of the right one in the left camera frame."""

    K_left: Intrinsics
    K_right: Intrinsics
    T_left_from_right: np.ndarray  # 4x4; a rectified rig is a pure translation (+B, 0, 0)

    @classmethod
    def rectified(cls, K: Intrinsics, baseline_m: float) -> "StereoCalibration":
        if not (np.isfinite(baseline_m) and baseline_m > 0):
            raise ValueError(f"baseline must be positive, got {baseline_m}")
        T = np.eye(4)
        T[0, 3] = baseline_m
        return cls(K, K, T)

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.T_left_from_right[:3, 3]))

    @property
    def is_rectified(self) -> bool:
        T = self.T_left_from_right
        return bool(np.allclose(T[:3, :3], np.eye(3), atol=1e-9) and abs(T[1, 3]) < 1e-9 and abs(T[2, 3]) < 1e-9
                    and self.K_left == self.K_right)


class StereoModel(Protocol):
    """Anything that turns a pair into a :class:`PairPrediction` (networks and SGBM).
    ``right_view=False``: the right view's pointmap may be left out (None)."""

    def predict(self, image_left: np.ndarray, image_right: np.ndarray, size: int = 512,
                right_view: bool = True) -> PairPrediction: ...


class SGBMModel:
    """OpenCV semi-global matching behind the same output contract as the networks.  It
    needs the calibration (set :attr:`calibration` or pass it to the reconstructor)."""

    name = "sgbm"
    disparity_sigma_px = 0.11  # robust sigma on the simulated descent calibration pairs (2 sub-pixel passes; 1: 0.21)
    # fitted on the lander calibration split (evaluate-bag --fit-hazard-calibration; docs/results.md)
    hazard_calibration = (0.0177, 0.0653, 0.0893, 0.0903, 0.0903, 0.0903, 0.0971, 0.1281, 0.2146, 0.4561, 0.7696)

    def __init__(self, params: SGBMParams | None = None, calibration: StereoCalibration | None = None):
        self.params = params or SGBMParams()
        self.calibration = calibration

    def predict(self, image_left: np.ndarray, image_right: np.ndarray, size: int = 512,
                right_view: bool = True) -> PairPrediction:
        cal = self.calibration
        if cal is None:
            raise ValueError("SGBM needs a stereo calibration")
        depth = sgbm_depth(image_left, image_right, cal, self.params)
        pts = depth_to_points(depth, cal.K_left)
        valid = np.isfinite(depth)
        conf = np.where(valid, 2.0, 0.0).astype(np.float32)  # SGBM has no confidence: matched = 2 (> 1)
        if not right_view:
            return PairPrediction(pts, None, conf, None, network_hw=depth.shape)
        h2, w2 = np.asarray(image_right).shape[:2]
        return PairPrediction(pts, np.full((h2, w2, 3), np.nan, np.float32), conf,
                              np.zeros((h2, w2), np.float32), network_hw=depth.shape)


def sgbm_depth(image_left: np.ndarray, image_right: np.ndarray, calibration: "StereoCalibration",
               params: SGBMParams) -> np.ndarray:
    """Metric SGBM depth in the left camera's pixels (NaN unmatched), rectified or not."""
    cal = calibration
    if cal.is_rectified:
        return disparity_to_depth(sgbm_disparity(image_left, image_right, params), cal.K_left.fx, cal.baseline_m)
    return sgbm_depth_unrectified(image_left, image_right, cal.K_left, cal.K_right, cal.T_left_from_right, params)


def stereo_reference_depth(image_left: np.ndarray, image_right: np.ndarray, calibration: "StereoCalibration",
                           max_side: int = 256) -> np.ndarray:
    """Coarse SGBM depth of the calibrated pair, its long side downscaled to ``max_side`` (a
    few ms): the metric reference of the 'stereo' and 'stereo_local' scale modes."""
    import cv2

    h, w = np.asarray(image_left).shape[:2]
    f = min(1.0, max_side / max(h, w))
    sw, sh = max(16, round(w * f)), max(16, round(h * f))

    def small(img):
        img = np.asarray(img)
        return img if (sw, sh) == (w, h) else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)

    cal = StereoCalibration(calibration.K_left.scaled(sw, sh), calibration.K_right.scaled(sw, sh),
                            calibration.T_left_from_right)
    return sgbm_depth(small(image_left), small(image_right), cal,
                      SGBMParams(num_disparities=64 if max(sw, sh) <= 320 else 128))


# Sparse matches as the metric reference: at least this share of the coarse grid's pixels
# (~65 matches at 256 x 256).
SPARSE_MIN_MATCHED_FRACTION = 1e-3


def sparse_reference_depth(image_left: np.ndarray, image_right: np.ndarray, calibration: "StereoCalibration",
                           shape: tuple[int, int]) -> np.ndarray:
    """Triangulated SIFT matches of the calibrated pair (any relative rotation) as a depth image
    of ``shape`` (NaN between matches): the metric reference where dense matching finds
    nothing (rotated rigs that cannot be planar-rectified, oblique views)."""
    px, z = matched_depths(image_left, image_right, calibration.K_left, calibration.K_right,
                           calibration.T_left_from_right)
    h, w = np.asarray(image_left).shape[:2]
    out = np.full(shape, np.nan, np.float32)
    u = np.clip((px[:, 0] + 0.5) * shape[1] / w - 0.5, 0, shape[1] - 1).round().astype(int)
    v = np.clip((px[:, 1] + 0.5) * shape[0] / h - 0.5, 0, shape[0] - 1).round().astype(int)
    out[v, u] = z
    return out


def _log_ratio_to_stereo(depth_pred: np.ndarray, image_left: np.ndarray, image_right: np.ndarray,
                         calibration: "StereoCalibration", max_side: int, min_matched_fraction: float,
                         reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
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


def metric_scale_from_stereo(depth_pred: np.ndarray, image_left: np.ndarray, image_right: np.ndarray,
                             calibration: "StereoCalibration", max_side: int = 256,
                             min_matched_fraction: float = 0.02, reference: np.ndarray | None = None
                             ) -> float | None:
    """Scale that makes a scale-ambiguous depth agree, in the median, with a coarse SGBM depth
    from the calibrated pair.  A small network gets shape right long before it resolves the
    sub-pixel disparities that fix metric scale; one robust number from classical matching
    on a downscaled pair (a few ms) anchors it.  None when too few pixels match."""
    matched = _log_ratio_to_stereo(depth_pred, image_left, image_right, calibration, max_side, min_matched_fraction,
                                   reference)
    if matched is None:
        return None
    log_ratio, ok = matched
    return float(np.exp(np.median(log_ratio[ok])))


def metric_scale_field_from_stereo(depth_pred: np.ndarray, image_left: np.ndarray, image_right: np.ndarray,
                                   calibration: "StereoCalibration", sigma: float = SCALE_FIELD_SIGMA,
                                   max_side: int = 256, min_matched_fraction: float = 0.02,
                                   prior_weight: float = 5e-4, reference: np.ndarray | None = None
                                   ) -> np.ndarray | None:
    """Per-pixel scale field (shape of ``depth_pred``) that brings a depth onto a coarse SGBM
    depth of the calibrated pair, smoothly.  A small network's depth errors are mostly
    low-frequency (a tilted or bent surface) while its detail is right and it is dense;
    matching is noisy per pixel and has holes, but is unbiased.  So: log(SGBM / network) on
    the matched pixels, averaged under a Gaussian of ``sigma`` (fraction of the image width)
    over matched pixels only (normalised convolution) -- a region the matcher misses (the left
    border, shadows) takes the ratio of its matched neighbours; ``prior_weight`` (in units of
    matched fraction) pulls only regions with no match for several sigma to the frame's
    median.  None when too few pixels match.  ``reference``: the coarse SGBM depth when
    already computed."""
    import cv2

    matched = _log_ratio_to_stereo(depth_pred, image_left, image_right, calibration, max_side, min_matched_fraction,
                                   reference)
    if matched is None:
        return None
    log_ratio, ok = matched
    prior = float(np.median(log_ratio[ok]))
    weight = ok.astype(np.float32)
    sh, sw = ok.shape
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
    field = (num + prior_weight * prior) / (den + prior_weight)
    h, w = np.asarray(depth_pred).shape[:2]
    return np.exp(cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)).astype(np.float32)


def fusion_reference_depth(image_left: np.ndarray, image_right: np.ndarray, calibration: "StereoCalibration",
                           coarse: np.ndarray, equal_weight_disparity_px: float = STEREO_FUSION_DISPARITY_PX
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


def fuse_with_stereo_reference(points: np.ndarray, reference: np.ndarray, calibration: "StereoCalibration",
                               equal_weight_disparity_px: float = STEREO_FUSION_DISPARITY_PX,
                               sigma_px: float = STEREO_FUSION_SIGMA_PX) -> np.ndarray:
    """Metric pointmap (H, W, 3): a network's metric ``points`` corrected toward an SGBM
    ``reference`` depth's own points (on the calibrated rays) where matching is precise.

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
    small = points if (sh, sw) == (h, w) else \
        cv2.resize(np.ascontiguousarray(points, dtype=np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    matched = np.isfinite(reference) & (reference > 0) & np.isfinite(small[..., 2])
    depth = np.where(matched, reference, np.float32(0)).astype(np.float32, copy=False)
    d0 = equal_weight_disparity_px * ref_per_image_px
    q = depth * np.float32(d0 / (K_ref.fx * calibration.baseline_m))  # d0 / d
    for _ in range(3):
        q *= q  # (d0 / d)^8
    say = np.where(matched, 1.0 / (1.0 + q), 0.0).astype(np.float32)
    pull = depth_to_points(depth, K_ref)  # the matcher's points (0 where it did not match) ...
    pull -= np.nan_to_num(small)  # ... minus the network's, weighted by the matcher's say
    pull *= say[..., None]
    correction = cv2.GaussianBlur(pull, (0, 0), sigma_px * ref_per_image_px, borderType=cv2.BORDER_REFLECT)
    if (sh, sw) != (h, w):
        correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
    correction += points  # NaN where the network has no point
    return correction


def shadows_of(image: np.ndarray | None, shape: tuple[int, int], fraction: float) -> np.ndarray | None:
    """The image's shadow mask at the pointmap's (H, W), or None (no image, or fraction 0)."""
    if image is None or fraction <= 0:
        return None
    mask = shadow_mask(image, fraction)
    if mask.shape != tuple(shape):
        import cv2

        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def confidence_sigma_factor(confidence: np.ndarray, valid: np.ndarray, widest: float = 4.0) -> np.ndarray:
    """How much wider than the stereo noise model a pixel's depth error is taken to be, from the
    network's confidence: sqrt(median / confidence), between 1 (at or above the frame's median
    confidence) and ``widest``.  A uniform confidence (SGBM) changes nothing."""
    conf = np.asarray(confidence, dtype=np.float32)
    use = valid & np.isfinite(conf) & (conf > 0)
    if not use.any():
        return np.ones(conf.shape, np.float32)
    median = float(np.median(conf[use]))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.sqrt(np.float32(median) / conf)
    return np.clip(np.nan_to_num(factor, nan=widest, posinf=widest), 1.0, widest).astype(np.float32)


def needs_right_view(scale_mode: str) -> bool:
    """Only 'baseline' scaling reads the right view's pointmap (to recover the pose); the node
    skips that head otherwise."""
    return scale_mode == "baseline"


@dataclass
class ReconstructionParams:
    inference_size: int = 0  # long side of the network input; 0: the model's recommendation, else 512
    confidence_threshold: float | None = None  # absolute (MASt3R conf >= 1)
    confidence_quantile: float | None = None  # per frame, e.g. 0.1 drops the least confident 10%
    scale_mode: str = "auto"  # one of SCALE_MODES
    scale_field_sigma: float = SCALE_FIELD_SIGMA  # 'stereo_local' field sigma, fraction of image width
    # 'stereo' / 'stereo_local': pull the points toward a full-resolution SGBM's where its disparity
    # (px of the left image) is large, halfway at this one (fuse_with_stereo_reference); 0: off
    stereo_fusion_disparity_px: float = STEREO_FUSION_DISPARITY_PX
    depth_source: str = "pointmap"  # 'pointmap' (the left pointmap's z)
    slope_baseline_m: float = 1.0  # physical baseline of the per-pixel slope image
    # Disparity precision (px, 1 sigma) of the depth source, for the hazard map's noise model
    # (sigma_Z = Z^2 / (f B) sigma_d).  None: the model's own (its card; SGBM 0.11), else 0.5;
    # 0: no noise model (the plain geometric hazard map).
    disparity_sigma_px: float | None = None
    # Shadows bound the hazard map's terrain when the sun's direction is given: a pixel below this
    # fraction of the lit level is shadow (geometry.shadows); 0: shadows unused.
    shadow_intensity_fraction: float = SHADOW_INTENSITY_FRACTION
    hazard: HazardParams = field(default_factory=HazardParams)
    compute_hazard: bool = True
    # map the hazard probabilities through the model's calibration (off: the raw Gaussian model's,
    # e.g. to fit a new calibration)
    calibrate_hazard: bool = True
    # fuse every frame of a descent into one elevation map (needs the camera's pose) and make
    # the landing-site map on it (geometry.descent_map); its window, gate and reset:
    descent_map: bool = False
    descent: DescentMapParams = field(default_factory=DescentMapParams)
    compute_slope: bool = True

    def validate(self) -> None:
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        if not 0 < self.scale_field_sigma <= 1:
            raise ValueError("scale_field_sigma must be in (0, 1] (a fraction of the image width)")
        if not 0 <= self.stereo_fusion_disparity_px < 1000:
            raise ValueError("stereo_fusion_disparity_px must be in [0, 1000) px (0: no fusion)")
        if self.inference_size != 0 and (self.inference_size < 16 or self.inference_size % 16):
            raise ValueError(f"inference_size={self.inference_size} must be 0 (the model's own) or a multiple of 16 "
                             "(the networks' patch size)")
        if self.slope_baseline_m <= 0:
            raise ValueError("slope_baseline_m must be positive")
        if self.disparity_sigma_px is not None and not (0 <= self.disparity_sigma_px < 100):
            raise ValueError("disparity_sigma_px must be in [0, 100) px, or None for the model's own")
        if not 0 <= self.shadow_intensity_fraction < 1:
            raise ValueError("shadow_intensity_fraction must be in [0, 1) (0: shadows unused)")
        self.hazard.validate()
        self.descent.validate()


@dataclass
class Reconstruction:
    depth: np.ndarray  # (H, W) float32 metres, NaN invalid (left camera)
    points: np.ndarray  # (H, W, 3) left optical frame, NaN invalid
    confidence: np.ndarray  # (H, W) float32
    valid: np.ndarray  # (H, W) bool
    elevation_sigma: np.ndarray | None  # (H, W) 1-sigma vertical uncertainty (m); None without a hazard map
    slope_deg: np.ndarray | None
    hazard: HazardMap | None
    scale: float | np.ndarray  # factor applied to the prediction (1 when 'predicted'; (H, W) for 'stereo_local')
    timings_s: dict[str, float]
    prediction: PairPrediction
    shadowed: np.ndarray | None = None  # (H, W) the left image's shadows, when they bounded the hazard map
    hazard_note: str | None = None  # why there is no hazard map where one was asked for
    scale_path: str = "predicted"  # ScaledPrediction.scale_path
    # with ReconstructionParams.descent_map and a pose: the landing-site map of the fused descent
    # map, and what this frame's update did (fused / new / gated cells, a reset)
    descent_hazard: HazardMap | None = None
    descent_update: DescentUpdate | None = None


DEFAULT_DISPARITY_SIGMA_PX = 0.5


def model_hazard_calibration(model) -> tuple[float, ...] | None:
    """The hazard-probability calibration a model states (card ``hazard_calibration``, or an
    attribute): fitted on calibration pairs with ``evaluate-bag --fit-hazard-calibration``."""
    card = getattr(model, "meta", {}).get("card", {})
    value = card.get("hazard_calibration", getattr(model, "hazard_calibration", None))
    return tuple(float(v) for v in value) if value else None


def model_disparity_sigma(model) -> float:
    """The disparity precision a model states (card ``disparity_sigma_px``, or an attribute)."""
    card = getattr(model, "meta", {}).get("card", {})
    value = card.get("disparity_sigma_px", getattr(model, "disparity_sigma_px", None))
    return float(value) if value is not None else DEFAULT_DISPARITY_SIGMA_PX


@dataclass
class ScaledPrediction:
    """The network stage of a reconstruction: the model's prediction, the metric scale applied to
    it and, with stereo fusion, the metric points themselves.  The node runs the two stages on
    two threads so the network of one pair overlaps the geometry of the previous one."""

    prediction: PairPrediction
    scale: float | np.ndarray  # one factor, or an (H, W) field ('stereo_local')
    timings_s: dict[str, float]  # model, scale (the metric anchor), fusion (with the matcher)
    points: np.ndarray | None = None  # metric left pointmap when not prediction x scale (stereo fusion)
    # how the scale was found: 'predicted', 'stereo', 'stereo_local' (either '(sparse matches)'
    # where dense matching found nothing), 'rig' (the right view's pointmap on the calibrated
    # rig's rays) or 'metric model' (SGBM)
    scale_path: str = "predicted"

    def metric_points(self) -> np.ndarray:
        return self.points if self.points is not None else _scaled(self.prediction.points_left, self.scale)


def _scaled(points: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    return points * (scale[..., None] if isinstance(scale, np.ndarray) else np.float32(scale))


class StereoReconstructor:
    def __init__(self, model: StereoModel, params: ReconstructionParams | None = None):
        self.model = model
        self.params = params or ReconstructionParams()
        self.params.validate()
        # the hazard maps of this camera's recent pairs (one stream per reconstructor)
        self.descent_map: DescentMap | None = None  # this stream's fused elevation map, made on first use
        self.hazard_memory = HazardMemory(self.params.hazard.memory_frames,
                                          self.params.hazard.memory_keyframe_distance_m)

    def reconstruct(self, image_left: np.ndarray, image_right: np.ndarray,
                    calibration: StereoCalibration | None, up_in_left: np.ndarray | None,
                    sun_in_left: np.ndarray | None = None, camera_pose: np.ndarray | None = None) -> Reconstruction:
        return self.finish(self.predict_scaled(image_left, image_right, calibration), calibration, up_in_left,
                           sun_in_left=sun_in_left, image_left=image_left, camera_pose=camera_pose)

    def predict_scaled(self, image_left: np.ndarray, image_right: np.ndarray,
                       calibration: StereoCalibration | None, params: ReconstructionParams | None = None
                       ) -> ScaledPrediction:
        """Stage 1: the network, and the factor that makes its pointmap metric."""
        p = params or self.params
        t0 = time.perf_counter()
        if isinstance(self.model, SGBMModel) and calibration is not None:
            self.model.calibration = calibration
        card = getattr(self.model, "meta", {}).get("card", {})
        size = p.inference_size or int(card.get("inference_size", 512))
        scale_mode = p.scale_mode if p.scale_mode != "auto" else card.get("scale_mode", "predicted")
        rescale = scale_mode != "predicted" and not isinstance(self.model, SGBMModel)  # SGBM is metric
        if rescale and calibration is None:
            raise ValueError(f"scale_mode {scale_mode!r} needs the stereo calibration")
        right_view = rescale and needs_right_view(scale_mode)
        pred = self.model.predict(image_left, image_right, size=size, right_view=right_view)
        t1 = time.perf_counter()
        scale, points, fusion_s = 1.0, None, 0.0
        scale_path = "metric model" if isinstance(self.model, SGBMModel) else "predicted"
        if rescale:
            est = reference = None
            if scale_mode in ("stereo", "stereo_local"):
                reference = stereo_reference_depth(image_left, image_right, calibration)
                depth = pred.points_left[..., 2]
                if scale_mode == "stereo":
                    est = metric_scale_from_stereo(depth, image_left, image_right, calibration, reference=reference)
                else:
                    est = metric_scale_field_from_stereo(depth, image_left, image_right, calibration,
                                                         p.scale_field_sigma, reference=reference)
            if est is None and reference is not None:  # dense matching failed: triangulated sparse matches
                sparse = sparse_reference_depth(image_left, image_right, calibration, reference.shape)
                depth = pred.points_left[..., 2]
                if scale_mode == "stereo":
                    est = metric_scale_from_stereo(depth, image_left, image_right, calibration, reference=sparse,
                                                   min_matched_fraction=SPARSE_MIN_MATCHED_FRACTION)
                else:
                    est = metric_scale_field_from_stereo(depth, image_left, image_right, calibration,
                                                         p.scale_field_sigma, reference=sparse,
                                                         min_matched_fraction=SPARSE_MIN_MATCHED_FRACTION)
                reference = None  # no dense reference to fuse with
                matched_sparse = est is not None
            else:
                matched_sparse = False
            if est is None:  # 'baseline', or too little texture for the matcher
                if pred.points_right is None:
                    pred = self.model.predict(image_left, image_right, size=size)
                est = metric_scale_from_rig(pred.points_right, calibration.K_right, calibration.T_left_from_right,
                                            pred.conf_right)
                scale_path = "rig"
            else:
                scale_path = f"{scale_mode} (sparse matches)" if matched_sparse else scale_mode
            if scale_path == scale_mode and p.stereo_fusion_disparity_px > 0:
                t2 = time.perf_counter()
                fine = fusion_reference_depth(image_left, image_right, calibration, reference,
                                              p.stereo_fusion_disparity_px)
                if fine is not None:
                    points = fuse_with_stereo_reference(_scaled(pred.points_left, est), fine, calibration,
                                                        p.stereo_fusion_disparity_px)
                fusion_s = time.perf_counter() - t2
            scale = est
        metric_s = time.perf_counter() - t1
        return ScaledPrediction(pred, scale, {"model": t1 - t0, "scale": metric_s - fusion_s, "fusion": fusion_s},
                                points, scale_path)

    def finish(self, staged: ScaledPrediction, calibration: StereoCalibration | None,
               up_in_left: np.ndarray | None, params: ReconstructionParams | None = None,
               sun_in_left: np.ndarray | None = None, image_left: np.ndarray | None = None,
               camera_pose: np.ndarray | None = None) -> Reconstruction:
        """Stage 2: metric points, validity, slope and the hazard map.  With the direction toward
        the sun in the left camera frame and the left image, the left image's shadows bound the
        hazard map's terrain (see ``geometry.shadows``).  With the left camera's pose in a world
        frame (4x4 ``T_world_from_left``), the certain hazards of this stream's previous
        ``hazard.memory_frames - 1`` keyframe maps fill the map's unknown cells (``geometry.hazard_memory``)."""
        p = params or self.params
        t1 = time.perf_counter()
        pred, scale = staged.prediction, staged.scale
        points = staged.metric_points()
        valid = np.isfinite(points[..., 0] + points[..., 1] + points[..., 2]) & (points[..., 2] > 0)
        valid &= confidence_mask(pred.conf_left, p.confidence_threshold, p.confidence_quantile)
        points = np.where(valid[..., None], points, np.float32(np.nan)).astype(np.float32, copy=False)
        depth = points[..., 2].copy()
        t2 = time.perf_counter()
        slope = hmap = sigma = shadowed = hazard_note = descent_hazard = descent_update = None
        sigma_d = p.disparity_sigma_px if p.disparity_sigma_px is not None else model_disparity_sigma(self.model)
        if up_in_left is not None:
            up = normalize(up_in_left)
            if p.compute_hazard and calibration is not None and sigma_d > 0:  # only the hazard map uses it
                sigma = stereo_elevation_sigma(points, up, calibration.K_left.fx, calibration.baseline_m, sigma_d)
                sigma = sigma * confidence_sigma_factor(pred.conf_left, valid)
            if p.compute_slope:
                fx = calibration.K_left.fx if calibration is not None else None
                slope = slope_image(points, up, baseline_m=p.slope_baseline_m, fx=fx)
            if p.compute_hazard and valid.sum() < 3:
                hazard_note = f"no hazard map: {int(valid.sum())} valid points"
            if p.compute_hazard and valid.sum() >= 3:  # invalid points are NaN: hazard_map drops them
                if sun_in_left is not None:
                    shadowed = shadows_of(image_left, points.shape[:2], p.shadow_intensity_fraction)
                probability_table = model_hazard_calibration(self.model) if p.calibrate_hazard else None
                try:
                    fx = calibration.K_left.fx if calibration is not None else float("nan")
                    hazard_params = params_for_range(p.hazard, float(np.median(depth[valid])), fx)
                    hmap = hazard_map(points, up, hazard_params, elevation_sigma=sigma, shadowed=shadowed,
                                      sun=sun_in_left, calibration=probability_table)
                except HazardGridError as exc:  # the depth stands; the map says why it is missing
                    hazard_note = str(exc)
                if p.descent_map and camera_pose is not None and sigma is not None and hazard_note is None:
                    descent_hazard, descent_update = self._fuse(points, sigma, camera_pose, hazard_params, p,
                                                                probability_table)
                if hmap is not None and camera_pose is not None:
                    hmap = self.hazard_memory.update(hmap, camera_pose, p.hazard.memory_frames,
                                                     p.hazard.memory_keyframe_distance_m)
        t3 = time.perf_counter()
        model_s = staged.timings_s["model"]
        geometry_s = staged.timings_s["scale"] + staged.timings_s.get("fusion", 0.0) + (t2 - t1)
        timings = {"model": model_s, "geometry": geometry_s, "hazard": t3 - t2, "total": model_s + geometry_s + t3 - t2}
        return Reconstruction(depth, points, pred.conf_left.astype(np.float32), valid, sigma, slope, hmap, scale,
                              timings, pred, shadowed, hazard_note, staged.scale_path, descent_hazard,
                              descent_update)

    def _fuse(self, points: np.ndarray, sigma: np.ndarray, camera_pose: np.ndarray, hazard_params: HazardParams,
              p: ReconstructionParams, probability_table) -> tuple[HazardMap, DescentUpdate]:
        """Fuse this frame into the stream's descent map and make the landing-site map on it
        (through the model's calibration, which was fitted on single frames)."""
        if self.descent_map is not None and p.hazard.resolution_m == 0:  # cells that follow the range:
            hazard_params = dataclasses.replace(hazard_params, resolution_m=self.descent_map.resolution)  # the first's
        if self.descent_map is None or self.descent_map.resolution != hazard_params.resolution_m \
                or self.descent_map.params != p.descent:
            self.descent_map = DescentMap(hazard_params.resolution_m, p.descent)
        update = self.descent_map.update(points, sigma, camera_pose, hazard_params.min_points_per_cell)
        return self.descent_map.hazard_map(camera_pose, hazard_params, probability_table), update
