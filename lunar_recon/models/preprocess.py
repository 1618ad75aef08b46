"""Image preprocessing identical to the official ``load_images`` (dust3r.utils.image).

Resize the long side to ``size`` (LANCZOS when shrinking, BICUBIC otherwise; Python
half-to-even rounding of the new size), centre-crop to multiples of 16 (square images
to 4:3 unless ``square_ok``), scale to [-1, 1].  The ``size=224`` branch resizes the
short side and crops a square.

Shrinking is PIL's LANCZOS resampling reproduced bit for bit (:func:`lanczos_resize`): its
coefficients in double precision, rounded to 22-bit fixed point, the columns' pass rounded to
8 bits before the rows' pass, each pass a compiled loop over contiguous rows.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import cv2
import numba
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


PRECISION_BITS = 32 - 8 - 2  # PIL's fixed point for 8-bit resampling
LANCZOS_SUPPORT = 3.0


def _lanczos(x: float) -> float:
    # PIL's: sinc(x) sinc(x / 3) on [-3, 3), in double precision through the C library's sin
    def sinc(v: float) -> float:
        if v == 0.0:
            return 1.0
        v *= math.pi
        return math.sin(v) / v

    return sinc(x) * sinc(x / 3.0) if -LANCZOS_SUPPORT <= x < LANCZOS_SUPPORT else 0.0


@functools.lru_cache(maxsize=32)
def _lanczos_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` for one axis: each output
    pixel's first input pixel and tap count (out_size x 2) and its fixed-point taps."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    bounds = np.zeros((out_size, 2), np.int64)
    taps = np.zeros((out_size, ksize), np.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(count)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            taps[xx, x] = int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS))
        bounds[xx] = xmin, count
    return bounds, taps


@numba.njit(cache=True, nogil=True)
def _resample_rows(src, bounds, taps, out):  # pragma: no cover - compiled
    # out[i] = clip8(sum_k src[bounds[i, 0] + k] * taps[i, k]): whole rows at a time, so the
    # inner loop runs along contiguous memory (int32, as PIL's accumulator)
    cols = out.shape[1]
    acc = np.empty(cols, np.int32)
    for i in range(out.shape[0]):
        acc[:] = np.int32(1 << (PRECISION_BITS - 1))
        for k in range(bounds[i, 1]):
            tap = taps[i, k]
            row = src[bounds[i, 0] + k]
            for x in range(cols):
                acc[x] += np.int32(row[x]) * tap
        for x in range(cols):
            v = acc[x] >> PRECISION_BITS
            out[i, x] = 0 if v < 0 else (255 if v > 255 else v)


def _resample_axis0(image: np.ndarray, out_size: int, in_size: int | None = None, first: int = 0) -> np.ndarray:
    """``image``'s rows resampled to ``out_size``; ``image`` holds rows ``first`` onward of an
    axis of ``in_size`` (all of it by default)."""
    bounds, taps = _lanczos_coefficients(in_size or image.shape[0], out_size)
    if first:
        bounds = bounds.copy()
        bounds[:, 0] -= first
    out = np.empty((out_size, image.shape[1]), np.uint8)
    _resample_rows(image, bounds, taps, out)
    return out


def lanczos_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An 8-bit (H, W) or (H, W, C) image resized to ``width`` x ``height`` as PIL's
    ``Image.resize((width, height), LANCZOS)`` does, bit for bit (a band at a time): the
    horizontal pass first, over the rows the vertical pass reads, each rounded to 8 bits."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"lanczos_resize needs a non-empty 8-bit (H, W) or (H, W, C) image, got {image.dtype} {image.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"lanczos_resize needs a positive size, got {width} x {height}")
    if image.ndim == 3:
        return np.stack([lanczos_resize(image[..., c], width, height) for c in range(image.shape[2])], axis=-1)
    rows, cols = image.shape
    out = np.ascontiguousarray(image)
    if height != rows:  # the rows the vertical pass reads
        bounds, _ = _lanczos_coefficients(rows, height)
        first, last = int(bounds[0, 0]), int(bounds[-1, 0] + bounds[-1, 1])
        out = out[first:last]
    if width != cols:  # along the rows: on the transposed image, so each pass reads whole rows
        out = cv2.transpose(_resample_axis0(cv2.transpose(out), width))
    if height != rows:
        out = _resample_axis0(np.ascontiguousarray(out), height, rows, first)
    return np.ascontiguousarray(out)


def compile_kernels() -> float:
    """Compile (or load from numba's cache) the resampling kernel on a tiny image, so the first
    pair does not pay for it.  Returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    lanczos_resize(np.zeros((8, 8), np.uint8), 4, 4)
    return time.perf_counter() - t0


def _resize_long_edge(image: np.ndarray, long_edge: int) -> np.ndarray:
    rows, cols = image.shape[:2]
    s = max(rows, cols)
    width, height = (int(round(x * long_edge / s)) for x in (cols, rows))
    if (width, height) == (cols, rows):
        return image
    if s > long_edge:
        return lanczos_resize(image, width, height)
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.BICUBIC))  # enlarging: rare


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
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"preprocess needs an 'L' or 'RGB' image, got mode {img.mode!r}")
    return preprocess_image(np.asarray(img), size, square_ok)


def preprocess_image(image: np.ndarray, size: int = 512, square_ok: bool = False) -> tuple[torch.Tensor, CropInfo]:
    """:func:`preprocess_pil` of an 8-bit (H, W) mono or (H, W, 3) RGB array (:func:`to_uint8_image`)."""
    h0, w0 = image.shape[:2]
    if size == 224:
        image = _resize_long_edge(image, round(size * max(w0 / h0, h0 / w0)))
    else:
        image = _resize_long_edge(image, size)
    h, w = image.shape[:2]
    box = crop_box(w, h, size, square_ok)
    image = image[box[1] : box[3], box[0] : box[2]]
    arr = image.astype(np.float32) / 255.0
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


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """numpy image (H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4), uint8, uint16 or float in [0, 1]
    -> 8-bit (H, W) mono or (H, W, 3) RGB.  16-bit and float images are scaled to 8 bits, as a
    camera driver would.  Mono stays one band: each band is resampled alone, so resizing it and
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
    return np.ascontiguousarray(arr)


def to_pil_image(image: np.ndarray) -> PIL.Image.Image:
    """:func:`to_uint8_image` as a PIL 'L' (mono) or 'RGB' image."""
    arr = to_uint8_image(image)
    return PIL.Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")


def to_pil_rgb(image: np.ndarray) -> PIL.Image.Image:
    """:func:`to_pil_image`, always RGB (mono repeated in the three bands)."""
    return to_pil_image(image).convert("RGB")
