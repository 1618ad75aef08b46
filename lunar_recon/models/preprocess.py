"""Image preprocessing identical to the official ``load_images`` (dust3r.utils.image).

Resize the long side to ``size`` (LANCZOS when shrinking, BICUBIC otherwise; Python
half-to-even rounding of the new size), centre-crop to multiples of 16 (square images
to 4:3 unless ``square_ok``), scale to [-1, 1].  The ``size=224`` branch resizes the
short side and crops a square.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch


@dataclass(frozen=True)
class CropInfo:
    """Where the network input sits in the original image: input pixel (u, v) maps to
    original pixel ((u + x0 + 0.5) / scale_x - 0.5, (v + y0 + 0.5) / scale_y - 0.5)."""

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_x0: int
    crop_y0: int
    out_hw: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        return self.resized_hw[1] / self.orig_hw[1], self.resized_hw[0] / self.orig_hw[0]


def _resize_long_edge(img: PIL.Image.Image, long_edge: int) -> PIL.Image.Image:
    s = max(img.size)
    interp = PIL.Image.LANCZOS if s > long_edge else PIL.Image.BICUBIC
    new_size = tuple(int(round(x * long_edge / s)) for x in img.size)
    return img.resize(new_size, interp)


def crop_box(w: int, h: int, size: int, square_ok: bool) -> tuple[int, int, int, int]:
    """Official crop of a resized ``w x h`` image: (left, top, right, bottom)."""
    cx, cy = w // 2, h // 2
    if size == 224:
        half = min(cx, cy)
        return cx - half, cy - half, cx + half, cy + half
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if not square_ok and w == h:
        halfh = 3 * halfw / 4
    return tuple(int(round(v)) for v in (cx - halfw, cy - halfh, cx + halfw, cy + halfh))


def preprocess_pil(img: PIL.Image.Image, size: int = 512, square_ok: bool = False) -> tuple[torch.Tensor, CropInfo]:
    """PIL RGB (or mono 'L') image -> (1, 3, H, W) float32 tensor in [-1, 1] and where it came from."""
    w0, h0 = img.size
    if size == 224:
        img = _resize_long_edge(img, round(size * max(w0 / h0, h0 / w0)))
    else:
        img = _resize_long_edge(img, size)
    w, h = img.size
    box = crop_box(w, h, size, square_ok)
    img = img.crop(box)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    tensor = torch.from_numpy((arr - 0.5) / 0.5)
    if tensor.ndim == 2:  # mono ('L'): the three identical bands of its RGB conversion
        tensor = tensor.unsqueeze(0).expand(3, -1, -1)
    else:
        tensor = tensor.permute(2, 0, 1)
    tensor = tensor.unsqueeze(0).contiguous()
    info = CropInfo((h0, w0), (h, w), box[0], box[1], (tensor.shape[2], tensor.shape[3]))
    return tensor, info


def load_images(paths: list[str | os.PathLike], size: int = 512, square_ok: bool = False) -> list[dict]:
    """Official-format view records ``{'img', 'true_shape', 'idx', 'instance'}`` from image files."""
    views = []
    for i, path in enumerate(paths):
        try:
            img = PIL.ImageOps.exif_transpose(PIL.Image.open(path)).convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read image: {exc}") from None
        tensor, _ = preprocess_pil(img, size, square_ok)
        views.append({"img": tensor, "true_shape": np.int32([tensor.shape[2:]]), "idx": i, "instance": str(i)})
    return views


def to_pil_image(image: np.ndarray) -> PIL.Image.Image:
    """numpy image (H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4), uint8, uint16 or float in [0, 1]
    -> PIL 'L' (mono) or 'RGB'.  16-bit and float images are scaled to 8 bits, as a camera
    driver would.  Mono stays one band: PIL resamples each band alone, so resizing 'L' and
    then repeating it gives the RGB result bit for bit at a third of the cost."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 1|3|4) image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {arr.dtype}")
    return PIL.Image.fromarray(np.ascontiguousarray(arr), "L" if arr.ndim == 2 else "RGB")


def to_pil_rgb(image: np.ndarray) -> PIL.Image.Image:
    """:func:`to_pil_image`, always RGB (mono repeated in the three bands)."""
    return to_pil_image(image).convert("RGB")
