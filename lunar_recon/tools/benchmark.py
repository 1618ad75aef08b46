"""Side-by-side cost of MASt3R, the default teacher and student, other presets and SGBM.

    lunar-recon benchmark [--teacher runs/default/teacher/best.pt] [--threads 2] --out runs/benchmark

In one run on this machine: parameters, GFLOPs, CPU latency p50 / p90 per pair at 512x384
and 256x256 network input, pairs per second, peak memory (each model measured in its own
process), every ratio to the released MASt3R configuration and to SGBM, the machine's
matmul GFLOP/s and each model's fraction of it, and (``--node``) stereo_node's end-to-end
latency and output rate on 512x384 input at its default settings.  Writes
``benchmark.md`` and ``benchmark.json``.
"""

from __future__ import annotations

HELP = "latency / FLOPs / memory table: MASt3R vs teacher vs students vs SGBM"

SIZES = ((384, 512), (256, 256))  # (H, W) network inputs


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/benchmark")
    p.add_argument("--teacher", default=None, help="the default teacher checkpoint (skipped when absent)")
    p.add_argument("--student", default="default", help="the default student: checkpoint or 'default'")
    p.add_argument(
        "--presets",
        nargs="*",
        default=["nano-shallow-dpt16", "nano-shallow", "nano", "nano-mobilenet", "nano-resnet", "tiny", "small", "s2"],
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7, help="timed pairs per model and size (2 for >100M params)")
    p.add_argument("--skip-mast3r", action="store_true", help="leave out the 27-second released configuration")
    p.add_argument("--node", action="store_true", help="also measure stereo_node end to end over DDS")
    p.add_argument("--node-seconds", type=float, default=20.0)
    p.add_argument(
        "--node-sizes",
        nargs="+",
        default=["512x384", "1024x1024"],
        metavar="WxH",
        help="camera sizes of the node measurement (lander cameras are megapixel)",
    )
    p.add_argument(
        "--node-params",
        nargs="*",
        default=[],
        metavar="NAME:=VALUE",
        help="stereo_node parameters of the node measurement beyond its defaults (e.g. stereo_head_max_size:=512)",
    )
    p.add_argument("--worker", help=__import__("argparse").SUPPRESS)  # internal: one measurement, JSON out


