"""Shadows as a bound on the terrain (geometry.shadows) and their use in the hazard map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lunar_recon.geometry import HAZARD, SAFE, HazardParams, hazard_map
from lunar_recon.geometry.hazard import GridSpec
from lunar_recon.geometry.shadows import shadow_bounded_elevation, shadow_mask
from lunar_recon.sim.render import SunParams, shadow_map

CELL = 0.1


def crater_dem(n=240, diameter=8.0, depth=1.6):
    """A bowl crater (depth 0.2 x diameter) with a raised rim on flat ground, metres."""
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) * CELL
    r = np.hypot(x, y) / (diameter / 2)
    bowl = np.where(r < 1, depth * (r**2 - 1), 0.0)
    rim = 0.08 * diameter * np.exp(-(((r - 1) / 0.25) ** 2))
    return (bowl + rim).astype(np.float32)


def smoothed(z, sigma_cells=12.0):
    return cv2.GaussianBlur(z, (0, 0), sigma_cells, borderType=cv2.BORDER_REPLICATE)


def network_guess(z, shadowed, depth_kept=0.3):
    """What the pipeline makes of the crater: the lit terrain right (textured, matched), the
    shadowed part filled in, far too shallow (no texture, no match)."""
    return np.where(shadowed, np.maximum(z * depth_kept, z), z).astype(np.float32)


@pytest.mark.parametrize("azimuth", [0.0, 37.0, 135.0, 250.0])
def test_shadows_rendered_by_the_simulator_pull_a_smoothed_crater_toward_the_truth(azimuth):
    truth = crater_dem()
    sun = SunParams(elevation_deg=12.0, azimuth_deg=azimuth)
    shadowed = shadow_map(truth, CELL, sun) < 0.5  # the simulator's own (independent) shadow caster
    assert 0.02 < shadowed.mean() < 0.3
    guess = network_guess(truth, shadowed, 0.0)
    bounded = shadow_bounded_elevation(guess, shadowed, CELL, sun.direction())
    assert np.all(bounded <= guess + 1e-6)  # a bound only ever lowers
    assert np.array_equal(bounded[~shadowed], guess[~shadowed])  # lit cells untouched
    lowered = bounded < guess - 1e-6
    assert lowered.sum() > 0.2 * shadowed.sum()
    err_before = np.abs(guess - truth)[shadowed].mean()
    err_after = np.abs(bounded - truth)[shadowed].mean()
    assert err_after < 0.9 * err_before
    # A bound: never below the terrain (to within the grid's resampling), whatever the azimuth.
    assert (bounded - truth)[lowered].min() > -0.05
    # The truth itself is consistent with its shadows: (almost) nothing moves.
    assert np.abs(shadow_bounded_elevation(truth, shadowed, CELL, sun.direction()) - truth).max() < 0.05


def test_no_bound_without_a_usable_sun_or_shadows():
    z = smoothed(crater_dem())  # any surface
    shadowed = np.zeros(z.shape, bool)
    shadowed[100:140, 100:140] = True
    for sun in ([0.3, 0.2, -0.1], [0.0, 0.0, 1.0]):  # below the horizon; overhead
        assert np.array_equal(shadow_bounded_elevation(z, shadowed, CELL, np.array(sun)), z)
    assert np.array_equal(shadow_bounded_elevation(z, np.zeros(z.shape, bool), CELL, np.array([1.0, 0, 0.3])), z)
    with pytest.raises(ValueError, match="does not match"):
        shadow_bounded_elevation(z, shadowed[:10], CELL, np.array([1.0, 0, 0.3]))


def test_unknown_cells_stay_unknown_and_a_shadow_with_nothing_upsun_is_left_alone():
    z = np.zeros((50, 50), np.float32)
    z[:, 20:23] = np.nan  # a gap in the data
    shadowed = np.zeros(z.shape, bool)
    shadowed[:, :5] = True  # at the sun-side edge: no terrain upsun to bound it
    shadowed[:, 30:40] = True
    out = shadow_bounded_elevation(z, shadowed, CELL, np.array([-1.0, 0.0, 0.2]))  # sun toward -x
    assert np.isnan(out[:, 20:23]).all() and np.isfinite(out[:, 23:]).all()
    assert np.array_equal(out[:, :5], z[:, :5])
    # Flat ground in 'shadow' 1..10 cells past a lit cell: lowered toward the grazing ray (0.02 m
    # per cell), never below it, giving away two cells against resampling (and at the far edge).
    ray = -0.2 * CELL * np.arange(1, 11)
    assert np.all(out[25, 30:40] >= ray - 1e-5)
    assert np.all(out[25, 32:39] <= ray[:7] + 1e-5)


def test_shadow_mask_finds_the_dark_pixels():
    rng = np.random.default_rng(0)
    img = rng.uniform(120, 200, (60, 80)).astype(np.uint8)
    img[10:20, 30:50] = 3  # a shadow: only noise
    m = shadow_mask(img)
    assert m[10:20, 30:50].all() and m.sum() == 200
    colour = np.dstack([img] * 3)
    assert np.array_equal(shadow_mask(colour), m)
    assert np.array_equal(shadow_mask(img.astype(np.uint16) * 256), m)
    assert not shadow_mask(np.zeros((8, 8), np.uint8)).any()  # a black frame: no cue at all
    with pytest.raises(ValueError):
        shadow_mask(img, 0.0)
    with pytest.raises(ValueError):
        shadow_mask(np.zeros((2, 2, 2, 2)))


def _cloud(dem):
    """One point per DEM cell (x, y on the grid, z up)."""
    rows, cols = dem.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    pts = np.stack([(xx + 0.5) * CELL, (yy + 0.5) * CELL, dem], -1).reshape(-1, 3)
    return pts


def test_hazard_map_sees_a_flattened_boulder_through_its_shadow():
    n = 160
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) * CELL
    truth = np.sqrt(np.clip(0.8**2 - x**2 - y**2, 0, None)).astype(np.float32)  # a 0.8 m boulder
    sun = SunParams(elevation_deg=10.0, azimuth_deg=30.0)
    shadowed = shadow_map(truth, CELL, sun) < 0.5
    assert shadowed.sum() * CELL**2 > 3.0  # ~4.5 m of shadow behind it
    guess = truth * 0.2  # the network's boulder: a 0.16 m bump, below the 0.3 m limit
    grid = GridSpec((0.0, 0.0), CELL, truth.shape)
    params = HazardParams(resolution_m=CELL)
    up = np.array([0.0, 0.0, 1.0])
    true_map = hazard_map(_cloud(truth), up, params, grid=grid)
    plain = hazard_map(_cloud(guess), up, params, grid=grid)
    bounded = hazard_map(_cloud(guess), up, params, grid=grid, shadowed=shadowed.reshape(-1), sun=sun.direction())
    boulder = true_map.hazard == HAZARD
    assert boulder.any()
    assert (plain.hazard[boulder] == HAZARD).mean() < 0.05  # without the shadow: missed
    # With it: seen.  The relief goes into the shadow (the caster is still too low), so the
    # hazard cells found are shifted downsun, but they overlap the boulder's footprints.
    assert (bounded.hazard[boulder] == HAZARD).mean() > 0.1
    far = np.hypot(x, y) > 7.5  # farther than a footprint from boulder and shadow: still safe
    assert (bounded.hazard[far & (true_map.hazard == SAFE)] == SAFE).all()
    with pytest.raises(ValueError, match="flags"):
        hazard_map(_cloud(guess), up, params, grid=grid, shadowed=shadowed.reshape(-1)[:10], sun=sun.direction())
