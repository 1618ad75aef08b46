"""Install a trained student as the package's default model, with its model card.

    .venv/bin/python scripts/ship_model.py runs/default/student/best.pt --teacher runs/default/teacher/best.pt \
        --test-data runs/default/test_data --calibration-data runs/default/calibration_data \
        --commands runs/default/commands.log
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path


from lunar_recon.models import load_model, save_checkpoint
from lunar_recon.models.profile import count_parameters, latency_ms, pair_gflops, percentile
from lunar_recon.models.registry import DEFAULT_STUDENT, SHIPPED_DIR, model_label
from lunar_recon.evaluation.runner import ceiling_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("student")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--test-data", required=True)
    ap.add_argument(
        "--calibration-data",
        required=True,
        help="held-out pairs (not the test split) on which the disparity precision is measured",
    )
    ap.add_argument("--commands", required=True)
    ap.add_argument("--size", type=int, default=256, help="network input long side the student was trained at")
    ap.add_argument("--scale-mode", default="stereo_local", help="the scale mode the node should use for this student")
    args = ap.parse_args()
    student = load_model(args.student)
    teacher = load_model(args.teacher)
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    evaluate = [
        sys.executable,
        "-m",
        "lunar_recon",
        "evaluate-bag",
        "--scale-mode",
        args.scale_mode,
        "--inference-size",
        str(args.size),
    ]
    # 1. The student's disparity precision (robust sigma, px at the input resolution) on the
    #    calibration pairs: the hazard map's noise model for this student.
    cal = Path(args.student).parent / "calibration_report"
    subprocess.run(
        [
            *evaluate,
            args.calibration_data,
            "--model",
            args.student,
            "--out",
            str(cal),
            "--figures",
            "0",
            "--disparity-sigma",
            "0",
        ],
        check=True,
    )
    cal_summary = json.loads((cal / "metrics.json").read_text())["summary"]
    sigma_d = round(float(next(iter(cal_summary.values()))["disparity_sigma_px"]), 3)
    # 2. Install it with the deployment fields of its card, and judge that very file on the
    #    held-out test (each model with its own noise model: the student's as measured).
    out = SHIPPED_DIR / DEFAULT_STUDENT
    deploy = {"inference_size": args.size, "scale_mode": args.scale_mode, "disparity_sigma_px": sigma_d}
    save_checkpoint(student, out, card=deploy)
    report = Path(args.student).parent / "test_report"
    # With the ceiling of two-view stereo at the student's precision on the same pairs: what the
    # rig allows, beside what the student reaches.
    subprocess.run(
        [
            *evaluate,
            args.test_data,
            "--model",
            str(out),
            "--model",
            args.teacher,
            "--baseline",
            "sgbm",
            "--stereo-ceiling",
            str(sigma_d),
            "--out",
            str(report),
            "--figures",
            "1",
        ],
        check=True,
    )
    metrics = json.loads((report / "metrics.json").read_text())
    summary, by_range = metrics["summary"], metrics["by_range"]
    h, w = (args.size * 3) // 4 // 16 * 16, args.size
    card = {
        "name": f"lunar_recon default student ({student.config.name})",
        "file": DEFAULT_STUDENT,
        "config": student.config.to_dict(),
        "parameters": count_parameters(student),
        "gflops_per_pair": {f"{w}x{h}": pair_gflops(student, h, w), "512x384": pair_gflops(student, 384, 512)},
        "cpu_latency_ms_2_threads": {f"{w}x{h}": percentile(latency_ms(student.eval(), h, w), 50)},
        **deploy,
        "teacher": {"config": teacher.config.to_dict(), "parameters": count_parameters(teacher)},
        "data": "simulated descent, 10-100 m (lunar_recon simulate --preset descent), seeds in commands.log",
        "test_metrics": summary,
        "test_metrics_by_range": by_range,
        "commands": Path(args.commands).read_text().splitlines(),
    }
    save_checkpoint(student, out, card={k: v for k, v in card.items() if k != "commands"})
    card["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    ceiling = ceiling_label(sigma_d)
    student_f1, ceiling_f1 = summary[model_label(str(out))]["hazard_f1"], summary[ceiling]["hazard_f1"]
    (SHIPPED_DIR / "model_card.json").write_text(json.dumps(card, indent=1, default=str))
    lines = [
        f"# {card['name']}",
        "",
        f"- file: `{DEFAULT_STUDENT}` (sha256 `{card['sha256'][:16]}…`)",
        f"- parameters: {card['parameters']:,} (teacher: {card['teacher']['parameters']:,})",
        f"- GFLOPs per pair: {card['gflops_per_pair']}",
        f"- CPU latency (2 threads): {card['cpu_latency_ms_2_threads']} ms",
        f"- inference size {args.size}, scale mode {args.scale_mode!r}",
        f"- disparity precision {sigma_d} px (1 sigma, robust, on the calibration pairs): the hazard map's noise model",
        f"- hazard F1 on the test pairs {student_f1:.2f}; an ideal matcher at that precision scores {ceiling_f1:.2f} "
        "there (the ceiling of two-view stereo on this rig; chance: "
        f"{summary[ceiling]['hazard_f1_chance']:.2f})",
        f"- data: {card['data']}",
        "",
        "## Test metrics (held-out simulated descent, no alignment)",
        "",
        "```",
        json.dumps(summary, indent=1, default=str),
        "```",
        "",
        "## By range",
        "",
        "```",
        json.dumps(by_range, indent=1, default=str),
        "```",
        "",
        "## Commands",
        "",
        "```",
        *card["commands"],
        "```",
    ]
    (SHIPPED_DIR / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