# ---- one measurement, in its own process (peak memory is the process's) -------------------
def _measure(spec: dict) -> dict:
    import resource
    import time

    import torch

    from ..models.profile import count_parameters, latency_ms, pair_gflops, percentile

    threads, repeats = spec["threads"], spec["repeats"]
    torch.set_num_threads(threads)
    out: dict = {"label": spec["label"], "sizes": {}}
    if spec["kind"] == "sgbm":
        import cv2

        from ..geometry.stereo import SGBMParams, sgbm_disparity

        cv2.setNumThreads(threads)
        for h, w in SIZES:
            left, right = _texture_pair(h, w)
            sgbm_disparity(left, right, SGBMParams())
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                sgbm_disparity(left, right, SGBMParams())
                times.append(1e3 * (time.perf_counter() - t0))
            times.sort()
            out["sizes"][f"{w}x{h}"] = {"p50": percentile(times, 50), "p90": percentile(times, 90), "gflops": None}
        out["parameters"] = 0
    else:
        from ..models import build_model, load_model
        from ..models.registry import load_stereo_model

        if spec["kind"] == "config":
            from ..models.config import ModelConfig

            torch.manual_seed(0)
            model = build_model(ModelConfig.from_dict(spec["config"])).eval()
        elif spec["kind"] == "default":
            model = load_stereo_model("default")
            if not isinstance(model, torch.nn.Module):
                raise ValueError("no default student ships with this install (the node's default is SGBM)")
        else:
            model = load_model(spec["path"]).eval()
        head = getattr(model, "stereo_head", None)
        out["stereo_head_parameters"] = count_parameters(head) if head is not None else 0
        out["parameters"] = count_parameters(model) - out["stereo_head_parameters"]  # the network's (the table's rows)
        out["inference_size"] = int(getattr(model, "meta", {}).get("card", {}).get("inference_size", 0) or 0)
        big = out["parameters"] > 100e6
        for h, w in SIZES:
            times = latency_ms(model, h, w, threads=threads, repeats=2 if big else repeats, warmup=0 if big else 1)
            out["sizes"][f"{w}x{h}"] = {
                "p50": percentile(times, 50),
                "p90": percentile(times, 90),
                "gflops": pair_gflops(model, h, w),
            }
        if out["inference_size"]:
            # a pair costs tens of ms here: time many, so the p50 against MASt3R is not 7 samples' luck
            out["deployed"] = _deployed(model, out["inference_size"], max(repeats, 40))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _texture_pair(h: int, w: int, disparity: tuple[float, float] = (16.0, 16.0)):
    """A textured rectified pair (timing input) whose disparity runs from ``disparity[0]`` px on
    the top row to ``disparity[1]`` on the bottom one, like ground seen obliquely."""
    import cv2
    import numpy as np

    pad = int(np.ceil(max(disparity))) + 2
    base = cv2.GaussianBlur((np.random.default_rng(0).random((h, w + 2 * pad)) * 255).astype(np.uint8), (3, 3), 0)
    x = np.arange(w, dtype=np.float32)[None, :] + np.float32(pad)
    d = np.linspace(disparity[0], disparity[1], h, dtype=np.float32)[:, None]
    y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    left = np.ascontiguousarray(base[:, pad : pad + w])
    right = cv2.remap(base, np.ascontiguousarray(x + d), y, cv2.INTER_LINEAR)  # right(x) = left(x + d)
    return left, right


# The deployed timing's pair: near the ground, where the stereo fusion runs (a 1 m baseline
# 9-22 m above tilted ground at f = 443 px); at altitude the fusion is skipped.
NEAR_GROUND_DISPARITY_PX = (20.0, 50.0)


def _deployed(model, size: int, repeats: int) -> dict:
    """What the node runs per 512x384 mono camera pair: ``predict`` (resize to the card's
    network size, the network with the right view's head only when the scale mode reads it,
    resampling to camera pixels) and, for the card's 'stereo' / 'stereo_local' scale modes, the
    coarse-SGBM metric anchor that makes the pointmap metric (MASt3R's is metric by itself)
    with its stereo fusion: the node's first stage."""
    import time

    from ..geometry.camera import Intrinsics
    from ..models.profile import pair_gflops, percentile
    from ..geometry.stereo import StereoCalibration
    from ..pipeline import ReconstructionParams, StereoReconstructor, needs_right_view

    h0, w0 = 384, 512
    scale_mode = getattr(model, "meta", {}).get("card", {}).get("scale_mode", "predicted")
    right_view = needs_right_view(scale_mode)
    left, right = _texture_pair(h0, w0, NEAR_GROUND_DISPARITY_PX)
    calib = StereoCalibration.rectified(Intrinsics(443.0, 443.0, (w0 - 1) / 2, (h0 - 1) / 2, w0, h0), 1.0)
    stage = StereoReconstructor(model, ReconstructionParams(inference_size=size, scale_mode=scale_mode))
    predict_ms, metric_ms, fused_ms = [], [], []
    card_size = size or int(getattr(model, "meta", {}).get("card", {}).get("inference_size", 512))
    for i in range(repeats + 1):  # the network alone: in the stage the stereo head shares the cores
        t0 = time.perf_counter()
        model.predict(left, right, size=card_size, right_view=right_view)
        if i:  # the first is a warm-up
            predict_ms.append(1e3 * (time.perf_counter() - t0))
    for i in range(repeats + 1):
        staged = stage.predict_scaled(left, right, calib)  # the node's first stage, exactly
        if i:
            t = staged.timings_s
            metric_ms.append(1e3 * (t["model"] + t["scale"]))
            fused_ms.append(1e3 * (t["model"] + t["scale"] + t.get("fusion", 0.0)))
    pred = staged.prediction
    h, w = pred.network_hw
    out = {
        "network": f"{w}x{h}",
        "scale_mode": scale_mode,
        "right_view_head": right_view,
        "gflops": pair_gflops(model, h, w, view2_head=right_view),
        "fused": staged.points is not None,
        "scale_path": staged.scale_path,
        "stereo_head_gflops": stereo_head_gflops(model, h0, w0),
    }
    for key, times in (("", predict_ms), ("metric_", metric_ms), ("fused_", fused_ms)):
        times.sort()
        out[f"{key}p50"], out[f"{key}p90"] = percentile(times, 50), percentile(times, 90)
    return out


