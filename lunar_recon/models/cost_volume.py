"""The stereo head's steps, compiled for inference on the CPU: its fine features (three 3x3
convolutions and unit length), the right features warped along the row, the correlations of a
pixel with the right view's along its row (at whole-pixel shifts, and around a sub-pixel
disparity) and the peak of each pixel's correlation curve -- what ``FineFeatures``,
``warp_right``, ``correlation_volume``, ``correlations_at``, ``local_soft_argmax`` and
``parabola_peak`` of ``models.stereo_head`` compute.

Per pixel these are a few short dot products and a curve of a handful of entries: in torch
they are many small whole-image operations, each taking the interpreter lock between them
(which the node's other stages wait on) and each writing a full-image temporary.  Compiled,
one pass runs without the lock.  Training keeps the torch versions (they carry gradients).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..geometry.parallel import balanced_ranges, check_threads, run_ranges


@numba.njit(cache=True, nogil=True)
def _best(curve, low, high):  # pragma: no cover - compiled
    # the first largest entry (torch.argmax's choice), clamped to [low, high]
    best = 0
    value = curve[0]
    for i in range(1, curve.shape[0]):
        larger = curve[i] > value
        best = i if larger else best
        value = curve[i] if larger else value
    return min(max(best, low), high)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _soft_argmax_peaks(logits, radius, index, mass, with_mass):  # pragma: no cover - compiled
    n = logits.shape[1]
    for p in range(logits.shape[0]):
        curve = logits[p]
        best = _best(curve, radius, n - 1 - radius)
        top = curve[best]
        window = np.float32(0.0)
        moment = np.float32(0.0)
        total = np.float32(0.0)
        # the whole curve's softmax only for the mass (a coarse curve is long)
        first, last = (0, n - 1) if with_mass else (best - radius, best + radius)
        for i in range(first, last + 1):
            weight = math.exp(curve[i] - top)
            total += weight
            if best - radius <= i <= best + radius:
                window += weight
                moment += weight * np.float32(i)
        index[p] = moment / window
        mass[p] = window / total


@numba.njit(cache=True, nogil=True)
def _parabola_peak(curve):  # pragma: no cover - compiled
    # the vertex of the parabola through the best entry (clamped one in) and its neighbours
    n = curve.shape[0]
    best = _best(curve, 1, n - 2)
    c0, c1, c2 = curve[best - 1], curve[best], curve[best + 1]
    curvature = c0 - 2.0 * c1 + c2
    offset = 0.5 * (c0 - c2) / curvature if curvature < 0 else 0.0
    return best + min(max(offset, -1.0), 1.0)


@numba.njit(cache=True, nogil=True)
def _parabola_peaks(logits, out):  # pragma: no cover - compiled
    for p in range(logits.shape[0]):
        out[p] = _parabola_peak(logits[p])


def _curves(logits: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(logits, dtype=np.float32).reshape(-1, logits.shape[-1])


def soft_argmax_peaks(logits: np.ndarray, radius: int, with_mass: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """For curves ``logits`` (..., N): the softmax-weighted mean index over the ``2 radius + 1``
    entries around the largest (clamped into the curve) and, ``with_mass``, the share of the
    whole softmax those entries hold (else None); each of shape (...)."""
    curves = _curves(logits)
    if curves.shape[1] < 2 * radius + 1:
        raise ValueError(f"a curve of {curves.shape[1]} entries has no window of radius {radius}")
    index = np.empty(curves.shape[0], np.float32)
    mass = np.empty(curves.shape[0], np.float32)
    _soft_argmax_peaks(curves, radius, index, mass, with_mass)
    return index.reshape(logits.shape[:-1]), mass.reshape(logits.shape[:-1]) if with_mass else None


def parabola_peaks(logits: np.ndarray) -> np.ndarray:
    """For curves ``logits`` (..., N), N >= 3: the vertex of the parabola through the largest
    entry (clamped one in from the ends) and its two neighbours, moved at most one entry;
    the entry itself where the three do not curve down.  Shape (...)."""
    curves = _curves(logits)
    if curves.shape[1] < 3:
        raise ValueError(f"a parabola needs curves of 3 entries or more, got {curves.shape[1]}")
    out = np.empty(curves.shape[0], np.float32)
    _parabola_peaks(curves, out)
    return out.reshape(logits.shape[:-1])


# The features are read channels-last, (B, H, W, C): a pixel's channels side by side, so each
# dot product is one contiguous read (a whole-plane layout reads C planes per pixel).


@numba.njit(cache=True, nogil=True, fastmath=True)
def _band_row(fl, fr, y, first, corr):  # pragma: no cover - compiled
    # row y of one image: corr[i, x] = <fl(x), fr(x - first - i)>, 0 outside the image
    w, c = fl.shape[1], fl.shape[2]
    for x in range(w):  # a pixel's channels read once for all its shifts
        for i in range(corr.shape[0]):
            xr = x - first - i
            acc = np.float32(0.0)
            if 0 <= xr < w:
                for ch in range(c):
                    acc += fl[y, x, ch] * fr[y, xr, ch]
            corr[i, x] = acc


@numba.njit(cache=True, nogil=True)
def _band_correlation(fl, fr, first, out):  # pragma: no cover - compiled
    for n in range(fl.shape[0]):
        for y in range(fl.shape[1]):
            _band_row(fl[n], fr[n], y, first, out[n, :, y, :])


def band_correlation(fl: np.ndarray, fr: np.ndarray, first: int, count: int) -> np.ndarray:
    """(B, count, H, W): <fl(x), fr(x - k)> for k = first .. first + count - 1 of channels-last
    (B, H, W, C) features; 0 where x - k is outside the image."""
    fl = np.ascontiguousarray(fl, dtype=np.float32)
    fr = np.ascontiguousarray(fr, dtype=np.float32)
    if fl.shape != fr.shape:
        raise ValueError(f"left features {fl.shape} and right features {fr.shape} differ")
    out = np.empty((fl.shape[0], count, *fl.shape[1:3]), np.float32)
    _band_correlation(fl, fr, first, out)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _taps_row(fl, fr, disparity, y, shifts, corr):  # pragma: no cover - compiled
    # row y of one image: corr[k + shifts, x] = <fl(x), fr(x - d - k)> for k = -shifts .. shifts,
    # fr linearly interpolated along the row from the columns either side (clamped)
    w, c = fl.shape[1], fl.shape[2]
    taps = np.empty(2 * shifts + 2, np.float32)
    for x in range(w):
        xs = np.float32(x) - disparity[y, x]
        x0 = int(math.floor(xs))
        a = xs - np.float32(x0)
        for j in range(-shifts, shifts + 2):
            col = min(max(x0 + j, 0), w - 1)
            acc = np.float32(0.0)
            for ch in range(c):
                acc += fl[y, x, ch] * fr[y, col, ch]
            taps[j + shifts] = acc
        for k in range(-shifts, shifts + 1):
            corr[k + shifts, x] = (1 - a) * taps[shifts - k] + a * taps[shifts + 1 - k]


@numba.njit(cache=True, nogil=True)
def _correlations_at(fl, fr, disparity, shifts, out):  # pragma: no cover - compiled
    for n in range(fl.shape[0]):
        for y in range(fl.shape[1]):
            _taps_row(fl[n], fr[n], disparity[n], y, shifts, out[n, y].T)


def correlations_at_disparity(fl: np.ndarray, fr: np.ndarray, disparity: np.ndarray, shifts: int) -> np.ndarray:
    """(B, H, W, 2 shifts + 1): <fl(x), fr(x - disparity - k)> for k = -shifts .. shifts of
    channels-last (B, H, W, C) features and a (B, H, W) disparity, the right features linearly
    interpolated along the row from the columns either side (clamped to the image)."""
    fl = np.ascontiguousarray(fl, dtype=np.float32)
    fr = np.ascontiguousarray(fr, dtype=np.float32)
    disparity = np.ascontiguousarray(disparity, dtype=np.float32)
    if fl.shape != fr.shape or disparity.shape != fl.shape[:3]:
        raise ValueError(f"features {fl.shape} and {fr.shape} and disparity {disparity.shape} do not fit")
    out = np.empty((*fl.shape[:3], 2 * shifts + 1), np.float32)
    _correlations_at(fl, fr, disparity, shifts, out)
    return out


# ---- the fine features: three 3x3 convolutions, row by row ---------------------------------
# At camera resolution with 8 channels, torch's convolutions, activations and the unit length
# each sweep the whole image.  Here each layer's rows live in a ring of three (zero rows above
# and below the image, as the convolutions' padding), so a row is computed while its inputs are
# in cache, and the last layer's row is scaled to unit length and written channels-last, the
# layout the correlations read.


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _taps3x3(k, t0, t1, t2, t3, t4, t5, t6, t7, t8):  # pragma: no cover - compiled
    # a 3x3 kernel's weighted sum of the nine taps (row by row)
    return (
        k[0, 0] * t0 + k[0, 1] * t1 + k[0, 2] * t2
        + k[1, 0] * t3 + k[1, 1] * t4 + k[1, 2] * t5
        + k[2, 0] * t6 + k[2, 1] * t7 + k[2, 2] * t8
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _conv3x3_row(src, slots, weight, bias, slope, dst):  # pragma: no cover - compiled
    # dst[co, 1 + x] = act(bias[co] + sum over ci, ky, kx of weight[co, ci, ky, kx] *
    # src[slots[ky], ci, x + kx]): src's rows are zero-padded by one column either side;
    # act(v) = v where v > 0, else slope v (slope 1: none).  Four output channels per sweep
    # share the nine taps read (a last group of fewer repeats its last channel).
    width, cout = dst.shape[1] - 2, weight.shape[0]
    # four arrays, not one: LLVM vectorises the sweep only over buffers it can tell apart
    a0, a1, a2, a3 = (
        np.empty(width, np.float32),
        np.empty(width, np.float32),
        np.empty(width, np.float32),
        np.empty(width, np.float32),
    )
    for first in range(0, cout, 4):
        c0, c1, c2, c3 = first, min(first + 1, cout - 1), min(first + 2, cout - 1), min(first + 3, cout - 1)
        a0[:], a1[:], a2[:], a3[:] = bias[c0], bias[c1], bias[c2], bias[c3]
        for ci in range(weight.shape[1]):
            r0, r1, r2 = src[slots[0], ci], src[slots[1], ci], src[slots[2], ci]
            k, m, n, o = weight[c0, ci], weight[c1, ci], weight[c2, ci], weight[c3, ci]
            for x in range(width):
                t0, t1, t2 = r0[x], r0[x + 1], r0[x + 2]
                t3, t4, t5 = r1[x], r1[x + 1], r1[x + 2]
                t6, t7, t8 = r2[x], r2[x + 1], r2[x + 2]
                a0[x] += _taps3x3(k, t0, t1, t2, t3, t4, t5, t6, t7, t8)
                a1[x] += _taps3x3(m, t0, t1, t2, t3, t4, t5, t6, t7, t8)
                a2[x] += _taps3x3(n, t0, t1, t2, t3, t4, t5, t6, t7, t8)
                a3[x] += _taps3x3(o, t0, t1, t2, t3, t4, t5, t6, t7, t8)
        for row, co in ((a0, c0), (a1, c1), (a2, c2), (a3, c3)):
            d = dst[co]
            for x in range(width):
                v = row[x]
                d[x + 1] = v if v > 0 else v * slope


@numba.njit(cache=True, nogil=True)
def _fine_feature_map(image, w1, b1, w2, b2, w3, b3, slope, out):  # pragma: no cover - compiled
    h, width = image.shape
    rows_in = np.zeros((3, 1, width + 2), np.float32)
    rows_1 = np.zeros((3, w1.shape[0], width + 2), np.float32)
    rows_2 = np.zeros((3, w2.shape[0], width + 2), np.float32)
    row_3 = np.zeros((w3.shape[0], width + 2), np.float32)
    slots = np.empty(3, np.int64)
    # step t reads input row t; layer 1 makes row t - 1, layer 2 row t - 2, layer 3 row t - 3,
    # each from the rows either side of it in the ring below (row -1 and row h: zeros)
    for t in range(h + 3):
        if t < h:
            rows_in[t % 3, 0, 1 : width + 1] = image[t]
        else:
            rows_in[t % 3] = 0
        for layer in range(3):
            y = t - 1 - layer
            ring = rows_1 if layer == 0 else rows_2
            if y == h and layer < 2:
                ring[y % 3] = 0
            if not 0 <= y < h:
                continue
            for k in range(3):
                slots[k] = (y - 1 + k) % 3
            if layer == 0:
                _conv3x3_row(rows_in, slots, w1, b1, slope, rows_1[y % 3])
            elif layer == 1:
                _conv3x3_row(rows_1, slots, w2, b2, slope, rows_2[y % 3])
            else:
                _conv3x3_row(rows_2, slots, w3, b3, np.float32(1.0), row_3)
                for x in range(width):
                    norm = np.float32(1e-12)
                    for c in range(row_3.shape[0]):
                        norm += row_3[c, x + 1] * row_3[c, x + 1]
                    scale = np.float32(1.0) / np.sqrt(norm)
                    for c in range(row_3.shape[0]):
                        out[y, x, c] = row_3[c, x + 1] * scale


def fine_feature_map(
    images: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]], negative_slope: float, threads: int = 1
) -> np.ndarray:
    """Channels-last (B, H, W, C) unit feature vectors of (B, H, W) images through three 3x3
    convolutions (stride 1, zero padding 1; ``layers``: each one's (C_out, C_in, 3, 3) weight
    and bias), a leaky ReLU of ``negative_slope`` after the first two: ``FineFeatures`` at
    inference, up to the order of the float additions.  ``threads``: the images split over up
    to this many threads (the same result)."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 3 or len(layers) != 3:
        raise ValueError(f"need (B, H, W) images and three layers, got {images.shape} and {len(layers)} layers")
    (w1, b1), (w2, b2), (w3, b3) = [
        (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)) for w, b in layers
    ]
    cin = 1
    for w, b in ((w1, b1), (w2, b2), (w3, b3)):
        if w.ndim != 4 or w.shape[1] != cin or w.shape[2:] != (3, 3) or b.shape != (w.shape[0],):
            raise ValueError(f"a layer's weight {w.shape} and bias {b.shape} do not follow {cin} input channels (3x3)")
        cin = w.shape[0]
    out = np.empty((*images.shape, w3.shape[0]), np.float32)

    def run(first: int, stop: int) -> None:
        for i in range(first, stop):
            _fine_feature_map(images[i], w1, b1, w2, b2, w3, b3, np.float32(negative_slope), out[i])

    run_ranges(run, balanced_ranges(np.ones(images.shape[0]), check_threads(threads)))
    return out


