"""Hazard map on analytic surfaces: planes, a crater bowl, a step, a boulder, bad clouds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lunar_recon.geometry import HAZARD, SAFE, UNKNOWN, HazardParams, hazard_map, quaternion_to_matrix
from lunar_recon.geometry.hazard import footprint_rectangles
from lunar_recon.geometry.metrics import hazard_metrics, slope_mae


def ground(n=150_000, half=12.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-half, half, (n, 2))


@pytest.mark.parametrize("tilt", [0, 5, 9, 11, 20, 40])
def test_tilted_planes_exact_slope_zero_roughness(tilt):
    xy = ground()
    z = np.tan(np.radians(tilt)) * (0.6 * xy[:, 0] + 0.8 * xy[:, 1])
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1])
    known = hm.hazard != UNKNOWN
    assert known.mean() > 0.8
    assert np.nanmax(np.abs(hm.slope_deg - tilt)) < 0.1
    assert np.nanmax(hm.roughness_m) < 1e-5  # float32 layers
    assert (hm.hazard[known] == (HAZARD if tilt > 10 else SAFE)).all()


def test_footprint_planes_match_least_squares_on_a_wide_steep_far_off_origin_field():
    """Footprint planes come from differences of raw moments (E[xx] - E[x]^2), which cancel:
    on a 120 m field 5 km from the origin with 10 m of curved relief and slopes up to ~35 deg,
    each footprint's slope and RMS residual must still match a least-squares fit to its cells
    (float32 moments missed by up to 1.6 cm and 0.013 deg here)."""
    from lunar_recon.geometry.hazard import elevation_grid

    rng = np.random.default_rng(21)
    xy = rng.uniform(-60, 60, (400_000, 2))
    z = 0.5 * xy[:, 0] + 5.0 * np.sin(xy[:, 1] / 6.0) + 0.002 * xy[:, 0] ** 2 + 1000.0
    pts = np.c_[xy + [5000.0, -3000.0], z]
    params = HazardParams(resolution_m=0.5)
    hm = hazard_map(pts, [0, 0, 1], params)
    cells = elevation_grid(pts, hm.grid)
    rects = footprint_rectangles(params.footprint_diameter_m / 2 / params.resolution_m, params.footprint_bands)
    known = np.argwhere(hm.hazard != UNKNOWN)
    assert len(known) > 0.8 * hm.hazard.size
    for r0, c0 in known[rng.choice(len(known), 25, replace=False)]:
        P = np.array(
            [
                (cells.x[r, c], cells.y[r, c], cells.z[r, c])
                for dy0, dy1, dx0, dx1 in rects
                for r in range(r0 + dy0, r0 + dy1 + 1)
                for c in range(c0 + dx0, c0 + dx1 + 1)
                if 0 <= r < hm.shape[0] and 0 <= c < hm.shape[1] and np.isfinite(cells.z[r, c])
            ]
        )
        A = np.c_[P[:, :2] - P[:, :2].mean(0), np.ones(len(P))]
        coef = np.linalg.lstsq(A, P[:, 2], rcond=None)[0]
        residual = P[:, 2] - A @ coef
        assert abs(hm.slope_deg[r0, c0] - np.degrees(np.arctan(np.hypot(*coef[:2])))) < 1e-3
        assert abs(hm.roughness_rms_m[r0, c0] - np.sqrt(np.mean(residual**2))) < 1e-4


def test_plane_in_an_arbitrary_frame_with_its_up_vector():
    xy = ground(seed=3)
    z = np.tan(np.radians(7)) * xy[:, 0]
    R = quaternion_to_matrix([0.3, -0.5, 0.2, 0.8])
    cloud = np.c_[xy, z] @ R.T  # the same plane seen in a rotated (e.g. camera) frame
    hm = hazard_map(cloud, up=R @ [0, 0, 1])
    assert np.nanmax(np.abs(hm.slope_deg - 7)) < 0.1


def test_up_plus_z_keeps_x_and_y():
    xy = ground(seed=4)
    hm = hazard_map(np.c_[xy, np.zeros(len(xy))], up=[0, 0, 1], params=HazardParams(resolution_m=0.25))
    assert np.allclose(hm.R_grid_from_input, np.eye(3))
    assert hm.origin[0] <= xy[:, 0].min() and hm.origin[1] <= xy[:, 1].min()
    assert hm.origin[0] + hm.shape[1] * hm.resolution >= xy[:, 0].max()
    row, col = hm.grid.cell_of(3.0, -2.0)
    assert hm.origin[0] + col * 0.25 <= 3.0 < hm.origin[0] + (col + 1) * 0.25
    assert hm.origin[1] + row * 0.25 <= -2.0 < hm.origin[1] + (row + 1) * 0.25


def test_spherical_crater_bowl_slope_profile():
    Rs = 60.0  # sphere radius; bowl rim at r = 20 m (slope up to asin(1/3) = 19.5 deg)
    xy = ground(n=400_000, half=22.0, seed=5)
    r = np.hypot(xy[:, 0], xy[:, 1])
    keep = r < 21
    xy, r = xy[keep], r[keep]
    z = Rs - np.sqrt(Rs**2 - r**2)
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1], params=HazardParams(footprint_diameter_m=2.0, resolution_m=0.2))
    X, Y = hm.grid.cell_centres()
    rc = np.hypot(X, Y)
    inside = (rc < 18) & np.isfinite(hm.slope_deg)
    analytic = np.degrees(np.arcsin(rc / Rs))
    assert inside.sum() > 1000
    assert np.max(np.abs(hm.slope_deg[inside] - analytic[inside])) < 0.3
    assert (hm.hazard[inside & (analytic > 11)] == HAZARD).all()
    assert (hm.hazard[inside & (analytic < 9)] == SAFE).all()


def test_step_of_half_a_metre_is_a_hazard_and_far_ground_is_safe():
    """A step inside the footprint stands above (or below) the site's plane by about half its
    height or more: every site whose footprint holds the step is a hazard."""
    xy = ground(seed=6)
    z = np.where(xy[:, 0] > 0, 0.8, 0.0)
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1])
    X, _ = hm.grid.cell_centres()
    known = hm.hazard != UNKNOWN
    assert (hm.hazard[known & (np.abs(X) < 1.0)] == HAZARD).all()
    assert (hm.hazard[known & (np.abs(X) > 2.5)] == SAFE).all()
    assert 0.3 < np.nanmax(hm.roughness_m) <= 0.8 + 1e-6


def test_boulder_of_40cm_flagged_surroundings_safe():
    xy = ground(seed=7)
    z = np.zeros(len(xy))
    r = np.hypot(xy[:, 0] - 2, xy[:, 1] - 1)
    z[r < 0.3] = 0.4 * np.sqrt(1 - (r[r < 0.3] / 0.3) ** 2)  # hemispherical-ish cap, 0.4 m tall
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1])
    assert hm.hazard[hm.grid.cell_of(2, 1)] == HAZARD
    assert hm.hazard[hm.grid.cell_of(2, 2.5)] == HAZARD  # the footprint centred here covers the rock
    X, Y = hm.grid.cell_centres()
    far = (np.hypot(X - 2, Y - 1) > 2.6) & (hm.hazard != UNKNOWN)
    assert far.sum() > 1000 and (hm.hazard[far] == SAFE).all()
    site = hm.landing_site
    assert site is not None and hm.hazard[site.row, site.col] == SAFE
    assert np.hypot(site.position_grid[0] - 2, site.position_grid[1] - 1) > 2.0
    assert 0 <= site.row < hm.shape[0] and 0 <= site.col < hm.shape[1]


def test_small_rock_is_not_a_hazard():
    xy = ground(seed=8)
    z = np.zeros(len(xy))
    z[np.hypot(xy[:, 0], xy[:, 1]) < 0.2] = 0.15
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1])
    assert hm.hazard[hm.grid.cell_of(0, 0)] == SAFE


def test_nans_holes_and_outliers():
    xy = ground(seed=9)
    z = np.zeros(len(xy))
    cloud = np.c_[xy, z]
    cloud[::50] = np.nan  # NaN rows are ignored
    hole = np.hypot(cloud[:, 0] + 5, cloud[:, 1] + 5) < 3.0
    cloud = cloud[~hole]  # no data: unknown, not safe
    cloud = np.vstack([cloud, [[4, 4, 60.0], [4.1, 4, -40.0]]])  # two wild points among many: the cell medians drop them
    hm = hazard_map(cloud, up=[0, 0, 1])
    assert hm.hazard[hm.grid.cell_of(-5, -5)] == UNKNOWN and hm.cost[hm.grid.cell_of(-5, -5)] == -1
    assert hm.hazard[hm.grid.cell_of(4, 4)] == SAFE
    assert hm.hazard[hm.grid.cell_of(-8, 8)] == SAFE
    assert np.isfinite(hm.cost).all() and hm.cost.min() >= -1 and hm.cost.max() <= 100
    with pytest.raises(ValueError, match="at least 3"):
        hazard_map(np.full((10, 3), np.nan), up=[0, 0, 1])


def test_organised_cloud_accepted_and_cost_values():
    """Cost is 100 x the hazard probability where there is data (0 or 100 for an exact cloud),
    -1 only without data."""
    xy = ground(n=200 * 200, seed=10)
    z = np.tan(np.radians(5)) * xy[:, 0] + np.where(np.hypot(xy[:, 0], xy[:, 1]) < 0.5, 1.0, 0.0)
    organised = np.c_[xy, z].reshape(200, 200, 3)
    hm = hazard_map(organised, up=[0, 0, 1])
    has_data = np.isfinite(hm.probability)
    assert (hm.cost[hm.hazard == SAFE] == 0).all() and (hm.cost[hm.hazard == HAZARD] == 100).all()
    assert (hm.hazard == SAFE).any() and (hm.hazard == HAZARD).any()
    assert (hm.cost[~has_data] == -1).all() and (hm.cost[has_data] >= 0).all()
    assert np.nanmax(np.abs(hm.slope_deg[hm.hazard == SAFE] - 5)) < 0.3


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="slope_max_deg"):
        hazard_map(np.zeros((10, 3)), [0, 0, 1], HazardParams(slope_max_deg=-1))
    with pytest.raises(ValueError, match="max_cells"):
        xy = ground(seed=11)
        hazard_map(np.c_[xy, np.zeros(len(xy))], [0, 0, 1], HazardParams(resolution_m=0.01, max_cells=1000))


def test_footprint_rectangles_approximate_the_disc():
    for r in (3.0, 13.3, 30.0):
        rects = footprint_rectangles(r, 3)
        cells = set()
        for dy0, dy1, dx0, dx1 in rects:
            for dy in range(dy0, dy1 + 1):
                for dx in range(dx0, dx1 + 1):
                    assert (dy, dx) not in cells  # disjoint
                    cells.add((dy, dx))
        assert abs(len(cells) / (np.pi * r * r) - 1) < 0.12


def test_hazard_metrics_on_shared_grid():
    xy = ground(seed=12)
    z = np.zeros(len(xy))
    z[np.hypot(xy[:, 0], xy[:, 1]) < 0.3] = 0.5
    gt = hazard_map(np.c_[xy, z], [0, 0, 1])
    perfect = hazard_metrics(gt, gt)
    assert perfect["f1"] == 1 and perfect["iou"] == 1 and perfect["precision"] == 1 and perfect["slope_mae_deg"] == 0
    assert perfect["landing_site_safe"] == 1
    flat = hazard_map(np.c_[xy, np.zeros(len(xy))], [0, 0, 1], grid=gt.grid)
    missed = hazard_metrics(flat, gt)
    assert missed["recall"] == 0 and missed["f1"] == 0
    assert slope_mae(flat, gt) > 0
    # Chance level: the F1 of an "everything is a hazard" map, whatever the prediction.
    everything = hazard_map(np.c_[xy, np.zeros(len(xy))], [0, 0, 1], grid=gt.grid)
    known = gt.hazard != -1
    everything.hazard[known] = 1
    assert hazard_metrics(everything, gt)["f1"] == pytest.approx(perfect["f1_chance"])
    assert missed["f1_chance"] == perfect["f1_chance"] and 0 < perfect["f1_chance"] < 1


# ---- noise-aware decisions (stereo clouds) ------------------------------------------------------
def _noisy_plane(sigma_m, seed=0, n=150_000):
    rng = np.random.default_rng(seed)
    xy = ground(n, seed=seed)
    z = rng.normal(0.0, sigma_m, len(xy))
    return np.c_[xy, z], np.full(len(xy), sigma_m)


def test_noise_model_certifies_nothing_where_a_limit_size_rock_could_hide():
    pts, sigma = _noisy_plane(0.15)  # a cell's height to ~0.1 m: a 0.3 m rock cannot be excluded
    aware = hazard_map(pts, up=[0, 0, 1], elevation_sigma=sigma)
    assert (aware.hazard == SAFE).mean() < 0.01
    assert aware.landing_site is None  # never a landing site on a maybe
    assert np.nanmedian(aware.elevation_sigma_m) == pytest.approx(0.15 / 2, rel=0.3)


def test_noise_model_keeps_resolvable_hazards_and_safe_ground():
    pts, sigma = _noisy_plane(0.01, seed=1)  # lidar-grade: decisions as without noise
    xy, z = pts[:, :2], pts[:, 2].copy()
    boulder = np.hypot(xy[:, 0] - 3, xy[:, 1] - 3) < 0.6
    z[boulder] += 1.0
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1], elevation_sigma=sigma)
    r, c = hm.grid.cell_of(3.0, 3.0)
    assert hm.hazard[r, c] == HAZARD
    r, c = hm.grid.cell_of(-6.0, -6.0)
    assert hm.hazard[r, c] == SAFE and hm.landing_site is not None


def test_a_large_boulder_is_seen_through_noise_and_only_footprints_that_reach_it_are_hazards():
    pts, sigma = _noisy_plane(0.02, seed=2)
    xy, z = pts[:, :2], pts[:, 2].copy()
    boulder = np.hypot(xy[:, 0], xy[:, 1]) < 1.0
    z[boulder] += 2.0
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1], elevation_sigma=sigma)
    r, c = hm.grid.cell_of(0.0, 0.0)
    assert hm.hazard[r, c] == HAZARD and hm.probability[r, c] > 0.99
    X, Y = hm.grid.cell_centres()
    reach = np.hypot(X, Y)
    assert (hm.hazard[(reach > 3.2) & (hm.hazard != UNKNOWN)] == SAFE).all()
    assert (hm.hazard[(reach < 2.5) & np.isfinite(hm.probability)] == HAZARD).all()


def test_cell_height_sigma_from_the_noise_model_and_the_median_elevation():
    """A cell's height is the median of its points; its sigma the noise model's over at most
    INDEPENDENT_POINTS_PER_CELL samples, plus the spread of its points."""
    from lunar_recon.geometry.hazard import INDEPENDENT_POINTS_PER_CELL, median_elevation_sigma

    res = 0.25
    c = (np.arange(-40, 40) + 0.5) * res
    x, y = np.meshgrid(c, c)
    xy = np.repeat(np.c_[x.ravel(), y.ravel()], 4, axis=0)  # 4 points in every cell
    xy += np.tile([[-0.05, -0.05], [0.05, -0.05], [-0.05, 0.05], [0.05, 0.05]], (x.size, 1))
    pts = np.c_[xy, np.zeros(len(xy))]
    params = HazardParams(resolution_m=res)
    hm = hazard_map(pts, up=[0, 0, 1], params=params, elevation_sigma=np.full(len(pts), 0.2))
    want = 0.2 / np.sqrt(min(4, INDEPENDENT_POINTS_PER_CELL))
    assert median_elevation_sigma(hm) == pytest.approx(want, rel=1e-5)
    exact = hazard_map(pts, up=[0, 0, 1], params=params)
    assert median_elevation_sigma(exact) == 0 and (exact.hazard == SAFE).any()
    assert set(np.unique(exact.probability[np.isfinite(exact.probability)])) <= {0.0, 1.0}
    half = np.zeros(hm.shape, bool)
    half[:, : hm.shape[1] // 2] = True
    sigma = np.where(xy[:, 0] < 0, 0.2, 0.4)  # noisier on the right half
    mixed = hazard_map(pts, up=[0, 0, 1], params=params, elevation_sigma=sigma)
    assert median_elevation_sigma(mixed, half) == pytest.approx(want, rel=1e-5)
    assert median_elevation_sigma(mixed, ~half) == pytest.approx(2 * want, rel=1e-5)


def test_zero_sigma_is_the_plain_map_and_sigma_length_is_checked():
    pts, _ = _noisy_plane(0.05, seed=3, n=40_000)
    plain = hazard_map(pts, up=[0, 0, 1])
    zero = hazard_map(pts, up=[0, 0, 1], elevation_sigma=np.zeros(len(pts)))
    np.testing.assert_array_equal(plain.hazard, zero.hazard)
    with pytest.raises(ValueError, match="elevation_sigma"):
        hazard_map(pts, up=[0, 0, 1], elevation_sigma=np.zeros(10))


def test_stereo_elevation_sigma_follows_the_precision_model():
    from lunar_recon.geometry.stereo import stereo_elevation_sigma

    # Nadir camera, point on the optical axis at 50 m: vertical sigma = Z^2 / (f B) sigma_d.
    pts = np.array([[0.0, 0.0, 50.0], [25.0, 0.0, 50.0]])
    s = stereo_elevation_sigma(pts, up=[0, 0, -1], fx=500.0, baseline_m=1.0, disparity_sigma_px=0.25)
    assert s[0] == pytest.approx(2500 / 500 * 0.25, rel=1e-5)
    assert s[1] == pytest.approx(s[0], rel=1e-5)  # off-axis: longer ray, smaller vertical share; equal for nadir
    fwd = stereo_elevation_sigma(pts, up=[0, -1, 0], fx=500.0, baseline_m=1.0, disparity_sigma_px=0.25)
    assert fwd[0] == pytest.approx(0.0, abs=1e-6)  # depth noise along a horizontal ray moves no height
    with pytest.raises(ValueError):
        stereo_elevation_sigma(pts, [0, 0, -1], fx=500.0, baseline_m=0.0, disparity_sigma_px=0.25)


def test_footprint_sums_and_site_relief_equal_brute_force_over_the_footprint():
    """Box sums over the footprint's nested boxes; each site's largest height above / depth
    below its own plane; and, with cell sigmas, the largest standardised exceedances: all equal
    a direct loop over every cell of the footprint's rectangles (cells off the grid count as 0
    in sums; they and cells without data are ignored in the relief)."""
    from lunar_recon.geometry.hazard import footprint_boxes, footprint_sum
    from lunar_recon.geometry.site_relief import site_relief

    rng = np.random.default_rng(0)
    img = rng.random((23, 31))
    gx, gy = rng.normal(0, 0.1, img.shape), rng.normal(0, 0.1, img.shape)
    holed = np.where(rng.random(img.shape) < 0.15, np.nan, img)
    sigma, centre, limit = rng.uniform(0.05, 0.5, img.shape), rng.normal(0, 0.2, img.shape), 0.3
    h, w = img.shape
    for radius, bands in ((5.3, 3), (2.0, 1), (13.3, 3), (8.7, 5)):
        rects = footprint_rectangles(radius, bands)
        boxes = footprint_boxes(rects)
        assert [b[1] for b in boxes] == sorted({b[1] for b in boxes}, reverse=True)  # widest first
        plain = site_relief(img, gx, gy, rects)
        scored = site_relief(holed, gx, gy, rects, sigma=sigma, centre=centre, limit=limit)
        want_sum = np.zeros_like(img)
        for y in range(h):
            for x in range(w):
                cells = [
                    (dy, dx)
                    for dy0, dy1, dx0, dx1 in rects
                    for dy in range(dy0, dy1 + 1)
                    for dx in range(dx0, dx1 + 1)
                    if 0 <= y + dy < h and 0 <= x + dx < w
                ]
                want_sum[y, x] = sum(img[y + dy, x + dx] for dy, dx in cells)
                t = [img[y + dy, x + dx] - dx * gx[y, x] - dy * gy[y, x] for dy, dx in cells]
                assert plain.highest[y, x] == pytest.approx(max(t), abs=1e-5)
                assert plain.lowest[y, x] == pytest.approx(min(t), abs=1e-5)
                seen = [(dy, dx) for dy, dx in cells if np.isfinite(holed[y + dy, x + dx])]
                if not seen:
                    assert scored.highest[y, x] == -np.inf and scored.above_score[y, x] == -np.inf
                    continue
                rise = np.array([holed[y + dy, x + dx] - dx * gx[y, x] - dy * gy[y, x] for dy, dx in seen])
                s = np.array([sigma[y + dy, x + dx] for dy, dx in seen])
                assert scored.highest[y, x] == pytest.approx(rise.max(), abs=1e-5)
                assert scored.lowest[y, x] == pytest.approx(rise.min(), abs=1e-5)
                assert scored.above_score[y, x] == pytest.approx(((rise - centre[y, x] - limit) / s).max(), abs=1e-4)
                assert scored.below_score[y, x] == pytest.approx(((centre[y, x] - rise - limit) / s).max(), abs=1e-4)
        got = footprint_sum(np.dstack([img, 2 * img, img**2]), boxes)
        assert np.allclose(got[..., 0], want_sum) and np.allclose(got[..., 1], 2 * want_sum), radius
        assert np.allclose(footprint_sum(img, boxes), want_sum), radius


def test_site_relief_over_a_site_mask_equals_the_full_pass_there():
    """Judging only some sites (the map's known ones) changes nothing for them; rows without
    one are not visited (their sites read as footprints without cells)."""
    from lunar_recon.geometry.site_relief import site_relief

    rng = np.random.default_rng(4)
    z = rng.normal(size=(40, 50))
    gx, gy, sigma, centre = (rng.normal(0, s, z.shape) for s in (0.05, 0.05, 0.1, 0.2))
    sigma = np.abs(sigma) + 0.01
    rects = footprint_rectangles(6.0, 3)
    sites = rng.random(z.shape) < 0.3
    sites[7] = False
    full = site_relief(z, gx, gy, rects, sigma=sigma, centre=centre, limit=0.3)
    part = site_relief(z, gx, gy, rects, sigma=sigma, centre=centre, limit=0.3, sites=sites)
    for name in ("highest", "lowest", "above_score", "below_score"):
        np.testing.assert_array_equal(getattr(part, name)[sites], getattr(full, name)[sites], err_msg=name)
    assert np.all(part.highest[7] == -np.inf) and np.all(part.above_score[7] == -np.inf)
    with pytest.raises(ValueError, match="site mask"):
        site_relief(z, gx, gy, rects, sites=sites[:, :10])


def test_weighted_site_planes_are_weighted_least_squares_with_their_covariance():
    """From inverse-variance-weighted sums a site's plane is the weighted least-squares fit and
    its slope sigma the fit's covariance: a few imprecise cells far off barely tilt it."""
    from lunar_recon.geometry.site_planes import site_planes

    rng = np.random.default_rng(6)
    x, y = rng.uniform(-2, 2, 300), rng.uniform(-2, 2, 300)
    sigma = np.where(rng.random(300) < 0.1, 1.0, 0.02)  # 10 % network-filled cells
    z = 0.05 * x - 0.02 * y + rng.normal(0, sigma) + np.where(sigma > 0.5, 1.5, 0.0)
    w = 1 / sigma**2
    sums = {
        k: np.array([[v]])
        for k, v in dict(
            n=w.sum(),
            x=(w * x).sum(),
            y=(w * y).sum(),
            z=(w * z).sum(),
            xx=(w * x * x).sum(),
            xy=(w * x * y).sum(),
            yy=(w * y * y).sum(),
            zz=(w * z * z).sum(),
            xz=(w * x * z).sum(),
            yz=(w * y * z).sum(),
            vv=float(len(x)),
        ).items()
    }
    planes = site_planes(sums, np.zeros(1), np.zeros(1), weighted=True)
    A = np.c_[x, y, np.ones_like(x)]
    normal = A.T @ (w[:, None] * A)
    a, b, c = np.linalg.solve(normal, A.T @ (w * z))
    assert planes.gradient_x[0, 0] == pytest.approx(a, abs=1e-9) and planes.gradient_y[0, 0] == pytest.approx(b, abs=1e-9)
    assert planes.centre[0, 0] == pytest.approx(c, abs=1e-9)
    assert abs(a - 0.05) < 0.01 and abs(b + 0.02) < 0.01  # the offset imprecise cells barely move it
    cov = np.linalg.inv(normal)
    grad = np.hypot(a, b)
    want = np.degrees(np.sqrt(cov[0, 0] + cov[1, 1]) / (1 + grad**2))
    assert planes.slope_sigma_deg[0, 0] == pytest.approx(want, rel=1e-6)
    assert planes.mean_variance[0, 0] == pytest.approx(len(x) / w.sum())  # the harmonic mean variance


def test_site_planes_reject_missing_or_misshaped_sums():
    from lunar_recon.geometry.site_planes import site_planes

    keys = ("n", "x", "y", "z", "xx", "xy", "yy", "zz", "xz", "yz", "vv")
    sums = {k: np.ones((3, 4)) for k in keys}
    assert site_planes(sums, np.zeros(4), np.zeros(3)).slope_deg.shape == (3, 4)
    with pytest.raises(ValueError, match="missing"):
        site_planes({k: v for k, v in sums.items() if k != "vv"}, np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="share the grid's shape"):
        site_planes(sums, np.zeros(5), np.zeros(3))


def test_site_relief_rejects_mismatched_inputs():
    from lunar_recon.geometry.site_relief import site_relief

    z = np.zeros((5, 6))
    rects = footprint_rectangles(2.0, 1)
    with pytest.raises(ValueError, match="shape"):
        site_relief(z, np.zeros((5, 5)), np.zeros((5, 6)), rects)
    with pytest.raises(ValueError, match="sigma per cell"):
        site_relief(z, z, z, rects, sigma=np.ones((5, 6)))
    with pytest.raises(ValueError, match="no cells"):
        site_relief(z, z, z, ())


def test_cell_ranks_give_each_cells_median_points_and_median_absolute_deviation():
    """Per-cell order statistics (a counting sort by cell, then each cell's points sorted)
    equal numpy's median and median absolute deviation, with ties, one-point and empty cells."""
    from lunar_recon.geometry.cell_statistics import cell_ranks

    rng = np.random.default_rng(5)
    flat = np.r_[rng.integers(0, 40, 600), 41]  # cell 41 holds one point; 40 and 42+ none
    z = rng.normal(size=flat.size)
    z[::9] = z[4]  # ties
    ranks = cell_ranks(flat, z, 50)
    assert list(ranks.cells) == sorted(set(flat.tolist()))
    for k, cell in enumerate(ranks.cells):
        mine = z[flat == cell]
        median = np.median(mine)
        assert ranks.count[k] == mine.size
        assert 0.5 * (z[ranks.median_low[k]] + z[ranks.median_high[k]]) == pytest.approx(median)
        assert flat[ranks.median_low[k]] == cell and flat[ranks.median_high[k]] == cell
        assert ranks.mad[k] == pytest.approx(np.median(np.abs(mine - median)))
    with pytest.raises(ValueError, match="lie in"):
        cell_ranks(np.array([0, 50]), np.zeros(2), 50)
    with pytest.raises(ValueError, match="one flat cell index per elevation"):
        cell_ranks(np.array([0, 1]), np.zeros(3), 50)
    assert ranks.value_median is None


def test_cell_ranks_median_of_a_second_value_per_cell():
    """With ``values``, each cell's median of them (its own, not the value at the elevation
    median's point), in sparse cells and crowded ones (each size's sort), the elevation
    ranks unchanged by it."""
    from lunar_recon.geometry.cell_statistics import INSERTION_SORT_MAX, cell_ranks

    rng = np.random.default_rng(6)
    # cells of ~10 points (sorted inline), one of 60 (an insertion sort), one past INSERTION_SORT_MAX, one of 1
    flat = np.r_[rng.integers(0, 30, 300), np.full(60, 35), np.full(3 * INSERTION_SORT_MAX, 31), 33]
    z, v = rng.normal(size=flat.size), rng.exponential(size=flat.size)
    plain, ranks = cell_ranks(flat, z, 40), cell_ranks(flat, z, 40, v)
    for k, cell in enumerate(ranks.cells):
        assert ranks.value_median[k] == pytest.approx(np.median(v[flat == cell]))
    for name in ("cells", "count", "median_low", "median_high", "quartile_low", "quartile_high", "mad"):
        assert np.array_equal(getattr(plain, name), getattr(ranks, name)), name
    with pytest.raises(ValueError, match="one value per elevation"):
        cell_ranks(flat, z, 40, v[:-1])


def test_cell_ranks_keep_tied_points_in_input_order_in_sparse_and_crowded_cells():
    """Tied elevations rank in the points' input order (a stable sort) in cells of every size:
    sorted inline, by the insertion sort, and past it by the merge sort of insertion-sorted
    runs: the median and quartile points are the ones a stable argsort names."""
    from lunar_recon.geometry.cell_statistics import INSERTION_SORT_MAX, cell_ranks

    rng = np.random.default_rng(9)
    sizes = (7, 40, INSERTION_SORT_MAX, INSERTION_SORT_MAX + 1, 5 * INSERTION_SORT_MAX + 3)
    flat = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    z = rng.integers(0, 4, flat.size).astype(float)  # four levels: ties everywhere
    ranks = cell_ranks(flat, z, len(sizes))
    for k, cell in enumerate(ranks.cells):
        mine = np.flatnonzero(flat == cell)
        stable = mine[np.argsort(z[mine], kind="stable")]
        m = mine.size
        assert ranks.median_low[k] == stable[(m - 1) // 2] and ranks.median_high[k] == stable[m // 2]
        assert ranks.quartile_low[k] == stable[(m - 1) // 4] and ranks.quartile_high[k] == stable[(m - 1) * 3 // 4]
        assert ranks.mad[k] == pytest.approx(np.median(np.abs(z[mine] - np.median(z[mine]))))


def test_cell_noise_is_its_points_median_so_a_few_unmatched_points_do_not_widen_it():
    """A cell of nine well-matched points and one a matcher never saw (its sigma 100x): its
    height is their median, and its noise variance theirs too -- the mean would be set by the
    one wild variance.  The descent map keeps the mean (robust_noise=False)."""
    from lunar_recon.geometry.hazard import GridSpec, elevation_grid

    pts = np.c_[np.full(10, 0.05), np.full(10, 0.05), np.r_[np.zeros(9), 0.5]]
    var = np.r_[np.full(9, 0.01**2), 1.0**2]
    grid = GridSpec((0.0, 0.0), 0.1, (1, 1))
    robust = elevation_grid(pts, grid, variance=var)
    mean = elevation_grid(pts, grid, variance=var, robust_noise=False)
    assert robust.z[0, 0] == 0.0  # the median, whatever the wild point
    assert robust.variance[0, 0] == pytest.approx(0.01**2 / 4)  # 4 independent samples, no spread (MAD 0)
    assert mean.variance[0, 0] == pytest.approx((9 * 0.01**2 + 1.0) / 10 / 4)


def test_a_cells_wild_points_do_not_widen_its_sigma():
    """A cell whose points are a tight cluster plus a few wild ones on one side: its median and
    its sigma (median absolute deviation) stay those of the cluster."""
    from lunar_recon.geometry.hazard import GridSpec, elevation_grid

    rng = np.random.default_rng(8)
    z = np.r_[rng.normal(0.0, 0.02, 11), np.full(5, 2.0)]  # 5 of 16 points 2 m up: past the upper quartile
    pts = np.c_[rng.uniform(0.01, 0.14, (16, 2)), z]
    cells = elevation_grid(pts, GridSpec((0.0, 0.0), 0.15, (1, 1)), variance=np.zeros(16))
    assert abs(cells.z[0, 0]) < 0.05
    assert 0 < np.sqrt(cells.variance[0, 0]) < 0.02


def test_planes_just_under_and_over_the_slope_limit():
    for tilt, want in ((9.9, SAFE), (10.1, HAZARD)):
        xy = ground(seed=11)
        hm = hazard_map(np.c_[xy, np.tan(np.radians(tilt)) * xy[:, 1]], up=[0, 0, 1])
        known = np.isfinite(hm.probability)
        assert known.mean() > 0.8 and (hm.hazard[known] == want).all(), tilt


def test_one_rock_makes_exactly_the_sites_whose_footprint_holds_it_hazardous():
    g = np.arange(0.0, 16.0, 0.05) + 0.025
    X, Y = np.meshgrid(g, g)
    z = np.zeros_like(X)
    rock = (np.abs(X - 8.0) < 0.15) & (np.abs(Y - 8.0) < 0.15)  # 0.3 m wide, 0.35 m tall: four cells
    z[rock] = 0.35
    hm = hazard_map(np.c_[X.ravel(), Y.ravel(), z.ravel()], up=[0, 0, 1])
    rock_cells = list(zip(*np.nonzero(hm.elevation_m > 0.3)))  # the rock at the grid's resolution
    assert 1 <= len(rock_cells) <= 9
    holds = np.zeros(hm.shape, bool)
    rows, cols = hm.shape
    rects = footprint_rectangles(hm.params.footprint_diameter_m / 2 / hm.resolution, hm.params.footprint_bands)
    offsets = [(dy, dx) for dy0, dy1, dx0, dx1 in rects for dy in range(dy0, dy1 + 1) for dx in range(dx0, dx1 + 1)]
    for dy, dx in offsets:
        for r, c in rock_cells:  # the site at (r - dy, c - dx) sees the rock at offset (dy, dx)
            if 0 <= r - dy < rows and 0 <= c - dx < cols:
                holds[r - dy, c - dx] = True
    known = np.isfinite(hm.probability)
    assert holds[known].any() and (~holds[known]).any()
    np.testing.assert_array_equal(hm.hazard[known] == HAZARD, holds[known])


def test_five_percent_of_points_two_metres_off_leave_a_flat_field_safe():
    rng = np.random.default_rng(12)
    xy = ground(n=400_000, seed=12)
    z = rng.normal(0.0, 0.01, len(xy))
    wild = rng.random(len(xy)) < 0.05
    z[wild] += rng.choice([-2.0, 2.0], wild.sum())
    hm = hazard_map(np.c_[xy, z], up=[0, 0, 1], elevation_sigma=np.full(len(xy), 0.01))
    known = np.isfinite(hm.probability)
    assert known.mean() > 0.8 and (hm.hazard[known] == SAFE).mean() > 0.99
    assert np.nanmax(hm.slope_deg) < 1.0


def test_probabilities_of_a_noisy_field_are_calibrated():
    """Hazard probabilities of noisy views of a random field of gentle slopes and rocks, scored
    against the same field's exact map: the expected calibration error stays small."""
    from lunar_recon.geometry.metrics import RELIABILITY_BINS, expected_calibration_error, reliability_counts

    rng = np.random.default_rng(13)
    total = np.zeros((3, RELIABILITY_BINS))
    for k in range(3):
        g = np.arange(-10.0, 10.0, 0.05) + 0.025
        X, Y = np.meshgrid(g, g)
        tilt = np.radians(rng.uniform(6, 14))
        z = np.tan(tilt) * X
        for _ in range(6):
            cx, cy, h = rng.uniform(-9, 9), rng.uniform(-9, 9), rng.uniform(0.1, 0.6)
            z += h * (np.hypot(X - cx, Y - cy) < 0.3)
        pts = np.c_[X.ravel(), Y.ravel(), z.ravel()]
        truth = hazard_map(pts, up=[0, 0, 1])
        sigma = 0.03
        noisy = pts + np.c_[np.zeros((len(pts), 2)), rng.normal(0, sigma, len(pts))]
        pred = hazard_map(noisy, up=[0, 0, 1], grid=truth.grid, elevation_sigma=np.full(len(pts), sigma))
        total += reliability_counts(pred, truth)
    assert expected_calibration_error(total) < 0.05


def test_the_ece_reads_the_fine_counts_in_ten_bins():
    """Counts are kept in fine bins (to fit thresholds on); the ECE and the diagram merge them
    into the usual ten: sites at P 0.02 and 0.08 that are hazards 2 % and 8 % of the time are
    calibrated in fine bins, and in one 0-0.1 bin too (5 % against 5 %)."""
    from lunar_recon.geometry.metrics import RELIABILITY_BINS, expected_calibration_error, merged_bins

    counts = np.zeros((3, RELIABILITY_BINS))
    for p, n in ((0.02, 1000), (0.08, 1000)):
        b = int(p * RELIABILITY_BINS)
        counts[:, b] = n, n * p, n * p
    assert merged_bins(counts).shape == (3, 10) and merged_bins(counts)[0, 0] == 2000
    assert expected_calibration_error(counts) == pytest.approx(0.0)
    counts[2, int(0.08 * RELIABILITY_BINS)] = 0  # the 8 % are never hazards: 0.05 vs 0.01 in the merged bin
    assert expected_calibration_error(counts) == pytest.approx(0.04)


def test_a_perfect_oracle_scores_f1_one_and_no_false_safe():
    xy = ground(seed=14)
    z = np.tan(np.radians(8)) * xy[:, 0] + np.where(np.hypot(xy[:, 0] - 2, xy[:, 1]) < 0.4, 0.5, 0.0)
    truth = hazard_map(np.c_[xy, z], up=[0, 0, 1])
    m = hazard_metrics(truth, truth)
    assert m["f1"] == 1 and m["false_safe"] == 0 and m["certified_safe"] == 1 and m["ece"] == 0
    assert m["landing_site_safe"] == 1 and m["landing_site_hazard_distance_m"] > 0


def test_a_lone_cell_standing_out_is_an_outlier_a_rock_of_two_cells_is_not():
    xy = ground(n=60_000, half=6.0, seed=23)
    z = np.zeros(len(xy))
    spike = (np.abs(xy[:, 0] - 0.075) < 0.07) & (np.abs(xy[:, 1] - 0.075) < 0.07)  # inside one 0.15 m cell
    z[spike] = 0.6
    rock = (np.abs(xy[:, 0] - 3.0) < 0.15) & (np.abs(xy[:, 1] - 3.0) < 0.15)  # 2 x 2 cells, 0.35 m tall
    z[rock] = 0.35
    pts = np.c_[xy, z]
    despiked = hazard_map(pts, [0, 0, 1])
    kept = hazard_map(pts, [0, 0, 1], HazardParams(despike=False))
    assert kept.hazard[kept.grid.cell_of(0.5, 0.5)] == HAZARD  # the outlier makes its neighbourhood hazardous
    assert despiked.hazard[despiked.grid.cell_of(0.5, 0.5)] == SAFE
    for hm in (despiked, kept):
        assert hm.hazard[hm.grid.cell_of(3.0, 4.5)] == HAZARD  # the rock is within 2 m: kept either way
    # cells coarser than half the roughness limit: a lone cell may be a whole rock, nothing is clipped
    coarse = HazardParams(resolution_m=0.2, roughness_max_m=0.3)
    np.testing.assert_array_equal(
        hazard_map(pts, [0, 0, 1], coarse).roughness_m,
        hazard_map(pts, [0, 0, 1], dataclasses.replace(coarse, despike=False)).roughness_m,
    )


def test_a_relief_prior_keeps_noisy_heights_from_being_called_rocks_but_not_certified_safe():
    """Flat ground, one half measured to 1 cm, the other to 30 cm per point (a network's guess
    where no right pixel matched).  On the measurements alone the largest of a footprint's
    ~560 noisy heights clears 0.3 m: the noisy half's probability is high and, without a prior,
    it is called hazardous.  Under a 0.1 m relief prior each noisy cell's posterior stays near
    the plane, so its call probability is low and nothing there is called a hazard -- but it is
    not certified either: certification stays on the measurements alone, which cannot rule a
    rock out.  A 0.35 m rock measured to 1 cm keeps its sites hazardous either way."""
    rng = np.random.default_rng(5)
    xy = ground(n=60_000, half=6.0, seed=5)
    sigma = np.where(xy[:, 0] < 0, 0.3, 0.01)
    z = rng.normal(0.0, sigma)
    z[(np.abs(xy[:, 0] - 3.0) < 0.15) & (np.abs(xy[:, 1] - 3.0) < 0.15)] += 0.35
    pts = np.c_[xy, z]
    maps = {
        prior: hazard_map(pts, [0, 0, 1], HazardParams(relief_prior_m=prior, hazard_above=0.5), elevation_sigma=sigma)
        for prior in (0.0, 0.1)
    }
    X, Y = maps[0.0].grid.cell_centres()
    noisy = (X < -2.5) & np.isfinite(maps[0.0].probability)
    assert noisy.sum() > 100
    assert maps[0.0].call_probability is None  # no prior: calls on the probability
    np.testing.assert_array_equal(maps[0.0].probability, maps[0.1].probability)
    assert np.median(maps[0.0].probability[noisy]) > 0.5
    assert (maps[0.0].hazard[noisy] == HAZARD).mean() > 0.5
    assert np.median(maps[0.1].call_probability[noisy]) < 0.05
    assert not (maps[0.1].hazard[noisy] == HAZARD).any()
    assert not (maps[0.1].hazard[noisy] == SAFE).any()  # unknown: neither a rock nor certified
    clean = (X > 2.2) & (X < 3.8) & (Y > -3.5) & (Y < 0.0) & np.isfinite(maps[0.1].probability)
    assert clean.sum() > 50 and (maps[0.1].hazard[clean] == SAFE).mean() > 0.9
    for hm in maps.values():
        assert hm.hazard[hm.grid.cell_of(3.0, 4.5)] == HAZARD  # the rock is within 2 m of this site
        # the published grid carries one value per site whose thresholds give the map's classes
        published = np.where(hm.cost >= 0, hm.cost / 100.0, np.nan)
        judged = (hm.cost >= 0) & (np.abs(published - 0.5) > 0.006) & (np.abs(published - 0.05) > 0.006)
        assert ((hm.hazard == HAZARD)[judged] == (published >= 0.5)[judged]).all()
        assert ((hm.hazard == SAFE)[judged] == (published < 0.05)[judged]).all()
    with pytest.raises(ValueError, match="relief_prior_m"):
        HazardParams(relief_prior_m=-0.1).validate()


def test_a_landing_site_keeps_its_margin_from_ground_not_certified_safe():
    import dataclasses

    from lunar_recon.geometry.hazard import choose_landing_site

    hm = hazard_map(np.c_[ground(n=20_000, half=4.0, seed=21), np.zeros(20_000)], up=[0, 0, 1])
    hm.hazard[:] = HAZARD
    hm.hazard[10:15, 10:15] = SAFE  # a 5 x 5-cell island: its centre is 3 cells (0.45 m) from a hazard
    with_margin = lambda m: dataclasses.replace(hm, params=dataclasses.replace(hm.params, landing_margin_m=m))  # noqa: E731
    assert choose_landing_site(with_margin(1.0)) is None
    site = choose_landing_site(with_margin(0.4))
    assert (site.row, site.col) == (12, 12) and site.clearance_m == pytest.approx(0.45, abs=1e-6)
    hm.hazard[20:41, 20:41] = SAFE  # 21 x 21 cells: 11 cells (1.65 m) of clearance at its centre
    site = choose_landing_site(with_margin(1.0))
    assert (site.row, site.col) == (30, 30) and site.clearance_m >= 1.0
    assert hazard_metrics(hm, hm)["landing_site_clearance_m"] == pytest.approx(hm.landing_site.clearance_m)


def test_a_landing_site_where_the_truth_has_no_data_is_not_judged():
    import copy

    truth = hazard_map(np.c_[ground(n=20_000, half=4.0, seed=22), np.zeros(20_000)], up=[0, 0, 1])
    pred = copy.deepcopy(truth)
    site = pred.landing_site
    truth.hazard[site.row, site.col] = UNKNOWN  # e.g. a fused map's site beyond this frame's true DEM
    m = hazard_metrics(pred, truth)
    assert m["landing_site_proposed"] == 1 and m["landing_site_judged"] == 0 and np.isnan(m["landing_site_safe"])
    truth.hazard[site.row, site.col] = HAZARD
    m = hazard_metrics(pred, truth)
    assert m["landing_site_judged"] == 1 and m["landing_site_safe"] == 0


def test_bad_hazard_parameters_fail_clearly():
    pts = np.c_[ground(n=1000, seed=15), np.zeros(1000)]
    with pytest.raises(ValueError, match="at least two cells"):
        hazard_map(pts, [0, 0, 1], HazardParams(footprint_diameter_m=0.2, resolution_m=0.15))
    with pytest.raises(ValueError, match="roughness_max_m"):
        hazard_map(pts, [0, 0, 1], HazardParams(roughness_max_m=-0.3))
    with pytest.raises(ValueError, match="safe_below"):
        hazard_map(pts, [0, 0, 1], HazardParams(safe_below=0.6, hazard_above=0.5))
    with pytest.raises(ValueError, match="safe_below"):
        hazard_map(pts, [0, 0, 1], HazardParams(hazard_above=-0.2))
    with pytest.raises(ValueError, match="safe_below"):
        hazard_map(pts, [0, 0, 1], HazardParams(safe_below=-0.01))
    with pytest.raises(ValueError, match="landing_margin_m"):
        hazard_map(pts, [0, 0, 1], HazardParams(landing_margin_m=-1.0))


def test_the_hazard_threshold_is_the_users_else_the_sources_else_one_half():
    from lunar_recon.geometry.hazard import hazard_threshold

    assert hazard_threshold(HazardParams()) == 0.5  # hazard_above 0 and no source threshold
    assert hazard_threshold(HazardParams(), 0.24) == 0.24  # the depth source's card
    assert hazard_threshold(HazardParams(), 0.01) == 0.05  # never under the safe threshold (0: 0.05)
    assert hazard_threshold(HazardParams(hazard_above=0.7), 0.24) == 0.7  # the user's wins
    # the map classifies by it: a site at P 0.3 is a hazard at threshold 0.24, unknown at 0.5
    xy = ground(n=40_000, half=5.0, seed=16)
    z = np.where(np.hypot(xy[:, 0], xy[:, 1]) < 0.4, 0.3, 0.0)  # a rock at the roughness limit: P ~ 0.5
    sigma = np.full(len(xy), 0.05)
    # on the probability itself (no relief prior: calls on the call probability otherwise)
    low = hazard_map(np.c_[xy, z], [0, 0, 1], HazardParams(hazard_above=0.24, relief_prior_m=0.0), elevation_sigma=sigma)
    high = hazard_map(np.c_[xy, z], [0, 0, 1], HazardParams(hazard_above=0.9, relief_prior_m=0.0), elevation_sigma=sigma)
    mid = (low.probability >= 0.24) & (low.probability < 0.9)
    assert mid.any()
    assert (low.hazard[mid] == HAZARD).all() and (high.hazard[mid] == UNKNOWN).all()


def test_the_safe_threshold_is_the_users_else_the_sources_else_five_percent():
    from lunar_recon.geometry.hazard import safe_threshold

    assert safe_threshold(HazardParams()) == 0.05  # safe_below 0 and no source threshold
    assert safe_threshold(HazardParams(), 0.018) == 0.018  # the depth source's card
    assert safe_threshold(HazardParams(safe_below=0.1), 0.018) == 0.1  # the user's wins
    # the map certifies by it: sites calibrated to P 0.02 are SAFE below 0.05, UNKNOWN below 0.01
    xy = ground(n=40_000, half=5.0, seed=17)
    pts = np.c_[xy, np.zeros(len(xy))]
    sigma, table = np.full(len(xy), 0.05), (0.02,) * 11
    loose = hazard_map(pts, [0, 0, 1], HazardParams(), elevation_sigma=sigma, calibration=table)
    strict = hazard_map(pts, [0, 0, 1], HazardParams(safe_below=0.01), elevation_sigma=sigma, calibration=table)
    known = np.isfinite(loose.probability)
    assert known.any() and np.allclose(loose.probability[known], 0.02)
    assert (loose.hazard[known] == SAFE).all() and (strict.hazard[known] == UNKNOWN).all()


def _frame_counts(frames: list[np.ndarray]) -> np.ndarray:
    """Per-frame reliability counts from (sites, hazards) per raw bin."""
    mid = (np.arange(10) + 0.5) / 10
    return np.stack([np.stack([f[0], f[0] * mid, f[1]]) for f in frames])


def test_the_safe_threshold_keeps_false_safe_within_budget_on_calibration_frames():
    """Forty frames, hazards among the sites 0.2 % in raw bins below 0.5, 8 % in [0.5, 0.6),
    20 % above: certifying up to the edge 0.5 keeps false safe at 0.2 %, up to 0.6 it reaches
    1.5 % (> 1 %). The fitted threshold is the table's value at 0.5."""
    from lunar_recon.geometry.hazard import calibrate_probability, fit_probability_calibration, fit_safe_threshold

    n = np.full(10, 1000.0)
    freq = np.r_[[0.002] * 5, 0.08, [0.2] * 4]
    frames = _frame_counts([(n, n * freq)] * 40)
    table = fit_probability_calibration(frames.sum(axis=0))
    safe = fit_safe_threshold(frames, table)
    assert safe == round(float(calibrate_probability(np.array(0.5), table)) + 1e-4, 4)
    with pytest.raises(ValueError, match="per-frame"):
        fit_safe_threshold(frames.sum(axis=0), table)


def test_the_safe_threshold_never_certifies_a_flat_run_of_the_table_it_did_not_judge():
    """A table flat at 0.01 from the raw probability 0.1 to 0.6 (pooled adjacent violators do
    that): any threshold above 0.01 certifies the whole run.  The run holds 2.5 % hazards, so
    no threshold above 0.01 keeps the budget, though the bins below the edge 0.2 alone would
    (0.25 %): the fit must not pick the edge 0.2 and certify the run with it."""
    from lunar_recon.geometry.hazard import calibrate_probability, fit_safe_threshold

    table = (0.001, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.2, 0.3, 0.5, 0.9)
    n = np.full(10, 1000.0)
    freq = np.r_[0.001, 0.004, [0.03] * 4, [0.3] * 4]
    frames = _frame_counts([(n, n * freq)] * 40)
    safe = fit_safe_threshold(frames, table)
    mid = (np.arange(10) + 0.5) / 10  # each bin's sites at its middle, through the table
    certified = calibrate_probability(mid, table) < safe
    assert (n * freq)[certified].sum() <= 0.01 * n[certified].sum()
    assert not certified[1:6].any()
    # where the run is as clean as the bins below it, the whole run is certified
    clean = _frame_counts([(n, n * np.r_[[0.002] * 6, [0.3] * 4])] * 40)
    assert (calibrate_probability(mid, table) < fit_safe_threshold(clean, table))[:6].all()


def test_the_best_f1_threshold_scores_what_the_map_calls_across_a_flat_run():
    """A table flat at 0.05 over the raw bins 0.5-0.8, then rising: the edge 0.8 maps to 0.05,
    so a map with that threshold calls the whole flat run (mostly safe sites) too.  Judged on
    the bins 0.8-1 alone it looks best; judged on what the map calls it is not, and the fit
    takes the edge 0.9."""
    from lunar_recon.geometry.hazard import fit_hazard_threshold

    table = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.05, 0.05, 0.05, 0.3, 0.9)
    n = np.array([1000, 1000, 1000, 1000, 1000, 3000, 3000, 3000, 600, 1000], float)
    freq = np.array([0.01] * 5 + [0.05] * 3 + [0.4, 0.5])
    mid = (np.arange(10) + 0.5) / 10
    counts = np.stack([n, n * mid, n * freq])
    assert fit_hazard_threshold(counts, int(round((n * freq).sum())), table) == 0.3


def test_the_safe_threshold_bounds_false_safe_over_frames_not_sites():
    """The same pooled counts, once spread evenly over 40 frames and once concentrated: 4 of the
    40 frames hold all the hazards of the low bins (a scene whose errors the others do not share).
    The pooled share is the same (0.8 % up to the edge 0.5), but resampling frames shows it could
    well exceed 1 % in another set of scenes: the concentrated case certifies less."""
    from lunar_recon.geometry.hazard import fit_probability_calibration, fit_safe_threshold

    n = np.full(10, 1000.0)
    freq = np.r_[[0.008] * 5, [0.3] * 5]
    even = _frame_counts([(n, n * freq)] * 40)
    lumpy_freq = [np.r_[[0.08] * 5, [0.3] * 5] if i < 4 else np.r_[[0.0] * 5, [0.3] * 5] for i in range(40)]
    lumpy = _frame_counts([(n, n * f) for f in lumpy_freq])
    assert np.allclose(even.sum(axis=0), lumpy.sum(axis=0))
    table = fit_probability_calibration(even.sum(axis=0))
    assert fit_safe_threshold(lumpy, table) < fit_safe_threshold(even, table)
    # and where no edge meets the budget nothing can be certified
    nothing = fit_safe_threshold(_frame_counts([(n, n * 0.05)] * 10), table)
    assert nothing <= table[0] + 1e-4


def test_the_safe_threshold_holds_the_budget_within_each_range_band():
    """Forty near frames (20 m) whose low bins hold 0.2 % hazards and forty far ones (80 m) whose
    low bins hold 1.2 %: pooled, certifying up to the edge 0.5 stays within 1 % (0.7 %), so one
    threshold lets the far band exceed its budget.  Per band, the near band keeps
    the edge 0.5 and the far band certifies nothing; a band with too few frames is left to the
    pooled threshold, and the lookup takes a frame's band by its range, only ever tightening
    the pooled threshold."""
    from lunar_recon.geometry.hazard import (
        fit_probability_calibration,
        fit_safe_threshold,
        fit_safe_thresholds_by_range,
        safe_threshold_at_range,
    )

    n = np.full(10, 1000.0)
    near = _frame_counts([(n, n * np.r_[[0.002] * 5, [0.3] * 5])] * 40)
    far = _frame_counts([(n, n * np.r_[[0.012] * 5, [0.3] * 5])] * 40)
    frames, ranges = np.concatenate([near, far]), np.r_[[20.0] * 40, [80.0] * 40]
    table = fit_probability_calibration(frames.sum(axis=0))
    pooled = fit_safe_threshold(frames, table)
    bands = fit_safe_thresholds_by_range(frames, ranges, table, (0.0, 30.0, 60.0, 100.0))
    assert [upper for upper, _ in bands] == [30.0, 100.0]  # no frame at 30-60 m
    (_, near_safe), (_, far_safe) = bands
    assert near_safe == fit_safe_threshold(near, table) and far_safe == fit_safe_threshold(far, table)
    assert far_safe < pooled <= near_safe
    assert far_safe <= table[0] + 1e-4  # the far band certifies nothing
    few = fit_safe_thresholds_by_range(frames[:43], ranges[:43], table, (0.0, 30.0, 60.0, 100.0))
    assert [upper for upper, _ in few] == [30.0]  # three far frames are not enough for a band
    assert safe_threshold_at_range(pooled, bands, 25.0) == pooled  # a band never loosens it
    assert safe_threshold_at_range(pooled, bands, 45.0) == far_safe  # the first band above it
    assert safe_threshold_at_range(pooled, bands, 150.0) == pooled
    assert safe_threshold_at_range(pooled, None, 25.0) == pooled


def test_a_model_states_its_safe_thresholds_by_range_for_each_kind_of_map():
    from types import SimpleNamespace

    from lunar_recon.pipeline import model_safe_below

    card = {
        "hazard_safe_below": 0.04,
        "hazard_safe_below_by_range": [[30.0, 0.05], [100.0, 0.001]],
        "descent_map_hazard_safe_below": 0.02,
    }
    model = SimpleNamespace(meta={"card": card})
    assert model_safe_below(model) == 0.04  # no range: the pooled one
    assert model_safe_below(model, range_m=20.0) == 0.04  # a band only tightens
    assert model_safe_below(model, range_m=80.0) == 0.001
    assert model_safe_below(model, range_m=500.0) == 0.04
    # a fused map's own pooled threshold never takes the single frame's bands
    assert model_safe_below(model, descent_map=True, range_m=80.0) == 0.02
    card["descent_map_hazard_safe_below_by_range"] = [[100.0, 0.003]]
    assert model_safe_below(model, descent_map=True, range_m=80.0) == 0.003


def test_a_descent_maps_safe_threshold_resamples_sequences(tmp_path):
    """Four calibration descents of thirty frames; one descent's terrain holds every hazard of
    the low bins, spread over its frames. Resampling frames sees 120 independent draws and
    certifies up to a higher edge; the descent map's frames are one evolving map, so its fit
    resamples the four sequences and certifies less. A single-frame map keeps resampling frames."""
    import json

    from lunar_recon.evaluation.runner import descent_map_label, write_calibration
    from lunar_recon.evaluation.scoring import FrameScore
    from lunar_recon.geometry.hazard import fit_probability_calibration, fit_safe_threshold

    n = np.full(10, 1000.0)
    lumpy = [np.r_[[0.025] * 5, [0.3] * 5] if q == 0 else np.r_[[0.0] * 5, [0.3] * 5] for q in range(4) for _ in range(30)]
    counts = _frame_counts([(n, n * f) for f in lumpy])
    scores = []
    for label in ("m", descent_map_label("m")):
        scores += [FrameScore(f"seq{i // 30}.bag", label, i % 30, i, 0.0, {}, counts[i]) for i in range(120)]
    write_calibration(tmp_path / "fit.json", scores, ["m"])
    fitted = json.loads((tmp_path / "fit.json").read_text())
    table = fit_probability_calibration(counts.sum(axis=0))
    by_frame = fit_safe_threshold(counts, table)
    by_sequence = fit_safe_threshold(counts.reshape(4, 30, 3, 10).sum(axis=1), table)
    assert by_sequence < by_frame
    assert fitted["m"]["hazard_safe_below"] == by_frame and fitted["m"]["safe_below_clusters"] == "frames"
    fused = fitted[descent_map_label("m")]
    assert fused["hazard_safe_below"] == by_sequence and fused["safe_below_clusters"] == "sequences"
    assert fused["frames"] == 120


def test_the_hazard_threshold_is_fitted_on_the_call_probabilities_where_the_maps_have_them(tmp_path):
    """A map with call probabilities (a relief prior) calls hazards on them: the fit writes
    their own table and takes the best-F1 threshold on their counts; the probability's table
    and the safe threshold stay on the probabilities."""
    import json

    from lunar_recon.evaluation.runner import write_calibration
    from lunar_recon.evaluation.scoring import FrameScore
    from lunar_recon.geometry.hazard import fit_hazard_threshold, fit_probability_calibration, fit_safe_threshold

    n = np.full(10, 1000.0)
    probability = _frame_counts([(n, n * np.r_[[0.002] * 5, [0.3] * 5])] * 20)
    calls = _frame_counts([(n, n * np.r_[[0.01] * 8, [0.9] * 2])] * 20)
    hazards = {"hazard_tp": 0, "hazard_fn": int(calls[0, 2].sum())}
    scores = [FrameScore("seq", "m", i, i, 0.0, dict(hazards), probability[i], calls[i]) for i in range(20)]
    write_calibration(tmp_path / "fit.json", scores, ["m"])
    fitted = json.loads((tmp_path / "fit.json").read_text())["m"]
    table, call_table = fit_probability_calibration(probability.sum(axis=0)), fit_probability_calibration(calls.sum(axis=0))
    assert fitted["hazard_calibration"] == list(table) and fitted["hazard_call_calibration"] == list(call_table)
    assert fitted["hazard_above"] == fit_hazard_threshold(calls.sum(axis=0), 20 * hazards["hazard_fn"], call_table)
    assert fitted["hazard_safe_below"] == fit_safe_threshold(probability, table)
    # without call probabilities: no call table, the threshold on the probabilities
    plain = [FrameScore("seq", "m", i, i, 0.0, dict(hazards), probability[i]) for i in range(20)]
    write_calibration(tmp_path / "plain.json", plain, ["m"])
    fitted = json.loads((tmp_path / "plain.json").read_text())["m"]
    assert "hazard_call_calibration" not in fitted
    assert fitted["hazard_above"] == fit_hazard_threshold(probability.sum(axis=0), 20 * hazards["hazard_fn"], table)


def test_the_best_f1_threshold_is_fitted_on_calibration_counts():
    """Reliability counts where only the top raw bin is often a hazard (38 %) and the rest seldom:
    calling the top bin alone a hazard has the best F1; the threshold is that bin's lower edge
    through the calibration table."""
    from lunar_recon.geometry.hazard import calibrate_probability, fit_hazard_threshold, fit_probability_calibration

    n = np.array([5000, 800, 500, 400, 300, 300, 300, 300, 400, 2000], float)
    freq = np.array([0.002, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.12, 0.38])
    mid = (np.arange(10) + 0.5) / 10
    counts = np.stack([n, n * mid, n * freq])
    table = fit_probability_calibration(counts)
    hazards = int(round((n * freq).sum())) + 40  # 40 more that the map left unknown
    threshold = fit_hazard_threshold(counts, hazards, table)
    assert threshold == pytest.approx(calibrate_probability(np.array(0.9), table), abs=1e-4)
    assert 0.05 < threshold < 0.5  # a calibrated map unsure of its hazards calls them below 0.5
    # where every bin above 0.5 is mostly hazards the threshold sits near 0.5
    freq2 = np.where(mid > 0.5, 0.9, 0.01)
    counts2 = np.stack([n, n * mid, n * freq2])
    table2 = fit_probability_calibration(counts2)
    t2 = fit_hazard_threshold(counts2, int((n * freq2).sum()), table2)
    assert t2 == pytest.approx(calibrate_probability(np.array(0.5), table2), abs=1e-4)


def _pose(yaw_deg, t):
    a = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    T[:3, 3] = t
    return T


def _view(T_world_from_cam, hole=None, seed=0):
    """A flat world with a 1 m boulder at (3, 3), seen from a camera whose z is up (so the
    hazard grid is the camera's x, y); ``hole``: radius around the boulder with no data."""
    xy = ground(seed=seed)
    z = np.where(np.hypot(xy[:, 0] - 3, xy[:, 1] - 3) < 0.6, 1.0, 0.0)
    world = np.c_[xy, z]
    if hole is not None:
        world = world[np.hypot(xy[:, 0] - 3, xy[:, 1] - 3) > hole]
    Ti = np.linalg.inv(T_world_from_cam)
    return hazard_map(world @ Ti[:3, :3].T + Ti[:3, 3], up=[0, 0, 1], params=HazardParams(resolution_m=0.25))


def _cell_of_world(hm, T_world_from_cam, xyz):
    Ti = np.linalg.inv(T_world_from_cam)
    p = Ti[:3, :3] @ np.asarray(xyz, float) + Ti[:3, 3]
    return hm.grid.cell_of(p[0], p[1])


def test_hazard_memory_carries_a_certain_hazard_into_unknown_cells_only():
    from lunar_recon.geometry.hazard_memory import HazardMemory

    T_a, T_b = _pose(0, [0, 0, 0]), _pose(30, [1.0, -2.0, 0.5])
    seen, hidden = _view(T_a), _view(T_b, hole=3.0, seed=1)  # the second view has no data on the boulder
    rc_a, rc_b = _cell_of_world(seen, T_a, [3, 3, 0]), _cell_of_world(hidden, T_b, [3, 3, 0])
    assert seen.hazard[rc_a] == HAZARD and hidden.hazard[rc_b] == UNKNOWN

    memory = HazardMemory(frames=3)
    assert memory.update(seen, T_a).hazard[rc_a] == HAZARD  # nothing to remember yet: the map as made
    merged = memory.update(hidden, T_b)
    assert merged.hazard[rc_b] == HAZARD and merged.cost[rc_b] == 100 and merged.extra["remembered_hazard"][rc_b]
    # only unknown cells change: what the current view certifies safe stays safe, the site stands
    changed = merged.hazard != hidden.hazard
    assert changed.any() and (hidden.hazard[changed] == UNKNOWN).all()
    assert np.array_equal(merged.hazard == SAFE, hidden.hazard == SAFE)
    assert (merged.landing_site.row, merged.landing_site.col) == (hidden.landing_site.row, hidden.landing_site.col)
    # every remembered cell is, in the world, where the first view saw a hazard (near the boulder)
    rows, cols = np.nonzero(merged.extra["remembered_hazard"])
    X, Y = merged.grid.cell_centres()
    world = np.c_[X[rows, cols], Y[rows, cols], np.zeros(len(rows))] @ T_b[:3, :3].T + T_b[:3, 3]
    assert all(seen.hazard[_cell_of_world(seen, T_a, w)] == HAZARD for w in world)
    assert np.hypot(world[:, 0] - 3, world[:, 1] - 3).max() < 4.0


def test_hazard_memory_forgets_after_its_frames_and_checks_poses():
    from lunar_recon.geometry.hazard_memory import HazardMemory

    T_a, T_b = _pose(0, [0, 0, 0]), _pose(-20, [0.5, 1.0, 0.0])
    seen, hidden = _view(T_a), _view(T_b, hole=3.0, seed=1)
    rc_b = _cell_of_world(hidden, T_b, [3, 3, 0])
    off = HazardMemory(frames=1)  # this map alone
    off.update(seen, T_a)
    assert off.update(hidden, T_b).hazard[rc_b] == UNKNOWN and len(off) == 0
    memory = HazardMemory(frames=2)  # the previous map only, as it was made
    memory.update(seen, T_a)
    assert memory.update(hidden, T_b).hazard[rc_b] == HAZARD
    assert memory.update(hidden, T_b).hazard[rc_b] == UNKNOWN  # the boulder's view has left the memory
    keyframes = HazardMemory(frames=3, keyframe_distance_m=5.0)  # a map enters only 5 m from the last
    keyframes.update(seen, T_a)
    keyframes.update(hidden, _pose(0, [3.0, 0, 0]))
    assert len(keyframes) == 1
    keyframes.update(hidden, _pose(0, [0, 6.0, 0]))
    assert len(keyframes) == 2
    with pytest.raises(ValueError, match="rotation"):
        memory.update(hidden, np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="4x4"):
        memory.update(hidden, np.eye(3))
    with pytest.raises(ValueError, match="memory_frames"):
        HazardParams(memory_frames=0).validate()


def test_compile_kernels_readies_every_compiled_kernel_of_the_map():
    """The node calls it before its first pair: afterwards every kernel the map runs is compiled."""
    from lunar_recon.geometry import cell_statistics, hazard, site_planes, site_relief
    from lunar_recon.geometry.hazard import compile_kernels

    assert compile_kernels() >= 0
    kernels = (
        site_relief._relief_rows,
        site_relief._score_rows,
        site_relief._padded_heights,
        site_relief._score_bases,
        site_planes._planes_rows,
        cell_statistics._bucket,
        cell_statistics._cell_ranks_range,
        hazard._cell_indices,
        hazard._representatives,
    )
    assert all(k.signatures for k in kernels), [k.__name__ for k in kernels if not k.signatures]


def test_overlay_tints_each_pixel_by_the_class_of_its_cell_and_marks_the_landing_site():
    """The overlay (stereo_node's hazard/overlay): a pixel whose point lies in a SAFE cell is
    blended toward green, in a HAZARD cell toward red, elsewhere (UNKNOWN, off the grid, no
    point) untouched; the landing site's pixels get a marker."""
    from lunar_recon.geometry.hazard import cells_of_points
    from lunar_recon.viz import HAZARD_BGR, SAFE_BGR, hazard_overlay

    xy = ground(n=160 * 200, seed=11)
    z = np.where(np.hypot(xy[:, 0] + 4, xy[:, 1]) < 1.5, 1.0, 0.0)  # a block: hazardous sites around it
    organised = np.c_[xy, z].reshape(160, 200, 3).astype(np.float32)
    organised[:10] = np.nan  # pixels without a point
    image = np.full((160, 200), 100, np.uint8)
    hm = hazard_map(organised, up=[0, 0, 1])
    hm.landing_site = None  # the tints alone first
    out = hazard_overlay(image, organised, hm)
    row, col, on = cells_of_points(hm, organised)
    cls = np.where(on, hm.hazard[row, col], UNKNOWN)
    for label, colour in ((SAFE, SAFE_BGR), (HAZARD, HAZARD_BGR)):
        assert (cls == label).sum() > 100
        expected = np.round(100 * 0.55 + colour * 0.45)
        assert np.abs(out[cls == label].astype(float) - expected).max() <= 1
    untouched = cls == UNKNOWN
    assert untouched[:10].all() and (out[untouched] == 100).all()

    marked = hazard_overlay(image, organised, hazard_map(organised, up=[0, 0, 1]))
    assert (marked != out).any(axis=2).sum() > 10  # the star
    with pytest.raises(ValueError, match="one 3-D point per pixel"):
        hazard_overlay(image, organised[:-1], hm)


def test_the_map_split_over_threads_is_the_same_map():
    """``threads`` splits the compiled passes (cell statistics by cells, planes and relief by
    grid rows, the footprint sums by moment group) over a pool; each range writes its own rows,
    so every layer is bit for bit the one-thread map, for a single frame with shadows and a
    fused descent map's cells, and at more threads than rows."""
    from lunar_recon.geometry.hazard import GridSpec, elevation_grid, hazard_map_from_cells

    rng = np.random.default_rng(21)
    xy = ground(n=60_000, half=8.0, seed=21)
    z = 0.1 * xy[:, 0] + np.where(np.hypot(xy[:, 0] - 2, xy[:, 1]) < 0.4, 0.5, 0.0) + rng.normal(0, 0.03, len(xy))
    sigma = rng.uniform(0.005, 0.05, len(xy))
    shadowed = xy[:, 1] > 5
    layers = ("elevation_m", "slope_deg", "roughness_m", "coverage", "hazard", "cost", "probability", "call_probability")
    one = hazard_map(np.c_[xy, z], [0, 0, 1], elevation_sigma=sigma, shadowed=shadowed, sun=[1.0, 0.0, 0.3])
    for threads in (2, 3, 64):
        many = hazard_map(np.c_[xy, z], [0, 0, 1], elevation_sigma=sigma, shadowed=shadowed, sun=[1.0, 0.0, 0.3], threads=threads)
        for name in layers:
            assert np.array_equal(getattr(one, name), getattr(many, name), equal_nan=True), (threads, name)
        assert np.isfinite(one.probability).mean() > 0.5 and (one.hazard == HAZARD).any() and (one.hazard == SAFE).any()
    grid = GridSpec((-8.0, -8.0), 0.2, (80, 80))
    cells = elevation_grid(np.c_[xy, z], grid, variance=sigma**2, robust_noise=False)
    assert np.array_equal(
        cells.variance,
        elevation_grid(np.c_[xy, z], grid, variance=sigma**2, robust_noise=False, threads=2).variance,
        equal_nan=True,
    )
    fused = [hazard_map_from_cells(cells, grid, np.eye(3), per_cell_sigma=False, threads=t) for t in (1, 2)]
    assert np.array_equal(fused[0].probability, fused[1].probability, equal_nan=True)
    for bad in (0, 65, 1.5):
        with pytest.raises(ValueError, match="map_threads"):
            hazard_map(np.c_[xy, z], [0, 0, 1], threads=bad)


def test_balanced_ranges_cover_every_item_once_with_equal_work():
    from lunar_recon.geometry.parallel import balanced_ranges, run_ranges

    work = np.r_[np.zeros(10), np.ones(50), np.full(10, 5.0)]
    for parts in (1, 2, 3, 7, 100):
        ranges = balanced_ranges(work, parts)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(work) and len(ranges) <= parts
        assert all(a < b and b == c for (a, b), (c, _) in zip(ranges, ranges[1:] + [(len(work), 0)]))
    halves = [work[a:b].sum() for a, b in balanced_ranges(work, 2)]
    assert abs(halves[0] - halves[1]) <= 5.0  # within one item's work
    assert balanced_ranges(np.zeros(6), 3) == [(0, 2), (2, 4), (4, 6)]  # no work: equal item counts
    assert balanced_ranges(np.r_[10.0, np.zeros(9)], 2) == [(0, 1), (1, 10)]  # all the work in one item
    assert balanced_ranges(np.zeros(0), 2) == [] and balanced_ranges(np.ones(1), 4) == [(0, 1)]
    seen = np.zeros(len(work), int)

    def mark(a: int, b: int) -> None:
        seen[a:b] += 1

    run_ranges(mark, balanced_ranges(work, 3))
    assert (seen == 1).all()

    def fail(a: int, b: int) -> None:
        raise RuntimeError(f"range {a}-{b}")

    with pytest.raises(RuntimeError, match="range"):
        run_ranges(fail, balanced_ranges(work, 2))
