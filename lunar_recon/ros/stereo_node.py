"""``stereo_node``: synchronised stereo images in; depth, confidence, point cloud, slope,
hazard grid, hazard overlay, landing site and diagnostics out.

Topics and parameters follow stereo_image_proc where they overlap.  The node only converts
messages, calls :class:`lunar_recon.pipeline.StereoReconstructor` (the same path the offline
tools run) and publishes.  Work runs off the callback thread in two stages, the network and
then geometry + publishing, each on its own thread taking only the newest item (so one pair's
network overlaps the previous pair's geometry); older items are dropped and counted, never
queued without bound.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections import Counter, deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped, QuaternionStamped, Vector3Stamped
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ..geometry.frames import normalize, pose_matrix, up_from_attitude
from ..geometry.descent_map import DescentMapParams
from ..geometry.hazard import HazardParams, fallback_share, median_elevation_sigma
from ..geometry.metric_scale import SCALE_FIELD_SIGMA, STEREO_FUSION_DISPARITY_PX
from ..pipeline import (
    NETWORK_SIGMA_FACTOR,
    SCALE_MODES,
    SHADOW_INTENSITY_FRACTION,
    UNMATCHED_SIGMA_FACTOR,
    ReconstructionParams,
    StereoReconstructor,
    disparity_precision,
    left_right_disagreement,
)
from .conversions import (
    MessageRejected,
    bgr_image_msg,
    float_image_msg,
    grid_map_message_types,
    grid_map_msg,
    image_from_msg,
    occupancy_grid_msg,
    pointcloud2_msg,
    stamp_ns,
    stereo_calibration_from_infos,
    unknown_grid_msg,
)
from .sync import CameraInfoCache, PairMonitor, TimeSynchronizer, make_synchronizer

# The defaults of the science parameters are the dataclasses' (one source): _R, _H, _D.
_R, _H, _D = ReconstructionParams(), HazardParams(), DescentMapParams()

# How long a synchronised image pair waits for the camera_info of its own stamp (camera drivers
# publish it just after the image) before taking the camera's newest (camera_info_sync 'exact_or_latest').
CAMERA_INFO_WAIT_S = 0.1

# name -> (default, description, range or choices)
PARAMETERS: dict[str, tuple] = {
    "model": (
        "default",
        "checkpoint path (any file load_model accepts), an exported .onnx file, 'sgbm', 'sgbm-wls' or "
        "'default' (the shipped student; its orbital network beyond 1 km, range_selected_network)",
        None,
    ),
    "device": ("cpu", "cpu, cuda or auto (CUDA requested without CUDA falls back to CPU)", ("cpu", "cuda", "auto")),
    "inference_size": (
        _R.inference_size,
        "long side of the network input in pixels (0: the model's own; else a multiple of 16)",
        (0, 2048),
    ),
    "confidence_threshold": (0.0, "absolute confidence below which pixels are invalid (MASt3R conf >= 1)", (0.0, 1e6)),
    "confidence_quantile": (0.0, "drop this fraction of each frame's least confident pixels", (0.0, 0.99)),
    "scale_mode": (
        "auto",
        "'predicted' (as the model says), 'baseline' (the right view's pointmap on the "
        "calibrated rig's rays), "
        "'stereo' (median ratio to a matcher's depth: the student's stereo head on a rectified rig, "
        "else a coarse SGBM), 'stereo_local' (a smooth per-pixel scale field from that depth) or "
        "'auto' (the model card's choice)",
        SCALE_MODES,
    ),
    "scale_field_sigma": (
        SCALE_FIELD_SIGMA,
        "'stereo_local': Gaussian sigma of the scale field, fraction of the image width",
        (0.001, 1.0),
    ),
    "stereo_fusion_disparity_px": (
        STEREO_FUSION_DISPARITY_PX,
        "'stereo' / 'stereo_local': pull the points toward "
        "the matcher's (the stereo head's, else a full-resolution SGBM's) where its "
        "disparity is large, halfway at this one (px of the left image); 0: off",
        (0.0, 999.0),
    ),
    "stereo_head": (
        _R.stereo_head,
        "a student with a calibrated-stereo head takes its metric reference and fusion from "
        "it on a rectified rig instead of SGBM",
        None,
    ),
    "stereo_head_max_size": (
        _R.stereo_head_max_size,
        "the stereo head matches a pair whose long side is larger downscaled to this many pixels "
        "(the cost and depth precision of a rig that size with the same field of view; the head's "
        "training resolution, where its stated precision holds); 0: camera resolution",
        (0, 8192),
    ),
    "range_selected_network": (
        _R.range_selected_network,
        "model 'default': pairs whose median range is beyond its orbital network's (its card: 1 km) "
        "take that network, trained on orbital and oblique geometry; false: the primary always",
        None,
    ),
    "stereo_head_min_confidence": (
        _R.stereo_head_min_confidence,
        "head disparities below this match confidence (0-1) are left to the pointmap",
        (0.0, 0.999),
    ),
    "stereo_head_left_right_check": (
        _R.stereo_head_left_right_check,
        "the head also matches the right view (on its features) and widens the hazard noise model "
        "where the two views disagree; the shipped tables are fitted with it on; false: a third "
        "less head time",
        None,
    ),
    "map_threads": (
        _R.map_threads,
        "threads for the landing-site maps' compiled passes (cell statistics, footprint sums, planes, "
        "relief; the same map whatever the count): 2 shortens the map where the pair rate leaves a core "
        "free; 1: the geometry thread alone (at full rate the network and the head fill both cores)",
        (1, 64),
    ),
    "network_sigma_factor": (
        NETWORK_SIGMA_FACTOR,
        "hazard noise model: widening of the points that are the "
        "network's rather than a matcher's (its errors are smooth and it cannot resolve rocks "
        "below its token size); 1: none",
        (1.0, 1000.0),
    ),
    "unmatched_sigma_factor": (
        UNMATCHED_SIGMA_FACTOR,
        "hazard noise model: the same widening for the network's points no matcher matched on a "
        "rectified rig (the left band the right camera does not see; the stereo head's shadows, "
        "occlusions and bland patches); 1: none",
        (1.0, 1000.0),
    ),
    "up_vector": (
        [0.0, 0.0, -1.0],
        "gravity 'up' in the left optical frame when no attitude is received "
        "(nadir camera: [0, 0, -1]; forward camera: [0, -1, 0])",
        None,
    ),
    "use_attitude": (True, "take 'up' from the attitude topic (geometry_msgs/QuaternionStamped) when it publishes", None),
    "sun_vector": (
        [0.0, 0.0, 0.0],
        "direction toward the sun in the left optical frame when none is received "
        "on sun_direction (geometry_msgs/Vector3Stamped); [0, 0, 0]: unknown",
        None,
    ),
    "shadow_intensity_fraction": (
        SHADOW_INTENSITY_FRACTION,
        "with a sun direction: pixels darker than this fraction "
        "of the lit level are shadows, which bound the hazard map's terrain; 0: shadows "
        "unused",
        (0.0, 0.99),
    ),
    "slope_baseline_m": (_R.slope_baseline_m, "physical baseline of the per-pixel slope image (m)", (0.01, 1000.0)),
    "disparity_sigma_px": (
        -1.0,
        "disparity precision of the depth (px, 1 sigma) for the hazard noise model; "
        "-1: the model's own (model card: its floor, widened on bland ground by its texture gain; SGBM "
        "0.11), else one sigma everywhere, 0: off",
        (-1.0, 100.0),
    ),
    "hazard.slope_max_deg": (
        _H.slope_max_deg,
        "largest safe tilt of a site's footprint plane against gravity (deg)",
        (0.1, 89.0),
    ),
    "hazard.roughness_max_m": (
        _H.roughness_max_m,
        "largest safe height above (or depth below) a site's footprint plane (m)",
        (0.001, 100.0),
    ),
    "hazard.footprint_diameter_m": (_H.footprint_diameter_m, "lander footprint diameter (m)", (0.1, 1000.0)),
    "hazard.resolution_m": (
        _H.resolution_m,
        "hazard grid cell size (m); 0: two ground pixels at the pair's median range",
        (0.0, 100.0),
    ),
    "hazard.extent_m": (0.0, "hazard grid side (m); 0 = the points' extent", (0.0, 1e5)),
    "hazard.coverage_min": (_H.coverage_min, "fraction of the footprint with data for a known cell", (0.01, 1.0)),
    "hazard.safe_below": (
        _H.safe_below,
        "a site is certified safe when its hazard probability is below this; 0: the model's own "
        "(its card's, false safe within 1 % on calibration data, per range band where it states them), else 0.05",
        (0.0, 1.0),
    ),
    "hazard.hazard_above": (
        _H.hazard_above,
        "a site is a hazard when its hazard probability is at least this; 0: the model's own "
        "(its card's best-F1 threshold on calibration data), else 0.5",
        (0.0, 1.0),
    ),
    "hazard.memory_frames": (
        _H.memory_frames,
        "maps whose certain hazards fill the current map's unknown cells, this one "
        "included (needs the pose topic); 1: this map alone",
        (1, 100),
    ),
    "hazard.memory_keyframe_distance_m": (
        _H.memory_keyframe_distance_m,
        "camera travel between the maps the memory keeps (m)",
        (0.0, 1e4),
    ),
    "hazard.despike": (
        _H.despike,
        "for the relief, clip each cell's height to the range of its 8 neighbours, where cells are "
        "at most half hazard.roughness_max_m: a lone cell standing out is a depth outlier",
        None,
    ),
    "hazard.landing_margin_m": (
        _H.landing_margin_m,
        "a landing site is proposed only this far from any cell not certified safe (m): "
        "touchdown dispersion and the map's errors at the edge of safe ground",
        (0.0, 1e4),
    ),
    "hazard.relief_prior_m": (
        _H.relief_prior_m,
        "sigma of the terrain's relief about a site's plane (m): a site is called a hazard with each "
        "measured cell's height judged on its posterior under this prior (the largest of many noisy "
        "heights is no rock), and certified safe on the measurements alone; 0: both on the measurements",
        (0.0, 100.0),
    ),
    "descent_map.enabled": (
        _R.descent_map,
        "fuse every frame into one elevation map in the pose topic's world frame and "
        "publish the landing-site map made on it (needs the pose topic)",
        None,
    ),
    "descent_map.window_m": (_D.window_m, "side of the fused map's window, which follows the camera (m)", (1.0, 1e4)),
    "descent_map.gate_sigmas": (
        _D.gate_sigmas,
        "an observation further than this many sigmas from the map is an outlier",
        (0.1, 100.0),
    ),
    "descent_map.reset_distance_m": (
        _D.reset_distance_m,
        "camera travel between two frames that resets the map (a pose jump, m)",
        (0.01, 1e5),
    ),
    "descent_map.pixel_relief": (
        _D.pixel_relief,
        "height error (1 sigma) of an observation per metre of its ground pixel: relief a far frame cannot resolve",
        (0.0, 100.0),
    ),
    "descent_map.levels": (
        _D.levels,
        "resolution levels, cells 1, 2, 4, ... times hazard.resolution_m: an observation updates the finest "
        "whose cell spans descent_map.pixels_per_cell of its ground pixels; empty fine cells read the coarser ones",
        (1, 8),
    ),
    "descent_map.pixels_per_cell": (
        _D.pixels_per_cell,
        "ground pixels an observation's cell must span (chooses its resolution level)",
        (0.1, 100.0),
    ),
    "descent_map.single_frame_fallback": (
        _D.single_frame_fallback,
        "sites the fused map leaves undecided (neither safe nor a hazard) take the current frame's own map's judgement",
        None,
    ),
    "pose_tolerance_seconds": (
        0.05,
        "largest stamp difference between a pair and the pose, attitude and sun direction used for it "
        "(without a pose within it the map has no memory; without such an attitude or sun direction the newest is used)",
        (0.0, 10.0),
    ),
    "pose_wait_seconds": (
        0.1,
        "longest a pair waits for the pose, attitude and sun direction of its stamp when their stream "
        "(one message per frame) is due but not yet here, as tf2's message filter waits for a transform",
        (0.0, 5.0),
    ),
    "approximate_sync": (False, "approximate-time pairing (else exact stamps)", None),
    "approximate_sync_tolerance_seconds": (0.0, "largest stamp difference paired in approximate mode", (0.0, 10.0)),
    "queue_size": (5, "per-topic synchroniser queue", (1, 1000)),
    "camera_info_sync": (
        "exact_or_latest",
        "how camera_info pairs with the images: 'exact_or_latest' (the two images synchronised, "
        "each with its camera's camera_info of the same stamp when that arrived, else the camera's "
        "newest: megapixel images make the transport drop some of the small camera_info messages "
        "between them), 'exact' (all four synchronised by stamp, as image_pipeline's stereo nodes: "
        "for a rig whose calibration changes frame to frame) or 'latest' (always the newest)",
        ("exact_or_latest", "exact", "latest"),
    ),
    "input_qos": (
        "reliable",
        "QoS of the image and camera_info subscriptions, depth queue_size: 'reliable' "
        "(delivers large colour and megapixel images; a best-effort publisher is reported in the "
        "diagnostics and the log), 'sensor_data' (best effort, for best-effort camera drivers; loses "
        "images over ~0.5 MB on localhost) or 'system_default'",
        ("reliable", "sensor_data", "system_default"),
    ),
    "output_qos": (
        "reliable",
        "QoS of the image, cloud and landing-site outputs: 'reliable' (depth 5; every "
        "subscriber gets them) or 'sensor_data' (best effort, depth 5); hazard/grid is always "
        "reliable + transient-local",
        ("reliable", "sensor_data"),
    ),
    "points_decimation": (1, "publish every N-th row and column of the point cloud", (1, 64)),
    "publish_depth": (True, "publish depth/image_rect and depth/camera_info", None),
    "publish_confidence": (True, "publish confidence", None),
    "publish_points": (True, "publish points2", None),
    "publish_slope": (True, "publish slope", None),
    "publish_hazard": (True, "publish hazard/grid, hazard/image and hazard/landing_site", None),
}


def _descriptor(name: str, description: str, rng) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=description)
    default = PARAMETERS[name][0]
    if (
        isinstance(rng, tuple)
        and len(rng) == 2
        and all(isinstance(v, (int, float)) for v in rng)
        and not isinstance(default, bool)
    ):
        if isinstance(default, int):
            d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    elif isinstance(rng, tuple):
        d.additional_constraints = "one of: " + ", ".join(rng)
    return d


def validate_parameters(values: dict) -> None:
    """Raise ValueError naming the first invalid parameter."""
    for name, value in values.items():
        if name not in PARAMETERS:
            continue
        _, _, rng = PARAMETERS[name]
        if isinstance(rng, tuple) and all(isinstance(v, str) for v in rng) and value not in rng:
            raise ValueError(f"parameter {name}={value!r} must be one of {rng}")
        if isinstance(rng, tuple) and len(rng) == 2 and not isinstance(rng[0], str) and not isinstance(value, bool):
            if not (rng[0] <= value <= rng[1]):
                raise ValueError(f"parameter {name}={value} outside [{rng[0]}, {rng[1]}]")
    if "up_vector" in values:
        up = np.asarray(values["up_vector"], dtype=float)
        if up.shape != (3,) or not np.isfinite(up).all() or np.linalg.norm(up) < 1e-9:
            raise ValueError(f"parameter up_vector={list(up)} must be a finite non-zero 3-vector")
    if "sun_vector" in values:
        sun = np.asarray(values["sun_vector"], dtype=float)
        if sun.shape != (3,) or not np.isfinite(sun).all():
            raise ValueError(f"parameter sun_vector={list(sun)} must be a finite 3-vector ([0, 0, 0]: unknown)")


def parameter_table() -> str:
    """The README's parameter reference, made from PARAMETERS (the one source of the node's
    declarations, config/stereo.yaml and this table)."""

    def fmt(v):
        return f"`{v!r}`".replace("'", '"') if isinstance(v, str) else f"`{v}`".replace("True", "true").replace("False", "false")

    rows = ["| parameter | type | default | range | meaning |", "|---|---|---|---|---|"]
    for name, (default, description, rng) in PARAMETERS.items():
        kind = type(default).__name__.replace("str", "string").replace("float", "double").replace("int", "integer")
        kind = "double[]" if isinstance(default, list) else kind
        if isinstance(rng, tuple) and rng and all(isinstance(v, str) for v in rng):
            span = " / ".join(f"`{v}`" for v in rng)
        elif isinstance(rng, tuple):
            span = f"[{rng[0]:g}, {rng[1]:g}]"
        else:
            span = ""
        rows.append(f"| `{name}` | {kind} | {fmt(default)} | {span} | {description.replace('|', '/')} |")
    return "\n".join(rows)


def input_qos(name: str, depth: int) -> QoSProfile:
    """The image and camera_info subscriptions' QoS (parameter ``input_qos``)."""
    reliability = {
        "reliable": ReliabilityPolicy.RELIABLE,
        "sensor_data": ReliabilityPolicy.BEST_EFFORT,
        "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
    }[name]
    return QoSProfile(depth=depth, reliability=reliability)


