"""Model names the node and the tools accept: a checkpoint path, an exported ``.onnx`` file,
'sgbm' (the classical baseline), 'sgbm-wls' (the same with OpenCV's WLS disparity filter), or
'default' (the student shipped with the package, else SGBM)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_STUDENT = "lunar_student_default.pt"
CLASSICAL = ("sgbm", "sgbm-wls")


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
        name = resolve_network_file(name)
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


def model_label(name: str) -> str:
    if name in ("", "default"):
        path = shipped_model_path()
        return f"default ({path.name})" if path else "default (sgbm: no student shipped)"
    if name in CLASSICAL:
        return name
    p = Path(name)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name  # 'teacher/best.pt' vs 'student/best.pt'
