"""Checkpoint I/O: the official MASt3R / DUSt3R layout, plain state dicts, and
lunar_recon's own checkpoints (config stored inside).

Nothing is ever unpickled as code: every file goes through ``torch.load(...,
weights_only=True)`` with ``argparse.Namespace`` as the only extra type allowed (the
official files keep their training arguments in one).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..fileio import durable_replace

from .config import ConfigError, ModelConfig, parse_constructor_string
from .stereo3d import AsymmetricCroCo3DStereo, build_model

FORMAT = "lunar_recon.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""


# Tensors the official models carry that a file may lack without harm: the aliases of
# DPTScratch.layer{1..4}_rn, and two tensors inference never reads.
def _is_optional_key(key: str) -> bool:
    return ".dpt.scratch.layer_rn." in key or key == "mask_token" or ".scratch.refinenet4.resConfUnit1." in key


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` the file safely, with clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (not a torch zip archive; truncated or another file type)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler refused a global: name it, and never pass on torch's
        # advice to retry with weights_only=False (that would run the file's code).
        found = _REFUSED_GLOBAL.search(str(exc))
        what = f"the global {found.group(1)}" if found else "a global that is not a tensor or plain container"
        raise CheckpointError(
            f"{path}: not loaded, for safety: the file holds code or an object that unpickling would construct "
            f"({what}); lunar_recon loads only tensors, plain containers and argparse.Namespace. Re-save the "
            "state dict (torch.save(model.state_dict(), ...)) from code you trust."
        ) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or truncated?): {text}") from None


# "... unsupported GLOBAL posix.system whose module ..." / "Unsupported global: GLOBAL eval was not ..."
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def infer_head_widths(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Head widths from tensor shapes (they are not part of the official constructor string)."""
    out: dict[str, Any] = {}
    pre = "downstream_head1."
    if pre + "dpt.scratch.layer1_rn.weight" in state_dict:
        out["dpt_feature_dim"] = int(state_dict[pre + "dpt.scratch.layer1_rn.weight"].shape[0])
        out["dpt_layer_dims"] = tuple(int(state_dict[f"{pre}dpt.act_postprocess.{i}.0.weight"].shape[0]) for i in range(4))
        out["dpt_last_dim"] = int(state_dict[pre + "dpt.head.2.weight"].shape[0])
    if pre + "head_local_features.fc1.weight" in state_dict:
        out["local_feat_hidden_dim"] = int(state_dict[pre + "head_local_features.fc1.weight"].shape[0])
    return out


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):  # saved from DistributedDataParallel
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_state_dict_checked(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load that accepts the known optional tensors and names every problem."""
    state_dict = _strip_prefix(state_dict)
    if not any(k.startswith("dec_blocks2.") for k in state_dict) and any(k.startswith("dec_blocks.") for k in state_dict):
        # CroCo pre-training files have one decoder; the official loader copies it to the second.
        state_dict.update(
            {"dec_blocks2." + k[len("dec_blocks.") :]: v for k, v in list(state_dict.items()) if k.startswith("dec_blocks.")}
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not _is_optional_key(k)]
    unexpected = [k for k in state_dict if k not in expected]
    bad_shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if bad_shapes:
        problems.append(f"shape mismatches ({len(bad_shapes)}): {_short(bad_shapes)}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(problems))
    # Optional keys absent from the file keep the model's values (aliases share storage anyway).
    model.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=False)


def _short(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """'cpu', 'cuda[:N]' or 'auto'; a CUDA request without CUDA falls back to CPU with a warning."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        import warnings

        warnings.warn(f"device {name!r} requested but CUDA is not available: running on CPU", RuntimeWarning)
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from None


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    config: ModelConfig | Mapping[str, Any] | str | os.PathLike | None = None,
) -> AsymmetricCroCo3DStereo:
    """Load any model lunar_recon understands, in eval mode.

    * official layout ``{'model': state_dict, 'args': Namespace(model='Asymmetric...(...)'), ...}``:
      the constructor string is parsed (never evaluated), head widths read from tensor shapes;
    * a plain state dict, with ``config`` (a :class:`ModelConfig`, a dict, or a YAML file);
    * lunar_recon's own checkpoints, which carry their config.
    """
    source = str(path)
    ckpt = read_checkpoint(path)
    cfg = _config_argument(config, source)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        state_dict = ckpt.get("model")
        if cfg is None:
            try:
                cfg = ModelConfig.from_dict(ckpt["config"])
            except (KeyError, TypeError, ConfigError) as exc:
                raise CheckpointError(f"{source}: lunar_recon checkpoint with an unusable config: {exc}") from None
    elif isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt.get("model"), Mapping):
        state_dict = ckpt["model"]
        if cfg is None:
            args = ckpt.get("args")
            text = getattr(args, "model", None) if args is not None else None
            if text is None and isinstance(args, Mapping):
                text = args.get("model")
            if not isinstance(text, str):
                raise CheckpointError(f"{source}: official-layout checkpoint without args.model; pass config=")
            try:
                cfg = parse_constructor_string(text).replace(**infer_head_widths(_strip_prefix(state_dict)))
            except ConfigError as exc:
                raise CheckpointError(f"{source}: {exc}") from None
    elif isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state_dict = ckpt
        if cfg is None:
            raise CheckpointError(f"{source}: a plain state dict carries no architecture; pass config=")
    else:
        raise CheckpointError(
            f"{source}: not a model checkpoint (found {type(ckpt).__name__}"
            f"{' with keys ' + _short([str(k) for k in ckpt]) if isinstance(ckpt, Mapping) else ''})"
        )
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: checkpoint has no state dict under 'model'")
    try:
        model = build_model(cfg)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    load_state_dict_checked(model, state_dict, source)
    own = isinstance(ckpt, dict) and ckpt.get("format") == FORMAT
    # Plain metadata of lunar_recon checkpoints (e.g. the shipped model card: inference size, scale mode).
    model.meta = dict(ckpt.get("meta", {})) if own else {}
    # The calibrated-stereo head of a student (models.stereo_head), None for every other model.
    model.stereo_head = _stereo_head(ckpt["stereo_head"], source) if own and ckpt.get("stereo_head") else None
    return model.to(resolve_device(device)).eval()


