"""Training of the student's calibrated-stereo head (``models.stereo_head``) on simulated rigs.

Supervision is the renderer's exact disparity ``f B / Z`` on pixels both cameras see (a
left-right depth check removes occlusions): a negative log-likelihood of the true disparity
under each cost volume's softmax (the features learn to separate the right match from the
rest) and a robust L1 on the sub-pixel disparity.  Crops, gain and gamma per view, and a
vertical flip (rows stay epipolar lines) make every step new.  Batches are a pure function of
(seed, step), and ``last.pt`` holds weights, optimiser and step, so ``--resume`` continues the
same run after an interruption.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import StereoDataset
from ..models.checkpoint import atomic_torch_save, read_checkpoint
from ..models.stereo_head import EpipolarStereoHead, HeadOutput, StereoHeadConfig, count_parameters, grow_state_dict


@dataclass
class StereoHeadTraining:
    steps: int = 3000
    batch: int = 8
    crop_hw: tuple[int, int] = (128, 256)
    lr: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 200
    fine_l1_weight: float = 1.0
    init: str = ""  # a trained head (stereo_head.pt) to start from; its config's sizes may differ


def disparity_truth(
    depth_left: np.ndarray, depth_right: np.ndarray, fx: float, baseline_m: float, agreement: float = 0.02
) -> np.ndarray:
    """Left disparity ``fx B / Z`` where the right camera sees the same surface (NaN elsewhere)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = fx * baseline_m / depth_left.astype(np.float64)
    h, w = d.shape
    x = np.arange(w)[None, :] - d
    ok = np.isfinite(d) & (d > 0) & (x >= 0)
    xr = np.clip(np.nan_to_num(np.round(x), nan=0), 0, w - 1).astype(int)
    zr = depth_right[np.arange(h)[:, None], xr]
    ok &= np.abs(zr - depth_left) <= agreement * depth_left
    return np.where(ok, d, np.nan).astype(np.float32)


def load_pairs(folders: list[str], split: str = "train") -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(left, right, disparity truth) of every rectified pair in the datasets' ``split``."""
    pairs = []
    for folder in folders:
        for sample in StereoDataset(folder, split):
            if not sample.rectified or sample.depth_left is None or sample.depth_right is None:
                continue
            truth = disparity_truth(sample.depth_left, sample.depth_right, sample.K_left.fx, sample.baseline_m)
            pairs.append((_gray01(sample.left), _gray01(sample.right), truth))
    if not pairs:
        raise ValueError(f"no rectified pair with depth truth in split {split!r} of {folders}")
    return pairs


