"""StereoReconstructor: images + calibration -> Reconstruction (depth, points, slope, hazard).

The one code path the ROS node, the offline tools and the tests all run, so an offline
evaluation measures exactly what runs on the lander.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from .geometry.camera import confidence_mask
from .geometry.descent_map import DescentMap, DescentMapParams, DescentUpdate
from .geometry.frames import normalize
from .geometry.hazard import (
    HazardGridError,
    HazardMap,
    HazardParams,
    hazard_map,
    hazard_threshold,
    params_for_range,
    safe_threshold,
    safe_threshold_at_range,
    with_fallback,
)
from .geometry.hazard_memory import HazardMemory
from .geometry.metric_scale import (
    SCALE_FIELD_SIGMA,
    SPARSE_FIELD_MIN_MATCHES,
    SPARSE_MIN_MATCHES,
    STEREO_FUSION_DISPARITY_PX,
    coarse_copy,
    fuse_with_matcher,
    fusion_reference_depth,
    metric_scale_field_from_stereo,
    metric_scale_from_stereo,
    reference_agrees_with_matches,
    sparse_reference_depth,
    stereo_reference_depth,
)
from .geometry.pose import metric_scale_from_rig
from .geometry.parallel import check_threads
from .geometry.shadows import SHADOW_INTENSITY_FRACTION, shadow_mask
from .geometry.slope import slope_image
from .geometry.stereo import (
    DisparityPrecision,
    StereoCalibration,
    blank_image,
    disparity_to_depth,
    left_right_discrepancy,
    outside_right_view,
    stereo_elevation_sigma,
    unmatched_left_band,
)
from .models.predict import PairPrediction

# predicted: as the network says; baseline: the right view's pointmap put on the calibrated rig's rays
# (any relative rotation); stereo: median ratio to a coarse SGBM depth (the calibrated rig's metric anchor);
# stereo_local: a smooth per-pixel scale field from the same SGBM depth (the network keeps the
# fine shape, the matcher fixes the low-frequency metric structure); auto: the model card's choice.
SCALE_MODES = ("predicted", "baseline", "stereo", "stereo_local", "auto")
NETWORK_SIGMA_FACTOR = 8.0  # ReconstructionParams.network_sigma_factor (chosen on calibration data)
UNMATCHED_SIGMA_FACTOR = 64.0  # ReconstructionParams.unmatched_sigma_factor (chosen on calibration data)


class StereoModel(Protocol):
    """Anything that turns a pair into a :class:`PairPrediction` (networks and SGBM).
    ``right_view=False``: the right view's pointmap may be left out (None).  Capabilities the
    pipeline reads (absent: False / None): ``metric_depth`` (metric from the calibrated rig, no
    scale step), ``needs_calibration`` (set as ``model.calibration`` before ``predict``),
    ``stereo_head`` (a calibrated-stereo head, ``models.stereo_head``)."""

    def predict(
        self, image_left: np.ndarray, image_right: np.ndarray, size: int = 512, right_view: bool = True
    ) -> PairPrediction: ...


def uses_stereo_head(model, calibration: StereoCalibration | None, enabled: bool = True) -> bool:
    """The model's own calibrated-stereo head replaces SGBM as the metric reference: a model
    that has one (``model.stereo_head``), on a rectified rig, unless switched off."""
    return enabled and getattr(model, "stereo_head", None) is not None and calibration is not None and calibration.is_rectified


class HeadMatch(NamedTuple):
    """What the stereo head measured on a pair, in the left image's pixels."""

    depth: np.ndarray  # metric depth, NaN where it did not match confidently
    # the left-right check's disagreement (px of the matching resolution), None without it
    left_right_px: np.ndarray | None
    matching_scale: float = 1.0  # the resolution the pair was matched at, per camera pixel (<= 1)