def stereo_head_gflops(model, h: int, w: int) -> float:
    """GFLOPs of the model's calibrated-stereo head on an h x w camera pair (0 without one)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    head = getattr(model, "stereo_head", None)
    if head is None:
        return 0.0
    x = torch.zeros(1, 1, h, w)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        head(x, x)
    return counter.get_total_flops() / 1e9


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 10, trials: int = 5) -> float:
    """Sustained float32 matmul GFLOP/s of this CPU with ``threads`` threads: the best of
    ``trials`` timings, so a moment of load from elsewhere on a shared machine does not pass
    for the CPU's peak."""
    import time

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9)
    torch.set_num_threads(before)
    return best


def node_benchmark_params(frame) -> list[str]:
    """The node's parameters for the rate benchmark: defaults, plus gravity and the sun's
    direction in the left camera frame (a lander knows both from its attitude and ephemeris)."""
    return [
        "use_attitude:=false",
        "up_vector:=[%f,%f,%f]" % tuple(frame.up_left),
        "sun_vector:=[%f,%f,%f]" % tuple(frame.sun_left),
    ]


def node_rate(
    threads: int | None,
    seconds: float,
    rate_hz: float = 10.0,
    width: int = 512,
    height: int = 384,
    params: tuple[str, ...] = (),
) -> dict:
    """stereo_node (default model, default settings but ``params``, every output subscribed) fed
    mono8 pairs of ``width`` x ``height`` at ``rate_hz``, told gravity and the sun's direction as
    a lander knows them (so the shadow bound is timed too).  ``threads``: torch's intra-op
    threads in the node (OMP_NUM_THREADS); None: the node's own choice
    (``runtime.prefer_one_intra_op_thread``) unless this process's environment sets one."""
    import random
    import time

    import numpy as np

    from ..ros.conversions import stamp_ns
    from ..ros.probe import NodeProbe, start_node, stop_node
    from ..sim.scene import plan_scene, render_scene

    fr = render_scene(plan_scene("descent", 5, width=width, height=height, altitude_m=40, off_nadir_deg=10, baseline_m=1.5))
    dom = random.randint(120, 220)
    proc = start_node(
        dom, *node_benchmark_params(fr), *params, env=None if threads is None else {"OMP_NUM_THREADS": str(threads)}
    )
    probe = NodeProbe(dom)
    lat, sent = [], {}
    try:
        probe.wait_for_node(proc)
        msgs = probe.pair(fr)
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            stamp = 1_700_000_000 * 10**9 + i * int(1e9 / rate_hz)
            sent[stamp] = time.monotonic()
            probe.publish(msgs, stamp)
            i += 1
            probe.spin_until(t0 + i / rate_hz)
            lat += [t - sent[stamp_ns(m.header.stamp)] for t, m in probe.take("depth/image_rect")]
        elapsed = time.monotonic() - t0
        first_half = len(lat)
        probe.spin(3.0)
        lat += [t - sent[stamp_ns(m.header.stamp)] for t, m in probe.take("depth/image_rect")]
    finally:
        probe.close()
        stop_node(proc)
    lat_ms = np.array(lat) * 1e3
    return {
        "size": f"{width}x{height}",
        "params": " ".join(params),
        "sent": i,
        "answered": len(lat),
        "input_hz": rate_hz,
        "output_hz": first_half / elapsed,
        "latency_p50_ms": float(np.median(lat_ms)) if len(lat_ms) else float("nan"),
        "latency_p90_ms": float(np.percentile(lat_ms, 90)) if len(lat_ms) else float("nan"),
    }


