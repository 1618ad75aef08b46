"""The evaluation runner (ROS-free): frames from rosbag2 recordings or dataset folders, each
model through the node's own pipeline -- one ``StereoReconstructor`` per model and sequence, as
the node runs one per camera stream, so its hazard memory and descent map carry over a
sequence -- scored beside the references (SGBM, the ideal matcher, a constant depth).
``lunar-recon evaluate-bag`` parses its options and writes the report; the live replay into a
running node (``ros.replay``) is scored here too."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry.descent_map import DescentMapParams
from ..geometry.hazard import HazardParams
from ..geometry.metric_scale import STEREO_FUSION_DISPARITY_PX
from ..geometry.shadows import SHADOW_INTENSITY_FRACTION
from .scoring import (
    FrameScore,
    disparity_error_samples,
    frame_score,
    hazard_on_truth_cells,
    score_frame,
)

# The reference rows every report carries unless told not to: the classical matcher and the
# ideal matcher at the disparity precision measured for the shipped student and SGBM.
DEFAULT_CEILING_PX = 0.1
CONSTANT_LABEL = "constant depth (true median)"
LIVE_LABEL = "stereo_node (live)"


@dataclass
class EvaluationOptions:
    """How frames are read, reconstructed and scored (``lunar-recon evaluate-bag``'s options,
    same names; defaults as the node's)."""

    namespace: str = ""  # topic namespace of the bags (and of the node, live)
    max_frames: int = 0  # per input; 0: all
    split: str | None = None  # of a dataset folder; None: test where it has one
    inference_size: int = 0
    scale_mode: str = "auto"
    stereo_fusion_disparity: float = STEREO_FUSION_DISPARITY_PX
    stereo_head_max_size: int | None = None  # None: the pipeline's
    shadow_fraction: float = SHADOW_INTENSITY_FRACTION
    hazard_resolution: float = 0.0  # 0: the truth's cells
    network_sigma_factor: float | None = None  # None: the pipeline's
    unmatched_sigma_factor: float | None = None  # None: the pipeline's
    no_left_right_check: bool = False  # the stereo head without its left-right check
    disparity_sigma: float | None = None  # None: the model's own
    hazard_footprint: float = HazardParams().footprint_diameter_m
    hazard_safe_below: float = HazardParams().safe_below
    hazard_above: float = HazardParams().hazard_above
    hazard_memory: int = HazardParams().memory_frames
    hazard_memory_keyframe_distance: float = HazardParams().memory_keyframe_distance_m
    hazard_landing_margin: float = HazardParams().landing_margin_m
    hazard_relief_prior: float = HazardParams().relief_prior_m
    descent_map: bool = False
    descent_pixel_relief: float = DescentMapParams().pixel_relief
    descent_levels: int = DescentMapParams().levels
    fit_hazard_calibration: bool = False  # raw probabilities, and the tables fitted on them
    fit_disparity_precision: bool = False
    no_references: bool = False
    stereo_ceiling: list[float] = field(default_factory=list)
    figures: int = 2  # example figures per model and input

    @classmethod
    def from_namespace(cls, ns) -> "EvaluationOptions":
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


@dataclass
class EvaluationRun:
    """What an evaluation produced: every frame's scores, the example figures, notes for the
    report, and (with ``fit_disparity_precision``) each model's error samples."""

    scores: list[FrameScore] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    precision_samples: dict[str, list] = field(default_factory=dict)


def hazard_params_for(opts: EvaluationOptions, truth_h):
    """The hazard parameters of one frame's evaluation (the truth's cell size unless given), set
    on the truth's map too, and the truth's map -- None, with the reason, where the footprint
    would span under two of its cells (orbital truth at metres per cell): the frame's depth is
    scored all the same."""
    from ..geometry.hazard import HazardParams

    params = HazardParams(
        resolution_m=opts.hazard_resolution or (truth_h.resolution if truth_h else 0.0),
        footprint_diameter_m=opts.hazard_footprint,
        safe_below=opts.hazard_safe_below,
        hazard_above=opts.hazard_above,
        memory_frames=opts.hazard_memory,
        memory_keyframe_distance_m=opts.hazard_memory_keyframe_distance,
        landing_margin_m=opts.hazard_landing_margin,
        relief_prior_m=opts.hazard_relief_prior,
    )
    try:
        params.validate()
    except ValueError as exc:
        if truth_h is None:
            raise
        return dataclasses.replace(params, resolution_m=0.0), None, f"hazard truth not scored ({exc})"
    if truth_h is not None:
        truth_h.params = params
    return params, truth_h, None


def score_depth(depth, fr, truth_h, params, sigma_d: float, memories: dict, key):
    """Scores of a depth image of the left camera made into a hazard map as the pipeline makes
    it (the rig's noise model at ``sigma_d`` px, 0: none; the same stream's hazard memory)."""
    from .scoring import score_frame
    from ..geometry.camera import depth_to_points
    from ..geometry.hazard import hazard_map
    from ..geometry.hazard_memory import HazardMemory
    from ..geometry.stereo import stereo_elevation_sigma

    pts = depth_to_points(depth, fr.K_left)
    up = fr.up_left
    sigma = (
        stereo_elevation_sigma(pts, up, fr.K_left.fx, fr.baseline_m, sigma_d)
        if sigma_d > 0 and up is not None and fr.baseline_m
        else None
    )
    pred_h = None
    if truth_h is not None and up is not None and np.isfinite(pts[..., 2]).sum() >= 3:
        pred_h = hazard_map(pts, up, params, elevation_sigma=sigma)
        if fr.T_world_from_left is not None:
            pred_h = memories.setdefault(key, HazardMemory()).update(
                pred_h, fr.T_world_from_left, params.memory_frames, params.memory_keyframe_distance_m
            )
    return score_frame(depth, pts, fr.depth_left, truth_h, up, params, sigma, fr.focal_baseline, hazard_pred=pred_h)


def ceiling_label(sigma_px: float) -> str:
    return f"ideal stereo, {sigma_px:g} px"


def score_ceiling(sigma_px: float, seq: str, i: int, fr, truth_h, params, memories: dict) -> tuple[str, dict] | str:
    """The ideal matcher's scores on one frame (see ``evaluation.ideal_stereo_depth``), or why
    it cannot be scored there.  Seeded by the frame, so a report is reproducible."""
    from .scoring import ideal_stereo_depth

    label = ceiling_label(sigma_px)
    fb = fr.focal_baseline
    if fr.depth_left is None or not fb:
        return f"{seq} frame {i} ({label}): skipped (needs ground-truth depth and a rectified rig)"
    rng = np.random.default_rng([i, round(sigma_px * 1e6), sum(map(ord, seq))])
    depth = ideal_stereo_depth(fr.depth_left, fb, sigma_px, rng)
    return label, score_depth(depth, fr, truth_h, params, sigma_px, memories, (label, seq))


def frames_of(path: Path, namespace: str, max_frames: int, split: str | None = None):
    """(sequence name, index, StereoFrame) of a bag or a dataset folder."""
    from ..data.rosbag import read_stereo_bag

    if (path / "metadata.yaml").exists():
        for i, fr in enumerate(read_stereo_bag(path, namespace)):
            if max_frames and i >= max_frames:
                break
            yield path.name, i, fr
        return
    from ..data.dataset import StereoDataset

    ds = StereoDataset(path, split=split or ("test" if (path / "test").is_dir() else None))
    for i in range(len(ds)):
        if max_frames and i >= max_frames:
            break
        # independent pairs, each in its own world: no navigation pose links them (the hazard
        # memory and the descent map are for sequences), stamped by their index
        yield path.name, i, dataclasses.replace(ds[i], stamp_ns=i, T_world_from_left=None)


def truth_of(fr, params: HazardParams):
    """The frame's landing-site truth judged with ``params``, or None."""
    h = fr.truth.hazard
    return None if h is None else dataclasses.replace(h, params=params)


def run_offline(opts: EvaluationOptions, inputs: list[Path], models: list[tuple], out: Path) -> EvaluationRun:
    """Every frame of every input through each ``(label, model)`` (the node's pipeline), the
    references beside (unless ``opts.no_references``), example figures into ``out``."""
    from ..pipeline import UNMATCHED_SIGMA_FACTOR, NETWORK_SIGMA_FACTOR, ReconstructionParams, StereoReconstructor
    from ..viz import example_figure
    from ..geometry.camera import depth_to_points

    ceilings = list(opts.stereo_ceiling)
    if not opts.no_references:
        ceilings = ceilings or [DEFAULT_CEILING_PX]
    run = EvaluationRun()
    scores, figures, notes, precision_samples = run.scores, run.figures, run.notes, run.precision_samples
    memories: dict = {}  # (ideal matcher, sequence) -> its recent maps of the sequence
    # One reconstructor per model and sequence, as a node runs one per camera stream: its hazard
    # memory carries over the sequence's frames.
    reconstructors: dict = {}
    from ..progress import progress

    for path in inputs:
        try:
            frames = list(frames_of(path, opts.namespace, opts.max_frames, opts.split))
        except Exception as exc:  # noqa: BLE001 - a bad input is reported, the others still run
            from ..data.rosbag import BagError

            if isinstance(exc, BagError):
                raise
            notes.append(f"{path}: skipped ({exc})")
            continue
        for seq, i, fr in progress(frames, desc=f"evaluate {path.name}", unit="frame"):
            for err in fr.notes:
                notes.append(f"{seq}: {err}")
            truth_h = truth_of(fr, HazardParams())
            params, truth_h, why = hazard_params_for(opts, truth_h)
            if why and why not in notes:
                notes.append(why)
            reference = fr.depth_left
            this_frame: list[tuple] = []  # (score, model, depth) of every model on this frame
            for m_idx, (label, model) in enumerate(models):
                rec = reconstructors.get((label, seq))
                if rec is None or rec.params.hazard != params:
                    rec = reconstructors[(label, seq)] = StereoReconstructor(
                        model,
                        ReconstructionParams(
                            inference_size=opts.inference_size,
                            scale_mode=opts.scale_mode,
                            stereo_fusion_disparity_px=opts.stereo_fusion_disparity,
                            stereo_head_max_size=(
                                ReconstructionParams().stereo_head_max_size
                                if opts.stereo_head_max_size is None
                                else opts.stereo_head_max_size
                            ),
                            disparity_sigma_px=opts.disparity_sigma,
                            shadow_intensity_fraction=opts.shadow_fraction,
                            network_sigma_factor=(
                                NETWORK_SIGMA_FACTOR if opts.network_sigma_factor is None else opts.network_sigma_factor
                            ),
                            stereo_head_left_right_check=not opts.no_left_right_check,
                            unmatched_sigma_factor=(
                                UNMATCHED_SIGMA_FACTOR if opts.unmatched_sigma_factor is None else opts.unmatched_sigma_factor
                            ),
                            hazard=params,
                            calibrate_hazard=not opts.fit_hazard_calibration,
                            descent_map=opts.descent_map,
                            # a fit calibrates the fused map's own probabilities: no single-frame fallback
                            descent=DescentMapParams(
                                pixel_relief=opts.descent_pixel_relief,
                                levels=opts.descent_levels,
                                single_frame_fallback=not opts.fit_hazard_calibration,
                            ),
                        ),
                    )
                t0 = time.perf_counter()
                try:
                    r = rec.reconstruct(
                        fr.left, fr.right, fr.calibration, fr.up_left, fr.sun_left, camera_pose=fr.T_world_from_left
                    )
                except Exception as exc:  # noqa: BLE001 - a corrupt frame is reported and skipped
                    notes.append(f"{seq} frame {i} ({label}): skipped ({type(exc).__name__}: {exc})")
                    continue
                latency = time.perf_counter() - t0
                if r.hazard_note is not None and truth_h is not None or (r.hazard_note and i == 0):
                    notes.append(f"{seq} frame {i} ({label}): {r.hazard_note}")
                if reference is None and m_idx == 0:
                    reference = r.depth  # no ground truth: score against the first model
                metrics = score_frame(
                    r.depth,
                    r.points,
                    reference if (m_idx > 0 or fr.depth_left is not None) else None,
                    truth_h,
                    fr.up_left,
                    params,
                    r.elevation_sigma,
                    fr.focal_baseline,
                    hazard_pred=r.hazard,
                    make_hazard=r.hazard_note is None,  # the pipeline's map, or its reason for none
                )
                if getattr(model, "orbital", None) is not None:  # the share of frames its orbital network made
                    metrics["orbital_network"] = float(r.network == "orbital")
                scores.append(frame_score(seq, label, i, int(fr.stamp_ns), latency, metrics))
                this_frame.append((scores[-1], model, r.depth))
                fb = fr.focal_baseline
                if opts.fit_disparity_precision and fr.depth_left is not None and fb:
                    matched = None if r.matcher_say is None else r.matcher_say >= 0.99
                    precision_samples.setdefault(label, []).append(
                        disparity_error_samples(r.depth, fr.depth_left, fb, fr.left, matched, seed=len(scores))
                    )
                if opts.descent_map and r.descent_hazard is not None:
                    fused = score_frame(
                        r.depth,
                        r.points,
                        fr.depth_left,
                        truth_h,
                        fr.up_left,
                        params,
                        focal_baseline=fr.focal_baseline,
                        hazard_pred=r.descent_hazard,
                    )
                    scores.append(frame_score(seq, descent_map_label(label), i, int(fr.stamp_ns), latency, fused))
                    if r.descent_update is not None and r.descent_update.reset:
                        notes.append(f"{seq} frame {i} ({label}): the pose jumped; the descent map was reset")
                if example_wanted(i, len(frames), opts.figures):
                    shown = r.hazard if truth_h is None or r.hazard is None else hazard_on_truth_cells(r.hazard, truth_h)
                    figures.append(
                        example_figure(
                            out / f"example_{safe_name(label)}_{safe_name(seq)}_{i}.png",
                            fr.left,
                            r.depth,
                            fr.depth_left,
                            r.slope_deg,
                            shown,
                            truth_h,
                            r.points,
                            f"{label} on {seq}, frame {i}",
                        )
                    )
            score_on_matcher_pixels(this_frame, fr.depth_left)
            if not opts.no_references and fr.depth_left is not None and np.isfinite(fr.depth_left).any():
                # the guess that needs no images: every pixel at the true median depth
                constant = np.where(np.isfinite(fr.depth_left), np.float32(np.nanmedian(fr.depth_left)), np.float32(np.nan))
                scores.append(
                    frame_score(
                        seq,
                        CONSTANT_LABEL,
                        i,
                        int(fr.stamp_ns),
                        float("nan"),
                        score_frame(constant, depth_to_points(constant, fr.K_left), fr.depth_left, None, None, params),
                    )
                )
            for sigma_px in ceilings:
                scored = score_ceiling(sigma_px, seq, i, fr, truth_h, params, memories)
                if isinstance(scored, str):
                    notes.append(scored)
                else:  # no latency: it is not a method that runs
                    scores.append(frame_score(seq, scored[0], i, int(fr.stamp_ns), float("nan"), scored[1]))
    return run


def with_node_thresholds(params, diagnostics: dict):
    """``params`` with the probabilities at which the running node certified a site safe and
    called a hazard (its diagnostics' ``safe_below`` and ``hazard_above``: its model's own) where
    ``params`` leave them to the depth source (0): a published grid carries probabilities, not
    the node's classes."""

    def stated(key: str) -> float:
        try:
            value = float(diagnostics.get(key, "nan"))
        except ValueError:
            return float("nan")
        return value if 0 < value <= 1 else float("nan")

    safe, above = stated("safe_below"), stated("hazard_above")
    if params.safe_below == 0 and np.isfinite(safe):
        params = dataclasses.replace(params, safe_below=safe)
    if params.hazard_above == 0 and np.isfinite(above) and params.safe_below <= above:
        params = dataclasses.replace(params, hazard_above=above)
    return params


def score_live(opts: EvaluationOptions, sent: dict, answers: dict, diagnostics: dict, out: Path) -> EvaluationRun:
    """Scores of what a running stereo_node answered (``ros.replay.LiveReplay``): ``sent``
    maps each stamp to ``(sequence, index, frame)``, ``answers`` each stamp to its Answer."""
    from ..viz import example_figure
    from ..geometry.hazard import hazard_map_from_grid
    from ..geometry.camera import depth_to_points

    run = EvaluationRun()
    scores, figures, notes = run.scores, run.figures, run.notes
    memories: dict = {}  # the node's stream: the maps made from its depth remember as its own do
    kv = diagnostics
    # The node's hazard map uses its model's disparity precision; score with the same.
    sigma_d = opts.disparity_sigma if opts.disparity_sigma is not None else float(kv.get("disparity_sigma_px", 0))
    for stamp, (seq, i, fr) in sorted(sent.items()):
        answer = answers[stamp]
        if answer.depth is None:
            continue
        depth = answer.depth
        truth_h = truth_of(fr, HazardParams())
        params, truth_h, _ = hazard_params_for(opts, truth_h)
        params = with_node_thresholds(params, kv)
        if answer.grid is not None and truth_h is not None:
            cost, resolution, origin, orientation = answer.grid
            published = hazard_map_from_grid(cost, resolution, origin, orientation, params)[0]
            metrics = score_frame(
                depth,
                depth_to_points(depth, fr.K_left),
                fr.depth_left,
                truth_h,
                fr.up_left,
                params,
                focal_baseline=fr.focal_baseline,
                hazard_pred=published,
            )
        else:  # no grid arrived for this pair: the depth it published, made into a map as the node would
            metrics = score_depth(depth, fr, truth_h, params, sigma_d, memories, seq)
            notes.append(f"{seq} frame {i}: no hazard/grid received; scored a map made from its depth")
        scores.append(frame_score(seq, LIVE_LABEL, i, stamp, answer.received_s - answer.sent_s, metrics))
        if example_wanted(i, len(sent), opts.figures):
            pts = depth_to_points(depth, fr.K_left)
            figures.append(
                example_figure(
                    out / f"example_live_{safe_name(seq)}_{i}.png",
                    fr.left,
                    depth,
                    fr.depth_left,
                    answer.slope,
                    None,
                    truth_h,
                    pts,
                    f"stereo_node (live) on {seq}, frame {i}",
                )
            )
    return run


def score_on_matcher_pixels(frame_scores: list[tuple], depth_true) -> None:
    """Every model's AbsRel over the pixels SGBM matched on the same frame (SGBM's own AbsRel is
    over those), when SGBM ran: the fair comparison with a matcher that leaves holes."""
    from ..geometry.metrics import depth_metrics

    matcher = next((d for _, m, d in frame_scores if getattr(m, "name", None) == "sgbm"), None)
    if matcher is None or depth_true is None:
        return
    matched = np.isfinite(matcher) & (matcher > 0)
    for score, _, depth in frame_scores:
        score.metrics["depth_abs_rel_sgbm_matched"] = depth_metrics(depth, depth_true, matched)["abs_rel"]


def descent_map_label(label: str) -> str:
    """The report's name for a model's fused descent map."""
    return f"{label} + descent map"


def write_calibration(path: Path, scores, labels: list[str]) -> None:
    """Each model's fitted hazard-probability calibration table (card ``hazard_calibration``;
    where its maps have call probabilities, theirs too: ``hazard_call_calibration``),
    the calibrated (call) probability at which calling a hazard gives the best F1 (card
    ``hazard_above``) and the one below which certifying a site keeps the false-safe share
    within budget (card ``hazard_safe_below``), from its frames' raw reliability counts; the
    same for its descent map (under :func:`descent_map_label`; card keys prefixed
    ``descent_map_``) where the run fused one, whose safe threshold is bounded over resampled
    sequences rather than frames."""
    import json

    from ..geometry.hazard import (
        fit_hazard_threshold,
        fit_probability_calibration,
        fit_safe_threshold,
        fit_safe_thresholds_by_range,
    )
    from .scoring import RANGE_BINS_M, range_bin

    tables = {}
    fused_labels = {descent_map_label(label) for label in labels}
    for label in [*labels, *sorted(fused_labels)]:
        mine = [s for s in scores if s.model == label and s.reliability is not None]
        if not mine:
            continue
        per_frame = np.stack([s.reliability for s in mine])
        counts = per_frame.sum(axis=0)
        # The safe threshold's bound resamples independent clusters: a single-frame map's frames,
        # but a descent map's whole sequences (its frames are one evolving map over one terrain)
        clusters = per_frame
        ranges = np.array([s.metrics.get("range_m", np.nan) for s in mine], dtype=np.float64)
        # within a range band: each frame, or each sequence's frames in that band
        band_clusters, band_ranges = per_frame, ranges
        if label in fused_labels:
            sequences = [s.sequence for s in mine]
            clusters = np.stack([per_frame[[q == seq for q in sequences]].sum(axis=0) for seq in dict.fromkeys(sequences)])
            groups: dict[tuple[str, str | None], list[int]] = {}
            for i, (seq, r) in enumerate(zip(sequences, ranges)):
                groups.setdefault((seq, range_bin(r)), []).append(i)
            band_clusters = np.stack([per_frame[idx].sum(axis=0) for idx in groups.values()])
            band_ranges = np.array([float(np.median(ranges[idx])) for idx in groups.values()])
        if counts[0].sum() > 0:
            table = fit_probability_calibration(counts)
            hazards = sum(s.metrics.get("hazard_tp", 0) + s.metrics.get("hazard_fn", 0) for s in mine)
            # hazards are called on the call probabilities where the map has them (a relief prior)
            calls = [s.call_reliability for s in mine if s.call_reliability is not None]
            call_counts = np.sum(calls, axis=0) if len(calls) == len(mine) else None
            call_table = fit_probability_calibration(call_counts) if call_counts is not None else None
            tables[label] = {
                "hazard_calibration": list(table),
                **({"hazard_call_calibration": list(call_table)} if call_table is not None else {}),
                "hazard_above": (
                    fit_hazard_threshold(counts, int(hazards), table)
                    if call_counts is None
                    else fit_hazard_threshold(call_counts, int(hazards), call_table)
                ),
                "hazard_safe_below": fit_safe_threshold(clusters, table),
                "hazard_safe_below_by_range": fit_safe_thresholds_by_range(band_clusters, band_ranges, table, RANGE_BINS_M),
                "safe_below_clusters": "sequences" if label in fused_labels else "frames",
                "sites": int(counts[0].sum()),
                "frames": sum(s.model == label for s in scores),
            }
    path.write_text(json.dumps(tables, indent=1))
    for label, t in tables.items():
        print(
            f"hazard calibration of {label} ({t['sites']} sites): {t['hazard_calibration']}, "
            f"safe at P<{t['hazard_safe_below']}, hazard at P>={t['hazard_above']}"
        )


def write_precision(path: Path, samples: dict[str, list]) -> None:
    """Each model's fitted disparity precision (card keys ``disparity_sigma_px`` and
    ``disparity_sigma_texture_gain``) from its matched pixels' errors."""
    import json

    from ..geometry.stereo import fit_disparity_precision

    fitted = {}
    for label, parts in samples.items():
        errors = np.concatenate([e for e, _ in parts])
        bounds = np.concatenate([c for _, c in parts])
        precision = fit_disparity_precision(errors, bounds)
        fitted[label] = {
            "disparity_sigma_px": precision.floor_px,
            "disparity_sigma_texture_gain": precision.texture_gain,
            "window_px": precision.window,
            "pixels": int(errors.size),
            "frames": len(parts),
        }
        print(
            f"disparity precision of {label}: floor {precision.floor_px} px, texture gain "
            f"{precision.texture_gain} ({errors.size} pixels, {len(parts)} frames)"
        )
    path.write_text(json.dumps(fitted, indent=1))


def example_wanted(index: int, count: int, figures: int) -> bool:
    """Example frames spread evenly over an input (a descent: over its range), not its first ones."""
    if figures <= 0 or count <= 0:
        return False
    picks = {round(k * (count - 1) / max(figures - 1, 1)) for k in range(min(figures, count))}
    return index in picks


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
