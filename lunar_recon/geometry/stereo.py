"""Stereo rigs and classical stereo: the calibration of a camera pair (``StereoCalibration``),
rectification from camera poses, and OpenCV semi-global matching with sub-pixel disparity ->
metric depth.  The baseline every learned model is judged against."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import Intrinsics, depth_to_points


@dataclass
class SGBMParams:
    num_disparities: int = 128  # multiple of 16
    min_disparity: int = 0
    block_size: int = 5
    uniqueness_ratio: int = 5
    speckle_window: int = 100
    speckle_range: int = 2
    p1_factor: int = 8  # P1 = p1_factor * block_size^2 (OpenCV's recommended smoothness)
    p2_factor: int = 32
    wls_lambda: float | None = None  # WLS post-filter (needs opencv-contrib); None: off
    wls_sigma: float = 1.5
    # Matching passes with the views shifted 1/n px apart, averaged: OpenCV's parabola sub-pixel
    # fit pulls disparities toward whole pixels ("pixel locking", a bias of up to +-0.25 px that
    # follows the fractional disparity), and shifting by half a pixel flips that bias. 1: OpenCV
    # alone. 2 (half a pixel; twice the time) takes the robust disparity error on the simulated
    # descent calibration pairs from 0.21 to 0.11 px.
    subpixel_passes: int = 2
    pass_agreement_px: float = 1.0  # passes that differ by more leave the pixel unmatched

    def validate(self) -> None:
        if self.num_disparities < 16 or self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError("SGBM needs num_disparities >= 16 and an odd block_size")
        if self.subpixel_passes < 1:
            raise ValueError("subpixel_passes must be >= 1")


def _to_gray8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3:
        a = cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2GRAY)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a) * 255.0, 0, 255).astype(np.uint8)
    return a


def _shifted(img: np.ndarray, dx: float) -> np.ndarray:
    """The image moved by ``dx`` pixels along x (linear interpolation)."""
    m = np.array([[1, 0, dx], [0, 1, 0]], dtype=np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, params: SGBMParams | None = None) -> np.ndarray:
    """Left disparity (pixels, float32, NaN where unmatched) of a rectified pair, averaged over
    ``params.subpixel_passes`` passes whose views are shifted 1/n px apart (pixel locking)."""
    p = params or SGBMParams()
    p.validate()
    l8, r8 = _to_gray8(left), _to_gray8(right)
    if l8.shape != r8.shape:
        raise ValueError(f"left {l8.shape} and right {r8.shape} images differ in size")
    n = p.subpixel_passes
    passes = [_sgbm_pass(l8, r8, p)]
    for k in range(1, n):  # both views moved, in opposite directions, so both get the same blur
        shift = k / n
        passes.append(_sgbm_pass(_shifted(l8, -shift / 2), _shifted(r8, shift / 2), p) + np.float32(shift))
    if n == 1:
        return passes[0]
    stack = np.stack(passes)
    with np.errstate(invalid="ignore"):  # NaN (a pass without a match) never agrees
        agree = stack.max(axis=0) - stack.min(axis=0) <= p.pass_agreement_px
    return np.where(agree, stack.mean(axis=0), np.float32(np.nan)).astype(np.float32)


def _sgbm_pass(l8: np.ndarray, r8: np.ndarray, p: SGBMParams) -> np.ndarray:
    nd = int(np.ceil(p.num_disparities / 16) * 16)
    matcher = cv2.StereoSGBM_create(
        minDisparity=p.min_disparity,
        numDisparities=nd,
        blockSize=p.block_size,
        P1=p.p1_factor * p.block_size**2,
        P2=p.p2_factor * p.block_size**2,
        disp12MaxDiff=1,
        uniquenessRatio=p.uniqueness_ratio,
        speckleWindowSize=p.speckle_window,
        speckleRange=p.speckle_range,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    raw = matcher.compute(l8, r8)
    if p.wls_lambda is not None:
        if not hasattr(cv2, "ximgproc"):
            raise RuntimeError("WLS filtering needs opencv-contrib-python (cv2.ximgproc)")
        right_matcher = cv2.ximgproc.createRightMatcher(matcher)
        wls = cv2.ximgproc.createDisparityWLSFilter(matcher)
        wls.setLambda(p.wls_lambda)
        wls.setSigmaColor(p.wls_sigma)
        raw = wls.filter(raw, l8, disparity_map_right=right_matcher.compute(r8, l8))
    disp = raw.astype(np.float32) / 16.0  # OpenCV disparities are fixed-point with 4 fractional bits
    disp[raw <= (p.min_disparity - 1) * 16] = np.nan
    disp[disp <= 0] = np.nan
    return disp


def unmatched_left_band(disparity: np.ndarray, margin_px: float = 2.0, fit_from: float = 1 / 3) -> np.ndarray:
    """Pixels of the left image whose match lies left of the right image (x < d): no matcher
    can see them, and a learned one returns confident nonsense there.  Per row, the disparity
    of the row's right part (x >= ``fit_from`` x width, where matches exist) is fitted with a
    line d = a + b x (least squares, refitted without residuals over 3 px) and the band is
    x < a / (1 - b) + ``margin_px``, where the line meets x = d.  Returns a (H, W) bool mask."""
    d = np.asarray(disparity, dtype=np.float64)
    h, w = d.shape
    x = np.broadcast_to(np.arange(w, dtype=np.float64), (h, w))
    use = np.isfinite(d) & (x >= fit_from * w)
    a = b = np.zeros(h)
    for _ in range(2):
        n = use.sum(1)
        sx, sd = np.where(use, x, 0).sum(1), np.where(use, d, 0).sum(1)
        sxx, sxd = np.where(use, x * x, 0).sum(1), np.where(use, x * d, 0).sum(1)
        det = n * sxx - sx * sx
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(det > 0, (n * sxd - sx * sd) / det, 0.0)
            a = np.where(n > 0, (sd - b * sx) / np.maximum(n, 1), 0.0)
        use &= np.abs(d - (a[:, None] + b[:, None] * x)) <= 3.0
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = np.where(b < 0.9, a / (1 - b), w)  # a row whose disparity grows as fast as x: all unmatched
    edge = np.clip(np.nan_to_num(edge, nan=w), 0, w)
    return x < edge[:, None] + margin_px


def left_right_discrepancy(disparity_left: np.ndarray, disparity_right: np.ndarray) -> np.ndarray:
    """The left-right check of a rectified pair: at each left pixel x, |d_L(x) - d_R(x - d_L(x))|
    (px; the right view's disparity read at the left pixel's match, linearly along its row).
    Where both views matched the same surface the two agree to their noise; an occlusion, a
    mismatch or a surface one window saw wrongly shows as a disagreement.  NaN where either is
    missing or the match falls outside the right image."""
    import cv2

    d = np.asarray(disparity_left, dtype=np.float32)
    if d.shape != np.shape(disparity_right):
        raise ValueError(f"left and right disparities differ in shape: {d.shape} and {np.shape(disparity_right)}")
    h, w = d.shape
    column = (np.arange(w, dtype=np.float32)[None, :] - d).astype(np.float32)
    row = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)).astype(np.float32)
    right = np.ascontiguousarray(disparity_right, dtype=np.float32)
    # replicated borders (a constant NaN one would leak into the last row at zero weight); the
    # matches outside the right image are marked after
    seen = cv2.remap(right, np.nan_to_num(column, nan=-1.0), row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore"):
        outside = ~((column >= 0) & (column <= w - 1))
    return np.where(outside, np.float32(np.nan), np.abs(d - seen))


def outside_right_view(depth: np.ndarray, calibration: StereoCalibration, margin_px: float = 2.0) -> np.ndarray:
    """Pixels of a left depth image (any resolution of the left camera) whose point the right
    camera of a rectified rig does not see: its column there, ``x - f B / Z``, is left of the
    image (``margin_px`` inside it counts as outside: no matching window fits there).  What a
    pipeline has at those pixels is monocular, never triangulated.  (H, W) bool, False where
    the depth is not positive."""
    z = np.asarray(depth, dtype=np.float32)
    h, w = z.shape
    fx = calibration.K_left.scaled(w, h).fx
    with np.errstate(divide="ignore", invalid="ignore"):
        column_right = np.arange(w, dtype=np.float32)[None, :] - np.float32(fx * calibration.baseline_m) / z
    return (z > 0) & (column_right < margin_px)


def disparity_to_depth(disp: np.ndarray, fx: float, baseline_m: float, doffs: float = 0.0) -> np.ndarray:
    """Z = f B / (d + doffs) (doffs: principal-point offset between the rectified cameras)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = fx * baseline_m / (disp + doffs)
    z[~np.isfinite(z) | (z <= 0)] = np.nan
    return z.astype(np.float32)


