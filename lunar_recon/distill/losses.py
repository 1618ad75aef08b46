"""Distillation and supervision losses.

* :func:`confidence_regression` — MASt3R/DUSt3R confidence-weighted regression:
  ``sum(c * ||x - x*|| - alpha * log c)`` over valid pixels, points normalised by their mean
  distance to the origin (scale-invariant) or kept metric.
* :func:`distill3r_loss` — Distill3R: squared L2 on scale-normalised points weighted by
  ``clamp(c_teacher / 10, 0.1, 1)`` plus ``0.001 * |c_student - c_teacher|``.
* :func:`normal_loss` — agreement of local surface normals (finite differences of the
  pointmap at a few pixel spacings): slope is a derivative of the surface, which a pointwise
  loss barely constrains; normals are scale-invariant, so any target works.
* :class:`FeatureAlignment` — intermediate-token alignment through learned linear projectors
  (student width -> teacher width): cosine with a margin, or L2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalize_pointmaps(p1: torch.Tensor, p2: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor):
    """Divide both views' points by their joint mean distance to the origin (valid pixels)."""
    d = torch.cat([(p1.norm(dim=-1) * v1).flatten(1), (p2.norm(dim=-1) * v2).flatten(1)], dim=1).sum(1)
    n = torch.cat([v1.flatten(1), v2.flatten(1)], dim=1).sum(1).clamp(min=1)
    scale = (d / n).clamp(min=1e-8)[:, None, None, None]
    return p1 / scale, p2 / scale


def _valid(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    ok = torch.isfinite(t).all(dim=-1)
    return ok if mask is None else ok & mask.bool()


def confidence_regression(
    pred1: dict,
    pred2: dict,
    gt1: torch.Tensor,
    gt2: torch.Tensor,
    mask1: torch.Tensor | None = None,
    mask2: torch.Tensor | None = None,
    alpha: float = 0.2,
    normalize: bool = True,
) -> torch.Tensor:
    """MASt3R's confidence-aware regression of both pointmaps (both in view 1's frame)."""
    v1, v2 = _valid(gt1, mask1), _valid(gt2, mask2)
    g1, g2 = torch.nan_to_num(gt1), torch.nan_to_num(gt2)
    p1, p2 = pred1["pts3d"], pred2["pts3d_in_other_view"]
    if normalize:
        p1, p2 = normalize_pointmaps(p1, p2, v1.float(), v2.float())
        g1, g2 = normalize_pointmaps(g1, g2, v1.float(), v2.float())
    total, count = 0.0, 0
    for p, g, v, c in ((p1, g1, v1, pred1["conf"]), (p2, g2, v2, pred2["conf"])):
        err = (p - g).norm(dim=-1)
        total = total + (c * err - alpha * torch.log(c))[v].sum()
        count += int(v.sum())
    return total / max(count, 1)


def distill3r_loss(
    pred1: dict,
    pred2: dict,
    teacher1: dict,
    teacher2: dict,
    mask1: torch.Tensor | None = None,
    mask2: torch.Tensor | None = None,
    conf_weight: float = 1e-3,
) -> torch.Tensor:
    """Confidence-aware pointmap distillation (Distill3R)."""
    t1, t2 = teacher1["pts3d"].float(), teacher2["pts3d_in_other_view"].float()
    v1, v2 = _valid(t1, mask1), _valid(t2, mask2)
    p1, p2 = normalize_pointmaps(pred1["pts3d"], pred2["pts3d_in_other_view"], v1.float(), v2.float())
    q1, q2 = normalize_pointmaps(torch.nan_to_num(t1), torch.nan_to_num(t2), v1.float(), v2.float())
    total, count = 0.0, 0
    for p, q, v, cs, ct in (
        (p1, q1, v1, pred1["conf"], teacher1["conf"].float()),
        (p2, q2, v2, pred2["conf"], teacher2["conf"].float()),
    ):
        w = (ct / 10.0).clamp(0.1, 1.0)
        sq = ((p - q) ** 2).sum(-1)
        total = total + (w * sq)[v].sum() + conf_weight * (cs - ct).abs()[v].sum()
        count += int(v.sum())
    return total / max(count, 1)


def surface_normals(points: torch.Tensor, valid: torch.Tensor | None, spacing: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals of a (B, H, W, 3) pointmap from central differences ``spacing`` pixels
    apart, on the interior (B, H - 2s, W - 2s), and where all four neighbours are ``valid``
    (None: all are).  The construction of :func:`lunar_recon.geometry.slope.normals_from_points`
    (numpy, the node's hot path), in torch so a loss can differentiate it; unoriented."""
    s = spacing
    du = points[:, s:-s, 2 * s :] - points[:, s:-s, : -2 * s]
    dv = points[:, 2 * s :, s:-s] - points[:, : -2 * s, s:-s]
    n = torch.linalg.cross(du, dv, dim=-1)
    norm = n.norm(dim=-1, keepdim=True)
    ok = norm[..., 0] > 1e-12
    if valid is not None:
        ok = ok & valid[:, s:-s, 2 * s :] & valid[:, s:-s, : -2 * s] & valid[:, 2 * s :, s:-s] & valid[:, : -2 * s, s:-s]
    return n / norm.clamp(min=1e-12), ok


def normal_loss(
    pred1: dict, pred2: dict, target1: torch.Tensor, target2: torch.Tensor, spacings: tuple[int, ...] = (2, 4, 8)
) -> torch.Tensor:
    """Mean distance between unit surface normals of prediction and target, both views, at
    several pixel spacings (|n - n*| ~ the angle between them, so small tilts keep a useful
    gradient, unlike 1 - cos).  Targets are NaN where invalid."""
    total, count = 0.0, 0
    for p, t in ((pred1["pts3d"], target1), (pred2["pts3d_in_other_view"], target2)):
        v = torch.isfinite(t).all(dim=-1)
        t = torch.nan_to_num(t.float())
        for s in spacings:
            if min(t.shape[1], t.shape[2]) <= 2 * s:
                continue
            nt, ok_t = surface_normals(t, v, s)
            np_, ok_p = surface_normals(p.float(), None, s)
            ok = ok_t & ok_p
            total = total + (np_ - nt).norm(dim=-1)[ok].sum()
            count += int(ok.sum())
    return total / max(count, 1)


class FeatureAlignment(nn.Module):
    """Align chosen student token layers to teacher token layers through learned projectors."""

    def __init__(
        self,
        pairs: dict[str, str],
        student_dims: dict[str, int],
        teacher_dims: dict[str, int],
        kind: str = "cosine",
        margin: float = 0.9,
    ):
        super().__init__()
        if kind not in ("cosine", "l2"):
            raise ValueError("feature loss kind must be 'cosine' or 'l2'")
        self.pairs = dict(pairs)  # student token name -> teacher token name
        self.kind, self.margin = kind, margin
        self.proj = nn.ModuleDict(
            {_key(s): nn.Linear(student_dims[s], teacher_dims[t], bias=False) for s, t in self.pairs.items()}
        )

    def forward(self, student_tokens: dict[str, torch.Tensor], teacher_tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = []
        for s, t in self.pairs.items():
            x = self.proj[_key(s)](student_tokens[s])
            y = teacher_tokens[t].to(x.dtype)
            if self.kind == "cosine":  # only penalise similarity below the margin
                losses.append(F.relu(self.margin - F.cosine_similarity(x, y, dim=-1)).mean())
            else:
                losses.append(F.mse_loss(x, y))
        return torch.stack(losses).mean() if losses else torch.zeros(())


def _key(name: str) -> str:
    return name.replace(".", "__")
