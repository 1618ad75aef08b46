"""The distillation trainer (``lunar-recon distill --config FILE``).

One trainer for three jobs: distil a student from a teacher cache, fine-tune a teacher on
ground truth, train the ground-truth-supervised baseline.  AdamW, linear warm-up + cosine
decay, gradient accumulation, frozen or fine-tuned encoder, bf16 autocast on GPU,
DistributedDataParallel under ``torchrun``, CSV (and TensorBoard when installed) logs,
periodic validation with the geometry metrics, best-checkpoint selection, atomic
checkpoints, and ``--resume`` that continues exactly where a run stopped: the batch order is
a pure function of (seed, step), and model, optimiser, scheduler and step are restored.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ..models.checkpoint import atomic_torch_save, load_model, read_checkpoint, save_checkpoint
from ..models.config import ModelConfig
from ..models.stereo3d import build_model
from ..models.students import student_config
from .losses import FeatureAlignment, confidence_regression, distill3r_loss, normal_loss

LOSSES = ("distill3r", "conf_regression", "gt")


@dataclass
class DistillConfig:
    out: str = "runs/student"
    data: str = "data/descent"
    student: str | dict = "nano"  # a preset name or a full ModelConfig mapping
    teacher: str | None = None  # checkpoint: SVD initialisation, feature targets' widths, 'finetune' start
    cache: str | None = None  # teacher cache (required for 'distill3r' / 'conf_regression' on teacher outputs)
    init: str = "shared"  # shared | per_matrix | random | teacher (fine-tune the teacher itself)
    stream_basis: str = "select"
    loss: str = "distill3r"  # distill3r | conf_regression (on teacher outputs) | gt (ground truth)
    gt_weight: float = 0.0  # add ground-truth confidence regression to a distillation loss
    normal_weight: float = 0.0  # add agreement of ground-truth surface normals (slope is a derivative)
    alpha: float = 0.2
    feature_pairs: dict = field(default_factory=dict)  # student token -> teacher token (from the cache)
    feature_kind: str = "cosine"
    feature_margin: float = 0.9
    feature_weight: float = 0.1
    freeze_encoder: bool = False
    size: int = 256
    steps: int = 200
    batch_size: int = 4
    accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 20
    val_every: int = 50
    val_pairs: int = 8
    checkpoint_every: int = 50
    seed: int = 0
    limit_pairs: int = 0
    threads: int = 0
    amp: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: str = "auto"

    @classmethod
    def from_yaml(cls, path: str | Path) -> "DistillConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown distillation settings {sorted(unknown)}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}")
        if self.loss != "gt" and not self.cache:
            raise ValueError(f"loss {self.loss!r} needs a teacher cache (set 'cache')")
        if self.init in ("shared", "per_matrix", "teacher") and not self.teacher:
            raise ValueError(f"init {self.init!r} needs a teacher checkpoint (set 'teacher')")
        if self.steps < 1 or self.batch_size < 1 or self.accum < 1:
            raise ValueError("steps, batch_size and accum must be >= 1")
        if min(self.gt_weight, self.normal_weight, self.feature_weight) < 0:
            raise ValueError("gt_weight, normal_weight and feature_weight must be >= 0")


def lr_at(step: int, cfg: DistillConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def batch_indices(step: int, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """Pair indices of a global step: a pure function of (seed, step), so a resumed run sees
    exactly the batches the uninterrupted run would have seen."""
    per_epoch = max(n // (batch * world), 1)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = (k * world + rank) * batch
    return [int(perm[(start + i) % n]) for i in range(batch)]


def _student(cfg: DistillConfig) -> torch.nn.Module:
    from .svd_init import svd_initialise

    if cfg.init == "teacher":
        return load_model(cfg.teacher).train()
    scfg = student_config(cfg.student) if isinstance(cfg.student, str) else ModelConfig.from_dict(cfg.student)
    if cfg.init == "random":
        torch.manual_seed(cfg.seed)
        return build_model(scfg)
    teacher = load_model(cfg.teacher)
    return svd_initialise(teacher, scfg, cfg.init, cfg.stream_basis)


class Trainer:
    def __init__(self, cfg: DistillConfig, resume: bool = False, log=print):
        cfg.validate()
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if dev == "cuda" and self.distributed:
            dev = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.device = torch.device(dev)
        from .data import TrainPairs

        self.train_set = TrainPairs(cfg.data, "train", cfg.size, cfg.limit_pairs)
        self.val_set = TrainPairs(cfg.data, "val", cfg.size, cfg.val_pairs) if (Path(cfg.data) / "val").is_dir() else None
        self.cache = None
        if cfg.cache:
            from .cache import TeacherCache

            self.cache = TeacherCache(cfg.cache)
        self.model = _student(cfg).to(self.device).train()
        for name, p in self.model.named_parameters():  # tensors inference never reads get no gradient
            if name == "mask_token" or ".refinenet4.resConfUnit1." in name:
                p.requires_grad_(False)
        if cfg.freeze_encoder:
            for name, p in self.model.named_parameters():
                if name.startswith(("patch_embed", "enc_blocks", "enc_norm")):
                    p.requires_grad_(False)
        self.align = None
        if cfg.feature_pairs:
            if self.cache is None:
                raise ValueError("feature distillation needs a teacher cache with those features")
            sdims = self._token_dims(self.model.config)
            tdims = self._token_dims(ModelConfig.from_dict(self.cache.meta["teacher_config"]))
            self.align = FeatureAlignment(
                {k: v for k, v in cfg.feature_pairs.items()},
                {k: sdims(k) for k in cfg.feature_pairs},
                {v: tdims(v) for v in cfg.feature_pairs.values()},
                cfg.feature_kind,
                cfg.feature_margin,
            ).to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.align is not None:
            params += list(self.align.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.net = self.model
        if self.distributed:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.step = 0
        self.best = float("inf")
        self.history: list[dict] = []
        if resume:
            self._load_state()
        use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    @staticmethod
    def _token_dims(mc: ModelConfig):
        return lambda name: mc.enc_embed_dim if ("enc" in name or "patch_embed" in name) else mc.dec_embed_dim

    # ---- state ---------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def _save_state(self) -> None:
        if self.rank != 0:
            return
        state = {
            "format": "lunar_recon.train_state/1",
            "step": self.step,
            "best": self.best,
            "config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "history": self.history,
            "distill": asdict(self.cfg),
            "align": self.align.state_dict() if self.align is not None else None,
        }
        atomic_torch_save(state, self.last_path)

    def _load_state(self) -> None:
        if not self.last_path.exists():
            self.log(f"no {self.last_path} to resume from: starting fresh")
            return
        state = read_checkpoint(self.last_path)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.align is not None and state.get("align"):
            self.align.load_state_dict(state["align"])
        self.step, self.best, self.history = int(state["step"]), float(state["best"]), list(state["history"])
        if self.rank == 0:  # the log continues from the checkpoint, not from rows logged after it
            _write_csv(self.out / "log.csv", self.history)
        self.log(f"resumed at step {self.step}")

    # ---- one step --------------------------------------------------------------------------------
    def _targets(self, names: list[str]):
        entries = [self.cache[n] for n in names]
        t1 = {
            "pts3d": torch.stack([e["pts1"] for e in entries]).to(self.device),
            "conf": torch.stack([e["conf1"] for e in entries]).to(self.device),
        }
        t2 = {
            "pts3d_in_other_view": torch.stack([e["pts2"] for e in entries]).to(self.device),
            "conf": torch.stack([e["conf2"] for e in entries]).to(self.device),
        }
        feats = {
            k: torch.stack([e["features"][k] for e in entries]).to(self.device)
            for k in (self.cfg.feature_pairs.values() if self.cfg.feature_pairs else [])
        }
        return t1, t2, feats

    def loss_on(self, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        v1, v2 = {"img": batch["img1"].to(self.device)}, {"img": batch["img2"].to(self.device)}
        with torch.autocast(**self.autocast):
            out = self.net(v1, v2, return_tokens=self.align is not None)
        p1, p2 = out[0], out[1]
        gt1, gt2 = batch["gt1"].to(self.device), batch["gt2"].to(self.device)
        parts = {}
        if cfg.loss == "gt":
            parts["gt"] = confidence_regression(p1, p2, gt1, gt2, alpha=cfg.alpha)
        else:
            t1, t2, feats = self._targets(batch["name"])
            if cfg.loss == "distill3r":
                parts["distill3r"] = distill3r_loss(p1, p2, t1, t2)
            else:
                parts["conf_regression"] = confidence_regression(p1, p2, t1["pts3d"], t2["pts3d_in_other_view"], alpha=cfg.alpha)
            if self.align is not None:
                parts["feature"] = cfg.feature_weight * self.align(out[2], feats)
            if cfg.gt_weight > 0:
                parts["gt"] = cfg.gt_weight * confidence_regression(p1, p2, gt1, gt2, alpha=cfg.alpha)
        if cfg.normal_weight > 0:
            parts["normal"] = cfg.normal_weight * normal_loss(p1, p2, gt1, gt2)
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def train(self, stop_after: int | None = None, progress=None) -> list[dict]:
        """Run to ``cfg.steps`` (or ``stop_after`` more steps, to simulate an interruption)."""
        from .data import collate

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        csv_path = self.out / "log.csv"
        target = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        tb = _tensorboard(self.out) if self.rank == 0 else None
        steps = range(self.step, target)
        for step in progress(steps) if progress else steps:
            for g in self.opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            self.opt.zero_grad(set_to_none=True)
            total, parts = 0.0, {}
            t0 = time.perf_counter()
            for a in range(cfg.accum):
                idx = batch_indices(step * cfg.accum + a, len(self.train_set), cfg.batch_size, cfg.seed, self.rank, self.world)
                loss, p = self.loss_on(collate([self.train_set[i] for i in idx]))
                (loss / cfg.accum).backward()
                total += float(loss.detach()) / cfg.accum
                parts = {k: parts.get(k, 0.0) + v / cfg.accum for k, v in p.items()}
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
            self.opt.step()
            self.step = step + 1
            row = {"step": self.step, "loss": total, "lr": lr_at(step, cfg), "seconds": time.perf_counter() - t0, **parts}
            if self.val_set is not None and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                metrics = self.validate()
                row.update({f"val_{k}": v for k, v in metrics.items()})
                score = metrics.get("abs_rel", float("inf"))
                if self.rank == 0 and score < self.best:
                    self.best = score
                    save_checkpoint(self.model, self.out / "best.pt", step=self.step, val=metrics)
            self.history.append(row)
            if self.rank == 0:
                _write_csv(csv_path, self.history)
                if tb is not None:
                    for k, v in row.items():
                        if k != "step" and isinstance(v, float):
                            tb.add_scalar(k, v, self.step)
            if self.step % cfg.checkpoint_every == 0 or self.step == target:
                self._save_state()
        if self.rank == 0 and self.step >= cfg.steps:
            save_checkpoint(self.model, self.out / "final.pt", step=self.step)
            if not (self.out / "best.pt").exists():
                save_checkpoint(self.model, self.out / "best.pt", step=self.step)
        return self.history

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Depth AbsRel / delta1, slope MAE and hazard F1 of the student on validation pairs
        (network resolution, against the ground truth, after a per-frame median scale)."""
        from ..evaluation import score_frame
        from ..geometry.hazard import HazardParams, hazard_map
        from .data import collate

        self.model.eval()
        rows = []
        for i in range(len(self.val_set)):
            b = collate([self.val_set[i]])
            r1, _ = self.model({"img": b["img1"].to(self.device)}, {"img": b["img2"].to(self.device)})
            pts = r1["pts3d"][0].float().cpu().numpy()
            gt = b["gt1"][0].numpy()
            # Students are trained scale-normalised (metric scale comes from the calibrated
            # baseline at run time), so validation compares after a per-frame median scale.
            both = np.isfinite(gt[..., 2]) & np.isfinite(pts[..., 2]) & (pts[..., 2] > 0)
            if both.any():
                pts = pts * np.float32(np.median(gt[..., 2][both] / pts[..., 2][both]))
            up = b["up"][0].numpy().astype(np.float64)
            params = HazardParams(resolution_m=0.5)
            valid = np.isfinite(gt).all(-1)
            truth = hazard_map(gt[valid], up, params) if valid.sum() > 3 else None
            m = score_frame(pts[..., 2], pts, gt[..., 2], truth, up, params)
            rows.append(m)
        self.model.train()
        keys = {"depth_abs_rel": "abs_rel", "depth_delta1": "delta1", "slope_mae_deg": "slope_mae_deg", "hazard_f1": "hazard_f1"}
        out = {}
        for k, short in keys.items():
            vals = np.array([r.get(k, np.nan) for r in rows], dtype=np.float64)
            out[short] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        return out


def _write_csv(path: Path, history: list[dict]) -> None:
    """Rewrite the log from the run's history (columns appear as validation adds them)."""
    fields: list[str] = []
    for row in history:
        fields += [k for k in row if k not in fields]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(history)
    tmp.replace(path)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(out / "tb"))
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None
