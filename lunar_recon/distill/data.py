"""Training pairs at the network resolution: preprocessed images and ground-truth pointmaps
(both views in the left camera frame, MASt3R's convention), cropped exactly like the images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.dataset import StereoDataset
from ..geometry.camera import depth_to_points
from ..models.preprocess import preprocess_pil, to_pil_rgb


@dataclass
class TrainItem:
    name: str
    img1: torch.Tensor  # (3, H, W) in [-1, 1]
    img2: torch.Tensor
    gt1: torch.Tensor  # (H, W, 3) float32, NaN invalid, left frame
    gt2: torch.Tensor
    up: torch.Tensor  # gravity up in the left frame
    K: tuple[float, float, float, float]  # intrinsics at the network resolution


def _crop_like(arr: np.ndarray, info) -> np.ndarray:
    h, w = info.resized_hw
    r = cv2.resize(arr, (w, h), interpolation=cv2.INTER_NEAREST)
    y0, x0 = info.crop_y0, info.crop_x0
    return r[y0 : y0 + info.out_hw[0], x0 : x0 + info.out_hw[1]]


class TrainPairs(torch.utils.data.Dataset):
    """A lunar_recon dataset split as tensors at ``size`` (long side; square images kept square)."""

    def __init__(self, root: str | Path, split: str, size: int = 256, limit: int = 0):
        self.ds = StereoDataset(root, split=split)
        if self.ds.format != "lunar_recon":
            raise ValueError("training reads simulated lunar_recon datasets only (never the StereoLunar sample)")
        self.size = size
        self.n = len(self.ds) if not limit else min(limit, len(self.ds))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> TrainItem:
        s = self.ds[i]
        t1, info1 = preprocess_pil(to_pil_rgb(s.left), self.size, square_ok=True)
        t2, info2 = preprocess_pil(to_pil_rgb(s.right), self.size, square_ok=True)
        p1 = depth_to_points(s.depth_left, s.K_left)
        T = s.T_left_from_right
        p2 = depth_to_points(s.depth_right, s.K_right) @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
        g1, g2 = _crop_like(p1, info1), _crop_like(p2, info2)
        sx, sy = info1.scale_xy
        K = (
            s.K_left.fx * sx,
            s.K_left.fy * sy,
            (s.K_left.cx + 0.5) * sx - 0.5 - info1.crop_x0,
            (s.K_left.cy + 0.5) * sy - 0.5 - info1.crop_y0,
        )
        return TrainItem(
            s.name,
            t1[0],
            t2[0],
            torch.from_numpy(np.ascontiguousarray(g1)),
            torch.from_numpy(np.ascontiguousarray(g2)),
            torch.from_numpy(s.up_left).float(),
            K,
        )


def collate(items: list[TrainItem]) -> dict:
    return {
        "name": [it.name for it in items],
        "img1": torch.stack([it.img1 for it in items]),
        "img2": torch.stack([it.img2 for it in items]),
        "gt1": torch.stack([it.gt1 for it in items]),
        "gt2": torch.stack([it.gt2 for it in items]),
        "up": torch.stack([it.up for it in items]),
        "K": [it.K for it in items],
    }
