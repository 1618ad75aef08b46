"""High-level inference: two numpy images of any size -> pointmaps in the left camera
frame at the input resolution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import CropInfo, preprocess_pil, to_pil_rgb


@dataclass
class PairPrediction:
    """Network outputs for a (left, right) pair, resampled to each input image's size.

    ``points_left`` (H, W, 3): 3-D point of every left pixel in the left camera frame
    (x right, y down, z forward; metres for metric models, arbitrary scale otherwise).
    ``points_right`` (H2, W2, 3): 3-D point of every right pixel, also in the left frame.
    ``conf_*``: confidence (>= 1 for MASt3R/DUSt3R); pixels the network did not see (the
    crop to a multiple of 16) are NaN in the points and 0 in the confidence.
    """

    points_left: np.ndarray
    points_right: np.ndarray
    conf_left: np.ndarray
    conf_right: np.ndarray
    desc_left: np.ndarray | None = None
    desc_right: np.ndarray | None = None
    network_hw: tuple[int, int] = (0, 0)

    @property
    def depth_left(self) -> np.ndarray:
        """z of the left pointmap: depth along the optical axis (NaN where invalid)."""
        return self.points_left[..., 2]


def _back_to_input(x: torch.Tensor, info: CropInfo, fill: float) -> torch.Tensor:
    """(B, C, h, w) map on the network grid -> (B, C, H0, W0) on the input grid."""
    h0, w0 = info.orig_hw
    if (h0, w0) == info.out_hw and info.crop_x0 == 0 and info.crop_y0 == 0:
        return x
    sx, sy = info.scale_xy
    hc, wc = info.out_hw
    u = (torch.arange(w0, dtype=torch.float32) + 0.5) * sx - 0.5 - info.crop_x0
    v = (torch.arange(h0, dtype=torch.float32) + 0.5) * sy - 0.5 - info.crop_y0
    gx = (2 * (u + 0.5) / wc - 1).view(1, w0).expand(h0, w0)
    gy = (2 * (v + 0.5) / hc - 1).view(h0, 1).expand(h0, w0)
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((u >= -0.5) & (u <= wc - 0.5)).view(1, w0) & ((v >= -0.5) & (v <= hc - 0.5)).view(h0, 1)
    return torch.where(inside.to(x.device), out, torch.full_like(out, fill))


@torch.inference_mode()
def predict_pair(model: torch.nn.Module, image_left: np.ndarray, image_right: np.ndarray,
                 size: int = 512, square_ok: bool = True) -> PairPrediction:
    """Run ``model`` on two numpy images (mono or colour, uint8/uint16/float).

    Images are prepared as the official ``load_images`` does (long side -> ``size``, crop
    to multiples of 16); ``square_ok`` defaults to True here so square lunar cameras keep
    their whole field of view.
    """
    device = next(model.parameters()).device
    t1, info1 = preprocess_pil(to_pil_rgb(image_left), size, square_ok)
    t2, info2 = preprocess_pil(to_pil_rgb(image_right), size, square_ok)
    view1 = {"img": t1.to(device), "true_shape": torch.tensor([t1.shape[2:]])}
    view2 = {"img": t2.to(device), "true_shape": torch.tensor([t2.shape[2:]])}
    res1, res2 = model(view1, view2)

    def grid(res: dict, key: str, info: CropInfo, fill: float) -> np.ndarray:
        t = res[key]
        t = t.unsqueeze(-1) if t.ndim == 3 else t
        out = _back_to_input(t.permute(0, 3, 1, 2).float(), info, fill)
        out = out[0].permute(1, 2, 0).cpu().numpy()
        return out[..., 0] if out.shape[-1] == 1 else out

    nan = float("nan")
    pred = PairPrediction(
        points_left=grid(res1, "pts3d", info1, nan),
        points_right=grid(res2, "pts3d_in_other_view", info2, nan),
        conf_left=grid(res1, "conf", info1, 0.0),
        conf_right=grid(res2, "conf", info2, 0.0),
        network_hw=info1.out_hw,
    )
    if "desc" in res1:
        pred.desc_left = grid(res1, "desc", info1, nan)
        pred.desc_right = grid(res2, "desc", info2, nan)
    return pred