@numba.njit(cache=True, nogil=True)
def _warp_row(fr, disparity, out):  # pragma: no cover - compiled
    w, c = fr.shape
    top = np.float32(w - 1)
    for x in range(w):
        xs = min(max(np.float32(x) - disparity[x], np.float32(0.0)), top)
        x0 = int(xs)  # xs >= 0: truncation is the floor
        x1 = min(x0 + 1, w - 1)
        a = xs - np.float32(x0)
        b = np.float32(1.0) - a
        for ch in range(c):
            out[x, ch] = b * fr[x0, ch] + a * fr[x1, ch]


@numba.njit(cache=True, nogil=True)
def _warp_rows(fr, disparity, out):  # pragma: no cover - compiled
    for n in range(fr.shape[0]):
        for y in range(fr.shape[1]):
            _warp_row(fr[n, y], disparity[n, y], out[n, y])


def warp_rows(fr: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """Channels-last (B, H, W, C) right features at ``x - disparity`` of every left pixel,
    linearly interpolated along the row, the position clamped to the image (``warp_right``'s
    bilinear sample with border padding, whose row is exact)."""
    fr = np.ascontiguousarray(fr, dtype=np.float32)
    disparity = np.ascontiguousarray(disparity, dtype=np.float32)
    if disparity.shape != fr.shape[:3]:
        raise ValueError(f"features {fr.shape} and disparity {disparity.shape} do not fit")
    out = np.empty_like(fr)
    _warp_rows(fr, disparity, out)
    return out


# ---- the fine passes fused: correlation, box mean and peak in one sweep over the rows -------
# The fine volumes are camera-sized (H x W x 9, and x 3): written out, box-filtered plane by plane
# and transposed back for the peak search, they cost more than their arithmetic.  Fused, each
# row's correlations are summed along the row (prefix sums), the rows' sums kept in a ring of
# 2 r + 1 rows and summed down the columns as the sweep goes, and each output row's curves are
# searched as soon as their window is complete: the same means as ``box`` (up to the order of the
# float additions), no volume written.


@numba.njit(cache=True, nogil=True)
def _row_box_sums(corr, r, out):  # pragma: no cover - compiled
    # out[i, x] = sum of corr[i, x'] over x' in [x - r, x + r] inside the row (a sliding sum)
    n, w = corr.shape
    for i in range(n):
        c, o = corr[i], out[i]
        acc = 0.0
        for x in range(min(r, w)):
            acc += c[x]
        for x in range(w):
            if x + r < w:
                acc += c[x + r]
            if x - r - 1 >= 0:
                acc -= c[x - r - 1]
            o[x] = acc


@numba.njit(cache=True, nogil=True)
def _emit_peaks(vsum, y, h, r, temperature, radius, peak, mass, with_mass):  # pragma: no cover - compiled
    # the box means of output row y, times the temperature; the parabola peak of each curve and,
    # with_mass, the softmax share of the 2 radius + 1 entries around its (clamped) best
    n, w = vsum.shape
    rows = min(y + r, h - 1) - max(y - r, 0) + 1
    curve = np.empty(n, np.float32)
    for x in range(w):
        inverse = np.float32(1.0 / (rows * (min(x + r, w - 1) - max(x - r, 0) + 1)))
        for i in range(n):
            curve[i] = (np.float32(vsum[i, x]) * inverse) * temperature
        peak[y, x] = _parabola_peak(curve)
        if with_mass:
            m = _best(curve, radius, n - 1 - radius)
            top = curve[m]
            window = np.float32(0.0)
            total = np.float32(0.0)
            for i in range(n):
                e = math.exp(curve[i] - top)
                total += e
                if m - radius <= i <= m + radius:
                    window += e
            mass[y, x] = window / total


@numba.njit(cache=True, nogil=True)
def _fused_pass(fl, fr, disparity, first, n, r, temperature, radius, with_mass, peak, mass):  # pragma: no cover - compiled
    # one image: n = 2 shifts + 1 correlations per pixel (whole-pixel shifts from ``first``, or,
    # with a disparity, the three around it), box means over (2 r + 1)^2, peaks per output row
    h, w = fl.shape[0], fl.shape[1]
    size = 2 * r + 1
    corr = np.empty((n, w), np.float32)
    ring = np.zeros((size, n, w), np.float64)
    vsum = np.zeros((n, w), np.float64)
    for y_in in range(h + r):
        if y_in < h:
            if disparity.shape[0]:
                _taps_row(fl, fr, disparity, y_in, 1, corr)
            else:
                _band_row(fl, fr, y_in, first, corr)
            slot = ring[y_in % size]
            _row_box_sums(corr, r, slot)
            vsum += slot
        y = y_in - r
        if y >= 0:
            _emit_peaks(vsum, y, h, r, temperature, radius, peak, mass, with_mass)
            if y - r >= 0:
                vsum -= ring[(y - r) % size]


def fused_fine_peaks(
    fl: np.ndarray, fr: np.ndarray, first: int, count: int, aggregation: int, temperature: float, with_mass: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fine pass 1 of the stereo head at once: for channels-last (B, H, W, C) features, the
    correlations <fl(x), fr(x - k)> for k = first .. first + count - 1 (0 outside the image), their
    mean over an ``aggregation``-wide box (fewer pixels at the borders) times ``temperature``,
    and of each pixel's curve the parabola peak (an index into the shifts, see
    :func:`parabola_peaks`) and, ``with_mass``, the softmax share of the five entries around
    its best (:func:`soft_argmax_peaks`' mass); each (B, H, W)."""
    fl = np.ascontiguousarray(fl, dtype=np.float32)
    fr = np.ascontiguousarray(fr, dtype=np.float32)
    if fl.shape != fr.shape or count < 5 or aggregation < 1 or aggregation % 2 == 0:
        raise ValueError(f"features {fl.shape}, {fr.shape}, {count} shifts (>= 5), box {aggregation} (odd) do not fit")
    b, h, w, _ = fl.shape
    peak = np.empty((b, h, w), np.float32)
    mass = np.empty((b, h, w), np.float32)
    none = np.empty((0, 0), np.float32)
    for i in range(b):
        _fused_pass(fl[i], fr[i], none, first, count, aggregation // 2, np.float32(temperature), 2, with_mass, peak[i], mass[i])
    return peak, mass if with_mass else None


def fused_refined_peaks(fl: np.ndarray, fr: np.ndarray, disparity: np.ndarray, aggregation: int) -> np.ndarray:
    """Fine pass 2 of the stereo head at once: for channels-last (B, H, W, C) features and a
    (B, H, W) disparity, the correlations at ``disparity`` + (1, 0, -1) px (the taps of
    :func:`correlations_at_disparity`), their box mean and the parabola peak of the three, an
    index in [0, 2] (1: the disparity itself); (B, H, W)."""
    fl = np.ascontiguousarray(fl, dtype=np.float32)
    fr = np.ascontiguousarray(fr, dtype=np.float32)
    disparity = np.ascontiguousarray(disparity, dtype=np.float32)
    if fl.shape != fr.shape or disparity.shape != fl.shape[:3] or aggregation < 1 or aggregation % 2 == 0:
        raise ValueError(f"features {fl.shape}, {fr.shape}, disparity {disparity.shape}, box {aggregation} do not fit")
    b, h, w, _ = fl.shape
    peak = np.empty((b, h, w), np.float32)
    unused = np.empty((h, w), np.float32)
    for i in range(b):
        _fused_pass(fl[i], fr[i], disparity[i], 0, 3, aggregation // 2, np.float32(1.0), 1, False, peak[i], unused)
    return peak


def compile_kernels() -> float:
    """Compile (or load from numba's cache) the kernels on tiny curves, so the first pair does
    not pay for it.  Returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    curves = rng.normal(size=(4, 9)).astype(np.float32)
    soft_argmax_peaks(curves, 2)
    parabola_peaks(curves)
    features = rng.normal(size=(1, 3, 8, 2)).astype(np.float32)
    band_correlation(features, features, -1, 3)
    correlations_at_disparity(features, features, np.ones((1, 3, 8), np.float32), 1)
    fused_fine_peaks(features, features, -2, 5, 3, 1.0, True)
    fused_refined_peaks(features, features, np.ones((1, 3, 8), np.float32), 3)
    layer = (rng.normal(size=(2, 1, 3, 3)).astype(np.float32), np.zeros(2, np.float32))
    hidden = (rng.normal(size=(2, 2, 3, 3)).astype(np.float32), np.zeros(2, np.float32))
    fine_feature_map(curves[None, :3, :8], [layer, hidden, hidden], 0.1)
    warp_rows(features, np.ones((1, 3, 8), np.float32))
    return time.perf_counter() - t0
