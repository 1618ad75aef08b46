"""The classical baseline on rendered pairs, and the reconstruction pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from lunar_recon.geometry.stereo import SGBMParams, sgbm_disparity, sgbm_depth_unrectified
from lunar_recon.geometry.stereo import StereoCalibration
from lunar_recon.models.registry import RangeSelectedNetwork
from lunar_recon.models.sgbm import SGBMModel
from lunar_recon.pipeline import ReconstructionParams, StereoReconstructor
from lunar_recon.sim.scene import plan_scene, render_scene


@pytest.fixture(scope="module")
def rendered():
    plan = plan_scene("descent", 21, width=320, height=256, altitude_m=40, off_nadir_deg=15, baseline_m=2.0, sun_elevation_deg=25)
    return render_scene(plan)


def test_sgbm_subpixel_disparity_on_rendered_terrain(rendered):
    fr = rendered
    gt_disp = fr.K_left.fx * fr.baseline_m / fr.depth_left
    disp = sgbm_disparity(fr.left, fr.right, SGBMParams(num_disparities=64 + 16 * int(np.nanmax(gt_disp) // 16)))
    both = np.isfinite(disp) & np.isfinite(gt_disp)
    both[:, :80] = False  # left border: no match possible
    assert both.mean() > 0.5
    err = np.abs(disp[both] - gt_disp[both])
    assert np.median(err) < 0.5 and np.mean(err < 1.0) > 0.85


def _locking_bias(disp, gt_disp):
    """Largest |median error| over eight bins of the true disparity's fractional part, and the
    robust (MAD) sigma of the error."""
    both = np.isfinite(disp) & np.isfinite(gt_disp)
    both[:, :80] = False
    err, frac = disp[both] - gt_disp[both], gt_disp[both] % 1.0
    bias = max(abs(np.median(err[(frac >= a) & (frac < a + 0.125)])) for a in np.arange(0, 1, 0.125))
    return bias, 1.4826 * np.median(np.abs(err - np.median(err)))


def test_sgbm_half_pixel_pass_cancels_pixel_locking(rendered):
    """OpenCV's parabola fit pulls disparities toward whole pixels; a second pass with the views
    half a pixel apart flips that bias, and the average keeps little of it."""
    fr = rendered
    gt_disp = fr.K_left.fx * fr.baseline_m / fr.depth_left
    nd = 64 + 16 * int(np.nanmax(gt_disp) // 16)
    bias1, sigma1 = _locking_bias(sgbm_disparity(fr.left, fr.right, SGBMParams(nd, subpixel_passes=1)), gt_disp)
    bias2, sigma2 = _locking_bias(sgbm_disparity(fr.left, fr.right, SGBMParams(nd, subpixel_passes=2)), gt_disp)
    assert bias1 > 0.1  # the effect is there to correct
    assert bias2 < 0.6 * bias1 and sigma2 < 0.75 * sigma1
    with pytest.raises(ValueError, match="subpixel_passes"):
        sgbm_disparity(fr.left, fr.right, SGBMParams(nd, subpixel_passes=0))


def test_sgbm_wls_filter_is_dense_and_sub_pixel(rendered, monkeypatch):
    """The optional WLS post-filter (opencv-contrib's ximgproc), as the model 'sgbm-wls': a
    disparity on every pixel right of the search band, sub-pixel against the truth; without
    ximgproc it says what is missing."""
    import cv2

    from lunar_recon.models.registry import load_stereo_model, model_label

    fr = rendered
    gt_disp = fr.K_left.fx * fr.baseline_m / fr.depth_left
    nd = 64 + 16 * int(np.nanmax(gt_disp) // 16)
    model = load_stereo_model("sgbm-wls")
    assert isinstance(model, SGBMModel) and model.params.wls_lambda > 0 and model_label("sgbm-wls") == "sgbm-wls"
    params = SGBMParams(nd, wls_lambda=model.params.wls_lambda)
    disp = sgbm_disparity(fr.left, fr.right, params)
    plain = sgbm_disparity(fr.left, fr.right, SGBMParams(nd))
    valid = np.isfinite(gt_disp)
    valid[:, :nd] = False
    assert np.isfinite(disp[valid]).all()
    err = np.abs(disp[valid] - gt_disp[valid])
    assert np.median(err) < 0.5 and np.mean(err < 1.0) > 0.95
    assert np.nanmax(np.abs(disp - plain)) > 0.05  # the filter did run
    monkeypatch.delattr(cv2, "ximgproc")
    with pytest.raises(RuntimeError, match="opencv-contrib"):
        sgbm_disparity(fr.left, fr.right, params)


def test_sgbm_model_through_the_pipeline_is_metric(rendered):
    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    rec = StereoReconstructor(SGBMModel(SGBMParams(num_disparities=128)), ReconstructionParams())
    out = rec.reconstruct(fr.left, fr.right, calib, fr.up_left)
    assert out.depth.shape == fr.depth_left.shape and out.scale == 1.0
    both = np.isfinite(out.depth) & np.isfinite(fr.depth_left)
    rel = np.abs(out.depth[both] - fr.depth_left[both]) / fr.depth_left[both]
    assert np.median(rel) < 0.02
    assert out.slope_deg is not None and out.hazard is not None
    assert out.hazard.landing_site is None or out.hazard.hazard[out.hazard.landing_site.row, out.hazard.landing_site.col] == 0


def test_a_pair_beyond_the_range_of_a_models_orbital_network_is_made_by_it(rendered):
    """A model with a range-selected second network (the shipped default: its orbital one)
    hands it the pairs whose metric median range is beyond its range, keeps the others, and
    says which made the reconstruction; switched off, the primary makes every pair."""
    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    primary = SGBMModel(SGBMParams(num_disparities=128))
    orbital = SGBMModel(SGBMParams(num_disparities=128, block_size=9))
    primary.orbital = RangeSelectedNetwork(orbital, 1.0)
    calls = []
    orbital.predict = lambda *a, **k: calls.append(1) or SGBMModel.predict(orbital, *a, **k)
    median_range = float(np.nanmedian(fr.depth_left))  # ~40 m
    for beyond, params, expected in (
        (2 * median_range, ReconstructionParams(), "primary"),
        (0.5 * median_range, ReconstructionParams(), "orbital"),
        (0.5 * median_range, ReconstructionParams(range_selected_network=False), "primary"),
    ):
        primary.orbital = RangeSelectedNetwork(orbital, beyond)
        calls.clear()
        out = StereoReconstructor(primary, params).reconstruct(fr.left, fr.right, calib, fr.up_left)
        assert out.network == expected and len(calls) == (expected == "orbital")
        both = np.isfinite(out.depth) & np.isfinite(fr.depth_left)
        assert np.median(np.abs(out.depth[both] / fr.depth_left[both] - 1)) < 0.02


def test_the_map_calls_hazards_at_the_models_own_threshold_unless_the_user_sets_one(rendered):
    """hazard.hazard_above and hazard.safe_below 0 (the defaults): a site is a hazard, and
    certified safe, at the model's card thresholds (fitted on calibration data with its tables);
    a threshold the user sets wins.  The hazard threshold is on the call probability (the relief
    prior's), the safe one on the probability; a model calibrated without call probabilities
    calls hazards on its probability, as it was fitted."""
    from lunar_recon.geometry import HAZARD, SAFE
    from lunar_recon.geometry.hazard import HazardParams

    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    model = SGBMModel(SGBMParams(num_disparities=128))
    model.hazard_above, model.hazard_safe_below = 0.13, 0.09
    model.hazard_safe_below_by_range = ((1e5, 0.5),)  # a band never loosens the pooled threshold
    cases = (
        (ReconstructionParams(), 0.09, 0.13),
        (ReconstructionParams(hazard=HazardParams(safe_below=0.04, hazard_above=0.6)), 0.04, 0.6),
    )
    for params, safe, threshold in cases:
        hz = StereoReconstructor(model, params).reconstruct(fr.left, fr.right, calib, fr.up_left).hazard
        known = np.isfinite(hz.probability)
        calls = hz.call_probability
        assert calls is not None and np.array_equal(np.isfinite(calls), known)
        assert ((hz.hazard == HAZARD) == (known & (calls >= threshold))).all()
        assert ((hz.hazard == SAFE) == (known & (hz.probability < safe) & ~(calls >= threshold))).all()
        assert hz.params.hazard_above == threshold and hz.params.safe_below == safe
    assert ((calls >= 0.13) & (calls < 0.6)).any()  # the two thresholds differ here
    assert ((hz.probability >= 0.04) & (hz.probability < 0.09)).any()
    model.hazard_call_calibration = None  # calibrated on its probabilities alone
    hz = StereoReconstructor(model, ReconstructionParams()).reconstruct(fr.left, fr.right, calib, fr.up_left).hazard
    known = np.isfinite(hz.probability)
    assert hz.call_probability is None and hz.params.relief_prior_m == 0
    assert ((hz.hazard == HAZARD) == (known & (hz.probability >= 0.13))).all()
    # a user's hazard threshold below the model's safe one caps it (safe <= hazard)
    capped = ReconstructionParams(hazard=HazardParams(hazard_above=0.05))
    hz = StereoReconstructor(model, capped).reconstruct(fr.left, fr.right, calib, fr.up_left).hazard
    assert hz.params.safe_below == 0.05 and hz.params.hazard_above == 0.05


def test_sgbm_on_unrectified_stereolunar_pair(stereolunar_dir):
    from lunar_recon.data.dataset import StereoDataset

    s = StereoDataset(stereolunar_dir / "Nadir_baseline_sample")[0]
    depth = sgbm_depth_unrectified(
        s.left, s.right, s.K_left, s.K_right, s.T_left_from_right, SGBMParams(num_disparities=256, block_size=7)
    )
    both = np.isfinite(depth) & np.isfinite(s.depth_left)
    assert both.mean() > 0.2
    rel = np.abs(depth[both] - s.depth_left[both]) / s.depth_left[both]
    assert np.median(rel) < 0.02


@pytest.mark.parametrize("mode", ["stereo", "stereo_local"])
def test_rotated_stereolunar_rig_takes_its_scale_from_triangulated_matches(stereolunar_dir, mode):
    """An oblique StereoLunar pair (views rotated ~18 deg: dense matching finds nothing): a
    'network' with the true shape at a third of the scale is made metric from sparse SIFT
    matches triangulated with the known poses, and the reconstruction says so."""
    from lunar_recon.data.dataset import StereoDataset
    from lunar_recon.geometry.camera import depth_to_points
    from lunar_recon.models.predict import PairPrediction

    s = StereoDataset(stereolunar_dir / "Oblique_baseline_sample")[4]
    calib = StereoCalibration(s.K_left, s.K_right, s.T_left_from_right)
    assert not calib.is_rectified

    class TrueShape:
        def predict(self, left, right, size=512, right_view=True):
            conf = np.where(np.isfinite(s.depth_left), 5.0, 0).astype(np.float32)
            return PairPrediction(depth_to_points(s.depth_left, s.K_left) / 3.0, None, conf, None)

    r = StereoReconstructor(TrueShape(), ReconstructionParams(scale_mode=mode)).reconstruct(s.left, s.right, calib, None)
    assert r.scale_path == f"{mode} (sparse matches)"
    ok = np.isfinite(r.depth) & np.isfinite(s.depth_left)
    assert np.median(np.abs(r.depth[ok] - s.depth_left[ok]) / s.depth_left[ok]) < 0.02


def test_sparse_matches_correct_a_tilted_network_surface_between_them(stereolunar_dir):
    """An oblique pair (dense matching finds nothing) and a 'network' whose depth is tilted
    across the image (scale x0.7 on the left edge to x1.4 on the right, and shrunk by 3): the
    sparse matches' field, whose trend is a robust plane of log(matches / network), undoes the
    tilt between the matches too; one scale from them cannot."""
    from lunar_recon.data.dataset import StereoDataset
    from lunar_recon.geometry.camera import depth_to_points
    from lunar_recon.models.predict import PairPrediction

    s = StereoDataset(stereolunar_dir / "Oblique_baseline_sample")[4]
    calib = StereoCalibration(s.K_left, s.K_right, s.T_left_from_right)
    h, w = s.depth_left.shape
    tilt = np.exp(np.linspace(np.log(0.7), np.log(1.4), w, dtype=np.float32))[None, :, None] / 3.0

    class Tilted:
        def predict(self, left, right, size=512, right_view=True):
            conf = np.where(np.isfinite(s.depth_left), 5.0, 0).astype(np.float32)
            return PairPrediction(depth_to_points(s.depth_left, s.K_left) * tilt, None, conf, None)

    errors = {}
    for mode in ("stereo", "stereo_local"):
        r = StereoReconstructor(Tilted(), ReconstructionParams(scale_mode=mode)).reconstruct(s.left, s.right, calib, None)
        assert r.scale_path == f"{mode} (sparse matches)"
        ok = np.isfinite(r.depth) & np.isfinite(s.depth_left)
        assert ok.sum() == np.isfinite(s.depth_left).sum()  # dense between the matches
        errors[mode] = float(np.mean(np.abs(r.depth[ok] - s.depth_left[ok]) / s.depth_left[ok]))
    assert errors["stereo"] > 0.1 and errors["stereo_local"] < 0.01, errors


def test_the_scale_fields_affine_trend_is_robust_to_wrong_matches():
    """The plane through log(reference / network) is found exactly under 10 % wild matches; with
    fewer matches than its three coefficients need there is none (the field keeps the median)."""
    from lunar_recon.geometry.metric_scale import SPARSE_FIELD_MIN_MATCHES, robust_log_ratio_plane

    rng = np.random.default_rng(3)
    h, w = 96, 128
    ok = np.zeros((h, w), bool)
    ok.flat[rng.choice(h * w, 60, replace=False)] = True
    y, x = np.mgrid[0:h, 0:w]
    plane = 0.2 + 0.5 * ((x + 0.5) / w - 0.5) - 0.3 * ((y + 0.5) / h - 0.5)
    log_ratio = (plane + rng.normal(0, 0.002, (h, w))).astype(np.float32)
    wild = np.flatnonzero(ok)[:6]
    log_ratio.flat[wild] += rng.choice([-1.0, 1.0], 6) * rng.uniform(0.5, 2.0, 6)
    coefficients = robust_log_ratio_plane(log_ratio, ok)
    assert coefficients is not None
    assert coefficients == pytest.approx([0.2, 0.5, -0.3], abs=0.01)
    few = np.zeros_like(ok)
    few.flat[np.flatnonzero(ok)[: SPARSE_FIELD_MIN_MATCHES - 1]] = True
    assert robust_log_ratio_plane(log_ratio, few) is None


@pytest.mark.parametrize("mode", ["baseline", "stereo", "stereo_local"])
def test_pipeline_scale_modes_recover_metric_scale(rendered, mode):
    """A 'model' that returns the true pointmaps shrunk by 3.7 is brought back to metric, from
    the calibrated baseline (PnP) or from a coarse SGBM depth."""
    from lunar_recon.models.predict import PairPrediction

    fr = rendered

    class Shrunk:
        def predict(self, left, right, size=512, right_view=True):
            return PairPrediction(
                fr.points_left / 3.7,
                fr.points_right_in_left / 3.7,
                np.where(fr.valid_left, 5.0, 0).astype(np.float32),
                np.where(fr.valid_right, 5.0, 0).astype(np.float32),
            )

    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    out = StereoReconstructor(Shrunk(), ReconstructionParams(scale_mode=mode)).reconstruct(fr.left, fr.right, calib, fr.up_left)
    # one factor, or a field that is flat to within the coarse matcher's noise
    assert np.median(out.scale) == pytest.approx(3.7, rel=0.01)
    assert np.all(np.abs(np.asarray(out.scale) / 3.7 - 1) < 0.05)
    both = np.isfinite(out.depth) & np.isfinite(fr.depth_left)
    assert np.nanmedian(np.abs(out.depth[both] / fr.depth_left[both] - 1)) < 0.01
    with pytest.raises(ValueError, match="scale_mode"):
        StereoReconstructor(Shrunk(), ReconstructionParams(scale_mode="magic"))
    if mode != "baseline":
        from lunar_recon.geometry.metric_scale import metric_scale_field_from_stereo, metric_scale_from_stereo

        # Nothing to match on a blank pair: no estimate (the pipeline then falls back to PnP).
        blank = np.zeros_like(fr.left)
        estimate = metric_scale_from_stereo if mode == "stereo" else metric_scale_field_from_stereo
        assert estimate(fr.depth_left, blank, blank, calib) is None
        if mode == "stereo_local":
            with pytest.raises(ValueError, match="trend"):
                metric_scale_field_from_stereo(fr.depth_left, fr.left, fr.right, calib, trend="quadratic")


def test_stereo_local_scale_field_removes_a_smooth_depth_distortion(rendered):
    """A 'network' whose depth is right in detail but bent at low frequency (scale 0.6 on the
    left edge to 1.6 on the right, and shrunk by 3): one global scale cannot undo it, the
    local scale field from the coarse SGBM depth does, and keeps the full (dense) coverage."""
    from lunar_recon.models.predict import PairPrediction

    fr = rendered
    h, w = fr.depth_left.shape
    bend = np.linspace(0.6, 1.6, w, dtype=np.float32)[None, :, None] / 3.0

    class Bent:
        def predict(self, left, right, size=512, right_view=True):
            conf = np.where(fr.valid_left, 5.0, 0).astype(np.float32)
            return PairPrediction(fr.points_left * bend, None, conf, None)

    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    errors = {}
    for mode in ("stereo", "stereo_local"):
        out = StereoReconstructor(Bent(), ReconstructionParams(scale_mode=mode, stereo_fusion_disparity_px=0)).reconstruct(
            fr.left, fr.right, calib, fr.up_left
        )
        both = np.isfinite(out.depth) & np.isfinite(fr.depth_left)
        assert both.sum() == np.isfinite(fr.depth_left).sum()  # dense: no hole where SGBM fails
        errors[mode] = float(np.median(np.abs(out.depth[both] / fr.depth_left[both] - 1)))
    assert isinstance(out.scale, np.ndarray) and out.scale.shape == (h, w)
    assert errors["stereo"] > 0.15 and errors["stereo_local"] < 0.05, errors
    with pytest.raises(ValueError, match="scale_field_sigma"):
        ReconstructionParams(scale_field_sigma=0).validate()


def test_stereo_fusion_takes_the_matcher_near_and_the_network_far():
    """The matcher's say is 1 / (1 + (d0/d)^8) of the way from the network's point to its own:
    all of it near (large disparity d), none far, half at d = d0; inside its holes the network's
    points stay, and the correction fades in from their edge (no seam).  d0 and the smoothing
    are in the left image's pixels: a half-resolution reference gives the same fusion."""
    import cv2

    from lunar_recon.geometry.camera import Intrinsics, depth_to_points
    from lunar_recon.geometry.metric_scale import fuse_with_matcher

    def inside_mask():
        inside = np.zeros((384, 512), bool)
        inside[140:280, 180:380] = True  # > 3 sigma from the hole and the missing points
        return inside

    K = Intrinsics(443.0, 443.0, 255.5, 191.5, 512, 384)
    calib = StereoCalibration.rectified(K, 1.5)
    f_b = 443.0 * 1.5  # f B in the left image's pixels; the reference is the pair at 256 px
    for z, expected_say in (
        (10.0, 1 / (1 + (20 / (f_b / 10)) ** 8)),
        (100.0, 1 / (1 + (20 / (f_b / 100)) ** 8)),
        (f_b / 20, 0.5),
    ):
        truth = depth_to_points(np.full((384, 512), z, np.float32), K)
        network = truth * np.float32(1.05)  # 5% too far
        reference = np.full((192, 256), z, np.float32)
        reference[:40, :60] = np.nan  # a hole of the matcher
        network[300:, 400:] = np.nan
        fused = fuse_with_matcher(network, reference, calib, 20.0, sigma_px=8.0)[0]
        expected = (1 - expected_say) * network + expected_say * truth
        full = cv2.resize(reference, (512, 384), interpolation=cv2.INTER_NEAREST)
        fused_full = fuse_with_matcher(network, full, calib, 20.0, sigma_px=8.0)[0]
        np.testing.assert_allclose(fused_full[inside_mask()], expected[inside_mask()], rtol=1e-4)
        inside = inside_mask()
        np.testing.assert_allclose(fused[inside], expected[inside], rtol=1e-4)
        np.testing.assert_allclose(fused[:40, :70], network[:40, :70], rtol=1e-5)  # deep in the hole
        assert np.isnan(fused[300:, 400:]).all()  # never invents a point the network lacks
        pulled = lambda col: (network[40, col, 2] - fused[40, col, 2]) / (network[40, col, 2] - z)  # noqa: E731
        if expected_say > 0.1:  # (far, the pull is below float32 resolution)
            assert pulled(110) < pulled(124) < pulled(140) < pulled(200)  # fades in from the hole's edge
            assert pulled(200) == pytest.approx(expected_say, rel=1e-3)
    assert expected_say == 0.5
    with pytest.raises(ValueError, match="positive"):
        fuse_with_matcher(network, reference, calib, 0)
    with pytest.raises(ValueError, match="stereo_fusion_disparity_px"):
        ReconstructionParams(stereo_fusion_disparity_px=-1).validate()


def test_fusion_reference_searches_only_the_disparities_the_coarse_reference_saw(rendered):
    """The fusion's full-resolution matching searches only the band of disparities the coarse
    reference saw: where a full search also matches it agrees, it loses less of the left border,
    and it is skipped (None) when no disparity reaches where the matcher would have a say."""
    from lunar_recon.geometry.metric_scale import fusion_reference_depth, stereo_reference_depth
    from lunar_recon.geometry.stereo import sgbm_depth

    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    coarse = stereo_reference_depth(fr.left, fr.right, calib)
    fine = fusion_reference_depth(fr.left, fr.right, calib, coarse, 14.0)
    full = sgbm_depth(fr.left, fr.right, calib, SGBMParams())
    assert fine.shape == fr.depth_left.shape
    both = np.isfinite(fine) & np.isfinite(full)
    assert both.mean() > 0.4
    assert np.median(np.abs(fine[both] / full[both] - 1)) < 1e-3
    assert np.isfinite(fine).sum() > 1.1 * np.isfinite(full).sum()
    ok = np.isfinite(fine) & np.isfinite(fr.depth_left)
    assert np.median(np.abs(fine[ok] / fr.depth_left[ok] - 1)) < 0.01
    disparity = fr.K_left.fx * fr.baseline_m / np.nanmedian(coarse)
    assert fusion_reference_depth(fr.left, fr.right, calib, coarse, 3 * disparity) is None  # nothing to fuse
    assert fusion_reference_depth(fr.left, fr.right, calib, np.full_like(coarse, np.nan), 14.0) is None


def test_stereo_fusion_straightens_a_rippled_network_surface(rendered):
    """A 'network' whose depth is smoothed and rippled (2%, 64 px period: a bend the scale
    field's Gaussian only partly follows) and shrunk: at this close range (~20 px of disparity)
    fusing the full-resolution matcher's points at the default d0 brings the footprint slope
    closer to the truth's, and coverage stays dense."""
    import cv2

    from lunar_recon.evaluation import hazard_on_truth_cells
    from lunar_recon.geometry.camera import depth_to_points
    from lunar_recon.geometry.metrics import slope_mae
    from lunar_recon.models.predict import PairPrediction
    from lunar_recon.geometry.metric_scale import STEREO_FUSION_DISPARITY_PX

    fr = rendered
    valid = np.isfinite(fr.depth_left)
    h, w = valid.shape
    filled = np.where(valid, fr.depth_left, np.nanmedian(fr.depth_left)).astype(np.float32)
    wave = lambda n: np.sin(2 * np.pi * np.arange(n) / 64)  # noqa: E731
    ripple = 1 + 0.02 * wave(h)[:, None] * wave(w)[None, :]
    network = np.where(valid, cv2.GaussianBlur(filled, (0, 0), 4) * ripple, np.nan).astype(np.float32)

    class Rippled:
        def predict(self, left, right, size=512, right_view=True):
            conf = np.where(valid, 5.0, 0).astype(np.float32)
            return PairPrediction(depth_to_points(network, fr.K_left) / 3.0, None, conf, None)

    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    errors = {}
    for d0 in (0.0, STEREO_FUSION_DISPARITY_PX):
        out = StereoReconstructor(
            Rippled(), ReconstructionParams(scale_mode="stereo_local", stereo_fusion_disparity_px=d0)
        ).reconstruct(fr.left, fr.right, calib, fr.up_left)
        assert np.isfinite(out.depth).sum() == valid.sum()
        footprint = hazard_on_truth_cells(out.hazard, fr.hazard)
        errors[d0] = slope_mae(footprint, fr.hazard)
    assert errors[STEREO_FUSION_DISPARITY_PX] < 0.75 * errors[0.0], errors


def test_a_dense_reference_is_trusted_only_where_it_agrees_with_the_triangulated_matches():
    from lunar_recon.geometry.metric_scale import reference_agrees_with_matches

    rng = np.random.default_rng(0)
    dense = np.full((64, 64), 1000.0, np.float32) * rng.uniform(0.99, 1.01, (64, 64)).astype(np.float32)
    sparse = np.full((64, 64), np.nan, np.float32)
    sparse[rng.integers(0, 64, 30), rng.integers(0, 64, 30)] = 1000.0
    assert reference_agrees_with_matches(dense, sparse)
    assert not reference_agrees_with_matches(dense * 2.0, sparse)  # a wholesale mismatch
    holes = np.where(np.isfinite(sparse), np.nan, dense)  # no common pixel, though matches exist
    assert not reference_agrees_with_matches(holes, sparse)
    few = np.full((64, 64), np.nan, np.float32)
    few[0, :3] = 1000.0  # too few matches to check against: the dense reference stands
    assert reference_agrees_with_matches(dense * 2.0, few)


def test_an_unrectified_rig_whose_dense_matching_fails_takes_the_sparse_scale(stereolunar_dir, monkeypatch):
    """A rotated rig whose dense reference is wrong wholesale (here: twice the depth, as SGBM
    gives on a strongly warped rectified pair) is caught by the triangulated matches: the scale
    comes from them, and one scale is taken where they are too few for a field."""
    import lunar_recon.pipeline as pipeline
    from lunar_recon.data.dataset import StereoDataset
    from lunar_recon.geometry.camera import depth_to_points
    from lunar_recon.models.predict import PairPrediction

    s = StereoDataset(stereolunar_dir / "Nadir_baseline_sample")[0]
    calib = StereoCalibration(s.K_left, s.K_right, s.T_left_from_right)
    assert not calib.is_rectified
    true_reference = pipeline.stereo_reference_depth
    monkeypatch.setattr(pipeline, "stereo_reference_depth", lambda *a, **k: 2.0 * true_reference(*a, **k))

    class TrueShape:
        def predict(self, left, right, size=512, right_view=True):
            conf = np.where(np.isfinite(s.depth_left), 5.0, 0).astype(np.float32)
            return PairPrediction(depth_to_points(s.depth_left, s.K_left) / 3.0, None, conf, None)

    r = StereoReconstructor(TrueShape(), ReconstructionParams(scale_mode="stereo_local")).reconstruct(
        s.left, s.right, calib, None
    )
    assert r.scale_path == "stereo_local (sparse matches)"
    ok = np.isfinite(r.depth) & np.isfinite(s.depth_left)
    assert np.median(np.abs(r.depth[ok] - s.depth_left[ok]) / s.depth_left[ok]) < 0.02
    real_sparse = pipeline.sparse_reference_depth

    def few_matches(*a, **k):  # 10 matches: too few for a field's affine trend, enough for one scale
        out = real_sparse(*a, **k)
        keep = np.flatnonzero(np.isfinite(out))[:10]
        thin = np.full(out.shape, np.nan, np.float32)
        thin.flat[keep] = out.flat[keep]
        return thin

    monkeypatch.setattr(pipeline, "sparse_reference_depth", few_matches)
    r = StereoReconstructor(TrueShape(), ReconstructionParams(scale_mode="stereo_local")).reconstruct(
        s.left, s.right, calib, None
    )
    assert r.scale_path == "stereo (sparse matches)" and np.ndim(r.scale) == 0
    assert np.median(np.abs(r.depth[ok] - s.depth_left[ok]) / s.depth_left[ok]) < 0.02


def test_blank_images_hold_no_texture():
    """A black frame (sensor noise only), a saturated one, and the same in 16 bits and float
    are blank; a dim but textured view and a real rendered one are not."""
    from lunar_recon.geometry.stereo import blank_image

    rng = np.random.default_rng(0)
    black = np.clip(rng.normal(1.0, 0.3, (256, 320)), 0, 255).astype(np.uint8)
    assert blank_image(black)
    assert blank_image(np.full((256, 320), 255, np.uint8))
    assert blank_image(black.astype(np.uint16) * 256) and blank_image(black.astype(np.float32) / 255)
    assert blank_image(np.stack([black] * 3, axis=-1))
    dim = np.clip(rng.normal(6.0, 2.5, (256, 320)), 0, 255).astype(np.uint8)  # 5 grey levels rms of texture
    assert not blank_image(dim)
    plan = plan_scene("descent", 21, width=320, height=256, altitude_m=40, off_nadir_deg=15, baseline_m=2.0, sun_elevation_deg=25)
    assert not blank_image(render_scene(plan).left)


def test_a_blank_pair_gives_no_depth_and_says_why(rendered):
    """The default student on a black pair (the view in darkness): whatever its network guesses,
    the reconstruction keeps no point, no hazard map, and the note says the image is blank; the
    same pair rendered in light keeps its depth."""
    from lunar_recon.models.registry import load_stereo_model

    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    rec = StereoReconstructor(load_stereo_model("default"))
    black = np.zeros_like(fr.left)
    r = rec.reconstruct(black, black, calib, fr.up_left, sun_in_left=fr.sun_left)
    assert not np.isfinite(r.depth).any() and not r.valid.any()
    assert r.hazard is None and "blank" in r.hazard_note
    lit = StereoReconstructor(load_stereo_model("default")).reconstruct(fr.left, fr.right, calib, fr.up_left)
    assert np.isfinite(lit.depth).mean() > 0.9 and lit.hazard_note is None


def test_the_reconstruction_times_the_landing_site_map_within_its_hazard_step(rendered):
    """``timings_s['hazard_map']`` is the map alone (what benchmarks/bench_geometry.py reports per
    rendered frame): part of the step after the depth, and 0 when no map is made."""
    fr = rendered
    calib = StereoCalibration.rectified(fr.K_left, fr.baseline_m)
    reconstructor = StereoReconstructor(SGBMModel(SGBMParams(num_disparities=128)), ReconstructionParams())
    mapped = reconstructor.reconstruct(fr.left, fr.right, calib, fr.up_left).timings_s
    assert 0 < mapped["hazard_map"] < mapped["hazard"] <= mapped["total"]
    unmapped = reconstructor.reconstruct(fr.left, fr.right, calib, None).timings_s  # no gravity: no map
    assert unmapped["hazard_map"] == 0.0
