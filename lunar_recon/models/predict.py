"""High-level inference: two numpy images of any size -> pointmaps in the left camera
frame at the input resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import CropInfo, preprocess_image, to_uint8_image


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
    points_right: np.ndarray | None  # None when the right view's head was skipped
    conf_left: np.ndarray
    conf_right: np.ndarray | None
    desc_left: np.ndarray | None = None
    desc_right: np.ndarray | None = None
    network_hw: tuple[int, int] = (0, 0)

    @property
    def depth_left(self) -> np.ndarray:
        """z of the left pointmap: depth along the optical axis (NaN where invalid)."""
        return self.points_left[..., 2]


def _is_pure_resize(info: CropInfo) -> bool:
    return info.crop_x0 == 0 and info.crop_y0 == 0 and info.resized_hw == info.out_hw


def _back_to_input(x: torch.Tensor, info: CropInfo, fill: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) map on the network grid -> (B, C, H0, W0) on the input grid, any resize
    and crop offset; input pixels the network did not see get ``fill`` (one value per channel)."""
    h0, w0 = info.orig_hw
    if (h0, w0) == info.out_hw and info.crop_x0 == 0 and info.crop_y0 == 0:
        return x
    hc, wc = info.out_hw
    sx, sy = info.scale_xy
    u = (torch.arange(w0, dtype=torch.float32) + 0.5) * sx - 0.5 - info.crop_x0
    v = (torch.arange(h0, dtype=torch.float32) + 0.5) * sy - 0.5 - info.crop_y0
    gx = (2 * (u + 0.5) / wc - 1).view(1, w0).expand(h0, w0)
    gy = (2 * (v + 0.5) / hc - 1).view(h0, 1).expand(h0, w0)
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((u >= -0.5) & (u <= wc - 0.5)).view(1, w0) & ((v >= -0.5) & (v <= hc - 0.5)).view(h0, 1)
    return torch.where(inside.to(x.device), out, fill.to(out).view(1, -1, 1, 1))


def _to_input_grid(res: dict, keys: tuple[str, ...], info: CropInfo, fills: tuple[float, ...]) -> list[np.ndarray]:
    """Network outputs of one view -> (H0, W0[, C]) numpy maps on the input grid, all
    resampled in one call (points, confidence, descriptors stacked along channels)."""
    maps = [res[k].unsqueeze(-1) if res[k].ndim == 3 else res[k] for k in keys]
    widths = [m.shape[-1] for m in maps]
    stacked = torch.cat(maps, dim=-1).permute(0, 3, 1, 2).float()
    if _is_pure_resize(info) and stacked.shape[0] == 1:
        # OpenCV's bilinear resize samples as F.interpolate does (half-pixel centres, clamped
        # edges; float maps are not quantised) and is ~10x faster on CPU for these maps.
        import cv2

        arr = stacked[0].permute(1, 2, 0).cpu().numpy()
        arr = cv2.resize(arr, info.orig_hw[::-1], interpolation=cv2.INTER_LINEAR).reshape(*info.orig_hw, -1)
    else:
        fill = torch.cat([torch.full((w,), f) for w, f in zip(widths, fills)])  # NaN points, 0 confidence
        arr = _back_to_input(stacked, info, fill)[0].permute(1, 2, 0).cpu().numpy()
    parts, c0 = [], 0
    for w in widths:
        part = arr[..., c0 : c0 + w]
        parts.append(part[..., 0] if w == 1 else part)
        c0 += w
    return parts


@torch.inference_mode()
def predict_pair(
    model: torch.nn.Module,
    image_left: np.ndarray,
    image_right: np.ndarray,
    size: int = 512,
    square_ok: bool = True,
    right_view: bool = True,
) -> PairPrediction:
    """Run ``model`` on two numpy images (mono or colour, uint8/uint16/float).

    Images are prepared as the official ``load_images`` does (long side -> ``size``, crop
    to multiples of 16); ``square_ok`` defaults to True here so square lunar cameras keep
    their whole field of view.  ``right_view=False`` skips the right view's head (its
    pointmap is needed only to recover the relative pose): ``points_right`` and
    ``conf_right`` are then None.
    """
    device = next(model.parameters()).device
    t1, info1 = preprocess_image(to_uint8_image(image_left), size, square_ok)
    t2, info2 = preprocess_image(to_uint8_image(image_right), size, square_ok)
    view1 = {"img": t1.to(device), "true_shape": torch.tensor([t1.shape[2:]])}
    view2 = {"img": t2.to(device), "true_shape": torch.tensor([t2.shape[2:]])}
    res1, res2 = model(view1, view2, view2_head=right_view)
    has_desc = "desc" in res1
    keys = ("pts3d", "conf", "desc") if has_desc else ("pts3d", "conf")
    nan = float("nan")
    fills = (nan, 0.0, nan)[: len(keys)]
    left = _to_input_grid(res1, keys, info1, fills)
    right = [None] * len(keys)
    if right_view:
        right = _to_input_grid(res2, ("pts3d_in_other_view",) + keys[1:], info2, fills)
    return PairPrediction(
        points_left=left[0],
        points_right=right[0],
        conf_left=left[1],
        conf_right=right[1],
        desc_left=left[2] if has_desc else None,
        desc_right=right[2] if has_desc else None,
        network_hw=info1.out_hw,
    )
