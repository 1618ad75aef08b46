"""Re-ship the default student with a trained calibrated-stereo head (same network weights).

    .venv/bin/python scripts/ship_stereo_head.py RUN/stereo_head.pt --calibration-data runs/lander \
        --descent-calibration runs/seq31.bag runs/seq32.bag \
        --test-data runs/lander --descent-test runs/seq41.bag runs/seq42.bag --commands RUN/commands.log

On the calibration data (the lander val split and the descent calibration bags) it measures the
depth's disparity precision (the hazard noise model: the median robust sigma, widened on bland
ground by the fitted texture gain) and fits the hazard-probability calibration; then it installs
the file with that card and scores it, beside SGBM, the ideal matcher at its precision and a
constant depth, on the lander test split and the descent test bags; the range-selected orbital
network takes the same head.  Never give it test data as calibration data.

    .venv/bin/python scripts/ship_stereo_head.py --refresh-latency

measures the shipped head's latency again (after a change of how the pipeline runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lunar_recon.models import load_model
from lunar_recon.models.checkpoint import atomic_torch_save, attach_stereo_head
from lunar_recon.models.profile import count_parameters, latency_ms, percentile
from lunar_recon.models.registry import ORBITAL_STUDENT, SHIPPED_DIR, shipped_model_path
from lunar_recon.tools.benchmark import stereo_head_gflops

from card_test_metrics import DESCENT_SECTION, LANDER_SECTION, metrics_table  # scripts/: the card's test tables


HEAD_DATA = "; stereo head: simulated lander (10-30 m) and descent (10-100 m) pairs, train splits of seeds in commands"


def evaluate(*args: str) -> dict:
    subprocess.run([sys.executable, "-m", "lunar_recon", "evaluate-bag", *args], check=True)
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text())


def head_latency_ms(model, h: int, w: int, repeats: int = 20) -> float:
    """p50 of the head on an h x w pair as the pipeline runs it by default (its left-right check,
    the right view matched too; a pair wider than ``stereo_head_max_size`` matched at that
    size), 2 threads, after one warm-up."""
    from lunar_recon.geometry.camera import Intrinsics
    from lunar_recon.geometry.stereo import StereoCalibration
    from lunar_recon.pipeline import ReconstructionParams, stereo_head_match

    p = ReconstructionParams()
    calibration = StereoCalibration.rectified(Intrinsics(0.9 * w, 0.9 * w, (w - 1) / 2, (h - 1) / 2, w, h), 1.0)
    torch.set_num_threads(2)
    a = np.random.default_rng(0).integers(0, 255, (h, w), dtype=np.uint8)

    def run() -> None:
        stereo_head_match(
            model.stereo_head,
            a,
            a,
            calibration,
            p.stereo_head_min_confidence,
            p.stereo_head_max_size,
            p.stereo_head_left_right_check,
        )

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - t0))
    return percentile(sorted(times), 50)


def refresh_head_latency() -> None:
    """Measure the shipped head's latency again (a change of how it runs, not of its weights):
    into model_card.json, and MODEL_CARD.md's latency line and command log (its other sections
    stay as the calibration and test scripts wrote them)."""
    from card_test_metrics import with_command_log  # scripts/

    card_path = SHIPPED_DIR / "model_card.json"
    card = json.loads(card_path.read_text())
    model = load_model(shipped_model_path())
    card["stereo_head"]["cpu_latency_ms_2_threads"] = {
        "512x384": head_latency_ms(model, 384, 512),
        "1024x1024": head_latency_ms(model, 1024, 1024, 5),
    }
    command = "+ python scripts/ship_stereo_head.py --refresh-latency"
    card["commands"] = [*card["commands"], command]
    card_path.write_text(json.dumps(card, indent=1, default=str))
    md_path = SHIPPED_DIR / "MODEL_CARD.md"
    lines = md_path.read_text().splitlines()
    fresh = markdown_lines(card)
    lines = [next(f for f in fresh if f.startswith(LATENCY_LINE)) if x.startswith(LATENCY_LINE) else x for x in lines]
    md_path.write_text(with_command_log("\n".join(lines) + "\n", [command]))


LATENCY_LINE = "- CPU latency (2 threads):"


def write_markdown(card: dict) -> None:
    (SHIPPED_DIR / "MODEL_CARD.md").write_text("\n".join(markdown_lines(card)) + "\n")


def markdown_lines(card: dict) -> list[str]:
    head = card["stereo_head"]
    lines = [
        f"# {card['name']}",
        "",
        f"- file: `{card['file']}` (sha256 `{card['sha256'][:16]}…`)",
        f"- parameters: {card['parameters']:,} (network and calibrated-stereo head; teacher: {card['teacher']['parameters']:,})",
        f"- network GFLOPs per pair: {card['gflops_per_pair']}; head GFLOPs at 512x384: {head['gflops_512x384']:.2f}",
        f"{LATENCY_LINE} network {card['cpu_latency_ms_2_threads']} ms; head as the pipeline runs it "
        f"{ {k: round(v, 1) for k, v in head['cpu_latency_ms_2_threads'].items()} } ms",
        f"- inference size {card['inference_size']}, scale mode {card['scale_mode']!r}: on a rectified rig the "
        "metric reference and the fusion come from the head (no SGBM); otherwise from SGBM / sparse matches",
        f"- disparity precision {card['disparity_sigma_px']} px (1 sigma, robust, on the calibration pairs), "
        f"widened on bland ground with texture gain {card.get('disparity_sigma_texture_gain', 0)} "
        "(geometry.stereo.DisparityPrecision): the hazard map's noise model",
        f"- data: {card['data']}",
        "",
        "## Calibrated-stereo head",
        "",
        "```",
        json.dumps(head["config"], indent=1),
        "```",
        "",
        LANDER_SECTION,
        "",
        *metrics_table(card["test_metrics"]),
        "",
        DESCENT_SECTION,
        "",
        *metrics_table(card["descent_test_metrics"]),
        "",
        "## Hazard probability calibration",
        "",
        f"Calibrated hazard probability at raw probabilities 0, 0.1, ..., 1 (fitted on the calibration data: "
        "lander val split and descent calibration bags): "
        f"`{card['hazard_calibration']}`; a site is called a hazard at calibrated P >= {card.get('hazard_above', 0.5)} "
        "(`hazard_above`: the best hazard F1 on the same calibration frames)",
        "",
        "## Commands",
        "",
        "```",
        *card["commands"],
        "```",
    ]
    return lines


def share_with_orbital(head: str | Path) -> Path | None:
    """The range-selected orbital network takes the same head and, as ``ship_orbital`` made it,
    the default's card keys (``KEPT``: the noise model of this head among them; its metric path
    at orbit is this head, and ``models.registry`` shares one module where the weights are
    equal); its MODEL_CARD.md section is written again (``write_markdown`` drops it)."""
    from ship_orbital import KEPT, write_card_section  # scripts/

    orbital = SHIPPED_DIR / ORBITAL_STUDENT
    if not orbital.exists():
        return None
    attach_stereo_head(orbital, head, orbital)
    ckpt = torch.load(orbital, map_location="cpu", weights_only=True)
    default = torch.load(shipped_model_path(), map_location="cpu", weights_only=True)["meta"]["card"]
    card = ckpt["meta"]["card"]
    card.update({k: default[k] for k in KEPT if k in default})
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    note = f"# {stamp} the default's calibrated-stereo head {head} (scripts/ship_stereo_head.py)"
    card["commands"] = [*card.get("commands", []), note]
    atomic_torch_save(ckpt, orbital)
    write_card_section(card, hashlib.sha256(orbital.read_bytes()).hexdigest())
    return orbital


def main() -> None:
    if sys.argv[1:] == ["--refresh-latency"]:
        refresh_head_latency()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("head")
    ap.add_argument("--calibration-data", required=True, help="a lander dataset whose 'val' split calibrates")
    ap.add_argument(
        "--descent-calibration",
        nargs="+",
        default=[],
        help="descent bags (not the test ones) that calibrate beside the lander val split",
    )
    ap.add_argument("--test-data", required=True, help="a lander dataset whose 'test' split is reported")
    ap.add_argument("--descent-test", nargs="+", required=True, help="held-out descent bags")
    ap.add_argument("--commands", required=True, help="the command log of the head's training")
    ap.add_argument("--work", default="runs/ship_stereo_head")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = shipped_model_path()
    card_path = SHIPPED_DIR / "model_card.json"
    card = json.loads(card_path.read_text())
    # 1. The student with its head, and the deployment card (no calibration table: raw probabilities).
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / path.name
        attach_stereo_head(path, args.head, staged)
        ckpt = torch.load(staged, map_location="cpu", weights_only=True)
    deploy = dict(ckpt["meta"]["card"])
    deploy.pop("hazard_calibration", None)
    deploy.pop("hazard_above", None)
    ckpt["meta"]["card"] = deploy
    atomic_torch_save(ckpt, path)
    # 2. Disparity precision of its depth on the calibration split, then the hazard calibration
    #    fitted there with that noise model.
    calibration_inputs = [args.calibration_data, *args.descent_calibration, "--split", "val"]
    cal = evaluate(
        *calibration_inputs,
        "--model",
        str(path),
        "--no-references",
        "--disparity-sigma",
        "0",
        "--fit-disparity-precision",
        "--out",
        str(work / "calibration_sigma"),
        "--figures",
        "0",
    )
    # the median over frames: one frame without signal (a pair all in shadow) must not set it; it
    # stays the floor (never narrower than the model is on average), the texture gain of the fit
    # widens bland ground
    sigma_d = round(float(np.nanmedian([f["metrics"].get("disparity_sigma_px", np.nan) for f in cal["frames"]])), 3)
    fitted_precision = json.loads((work / "calibration_sigma" / "disparity_precision.json").read_text())
    gain = next(v for k, v in fitted_precision.items() if path.name in k)["disparity_sigma_texture_gain"]
    deploy.update(disparity_sigma_px=sigma_d, disparity_sigma_texture_gain=gain)
    atomic_torch_save(ckpt, path)
    evaluate(
        *calibration_inputs,
        "--model",
        str(path),
        "--no-references",
        "--fit-hazard-calibration",
        "--out",
        str(work / "calibration_hazard"),
        "--figures",
        "0",
    )
    fitted = json.loads((work / "calibration_hazard" / "hazard_calibration.json").read_text())
    entry = next(v for k, v in fitted.items() if path.name in k)
    deploy["hazard_calibration"] = [float(v) for v in entry["hazard_calibration"]]
    deploy["hazard_above"] = float(entry["hazard_above"])
    ckpt["meta"]["card"] = deploy
    atomic_torch_save(ckpt, path)
    # 3. The installed file on the held-out lander test split and descent bags, references beside.
    lander = evaluate(
        args.test_data,
        "--split",
        "test",
        "--model",
        str(path),
        "--stereo-ceiling",
        str(sigma_d),
        "--out",
        str(work / "lander_test"),
        "--figures",
        "2",
    )
    descent = evaluate(
        *args.descent_test,
        "--model",
        str(path),
        "--stereo-ceiling",
        str(sigma_d),
        "--out",
        str(work / "descent_test"),
        "--figures",
        "2",
    )
    model = load_model(path)
    head = model.stereo_head
    card.update(
        parameters=count_parameters(model),
        disparity_sigma_px=sigma_d,
        disparity_sigma_texture_gain=gain,
        hazard_calibration=deploy["hazard_calibration"],
        hazard_above=deploy["hazard_above"],
        stereo_head={
            "config": head.config.to_dict(),
            "parameters": count_parameters(head),
            "gflops_512x384": stereo_head_gflops(model, 384, 512),
            "cpu_latency_ms_2_threads": {
                "512x384": head_latency_ms(model, 384, 512),
                "1024x1024": head_latency_ms(model, 1024, 1024, 5),
            },
        },
        cpu_latency_ms_2_threads={"256x192": percentile(latency_ms(model.eval(), 192, 256), 50)},
        data=card["data"] if HEAD_DATA in card["data"] else card["data"] + HEAD_DATA,
        test_metrics=lander["summary"],
        test_metrics_by_range=lander["by_range"],
        descent_test_metrics=descent["summary"],
        commands=[
            *card["commands"],
            "# calibrated-stereo head:",
            *Path(args.commands).read_text().splitlines(),
            "+ python " + " ".join(sys.argv),
        ],
    )
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card, indent=1, default=str))
    write_markdown(card)
    share_with_orbital(args.head)
    print(json.dumps({k: card[k] for k in ("parameters", "disparity_sigma_px", "stereo_head")}, indent=1, default=str))


if __name__ == "__main__":
    main()