def _stereo_head(payload: Any, source: str):
    from .stereo_head import EpipolarStereoHead, StereoHeadConfig

    if not isinstance(payload, Mapping) or not isinstance(payload.get("model"), Mapping):
        raise CheckpointError(f"{source}: 'stereo_head' must hold a config and a state dict")
    try:
        head = EpipolarStereoHead(StereoHeadConfig.from_dict(dict(payload.get("config") or {})))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unusable stereo head config: {exc}") from None
    load_state_dict_checked(head, payload["model"], f"{source} (stereo head)")
    return head.to(memory_format=torch.channels_last)  # its convolutions' fast layout on the CPU


def read_stereo_head(path: str | os.PathLike):
    """A head trained by ``lunar-recon train-stereo-head`` (``stereo_head.pt``)."""
    return _stereo_head(read_checkpoint(path), str(path))


def attach_stereo_head(student: str | os.PathLike, head: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A copy of the ``student`` checkpoint that carries the trained ``head``."""
    ckpt = read_checkpoint(student)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT):
        raise CheckpointError(f"{student}: only lunar_recon checkpoints carry a stereo head")
    trained = read_stereo_head(head)
    ckpt = dict(ckpt, stereo_head={"config": trained.config.to_dict(), "model": trained.state_dict()})
    return atomic_torch_save(ckpt, out)


def _config_argument(config, source: str) -> ModelConfig | None:
    if config is None or isinstance(config, ModelConfig):
        return config
    if isinstance(config, Mapping):
        return ModelConfig.from_dict(dict(config))
    p = Path(config)
    if not p.exists():
        raise CheckpointError(f"{source}: config file {p} does not exist")
    return ModelConfig.from_yaml(p.read_text())


def save_checkpoint(model: AsymmetricCroCo3DStereo, path: str | os.PathLike, **meta: Any) -> Path:
    """Write a lunar_recon checkpoint (config + weights + plain metadata) atomically."""
    head = getattr(model, "stereo_head", None)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("stereo_head.")}
    payload = {"format": FORMAT, "config": model.config.to_dict(), "model": weights, "meta": meta}
    if head is not None:
        payload["stereo_head"] = {"config": head.config.to_dict(), "model": head.state_dict()}
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then a durable rename: readers
    never see half a file, and a power loss never leaves an empty finished one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        durable_replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
