"""Evaluate models on rosbag2 recordings (or dataset folders) and write a report.

    lunar-recon evaluate-bag BAG... --model M [--model M2 ...] [--baseline sgbm|sgbm-wls] --out REPORT
    lunar-recon evaluate-bag BAG --live --out REPORT      # replay into a running stereo_node
    lunar-recon evaluate-bag DATA --model M --stereo-ceiling 0.1 --out REPORT  # beside the ideal matcher

Offline, every model runs through the same pipeline the node runs.  Scores are against the
bag's ground-truth depth / hazard topics when it has them, else against the first model.
``--live`` publishes the bag on the node's input topics (real time, or faster with --speed),
records what the node publishes and scores that, node latency and dropped pairs included.
``--stereo-ceiling`` adds the ideal matcher at a disparity precision: what the rig allows.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

HELP = "evaluate models on rosbag2 sequences or dataset folders, write a report"
# The reference rows every report carries unless told not to: the classical matcher and the
# ideal matcher at the disparity precision measured for the shipped student and SGBM.
DEFAULT_CEILING_PX = 0.1
CONSTANT_LABEL = "constant depth (true median)"


def add_arguments(p) -> None:
    from ..geometry.hazard import HazardParams
    from ..models.registry import CLASSICAL
    from ..geometry.metric_scale import STEREO_FUSION_DISPARITY_PX
    from ..pipeline import SCALE_MODES, SHADOW_INTENSITY_FRACTION

    p.add_argument("inputs", nargs="+", help="rosbag2 folders (sqlite3 or MCAP) or dataset folders")
    p.add_argument("--model", action="append", default=[], help="checkpoint, 'sgbm', 'sgbm-wls' or 'default' (repeatable)")
    p.add_argument(
        "--baseline",
        choices=CLASSICAL,
        help="also evaluate the classical baseline (sgbm-wls: with OpenCV's WLS disparity filter)",
    )
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--live", action="store_true", help="replay into a running stereo_node over ROS topics")
    p.add_argument("--speed", type=float, default=1.0, help="live replay speed (1 = real time)")
    p.add_argument("--namespace", default="", help="topic namespace of the bag and the node")
    p.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many frames per input")
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="split of a dataset folder (default: test where it has one); choose on val, report test",
    )
    p.add_argument("--inference-size", type=int, default=0, help="0: the model's own (model card), else 512")
    p.add_argument("--scale-mode", choices=list(SCALE_MODES), default="auto")
    p.add_argument(
        "--stereo-fusion-disparity",
        type=float,
        default=STEREO_FUSION_DISPARITY_PX,
        help="'stereo' / 'stereo_local': disparity (px of the left image) at which the points are "
        "pulled halfway toward a full-resolution SGBM's own; 0: no fusion",
    )
    p.add_argument(
        "--shadow-fraction",
        type=float,
        default=SHADOW_INTENSITY_FRACTION,
        help="with a sun direction in the data: pixels below this fraction of the lit level are "
        "shadows that bound the hazard map's terrain; 0: shadows unused",
    )
    p.add_argument(
        "--hazard-resolution",
        type=float,
        default=None,
        help="hazard grid cell (m); default: the truth's, else two ground pixels at each frame's range",
    )
    p.add_argument(
        "--network-sigma-factor",
        type=float,
        default=None,
        help="noise-model widening of the network's own points (default: the pipeline's)",
    )
    p.add_argument(
        "--disparity-sigma",
        type=float,
        default=None,
        help="disparity precision (px) for the hazard noise model; default: each model's own "
        "(offline) or the node's (live); 0: off",
    )
    p.add_argument(
        "--hazard-footprint",
        type=float,
        default=HazardParams().footprint_diameter_m,
        help="lander footprint diameter (m): the disc each candidate site is judged on",
    )
    p.add_argument(
        "--hazard-safe-below",
        type=float,
        default=HazardParams().safe_below,
        help="a site is certified safe below this hazard probability (as the node's hazard.safe_below)",
    )
    p.add_argument(
        "--hazard-above",
        type=float,
        default=HazardParams().hazard_above,
        help="a site is a hazard at or above this probability (as the node's hazard.hazard_above)",
    )
    p.add_argument(
        "--hazard-memory",
        type=int,
        default=HazardParams().memory_frames,
        help="maps of a sequence whose certain hazards fill a map's unknown cells, this one included "
        "(needs the bag's pose topic; as the node's hazard.memory_frames); 1: none",
    )
    p.add_argument(
        "--hazard-memory-keyframe-distance",
        type=float,
        default=HazardParams().memory_keyframe_distance_m,
        help="camera travel (m) between the maps the memory keeps (hazard.memory_keyframe_distance_m)",
    )
    p.add_argument(
        "--descent-map",
        action="store_true",
        help="also fuse each sequence's frames into a descent map (needs poses) and score its "
        "landing-site map as 'MODEL + descent map', per frame and at each sequence's last frame",
    )
    p.add_argument(
        "--fit-hazard-calibration",
        action="store_true",
        help="score every model's raw hazard probabilities and fit each one's calibration table "
        "(written to hazard_calibration.json; run it on a calibration split, never the test one)",
    )
    p.add_argument(
        "--fit-disparity-precision",
        action="store_true",
        help="fit each model's disparity precision on its matched pixels (floor and texture gain, "
        "geometry.stereo.DisparityPrecision), written to disparity_precision.json; a calibration "
        "split only",
    )
    p.add_argument(
        "--no-references",
        action="store_true",
        help="score only the models named: without it SGBM, the ideal matcher at "
        f"{DEFAULT_CEILING_PX} px and a constant depth at the true median are scored beside them",
    )
    p.add_argument(
        "--stereo-ceiling",
        type=float,
        action="append",
        default=[],
        metavar="SIGMA_PX",
        help="also score an ideal matcher: the ground-truth depth with this disparity noise (px), "
        "dense, unbiased; the ceiling of two-view stereo on the rig (repeatable)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--figures", type=int, default=2, help="example-frame figures per model and input")


def _hazard_params(args, truth_h):
    """The hazard parameters of one frame's evaluation (the truth's cell size unless given), set
    on the truth's map too, and the truth's map -- None, with the reason, where the footprint
    would span under two of its cells (orbital truth at metres per cell): the frame's depth is
    scored all the same."""
    from ..geometry.hazard import HazardParams

    params = HazardParams(
        resolution_m=args.hazard_resolution or (truth_h.resolution if truth_h else 0.0),
        footprint_diameter_m=args.hazard_footprint,
        safe_below=args.hazard_safe_below,
        hazard_above=args.hazard_above,
        memory_frames=args.hazard_memory,
        memory_keyframe_distance_m=args.hazard_memory_keyframe_distance,
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


def _score_depth(depth, fr, truth_h, params, sigma_d: float, memories: dict, key):
    """Scores of a depth image of the left camera made into a hazard map as the pipeline makes
    it (the rig's noise model at ``sigma_d`` px, 0: none; the same stream's hazard memory)."""
    from ..evaluation import score_frame
    from ..geometry.camera import depth_to_points
    from ..geometry.hazard import hazard_map
    from ..geometry.hazard_memory import HazardMemory
    from ..geometry.stereo import stereo_elevation_sigma

    pts = depth_to_points(depth, fr.K_left)
    up = _up(fr)
    sigma = (
        stereo_elevation_sigma(pts, up, fr.K_left.fx, fr.baseline_m, sigma_d)
        if sigma_d > 0 and up is not None and fr.baseline_m
        else None
    )
    pred_h = None
    if truth_h is not None and up is not None and np.isfinite(pts[..., 2]).sum() >= 3:
        pred_h = hazard_map(pts, up, params, elevation_sigma=sigma)
        if fr.pose_world is not None:
            pred_h = memories.setdefault(key, HazardMemory()).update(
                pred_h, fr.pose_world, params.memory_frames, params.memory_keyframe_distance_m
            )
    return score_frame(depth, pts, fr.depth, truth_h, up, params, sigma, _focal_baseline(fr), hazard_pred=pred_h)


def ceiling_label(sigma_px: float) -> str:
    return f"ideal stereo, {sigma_px:g} px"


def _score_ceiling(sigma_px: float, seq: str, i: int, fr, truth_h, params, memories: dict) -> tuple[str, dict] | str:
    """The ideal matcher's scores on one frame (see ``evaluation.ideal_stereo_depth``), or why
    it cannot be scored there.  Seeded by the frame, so a report is reproducible."""
    from ..evaluation import ideal_stereo_depth

    label = ceiling_label(sigma_px)
    fb = _focal_baseline(fr)
    if fr.depth is None or not fb:
        return f"{seq} frame {i} ({label}): skipped (needs ground-truth depth and a rectified rig)"
    rng = np.random.default_rng([i, round(sigma_px * 1e6), sum(map(ord, seq))])
    depth = ideal_stereo_depth(fr.depth, fb, sigma_px, rng)
    return label, _score_depth(depth, fr, truth_h, params, sigma_px, memories, (label, seq))


def _frames(path: Path, namespace: str, max_frames: int, split: str | None = None):
    """(sequence name, index, BagFrame-like) from a bag or a dataset folder."""
    from ..data.rosbag import BagFrame, read_stereo_bag

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
        s = ds[i]
        fr = BagFrame(i, s.left, s.right, s.K_left, s.K_right, s.baseline_m, depth=s.depth_left, sun_left=s.sun_left)
        fr.extra["sample"] = s
        yield path.name, i, fr


def _truth(fr, params):
    from ..evaluation import hazard_map_from_grid

    if fr.hazard is None:
        s = fr.extra.get("sample")
        if s is not None and "hazard" in s.truth:
            from ..geometry.hazard import GridSpec, HazardMap

            t = s.truth
            cls = t["hazard"].astype(np.int8)
            grid = GridSpec(tuple(t["hazard_origin"]), float(t["hazard_resolution"]), cls.shape)
            cost = np.where(cls == 1, 100, np.where(cls == 0, 0, -1)).astype(np.int8)
            nan = np.full(cls.shape, np.nan, np.float32)
            return HazardMap(
                grid=grid,
                elevation_m=t.get("hazard_elevation_m", nan),
                slope_deg=t["hazard_slope_deg"],
                roughness_m=t["hazard_roughness_m"],
                roughness_rms_m=nan,
                coverage=np.ones(cls.shape, np.float32),
                hazard=cls,
                cost=cost,
                R_grid_from_input=t["hazard_R_grid_from_left"],
                params=params,
            )
        return None
    h = fr.hazard
    return hazard_map_from_grid(h["cost"], h["resolution"], h["origin"], h["orientation"], params)[0]


def _up(fr):
    if fr.up_left is not None:
        return fr.up_left
    s = fr.extra.get("sample")
    return s.up_left if s is not None else None


def _focal_baseline(fr) -> float | None:
    s = fr.extra.get("sample")
    rectified = s is None or s.rectified
    return float(fr.K_left.fx * fr.baseline_m) if rectified and fr.baseline_m else None


def _calibration(fr):
    from ..geometry.stereo import StereoCalibration

    s = fr.extra.get("sample")
    if s is not None and not s.rectified:
        return StereoCalibration(s.K_left, s.K_right, s.T_left_from_right)
    if getattr(fr, "calibration", None) is not None:  # a bag's camera_info pair, as the node reads it
        return fr.calibration
    T = StereoCalibration.rectified(fr.K_left, fr.baseline_m).T_left_from_right
    return StereoCalibration(fr.K_left, fr.K_right, T)


def run(args) -> int:
    from ..evaluation import (
        disparity_error_samples,
        error_by_range_figure,
        example_figure,
        frame_score,
        hazard_on_truth_cells,
        score_frame,
        write_report,
    )
    from ..geometry.camera import depth_to_points
    from ..geometry.hazard import HazardParams
    from ..models.registry import CLASSICAL, load_stereo_model, model_label
    from ..pipeline import ReconstructionParams, StereoReconstructor

    out = Path(args.out)
    inputs = [Path(p) for p in args.inputs]
    for p in inputs:
        if not p.exists():
            raise ValueError(f"{p}: no such bag or dataset")
    HazardParams(
        footprint_diameter_m=args.hazard_footprint,
        safe_below=args.hazard_safe_below,
        hazard_above=args.hazard_above,
        resolution_m=args.hazard_resolution or 0.15,
    ).validate()
    if any(not (s >= 0) for s in args.stereo_ceiling):
        raise ValueError(f"--stereo-ceiling: a disparity sigma is >= 0 px, got {args.stereo_ceiling}")
    if args.live:
        return _run_live(args, inputs, out)
    names = list(args.model) or ["default"]
    if args.baseline:
        names.append(args.baseline)
    ceilings = list(args.stereo_ceiling)
    if not args.no_references:
        if not any(n in CLASSICAL for n in names):
            names.append("sgbm")
        ceilings = ceilings or [DEFAULT_CEILING_PX]
    models = [(model_label(n), load_stereo_model(n, args.device)) for n in names]
    out.mkdir(parents=True, exist_ok=True)
    scores, figures, notes = [], [], []
    precision_samples: dict[str, list] = {}  # model -> (|disparity error|, matching bound) per frame
    memories: dict = {}  # (ideal matcher, sequence) -> its recent maps of the sequence
    # One reconstructor per model and sequence, as a node runs one per camera stream: its hazard
    # memory carries over the sequence's frames.
    reconstructors: dict = {}
    from ..progress import progress

    for path in inputs:
        try:
            frames = list(_frames(path, args.namespace, args.max_frames, args.split))
        except Exception as exc:  # noqa: BLE001 - a bad input is reported, the others still run
            from ..data.rosbag import BagError

            if isinstance(exc, BagError):
                raise
            notes.append(f"{path}: skipped ({exc})")
            continue
        for seq, i, fr in progress(frames, desc=f"evaluate {path.name}", unit="frame"):
            for err in fr.extra.get("errors", []):
                notes.append(f"{seq}: {err}")
            truth_h = _truth(fr, HazardParams())
            params, truth_h, why = _hazard_params(args, truth_h)
            if why and why not in notes:
                notes.append(why)
            reference = fr.depth
            this_frame: list[tuple] = []  # (score, model, depth) of every model on this frame
            for m_idx, (label, model) in enumerate(models):
                rec = reconstructors.get((label, seq))
                if rec is None or rec.params.hazard != params:
                    rec = reconstructors[(label, seq)] = StereoReconstructor(
                        model,
                        ReconstructionParams(
                            inference_size=args.inference_size,
                            scale_mode=args.scale_mode,
                            stereo_fusion_disparity_px=args.stereo_fusion_disparity,
                            disparity_sigma_px=args.disparity_sigma,
                            shadow_intensity_fraction=args.shadow_fraction,
                            **({} if args.network_sigma_factor is None else {"network_sigma_factor": args.network_sigma_factor}),
                            hazard=params,
                            calibrate_hazard=not args.fit_hazard_calibration,
                            descent_map=args.descent_map,
                        ),
                    )
                t0 = time.perf_counter()
                try:
                    r = rec.reconstruct(fr.left, fr.right, _calibration(fr), _up(fr), fr.sun_left, camera_pose=fr.pose_world)
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
                    reference if (m_idx > 0 or fr.depth is not None) else None,
                    truth_h,
                    _up(fr),
                    params,
                    r.elevation_sigma,
                    _focal_baseline(fr),
                    hazard_pred=r.hazard,
                )
                scores.append(frame_score(seq, label, i, int(fr.stamp_ns), latency, metrics))
                this_frame.append((scores[-1], model, r.depth))
                if args.fit_disparity_precision and fr.depth is not None and _focal_baseline(fr):
                    matched = None if r.matcher_say is None else r.matcher_say >= 0.99
                    precision_samples.setdefault(label, []).append(
                        disparity_error_samples(r.depth, fr.depth, _focal_baseline(fr), fr.left, matched, seed=len(scores))
                    )
                if args.descent_map and r.descent_hazard is not None:
                    fused = score_frame(
                        r.depth,
                        r.points,
                        fr.depth,
                        truth_h,
                        _up(fr),
                        params,
                        focal_baseline=_focal_baseline(fr),
                        hazard_pred=r.descent_hazard,
                    )
                    scores.append(frame_score(seq, f"{label} + descent map", i, int(fr.stamp_ns), latency, fused))
                    if r.descent_update is not None and r.descent_update.reset:
                        notes.append(f"{seq} frame {i} ({label}): the pose jumped; the descent map was reset")
                if _example_wanted(i, len(frames), args.figures):
                    shown = r.hazard if truth_h is None or r.hazard is None else hazard_on_truth_cells(r.hazard, truth_h)
                    figures.append(
                        example_figure(
                            out / f"example_{_safe(label)}_{_safe(seq)}_{i}.png",
                            fr.left,
                            r.depth,
                            fr.depth,
                            r.slope_deg,
                            shown,
                            truth_h,
                            r.points,
                            f"{label} on {seq}, frame {i}",
                        )
                    )
            _score_on_sgbm_pixels(this_frame, fr.depth)
            if not args.no_references and fr.depth is not None and np.isfinite(fr.depth).any():
                # the guess that needs no images: every pixel at the true median depth
                constant = np.where(np.isfinite(fr.depth), np.float32(np.nanmedian(fr.depth)), np.float32(np.nan))
                scores.append(
                    frame_score(
                        seq,
                        CONSTANT_LABEL,
                        i,
                        int(fr.stamp_ns),
                        float("nan"),
                        score_frame(constant, depth_to_points(constant, fr.K_left), fr.depth, None, None, params),
                    )
                )
            for sigma_px in ceilings:
                scored = _score_ceiling(sigma_px, seq, i, fr, truth_h, params, memories)
                if isinstance(scored, str):
                    notes.append(scored)
                else:  # no latency: it is not a method that runs
                    scores.append(frame_score(seq, scored[0], i, int(fr.stamp_ns), float("nan"), scored[1]))
    if not scores:
        raise ValueError("no frame could be evaluated: " + "; ".join(notes[:5]))
    out.mkdir(parents=True, exist_ok=True)
    figures.insert(0, error_by_range_figure(out / "error_by_range.png", scores))
    if args.fit_hazard_calibration:
        _write_calibration(out / "hazard_calibration.json", scores, [label for label, _ in models])
    if args.fit_disparity_precision:
        _write_precision(out / "disparity_precision.json", precision_samples)
    summary = write_report(out, scores, figures, notes)
    from ..evaluation import markdown_table

    print(markdown_table(summary))
    print(f"report: {out / 'report.md'}")
    return 0


def _score_on_sgbm_pixels(frame_scores: list[tuple], depth_true) -> None:
    """Every model's AbsRel over the pixels SGBM matched on the same frame (SGBM's own AbsRel is
    over those), when SGBM ran: the fair comparison with a matcher that leaves holes."""
    from ..geometry.metrics import depth_metrics

    matcher = next((d for _, m, d in frame_scores if getattr(m, "name", None) == "sgbm"), None)
    if matcher is None or depth_true is None:
        return
    matched = np.isfinite(matcher) & (matcher > 0)
    for score, _, depth in frame_scores:
        score.metrics["depth_abs_rel_sgbm_matched"] = depth_metrics(depth, depth_true, matched)["abs_rel"]


def _write_calibration(path: Path, scores, labels: list[str]) -> None:
    """Each model's fitted hazard-probability calibration table, from its frames' raw reliability counts."""
    import json

    from ..evaluation import pooled_reliability
    from ..geometry.hazard import fit_probability_calibration

    tables = {}
    for label in labels:
        counts = pooled_reliability([s for s in scores if s.model == label])
        if counts is not None and counts[0].sum() > 0:
            tables[label] = {
                "hazard_calibration": list(fit_probability_calibration(counts)),
                "sites": int(counts[0].sum()),
                "frames": sum(1 for s in scores if s.model == label),
            }
    path.write_text(json.dumps(tables, indent=1))
    for label, t in tables.items():
        print(f"hazard calibration of {label} ({t['sites']} sites): {t['hazard_calibration']}")


def _write_precision(path: Path, samples: dict[str, list]) -> None:
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


def _example_wanted(index: int, count: int, figures: int) -> bool:
    """Example frames spread evenly over an input (a descent: over its range), not its first ones."""
    if figures <= 0 or count <= 0:
        return False
    picks = {round(k * (count - 1) / max(figures - 1, 1)) for k in range(min(figures, count))}
    return index in picks


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _run_live(args, inputs: list[Path], out: Path) -> int:
    """Replay each bag into a running stereo_node and score what it publishes."""
    from ..evaluation import error_by_range_figure, example_figure, frame_score, hazard_map_from_grid, score_frame, write_report
    from ..geometry.camera import depth_to_points
    from ..geometry.hazard import HazardParams
    from ..ros.replay import LiveReplay

    replay = LiveReplay(args.namespace)
    try:
        replay.wait_for_node(60.0)
        out.mkdir(parents=True, exist_ok=True)
        scores, figures, notes, memories = [], [], [], {}
        sent: dict[int, tuple] = {}
        for path in inputs:
            frames = list(_frames(path, args.namespace, args.max_frames, args.split))
            replay.replay([fr for _, _, fr in frames], args.speed)
            sent.update({int(fr.stamp_ns): (seq, i, fr) for seq, i, fr in frames})
            replay.collect(10.0)
        answers = replay.collect(0.0, 0.0)
        kv = replay.diagnostics()
    finally:
        replay.close()
    # The node's hazard map uses its model's disparity precision; score with the same.
    sigma_d = args.disparity_sigma if args.disparity_sigma is not None else float(kv.get("disparity_sigma_px", 0))
    for stamp, (seq, i, fr) in sorted(sent.items()):
        answer = answers[stamp]
        if answer.depth is None:
            continue
        depth = answer.depth
        truth_h = _truth(fr, HazardParams())
        params, truth_h, _ = _hazard_params(args, truth_h)
        if answer.grid is not None and truth_h is not None:
            published = hazard_map_from_grid(*answer.grid, params)[0]
            metrics = score_frame(
                depth,
                depth_to_points(depth, fr.K_left),
                fr.depth,
                truth_h,
                _up(fr),
                params,
                focal_baseline=_focal_baseline(fr),
                hazard_pred=published,
            )
        else:  # no grid arrived for this pair: the depth it published, made into a map as the node would
            metrics = _score_depth(depth, fr, truth_h, params, sigma_d, memories, seq)
            notes.append(f"{seq} frame {i}: no hazard/grid received; scored a map made from its depth")
        scores.append(frame_score(seq, "stereo_node (live)", i, stamp, answer.received_s - answer.sent_s, metrics))
        if _example_wanted(i, len(sent), args.figures):
            pts = depth_to_points(depth, fr.K_left)
            figures.append(
                example_figure(
                    out / f"example_live_{_safe(seq)}_{i}.png",
                    fr.left,
                    depth,
                    fr.depth,
                    answer.slope,
                    None,
                    truth_h,
                    pts,
                    f"stereo_node (live) on {seq}, frame {i}",
                )
            )
    dropped = len(sent) - len(scores)
    notes.append(
        f"live replay at {args.speed}x: {len(sent)} frames sent, {len(scores)} answered, {dropped} dropped "
        f"(node reports {kv.get('dropped_pairs', '?')} dropped pairs, model {kv.get('model', '?')})"
    )
    if not scores:
        raise RuntimeError("stereo_node answered no frame")
    out.mkdir(parents=True, exist_ok=True)
    figures.insert(0, error_by_range_figure(out / "error_by_range.png", scores))
    summary = write_report(out, scores, figures, notes, title="lunar_recon live evaluation")
    from ..evaluation import markdown_table

    print(markdown_table(summary))
    print(notes[-1])
    print(f"report: {out / 'report.md'}")
    return 0