# ---- the table ---------------------------------------------------------------------------
def run(args) -> int:
    import json
    import subprocess
    import sys
    from pathlib import Path

    if args.worker:
        print(json.dumps(_measure(json.loads(args.worker))))
        return 0
    from ..models import MAST3R_RELEASED
    from ..models.students import student_config

    specs = []
    if not args.skip_mast3r:
        specs.append({"label": "MASt3R released config (random weights)", "kind": "config", "config": MAST3R_RELEASED.to_dict()})
    if args.teacher:
        if Path(args.teacher).exists():
            specs.append({"label": f"default teacher ({args.teacher})", "kind": "path", "path": args.teacher})
        else:
            print(f"benchmark: teacher {args.teacher} not found, left out", file=sys.stderr)
    specs.append(
        {
            "label": "default student" if args.student == "default" else f"student {args.student}",
            "kind": "default" if args.student == "default" else "path",
            "path": args.student,
        }
    )
    for name in args.presets:
        specs.append({"label": f"preset {name} (random weights)", "kind": "config", "config": student_config(name).to_dict()})
    specs.append({"label": "SGBM (OpenCV)", "kind": "sgbm"})
    rows = []
    for spec in specs:
        spec.update(threads=args.threads, repeats=args.repeats)
        print(f"benchmark: {spec['label']}", file=sys.stderr, flush=True)
        res = subprocess.run(
            [sys.executable, "-m", "lunar_recon", "benchmark", "--worker", json.dumps(spec)], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise RuntimeError(f"benchmark of {spec['label']} failed:\n{res.stderr[-2000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    machine = {"matmul_gflops": matmul_gflops(args.threads), "threads": args.threads}
    node = (
        [
            node_rate(
                None,
                args.node_seconds,
                width=int(size.split("x")[0]),
                height=int(size.split("x")[1]),
                params=tuple(args.node_params),
            )
            for size in args.node_sizes
        ]
        if args.node
        else None
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps({"machine": machine, "models": rows, "node": node}, indent=1))
    md = markdown(rows, machine, node)
    (out / "benchmark.md").write_text(md)
    print(md)
    print(f"wrote {out / 'benchmark.md'}")
    return 0


def markdown(rows: list[dict], machine: dict, node: list[dict] | None) -> str:
    import math

    def ref(label_start: str, key: str):
        r = next((r for r in rows if r["label"].startswith(label_start)), None)
        return r["sizes"].get(key, {}).get("p50") if r else None

    def f(v, fmt=".1f"):
        return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    lines = [
        f"Machine: float32 matmul {machine['matmul_gflops']:.0f} GFLOP/s on {machine['threads']} threads. "
        "Latency per pair (both views), batch 1; 'x MASt3R' = MASt3R's p50 / this p50 at the same input.",
        "",
    ]
    for h, w in SIZES:
        key = f"{w}x{h}"
        m_ref, s_ref = ref("MASt3R", key), ref("SGBM", key)
        lines += [
            f"### {key} network input",
            "",
            "| model | params (M) | GFLOPs | p50 (ms) | p90 (ms) | pairs/s | x MASt3R speed | params / MASt3R "
            "| x SGBM time | % of matmul peak | peak RSS (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        m_params = next((r["parameters"] for r in rows if r["label"].startswith("MASt3R")), None)
        for r in rows:
            s = r["sizes"][key]
            util = (s["gflops"] / (s["p50"] / 1e3) / machine["matmul_gflops"] * 100) if s["gflops"] else None
            lines.append(
                f"| {r['label']} | {r['parameters'] / 1e6:.2f} | {f(s['gflops'], '.2f')} | {f(s['p50'])} | "
                f"{f(s['p90'])} | {1e3 / s['p50']:.2f} | {f(m_ref / s['p50'] if m_ref else None, '.0f')} | "
                f"{f(r['parameters'] / m_params if m_params and r['parameters'] else None, '.4f')} | "
                f"{f(s['p50'] / s_ref if s_ref else None, '.1f')} | {f(util, '.0f')} | {r['peak_rss_mib']:.0f} |"
            )
        lines.append("")
    deployed = [r for r in rows if "deployed" in r]
    m512 = ref("MASt3R", "512x384")
    if deployed:
        lines += [
            "### Deployed setting: 512x384 mono camera pair, as the node runs it",
            "",
            "`predict`: resize to the model card's network size, the network (the right view's head only "
            "when the scale mode reads it), pointmap resampled to camera pixels. '+ metric anchor': "
            "with the card's scale step (coarse SGBM median for 'stereo', its smooth scale field for "
            "'stereo_local'), i.e. a metric pointmap like MASt3R's: the whole first stage at altitude. "
            "'+ fusion': near the ground (disparities "
            f"{NEAR_GROUND_DISPARITY_PX[0]:g}-{NEAR_GROUND_DISPARITY_PX[1]:g} px, as in this timing) the "
            "first stage also matches the pair at full resolution and fuses those points (skipped at "
            "altitude). 'x MASt3R' divides MASt3R's p50 at 512x384 (network only) by these.",
            "",
            "With a calibrated-stereo head (its GFLOPs at 512x384 in brackets) the head is the metric "
            "anchor and the fusion's matcher, and no SGBM runs; it matches the pair on its own thread "
            "while the network runs (`predict` is the network timed alone).",
            "",
            "| model | network input | scale mode | right head | GFLOPs | predict p50 / p90 (ms) "
            "| + metric anchor p50 / p90 (ms) | + fusion p50 / p90 (ms) | x MASt3R (predict) "
            "| x MASt3R (+ anchor) | x MASt3R (+ fusion) |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in deployed:
            d = r["deployed"]
            fused = f"{d['fused_p50']:.1f} / {d['fused_p90']:.1f}" if d["fused"] else "–"
            lines.append(
                f"| {r['label']} | {d['network']} | {d['scale_mode']} | {'yes' if d['right_view_head'] else 'no'} "
                f"| {d['gflops']:.2f}{' (+ %.2f)' % d['stereo_head_gflops'] if d['stereo_head_gflops'] else ''} "
                f"| {d['p50']:.1f} / {d['p90']:.1f} | "
                f"{d['metric_p50']:.1f} / {d['metric_p90']:.1f} | {fused} | "
                f"{f(m512 / d['p50'] if m512 else None, '.0f')} | "
                f"{f(m512 / d['metric_p50'] if m512 else None, '.0f')} | "
                f"{f(m512 / d['fused_p50'] if m512 and d['fused'] else None, '.0f')} |"
            )
        lines.append("")
    if node:
        lines += [
            "### stereo_node end to end (default model and settings"
            + (f" but {node[0]['params']}" if node[0].get("params") else "")
            + ", every output subscribed, gravity and sun direction given, mono8 pairs over Fast DDS)",
            "",
            "| camera | pairs sent | answered | input rate | output rate | latency p50 / p90 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n['size']} | {n['sent']} | {n['answered']} | {n['input_hz']:.1f} Hz | {n['output_hz']:.2f} pairs/s "
            f"| {n['latency_p50_ms']:.0f} / {n['latency_p90_ms']:.0f} ms |"
            for n in node
        ]
        lines.append("")
    return "\n".join(lines)
