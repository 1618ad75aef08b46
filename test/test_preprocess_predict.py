"""Official image preprocessing, and predict() on numpy images of any size."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from lunar_recon.models import load_images, load_model
from lunar_recon.models.preprocess import crop_box, lanczos_resize, preprocess_pil, to_pil_rgb


def test_sixty_size_cases(fixtures_dir):
    cases = json.loads((fixtures_dir / "preprocessing" / "preprocessing_cases.json").read_text())["cases"]
    assert len(cases) == 60
    for case in cases:
        w0, h0 = case["input_WxH"]
        img = PIL.Image.new("RGB", (w0, h0))
        tensor, info = preprocess_pil(img, case["size"], case["square_ok"])
        assert list(tensor.shape[2:]) == case["true_shape_HW"], case
        assert info.out_hw == tuple(case["true_shape_HW"])


def test_pixel_exact_cases(fixtures_dir):
    prep = fixtures_dir / "preprocessing"
    expected = torch.load(prep / "prep_outputs.pt", weights_only=True)
    meta = json.loads((prep / "preprocessing_cases.json").read_text())
    same_pillow = PIL.__version__ == meta["pillow"]
    for name, case in meta["pixel_cases"].items():
        path = prep / case["input"].split(" ")[0]
        views = load_images([path], size=case["size"])
        got = views[0]["img"]
        want = next(v for k, v in expected.items() if name in k and v.dtype == torch.float32)
        assert got.shape == want.shape
        tol = 0.0 if same_pillow else 2 / 255 + 1e-6  # one uint8 step across Pillow versions
        assert (got - want).abs().max().item() <= tol, name
        assert views[0]["true_shape"].tolist() == case["true_shape"]


@pytest.mark.parametrize(
    "shape, size",
    [
        ((384, 512), (256, 192)),  # the node's pairs at the network's 256
        ((1024, 1024), (256, 256)),  # a megapixel lander pair
        ((333, 517), (256, 165)),  # odd sizes: uneven taps at both ends
        ((2048, 1536), (192, 256)),
        ((100, 300), (256, 85)),  # longer one way, shorter the other
        ((40, 700), (256, 40)),  # one axis unchanged: that pass skipped, as PIL skips it
        ((5, 3), (2, 4)),
        ((7, 9, 3), (5, 4)),  # RGB: each band alone
    ],
)
def test_lanczos_resize_is_pils_lanczos_bit_for_bit(shape, size):
    rng = np.random.default_rng(sum(shape))
    images = [
        (rng.random(shape) * 256).astype(np.uint8),
        np.full(shape, 255, np.uint8),  # sums that overshoot 255: clipped as PIL clips
        (np.indices(shape).sum(axis=0) % 2 * 255).astype(np.uint8),  # a checkerboard: the largest negative lobes
    ]
    for image in images:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        want = np.asarray(PIL.Image.fromarray(image).resize(size, PIL.Image.LANCZOS))
        got = lanczos_resize(image, *size)
        assert got.shape == want.shape and np.array_equal(got, want)


def test_compile_kernels_readies_the_resampling_kernel():
    """The node calls it before its first pair."""
    from lunar_recon.models import preprocess

    assert preprocess.compile_kernels() >= 0 and preprocess._resample_rows.signatures


def test_lanczos_resize_rejects_what_it_cannot_resize():
    with pytest.raises(ValueError, match="8-bit"):
        lanczos_resize(np.zeros((4, 4), np.uint16), 2, 2)
    with pytest.raises(ValueError, match="non-empty"):
        lanczos_resize(np.zeros((0, 4), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="positive size"):
        lanczos_resize(np.zeros((4, 4), np.uint8), 0, 2)
    with pytest.raises(ValueError, match="mode"):
        preprocess_pil(PIL.Image.new("I;16", (4, 4)))


def test_square_images_crop_to_four_thirds_unless_square_ok():
    assert crop_box(512, 512, 512, square_ok=False) == (0, 64, 512, 448)
    assert crop_box(512, 512, 512, square_ok=True) == (0, 0, 512, 512)
    assert crop_box(512, 341, 512, square_ok=False) == (0, 2, 512, 338)  # spec example


def test_to_pil_rgb_encodings():
    mono16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 4096
    assert np.asarray(to_pil_rgb(mono16))[..., 0].tolist() == (mono16 >> 8).astype(np.uint8).tolist()
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert to_pil_rgb(rgba).size == (4, 3)
    with pytest.raises(ValueError, match="shape"):
        to_pil_rgb(np.zeros((3, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_pil_rgb(np.zeros((3, 4), np.int32))


def _random_pair(shape, seed):
    """A uint8 left/right pair of noise (the same draws as two successive integers() calls)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, shape, dtype=np.uint8), rng.integers(0, 255, shape, dtype=np.uint8)


def test_predict_returns_left_frame_maps_at_input_resolution(fixtures_dir):
    model = load_model(fixtures_dir / "mast3r_tiny" / "checkpoint.pth")
    left, right = _random_pair((70, 100), seed=0)
    pred = model.predict(left, right, size=64)
    assert pred.points_left.shape == (70, 100, 3) and pred.conf_left.shape == (70, 100)
    assert pred.points_right.shape == (70, 100, 3)
    assert pred.desc_left.shape == (70, 100, 24)
    assert pred.network_hw == (32, 64)  # 100x70 -> 64x45 -> crop to 64x32
    valid = np.isfinite(pred.points_left[..., 0])
    # the crop drops a few rows top and bottom: NaN there, confidence 0
    assert valid[35].all() and not valid[0].any() and (pred.conf_left[~valid] == 0).all()
    assert (pred.conf_left[valid] > 1).all()


