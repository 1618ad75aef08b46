"""Install a trained student as the package's default model, with its model card.

    .venv/bin/python scripts/ship_model.py runs/default/student/best.pt --teacher runs/default/teacher/best.pt \
        --test-data runs/default/test_data --commands runs/default/commands.log
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
from lunar_recon.models.registry import DEFAULT_STUDENT, SHIPPED_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("student")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--test-data", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--size", type=int, default=256, help="network input long side the student was trained at")
    ap.add_argument("--scale-mode", default="stereo", help="the scale mode the node should use for this student")
    args = ap.parse_args()
    student = load_model(args.student)
    teacher = load_model(args.teacher)
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    report = Path(args.student).parent / "test_report"
    cmd = [sys.executable, "-m", "lunar_recon", "evaluate-bag", args.test_data, "--model", args.student, "--model",
           args.teacher, "--baseline", "sgbm", "--scale-mode", args.scale_mode, "--inference-size", str(args.size),
           "--out", str(report), "--figures", "1"]
    subprocess.run(cmd, check=True)
    summary = json.loads((report / "metrics.json").read_text())["summary"]
    h, w = (args.size * 3) // 4 // 16 * 16, args.size
    card = {
        "name": "lunar_recon default student (nano)", "file": DEFAULT_STUDENT,
        "config": student.config.to_dict(), "parameters": count_parameters(student),
        "gflops_per_pair": {f"{w}x{h}": pair_gflops(student, h, w), "512x384": pair_gflops(student, 384, 512)},
        "cpu_latency_ms_2_threads": {f"{w}x{h}": percentile(latency_ms(student.eval(), h, w), 50)},
        "inference_size": args.size, "scale_mode": args.scale_mode,
        "teacher": {"config": teacher.config.to_dict(), "parameters": count_parameters(teacher)},
        "data": "simulated descent, 10-100 m (lunar_recon simulate --preset descent), seeds in commands.log",
        "test_metrics": summary, "commands": Path(args.commands).read_text().splitlines(),
    }
    out = SHIPPED_DIR / DEFAULT_STUDENT
    save_checkpoint(student, out, card={k: v for k, v in card.items() if k != "commands"})
    card["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    (SHIPPED_DIR / "model_card.json").write_text(json.dumps(card, indent=1, default=str))
    lines = [f"# {card['name']}", "", f"- file: `{DEFAULT_STUDENT}` (sha256 `{card['sha256'][:16]}…`)",
             f"- parameters: {card['parameters']:,} (teacher: {card['teacher']['parameters']:,})",
             f"- GFLOPs per pair: {card['gflops_per_pair']}", f"- CPU latency (2 threads): {card['cpu_latency_ms_2_threads']} ms",
             f"- inference size {args.size}, scale mode {args.scale_mode!r}", f"- data: {card['data']}", "",
             "## Test metrics (held-out simulated descent, no alignment)", "", "```",
             json.dumps(summary, indent=1, default=str), "```", "", "## Commands", "", "```",
             *card["commands"], "```"]
    (SHIPPED_DIR / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
