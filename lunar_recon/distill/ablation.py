"""Ablations of the distillation recipe at small scale with a fixed budget.

Every variant starts from one base :class:`DistillConfig` (the full recipe) and changes one
thing, trains for the same number of steps with the same seeds and data, and is scored by
the trainer's validation (depth / slope / hazard on held-out pairs) plus its size and CPU cost.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .trainer import DistillConfig, Trainer


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: dict = field(default_factory=dict)
    # ModelConfig fields changed from the base student: a mapping, or a function of the base config
    student: dict | Callable = field(default_factory=dict)


def _half_decoder(c) -> dict:
    heads = max(1, c.dec_num_heads // 2)
    return {"dec_embed_dim": max(heads * 16, c.dec_embed_dim // 2), "dec_num_heads": heads}


VARIANTS: tuple[Variant, ...] = (
    Variant("full", "full recipe: shared-basis SVD init, Distill3R + feature + normal loss, encoder fine-tuned"),
    Variant("no_svd", "random initialisation", {"init": "random"}),
    Variant("per_matrix_svd", "Grethen et al.'s per-matrix SVD truncation", {"init": "per_matrix"}),
    Variant("frozen_encoder", "encoder frozen after SVD init", {"freeze_encoder": True}),
    Variant("no_feature_loss", "output-only distillation", {"feature_pairs": {}}),
    Variant("no_normal_loss", "no surface-normal loss (points and features only)", {"normal_weight": 0.0}),
    Variant("gt_supervision", "ground truth only, no teacher outputs", {"loss": "gt", "gt_weight": 0.0, "feature_pairs": {}}),
    Variant("cnn_mobilenet", "MobileNetV3-style CNN encoder (full recipe)", {}, {"encoder_type": "mobilenet", "enc_depth": 2}),
    Variant("cnn_resnet", "ResNet-style CNN encoder (full recipe)", {}, {"encoder_type": "resnet", "enc_depth": 1}),
    Variant("narrow_decoder", "decoder half as wide (half the heads)", {}, _half_decoder),
    Variant("deep_decoder", "decoder twice as deep", {}, lambda c: {"dec_depth": 2 * c.dec_depth}),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
COLUMNS = (
    "variant",
    "seed",
    "parameters",
    "gflops",
    "cpu_ms_p50",
    "abs_rel",
    "delta1",
    "slope_mae_deg",
    "hazard_f1",
    "steps",
    "train_minutes",
    "description",
)


def variant_config(base: DistillConfig, variant: Variant, out_root: Path, seed: int, steps: int) -> DistillConfig:
    from ..models.students import student_config
    from ..models.config import ModelConfig

    student = student_config(base.student) if isinstance(base.student, str) else ModelConfig.from_dict(base.student)
    if variant.student:
        changes = variant.student(student) if callable(variant.student) else variant.student
        student = student.replace(**changes, name=f"{student.name}-{variant.name}")
    cfg = replace(
        base,
        **variant.overrides,
        student=student.to_dict(),
        seed=seed,
        steps=steps,
        out=str(out_root / f"{variant.name}_seed{seed}"),
        val_every=steps,
        checkpoint_every=max(1, steps // 4),
        warmup_steps=min(base.warmup_steps, max(1, steps // 10)),
    )
    cfg.validate()
    return cfg


def run_variant(
    cfg: DistillConfig, variant: Variant, height: int, width: int, threads: int = 2, progress=None, log=print
) -> dict:
    """Train (resuming an interrupted run) and score one variant; the row is cached as JSON."""
    from ..models.profile import count_parameters, latency_ms, pair_gflops, percentile

    out = Path(cfg.out)
    done = out / "ablation_row.json"
    if done.exists():
        return json.loads(done.read_text())
    trainer = Trainer(cfg, resume=(out / "last.pt").exists(), log=log)
    history = trainer.train(progress=progress)
    val = next((r for r in reversed(history) if "val_abs_rel" in r), None)
    if val is None:  # resumed after the last step: validate again
        val = {f"val_{k}": v for k, v in trainer.validate().items()}
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model.eval()
    row = {
        "variant": variant.name,
        "seed": cfg.seed,
        "parameters": count_parameters(model),
        "gflops": pair_gflops(model, height, width),
        "cpu_ms_p50": percentile(latency_ms(model, height, width, threads=threads, repeats=5), 50),
        "abs_rel": val.get("val_abs_rel"),
        "delta1": val.get("val_delta1"),
        "slope_mae_deg": val.get("val_slope_mae_deg"),
        "hazard_f1": val.get("val_hazard_f1"),
        "steps": cfg.steps,
        "train_minutes": sum(r.get("seconds", 0.0) for r in history) / 60,
        "description": variant.description,
    }
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=1))
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Per variant (in run order), over its seeds: the mean, the sample standard deviation
    (``_std``) and the half-width of the mean's 95 % interval (``_ci95``, Student's t with
    seeds - 1 degrees of freedom: three seeds give a wide one)."""
    from scipy.stats import t as student_t

    names = list(dict.fromkeys(r["variant"] for r in rows))
    out = []
    for name in names:
        rs = [r for r in rows if r["variant"] == name]
        agg = {"variant": name, "seeds": ",".join(str(r["seed"]) for r in rs), "description": rs[0]["description"]}
        for k in ("parameters", "gflops", "cpu_ms_p50", "abs_rel", "delta1", "slope_mae_deg", "hazard_f1"):
            vals = np.array([r[k] if r[k] is not None else np.nan for r in rs], dtype=np.float64)
            n = int(np.isfinite(vals).sum())
            agg[k] = float(np.nanmean(vals)) if n else math.nan
            agg[k + "_std"] = float(np.nanstd(vals, ddof=1)) if n > 1 else math.nan
            agg[k + "_ci95"] = float(student_t.ppf(0.975, n - 1) * agg[k + "_std"] / math.sqrt(n)) if n > 1 else math.nan
        out.append(agg)
    return out


def write_tables(out_root: Path, rows: list[dict], header: str) -> tuple[Path, Path]:
    """``ablation.csv`` (every seed) and ``ablation.md`` (mean ± sample standard deviation over
    seeds; for depth and slope also the mean's 95 % interval)."""
    out_root.mkdir(parents=True, exist_ok=True)
    csv_path = out_root / "ablation.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})

    def cell(a: dict, k: str, fmt: str, interval: bool = False) -> str:
        v, s, h = a[k], a.get(k + "_std", math.nan), a.get(k + "_ci95", math.nan)
        if not np.isfinite(v):
            return "–"
        text = format(v, fmt) + (f" ± {format(s, fmt)}" if np.isfinite(s) else "")
        return text + (f" [{format(v - h, fmt)}, {format(v + h, fmt)}]" if interval and np.isfinite(h) else "")

    lines = [
        header,
        "",
        "| variant | params (M) | GFLOPs | CPU ms | depth AbsRel [95 % interval] | δ<1.25 | slope MAE (°) [95 % interval] "
        "| hazard F1 | seeds | what changes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for a in summarise(rows):
        lines.append(
            f"| {a['variant']} | {a['parameters'] / 1e6:.2f} | {a['gflops']:.2f} | {a['cpu_ms_p50']:.0f} | "
            f"{cell(a, 'abs_rel', '.3f', True)} | {cell(a, 'delta1', '.3f')} | {cell(a, 'slope_mae_deg', '.1f', True)} | "
            f"{cell(a, 'hazard_f1', '.3f')} | {a['seeds']} | {a['description']} |"
        )
    md_path = out_root / "ablation.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path
