"""Stereo datasets on disk: lunar_recon's simulated format and the StereoLunar format.

lunar_recon format (written by ``lunar-recon simulate``)::

    DIR/dataset.json                 {"format": "lunar_recon.dataset/1", "preset", "seed", "splits": {...}}
    DIR/<split>/<NNNNNN>/left.png    8- or 16-bit mono (16-bit: 12-bit data left-aligned)
                         right.png
                         depth_left.npy, depth_right.npy   float32 metres along the optical axis, NaN = no surface
                         camera.json  intrinsics (K, width, height) and 4x4 T_world_from_{left,right},
                                      baseline, gravity up in the left frame, Sun direction, rectified flag
                         truth.npz    per-pixel slope, shadow mask, hazard grid (classes, slope, roughness,
                                      grid origin / resolution / rotation), DEM (z, x0, y0, cell), rocks
                         meta.json    scene plan (preset, seed, rig, Sun, sensor, terrain parameters)

A pair's folder appears only when complete (written under a temporary name, then renamed).

StereoLunar format: ``<set>/paireK/im_NNNNN.{jpg,exr,npz}`` with two camera poses under three
illuminations per folder; half-float EXR z-depth, NPZ ``intrinsics`` and ``cam2world`` (OpenCV axes,
selenocentric metres).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

from ..fileio import durable_replace
from ..geometry.camera import Intrinsics
from ..geometry.frames import normalize
from ..geometry.hazard import GridSpec, HazardMap, HazardParams
from ..geometry.stereo import StereoCalibration
from .frame import GroundTruth, StereoFrame, rig_calibration

FORMAT = "lunar_recon.dataset/1"


class DatasetError(RuntimeError):
    """A dataset folder or file that cannot be read; the message names it."""


# ---- writing ---------------------------------------------------------------------------------------
def _k_dict(K: Intrinsics) -> dict:
    return {"fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy, "width": K.width, "height": K.height}


def _k_from(d: dict) -> Intrinsics:
    return Intrinsics(d["fx"], d["fy"], d["cx"], d["cy"], int(d["width"]), int(d["height"]))


def write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise DatasetError(f"{path}: could not write PNG")


def write_pair(folder: Path, frame, extra_meta: dict | None = None) -> Path:
    """Write a simulator render (:class:`~lunar_recon.sim.scene.RenderedPair`) as ``folder`` atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write_png(tmp / "left.png", frame.left)
        write_png(tmp / "right.png", frame.right)
        np.save(tmp / "depth_left.npy", frame.depth_left.astype(np.float32))
        np.save(tmp / "depth_right.npy", frame.depth_right.astype(np.float32))
        camera = {
            "K_left": _k_dict(frame.K_left),
            "K_right": _k_dict(frame.K_right),
            "T_world_from_left": frame.T_world_from_left.tolist(),
            "T_world_from_right": frame.T_world_from_right.tolist(),
            "baseline_m": frame.baseline_m,
            "up_left": frame.up_left.tolist(),
            "sun_world": frame.sun_world.tolist(),
            "sun_left": frame.sun_left.tolist(),
            "rectified": bool(frame.plan.rig.rectified) if frame.plan is not None else False,
        }
        (tmp / "camera.json").write_text(json.dumps(camera, indent=1))
        truth = {"slope_left_deg": frame.slope_left_deg.astype(np.float16), "shadow_left": frame.shadow_left}
        if frame.hazard is not None:
            h = frame.hazard
            truth.update(
                hazard=h.hazard,
                hazard_slope_deg=h.slope_deg,
                hazard_roughness_m=h.roughness_m,
                hazard_elevation_m=h.elevation_m,
                hazard_origin=np.array(h.origin),
                hazard_resolution=np.array(h.resolution),
                hazard_R_grid_from_left=h.R_grid_from_input,
            )
        if frame.terrain is not None:
            t = frame.terrain
            truth.update(dem_z=t.z, dem_origin=np.array([t.x0, t.y0]), dem_cell=np.array(t.cell), rocks=t.rocks)
        np.savez_compressed(tmp / "truth.npz", **truth)
        meta = {"plan": frame.plan.to_dict() if frame.plan is not None else None, **(extra_meta or {})}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=float))
        if folder.exists():
            shutil.rmtree(folder)
        durable_replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def clean_partial(folder: Path) -> int:
    """Remove half-written pairs left by an interrupted run; returns how many."""
    n = 0
    for p in Path(folder).glob("**/.*.tmp"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


# ---- reading ---------------------------------------------------------------------------------------
def _read_image(path: Path) -> np.ndarray:
    if not path.exists():
        raise DatasetError(f"{path}: missing image")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: unreadable image (corrupt or not an image)")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.shape[2] == 3 else img[..., 0]
    return img


def _hazard_truth(t: dict) -> HazardMap | None:
    """The landing-site truth a pair's ``truth.npz`` holds, as a map on its own grid."""
    if "hazard" not in t:
        return None
    cls = t["hazard"].astype(np.int8)
    nan = np.full(cls.shape, np.nan, np.float32)
    return HazardMap(
        grid=GridSpec(tuple(t["hazard_origin"]), float(t["hazard_resolution"]), cls.shape),
        elevation_m=t.get("hazard_elevation_m", nan),
        slope_deg=t["hazard_slope_deg"],
        roughness_m=t["hazard_roughness_m"],
        roughness_rms_m=nan,
        coverage=np.ones(cls.shape, np.float32),
        hazard=cls,
        cost=np.where(cls == 1, 100, np.where(cls == 0, 0, -1)).astype(np.int8),
        R_grid_from_input=t["hazard_R_grid_from_left"],
        params=HazardParams(),
    )


def read_lunar_recon_pair(folder: Path) -> StereoFrame:
    folder = Path(folder)
    try:
        cam = json.loads((folder / "camera.json").read_text())
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
        depth_l = np.load(folder / "depth_left.npy")
        depth_r = np.load(folder / "depth_right.npy")
        truth = dict(np.load(folder / "truth.npz")) if (folder / "truth.npz").exists() else {}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{folder}: incomplete or corrupt pair: {exc}") from None
    T_wl, T_wr = np.array(cam["T_world_from_left"]), np.array(cam["T_world_from_right"])
    hazard_keys = {k for k in truth if k.startswith("hazard")}
    return StereoFrame(
        left=_read_image(folder / "left.png"),
        right=_read_image(folder / "right.png"),
        calibration=rig_calibration(
            _k_from(cam["K_left"]), _k_from(cam["K_right"]), np.linalg.inv(T_wl) @ T_wr, bool(cam["rectified"])
        ),
        name=f"{folder.parent.name}/{folder.name}",
        up_left=np.array(cam["up_left"]),
        sun_left=np.array(cam["sun_left"]) if "sun_left" in cam else None,
        T_world_from_left=T_wl,
        truth=GroundTruth(depth_l, depth_r, _hazard_truth(truth), {k: v for k, v in truth.items() if k not in hazard_keys}),
        meta=meta,
    )


def read_exr_depth(path: Path) -> np.ndarray:
    """Single-channel (half-)float EXR z-depth -> float32 metres (non-finite / <= 0 -> NaN)."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as f:
            channels = f.channels()
            name = "Y" if "Y" in channels else ("Z" if "Z" in channels else next(iter(channels)))
            depth = np.asarray(channels[name].pixels, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - OpenEXR raises several types
        raise DatasetError(f"{path}: unreadable EXR depth: {exc}") from None
    depth = depth.copy()
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def _stereolunar_pose(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = np.load(path)
        K, T = d["intrinsics"].astype(np.float64), d["cam2world"].astype(np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: unreadable camera file: {exc}") from None
    return K, T


def stereolunar_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(left, right) image stems of one StereoLunar 'paireK' folder: images grouped by camera
    pose, the k-th illumination of pose A paired with the k-th of pose B."""
    stems = sorted(p.with_suffix("") for p in Path(folder).glob("im_*.npz"))
    poses: list[tuple[np.ndarray, list[Path]]] = []
    for stem in stems:
        _, T = _stereolunar_pose(stem.with_suffix(".npz"))
        for T0, members in poses:
            if np.allclose(T0, T, atol=1e-3):
                members.append(stem)
                break
        else:
            poses.append((T, [stem]))
    if len(poses) != 2:
        raise DatasetError(f"{folder}: expected two camera poses, found {len(poses)}")
    return list(zip(poses[0][1], poses[1][1]))


def read_stereolunar_pair(left_stem: Path, right_stem: Path) -> StereoFrame:
    Kl, Tl = _stereolunar_pose(left_stem.with_suffix(".npz"))
    Kr, Tr = _stereolunar_pose(right_stem.with_suffix(".npz"))
    left, right = _read_image(left_stem.with_suffix(".jpg")), _read_image(right_stem.with_suffix(".jpg"))
    h, w = left.shape[:2]
    # Selenocentric frame: gravity 'up' is radial, evaluated at the left camera.
    up_left = Tl[:3, :3].T @ normalize(Tl[:3, 3])
    K_left, K_right = Intrinsics.from_matrix(Kl, w, h), Intrinsics.from_matrix(Kr, w, h)
    return StereoFrame(
        left=left,
        right=right,
        calibration=StereoCalibration(K_left, K_right, np.linalg.inv(Tl) @ Tr),
        name=f"{left_stem.parent.parent.name}/{left_stem.parent.name}/{left_stem.name}-{right_stem.name}",
        up_left=up_left,
        T_world_from_left=Tl,
        truth=GroundTruth(read_exr_depth(left_stem.with_suffix(".exr")), read_exr_depth(right_stem.with_suffix(".exr"))),
        meta={"format": "stereolunar"},
    )


class StereoDataset:
    """Pairs of a lunar_recon dataset (one split) or of a StereoLunar folder tree."""

    def __init__(self, root: str | os.PathLike, split: str | None = None):
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"{self.root}: no such dataset folder")
        info = self.root / "dataset.json"
        self.items: list = []
        if info.exists():
            self.format = "lunar_recon"
            self.info = json.loads(info.read_text())
            splits = [split] if split else sorted(self.info.get("splits", {}))
            for s in splits:
                found = [("lr", p) for p in sorted((self.root / s).glob("[0-9]*")) if p.is_dir()]
                expected = int(self.info.get("splits", {}).get(s, 0))
                if len(found) < expected:  # an interrupted simulate: say so, read what is there
                    warnings.warn(
                        f"{self.root}: split {s!r} holds {len(found)} of its {expected} pairs (an "
                        "interrupted 'lunar-recon simulate'? the same command finishes it)",
                        stacklevel=2,
                    )
                self.items += found
        elif any(self.root.glob("**/im_*.npz")):
            self.format = "stereolunar"
            self.info = {"format": "stereolunar"}
            for folder in sorted({p.parent for p in self.root.glob("**/im_*.npz")}):
                self.items += [("sl", pair) for pair in stereolunar_pairs(folder)]
        else:
            raise DatasetError(f"{self.root}: neither a lunar_recon dataset (dataset.json) nor StereoLunar data")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> StereoFrame:
        kind, item = self.items[i]
        return read_lunar_recon_pair(item) if kind == "lr" else read_stereolunar_pair(*item)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
