"""The disparity precision of the hazard noise model: image noise, the matching bound, the fit."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import run_cli

from lunar_recon.geometry.stereo import (
    DisparityPrecision,
    fit_disparity_precision,
    image_noise_sigma,
    matching_crlb,
    stereo_elevation_sigma,
)


def _texture(shape=(192, 256), seed=0, contrast=40.0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), 2.0)
    return 128 + contrast * base / base.std()


def test_image_noise_estimate_recovers_added_noise_on_a_smooth_image():
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    smooth = 100 + 40 * np.sin(xx / 40) * np.cos(yy / 55)
    rng = np.random.default_rng(1)
    for sigma in (2.0, 5.0):
        noisy = smooth + rng.normal(0, sigma, smooth.shape).astype(np.float32)
        assert image_noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)
    with pytest.raises(ValueError, match="3x3"):
        image_noise_sigma(np.zeros((2, 5)))


def test_matching_bound_is_wider_on_bland_ground_than_on_texture():
    rng = np.random.default_rng(2)
    img = _texture() + rng.normal(0, 1.5, (192, 256))
    img[:, :128] = 128 + rng.normal(0, 1.5, (192, 128))  # left half: noise only, no texture
    crlb = matching_crlb(np.clip(img, 0, 255).astype(np.uint8))
    assert crlb.shape == (192, 256) and np.isfinite(crlb).all()
    assert np.median(crlb[:, 20:100]) > 4 * np.median(crlb[:, 150:240])


def test_fit_recovers_floor_and_gain_and_falls_back_to_one_sigma_without_texture_dependence():
    rng = np.random.default_rng(3)
    crlb = rng.uniform(0.01, 0.5, 200_000)
    sigma = np.sqrt(0.06**2 + (0.7 * crlb) ** 2)
    fitted = fit_disparity_precision(np.abs(rng.normal(0, sigma)), crlb)
    assert fitted.floor_px == pytest.approx(0.06, abs=0.01) and fitted.texture_gain == pytest.approx(0.7, rel=0.05)
    flat = fit_disparity_precision(np.abs(rng.normal(0, 0.1, crlb.size)), crlb)
    assert flat.texture_gain < 0.05 and flat.floor_px == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="matched pixels"):
        fit_disparity_precision(np.ones(10), np.ones(10))


def test_precision_map_widens_the_elevation_sigma_where_the_image_is_bland():
    rng = np.random.default_rng(4)
    img = _texture(seed=4) + rng.normal(0, 1.5, (192, 256))
    img[:, :128] = 128 + rng.normal(0, 1.5, (192, 128))
    img = np.clip(img, 0, 255).astype(np.uint8)
    one = DisparityPrecision(0.08)
    assert one.sigma_map(img) == 0.08  # no texture term: one sigma everywhere
    textured = DisparityPrecision(0.08, 0.7)
    sigma_d = textured.sigma_map(img, (96, 128))  # resized to the points' grid
    assert sigma_d.shape == (96, 128) and sigma_d.min() >= 0.08 - 1e-6
    points = np.dstack([np.zeros((96, 128)), np.zeros((96, 128)), np.full((96, 128), 20.0)]).astype(np.float32)
    elev = stereo_elevation_sigma(points, np.array([0, 0, -1.0]), 600.0, 1.5, sigma_d)
    assert np.median(elev[:, 10:50]) > 2 * np.median(elev[:, 80:120])
    assert np.allclose(elev[:, 80:120].min(), 20.0**2 * 0.08 / 900, rtol=0.2)
    for bad in (dict(floor_px=-0.1), dict(floor_px=0.1, texture_gain=-1), dict(floor_px=0.1, window=4)):
        with pytest.raises(ValueError):
            DisparityPrecision(**bad)


def test_pipeline_takes_the_cards_texture_gain():
    from lunar_recon.pipeline import ReconstructionParams, disparity_precision

    class Model:
        meta = {"card": {"disparity_sigma_px": 0.07, "disparity_sigma_texture_gain": 0.6}}

    assert disparity_precision(Model(), ReconstructionParams()) == DisparityPrecision(0.07, 0.6)
    assert disparity_precision(Model(), ReconstructionParams(disparity_sigma_px=0.2)) == DisparityPrecision(0.2)


def test_evaluate_bag_fits_a_disparity_precision(tmp_path):
    from lunar_recon.data.rosbag import write_stereo_bag
    from lunar_recon.sim.sequence import render_sequence

    bag = tmp_path / "cal"
    write_stereo_bag(
        bag, render_sequence("descent", 2, seed=5, width=256, height=192, start_altitude_m=40, end_altitude_m=35), rate_hz=2.0
    )
    out = tmp_path / "fit"
    res = run_cli(
        "evaluate-bag", bag, "--model", "sgbm", "--no-references", "--fit-disparity-precision", "--figures", "0", "--out", out
    )
    assert res.returncode == 0, res.stderr
    fitted = json.loads((out / "disparity_precision.json").read_text())["sgbm"]
    assert fitted["frames"] == 2 and fitted["pixels"] >= 2400
    sigma = json.loads((out / "metrics.json").read_text())["summary"]["sgbm"]["disparity_sigma_px"]
    assert 0 <= fitted["disparity_sigma_px"] <= 2 * sigma and fitted["disparity_sigma_texture_gain"] >= 0