def _gray01(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    return a.astype(np.float32) / scale


def make_batch(pairs, step: int, cfg: StereoHeadTraining) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([cfg.seed, step])
    ch, cw = cfg.crop_hw
    lefts, rights, truths = [], [], []
    for _ in range(cfg.batch):
        left, right, truth = pairs[int(rng.integers(len(pairs)))]
        h, w = left.shape
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        # the right crop is the same window: matches left of it are cut off, as at an image border
        views = []
        for img in (left[sl], right[sl]):
            gain, gamma = float(rng.uniform(0.7, 1.3)), float(rng.uniform(0.8, 1.25))
            views.append(np.clip(img * gain, 0, 1) ** gamma + rng.normal(0, 0.005, img.shape).astype(np.float32))
        t = truth[sl].copy()
        t[np.arange(cw)[None, :] - np.nan_to_num(t, nan=0) < 0] = np.nan
        if rng.random() < 0.5:
            views, t = [v[::-1] for v in views], t[::-1]
        lefts.append(views[0])
        rights.append(views[1])
        truths.append(t)

    def stack(xs):
        return torch.from_numpy(np.ascontiguousarray(np.stack(xs)[:, None], dtype=np.float32))

    return stack(lefts), stack(rights), stack(truths)


def _nll(logits: torch.Tensor, index: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """-log p(true index) under softmax(logits) over the last dim, linear between the two
    nearest entries; ``index`` and ``ok`` have the logits' shape without the last dim."""
    logp = torch.log_softmax(logits, dim=-1)
    n = logits.shape[-1]
    index = index.clamp(0, n - 1)
    i0 = index.floor()
    a = index - i0
    i1 = (i0 + 1).clamp(max=n - 1)
    p = (1 - a) * torch.gather(logp, -1, i0.long()[..., None])[..., 0].exp() + a * torch.gather(logp, -1, i1.long()[..., None])[
        ..., 0
    ].exp()
    nll = -torch.log(p + 1e-6)
    return nll[ok].mean() if ok.any() else logits.sum() * 0


def head_loss(
    out: HeadOutput, truth: torch.Tensor, cfg: StereoHeadTraining, head_cfg: StereoHeadConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """``truth``: (B, 1, H, W) disparity, NaN where unknown."""
    s, r = head_cfg.coarse_stride, head_cfg.refine_radius_px
    levels = out.coarse_logits.shape[-1]
    coarse_truth = truth[:, 0, ::s, ::s] / s
    ok_c = torch.isfinite(coarse_truth) & (coarse_truth < levels - 1)
    coarse = _nll(out.coarse_logits, torch.nan_to_num(coarse_truth), ok_c)
    shift = (truth - out.prior + r)[:, 0]
    ok_f = torch.isfinite(shift) & (shift >= 0) & (shift <= 2 * r)
    assert out.fine_logits is not None, "training reads the fine volume (it is kept where gradients flow)"
    fine = _nll(out.fine_logits, torch.nan_to_num(shift), ok_f)
    pred, true = out.disparity[:, 0][ok_f], torch.nan_to_num(truth[:, 0])[ok_f]
    l1 = torch.nn.functional.smooth_l1_loss(pred, true, beta=0.5) if ok_f.any() else out.disparity.sum() * 0
    loss = coarse + fine + cfg.fine_l1_weight * l1
    ok = torch.isfinite(truth)
    stats = {
        "loss": float(loss.detach()),
        "coarse_nll": float(coarse.detach()),
        "fine_nll": float(fine.detach()),
        "in_window": float(ok_f.sum() / ok.sum().clamp_min(1)),
        "median_abs_px": float((pred - true).detach().abs().median()) if ok_f.any() else float("nan"),
    }
    return loss, stats


def lr_at(step: int, cfg: StereoHeadTraining) -> float:
    warm = min(1.0, (step + 1) / 100)
    return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))


def train_stereo_head(
    datasets: list[str],
    out: str | Path,
    cfg: StereoHeadTraining,
    head_cfg: StereoHeadConfig | None = None,
    resume: bool = False,
    log=print,
) -> Path:
    """Train, checkpointing ``out/last.pt``; writes ``out/stereo_head.pt`` (config + weights) and
    ``out/history.json``.  Returns the head file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    head_cfg = head_cfg or StereoHeadConfig()
    torch.manual_seed(cfg.seed)
    head = EpipolarStereoHead(head_cfg)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    step, history = 0, []
    last = out / "last.pt"
    if resume and last.exists():
        state = read_checkpoint(last)
        if state.get("training") != asdict(cfg) or state.get("config") != head_cfg.to_dict():
            raise ValueError(f"{last}: was made with other settings; resume with the same ones or start a new --out")
        head.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])
        log(f"resumed at step {step}")
    else:
        if resume:
            log(f"no {last} to resume from: starting fresh")
        if cfg.init:
            state = read_checkpoint(cfg.init)
            if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
                raise ValueError(f"{cfg.init}: not a stereo head file (no 'model' weights)")
            head.load_state_dict(grow_state_dict(state["model"], head))
            log(f"started from {cfg.init}")
    pairs = load_pairs(datasets)
    log(f"stereo head: {count_parameters(head)} parameters, {len(pairs)} training pairs")
    t0 = time.time()
    head.train()
    while step < cfg.steps:
        left, right, truth = make_batch(pairs, step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, stats = head_loss(head(left, right), truth, cfg, head_cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0 or step == cfg.steps:
            history.append({"step": step, **stats})
            log(
                f"step {step}/{cfg.steps}  loss {stats['loss']:.3f}  coarse {stats['coarse_nll']:.3f}  "
                f"fine {stats['fine_nll']:.3f}  in window {stats['in_window']:.3f}  "
                f"median |err| {stats['median_abs_px']:.3f} px  ({time.time() - t0:.0f} s)"
            )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            atomic_torch_save(
                {
                    "model": head.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "history": history,
                    "training": asdict(cfg),
                    "config": head_cfg.to_dict(),
                },
                last,
            )
    head.eval()
    path = atomic_torch_save(stereo_head_payload(head), out / "stereo_head.pt")
    (out / "history.json").write_text(
        json.dumps(
            {"training": asdict(cfg), "config": head_cfg.to_dict(), "datasets": [str(d) for d in datasets], "history": history},
            indent=1,
        )
    )
    return path


def stereo_head_payload(head: EpipolarStereoHead) -> dict:
    """What a checkpoint stores of a head: its config and weights (plain tensors)."""
    return {"config": head.config.to_dict(), "model": head.state_dict()}
