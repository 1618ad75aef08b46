"""lunar_recon: stereo depth and landing-site hazard maps from distilled MASt3R students.

The public API (what the node and the tools use, importable from here)::

    from lunar_recon import StereoReconstructor, StereoCalibration, load_stereo_model
    rec = StereoReconstructor(load_stereo_model("default")).reconstruct(left, right, rig, up_in_left=up)

Names are imported on first use, so ``lunar-recon --help`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "StereoReconstructor": "lunar_recon.pipeline",
    "ReconstructionParams": "lunar_recon.pipeline",
    "Reconstruction": "lunar_recon.pipeline",
    "StereoCalibration": "lunar_recon.geometry.stereo",
    "Intrinsics": "lunar_recon.geometry.camera",
    "HazardParams": "lunar_recon.geometry.hazard",
    "HazardMap": "lunar_recon.geometry.hazard",
    "hazard_map": "lunar_recon.geometry.hazard",
    "load_stereo_model": "lunar_recon.models.registry",
    "StereoFrame": "lunar_recon.data.frame",
    "GroundTruth": "lunar_recon.data.frame",
    "configure_program": "lunar_recon.runtime",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lunar_recon' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
