"""Official image preprocessing, and predict() on numpy images of any size."""
from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from lunar_recon.models import load_images, load_model
from lunar_recon.models.preprocess import crop_box, preprocess_pil, to_pil_rgb


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


def test_square_images_crop_to_four_thirds_unless_square_ok():
    assert crop_box(512, 512, 512, square_ok=False) == (0, 64, 512, 448)
    assert crop_box(512, 512, 512, square_ok=True) == (0, 0, 512, 512)
    assert crop_box(512, 341, 512, square_ok=False) == (0, 2, 512, 338)  # spec example


def test_to_pil_rgb_encodings():
    mono16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 4096)
    assert np.asarray(to_pil_rgb(mono16))[..., 0].tolist() == (mono16 >> 8).astype(np.uint8).tolist()
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert to_pil_rgb(rgba).size == (4, 3)
    with pytest.raises(ValueError, match="shape"):
        to_pil_rgb(np.zeros((3, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_pil_rgb(np.zeros((3, 4), np.int32))


def test_predict_returns_left_frame_maps_at_input_resolution(fixtures_dir):
    model = load_model(fixtures_dir / "mast3r_tiny" / "checkpoint.pth")
    rng = np.random.default_rng(0)
    left = rng.integers(0, 255, (70, 100), dtype=np.uint8)
    right = rng.integers(0, 255, (70, 100), dtype=np.uint8)
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
    rng = np.random.default_rng(1)
    left = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    right = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    pred = model.predict(left, right, size=64)
    to_t = lambda a: (torch.from_numpy(a).float().permute(2, 0, 1)[None] / 255 - 0.5) / 0.5  # noqa: E731
    with torch.inference_mode():
        res1, res2 = model({"img": to_t(left)}, {"img": to_t(right)})
    assert np.allclose(pred.points_left, res1["pts3d"][0].numpy(), atol=1e-6)
    assert np.allclose(pred.points_right, res2["pts3d_in_other_view"][0].numpy(), atol=1e-6)
    assert np.allclose(pred.depth_left, res1["pts3d"][0, ..., 2].numpy(), atol=1e-6)
