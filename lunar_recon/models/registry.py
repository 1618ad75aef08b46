"""Model names the node and the tools accept: a checkpoint path, 'sgbm' (the classical
baseline), 'sgbm-wls' (the same with OpenCV's WLS disparity filter), or 'default' (the
student shipped with the package, else SGBM)."""
from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_STUDENT = "lunar_student_default.pt"
CLASSICAL = ("sgbm", "sgbm-wls")


def shipped_model_path() -> Path | None:
    """The default student installed with the package, if one ships."""
    for cand in (SHIPPED_DIR / DEFAULT_STUDENT, _ros_share() / DEFAULT_STUDENT if _ros_share() else None):
        if cand is not None and cand.exists():
            return cand
    return None


def _ros_share() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("lunar_recon")) / "models"
    except Exception:  # noqa: BLE001 - not installed through colcon
        return None


def load_stereo_model(name: str, device: str = "cpu"):
    """A model with ``predict(left, right, size)`` for the reconstruction pipeline."""
    from ..geometry.stereo import SGBMParams
    from ..pipeline import SGBMModel
    from .checkpoint import load_model

    if name in ("", "default"):
        path = shipped_model_path()
        if path is None:
            return SGBMModel()
        name = str(path)
    if name == "sgbm":
        return SGBMModel()
    if name == "sgbm-wls":
        return SGBMModel(SGBMParams(wls_lambda=8000.0))
    return load_model(name, device=device)


def model_label(name: str) -> str:
    if name in ("", "default"):
        path = shipped_model_path()
        return f"default ({path.name})" if path else "default (sgbm: no student shipped)"
    if name in CLASSICAL:
        return name
    p = Path(name)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name  # 'teacher/best.pt' vs 'student/best.pt'