def stereo_elevation_sigma(
    points: np.ndarray, up: np.ndarray, fx: float, baseline_m: float, disparity_sigma_px: float | np.ndarray
) -> np.ndarray:
    """1-sigma vertical uncertainty (m) of each point of a stereo cloud in the left camera frame.

    Depth noise sigma_Z = Z^2 / (f B) sigma_d moves a point along its viewing ray, by
    sigma_Z |p| / Z; its vertical part is that times |ray . up|.  This is the rig's precision
    model (the same whichever matcher or network produced the depth), used by the hazard map
    to tell hazards from noise.  ``disparity_sigma_px``: one value, or one per point
    (:func:`texture_disparity_sigma`)."""
    sigma_d = np.asarray(disparity_sigma_px, dtype=np.float32)
    if not (fx > 0 and baseline_m > 0 and np.all(sigma_d >= 0)):
        raise ValueError(
            f"need fx > 0, baseline > 0, disparity sigma >= 0 (got {fx}, {baseline_m}, "
            f"{disparity_sigma_px if sigma_d.ndim == 0 else 'a sigma map'})"
        )
    p = np.asarray(points, dtype=np.float32)
    u = np.asarray(up, dtype=np.float32)
    u = u / np.linalg.norm(u)
    z = p[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma_z = z * z * (sigma_d / np.float32(fx * baseline_m))
        return (sigma_z * np.abs(p @ u) / z).astype(np.float32)  # |p . up| / Z = |p|/Z |ray . up|


# An image whose 1st-99th percentile intensity spread is under this many 8-bit grey levels holds
# nothing to match (a view in darkness, a covered lens, a saturated frame): the sensor's noise
# alone spans about one level.
BLANK_IMAGE_RANGE_GREY8 = 3


def blank_image(image: np.ndarray) -> bool:
    """Whether an image holds no texture at all: its 1st-99th percentile spread, in 8-bit grey
    levels (16-bit and float images scaled as a driver would), under
    ``BLANK_IMAGE_RANGE_GREY8``.  Read from every fourth pixel of every fourth row."""
    grey = _to_gray8(np.asarray(image)[::4, ::4])
    low, high = np.percentile(grey, [1, 99])
    return bool(high - low < BLANK_IMAGE_RANGE_GREY8)


def image_noise_sigma(image: np.ndarray) -> float:
    """1-sigma grey-level noise of an image (Immerkaer 1996: the mean absolute response of a
    Laplacian difference that cancels smooth structure), in the image's grey levels."""
    grey = np.asarray(image, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    if min(grey.shape[:2]) < 3:
        raise ValueError(f"noise estimation needs an image of at least 3x3 pixels, got {grey.shape}")
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = cv2.filter2D(grey, -1, kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) / 6 * np.mean(np.abs(response)))


@dataclass(frozen=True)
class DisparityPrecision:
    """A matcher's disparity precision per pixel, from the left image's texture:
    sigma_d = sqrt(floor^2 + (texture_gain * sigma_crlb)^2), where sigma_crlb =
    sqrt(2 sigma_n^2 / sum_window I_x^2) is the Cramer-Rao bound of matching a window with
    horizontal gradients I_x under grey-level noise sigma_n.  Bland or dark ground (low sun,
    shadows' edges) gets the wider sigma its matches have; ``texture_gain`` 0 is one sigma
    everywhere.  Fitted on calibration pairs (:func:`fit_disparity_precision`)."""

    floor_px: float
    texture_gain: float = 0.0
    window: int = 9

    def __post_init__(self) -> None:
        if not (self.floor_px >= 0 and self.texture_gain >= 0):
            raise ValueError(
                f"disparity precision needs floor_px >= 0 and texture_gain >= 0, got {self.floor_px}, {self.texture_gain}"
            )
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"the texture window must be odd and >= 3 px, got {self.window}")

    def sigma_map(
        self, image_left: np.ndarray, shape: tuple[int, int] | None = None, matching_scale: float = 1.0
    ) -> np.ndarray | float:
        """sigma_d (px of ``image_left``) per pixel of ``image_left`` (resized to ``shape``), or
        the floor alone without a texture term.  ``matching_scale`` < 1: the pair was matched
        downscaled by it (area-averaged), where this precision holds: the bound is taken on the
        image at that scale and the sigma widened by its inverse."""
        if not 0 < matching_scale <= 1:
            raise ValueError(f"matching_scale must be in (0, 1], got {matching_scale}")
        if self.texture_gain == 0:
            return self.floor_px / matching_scale
        image = np.asarray(image_left)
        if matching_scale < 1:
            h, w = image.shape[:2]
            size = (max(1, round(w * matching_scale)), max(1, round(h * matching_scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        crlb = matching_crlb(image, self.window)
        if shape is not None and crlb.shape != tuple(shape):
            crlb = cv2.resize(crlb, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        sigma = np.sqrt(np.float32(self.floor_px) ** 2 + (np.float32(self.texture_gain) * crlb) ** 2)
        return sigma / np.float32(matching_scale) if matching_scale < 1 else sigma


def matching_crlb(image_left: np.ndarray, window: int = 9) -> np.ndarray:
    """Cramer-Rao bound (px, 1 sigma) of the disparity of a ``window`` x ``window`` match at each
    pixel: sqrt(2 sigma_n^2 / sum I_x^2), sigma_n the image's noise (:func:`image_noise_sigma`)."""
    grey = np.asarray(image_left, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    noise = max(image_noise_sigma(grey), 0.5)  # at least the 8-bit quantisation's
    ix = cv2.Sobel(cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.CV_32F, 1, 0, ksize=3) / 8
    energy = cv2.boxFilter(ix * ix, -1, (window, window), normalize=False)
    return np.sqrt(np.float32(2 * noise**2) / np.maximum(energy, np.float32(1e-6))).astype(np.float32)


def fit_disparity_precision(
    abs_error_px: np.ndarray, crlb_px: np.ndarray, window: int = 9, bins: int = 12, min_pixels: int = 200
) -> DisparityPrecision:
    """Fit :class:`DisparityPrecision` to a matcher's absolute disparity errors and the
    Cramer-Rao bounds at the same pixels (calibration pairs with true depth): the robust sigma
    (1.4826 x median |e|) of each bound's quantile bin, least squares of sigma^2 = floor^2 +
    gain^2 crlb^2 weighted by pixel count (heavy tails of occlusions do not set it)."""
    e = np.abs(np.asarray(abs_error_px, dtype=np.float64)).ravel()
    c = np.asarray(crlb_px, dtype=np.float64).ravel()
    use = np.isfinite(e) & np.isfinite(c)
    e, c = e[use], c[use]
    if e.size < bins * min_pixels:
        raise ValueError(f"fitting the disparity precision needs >= {bins * min_pixels} matched pixels, got {e.size}")
    edges = np.quantile(c, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.sum() >= min_pixels:
            rows.append((np.mean(c[sel] ** 2), (1.4826 * np.median(e[sel])) ** 2, sel.sum()))
    x, y, w = (np.array(v) for v in zip(*rows))
    A = np.stack([np.ones_like(x), x], axis=1) * np.sqrt(w)[:, None]
    (a2, b2), *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    if b2 <= 0:  # no texture dependence: one sigma
        return DisparityPrecision(float(round(1.4826 * np.median(e), 4)), 0.0, window)
    return DisparityPrecision(float(round(np.sqrt(max(a2, 0.0)), 4)), float(round(np.sqrt(b2), 4)), window)


@dataclass
class Rectification:
    """Maps and geometry of a planar rectification of an unrectified pair."""

    map_left: tuple[np.ndarray, np.ndarray]
    map_right: tuple[np.ndarray, np.ndarray]
    R_left: np.ndarray  # rotation original left camera -> rectified left camera
    K_rect: Intrinsics
    baseline_m: float
    size: tuple[int, int]  # (width, height)
    second_is_right: bool = True


def rectify_from_poses(
    K_left: Intrinsics, K_right: Intrinsics, T_left_from_right: np.ndarray, alpha: float = 0.0
) -> Rectification:
    """Planar (Bouguet) rectification of two cameras with known relative pose."""
    T = np.asarray(T_left_from_right, dtype=np.float64)
    T_rl = np.linalg.inv(T)  # right <- left, OpenCV's (R, T) convention
    size = (K_left.width, K_left.height)
    no_dist = np.zeros(5)
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(
        K_left.K,
        no_dist,
        K_right.K,
        no_dist,
        size,
        T_rl[:3, :3],
        T_rl[:3, 3].reshape(3, 1),
        flags=cv2.CALIB_ZERO_DISPARITY,
        alpha=alpha,
    )
    m1 = cv2.initUndistortRectifyMap(K_left.K, no_dist, R1, P1, size, cv2.CV_32FC1)
    m2 = cv2.initUndistortRectifyMap(K_right.K, no_dist, R2, P2, size, cv2.CV_32FC1)
    baseline = float(abs(P2[0, 3] / P2[0, 0]))
    K_rect = Intrinsics(float(P1[0, 0]), float(P1[1, 1]), float(P1[0, 2]), float(P1[1, 2]), size[0], size[1])
    # P2[0, 3] = -f * Tx: negative when the second camera sits to the right of the first.
    return Rectification(m1, m2, R1, K_rect, baseline, size, second_is_right=bool(P2[0, 3] < 0))


def sgbm_depth_unrectified(
    left: np.ndarray,
    right: np.ndarray,
    K_left: Intrinsics,
    K_right: Intrinsics,
    T_left_from_right: np.ndarray,
    params: SGBMParams | None = None,
) -> np.ndarray:
    """Depth in the *original* left camera's pixels for an unrectified pair: rectify, match,
    triangulate, rotate back, and z-buffer into the left image."""
    from .camera import points_to_depth

    rect = rectify_from_poses(K_left, K_right, T_left_from_right)
    l_r = cv2.remap(_to_gray8(left), *rect.map_left, cv2.INTER_LINEAR)
    r_r = cv2.remap(_to_gray8(right), *rect.map_right, cv2.INTER_LINEAR)
    if rect.second_is_right:
        disp = sgbm_disparity(l_r, r_r, params)
    else:  # mirror both views so the matcher sees the usual left/right order
        disp = sgbm_disparity(l_r[:, ::-1], r_r[:, ::-1], params)[:, ::-1]
    z = disparity_to_depth(disp, rect.K_rect.fx, rect.baseline_m)
    pts_rect = depth_to_points(z, rect.K_rect).reshape(-1, 3)
    pts_left = pts_rect @ rect.R_left  # rectified -> original left frame (R_left^T applied)
    return points_to_depth(pts_left, K_left, K_left.height, K_left.width)


def matched_depths(
    left: np.ndarray,
    right: np.ndarray,
    K_left: Intrinsics,
    K_right: Intrinsics,
    T_left_from_right: np.ndarray,
    max_features: int = 4000,
    max_reprojection_px: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse metric depths of a calibrated pair of any relative rotation: SIFT matches (ratio
    test), each triangulated with the known poses and kept where it lies in front of both
    cameras and reprojects within ``max_reprojection_px``.  Returns the left pixels (N x 2, x y)
    and their depths (N,) -- a metric anchor where the pair cannot be planar-rectified or
    dense matching finds nothing."""
    sift = cv2.SIFT_create(nfeatures=max_features)
    kl, dl = sift.detectAndCompute(_to_gray8(left), None)
    kr, dr = sift.detectAndCompute(_to_gray8(right), None)
    empty = (np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
    if dl is None or dr is None or len(kl) < 2 or len(kr) < 2:
        return empty
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dl, dr, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.75 * n.distance]
    if not good:
        return empty
    pl = np.array([kl[m.queryIdx].pt for m in good], dtype=np.float64)
    pr = np.array([kr[m.trainIdx].pt for m in good], dtype=np.float64)
    T = np.asarray(T_left_from_right, dtype=np.float64)
    T_rl = np.linalg.inv(T)  # left -> right camera
    P_l = K_left.K @ np.eye(3, 4)
    P_r = K_right.K @ T_rl[:3]
    X = cv2.triangulatePoints(P_l, P_r, pl.T, pr.T)
    X = (X[:3] / X[3]).T
    Xr = X @ T_rl[:3, :3].T + T_rl[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj_l = (X @ K_left.K.T)[:, :2] / X[:, 2:3]
        proj_r = (Xr @ K_right.K.T)[:, :2] / Xr[:, 2:3]
        err = np.maximum(np.linalg.norm(proj_l - pl, axis=1), np.linalg.norm(proj_r - pr, axis=1))
    ok = (X[:, 2] > 0) & (Xr[:, 2] > 0) & (err < max_reprojection_px) & np.isfinite(err)
    return pl[ok].astype(np.float32), X[ok, 2].astype(np.float32)


@dataclass
class StereoCalibration:
    """Two pinhole cameras and the pose of the right one in the left camera frame."""

    K_left: Intrinsics
    K_right: Intrinsics
    T_left_from_right: np.ndarray  # 4x4; a rectified rig is a pure translation (+B, 0, 0)

    @classmethod
    def rectified(cls, K: Intrinsics, baseline_m: float) -> "StereoCalibration":
        if not (np.isfinite(baseline_m) and baseline_m > 0):
            raise ValueError(f"baseline must be positive, got {baseline_m}")
        T = np.eye(4)
        T[0, 3] = baseline_m
        return cls(K, K, T)

    @property
    def baseline_m(self) -> float:
        return float(np.linalg.norm(self.T_left_from_right[:3, 3]))

    @property
    def is_rectified(self) -> bool:
        T = self.T_left_from_right
        return bool(
            np.allclose(T[:3, :3], np.eye(3), atol=1e-9)
            and abs(T[1, 3]) < 1e-9
            and abs(T[2, 3]) < 1e-9
            and self.K_left == self.K_right
        )


def sgbm_depth(image_left: np.ndarray, image_right: np.ndarray, calibration: StereoCalibration, params: SGBMParams) -> np.ndarray:
    """Metric SGBM depth in the left camera's pixels (NaN unmatched), rectified or not."""
    cal = calibration
    if cal.is_rectified:
        return disparity_to_depth(sgbm_disparity(image_left, image_right, params), cal.K_left.fx, cal.baseline_m)
    return sgbm_depth_unrectified(image_left, image_right, cal.K_left, cal.K_right, cal.T_left_from_right, params)
