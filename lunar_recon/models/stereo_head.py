"""The student's calibrated-stereo head: learned features correlated along the epipolar line.

On a rectified rig the right image's match of a left pixel lies on the same row, ``d`` pixels
to the left, and ``Z = f B / d``.  The head finds ``d`` coarse to fine, as the distilled
real-time stereo networks do (Fast-FoundationStereo, ESS, LightStereo), at a CPU budget:

1. *coarse*: features at 1/``coarse_stride`` of the image, a correlation cost volume over the
   whole disparity range, box-aggregated, soft-argmax -> a smooth prior disparity;
2. *fine, pass 1*: features at camera resolution; the right view's warped once by the prior,
   then correlated at whole-pixel shifts within ``refine_radius_px``, box-aggregated; the
   parabola through the best shift and its neighbours refines the disparity, and the softmax
   mass of the five shifts around the best is its confidence (low on bland regolith, in
   shadow, where the view is occluded);
3. *fine, pass 2*: the right features warped exactly at that disparity and one pixel either
   side, and the parabola through the three aggregated correlations (sub-pixel, where a softmax
   mean over whole-pixel shifts is pulled toward them).

The network's pointmap stays the dense answer; the pipeline takes this disparity where it is
confident (``pipeline.StereoReconstructor``).  Unrectified pairs never reach this head.

With ``right_view`` the same steps run again on the features mirrored left-right (the right view
becomes a left one), giving the right view's disparity for a left-right check
(``geometry.stereo.left_right_discrepancy``) at the cost of the matching, not of the features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.parallel import MAX_THREADS
from .cost_volume import (
    band_correlation,
    correlations_at_disparity,
    fine_feature_map,
    fused_fine_peaks,
    fused_refined_peaks,
    parabola_peaks,
    soft_argmax_peaks,
    warp_rows,
)


@dataclass(frozen=True)
class StereoHeadConfig:
    coarse_dim: int = 16  # feature channels at 1/coarse_stride resolution
    fine_dim: int = 8  # feature channels at camera resolution (what the correlations read)
    fine_hidden_dim: int | None = None  # channels of the fine features' hidden convolutions; None: fine_dim
    coarse_stride: int = 4
    max_disparity_px: int = 192  # the coarse search covers [0, max) px at 512 px wide, in proportion beyond
    refine_radius_px: int = 4  # whole-pixel shifts searched around the coarse disparity
    coarse_aggregation_px: int = 5  # box window (coarse pixels) the coarse correlation is averaged over
    fine_aggregation_px: int = 9  # box window (camera pixels) the fine correlation is averaged over

    def validate(self) -> None:
        if min(self.coarse_dim, self.fine_dim, self.fine_hidden_dim or self.fine_dim) < 1:
            raise ValueError("feature widths must be >= 1")
        if self.coarse_stride not in (2, 4, 8):
            raise ValueError("coarse_stride must be 2, 4 or 8")
        if self.max_disparity_px < 2 * self.coarse_stride:
            raise ValueError("max_disparity_px must cover at least two coarse pixels")
        if self.refine_radius_px < 2:
            raise ValueError("refine_radius_px must be >= 2 (the sub-pixel window is +-2)")
        if (
            min(self.coarse_aggregation_px, self.fine_aggregation_px) < 1
            or self.coarse_aggregation_px % 2 == 0
            or self.fine_aggregation_px % 2 == 0
        ):
            raise ValueError("the aggregation windows must be odd and >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StereoHeadConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown stereo head config keys {sorted(unknown)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg


def _conv(cin: int, cout: int, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1)]
    if act:
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, H, W) blurred by a separable Gaussian (radius 2 sigma, edges replicated).  On the
    CPU, for images that need no gradient, OpenCV's identical filter (eight times faster)."""
    r = max(1, int(round(2 * sigma)))
    if x.device.type == "cpu" and not x.requires_grad:
        import cv2

        a = x.detach().numpy()
        out = np.stack(
            [
                cv2.GaussianBlur(np.ascontiguousarray(a[i, 0]), (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_REPLICATE)
                for i in range(a.shape[0])
            ]
        )
        return torch.from_numpy(out[:, None])
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


class CoarseFeatures(nn.Module):
    """Unit feature vectors at 1/``stride`` resolution: the image low-passed (so a shift by part
    of a block still correlates: no aliasing), each ``stride`` x ``stride`` block of it as
    channels, then three convolutions."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(_conv(stride * stride, dim), _conv(dim, dim), _conv(dim, dim, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(gaussian_blur(x, self.stride / 2), self.stride)
        return unit(self.body(x.contiguous(memory_format=torch.channels_last)).contiguous())


class FineFeatures(nn.Module):
    """Unit feature vectors at camera resolution, from convolutions at camera resolution
    (shift-equivariant to the pixel, which sub-pixel matching needs)."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.body = nn.Sequential(_conv(1, hidden), _conv(hidden, hidden), _conv(hidden, dim, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _compiled(x) and not torch.is_grad_enabled():  # inference: one compiled pass, channels-last out
            layers = [(block[0].weight.detach().numpy(), block[0].bias.detach().numpy()) for block in self.body]
            slope = self.body[0][1].negative_slope
            # the images on torch's intra-op threads (the node runs one: its stages fill the cores)
            features = fine_feature_map(x[:, 0].numpy(), layers, slope, threads=min(torch.get_num_threads(), MAX_THREADS))
            return torch.from_numpy(features).permute(0, 3, 1, 2)
        # channels-last: the CPU convolutions run faster on 8 channels, and the compiled
        # correlations (models.cost_volume) read a pixel's channels side by side
        return unit(self.body(x.contiguous(memory_format=torch.channels_last)))


def unit(x: torch.Tensor) -> torch.Tensor:
    """Feature vectors (dim 1) scaled to unit length (a channel sum: F.normalize's norm over
    NCHW channels is many times slower on CPU)."""
    return x * torch.rsqrt((x * x).sum(1, keepdim=True) + 1e-12)


def normalise_image(gray: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) intensities -> zero mean, unit spread per image (exposure and gain free)."""
    mean = gray.mean(dim=(2, 3), keepdim=True)
    std = gray.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (gray - mean) / std


def box(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size`` x ``size`` window of a (B, H, W, N) volume (fewer pixels at the
    borders), by running sums: the cost does not grow with the window.  On the CPU, for a volume
    that needs no gradient, OpenCV's box filter per plane (the same sums, about twice as fast)."""
    if size == 1:
        return x
    r = size // 2
    if x.device.type == "cpu" and not x.requires_grad:
        return _box_planes(x, size)

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        pad = [0, 0] * (t.ndim - 1 - dim % t.ndim) + [r + 1, r]
        c = F.pad(t, pad).cumsum(dim)
        n = c.shape[dim]
        return c.narrow(dim, size, n - size) - c.narrow(dim, 0, n - size)

    total = along(along(x, 1), 2)
    # the window's pixel count is separable: rows in it times columns in it
    rows = along(x.new_ones((1, x.shape[1], 1, 1)), 1)
    cols = along(x.new_ones((1, 1, x.shape[2], 1)), 2)
    return total / (rows * cols)


def _box_planes(x: torch.Tensor, size: int) -> torch.Tensor:
    import cv2

    b, h, w, n = x.shape
    r = size // 2
    planes = x.permute(0, 3, 1, 2).contiguous().numpy().reshape(b * n, h, w)  # no copy for correlation_volume's
    total = np.empty_like(planes)
    for i, plane in enumerate(planes):
        cv2.boxFilter(plane, -1, (size, size), dst=total[i], normalize=False, borderType=cv2.BORDER_CONSTANT)
    rows = np.minimum(np.arange(h) + r, h - 1) - np.maximum(np.arange(h) - r, 0) + 1
    cols = np.minimum(np.arange(w) + r, w - 1) - np.maximum(np.arange(w) - r, 0) + 1
    total *= (1.0 / (rows[:, None] * cols[None, :])).astype(np.float32)
    return torch.from_numpy(total).view(b, n, h, w).permute(0, 2, 3, 1).contiguous()  # argmax over N needs it


def correlation_volume(fl: torch.Tensor, fr: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """(B, H, W, count): <fl(x), fr(x - k)> for k = first .. first + count - 1; 0 where x - k is
    outside.  At inference compiled (``models.cost_volume.band_correlation``).  In training, a
    search as wide as a quarter of the row (the coarse one): every pair of pixels of a row by one
    matrix product, the band read out of it; a narrow one: plane by plane."""
    b, c, h, w = fl.shape
    if _compiled(fl) and _compiled(fr):  # inference: one pass over each pixel's band, any width
        return torch.from_numpy(band_correlation(_channels_last(fl), _channels_last(fr), first, count)).permute(0, 2, 3, 1)
    if w <= 4 * count:
        rows = torch.bmm(fl.permute(0, 2, 3, 1).reshape(b * h, w, c), fr.permute(0, 2, 1, 3).reshape(b * h, c, w))
        # rows[x, j] = <fl(x), fr(j)>; padded so that every x - k is a column, then the band
        # x - k read with strides (k reversed: strides are positive)
        left, right = max(0, first + count - 1), max(0, -first)
        padded = F.pad(rows, (left, right)).contiguous()
        wp = w + left + right
        band = padded.as_strided((b * h, w, count), (w * wp, wp + 1, 1), left - first - count + 1)
        return band.flip(-1).reshape(b, h, w, count)
    vol = fl.new_zeros((b, count, h, w))
    for i in range(count):
        k = first + i
        if 0 <= k < w:
            channel_dot(fl[..., k:], fr[..., : w - k], out=vol[:, i, :, k:])
        elif -w < k < 0:
            channel_dot(fl[..., :k], fr[..., -k:], out=vol[:, i, :, :k])
    return vol.permute(0, 2, 3, 1)  # planes: contiguous writes; box reads them as planes


def channel_dot(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) <a, b> over the channels of two (B, C, H, W) tensors, into ``out`` when given:
    fused multiply-adds plane by plane (no (B, C, H, W) product held; ~1.7x faster on the CPU)."""
    acc = torch.mul(a[:, 0], b[:, 0]) if out is None else out.copy_(a[:, 0] * b[:, 0])
    for ch in range(1, a.shape[1]):
        acc = acc.addcmul_(a[:, ch], b[:, ch])
    return acc


def warp_right(fr: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Right-view features at ``x - disparity`` of every left pixel (bilinear, sub-pixel;
    the border's value beyond the image)."""
    if _compiled(fr) and _compiled(disparity):
        return torch.from_numpy(warp_rows(_channels_last(fr), disparity[:, 0].numpy())).permute(0, 3, 1, 2)
    b, _, h, w = fr.shape
    x = torch.arange(w, device=fr.device, dtype=fr.dtype).view(1, 1, w)
    y = torch.arange(h, device=fr.device, dtype=fr.dtype).view(1, h, 1)
    gx = 2 * (x - disparity[:, 0]) / max(w - 1, 1) - 1
    gy = (2 * y / max(h - 1, 1) - 1).expand_as(gx)
    return F.grid_sample(fr, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


def correlations_at(fl: torch.Tensor, fr: torch.Tensor, disparity: torch.Tensor, shifts: int = 1) -> torch.Tensor:
    """(B, H, W, 2 shifts + 1): <fl(x), fr(x - disparity - k)> for k = -shifts .. shifts, the
    right features interpolated along the row as :func:`warp_right` does (border-clamped), with
    the whole-pixel shifts sharing their interpolation taps: 2 shifts + 2 gathers, no 2-D warps."""
    if _compiled(fl) and _compiled(fr) and _compiled(disparity):
        return torch.from_numpy(
            correlations_at_disparity(_channels_last(fl), _channels_last(fr), disparity[:, 0].numpy(), shifts)
        )
    b, c, h, w = fr.shape
    xs = torch.arange(w, device=fr.device, dtype=fr.dtype) - disparity
    x0 = xs.floor()
    a = xs - x0
    x0 = x0.long()
    # <fl(x), fr(x0 + j)> for the taps j = -shifts .. shifts + 1
    taps = {
        j: channel_dot(fl, torch.gather(fr, 3, (x0 + j).clamp(0, w - 1).expand(b, c, h, w)))[:, None]
        for j in range(-shifts, shifts + 2)
    }
    # shift k sits at x0 - k + a: between the taps -k and 1 - k
    return torch.cat([(1 - a) * taps[-k] + a * taps[1 - k] for k in range(-shifts, shifts + 1)], 1).permute(0, 2, 3, 1)


def _compiled(tensor: torch.Tensor) -> bool:
    """Whether a step may run compiled (``models.cost_volume``): a float32 CPU tensor that
    needs no gradient (inference); training keeps torch's."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and not tensor.requires_grad


def _channels_last(features: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) features as a (B, H, W, C) array (no copy when they are channels-last)."""
    return features.permute(0, 2, 3, 1).contiguous().numpy()


def local_soft_argmax(
    logits: torch.Tensor, radius: int = 2, with_confidence: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sub-pixel index of the best of ``logits`` (..., N): the softmax-weighted mean over the
    ``2 radius + 1`` entries around the maximum (a second mode elsewhere cannot pull it), and
    the share of the whole softmax those entries hold (the match's confidence; None without
    ``with_confidence``, which at inference spares the whole curve's exponentials)."""
    if _compiled(logits):
        index, mass = soft_argmax_peaks(logits.numpy(), radius, with_confidence)
        return torch.from_numpy(index), None if mass is None else torch.from_numpy(mass)
    n = logits.shape[-1]
    best = logits.argmax(-1, keepdim=True).clamp(radius, n - 1 - radius)
    window = best + torch.arange(-radius, radius + 1, device=logits.device)
    local = torch.gather(logits, -1, window)
    top = torch.gather(logits, -1, best)  # the maximum: exp() of the differences never overflows
    weights = (local - top).exp()
    index = (weights * window.to(logits.dtype)).sum(-1) / weights.sum(-1)
    if not with_confidence:
        return index, None
    mass = weights.sum(-1) / (logits - top).exp().sum(-1)  # the softmax's share of the window
    return index, mass


def parabola_peak(logits: torch.Tensor) -> torch.Tensor:
    """Sub-pixel index of the maximum of ``logits`` (..., N): the vertex of the parabola
    through the best entry and its two neighbours.  On an aggregated correlation it is
    unbiased where a softmax mean over whole-pixel shifts is pulled toward them."""
    if _compiled(logits):
        return torch.from_numpy(parabola_peaks(logits.numpy()))
    n = logits.shape[-1]
    best = logits.argmax(-1, keepdim=True).clamp(1, n - 2)
    c0, c1, c2 = (torch.gather(logits, -1, best + k)[..., 0] for k in (-1, 0, 1))
    curvature = c0 - 2 * c1 + c2
    peaked = curvature < 0
    offset = torch.where(
        peaked, 0.5 * (c0 - c2) / torch.where(peaked, curvature, torch.ones_like(curvature)), torch.zeros_like(curvature)
    )
    return best[..., 0].to(logits.dtype) + offset.clamp(-1.0, 1.0)


@dataclass
class HeadOutput:
    disparity: torch.Tensor  # (B, 1, H, W) camera pixels, left view
    confidence: torch.Tensor  # (B, 1, H, W) in [0, 1]
    coarse_disparity: torch.Tensor  # (B, 1, H/s, W/s) camera pixels
    coarse_logits: torch.Tensor  # (B, H/s, W/s, D/s), for training
    # (B, H, W, 2r+1), shifts -r .. r around the prior, for training; None at inference, where the
    # fine passes run fused (models.cost_volume.fused_fine_peaks) and no volume is written
    fine_logits: torch.Tensor | None
    prior: torch.Tensor  # (B, 1, H, W) the coarse disparity at camera resolution
    # with ``right_view``: the right view's disparity (B, 1, H, W; its pixel x sees the left's
    # at x + d), matched on the same features the other way round
    right_disparity: torch.Tensor | None = None


class EpipolarStereoHead(nn.Module):
    def __init__(self, config: StereoHeadConfig | None = None):
        super().__init__()
        self.config = config or StereoHeadConfig()
        self.config.validate()
        c = self.config
        self.coarse = CoarseFeatures(c.coarse_dim, c.coarse_stride)
        self.fine = FineFeatures(c.fine_dim, c.fine_hidden_dim)
        # softmax temperatures of the two cost volumes (log), learned
        self.log_temperature = nn.Parameter(torch.tensor([2.5, 2.5]))

    def forward(self, left: torch.Tensor, right: torch.Tensor, right_view: bool = False) -> HeadOutput:
        """``left``, ``right``: (B, 1, H, W) grey images of a rectified pair (any scale).
        ``right_view``: also the right view's disparity, for a left-right check (the features
        are shared; the matching runs again on them mirrored, which turns the right view into
        a left one)."""
        c = self.config
        s = c.coarse_stride
        h, w = left.shape[-2:]
        if h % s or w % s:
            raise ValueError(f"image size {h}x{w} must be a multiple of the coarse stride {s}")
        b = left.shape[0]
        both = torch.cat([normalise_image(left), normalise_image(right)])
        coarse, fine = self.coarse(both), self.fine(both)
        out = self._match(coarse[:b], coarse[b:], fine[:b], fine[b:])
        if right_view:
            mirrored = self._match(*(torch.flip(t, [3]) for t in (coarse[b:], coarse[:b], fine[b:], fine[:b])), confidence=False)
            out.right_disparity = torch.flip(mirrored.disparity, [3])
        return out

    def _match(
        self, coarse_l: torch.Tensor, coarse_r: torch.Tensor, fl: torch.Tensor, fr: torch.Tensor, confidence: bool = True
    ) -> HeadOutput:
        """The left view's disparity from both views' features (steps 1-3 of the module doc);
        without ``confidence`` its confidence is not computed (ones)."""
        c = self.config
        s, r = c.coarse_stride, c.refine_radius_px
        h, w = fl.shape[-2:]
        # coarse: the whole range, whole coarse pixels, soft-argmax around the best
        # the search grows with the image: a wider camera sees the same ground at more pixels
        levels = max(2, max(c.max_disparity_px, int(c.max_disparity_px * w / 512)) // s)
        coarse_logits = box(correlation_volume(coarse_l, coarse_r, 0, levels), c.coarse_aggregation_px)
        coarse_logits = coarse_logits * self.log_temperature[0].exp()
        level, _ = local_soft_argmax(coarse_logits, with_confidence=False)
        coarse_d = (level * s)[:, None]
        prior = F.interpolate(coarse_d, size=(h, w), mode="bilinear", align_corners=False).detach()
        # fine, pass 1: the right features warped by the (smooth) prior once, then whole-pixel
        # shifts of the warped features (exact where the prior is locally constant)
        warped = warp_right(fr, prior)
        if _compiled(fl) and _compiled(warped):  # inference: both passes fused, no volume written
            temperature = float(self.log_temperature[1].exp())
            left = _channels_last(fl)
            peak, fused_mass = fused_fine_peaks(
                left, _channels_last(warped), -r, 2 * r + 1, c.fine_aggregation_px, temperature, confidence
            )
            d1 = prior + (torch.from_numpy(peak) - r)[:, None]
            refined = fused_refined_peaks(left, _channels_last(fr), d1[:, 0].numpy(), c.fine_aggregation_px)
            disparity = d1 + (torch.from_numpy(refined) - 1)[:, None]
            mass = torch.ones_like(disparity[:, 0]) if fused_mass is None else torch.from_numpy(fused_mass)
            return HeadOutput(disparity, mass[:, None], coarse_d, coarse_logits, None, prior)
        fine_logits = box(correlation_volume(fl, warped, -r, 2 * r + 1), c.fine_aggregation_px)
        fine_logits = fine_logits * self.log_temperature[1].exp()
        if confidence:
            _, mass = local_soft_argmax(fine_logits)
            assert mass is not None
        else:
            mass = torch.ones_like(fine_logits[..., 0])
        d1 = prior + (parabola_peak(fine_logits) - r)[:, None]
        # fine, pass 2: exact warps at d1 - 1, d1, d1 + 1 and the parabola through them
        disparity = d1 + (parabola_peak(box(correlations_at(fl, fr, d1), c.fine_aggregation_px)) - 1)[:, None]
        return HeadOutput(disparity, mass[:, None], coarse_d, coarse_logits, fine_logits, prior)


def grow_state_dict(small: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a head with fewer channels placed into ``target``'s larger tensors so that
    it computes the same features (Net2Net-style widening): the old weights in the leading
    slices; a new channel's own weights stay ``target``'s fresh ones, and its inputs into old
    channels start at zero, so training grows them from the old head's answer."""
    grown = {}
    for name, new in target.state_dict().items():
        old = small.get(name)
        if old is None:
            raise ValueError(f"the smaller head has no {name!r}: it is not the same architecture")
        if old.shape == new.shape:
            grown[name] = old.clone()
            continue
        if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(f"{name}: {tuple(old.shape)} does not fit into {tuple(new.shape)}")
        t = new.clone()
        if t.ndim >= 2:
            t[: old.shape[0], old.shape[1] :] = 0
        t[tuple(slice(0, n) for n in old.shape)] = old
        grown[name] = t
    return grown


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gray_tensor(image, device) -> torch.Tensor:
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device)


def predict_disparity(head: EpipolarStereoHead, image_left, image_right):
    """Left disparity (px) and its confidence of a rectified pair of numpy images (grey or
    colour, any size: padded to the coarse stride by replication, cropped back)."""
    disparity, confidence, _ = _predict(head, image_left, image_right, right_view=False)
    return disparity, confidence


def predict_disparities(head: EpipolarStereoHead, image_left, image_right):
    """:func:`predict_disparity`, and the right view's disparity (px, right pixels) matched on
    the same features the other way round: ``(left, confidence, right)``."""
    disparity, confidence, right = _predict(head, image_left, image_right, right_view=True)
    assert right is not None
    return disparity, confidence, right


def _predict(head: EpipolarStereoHead, image_left, image_right, right_view: bool):
    if np.shape(image_left)[:2] != np.shape(image_right)[:2]:
        raise ValueError(
            f"the stereo head needs two images of one size, got {np.shape(image_left)[:2]} and {np.shape(image_right)[:2]}"
        )
    device = next(head.parameters()).device
    left, right = _gray_tensor(image_left, device), _gray_tensor(image_right, device)
    h, w = left.shape[-2:]
    s = head.config.coarse_stride
    pad = (0, (-w) % s, 0, (-h) % s)
    if any(pad):
        left, right = F.pad(left, pad, mode="replicate"), F.pad(right, pad, mode="replicate")
    with torch.inference_mode():
        out = head(left, right, right_view=right_view)
    crop = lambda t: t[0, 0, :h, :w].cpu().numpy().astype(np.float32)  # noqa: E731
    return crop(out.disparity), crop(out.confidence), None if out.right_disparity is None else crop(out.right_disparity)
