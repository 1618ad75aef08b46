"""sensor_msgs/Image encodings <-> numpy, without ROS (the node uses cv_bridge when it imports).

Views instead of copies wherever the row stride allows it.
"""

from __future__ import annotations

import numpy as np

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "32FC1": (np.dtype(np.float32), 1),
}
IMAGE_ENCODINGS = ("mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8")


class EncodingError(ValueError):
    """An image message that cannot be turned into an array; the message says why."""


def image_to_array(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Message fields -> (H, W) or (H, W, C) array (a view of ``data`` when possible)."""
    if encoding not in ENCODINGS:
        raise EncodingError(f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise EncodingError(f"empty image ({width}x{height})")
    row_bytes = width * ch * dtype.itemsize
    if step < row_bytes:
        raise EncodingError(f"step {step} is smaller than width x pixel size ({row_bytes} bytes)")
    buf = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.view(np.uint8), dtype=np.uint8)
    if buf.size != step * height:
        raise EncodingError(f"data length {buf.size} != step x height ({step} x {height} = {step * height})")
    rows = buf.reshape(height, step)[:, :row_bytes]
    if dtype.itemsize > 1:
        if row_bytes % dtype.itemsize or step % dtype.itemsize:
            rows = np.ascontiguousarray(rows)
        arr = rows.view(dtype.newbyteorder(">" if is_bigendian else "<"))
        if is_bigendian:
            arr = arr.astype(dtype)
    else:
        arr = rows
    arr = arr.reshape(height, width, ch)
    return arr[..., 0] if ch == 1 else arr


def to_gray_or_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Network-ready image: mono stays mono, colour becomes RGB (drop alpha, swap BGR)."""
    if encoding in ("bgr8", "bgra8"):
        return arr[..., 2::-1]
    if encoding in ("rgba8",):
        return arr[..., :3]
    return arr


def array_to_image_fields(arr: np.ndarray, encoding: str) -> dict:
    """(H, W[, C]) array -> dict(height, width, encoding, is_bigendian, step, data bytes)."""
    if encoding not in ENCODINGS:
        raise EncodingError(f"unsupported image encoding {encoding!r}")
    dtype, ch = ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if (a.ndim == 2 and ch != 1) or (a.ndim == 3 and a.shape[2] != ch) or a.ndim not in (2, 3):
        raise EncodingError(f"array of shape {arr.shape} does not fit encoding {encoding}")
    h, w = a.shape[:2]
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * ch * dtype.itemsize,
        "data": a.tobytes(),
    }
