"""Networks: the MASt3R / DUSt3R teachers (official weights load unchanged), the
students, checkpoint I/O and inference helpers."""

from .checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from .config import DUST3R_RELEASED, MAST3R_RELEASED, ConfigError, ModelConfig, parse_constructor_string
from .predict import PairPrediction, predict_pair
from .sgbm import SGBMModel
from .preprocess import load_images
from .stereo3d import AsymmetricCroCo3DStereo, AsymmetricMASt3R, build_model


__all__ = [
    "AsymmetricCroCo3DStereo",
    "AsymmetricMASt3R",
    "CheckpointError",
    "ConfigError",
    "DUST3R_RELEASED",
    "MAST3R_RELEASED",
    "ModelConfig",
    "PairPrediction",
    "SGBMModel",
    "build_model",
    "load_images",
    "load_model",
    "parse_constructor_string",
    "predict_pair",
    "read_checkpoint",
    "save_checkpoint",
]