def stereo_head_match(
    head,
    image_left: np.ndarray,
    image_right: np.ndarray,
    calibration: StereoCalibration,
    min_confidence: float,
    max_size: int = 0,
    left_right_check: bool = False,
) -> HeadMatch:
    """Metric depth of the head's disparity in the left image's pixels, NaN where its
    confidence is under ``min_confidence`` or the disparity is not positive; with
    ``left_right_check`` also the disagreement of the right view's disparity at each match
    (``geometry.stereo.left_right_discrepancy``, in pixels of the matching resolution).  A pair
    whose long side exceeds ``max_size`` (0: none) is matched downscaled to it (area-averaged),
    its disparities scaled back and resampled to camera pixels: a megapixel rig at the cost and
    depth precision of a rig of that size with the same field of view (``matching_scale``: the
    noise model widens the disparity sigma by its inverse)."""
    from .models.stereo_head import predict_disparities, predict_disparity

    def match(left, right):
        if left_right_check:
            d, c, d_right = predict_disparities(head, left, right)
            return d, c, left_right_discrepancy(d, d_right)
        return (*predict_disparity(head, left, right), None)

    h, w = image_left.shape[:2]
    f = 1.0
    if max_size and max(h, w) > max_size:
        import cv2

        f = max_size / max(h, w)
        size = (max(16, round(w * f)), max(16, round(h * f)))
        small = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (image_left, image_right)]
        disparity, confidence, left_right = match(*small)
        disparity = cv2.resize(disparity, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(w / size[0])
        confidence = cv2.resize(confidence, (w, h), interpolation=cv2.INTER_LINEAR)
        if left_right is not None:
            left_right = cv2.resize(left_right, (w, h), interpolation=cv2.INTER_NEAREST)
        f = size[0] / w
    else:
        disparity, confidence, left_right = match(image_left, image_right)
    disparity[(confidence < min_confidence) | ~(disparity > 0.25) | unmatched_left_band(disparity)] = np.nan
    return HeadMatch(disparity_to_depth(disparity, calibration.K_left.fx, calibration.baseline_m), left_right, f)


LEFT_RIGHT_HEALTH_PX = 0.2  # left_right_disagreement's threshold: 3 sigma of the head's precision


def left_right_disagreement(
    head_left_right_px: np.ndarray | None, matcher_say: np.ndarray | None, threshold_px: float = LEFT_RIGHT_HEALTH_PX
) -> float:
    """Share of a reconstruction's head-matched points (the matcher's say >= 0.99) whose
    left-right check (``Reconstruction.head_left_right_px``) disagrees by more than
    ``threshold_px``: a few percent on a sound rig; it grows when the rig's rectification drifts
    (a vertical misalignment of the views) or the views are degraded.  NaN without the check or
    without matched points."""
    if head_left_right_px is None or matcher_say is None:
        return float("nan")
    disagreement = at_shape(head_left_right_px, matcher_say.shape)
    matched = (matcher_say >= 0.99) & np.isfinite(disagreement)
    return float(np.mean(disagreement[matched] > threshold_px)) if matched.any() else float("nan")


def at_shape(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-pixel layer of the left image at another resolution of it (nearest pixel)."""
    if image.shape == tuple(shape):
        return image
    import cv2

    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def unmatched_pixels(depth: np.ndarray, calibration: StereoCalibration, head_depth: np.ndarray | None) -> np.ndarray:
    """(H, W) pixels of a reconstruction on a rectified rig that no matcher triangulated: those
    the right camera does not see, and where the stereo head ran (``head_depth``, NaN where it
    found no confident match) the pixels it left to the pointmap."""
    unmatched = outside_right_view(depth, calibration)
    if head_depth is not None:
        unmatched |= ~np.isfinite(at_shape(head_depth, depth.shape))
    return unmatched


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
    # (px of the left image) is large, halfway at this one (fuse_with_matcher); 0: off
    stereo_fusion_disparity_px: float = STEREO_FUSION_DISPARITY_PX
    # a student with a calibrated-stereo head (models.stereo_head) takes its metric reference and
    # fusion from it on a rectified rig instead of SGBM; its disparities under this confidence
    # (probability mass of the match, 0-1) are left to the pointmap
    stereo_head: bool = True
    stereo_head_min_confidence: float = 0.99
    # the head also matches the right view on its features and the disagreement of the two at
    # each match widens the hazard noise model there (a left-right check: the head's mismatched
    # blobs disagree; they set most of the map's false hazards)
    stereo_head_left_right_check: bool = True
    # the head matches a pair whose long side is larger downscaled to this many pixels (0: never):
    # the resolution it was trained at, where its stated precision holds (docs/results.md,
    # "Megapixel pairs")
    stereo_head_max_size: int = 512
    depth_source: str = "pointmap"  # 'pointmap' (the left pointmap's z)
    slope_baseline_m: float = 1.0  # physical baseline of the per-pixel slope image
    # Disparity precision (px, 1 sigma) of the depth source, for the hazard map's noise model
    # (sigma_Z = Z^2 / (f B) sigma_d), one value everywhere.  None: the model's own (its card,
    # widened on bland ground where the card gives a texture gain; SGBM 0.11), else 0.5;
    # 0: no noise model (the plain geometric hazard map).
    disparity_sigma_px: float | None = None
    # The noise model's widening of the points that are the network's rather than a matcher's
    # (ScaledPrediction.matcher_say): the pointmap's errors are smooth (a bent or tilted surface)
    # and it cannot resolve rocks below its token size, which independent per-point noise of
    # the matcher's sigma_d does not describe.  1: no widening.
    network_sigma_factor: float = NETWORK_SIGMA_FACTOR
    # The same for the network's points no matcher matched on a rectified rig (unmatched_pixels:
    # the left band the right camera does not see; with the stereo head, also its shadows,
    # occlusions and bland patches): only the scale field around anchors them, and their errors
    # are many times the pointmap's where the say is small for range alone (at altitude).
    unmatched_sigma_factor: float = UNMATCHED_SIGMA_FACTOR
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
    # threads for the landing-site maps' compiled passes (cell statistics, planes, relief; the
    # same map whatever the count): 1 keeps the map on the calling thread; more pay only with one
    # BLAS thread for numpy (geometry.hazard.hazard_map)
    map_threads: int = 1
    # a model with a range-selected second network (the shipped default's orbital one) uses it
    # for pairs beyond its range (StereoReconstructor.predict_scaled); off: the primary always
    range_selected_network: bool = True

    def validate(self) -> None:
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        if not 0 < self.scale_field_sigma <= 1:
            raise ValueError("scale_field_sigma must be in (0, 1] (a fraction of the image width)")
        if not 0 <= self.stereo_fusion_disparity_px < 1000:
            raise ValueError("stereo_fusion_disparity_px must be in [0, 1000) px (0: no fusion)")
        if self.inference_size != 0 and (self.inference_size < 16 or self.inference_size % 16):
            raise ValueError(
                f"inference_size={self.inference_size} must be 0 (the model's own) or a multiple of 16 (the networks' patch size)"
            )
        if not 0 <= self.stereo_head_min_confidence < 1:
            raise ValueError("stereo_head_min_confidence must be in [0, 1)")
        if self.stereo_head_max_size != 0 and self.stereo_head_max_size < 64:
            raise ValueError("stereo_head_max_size must be 0 (camera resolution) or >= 64 px")
        if self.slope_baseline_m <= 0:
            raise ValueError("slope_baseline_m must be positive")
        if self.disparity_sigma_px is not None and not (0 <= self.disparity_sigma_px < 100):
            raise ValueError("disparity_sigma_px must be in [0, 100) px, or None for the model's own")
        if not 1 <= self.network_sigma_factor <= 1000:
            raise ValueError("network_sigma_factor must be in [1, 1000] (1: no widening)")
        if not 1 <= self.unmatched_sigma_factor <= 1000:
            raise ValueError("unmatched_sigma_factor must be in [1, 1000] (1: no widening)")
        if not 0 <= self.shadow_intensity_fraction < 1:
            raise ValueError("shadow_intensity_fraction must be in [0, 1) (0: shadows unused)")
        check_threads(self.map_threads)
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
    # seconds: model, geometry (the metric anchor, the fusion), hazard (everything after the depth;
    # hazard_map: the landing-site map alone), total
    timings_s: dict[str, float]
    prediction: PairPrediction
    shadowed: np.ndarray | None = None  # (H, W) the left image's shadows, when they bounded the hazard map
    hazard_note: str | None = None  # why there is no hazard map where one was asked for
    scale_path: str = "predicted"  # ScaledPrediction.scale_path
    # with ReconstructionParams.descent_map and a pose: the landing-site map of the fused descent
    # map, and what this frame's update did (fused / new / gated cells, a reset)
    descent_hazard: HazardMap | None = None
    descent_update: DescentUpdate | None = None
    matcher_say: np.ndarray | None = None  # ScaledPrediction.matcher_say: per pixel, how much is a matcher's
    network: str = "primary"  # ScaledPrediction.network
    head_left_right_px: np.ndarray | None = None  # ScaledPrediction.head_left_right_px


DEFAULT_DISPARITY_SIGMA_PX = 0.5


DESCENT_MAP_KEY_PREFIX = "descent_map_"  # card keys of the fused map's own calibration


def _model_stated(model, key: str, descent_map: bool):
    """A model's card value (or attribute) ``key``; for the descent map its own
    ``descent_map_<key>`` where stated, else the single-frame one."""
    return _model_stated_as(model, key, descent_map)[1]


def _model_stated_as(model, key: str, descent_map: bool) -> tuple[str, Any]:
    """:func:`_model_stated` and the key that stated it (``("", None)`` where none does)."""
    card = getattr(model, "meta", {}).get("card", {})
    keys = (DESCENT_MAP_KEY_PREFIX + key, key) if descent_map else (key,)
    for k in keys:
        value = card.get(k, getattr(model, k, None))
        if value:
            return k, value
    return "", None


def model_hazard_calibration(model, descent_map: bool = False) -> tuple[float, ...] | None:
    """The hazard-probability calibration a model states (card ``hazard_calibration``, or an
    attribute): fitted on calibration pairs with ``evaluate-bag --fit-hazard-calibration``.
    ``descent_map``: the fused map's table (``descent_map_hazard_calibration``, fitted on
    calibration descents with ``--descent-map``), the single-frame one where the model has none."""
    value = _model_stated(model, "hazard_calibration", descent_map)
    return tuple(float(v) for v in value) if value else None


def model_hazard_call_calibration(model) -> tuple[float, ...] | None:
    """The calibration of a model's single-frame call probabilities (card
    ``hazard_call_calibration``, or an attribute: the probability with each cell judged under
    the relief prior, on which HAZARD is called), fitted with its hazard table.  A fused map
    judges its relief on a common sigma and has none."""
    value = (
        getattr(model, "meta", {}).get("card", {}).get("hazard_call_calibration", getattr(model, "hazard_call_calibration", None))
    )
    return tuple(float(v) for v in value) if value else None


def model_hazard_above(model, descent_map: bool = False) -> float | None:
    """The probability at which a model's calibrated map calls a HAZARD (card ``hazard_above``,
    or an attribute): the best-F1 threshold on the calibration data, fitted with the table
    (``descent_map``: the fused map's, ``descent_map_hazard_above``, where stated)."""
    value = _model_stated(model, "hazard_above", descent_map)
    return float(value) if value else None


def model_safe_below(model, descent_map: bool = False, range_m: float | None = None) -> float | None:
    """The probability below which a model's calibrated map certifies a site SAFE (card
    ``hazard_safe_below``, or an attribute): the largest whose false-safe share on the
    calibration data stays within budget (``geometry.hazard.fit_safe_threshold``), fitted with
    the table (``descent_map``: the fused map's, ``descent_map_hazard_safe_below``, where stated).
    At a frame's median ``range_m``, its range band's where the model states them
    (``hazard_safe_below_by_range``: the budget held within each band on the calibration data)."""
    key, value = _model_stated_as(model, "hazard_safe_below", descent_map)
    if not value:
        return None
    if range_m is None or not np.isfinite(range_m):
        return float(value)
    # the bands stated beside the threshold taken: a fused map's own never takes a single frame's
    bands_key = key + "_by_range"
    card = getattr(model, "meta", {}).get("card", {})
    return safe_threshold_at_range(float(value), card.get(bands_key, getattr(model, bands_key, None)), range_m)


def model_disparity_sigma(model) -> float:
    """The disparity precision a model states (card ``disparity_sigma_px``, or an attribute)."""
    card = getattr(model, "meta", {}).get("card", {})
    value = card.get("disparity_sigma_px", getattr(model, "disparity_sigma_px", None))
    return float(value) if value is not None else DEFAULT_DISPARITY_SIGMA_PX


def model_disparity_precision(model) -> DisparityPrecision:
    """The model's disparity precision: its ``disparity_sigma_px`` and, where its card states
    one (``disparity_sigma_texture_gain``), the widening on bland ground
    (:class:`~lunar_recon.geometry.stereo.DisparityPrecision`)."""
    card = getattr(model, "meta", {}).get("card", {})
    gain = card.get("disparity_sigma_texture_gain", getattr(model, "disparity_sigma_texture_gain", 0.0))
    return DisparityPrecision(model_disparity_sigma(model), float(gain or 0.0))


def disparity_precision(model, params: ReconstructionParams) -> DisparityPrecision:
    """The precision the hazard noise model uses: ``params.disparity_sigma_px`` (one sigma
    everywhere) when set, else the model's own."""
    if params.disparity_sigma_px is not None:
        return DisparityPrecision(params.disparity_sigma_px)
    return model_disparity_precision(model)


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
    # per pixel, how much of the point is a matcher's (the head's or SGBM's) rather than the
    # network's, 0-1; None for a metric model (SGBM), whose points are all matched
    matcher_say: np.ndarray | None = None
    # which of the model's networks made it: 'primary', or 'orbital' (the range-selected one,
    # see StereoReconstructor.predict_scaled)
    network: str = "primary"
    head_depth: np.ndarray | None = None  # the stereo head's metric depth, where it ran
    # and its left-right check's disagreement (px of the matching resolution)
    head_left_right_px: np.ndarray | None = None
    head_matching_scale: float = 1.0  # HeadMatch.matching_scale of the head's match

    def metric_points(self) -> np.ndarray:
        return self.points if self.points is not None else _scaled(self.prediction.points_left, self.scale)

    def median_range_m(self, step: int = 4) -> float:
        """Median metric depth over every ``step``-th pixel of each axis (NaN without one): the
        range a choice between networks needs, without scaling the whole pointmap."""
        if self.points is not None:
            z = self.points[::step, ::step, 2]
        else:
            scale = self.scale[::step, ::step] if isinstance(self.scale, np.ndarray) else np.float32(self.scale)
            z = self.prediction.points_left[::step, ::step, 2] * scale
        z = z[np.isfinite(z) & (z > 0)]
        return float(np.median(z)) if z.size else float("nan")


_head_worker: ThreadPoolExecutor | None = None


def _beside_the_network(fn, *args) -> Future:
    """``fn(*args)`` on the stereo head's worker thread: the head needs only the images, so it
    runs while the network does (torch, OpenCV and numpy release the GIL in their kernels)."""
    global _head_worker
    if _head_worker is None:
        _head_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lunar_recon-stereo-head")
    return _head_worker.submit(fn, *args)


def _scaled(points: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    return points * (scale[..., None] if isinstance(scale, np.ndarray) else np.float32(scale))


class StereoReconstructor:
    def __init__(self, model: StereoModel, params: ReconstructionParams | None = None):
        self.model = model
        self.params = params or ReconstructionParams()
        self.params.validate()
        # the hazard maps of this camera's recent pairs (one stream per reconstructor)
        self.descent_map: DescentMap | None = None  # this stream's fused elevation map, made on first use
        self.hazard_memory = HazardMemory(self.params.hazard.memory_frames, self.params.hazard.memory_keyframe_distance_m)

    def reconstruct(
        self,
        image_left: np.ndarray,
        image_right: np.ndarray,
        calibration: StereoCalibration | None,
        up_in_left: np.ndarray | None,
        sun_in_left: np.ndarray | None = None,
        camera_pose: np.ndarray | None = None,
    ) -> Reconstruction:
        return self.finish(
            self.predict_scaled(image_left, image_right, calibration),
            calibration,
            up_in_left,
            sun_in_left=sun_in_left,
            image_left=image_left,
            camera_pose=camera_pose,
        )

    def predict_scaled(
        self,
        image_left: np.ndarray,
        image_right: np.ndarray,
        calibration: StereoCalibration | None,
        params: ReconstructionParams | None = None,
    ) -> ScaledPrediction:
        """Stage 1: the network, and the factor that makes its pointmap metric.  A model with a
        range-selected second network (``model.orbital``, a ``models.registry.RangeSelectedNetwork``:
        the shipped default's) hands it a pair whose metric median range is beyond its range."""
        p = params or self.params
        staged = self._predict_scaled(self.model, image_left, image_right, calibration, p)
        orbital = getattr(self.model, "orbital", None)  # models.registry.RangeSelectedNetwork
        if orbital is not None and p.range_selected_network and staged.median_range_m() > orbital.min_range_m:
            first = staged.timings_s
            shared_head = getattr(orbital.model, "stereo_head", None) is getattr(self.model, "stereo_head", None)
            known = None  # the same head's answer, not matched twice
            if shared_head and staged.head_depth is not None:
                known = HeadMatch(staged.head_depth, staged.head_left_right_px, staged.head_matching_scale)
            staged = self._predict_scaled(orbital.model, image_left, image_right, calibration, p, known)
            staged.network = "orbital"
            staged.timings_s = {k: v + first.get(k, 0.0) for k, v in staged.timings_s.items()}
        return staged

    def _predict_scaled(
        self,
        model,
        image_left: np.ndarray,
        image_right: np.ndarray,
        calibration: StereoCalibration | None,
        p: ReconstructionParams,
        head_known: HeadMatch | None = None,
    ) -> ScaledPrediction:
        t0 = time.perf_counter()
        metric_model = getattr(model, "metric_depth", False)
        if getattr(model, "needs_calibration", False) and calibration is not None:
            setattr(model, "calibration", calibration)  # a capability of some models (StereoModel)
        card = getattr(model, "meta", {}).get("card", {})
        size = p.inference_size or int(card.get("inference_size", 512))
        scale_mode = p.scale_mode if p.scale_mode != "auto" else card.get("scale_mode", "predicted")
        rescale = scale_mode != "predicted" and not metric_model
        if rescale and calibration is None:
            raise ValueError(f"scale_mode {scale_mode!r} needs the stereo calibration")
        right_view = rescale and needs_right_view(scale_mode)
        head_future = None
        uses_head = (
            rescale
            and calibration is not None
            and scale_mode in ("stereo", "stereo_local")
            and uses_stereo_head(model, calibration, p.stereo_head)
        )
        if uses_head and head_known is None:
            head = getattr(model, "stereo_head")
            args = (
                head,
                image_left,
                image_right,
                calibration,
                p.stereo_head_min_confidence,
                p.stereo_head_max_size,
                p.stereo_head_left_right_check,
            )
            head_future = _beside_the_network(stereo_head_match, *args)
        try:
            pred = model.predict(image_left, image_right, size=size, right_view=right_view)
        except BaseException:
            if head_future is not None and not head_future.cancel():
                head_future.exception()  # the pair is given up once its head run has ended
            raise
        t1 = time.perf_counter()
        scale: float | np.ndarray = 1.0
        points, fusion_s, head_matched, head_left_right, matching_scale = None, 0.0, None, None, 1.0
        say = None if metric_model else np.zeros(pred.points_left.shape[:2], np.float32)  # the network's points
        scale_path = "metric model" if metric_model else "predicted"
        if rescale and calibration is not None:  # (None was refused above)
            est = reference = head_depth = sparse = None
            sparse_mode = scale_mode
            if scale_mode in ("stereo", "stereo_local"):
                if uses_head:
                    match = head_known if head_future is None else head_future.result()
                    if match is not None:
                        head_depth, head_left_right, matching_scale = match
                if head_depth is not None:
                    head_matched = head_depth
                    reference = coarse_copy(head_depth)
                else:
                    reference = stereo_reference_depth(image_left, image_right, calibration)
                trusted = True
                if not calibration.is_rectified:  # checked against the triangulated matches first
                    sparse = sparse_reference_depth(image_left, image_right, calibration, reference.shape)
                    trusted = reference_agrees_with_matches(reference, sparse)
                if trusted:
                    est = self._scale_to(pred, reference, image_left, image_right, calibration, scale_mode, p)
            matched_sparse = False
            if est is None and reference is not None:  # dense matching failed: triangulated sparse matches
                if sparse is None:
                    sparse = sparse_reference_depth(image_left, image_right, calibration, reference.shape)
                est = self._scale_to(
                    pred,
                    sparse,
                    image_left,
                    image_right,
                    calibration,
                    scale_mode,
                    p,
                    SPARSE_FIELD_MIN_MATCHES / sparse.size,
                    True,
                )
                if est is None:  # too few for a field: one scale from the matches there are
                    est = metric_scale_from_stereo(
                        pred.points_left[..., 2],
                        image_left,
                        image_right,
                        calibration,
                        reference=sparse,
                        min_matched_fraction=SPARSE_MIN_MATCHES / sparse.size,
                    )
                    sparse_mode = "stereo"
                reference = head_depth = None  # no dense reference to fuse with
                matched_sparse = est is not None
            if est is None:  # 'baseline', or too little texture for the matcher
                if pred.points_right is None:
                    pred = model.predict(image_left, image_right, size=size)
                if pred.points_right is None:
                    raise RuntimeError("the model gave no right-view pointmap for the rig's scale")
                est = metric_scale_from_rig(
                    pred.points_right, calibration.K_right, calibration.T_left_from_right, pred.conf_right
                )
                scale_path = "rig"
            else:
                scale_path = f"{sparse_mode} (sparse matches)" if matched_sparse else scale_mode
                if head_depth is not None:
                    scale_path = f"{scale_mode} (stereo head)"
            if scale_path.split(" (")[0] == scale_mode and not matched_sparse and p.stereo_fusion_disparity_px > 0:
                t2 = time.perf_counter()
                fine = head_depth
                if fine is None and reference is not None:
                    fine = fusion_reference_depth(image_left, image_right, calibration, reference, p.stereo_fusion_disparity_px)
                if fine is not None:
                    points, say = fuse_with_matcher(
                        _scaled(pred.points_left, est), fine, calibration, p.stereo_fusion_disparity_px
                    )
                fusion_s = time.perf_counter() - t2
            scale = est
        metric_s = time.perf_counter() - t1
        timings = {"model": t1 - t0, "scale": metric_s - fusion_s, "fusion": fusion_s}
        return ScaledPrediction(
            pred,
            scale,
            timings,
            points,
            scale_path,
            say,
            head_depth=head_matched,
            head_left_right_px=head_left_right,
            head_matching_scale=matching_scale if head_matched is not None else 1.0,
        )

    @staticmethod
    def _scale_to(
        pred: PairPrediction,
        reference: np.ndarray,
        image_left: np.ndarray,
        image_right: np.ndarray,
        calibration: StereoCalibration,
        scale_mode: str,
        p: ReconstructionParams,
        min_matched_fraction: float = 0.02,
        sparse: bool = False,
    ) -> float | np.ndarray | None:
        """The scale (one factor for 'stereo', a field for 'stereo_local') onto ``reference``;
        ``sparse``: the reference is triangulated matches (the field's trend is then a plane)."""
        depth = pred.points_left[..., 2]
        if scale_mode == "stereo":
            return metric_scale_from_stereo(
                depth, image_left, image_right, calibration, reference=reference, min_matched_fraction=min_matched_fraction
            )
        return metric_scale_field_from_stereo(
            depth,
            image_left,
            image_right,
            calibration,
            p.scale_field_sigma,
            reference=reference,
            min_matched_fraction=min_matched_fraction,
            trend="affine" if sparse else "median",
        )

    def finish(
        self,
        staged: ScaledPrediction,
        calibration: StereoCalibration | None,
        up_in_left: np.ndarray | None,
        params: ReconstructionParams | None = None,
        sun_in_left: np.ndarray | None = None,
        image_left: np.ndarray | None = None,
        camera_pose: np.ndarray | None = None,
    ) -> Reconstruction:
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
        slope = hmap = sigma = shadowed = hazard_note = descent_hazard = descent_update = None
        map_s = 0.0  # the landing-site map alone (hazard_map), within "hazard"
        if image_left is not None and blank_image(image_left):
            # nothing in the view to match or to learn from: a network's depth there is a guess
            valid[:] = False
            hazard_note = "no depth: the left image is blank (no texture: in darkness, covered or saturated)"
        points = np.where(valid[..., None], points, np.float32(np.nan)).astype(np.float32, copy=False)
        depth = points[..., 2].copy()
        t2 = time.perf_counter()
        precision = disparity_precision(self.model, p)
        if up_in_left is not None:
            up = normalize(up_in_left)
            if p.compute_hazard and calibration is not None and precision.floor_px + precision.texture_gain > 0:
                # the matcher's precision is stated at the resolution it matched at
                matching_scale = staged.head_matching_scale
                sigma_d: float | np.ndarray = precision.floor_px / matching_scale
                if image_left is not None:
                    sigma_d = precision.sigma_map(image_left, points.shape[:2], matching_scale)
                sigma = stereo_elevation_sigma(points, up, calibration.K_left.fx, calibration.baseline_m, sigma_d)
                sigma = sigma * confidence_sigma_factor(pred.conf_left, valid)
                if staged.matcher_say is not None and max(p.network_sigma_factor, p.unmatched_sigma_factor) > 1:
                    say = staged.matcher_say
                    factor: float | np.ndarray = np.float32(p.network_sigma_factor)
                    if p.unmatched_sigma_factor != p.network_sigma_factor and calibration.is_rectified:
                        unmatched = unmatched_pixels(depth, calibration, staged.head_depth)
                        factor = np.where(unmatched, np.float32(p.unmatched_sigma_factor), factor)
                    sigma = sigma * (say + (1 - say) * factor)
                if staged.head_left_right_px is not None and staged.matcher_say is not None:
                    # the check's disagreement adds to the matcher's precision in quadrature, against
                    # its best (the floor: on bland ground the texture term would mute the check
                    # where the head's mismatches are most frequent; docs/results.md)
                    disagreement = at_shape(staged.head_left_right_px, sigma.shape) * staged.matcher_say
                    sigma = sigma * np.sqrt(1 + (np.nan_to_num(disagreement) / max(precision.floor_px, 1e-3)) ** 2)
            range_m = float(np.median(depth[valid])) if valid.any() else float("nan")
            if p.compute_slope:
                fx = calibration.K_left.fx if calibration is not None else None
                slope = slope_image(points, up, baseline_m=p.slope_baseline_m, fx=fx, median_range_m=range_m)
            if p.compute_hazard and valid.sum() < 3 and hazard_note is None:
                hazard_note = f"no hazard map: {int(valid.sum())} valid points"
            if p.compute_hazard and valid.sum() >= 3:  # invalid points are NaN: hazard_map drops them
                if sun_in_left is not None:
                    shadowed = shadows_of(image_left, points.shape[:2], p.shadow_intensity_fraction)
                # the maps take every step-th row and column, the resolution the pair was matched at
                # (never sparser): a megapixel pair's points between those interpolate the matched ones
                step = max(1, int(1 / staged.head_matching_scale + 1e-6))
                map_points, map_sigma, map_shadowed = points[::step, ::step], sigma, shadowed
                if step > 1:
                    map_sigma = None if sigma is None else sigma[::step, ::step]
                    map_shadowed = None if shadowed is None else shadowed[::step, ::step]
                try:
                    fx = calibration.K_left.fx / step if calibration is not None else float("nan")
                    hazard_params = params_for_range(p.hazard, range_m, fx)
                    single_params, probability_table, call_table = self._calibrated(hazard_params, p, False, range_m)
                    t_map = time.perf_counter()
                    hmap = hazard_map(
                        map_points,
                        up,
                        single_params,
                        elevation_sigma=map_sigma,
                        shadowed=map_shadowed,
                        sun=sun_in_left,
                        calibration=probability_table,
                        call_calibration=call_table,
                        threads=p.map_threads,
                    )
                    map_s = time.perf_counter() - t_map
                except HazardGridError as exc:  # the depth stands; the map says why it is missing
                    hazard_note = str(exc)
                if p.descent_map and camera_pose is not None and map_sigma is not None and hazard_note is None:
                    descent_hazard, descent_update = self._fuse(map_points, map_sigma, camera_pose, hazard_params, p, fx, range_m)
                if hmap is not None and camera_pose is not None:
                    hmap = self.hazard_memory.update(
                        hmap, camera_pose, p.hazard.memory_frames, p.hazard.memory_keyframe_distance_m
                    )
                if descent_hazard is not None and hmap is not None and p.descent.single_frame_fallback:
                    descent_hazard = with_fallback(descent_hazard, hmap)
        t3 = time.perf_counter()
        model_s = staged.timings_s["model"]
        geometry_s = staged.timings_s["scale"] + staged.timings_s.get("fusion", 0.0) + (t2 - t1)
        timings = {
            "model": model_s,
            "geometry": geometry_s,
            "hazard": t3 - t2,
            "hazard_map": map_s,
            "total": model_s + geometry_s + t3 - t2,
        }
        return Reconstruction(
            depth,
            points,
            pred.conf_left.astype(np.float32),
            valid,
            sigma,
            slope,
            hmap,
            scale,
            timings,
            pred,
            shadowed,
            hazard_note,
            staged.scale_path,
            descent_hazard,
            descent_update,
            staged.matcher_say,
            staged.network,
            staged.head_left_right_px,
        )

    def _calibrated(
        self, hazard_params: HazardParams, p: ReconstructionParams, descent_map: bool, range_m: float | None = None
    ) -> tuple[HazardParams, tuple[float, ...] | None, tuple[float, ...] | None]:
        """The model's probability tables for this kind of map (None: raw probabilities), of its
        probabilities and of its call probabilities, and the parameters with its own thresholds
        where ``hazard.safe_below`` / ``hazard.hazard_above`` leave them to the model (a model's
        thresholds hold for its calibrated probabilities only; its safe one at the frame's median
        ``range_m``, per range band where it states them).  A model calibrated without call
        probabilities calls hazards on its probabilities (no relief prior), as it was fitted;
        so does a fused map, which judges its relief on a common sigma."""
        table = model_hazard_calibration(self.model, descent_map) if p.calibrate_hazard else None
        call_table = model_hazard_call_calibration(self.model) if p.calibrate_hazard and not descent_map else None
        stated = table is not None
        if stated and call_table is None:
            hazard_params = dataclasses.replace(hazard_params, relief_prior_m=0.0)
        safe = safe_threshold(p.hazard, model_safe_below(self.model, descent_map, range_m) if stated else None)
        if p.hazard.hazard_above > 0:
            safe = min(safe, p.hazard.hazard_above)
        hazard_params = dataclasses.replace(hazard_params, safe_below=safe)
        if p.hazard.hazard_above == 0:
            source = model_hazard_above(self.model, descent_map) if stated else None
            hazard_params = dataclasses.replace(hazard_params, hazard_above=hazard_threshold(hazard_params, source))
        return hazard_params, table, call_table

    def _fuse(
        self,
        points: np.ndarray,
        sigma: np.ndarray,
        camera_pose: np.ndarray,
        hazard_params: HazardParams,
        p: ReconstructionParams,
        fx: float | None,
        range_m: float | None = None,
    ) -> tuple[HazardMap, DescentUpdate]:
        """Fuse this frame into the stream's descent map and make the landing-site map on it,
        through the model's calibration of fused maps (its single-frame one where it states none):
        a fused cell's probability is sharper than one frame's, so one table cannot serve both."""
        hazard_params, probability_table, _ = self._calibrated(hazard_params, p, True, range_m)
        if self.descent_map is not None and p.hazard.resolution_m == 0:  # cells that follow the range:
            hazard_params = dataclasses.replace(hazard_params, resolution_m=self.descent_map.resolution)  # the first's
        if (
            self.descent_map is None
            or self.descent_map.resolution != hazard_params.resolution_m
            or self.descent_map.params != p.descent
        ):
            self.descent_map = DescentMap(hazard_params.resolution_m, p.descent)
        update = self.descent_map.update(points, sigma, camera_pose, hazard_params.min_points_per_cell, fx, p.map_threads)
        return self.descent_map.hazard_map(camera_pose, hazard_params, probability_table, p.map_threads), update
