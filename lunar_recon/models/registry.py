"""Model names the node and the tools accept: a checkpoint path, an exported ``.onnx`` file,
'sgbm' (the classical baseline), 'sgbm-wls' (the same with OpenCV's WLS disparity filter), or
'default' (the student shipped with the package, else SGBM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_STUDENT = "lunar_student_default.pt"
# The default's second network, for pairs from orbit (its card: 'selected_above_range_m'):
# trained on StereoLunar-like orbital and oblique geometry, which costs the lander its slope.
ORBITAL_STUDENT = "lunar_student_orbital.pt"
CLASSICAL = ("sgbm", "sgbm-wls")


@dataclass(frozen=True)
class RangeSelectedNetwork:
    """A model's second network for the pairs beyond ``min_range_m`` (metric median range),
    held as ``model.orbital`` (a plain attribute: not a submodule of the primary, whose weights,
    parameter count and export stay its own)."""

    model: Any
    min_range_m: float


def shipped_model_path() -> Path | None:
    """The default student installed with the package (package data, pip and colcon alike), if one ships."""
    path = SHIPPED_DIR / DEFAULT_STUDENT
    return path if path.exists() else None


def resolve_network_file(name: str) -> str:
    """The checkpoint file a model name stands for, for the tools that need a network
    (``info``, ``export``): 'default' is the shipped student; a classical matcher has none."""
    if name in ("", "default"):
        path = shipped_model_path()
        if path is None:
            raise ValueError("model 'default' is SGBM here (no student is shipped with this install): it has no network file")
        return str(path)
    if name in CLASSICAL:
        raise ValueError(f"model {name!r} is the classical matcher: it has no network file")
    return name


def load_stereo_model(name: str, device: str = "cpu"):
    """A model with ``predict(left, right, size)`` for the reconstruction pipeline."""
    from ..geometry.stereo import SGBMParams
    from .checkpoint import load_model
    from .sgbm import SGBMModel

    if name in ("", "default"):
        if shipped_model_path() is None:
            return SGBMModel()
        model = load_model(resolve_network_file(name), device=device)
        orbital = SHIPPED_DIR / ORBITAL_STUDENT
        if orbital.exists():
            network = load_model(str(orbital), device=device)
            _share_equal_head(model, network)
            model.orbital = RangeSelectedNetwork(network, orbital_min_range_m(network, str(orbital)))
        return model
    if name == "sgbm":
        return SGBMModel()
    if name == "sgbm-wls":
        return SGBMModel(SGBMParams(wls_lambda=8000.0))
    if str(name).endswith(".onnx"):
        from .onnx import OnnxStereoModel

        if not Path(name).exists():
            raise FileNotFoundError(f"{name}: no such ONNX model")
        return OnnxStereoModel(name)
    return load_model(name, device=device)


def _share_equal_head(primary, network) -> None:
    """Give ``network`` the primary's stereo head module where their weights are equal (the
    shipped pair's are): one module, and a pair's head depth serves both networks."""
    import torch

    head, own = getattr(primary, "stereo_head", None), getattr(network, "stereo_head", None)
    if head is None or own is None:
        return
    mine, theirs = head.state_dict(), own.state_dict()
    if mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine):
        network.stereo_head = head


def orbital_min_range_m(network, source: str) -> float:
    """The range (m) beyond which a range-selected network serves, from its card."""
    value = getattr(network, "meta", {}).get("card", {}).get("selected_above_range_m")
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{source}: a range-selected network's card must state selected_above_range_m > 0")
    return float(value)


def model_label(name: str) -> str:
    if name in ("", "default"):
        path = shipped_model_path()
        return f"default ({path.name})" if path else "default (sgbm: no student shipped)"
    if name in CLASSICAL:
        return name
    p = Path(name)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name  # 'teacher/best.pt' vs 'student/best.pt'