def output_qos(name: str) -> QoSProfile:
    """The outputs' QoS (parameter ``output_qos``): reliable by default, so ``ros2 topic echo``,
    RViz and recorders get every large cloud; 'sensor_data' for best effort."""
    if name == "sensor_data":
        return QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def unknown_parameters(overrides) -> dict[str, str | None]:
    """Overrides (command line, parameter files) that name no parameter of the node, each with
    the closest parameter name (a typo's likely meaning) or None."""
    import difflib

    known = set(PARAMETERS) | {"use_sim_time", "start_type_description_service"}
    unknown = sorted(n for n in overrides if n not in known and not n.startswith("qos_overrides."))
    return {n: next(iter(difflib.get_close_matches(n, PARAMETERS, n=1, cutoff=0.6)), None) for n in unknown}


def reconstruction_params(v: dict) -> ReconstructionParams:
    """The pipeline parameters of the node's parameter values (sentinels: 0 or -1 for None)."""
    return ReconstructionParams(
        inference_size=int(v["inference_size"]),
        confidence_threshold=v["confidence_threshold"] or None,
        confidence_quantile=v["confidence_quantile"] or None,
        scale_mode=v["scale_mode"],
        scale_field_sigma=v["scale_field_sigma"],
        stereo_fusion_disparity_px=v["stereo_fusion_disparity_px"],
        slope_baseline_m=v["slope_baseline_m"],
        stereo_head=bool(v["stereo_head"]),
        range_selected_network=bool(v["range_selected_network"]),
        stereo_head_min_confidence=v["stereo_head_min_confidence"],
        stereo_head_left_right_check=bool(v["stereo_head_left_right_check"]),
        stereo_head_max_size=int(v["stereo_head_max_size"]),
        map_threads=int(v["map_threads"]),
        network_sigma_factor=v["network_sigma_factor"],
        unmatched_sigma_factor=v["unmatched_sigma_factor"],
        disparity_sigma_px=None if v["disparity_sigma_px"] < 0 else v["disparity_sigma_px"],
        shadow_intensity_fraction=v["shadow_intensity_fraction"],
        hazard=HazardParams(
            slope_max_deg=v["hazard.slope_max_deg"],
            roughness_max_m=v["hazard.roughness_max_m"],
            footprint_diameter_m=v["hazard.footprint_diameter_m"],
            resolution_m=v["hazard.resolution_m"],
            extent_m=v["hazard.extent_m"] or None,
            coverage_min=v["hazard.coverage_min"],
            safe_below=v["hazard.safe_below"],
            hazard_above=v["hazard.hazard_above"],
            memory_frames=int(v["hazard.memory_frames"]),
            memory_keyframe_distance_m=v["hazard.memory_keyframe_distance_m"],
            landing_margin_m=v["hazard.landing_margin_m"],
            despike=bool(v["hazard.despike"]),
            relief_prior_m=v["hazard.relief_prior_m"],
        ),
        descent_map=bool(v["descent_map.enabled"]),
        descent=DescentMapParams(
            window_m=v["descent_map.window_m"],
            gate_sigmas=v["descent_map.gate_sigmas"],
            reset_distance_m=v["descent_map.reset_distance_m"],
            pixel_relief=v["descent_map.pixel_relief"],
            levels=int(v["descent_map.levels"]),
            pixels_per_cell=v["descent_map.pixels_per_cell"],
            single_frame_fallback=bool(v["descent_map.single_frame_fallback"]),
        ),
    )


