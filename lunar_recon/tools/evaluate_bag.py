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

from pathlib import Path

HELP = "evaluate models on rosbag2 sequences or dataset folders, write a report"


def add_arguments(p) -> None:
    from ..evaluation.runner import DEFAULT_CEILING_PX
    from ..geometry.descent_map import DescentMapParams
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
        "--stereo-head-max-size",
        type=int,
        default=None,
        help="a student's stereo head matches a pair with a longer side downscaled to this many "
        "pixels (0: never; default: the pipeline's)",
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
        "--no-left-right-check",
        action="store_true",
        help="the stereo head without its left-right check (the shipped tables assume it)",
    )
    p.add_argument(
        "--unmatched-sigma-factor",
        type=float,
        default=None,
        help="the same for the network's points no matcher matched (default: the pipeline's)",
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
        help="certified safe below this hazard probability (as the node's hazard.safe_below; 0: each model's own, else 0.05)",
    )
    p.add_argument(
        "--hazard-above",
        type=float,
        default=HazardParams().hazard_above,
        help="a site is a hazard at or above this probability (as the node's hazard.hazard_above; 0: each model's own, else 0.5)",
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
        "--hazard-landing-margin",
        type=float,
        default=HazardParams().landing_margin_m,
        help="a landing site is proposed only this far (m) from any cell not certified safe "
        "(as the node's hazard.landing_margin_m)",
    )
    p.add_argument(
        "--hazard-relief-prior",
        type=float,
        default=HazardParams().relief_prior_m,
        help="sigma (m) of the terrain's relief about a site's plane, the prior each measured cell's "
        "height is judged under (as the node's hazard.relief_prior_m; 0: none)",
    )
    p.add_argument(
        "--descent-map",
        action="store_true",
        help="also fuse each sequence's frames into a descent map (needs poses) and score its "
        "landing-site map as 'MODEL + descent map', per frame and at each sequence's last frame",
    )
    p.add_argument(
        "--descent-pixel-relief",
        type=float,
        default=DescentMapParams().pixel_relief,
        help="the descent map's height error per metre of a frame's ground pixel (descent_map.pixel_relief)",
    )
    p.add_argument(
        "--descent-levels",
        type=int,
        default=DescentMapParams().levels,
        help="the descent map's resolution levels, cells 1, 2, 4, ... times the finest (descent_map.levels)",
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


def run(args) -> int:
    from ..evaluation import error_by_range_figure, markdown_table, write_report
    from ..evaluation.runner import EvaluationOptions, run_offline, write_calibration, write_precision
    from ..geometry.hazard import HazardParams
    from ..models.registry import CLASSICAL, load_stereo_model, model_label

    out = Path(args.out)
    inputs = [Path(p) for p in args.inputs]
    for p in inputs:
        if not p.exists():
            raise ValueError(f"{p}: no such bag or dataset")
    HazardParams(
        footprint_diameter_m=args.hazard_footprint,
        safe_below=args.hazard_safe_below,
        hazard_above=args.hazard_above,
        landing_margin_m=args.hazard_landing_margin,
        relief_prior_m=args.hazard_relief_prior,
        resolution_m=args.hazard_resolution or 0.15,
    ).validate()
    if any(not (s >= 0) for s in args.stereo_ceiling):
        raise ValueError(f"--stereo-ceiling: a disparity sigma is >= 0 px, got {args.stereo_ceiling}")
    if args.live:
        return _run_live(args, inputs, out)
    names = list(args.model) or ["default"]
    if args.baseline:
        names.append(args.baseline)
    if not args.no_references and not any(n in CLASSICAL for n in names):
        names.append("sgbm")
    models = [(model_label(n), load_stereo_model(n, args.device)) for n in names]
    out.mkdir(parents=True, exist_ok=True)
    run = run_offline(EvaluationOptions.from_namespace(args), inputs, models, out)
    if not run.scores:
        raise ValueError("no frame could be evaluated: " + "; ".join(run.notes[:5]))
    figures = [error_by_range_figure(out / "error_by_range.png", run.scores), *run.figures]
    if args.fit_hazard_calibration:
        write_calibration(out / "hazard_calibration.json", run.scores, [label for label, _ in models])
    if args.fit_disparity_precision:
        write_precision(out / "disparity_precision.json", run.precision_samples)
    summary = write_report(out, run.scores, figures, run.notes)
    print(markdown_table(summary))
    print(f"report: {out / 'report.md'}")
    return 0


def _run_live(args, inputs: list[Path], out: Path) -> int:
    """Replay each bag into a running stereo_node and score what it publishes."""
    from ..evaluation import error_by_range_figure, markdown_table, write_report
    from ..evaluation.runner import EvaluationOptions, frames_of, score_live
    from ..ros.replay import LiveReplay

    replay = LiveReplay(args.namespace)
    try:
        replay.wait_for_node(60.0)
        out.mkdir(parents=True, exist_ok=True)
        sent: dict[int, tuple] = {}
        for path in inputs:
            frames = list(frames_of(path, args.namespace, args.max_frames, args.split))
            replay.replay([fr for _, _, fr in frames], args.speed)
            sent.update({int(fr.stamp_ns): (seq, i, fr) for seq, i, fr in frames})
            replay.collect(10.0)
        answers = replay.collect(0.0, 0.0)
        kv = replay.diagnostics()
    finally:
        replay.close()
    run = score_live(EvaluationOptions.from_namespace(args), sent, answers, kv, out)
    dropped = len(sent) - len(run.scores)
    run.notes.append(
        f"live replay at {args.speed}x: {len(sent)} frames sent, {len(run.scores)} answered, {dropped} dropped "
        f"(node reports {kv.get('dropped_pairs', '?')} dropped pairs, model {kv.get('model', '?')})"
    )
    if not run.scores:
        raise RuntimeError("stereo_node answered no frame")
    figures = [error_by_range_figure(out / "error_by_range.png", run.scores), *run.figures]
    summary = write_report(out, run.scores, figures, run.notes, title="lunar_recon live evaluation")
    print(markdown_table(summary))
    print(run.notes[-1])
    print(f"report: {out / 'report.md'}")
    return 0
