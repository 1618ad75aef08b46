"""The student's calibrated-stereo head: its disparity, its confidence, where the pipeline uses
it, its training and its place in checkpoints."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from lunar_recon.geometry.camera import Intrinsics
from lunar_recon.models.stereo_head import (
    EpipolarStereoHead,
    StereoHeadConfig,
    _channels_last,
    box,
    correlation_volume,
    correlations_at,
    local_soft_argmax,
    parabola_peak,
    predict_disparity,
    warp_right,
)

from conftest import card_student_row


def _texture(h: int, w: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = sum(
        cv2.resize(rng.random((h // s + 1, w // s + 1)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) / s
        for s in (1, 2, 4, 8)
    )
    base = (base - base.min()) / np.ptp(base)
    return (40 + 180 * base).astype(np.float32)


def shifted_pair(disparity: float, h: int = 192, w: int = 320, flat: bool = False):
    """A rectified pair of a fronto-parallel textured plane at ``disparity`` px: the right view
    sees the left's point at x - disparity.  ``flat``: a textureless square in the middle."""
    texture = _texture(h, w + 64 + int(disparity))
    left = texture[:, 32 : 32 + w]
    m = np.float32([[1, 0, 32 + disparity], [0, 1, 0]])  # right(x) = texture(x + 32 + d)
    right = cv2.warpAffine(texture, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    if flat:
        for img in (left, right):
            img[64:128, 128:192] = 120.0
    return np.clip(left, 0, 255).astype(np.uint8), np.clip(right, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def shipped_head():
    from lunar_recon.models import load_model
    from lunar_recon.models.registry import shipped_model_path

    head = load_model(shipped_model_path()).stereo_head
    assert head is not None, "the shipped student must carry its calibrated-stereo head"
    return head


@pytest.mark.parametrize("disparity,width", [(17.3, 320), (41.75, 320), (250.4, 1024)])
def test_shipped_head_finds_a_known_sub_pixel_shift(shipped_head, disparity, width):
    """Within 0.2 px; on a megapixel-wide camera beyond the 192 px trained search too."""
    left, right = shifted_pair(disparity, w=width)
    d, conf = predict_disparity(shipped_head, left, right)
    inside = (slice(16, -16), slice(int(disparity) + 24, -16))  # right of the unmatched band
    err = d[inside] - disparity
    assert abs(float(np.median(err))) < 0.2, float(np.median(err))
    assert np.mean(np.abs(err) < 0.5) > 0.9
    assert np.median(conf[inside]) > 0.5


def test_confidence_falls_on_a_textureless_patch(shipped_head):
    left, right = shifted_pair(24.0, flat=True)
    _, conf = predict_disparity(shipped_head, left, right)
    patch = conf[80:112, 144:176]  # the middle of the flat square
    textured = conf[16:48, 64:300]
    # a flat cost volume holds 5/9 of its mass in any five shifts: the floor, far under the
    # pipeline's threshold; the textured ground is certain
    assert np.median(patch) < 0.6 < 0.99 <= np.median(textured), (np.median(patch), np.median(textured))
    from lunar_recon.pipeline import ReconstructionParams

    assert np.median(patch) < ReconstructionParams().stereo_head_min_confidence


def test_local_soft_argmax_and_parabola_are_sub_pixel_and_ignore_a_far_mode():
    idx = torch.arange(9, dtype=torch.float32)
    logits = -((idx - 5.3) ** 2) * 2.0
    logits[0] = logits.max() - 0.01  # a second mode far away
    index, mass = local_soft_argmax(logits[None])
    assert abs(float(index) - 5.3) < 0.15 and 0 < float(mass) < 1
    assert abs(float(parabola_peak(logits[None])) - 5.3) < 1e-5  # exact on a parabola


def test_compiled_peak_search_matches_torchs():
    """Inference's compiled peak search (``models.cost_volume``) gives what the torch
    functions training differentiates give: on random curves, on curves peaking at either end
    (the window clamped in), on flat curves (ties: the first) and on a parabola."""
    from lunar_recon.models import cost_volume

    rng = np.random.default_rng(0)
    curves = rng.normal(0, 3, (500, 9)).astype(np.float32)
    curves[:20, 0] += 20  # the largest at the first entry
    curves[20:40, -1] += 20  # at the last
    curves[40:50] = 1.5  # flat
    curves[50] = -((np.arange(9) - 5.3) ** 2)
    volume = torch.from_numpy(curves.reshape(1, 25, 20, 9))
    graded = volume.clone().requires_grad_(True)  # a volume that needs gradients takes torch's path
    for radius in (1, 2):
        index, mass = local_soft_argmax(volume, radius)
        ref_index, ref_mass = local_soft_argmax(graded, radius)
        assert index.shape == ref_index.shape == (1, 25, 20)
        assert torch.allclose(index, ref_index.detach(), atol=1e-4)
        assert torch.allclose(mass, ref_mass.detach(), atol=1e-5)
    index, mass = local_soft_argmax(volume, 2, with_confidence=False)  # the index alone
    assert mass is None and torch.allclose(index, local_soft_argmax(graded, 2)[0].detach(), atol=1e-4)
    assert local_soft_argmax(graded, 2, with_confidence=False)[1] is None
    peak = parabola_peak(volume)
    assert torch.allclose(peak, parabola_peak(graded).detach(), atol=1e-4)
    assert abs(float(peak.reshape(-1)[50]) - 5.3) < 1e-5
    assert float(peak.reshape(-1)[45]) == 1.0  # flat: the first entry (clamped one in), no offset
    with pytest.raises(ValueError, match="window"):
        cost_volume.soft_argmax_peaks(curves[:, :3], 2)
    with pytest.raises(ValueError, match="parabola"):
        cost_volume.parabola_peaks(curves[:, :2])
    assert cost_volume.compile_kernels() < 60


def test_compiled_correlations_match_torchs():
    """Inference's compiled correlations (``models.cost_volume``) equal the torch ones: the
    narrow band of whole-pixel shifts (either sign, beyond the image too) and the correlations
    around a sub-pixel disparity (clamped at the borders)."""
    rng = np.random.default_rng(1)
    fl = torch.from_numpy(rng.normal(size=(2, 8, 6, 40)).astype(np.float32))
    fr = torch.from_numpy(rng.normal(size=(2, 8, 6, 40)).astype(np.float32))
    graded = fl.clone().requires_grad_(True)  # takes torch's path
    compiled_band = correlation_volume(fl, fr, -4, 9)
    for first, count in ((0, 12), (-3, 10)):  # as wide as a quarter of the row (training: one product per row)
        wide = correlation_volume(fl, fr, first, count)
        assert torch.allclose(wide, correlation_volume(graded, fr, first, count).detach(), atol=1e-5)
    for first, count in ((-4, 9), (3, 5), (-45, 3), (38, 4)):
        compiled = correlation_volume(fl, fr, first, count)
        assert compiled.shape == (2, 6, 40, count)
        assert torch.allclose(compiled, correlation_volume(graded, fr, first, count).detach(), atol=1e-5)
    disparity = torch.from_numpy(rng.uniform(-3, 45, size=(2, 1, 6, 40)).astype(np.float32))
    for shifts in (1, 2):
        compiled = correlations_at(fl, fr, disparity, shifts)
        assert compiled.shape == (2, 6, 40, 2 * shifts + 1)
        assert torch.allclose(compiled, correlations_at(graded, fr, disparity, shifts).detach(), atol=1e-5)
    from lunar_recon.models import cost_volume

    with pytest.raises(ValueError, match="differ"):
        cost_volume.band_correlation(fl.numpy(), fr.numpy()[:, :4], 0, 3)
    with pytest.raises(ValueError, match="do not fit"):
        cost_volume.correlations_at_disparity(fl.numpy(), fr.numpy(), disparity.numpy()[:, 0, :3], 1)
    # channels-last features (the convolutions' own layout) are read without a copy
    assert torch.allclose(correlation_volume(fl.contiguous(memory_format=torch.channels_last), fr, -4, 9), compiled_band)


@pytest.mark.parametrize("fine_dim,hidden", [(8, None), (6, 5), (3, 16)])
def test_compiled_fine_features_match_torchs(fine_dim, hidden):
    """Inference's fine features (``models.cost_volume.fine_feature_map``: three 3x3
    convolutions row by row, leaky ReLUs, unit length) equal torch's layers, the image borders
    (zero padding) included, for channel counts that do and do not fill its groups of four;
    they come out channels-last, the layout the correlations read, and the same on two threads."""
    from lunar_recon.models import cost_volume
    from lunar_recon.models.stereo_head import FineFeatures

    torch.manual_seed(fine_dim)
    features = FineFeatures(fine_dim, hidden)
    for block in features.body:  # biases away from zero, so a lost bias or padding row shows
        torch.nn.init.uniform_(block[0].bias, -0.5, 0.5)
    images = torch.from_numpy(np.random.default_rng(fine_dim).normal(size=(2, 1, 13, 29)).astype(np.float32))
    expected = features(images).detach()  # the weights carry gradients: torch's path
    with torch.inference_mode():
        compiled = features(images)
    assert compiled.shape == (2, fine_dim, 13, 29)
    assert compiled.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(compiled, expected, atol=2e-6, rtol=0)
    torch.testing.assert_close(compiled.norm(dim=1), torch.ones(2, 13, 29), atol=1e-5, rtol=0)
    layers = [(b[0].weight.detach().numpy(), b[0].bias.detach().numpy()) for b in features.body]
    one = cost_volume.fine_feature_map(images[:, 0].numpy(), layers, 0.1)
    np.testing.assert_array_equal(cost_volume.fine_feature_map(images[:, 0].numpy(), layers, 0.1, threads=2), one)
    with pytest.raises(ValueError, match="input channels"):
        cost_volume.fine_feature_map(images[:, 0].numpy(), [layers[1], layers[0], layers[2]], 0.1)
    with pytest.raises(ValueError, match="three layers"):
        cost_volume.fine_feature_map(images[:, 0].numpy(), layers[:2], 0.1)


def test_compiled_row_warp_matches_torchs():
    """Inference's warp of the right features (``models.cost_volume.warp_rows``) is
    ``warp_right``'s bilinear sample: linear along the row, clamped to the border beyond it."""
    from lunar_recon.models import cost_volume

    rng = np.random.default_rng(4)
    fr = torch.from_numpy(rng.normal(size=(2, 8, 6, 40)).astype(np.float32))
    disparity = torch.from_numpy(rng.uniform(-6, 48, size=(2, 1, 6, 40)).astype(np.float32))  # off both ends
    expected = warp_right(fr.clone().requires_grad_(True), disparity).detach()
    compiled = warp_right(fr, disparity)
    assert compiled.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(compiled, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not fit"):
        cost_volume.warp_rows(_channels_last(fr), disparity[:, 0, :3].numpy())


def test_fused_fine_passes_equal_the_volume_then_box_then_peak():
    """Inference's fused fine passes (``models.cost_volume.fused_fine_peaks`` and
    ``fused_refined_peaks``) give the peaks and confidence of the steps training runs one by one
    -- the correlation volume, its box mean (fewer pixels at the borders), the temperature, the
    parabola and the soft-argmax's mass -- on random features, the borders and a batch of two
    included; and the whole head's answer is the same on either path (to 5e-3 px: the float
    sums' order differs, and an untrained head's correlation curves are flat)."""
    from lunar_recon.models import cost_volume

    rng = np.random.default_rng(2)
    fl = torch.from_numpy(rng.normal(size=(2, 8, 23, 41)).astype(np.float32))
    fr = torch.from_numpy(rng.normal(size=(2, 8, 23, 41)).astype(np.float32))
    graded = fl.clone().requires_grad_(True)  # takes torch's path
    for aggregation, temperature, with_mass in ((9, 12.0, True), (5, 3.0, False), (1, 1.0, True)):
        logits = box(correlation_volume(graded, fr, -4, 9), aggregation).detach() * temperature
        peak, mass = cost_volume.fused_fine_peaks(
            _channels_last(fl), _channels_last(fr), -4, 9, aggregation, temperature, with_mass
        )
        np.testing.assert_allclose(peak, parabola_peak(logits).numpy(), atol=1e-4)
        if with_mass:
            np.testing.assert_allclose(mass, local_soft_argmax(logits)[1].numpy(), atol=1e-5)
        else:
            assert mass is None
    # pass 2 where no tap in the box window is clamped at the border (clamped taps repeat one
    # column: curves flat to the rounding, whose parabola either path may bend its own way)
    disparity = torch.from_numpy(rng.uniform(0.5, 3.5, size=(2, 1, 23, 41)).astype(np.float32))
    for aggregation in (9, 3):
        logits = box(correlations_at(graded, fr, disparity, 1), aggregation).detach()
        peak = cost_volume.fused_refined_peaks(_channels_last(fl), _channels_last(fr), disparity[:, 0].numpy(), aggregation)
        inside = (slice(None), slice(None), slice(6 + aggregation // 2, None))
        np.testing.assert_allclose(peak[inside], parabola_peak(logits).numpy()[inside], atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        cost_volume.fused_fine_peaks(_channels_last(fl), _channels_last(fr), -4, 9, 4, 1.0, True)  # an even box

    torch.manual_seed(0)
    head = EpipolarStereoHead(StereoHeadConfig(fine_dim=4, coarse_dim=4))
    left, right = (torch.from_numpy(im.astype(np.float32))[None, None] for im in shifted_pair(12.3, h=64, w=96))
    with torch.inference_mode():
        fused = head(left, right, right_view=True)
    assert fused.fine_logits is None  # no volume written at inference
    stepwise = head(left.clone().requires_grad_(True), right, right_view=True)
    for name in ("disparity", "confidence", "right_disparity"):
        np.testing.assert_allclose(
            getattr(fused, name).numpy(), getattr(stepwise, name).detach().numpy(), atol=5e-3, err_msg=name
        )


def test_correlation_volume_pairs_x_with_x_minus_k():
    fl = torch.zeros(1, 1, 1, 10)
    fr = torch.zeros(1, 1, 1, 10)
    fl[..., 7] = 1.0
    fr[..., 4] = 1.0  # left pixel 7 sees right pixel 4: disparity 3
    vol = correlation_volume(fl, fr, -2, 8)  # shifts -2 .. 5
    assert vol.shape == (1, 1, 10, 8)
    assert vol[0, 0, 7].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]  # index 5: shift -2 + 5 = 3


@pytest.mark.parametrize("width,first,count", [(40, 0, 12), (40, -3, 9), (20, 2, 30), (64, -4, 9)])
def test_correlation_volume_matches_its_definition_on_both_paths(width, first, count):
    """The matrix-product band (a search over a quarter of the row or more) and the plane loop
    give the definition's values and gradients, zero where x - k leaves the row."""
    g = torch.Generator().manual_seed(width + count)
    fl, fr = (torch.randn(2, 5, 3, width, generator=g, requires_grad=True) for _ in range(2))
    vol = correlation_volume(fl, fr, first, count)
    expected = torch.zeros(2, 3, width, count)
    for i in range(count):
        for x in range(width):
            if 0 <= x - (first + i) < width:
                expected[:, :, x, i] = (fl[..., x] * fr[..., x - first - i]).sum(1)
    assert torch.allclose(vol, expected, atol=1e-5)
    weights = torch.randn(vol.shape, generator=g)
    (vol * weights).sum().backward()
    grad = fl.grad.clone()
    fl.grad = None
    (expected * weights).sum().backward()
    assert torch.allclose(grad, fl.grad, atol=1e-5)


def test_box_is_the_same_mean_with_and_without_gradients():
    """OpenCV's per-plane box filter (inference on the CPU) and the running sums (training)
    average the same window, fewer pixels at the borders."""
    v = torch.randn(1, 30, 41, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = box(v.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1), 9)  # planes, as correlation_volume's
    slow = box(v.clone().requires_grad_(True), 9)
    assert torch.allclose(fast, slow.detach(), atol=1e-5)
    assert torch.isclose(fast[0, 0, 0, 0], v[0, :5, :5, 0].mean(), atol=1e-5)  # the corner's window: 5 x 5


def test_correlations_at_a_disparity_are_the_warped_ones():
    """The pass-2 correlations at d - 1, d, d + 1 from shared interpolation taps equal the
    correlations with the right features warped (bilinear, border-clamped) at each."""
    g = torch.Generator().manual_seed(2)
    fl, fr = torch.randn(1, 8, 12, 50, generator=g), torch.randn(1, 8, 12, 50, generator=g)
    d = torch.rand(1, 1, 12, 50, generator=g) * 60 - 5  # some beyond either border
    expected = torch.stack([(fl * warp_right(fr, d + k)).sum(1) for k in (-1, 0, 1)], -1)
    assert torch.allclose(correlations_at(fl, fr, d), expected, atol=1e-4)


def test_head_checks_its_input_and_config():
    head = EpipolarStereoHead(StereoHeadConfig())
    with pytest.raises(ValueError, match="multiple of the coarse stride"):
        head(torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="one size"):
        predict_disparity(head, np.zeros((32, 32), np.uint8), np.zeros((32, 40), np.uint8))
    with pytest.raises(ValueError, match="unknown stereo head config"):
        StereoHeadConfig.from_dict({"fine_dim": 8, "colour": True})
    with pytest.raises(ValueError, match="refine_radius_px"):
        StereoHeadConfig(refine_radius_px=1).validate()
    # any image size: padded to the stride and cropped back; colour is accepted
    d, c = predict_disparity(head, np.zeros((30, 34, 3), np.uint8), np.zeros((30, 34, 3), np.uint8))
    assert d.shape == c.shape == (30, 34)


def test_a_head_widened_from_a_trained_one_computes_the_same_disparity(shipped_head):
    """``grow_state_dict``: the trained head's weights in a head with wider hidden fine
    convolutions give the same features at step 0 (the same disparity, to rounding), and the new
    channels still train (their inputs into the old ones are zero, not frozen)."""
    from lunar_recon.models.stereo_head import grow_state_dict

    wide = EpipolarStereoHead(StereoHeadConfig.from_dict({**shipped_head.config.to_dict(), "fine_hidden_dim": 16}))
    wide.load_state_dict(grow_state_dict(shipped_head.state_dict(), wide))
    wide.eval()
    left, right = shifted_pair(7.3, h=64, w=128)
    d0, _ = predict_disparity(shipped_head, left, right)
    d1, _ = predict_disparity(wide, left, right)
    assert np.abs(d0 - d1).max() < 1e-3  # the same sums, in another order
    x = torch.rand(1, 1, 32, 64)
    wide.fine(x).sum().backward()
    grad = wide.fine.body[1][0].weight.grad
    assert grad is not None and grad[:8, 8:].abs().sum() > 0
    with pytest.raises(ValueError, match="does not fit"):
        grow_state_dict(wide.state_dict(), EpipolarStereoHead(shipped_head.config))


def _rig(fx: float, w: int, h: int, baseline: float, rotated: bool = False):
    from lunar_recon.geometry.stereo import StereoCalibration

    K = Intrinsics(fx, fx, w / 2, h / 2, w, h)
    cal = StereoCalibration.rectified(K, baseline)
    if rotated:
        T = cal.T_left_from_right.copy()
        T[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.05, 0.02]))[0]
        cal = StereoCalibration(K, K, T)
    return cal


def test_a_wide_pair_is_matched_downscaled_to_the_heads_max_size(shipped_head):
    """stereo_head_max_size: a pair wider than it is matched at that size and its disparity
    scaled back to camera pixels (at half size within 0.3 px: the precision of half the width);
    at camera resolution as before when 0 or narrower."""
    from lunar_recon.pipeline import stereo_head_match

    disparity, width = 61.3, 640
    left, right = shifted_pair(disparity, h=256, w=width)
    cal = _rig(500.0, width, 256, 1.0)
    inside = (slice(24, -24), slice(int(disparity) + 40, -24))
    for max_size in (0, 1024, 320):
        depth = stereo_head_match(shipped_head, left, right, cal, 0.5, max_size).depth
        assert depth.shape == left.shape
        d = 500.0 * 1.0 / depth[inside]
        assert abs(float(np.nanmedian(d)) - disparity) < (0.3 if max_size == 320 else 0.2), (max_size, np.nanmedian(d))
        assert np.isfinite(d).mean() > 0.9


def test_a_pair_matched_downscaled_has_the_precision_of_that_scale(shipped_head):
    """The noise model's disparity sigma holds at the resolution the head matched at: a pair
    matched at half its width gets twice the sigma in camera pixels (its heights' sigma
    doubles), and the left-right check stays in the matching resolution's pixels."""
    from lunar_recon.geometry.stereo import DisparityPrecision
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, stereo_head_match

    disparity, width = 30.0, 512
    left, right = shifted_pair(disparity, h=256, w=width)
    cal = _rig(500.0, width, 256, 1.0)
    full = stereo_head_match(shipped_head, left, right, cal, 0.5, 0, left_right_check=True)
    half = stereo_head_match(shipped_head, left, right, cal, 0.5, 256, left_right_check=True)
    assert full.matching_scale == 1.0 and half.matching_scale == pytest.approx(0.5)
    inside = (slice(24, -24), slice(80, -24))
    # a consistent pair: the check's disagreement is a fraction of a pixel at either scale
    assert np.nanmedian(half.left_right_px[inside]) < 0.2 and np.nanmedian(full.left_right_px[inside]) < 0.2

    precision = DisparityPrecision(0.1, 2.0)
    assert precision.sigma_map(left, None, 0.5).shape == (128, 256)
    wide = precision.sigma_map(left, left.shape, 0.5)
    small = cv2.resize(left, (256, 128), interpolation=cv2.INTER_AREA)
    assert np.allclose(wide, 2 * precision.sigma_map(small, left.shape), rtol=1e-6)
    assert DisparityPrecision(0.1).sigma_map(left, None, 0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="matching_scale"):
        precision.sigma_map(left, None, 0.0)

    model = load_stereo_model("default")
    up = np.array([0.0, -0.5, -1.0])  # the plane seen obliquely from above
    sigmas = {}
    for max_size in (0, 256):
        rec = StereoReconstructor(model, ReconstructionParams(stereo_head_max_size=max_size))
        r = rec.reconstruct(left, right, cal, up)
        assert r.elevation_sigma is not None
        sigmas[max_size] = float(np.nanmedian(r.elevation_sigma[inside]))
    assert 1.6 < sigmas[256] / sigmas[0] < 2.5, sigmas


def test_the_map_takes_a_pair_matched_downscaled_at_the_matching_resolution(shipped_head):
    """A pair matched at half its width (stereo_head_max_size) has its hazard map made from
    every other point of each row and column -- the rest are interpolations of the matched
    ones -- with their sigmas; its depth, points and sigma stay at camera resolution."""
    from unittest import mock

    from lunar_recon import pipeline
    from lunar_recon.models.registry import load_stereo_model

    left, right = shifted_pair(30.0, h=256, w=512)
    cal = _rig(500.0, 512, 256, 1.0)
    up = np.array([0.0, -0.5, -1.0])
    model = load_stereo_model("default")
    with mock.patch.object(pipeline, "hazard_map", wraps=pipeline.hazard_map) as made:
        for max_size in (0, 256):
            rec = pipeline.StereoReconstructor(model, pipeline.ReconstructionParams(stereo_head_max_size=max_size))
            r = rec.reconstruct(left, right, cal, up)
            assert r.depth.shape == r.elevation_sigma.shape == (256, 512) and r.hazard is not None
            given = made.call_args
            assert given.args[0].shape == ((256, 512, 3) if max_size == 0 else (128, 256, 3))
            assert given.kwargs["elevation_sigma"].shape == given.args[0].shape[:2]
            if max_size:
                assert np.array_equal(given.args[0], r.points[::2, ::2], equal_nan=True)
                assert np.array_equal(given.kwargs["elevation_sigma"], r.elevation_sigma[::2, ::2], equal_nan=True)


def test_pipeline_takes_the_head_on_a_rectified_rig_and_the_pointmap_path_otherwise(shipped_head):
    """Rectified: the scale and the fusion come from the head, no SGBM runs.  A rotated rig
    (an unrectified CameraInfo pair) takes the pointmap path."""
    from unittest import mock

    from lunar_recon.geometry import stereo
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor

    model = load_stereo_model("default")
    left, right = shifted_pair(30.0, h=192, w=256)
    cal = _rig(300.0, 256, 192, 1.0)  # a plane at 300 * 1 / 30 = 10 m
    params = ReconstructionParams(scale_mode="stereo_local", compute_hazard=False, compute_slope=False)
    no_sgbm = AssertionError("SGBM ran")
    with (
        mock.patch.object(stereo, "sgbm_disparity", side_effect=no_sgbm),
        mock.patch.object(stereo, "sgbm_depth_unrectified", side_effect=no_sgbm),
    ):
        rec = StereoReconstructor(model, params).reconstruct(left, right, cal, None)
    assert rec.scale_path == "stereo_local (stereo head)"
    inside = rec.depth[16:-16, 60:-16]
    assert np.isfinite(rec.depth).mean() > 0.97  # dense: the pointmap fills what the head leaves
    assert abs(float(np.median(inside)) - 10.0) < 0.1
    off = StereoReconstructor(
        model, ReconstructionParams(scale_mode="stereo_local", stereo_head=False, compute_hazard=False, compute_slope=False)
    )
    assert off.reconstruct(left, right, cal, None).scale_path == "stereo_local"
    rotated = StereoReconstructor(model, params).reconstruct(left, right, _rig(300.0, 256, 192, 1.0, True), None)
    assert "stereo head" not in rotated.scale_path
    with pytest.raises(ValueError, match="stereo_head_min_confidence"):
        ReconstructionParams(stereo_head_min_confidence=1.5).validate()


def test_the_head_runs_beside_the_network_with_the_same_answer(shipped_head):
    """The pipeline matches the pair on the head's worker thread while the network predicts;
    the depth is the direct call's, and a network that fails loses nothing of the next pair."""
    import threading
    from unittest import mock

    from lunar_recon import pipeline
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, stereo_head_match

    model = load_stereo_model("default")
    left, right = shifted_pair(30.0, h=192, w=256)
    cal = _rig(300.0, 256, 192, 1.0)
    params = ReconstructionParams(scale_mode="stereo_local", compute_hazard=False, compute_slope=False)
    threads, network_running = [], threading.Event()
    real_predict = model.predict

    answers = []

    def head(*args):
        threads.append((threading.current_thread().name, network_running.wait(30.0)))
        answers.append(stereo_head_match(*args))
        return answers[-1]

    def predict(*args, **kwargs):
        network_running.set()  # the head waits for this: it must not be running after the network
        return real_predict(*args, **kwargs)

    with mock.patch.object(pipeline, "stereo_head_match", side_effect=head), mock.patch.object(model, "predict", predict):
        staged = StereoReconstructor(model, params).predict_scaled(left, right, cal, params)
    assert threads == [("lunar_recon-stereo-head_0", True)]
    direct = stereo_head_match(model.stereo_head, left, right, cal, params.stereo_head_min_confidence, 0, True)
    assert staged.scale_path == "stereo_local (stereo head)"
    np.testing.assert_array_equal(answers[0].depth, direct.depth)  # the worker thread's answer is the direct call's
    np.testing.assert_array_equal(staged.head_left_right_px, direct.left_right_px)
    with mock.patch.object(model, "predict", side_effect=RuntimeError("network failed")):
        with pytest.raises(RuntimeError, match="network failed"):
            StereoReconstructor(model, params).predict_scaled(left, right, cal, params)
    again = StereoReconstructor(model, params).predict_scaled(left, right, cal, params)
    np.testing.assert_array_equal(again.metric_points(), staged.metric_points())


def test_training_runs_resumes_and_attaches(tmp_path):
    """Two steps, then a resume to four that continues the same run; the head attached to a
    student loads with it and survives a re-save."""
    from lunar_recon.data.dataset import write_pair
    from lunar_recon.distill.stereo_head import StereoHeadTraining, disparity_truth, train_stereo_head
    from lunar_recon.models import load_model
    from lunar_recon.models.checkpoint import CheckpointError, attach_stereo_head, save_checkpoint
    from lunar_recon.sim.scene import plan_scene, render_scene

    data = tmp_path / "data"
    frame = render_scene(plan_scene("lander", 3, width=256, height=192))
    write_pair(data / "train" / "000000", frame)
    (data / "dataset.json").write_text(json.dumps({"format": "lunar_recon.dataset/1", "splits": {"train": 1}}))
    truth = disparity_truth(frame.depth_left, frame.depth_right, frame.K_left.fx, frame.baseline_m)
    assert 0.5 < np.isfinite(truth).mean() < 1  # the left border and occlusions are dropped
    cfg = StereoHeadTraining(steps=2, batch=2, crop_hw=(64, 128), checkpoint_every=1)
    small = StereoHeadConfig(coarse_dim=8, fine_dim=4, max_disparity_px=96)
    logs: list[str] = []
    train_stereo_head([str(data)], tmp_path / "run", cfg, small, log=logs.append)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert first["step"] == 2
    cfg4 = StereoHeadTraining(steps=4, batch=2, crop_hw=(64, 128), checkpoint_every=1)
    with pytest.raises(ValueError, match="other settings"):
        train_stereo_head([str(data)], tmp_path / "run", cfg4, small, resume=True, log=logs.append)
    again = StereoHeadTraining(steps=2, batch=2, crop_hw=(64, 128), checkpoint_every=1)
    train_stereo_head([str(data)], tmp_path / "run", again, small, resume=True, log=logs.append)
    assert any("resumed at step 2" in line for line in logs)

    # the CLI grows a wider head from a trained one: --init's sizes, the hidden width overridden
    import argparse

    from lunar_recon.tools import train_stereo_head as tool

    parser = argparse.ArgumentParser()
    tool.add_arguments(parser)
    args = parser.parse_args(
        ["--data", str(data), "--init", str(tmp_path / "run" / "stereo_head.pt"), "--fine-hidden-dim", "6"]
        + ["--out", str(tmp_path / "wide"), "--steps", "1", "--batch", "2"]
    )
    assert tool.run(args) == 0
    wide = torch.load(tmp_path / "wide" / "stereo_head.pt", weights_only=True)["config"]
    assert wide == {**small.to_dict(), "fine_hidden_dim": 6}

    from lunar_recon.models.registry import shipped_model_path

    student = load_model(shipped_model_path())
    student.stereo_head = None
    save_checkpoint(student, tmp_path / "student.pt")
    attach_stereo_head(tmp_path / "student.pt", tmp_path / "run" / "stereo_head.pt", tmp_path / "with_head.pt")
    loaded = load_model(tmp_path / "with_head.pt")
    assert loaded.stereo_head is not None and loaded.stereo_head.config == small
    save_checkpoint(loaded, tmp_path / "resaved.pt")
    assert load_model(tmp_path / "resaved.pt").stereo_head.config == small
    assert load_model(tmp_path / "student.pt").stereo_head is None
    broken = torch.load(tmp_path / "with_head.pt", weights_only=True)
    broken["stereo_head"]["config"]["coarse_stride"] = 3
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="stereo head config"):
        load_model(tmp_path / "broken.pt")


def test_card_describes_the_shipped_head():
    from lunar_recon.models import load_model
    from lunar_recon.models.profile import count_parameters
    from lunar_recon.models.registry import SHIPPED_DIR, shipped_model_path

    model = load_model(shipped_model_path())
    card = json.loads((SHIPPED_DIR / "model_card.json").read_text())
    head = card["stereo_head"]
    assert head["config"] == model.stereo_head.config.to_dict()
    assert head["parameters"] == count_parameters(model.stereo_head) > 0
    assert card["parameters"] == count_parameters(model)  # network and head
    assert head["gflops_512x384"] > 0 and set(head["cpu_latency_ms_2_threads"]) == {"512x384", "1024x1024"}
    assert any("train-stereo-head" in c for c in card["commands"])
    for metrics in (card["test_metrics"], card["descent_test_metrics"], card["approach_test_metrics"]):
        student = card_student_row(metrics, shipped_model_path())
        assert student["depth_completeness"] > 0.99 and student["frames"] > 0
        assert "sgbm" in metrics  # the matcher it replaces stays beside it
    assert "## Calibrated-stereo head" in (SHIPPED_DIR / "MODEL_CARD.md").read_text()


def test_unmatched_left_band_is_where_the_match_leaves_the_right_image():
    from lunar_recon.geometry.stereo import unmatched_left_band

    h, w = 40, 200
    x = np.arange(w, dtype=np.float32)
    d = np.tile(30.0 + 0.1 * x, (h, 1))  # a slanted plane: x = d at x = 33.3
    d[:, :33] = np.random.default_rng(0).uniform(0, 5, (h, 33))  # what a matcher returns there
    band = unmatched_left_band(d)
    assert band[:, :35].all() and not band[:, 36:].any()
    d[5] = np.nan  # a row without data (NaN anyway) does not disturb the others
    band = unmatched_left_band(d)
    assert band[6, :35].all() and not band[6, 36:].any() and not band[5, 2:].any()


def _elevation_sigmas(pair, cal, **factors) -> dict:
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor

    model = load_stereo_model("default")
    up = np.array([0.0, 0.0, -1.0])
    out = {}
    for key, kw in factors.items():
        params = ReconstructionParams(scale_mode="stereo_local", compute_slope=False, **kw)
        out[key] = StereoReconstructor(model, params).reconstruct(*pair, cal, up).elevation_sigma
    return out


def test_network_points_get_the_wider_noise_model():
    """Far away (5 px of disparity, under the fusion's halfway disparity) the points are the
    network's although the head matched them: widened by network_sigma_factor, and not by
    unmatched_sigma_factor."""
    from lunar_recon.pipeline import ReconstructionParams

    sig = _elevation_sigmas(
        shifted_pair(5.0, h=192, w=256),
        _rig(300.0, 256, 192, 1.0),
        one={"network_sigma_factor": 1.0, "unmatched_sigma_factor": 1.0},
        eight={"network_sigma_factor": 8.0, "unmatched_sigma_factor": 1.0},
        unmatched={"network_sigma_factor": 1.0, "unmatched_sigma_factor": 64.0},
    )
    inner = (slice(40, -40), slice(60, -40))
    assert np.nanmedian(sig["eight"][inner] / sig["one"][inner]) == pytest.approx(8.0, rel=0.05)
    assert np.allclose(sig["unmatched"][inner], sig["one"][inner], rtol=0.05)
    with pytest.raises(ValueError, match="network_sigma_factor"):
        ReconstructionParams(network_sigma_factor=0.5).validate()


def test_unmatched_points_get_their_own_noise_model():
    """Near (30 px) the head's matches keep the matcher's noise model under any factor; the left
    band no right pixel sees (the network's, unmatched) is widened by unmatched_sigma_factor."""
    from lunar_recon.pipeline import ReconstructionParams

    sig = _elevation_sigmas(
        shifted_pair(30.0, h=192, w=256),
        _rig(300.0, 256, 192, 1.0),
        one={"network_sigma_factor": 1.0, "unmatched_sigma_factor": 1.0},
        network={"network_sigma_factor": 8.0, "unmatched_sigma_factor": 8.0},
        unmatched={"network_sigma_factor": 8.0, "unmatched_sigma_factor": 64.0},
    )
    matched = (slice(40, -40), slice(120, -40))
    band = (slice(40, -40), slice(0, 20))
    assert np.allclose(sig["unmatched"][matched], sig["one"][matched], rtol=0.05)
    assert np.nanmedian(sig["network"][band] / sig["one"][band]) == pytest.approx(8.0, rel=0.05)
    assert np.nanmedian(sig["unmatched"][band] / sig["one"][band]) == pytest.approx(64.0, rel=0.05)
    with pytest.raises(ValueError, match="unmatched_sigma_factor"):
        ReconstructionParams(unmatched_sigma_factor=0.5).validate()


def test_outside_right_view_is_where_the_match_leaves_the_image():
    """x - f B / Z < 2 px, at the depth image's own resolution; not where the depth is missing."""
    from lunar_recon.geometry.stereo import outside_right_view

    cal = _rig(300.0, 256, 192, 1.0)
    depth = np.full((192, 256), 10.0, np.float32)  # 30 px of disparity
    band = outside_right_view(depth, cal)
    assert band[:, :32].all() and not band[:, 32:].any()
    half = outside_right_view(depth[::2, ::2], cal)  # 15 px there
    assert half[:, :17].all() and not half[:, 17:].any()
    depth[:, :10] = np.nan
    assert not outside_right_view(depth, cal)[:, :10].any()


def test_a_pair_from_orbit_is_matched_once_for_both_networks():
    """The shipped orbital network shares the default's head module (equal weights), so a pair
    handed to it reuses the head depth the first network's stage already matched."""
    from unittest import mock

    from lunar_recon import pipeline
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, stereo_head_match

    model = load_stereo_model("default")
    assert model.orbital.model.stereo_head is model.stereo_head
    left, right = shifted_pair(30.0, h=192, w=256)
    cal = _rig(300.0, 256, 192, 1.0)
    params = ReconstructionParams(scale_mode="stereo_local", compute_hazard=False, compute_slope=False)
    calls = []

    def head(*args):
        calls.append(1)
        return stereo_head_match(*args)

    orbit = dataclasses.replace(model.orbital, min_range_m=1.0)  # this 10 m pair counts as 'from orbit'
    with mock.patch.object(pipeline, "stereo_head_match", side_effect=head), mock.patch.object(model, "orbital", orbit):
        staged = StereoReconstructor(model, params).predict_scaled(left, right, cal, params)
    assert staged.network == "orbital" and staged.scale_path == "stereo_local (stereo head)"
    assert len(calls) == 1 and staged.head_depth is not None and staged.head_left_right_px is not None


def test_the_right_view_matched_on_the_same_features(shipped_head):
    """predict_disparities: the left disparity is predict_disparity's to the bit, and the right
    view's disparity of a plane at a known shift is that shift (within 0.2 px), so the
    left-right check of a consistent pair is near zero."""
    from lunar_recon.geometry.stereo import left_right_discrepancy
    from lunar_recon.models.stereo_head import predict_disparities

    left, right = shifted_pair(23.4)
    d, c, d_right = predict_disparities(shipped_head, left, right)
    d0, c0 = predict_disparity(shipped_head, left, right)
    np.testing.assert_array_equal(d, d0)
    np.testing.assert_array_equal(c, c0)
    inner = (slice(20, -20), slice(60, -40))
    assert np.median(np.abs(d_right[inner] - 23.4)) < 0.2
    check = left_right_discrepancy(d, d_right)
    assert np.nanmedian(check[inner]) < 0.1


def test_left_right_discrepancy_reads_the_right_view_at_the_match():
    from lunar_recon.geometry.stereo import left_right_discrepancy

    h, w = 8, 64
    left = np.full((h, w), 10.0, np.float32)
    right = np.full((h, w), 10.0, np.float32)
    right[:, 20:24] = 12.5  # a patch the right view matched wrongly: left pixels 30-33 land on it
    check = left_right_discrepancy(left, right)
    assert np.allclose(check[:, 30:34], 2.5) and np.allclose(check[:, 40:], 0.0)
    assert np.isnan(check[:, :9]).all()  # their match is left of the right image
    half = left.copy()
    half[:, 50] = 10.5  # a half-pixel step: read linearly between right pixels 39 and 40
    assert check[0, 50] == 0.0 and left_right_discrepancy(half, right)[0, 50] == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        left_right_discrepancy(left, right[:, :-1])


def test_the_left_right_check_widens_the_noise_model_where_the_views_disagree():
    """With the check, a matched pixel's sigma grows by sqrt(1 + (disagreement / floor)^2): the
    same staged prediction finished with a made-up disagreement of 3 floors in one block."""
    import dataclasses as dc

    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, disparity_precision

    model = load_stereo_model("default")
    left, right = shifted_pair(30.0, h=192, w=256)
    cal = _rig(300.0, 256, 192, 1.0)
    up = np.array([0.0, 0.0, -1.0])
    rec = StereoReconstructor(model, ReconstructionParams(scale_mode="stereo_local", compute_slope=False))
    staged = rec.predict_scaled(left, right, cal)
    assert staged.head_left_right_px is not None
    floor = disparity_precision(model, rec.params).floor_px
    made_up = np.zeros_like(staged.head_left_right_px)
    made_up[60:100, 120:180] = 3 * floor
    plain = rec.finish(dc.replace(staged, head_left_right_px=np.zeros_like(made_up)), cal, up, image_left=left)
    widened = rec.finish(dc.replace(staged, head_left_right_px=made_up), cal, up, image_left=left)
    ratio = widened.elevation_sigma / plain.elevation_sigma
    say = staged.matcher_say[60:100, 120:180]
    assert np.median(say) > 0.99
    np.testing.assert_allclose(np.median(ratio[60:100, 120:180]), np.sqrt(10.0), rtol=0.02)
    np.testing.assert_allclose(ratio[:40], 1.0)
    off = StereoReconstructor(model, ReconstructionParams(scale_mode="stereo_local", stereo_head_left_right_check=False))
    assert off.predict_scaled(left, right, cal).head_left_right_px is None


def test_left_right_disagreement_grows_when_the_rectification_drifts():
    """The node's health figure: the share of the head's matches whose left-right check
    disagrees by over 0.2 px is small on a sound pair and grows several-fold when the right
    view is 2 px out of row alignment; NaN without the check."""
    from lunar_recon.models.registry import load_stereo_model
    from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor, left_right_disagreement
    from lunar_recon.sim.scene import plan_scene, render_scene
    from lunar_recon.geometry.stereo import StereoCalibration

    fr = render_scene(plan_scene("lander", 3, width=256, height=256))
    rig = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    model = load_stereo_model("default")
    rec = StereoReconstructor(model, ReconstructionParams(compute_hazard=False, compute_slope=False))
    drifted = cv2.warpAffine(fr.right, np.float32([[1, 0, 0], [0, 1, 2.0]]), fr.right.shape[::-1], borderMode=cv2.BORDER_REFLECT)

    def health(r):
        return left_right_disagreement(r.head_left_right_px, r.matcher_say)

    sound = health(rec.reconstruct(fr.left, fr.right, rig, fr.up_left))
    misaligned = health(rec.reconstruct(fr.left, drifted, rig, fr.up_left))
    assert sound < 0.15 and misaligned > 2 * sound
    off = StereoReconstructor(model, ReconstructionParams(stereo_head_left_right_check=False, compute_hazard=False))
    assert np.isnan(health(off.reconstruct(fr.left, fr.right, rig, fr.up_left)))