class StereoNode(Node):
    def __init__(self, **kwargs):
        super().__init__("stereo_node", **kwargs)
        for name, (default, description, rng) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(name, description, rng))
        self.values = {name: self.get_parameter(name).value for name in PARAMETERS}
        validate_parameters(self.values)  # startup: invalid values stop the node with the reason
        self._reconstruction_params().validate()  # and their combinations, before the model loads
        self.unknown_parameters = unknown_parameters(self._parameter_overrides)
        if self.unknown_parameters:  # a typo must not pass silently as the default
            self.get_logger().warning(
                "ignoring unknown parameters: "
                + "; ".join(name + (f" (did you mean {hint}?)" if hint else "") for name, hint in self.unknown_parameters.items())
            )
        self.add_on_set_parameters_callback(self._on_set_parameters)

        from ..models.checkpoint import resolve_device
        from ..models.registry import load_stereo_model, model_label

        self.device = str(resolve_device(self.values["device"]))
        self.model_name = model_label(self.values["model"])
        self.model = load_stereo_model(self.values["model"], self.device)
        self.reconstructor = StereoReconstructor(self.model, self._reconstruction_params())
        from .. import viz
        from ..geometry.hazard import compile_kernels
        from ..models import cost_volume, preprocess

        # before the first pair: the hazard map's, the overlay's, the stereo head's and the network
        # input's compiled kernels
        seconds = compile_kernels() + cost_volume.compile_kernels() + viz.compile_kernels() + preprocess.compile_kernels()
        self.get_logger().info(f"compiled kernels ready ({seconds:.1f} s)")

        image_qos = info_qos = input_qos(self.values["input_qos"], self.values["queue_size"])
        self.rejected: Counter = Counter()
        self.dropped = 0
        self.processed = 0
        self.last_hazard = None  # the last hazard map, for the diagnostics (read at 1 Hz, not per pair)
        self.last_network = "none yet"  # which of the model's networks made the last pair (range selection)
        # the last pair's left-right check and matcher say, for the diagnostics (read at 1 Hz)
        self.last_head_check: tuple = (None, None)
        self.last_hazard_note = None  # why the last pair has no hazard map
        self.descent_resets = 0
        self.latencies: deque = deque(maxlen=100)
        self.in_times: deque = deque(maxlen=100)
        self.out_times: deque = deque(maxlen=100)
        # (stamp ns, up) and (stamp ns, frame_id, unit vector) as received: a pair takes the
        # ones of its own stamp (a later message may arrive while it waits for the network)
        self.attitudes: deque = deque(maxlen=100)
        self.suns: deque = deque(maxlen=100)
        self.poses: deque = deque(maxlen=100)  # (stamp ns, T_world_from_left) from the pose topic
        # Two stages on two threads, each taking only the newest item (older ones are dropped
        # and counted): the network of pair n+1 runs while pair n's geometry is made and published.
        self._slot = None  # newest complete pair waiting for the network
        self._staged = None  # newest network output waiting for the geometry stage
        self._cond = threading.Condition()
        self._stop = False

        topics = [
            ("left/image_rect", Image, image_qos),
            ("left/camera_info", CameraInfo, info_qos),
            ("right/image_rect", Image, image_qos),
            ("right/camera_info", CameraInfo, info_qos),
        ]
        approx = self.values["approximate_sync"]
        slop = self.values["approximate_sync_tolerance_seconds"]
        self.pairs_received = 0
        self.incompatible_qos = 0  # publishers whose QoS cannot reach our subscriptions
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        on_synced = self._on_pair
        # camera_info_sync other than 'exact': only the images are paired; each camera's
        # camera_info (kept here) completes the pair
        self.camera_infos = [CameraInfoCache(2 * self.values["queue_size"]) for _ in range(2)]
        self.camera_info_substitutes = 0  # pairs completed with a newer or older camera_info than their stamp's
        self._waiting_pair = None  # (left, right): images waiting for the camera_info of their stamp
        self._camera_info_timer = None  # 'exact_or_latest': fires once CAMERA_INFO_WAIT_S after a pair starts waiting
        if self.values["camera_info_sync"] != "exact":
            for side, (name, msg_type, qos) in zip((0, 1), (topics[1], topics[3])):
                self.create_subscription(
                    msg_type, name, lambda m, side=side, name=name: self._on_info(side, name, m), qos, event_callbacks=events
                )
            topics = [topics[0], topics[2]]
            on_synced = self._on_image_pair
            if self.values["camera_info_sync"] == "exact_or_latest":
                # armed only while a pair waits: a free-running timer's callbacks cost the
                # executor thread CPU at every tick (docs/results.md)
                self._camera_info_timer = self.create_timer(CAMERA_INFO_WAIT_S, self._camera_info_timeout)
                self._camera_info_timer.cancel()
        self.pair_monitor = PairMonitor([n for n, _, _ in topics], slop if approx else 0.0)
        mf_subs = None
        try:
            import message_filters

            mf_subs = [message_filters.Subscriber(self, t, n, qos_profile=q, event_callbacks=events) for n, t, q in topics]
            for i, sub in enumerate(mf_subs):
                sub.registerCallback(lambda m, i=i: self._on_input(i, m))
        except ImportError:
            pass
        self._sync = make_synchronizer(mf_subs, self.values["queue_size"], on_synced, approx, slop) if mf_subs else None
        if self._sync is None:
            self._sync = TimeSynchronizer(len(topics), self.values["queue_size"], on_synced, slop, approx)

            def deliver(i: int, m) -> None:
                self._on_input(i, m)
                self._sync.add(i, m)

            for i, (name, msg_type, qos) in enumerate(topics):
                self.create_subscription(msg_type, name, lambda m, i=i: deliver(i, m), qos, event_callbacks=events)
        # the navigation streams: (history, subscription); a pair waits for the message of its stamp
        self._navigation = {
            "attitude": (self.attitudes, self.create_subscription(QuaternionStamped, "attitude", self._on_attitude, 10)),
            "sun_direction": (self.suns, self.create_subscription(Vector3Stamped, "sun_direction", self._on_sun, 10)),
            "pose": (self.poses, self.create_subscription(PoseStamped, "pose", self._on_pose, 10)),
        }
        self._gave_up: dict[str, int | None] = {}  # stream -> its newest stamp when a wait for it timed out
        self.navigation_timeouts: Counter = Counter()  # pairs that waited pose_wait_seconds in vain, by stream

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        out = output_qos(self.values["output_qos"])
        self.pub = {
            "depth": self.create_publisher(Image, "depth/image_rect", out),
            "depth_info": self.create_publisher(CameraInfo, "depth/camera_info", out),
            "confidence": self.create_publisher(Image, "confidence", out),
            "points": self.create_publisher(PointCloud2, "points2", out),
            "slope": self.create_publisher(Image, "slope", out),
            "grid": self.create_publisher(OccupancyGrid, "hazard/grid", latched),
            # the map's cell heights and their 1-sigma, laid out as hazard/grid's cells (for RViz)
            "elevation": self.create_publisher(Image, "hazard/elevation", out),
            "elevation_sigma": self.create_publisher(Image, "hazard/elevation_sigma", out),
            "overlay": self.create_publisher(Image, "hazard/image", out),
            "site": self.create_publisher(PointStamped, "hazard/landing_site", out),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        # the descent map as grid_map_msgs/GridMap in the pose topic's world frame, where the
        # message package imports (grid_map is not on PyPI; any ROS 2 install can add it)
        self.grid_map_types = grid_map_message_types()
        if self.grid_map_types is not None:
            self.pub["grid_map"] = self.create_publisher(self.grid_map_types[0], "hazard/grid_map", latched)
        self.world_frame_id = ""  # the pose topic's frame: the descent map's
        self.create_timer(1.0, self._publish_diagnostics)
        self._workers = [
            threading.Thread(target=self._loop, args=(slot, run), name=name, daemon=True)
            for slot, run, name in (
                ("_slot", self._network_stage, "lunar_recon_network"),
                ("_staged", self._geometry_stage, "lunar_recon_geometry"),
            )
        ]
        for w in self._workers:
            w.start()
        self.get_logger().info(
            f"stereo_node ready: model {self.model_name} on {self.device}, {'approximate' if approx else 'exact'} "
            f"image sync, camera_info {self.values['camera_info_sync']}"
        )

    # ---- parameters ------------------------------------------------------------------------------
    def _reconstruction_params(self) -> ReconstructionParams:
        return reconstruction_params(self.values)

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        fixed = {
            "model",
            "device",
            "queue_size",
            "approximate_sync",
            "approximate_sync_tolerance_seconds",
            "input_qos",
            "output_qos",
            "camera_info_sync",
        } & set(changes)
        if fixed and any(changes[k] != self.values[k] for k in fixed):
            return SetParametersResult(successful=False, reason=f"{sorted(fixed)} can only be set at startup")
        merged = {**self.values, **changes}
        try:
            validate_parameters(merged)
            previous, self.values = self.values, merged
            params_obj = self._reconstruction_params()
            params_obj.validate()
        except ValueError as exc:
            if "previous" in locals():
                self.values = previous
            return SetParametersResult(successful=False, reason=str(exc))
        self.reconstructor.params = params_obj
        return SetParametersResult(successful=True)

    # ---- inputs ----------------------------------------------------------------------------------
    def _reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.get_logger().warning(f"rejected input ({reason}): {detail}", throttle_duration_sec=2.0)

    def _on_attitude(self, msg: QuaternionStamped) -> None:
        q = np.array([msg.quaternion.x, msg.quaternion.y, msg.quaternion.z, msg.quaternion.w])
        if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
            self._reject("attitude", "invalid quaternion")
            return
        self.attitudes.append((stamp_ns(msg.header.stamp), up_from_attitude(q)))

    def _on_pose(self, msg: PoseStamped) -> None:
        o, t = msg.pose.orientation, msg.pose.position
        try:
            T = pose_matrix([o.x, o.y, o.z, o.w], [t.x, t.y, t.z])
        except ValueError as exc:
            self._reject("pose", str(exc))
            return
        self.poses.append((stamp_ns(msg.header.stamp), T))
        self.world_frame_id = msg.header.frame_id

    def _nearest(self, history: deque, stamp, or_newest: bool = False) -> tuple | None:
        """The entry of ``history`` (stamp ns first) nearest the pair's stamp, when within
        ``pose_tolerance_seconds`` of it, else the newest (``or_newest``) or None."""
        ns = stamp_ns(stamp)
        entries = list(history)  # the deque is appended on the executor thread
        if not entries:
            return None
        best = min(entries, key=lambda e: abs(e[0] - ns))
        if abs(best[0] - ns) <= self.values["pose_tolerance_seconds"] * 1e9:
            return best
        return entries[-1] if or_newest else None

    def _owes(self, name: str, ns: int) -> bool:
        """Whether navigation stream ``name`` still owes the message of stamp ``ns``: it has a
        publisher, its newest message is older than ``ns`` beyond the tolerance, its next (at its
        own rate, once two are heard) is due by ``ns``, and the last wait for it did not time out
        with nothing new since. A slower stream, or a silent one, owes nothing."""
        history, subscription = self._navigation[name]
        entries = list(history)[-2:]
        newest = entries[-1][0] if entries else None
        if self._gave_up.get(name, -1) == newest:
            return False
        if newest is None:
            return self.count_publishers(subscription.topic_name) > 0
        tol = self.values["pose_tolerance_seconds"] * 1e9
        if ns - newest <= tol:
            return False
        return len(entries) < 2 or newest + (newest - entries[0][0]) <= ns + tol

    def _await_navigation(self, stamp) -> None:
        """Wait (at most ``pose_wait_seconds``) until no navigation stream owes the pair's stamp:
        DDS delivers each topic on its own, so the pair can overtake the attitude sent before it."""
        ns, deadline = stamp_ns(stamp), time.monotonic() + self.values["pose_wait_seconds"]
        names = [n for n in self._navigation if n != "attitude" or self.values["use_attitude"]]
        while owing := [n for n in names if self._owes(n, ns)]:
            if time.monotonic() >= deadline or not self.context.ok():
                for n in owing:
                    entries = list(self._navigation[n][0])
                    self._gave_up[n] = entries[-1][0] if entries else None
                    self.navigation_timeouts[n] += 1
                return
            time.sleep(0.002)

    def _pose(self, stamp) -> np.ndarray | None:
        """The left camera's pose at the pair's stamp (the nearest pose within the tolerance), or
        None: without it the hazard map has no memory."""
        found = self._nearest(self.poses, stamp)
        return None if found is None else found[1]

    def _on_sun(self, msg: Vector3Stamped) -> None:
        v = np.array([msg.vector.x, msg.vector.y, msg.vector.z])
        if not np.isfinite(v).all() or np.linalg.norm(v) < 1e-9:
            self._reject("sun_direction", "invalid vector")
            return
        self.suns.append((stamp_ns(msg.header.stamp), msg.header.frame_id, normalize(v)))

    def _sun(self, image_frame_id: str, stamp) -> np.ndarray | None:
        """Direction toward the sun in the left optical frame: the topic's (the message of the
        pair's stamp, else the newest; when it is in that frame), else the parameter's, else
        None (unknown: shadows unused)."""
        found = self._nearest(self.suns, stamp, or_newest=True)
        if found is not None:
            _, frame_id, v = found
            if frame_id in ("", image_frame_id):
                return v
            self._reject("sun_direction", f"frame {frame_id!r} is not the left image's {image_frame_id!r}")
        v = np.asarray(self.values["sun_vector"], dtype=float)
        return normalize(v) if np.linalg.norm(v) > 1e-9 else None

    def _on_input(self, index: int, msg) -> None:
        try:
            self.pair_monitor.arrived(index, stamp_ns(msg.header.stamp), time.monotonic_ns())
        except (AttributeError, TypeError, ValueError):  # a malformed header: the synchroniser's to reject
            pass

    def _on_incompatible_qos(self, event) -> None:
        self.incompatible_qos += 1
        self.get_logger().warning(
            f"a publisher's QoS is incompatible with input_qos={self.values['input_qos']!r} "
            f"(policy {event.last_policy_kind}): its images never arrive; set input_qos to "
            "match it (e.g. 'sensor_data' for a best-effort camera driver)"
        )

    def _on_info(self, side: int, name: str, msg) -> None:
        self.pair_monitor.count(name)
        self.camera_infos[side].add(msg)
        self._complete_image_pair(timed_out=False)

    def _on_image_pair(self, left, right) -> None:
        """camera_info_sync 'exact_or_latest' / 'latest': a synchronised image pair, completed
        with each camera's camera_info (:meth:`_complete_image_pair`)."""
        self._complete_image_pair(timed_out=True)  # a pair still waiting goes on with the newest camera_info
        self._waiting_pair = (left, right)
        self._complete_image_pair(timed_out=self.values["camera_info_sync"] == "latest")
        if self._waiting_pair is not None and self._camera_info_timer is not None:
            self._camera_info_timer.reset()

    def _complete_image_pair(self, timed_out: bool) -> None:
        """Hand the waiting image pair on with each camera's camera_info of its stamp ('exact_or_latest'),
        as soon as both arrived (drivers publish it just after the image); after
        ``CAMERA_INFO_WAIT_S`` (``timed_out``), or in 'latest', with the newest."""
        if self._waiting_pair is None:
            return
        left, right = self._waiting_pair
        exact_first = self.values["camera_info_sync"] == "exact_or_latest"
        (left_info, left_sub), (right_info, right_sub) = (
            cache.lookup(stamp_ns(image.header.stamp), exact_first) for cache, image in zip(self.camera_infos, (left, right))
        )
        substituted = exact_first and (left_sub or right_sub)
        if substituted and not timed_out:
            return
        self._waiting_pair = None
        if self._camera_info_timer is not None:
            self._camera_info_timer.cancel()
        if left_info is None or right_info is None:
            missing = " and ".join(n for n, m in (("left", left_info), ("right", right_info)) if m is None)
            self._reject("no_camera_info", f"an image pair arrived before any {missing} camera_info")
            return
        self.camera_info_substitutes += int(substituted)
        self._on_pair(left, left_info, right, right_info)

    def _camera_info_timeout(self) -> None:
        # armed when the waiting pair arrived, so this is its CAMERA_INFO_WAIT_S
        if self._camera_info_timer is not None:
            self._camera_info_timer.cancel()
        self._complete_image_pair(timed_out=True)

    def _on_pair(self, left, left_info, right, right_info) -> None:
        self.in_times.append(time.monotonic())
        self.pairs_received += 1
        with self._cond:
            if self._slot is not None:
                self.dropped += 1  # the network is busy: the newer pair replaces the waiting one
            self._slot = (left, left_info, right, right_info, time.monotonic())
            self._cond.notify_all()

    def _up(self, stamp) -> np.ndarray:
        """Gravity 'up' in the left optical frame: the attitude of the pair's stamp (else the
        newest) when ``use_attitude``, else the parameter's."""
        found = self._nearest(self.attitudes, stamp, or_newest=True) if self.values["use_attitude"] else None
        if found is not None:
            return found[1]
        return normalize(self.values["up_vector"])

    # ---- workers ---------------------------------------------------------------------------------
    def _loop(self, slot: str, run) -> None:
        """Wait for the newest item in ``self.<slot>``, take it, ``run`` it; until stopped."""
        while True:
            with self._cond:
                while getattr(self, slot) is None and not self._stop:
                    self._cond.wait(timeout=0.5)
                if self._stop:
                    return
                item = getattr(self, slot)
                setattr(self, slot, None)
            if not self.context.ok():
                return
            try:
                run(*item)
            except MessageRejected as exc:
                self._reject(exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad frame never stops the node
                if not self.context.ok():
                    return  # shutting down
                self._reject("processing", f"{type(exc).__name__}: {exc}")

    def _wanted(self) -> dict[str, bool]:
        v, n = self.values, lambda k: self.pub[k].get_subscription_count() > 0
        return {
            "depth": v["publish_depth"] and (n("depth") or n("depth_info")),
            "confidence": v["publish_confidence"] and n("confidence"),
            "points": v["publish_points"] and n("points"),
            "slope": v["publish_slope"] and n("slope"),
            "grid": v["publish_hazard"] and n("grid"),
            "elevation": v["publish_hazard"] and (n("elevation") or n("elevation_sigma")),
            "overlay": v["publish_hazard"] and n("overlay"),
            "site": v["publish_hazard"] and n("site"),
            "grid_map": v["publish_hazard"] and "grid_map" in self.pub and n("grid_map"),
        }

    def _network_stage(self, left, left_info, right, right_info, t_arrival) -> None:
        img_l, img_r = image_from_msg(left), image_from_msg(right)
        if img_l.shape[:2] != img_r.shape[:2]:
            raise MessageRejected("size_mismatch", f"left {img_l.shape[:2]} vs right {img_r.shape[:2]}")
        calib = stereo_calibration_from_infos(left_info, right_info, img_l.shape[:2])
        want = self._wanted()
        if not any(want.values()):
            return  # nobody listens: compute nothing
        hazard = any(want[k] for k in ("grid", "elevation", "overlay", "site", "grid_map"))
        params = dataclasses.replace(self.reconstructor.params, compute_slope=want["slope"], compute_hazard=hazard)
        staged = self.reconstructor.predict_scaled(img_l, img_r, calib, params)
        self._await_navigation(left.header.stamp)
        with self._cond:
            if self._staged is not None:
                self.dropped += 1  # the geometry stage is busy: the newer pair replaces the waiting one
            self._staged = (
                staged,
                left,
                left_info,
                img_l,
                calib,
                params,
                want,
                self._up(left.header.stamp),
                self._sun(left.header.frame_id, left.header.stamp),
                self._pose(left.header.stamp),
                t_arrival,
            )
            self._cond.notify_all()

    def _geometry_stage(self, staged, left, left_info, img_l, calib, params, want, up, sun, pose, t_arrival) -> None:
        rec = self.reconstructor.finish(staged, calib, up, params, sun_in_left=sun, image_left=img_l, camera_pose=pose)
        self.last_network = rec.network
        self.last_head_check = (rec.head_left_right_px, rec.matcher_say)
        h = left.header
        if want["depth"]:
            self.pub["depth"].publish(float_image_msg(Image, h, rec.depth))
            info = CameraInfo()
            info.header, info.height, info.width = h, left_info.height, left_info.width
            info.distortion_model, info.d, info.k, info.r, info.p = (
                left_info.distortion_model,
                left_info.d,
                left_info.k,
                left_info.r,
                left_info.p,
            )
            self.pub["depth_info"].publish(info)
        if want["confidence"]:
            self.pub["confidence"].publish(float_image_msg(Image, h, rec.confidence))
        if want["points"]:
            intensity = img_l if img_l.ndim == 2 else img_l.mean(axis=2)
            self.pub["points"].publish(
                pointcloud2_msg(
                    PointCloud2, PointField, h, rec.points, intensity.astype(np.float32), self.values["points_decimation"]
                )
            )
        if want["slope"] and rec.slope_deg is not None:
            self.pub["slope"].publish(float_image_msg(Image, h, rec.slope_deg))
        self.last_hazard_note = rec.hazard_note
        if rec.hazard is None and params.compute_hazard and want["grid"]:
            self.pub["grid"].publish(unknown_grid_msg(OccupancyGrid, h, params.hazard.resolution_m or 1.0))
            if rec.hazard_note is None:
                self.last_hazard_note = "no hazard map: no gravity 'up' (attitude topic or up_vector)"
        if rec.descent_update is not None and rec.descent_update.reset:
            self.descent_resets += 1
            self.get_logger().warning("the pose jumped: the descent map was reset")
        # with the descent map on and a pose, the fused map is the one published
        hmap = rec.descent_hazard if rec.descent_hazard is not None else rec.hazard
        if want["grid_map"] and rec.descent_hazard is not None and pose is not None and self.grid_map_types:
            world = type(h)(stamp=h.stamp, frame_id=self.world_frame_id)
            self.pub["grid_map"].publish(grid_map_msg(*self.grid_map_types, world, rec.descent_hazard, pose[:3, 3]))
        if hmap is not None:
            self.last_hazard = hmap
            if want["grid"]:
                self.pub["grid"].publish(occupancy_grid_msg(OccupancyGrid, h, hmap))
            if want["elevation"]:
                self.pub["elevation"].publish(float_image_msg(Image, h, hmap.elevation_m))
                sigma = hmap.elevation_sigma_m if hmap.elevation_sigma_m is not None else np.zeros(hmap.shape, np.float32)
                self.pub["elevation_sigma"].publish(float_image_msg(Image, h, sigma))
            if want["overlay"]:
                from ..viz import hazard_overlay

                self.pub["overlay"].publish(bgr_image_msg(Image, h, hazard_overlay(img_l, rec.points, hmap)))
            if want["site"] and hmap.landing_site is not None:
                site = PointStamped()
                site.header = h
                site.point.x, site.point.y, site.point.z = (float(v) for v in hmap.landing_site.position_input)
                self.pub["site"].publish(site)
        self.processed += 1
        now = time.monotonic()
        self.out_times.append(now)
        self.latencies.append(now - t_arrival)

    # ---- diagnostics -----------------------------------------------------------------------------
    @staticmethod
    def _rate(times: deque) -> float:
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def _publish_diagnostics(self) -> None:
        st = DiagnosticStatus(name="lunar_recon: stereo_node", hardware_id=self.device)
        st.level = DiagnosticStatus.OK if not self.rejected else DiagnosticStatus.WARN
        st.message = f"{self.processed} pairs processed"
        lat = sorted(self.latencies)
        precision = disparity_precision(self.model, self.reconstructor.params)
        values = {
            "model": self.model_name,
            "network": self.last_network,
            "device": self.device,
            "processed_pairs": self.processed,
            "disparity_sigma_px": precision.floor_px,  # the floor, on well-textured ground
            "disparity_sigma_texture_gain": precision.texture_gain,
            # the map's resolving power: 1-sigma of a cell's height (NaN without a noise model)
            "hazard_elevation_sigma_m": float("nan") if self.last_hazard is None else median_elevation_sigma(self.last_hazard),
            # the head's matches of the last pair whose left-right check disagrees by more than
            # LEFT_RIGHT_HEALTH_PX: a few percent on a sound rig; rectification drift raises it
            "stereo_head_left_right_disagreeing": left_right_disagreement(*self.last_head_check),
            "hazard_memory_maps": len(self.reconstructor.hazard_memory),
            "hazard_status": self.last_hazard_note or "ok",
            # the probabilities at which the last map certified a site safe and called a hazard
            # (hazard.safe_below / hazard.hazard_above, or the model's own)
            "safe_below": float("nan") if self.last_hazard is None else self.last_hazard.params.safe_below,
            "hazard_above": float("nan") if self.last_hazard is None else self.last_hazard.params.hazard_above,
            "descent_map_resets": self.descent_resets,
            # of the last fused map's decided sites, the share the current frame's own map decided
            # (descent_map.single_frame_fallback): near 1 at altitude, falling as the map takes over
            "descent_map_single_frame_share": fallback_share(self.last_hazard),
            "unknown_parameters": ", ".join(self.unknown_parameters) or "none",
            "sun_direction": "topic"
            if self.suns
            else "parameter"
            if np.linalg.norm(self.values["sun_vector"]) > 1e-9
            else "unknown (shadows unused)",
            "pairs_received": self.pairs_received,
            "incomplete_pairs": self.pair_monitor.incomplete,
            "incomplete_pairs_missing": ", ".join(f"{k}: {v}" for k, v in self.pair_monitor.missing.items() if v) or "none",
            "incompatible_qos_events": self.incompatible_qos,
            "camera_info_sync": self.values["camera_info_sync"],
            "camera_info_substitutes": self.camera_info_substitutes,
            **{f"navigation_timeouts.{n}": c for n, c in list(self.navigation_timeouts.items())},
            "messages_received": ", ".join(f"{k}: {v}" for k, v in self.pair_monitor.received.items()),
            "dropped_pairs": self.dropped,
            "dropped_messages_sync": getattr(self._sync, "dropped", 0),
            "rejected_messages": sum(self.rejected.values()),
            "latency_ms_p50": 1e3 * lat[len(lat) // 2] if lat else float("nan"),
            "input_rate_hz": self._rate(self.in_times),
            "output_rate_hz": self._rate(self.out_times),
        }
        values.update({f"rejected.{k}": v for k, v in self.rejected.items()})
        st.values = [
            KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in values.items()
        ]  # thresholds exact
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.pub["diagnostics"].publish(arr)

    def destroy_node(self):
        # Also called by rclpy's shutdown on a node whose __init__ failed part-way (bad
        # parameters, a missing model): stop only what was started.
        cond = getattr(self, "_cond", None)
        if cond is not None:
            with cond:
                self._stop = True
                cond.notify_all()
        for w in getattr(self, "_workers", ()):
            w.join(timeout=5)
        return super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = StereoNode()
    except Exception as exc:  # noqa: BLE001 - bad parameters or model: a clear message, non-zero exit
        print(f"stereo_node: cannot start: {exc}", file=sys.stderr)
        if rclpy.ok():
            rclpy.shutdown()
        return 1
    from rclpy.executors import SingleThreadedExecutor

    # Callbacks only convert, synchronise and hand over (inference has its own thread), so one
    # executor thread is enough; rclpy's MultiThreadedExecutor kept a core busy (measured 100%)
    # polling its wait set, which the network then lacked.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under ros2 launch reaches the node twice (the terminal's process group, then
        # launch's own SIGINT): the second must not break the clean shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