def test_predict_at_network_resolution_equals_forward(fixtures_dir):
    model = load_model(fixtures_dir / "dust3r_tiny" / "checkpoint.pth")
    left, right = _random_pair((32, 64, 3), seed=1)
    pred = model.predict(left, right, size=64)
    to_t = lambda a: (torch.from_numpy(a).float().permute(2, 0, 1)[None] / 255 - 0.5) / 0.5  # noqa: E731
    with torch.inference_mode():
        res1, res2 = model({"img": to_t(left)}, {"img": to_t(right)})
    assert np.allclose(pred.points_left, res1["pts3d"][0].numpy(), atol=1e-6)
    assert np.allclose(pred.points_right, res2["pts3d_in_other_view"][0].numpy(), atol=1e-6)
    assert np.allclose(pred.depth_left, res1["pts3d"][0, ..., 2].numpy(), atol=1e-6)


@pytest.mark.parametrize("shape,size", [((384, 512), 256), ((97, 131), 64), ((300, 400), 512)])
def test_mono_fast_path_equals_rgb_conversion(shape, size):
    """Mono images are resampled as one band; the tensor must equal the RGB route's bit for bit."""
    from lunar_recon.models.preprocess import to_pil_image

    img = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    assert to_pil_image(img).mode == "L"
    mono, info_m = preprocess_pil(to_pil_image(img), size, True)
    rgb, info_c = preprocess_pil(to_pil_rgb(img), size, True)
    assert info_m == info_c and mono.shape == rgb.shape and mono.shape[1] == 3
    assert torch.equal(mono, rgb)


def test_pure_resize_fast_path_equals_grid_resampling():
    """512x384 -> 256x192 (no crop) takes the OpenCV fast path for predict's maps; it must
    sample exactly where the general grid path does, edges included, for any number of
    channels (MASt3R: 3 + 1 + 24)."""
    from lunar_recon.models.predict import _back_to_input, _to_input_grid
    from lunar_recon.models.preprocess import CropInfo

    res = {"pts3d": torch.randn(1, 12, 16, 3), "conf": torch.rand(1, 12, 16) + 1, "desc": torch.randn(1, 12, 16, 24)}
    x = torch.cat([res["pts3d"], res["conf"][..., None], res["desc"]], dim=-1).permute(0, 3, 1, 2)
    fill = torch.tensor([float("nan")] * 3 + [0.0] + [float("nan")] * 24)
    info = CropInfo((24, 32), (12, 16), 0, 0, (12, 16))
    general = _back_to_input(x, info, fill)
    assert general.shape == (1, 28, 24, 32)
    pts, conf, desc = _to_input_grid(res, ("pts3d", "conf", "desc"), info, (float("nan"), 0.0, float("nan")))
    assert pts.shape == (24, 32, 3) and conf.shape == (24, 32) and desc.shape == (24, 32, 24)
    assert np.allclose(pts, general[0, :3].permute(1, 2, 0).numpy(), atol=1e-5)
    assert np.allclose(conf, general[0, 3].numpy(), atol=1e-5)
    assert np.allclose(desc, general[0, 4:].permute(1, 2, 0).numpy(), atol=1e-5)
    # a crop offset must take the general path (NaN / 0 outside the network's view)
    cropped = _back_to_input(x, CropInfo((30, 32), (15, 16), 0, 1, (12, 16)), fill)
    assert torch.isnan(cropped[0, 0, 0]).all() and (cropped[0, 3, 0] == 0).all()


def test_right_view_can_be_skipped(fixtures_dir):
    """right_view=False drops the right head's outputs and leaves the left view unchanged."""
    model = load_model(fixtures_dir / "mast3r_tiny" / "checkpoint.pth")
    left, right = _random_pair((48, 64), seed=2)
    both = model.predict(left, right, size=64)
    only_left = model.predict(left, right, size=64, right_view=False)
    assert only_left.points_right is None and only_left.conf_right is None and only_left.desc_right is None
    assert np.array_equal(only_left.points_left, both.points_left, equal_nan=True)
    assert np.array_equal(only_left.desc_left, both.desc_left, equal_nan=True)
    with torch.inference_mode():
        img = torch.zeros(1, 3, 48, 64)
        assert model({"img": img}, {"img": img}, view2_head=False)[1] == {}


def test_rope_matches_the_rotate_half_formula():
    """The cached, sign-folded RoPE equals the textbook per-half rotate-half rotation, also
    when a second position grid of the same token count (transposed) follows."""
    from lunar_recon.models.blocks import RoPE2D, token_positions

    rope = RoPE2D(100.0)
    tokens = torch.randn(2, 3, 12, 16)

    def reference(t, pos):
        half = t.shape[-1] // 2
        inv = 1.0 / (100.0 ** (torch.arange(0, half, 2).float() / half))
        out = []
        for u, p in zip(t.split(half, dim=-1), (pos[..., 0], pos[..., 1])):
            f = p[:, None, :, None].float() * inv
            f = torch.cat((f, f), dim=-1)
            u1, u2 = u.chunk(2, dim=-1)
            out.append(u * f.cos() + torch.cat((-u2, u1), dim=-1) * f.sin())
        return torch.cat(out, dim=-1)

    for grid in ((3, 4), (4, 3), (3, 4)):
        pos = token_positions(2, *grid)
        assert torch.allclose(rope(tokens, pos), reference(tokens, pos), atol=1e-6)
        assert torch.allclose(rope(tokens, pos), reference(tokens, pos), atol=1e-6)  # cache hit
