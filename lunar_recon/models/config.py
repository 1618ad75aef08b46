"""Model configuration: one dataclass describes every network lunar_recon builds.

The same dataclass describes the released MASt3R / DUSt3R teachers and the distilled
students, round-trips to YAML, and is stored inside every lunar_recon checkpoint so a
checkpoint alone rebuilds its model.  The official checkpoints carry a Python
constructor string instead (``args.model``); :func:`parse_constructor_string` reads it
without evaluating anything.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

INF = math.inf

# Official class names and what they are called here.
ARCH_BY_CLASS = {"AsymmetricMASt3R": "mast3r", "AsymmetricCroCo3DStereo": "dust3r"}
CLASS_BY_ARCH = {v: k for k, v in ARCH_BY_CLASS.items()}

HEAD_TYPES = ("catmlp+dpt", "dpt", "linear")
ENCODER_TYPES = ("vit", "mobilenet", "resnet")  # CNN encoders: students only


class ConfigError(ValueError):
    """A model description that cannot be built."""


@dataclass
class ModelConfig:
    """Architecture of a MASt3R-family two-view network.

    Defaults are the released ``MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric``.
    Head widths (``dpt_*``, ``local_feat_hidden_dim``) are constants of the official head
    factories; they are fields here so that the tiny test vectors and narrow students fit.
    """

    arch: str = "mast3r"  # "mast3r" (AsymmetricMASt3R) or "dust3r" (AsymmetricCroCo3DStereo)
    encoder_type: str = "vit"
    patch_size: int = 16
    img_size: tuple[int, int] = (512, 512)  # unused at inference, kept for the official string
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_base: float = 100.0  # pos_embed='RoPE100'
    norm_im2_in_dec: bool = True
    head_type: str = "catmlp+dpt"
    output_mode: str = "pts3d+desc24"
    depth_mode: tuple[str, float, float] = ("exp", -INF, INF)
    conf_mode: tuple[str, float, float] | None = ("exp", 1.0, INF)
    desc_mode: str = "norm"
    two_confs: bool = True
    desc_conf_mode: tuple[str, float, float] | None = ("exp", 0.0, INF)
    # Head widths (official constants by default).
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    dpt_hooks: tuple[int, int, int, int] | None = None  # None: official rule [0, L/2, 3L/4, L]
    local_feat_hidden_dim: int | None = None  # None: 4 * (enc_embed_dim + dec_embed_dim)
    name: str = ""  # free text (preset name, provenance)
    extra: dict[str, Any] = field(default_factory=dict)  # reserved for later fields

    def __post_init__(self) -> None:
        for key in ("img_size", "depth_mode", "conf_mode", "desc_conf_mode", "dpt_layer_dims", "dpt_hooks"):
            value = getattr(self, key)
            if isinstance(value, list):
                setattr(self, key, tuple(_from_yaml_number(v) for v in value))
        self.validate()

    # ---- derived values -------------------------------------------------------------
    @property
    def class_name(self) -> str:
        return CLASS_BY_ARCH[self.arch]

    @property
    def desc_dim(self) -> int | None:
        """Local descriptor size from ``output_mode`` ('pts3d+desc24' -> 24)."""
        if "+desc" not in self.output_mode:
            return None
        return int(self.output_mode.split("+desc")[1])

    @property
    def hooks(self) -> tuple[int, int, int, int]:
        if self.dpt_hooks is not None:
            return tuple(self.dpt_hooks)
        depth = self.dec_depth
        return (0, depth * 2 // 4, depth * 3 // 4, depth)

    @property
    def local_hidden(self) -> int:
        if self.local_feat_hidden_dim is not None:
            return self.local_feat_hidden_dim
        return 4 * (self.enc_embed_dim + self.dec_embed_dim)

    @property
    def head_channels(self) -> int:
        """Channels of the DPT raw map: 3 coordinates, plus a confidence logit."""
        return 3 + int(self.conf_mode is not None)

    # ---- checks ---------------------------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid model config: {msg}")

        need(self.arch in CLASS_BY_ARCH, f"arch must be one of {sorted(CLASS_BY_ARCH)}, got {self.arch!r}")
        need(self.encoder_type in ENCODER_TYPES, f"encoder_type must be one of {ENCODER_TYPES}")
        need(
            self.encoder_type == "vit" or (self.patch_size == 16 and self.enc_embed_dim % 8 == 0),
            "CNN encoders need patch_size 16 and a width that is a multiple of 8",
        )
        need(self.head_type in HEAD_TYPES, f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        need(
            self.output_mode == "pts3d" or self.output_mode.startswith("pts3d+desc"),
            f"output_mode {self.output_mode!r} is not 'pts3d' or 'pts3d+descN'",
        )
        need(
            (self.head_type == "catmlp+dpt") == (self.desc_dim is not None),
            "descriptors ('pts3d+descN') go with head_type 'catmlp+dpt' and only with it",
        )
        need(self.patch_size > 0, "patch_size must be positive")
        for prefix in ("enc", "dec"):
            dim = getattr(self, f"{prefix}_embed_dim")
            heads = getattr(self, f"{prefix}_num_heads")
            need(getattr(self, f"{prefix}_depth") >= 1, f"{prefix}_depth must be >= 1")
            need(heads >= 1 and dim % heads == 0, f"{prefix}_embed_dim {dim} not divisible by {heads} heads")
            need((dim // heads) % 4 == 0, f"{prefix} head size {dim // heads} must be a multiple of 4 for RoPE2D")
        need(self.depth_mode[0] in ("exp", "linear", "square"), f"unknown depth_mode {self.depth_mode}")
        need(self.depth_mode[1] == -INF and self.depth_mode[2] == INF, "only unbounded depth_mode is supported")
        hooks = self.hooks
        need(
            len(hooks) == 4 and all(0 <= h <= self.dec_depth for h in hooks),
            f"DPT hooks {hooks} must be 4 indices in 0..{self.dec_depth}",
        )
        need(len(self.dpt_layer_dims) == 4, "dpt_layer_dims needs 4 widths")

    # ---- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)  # safe_dump writes +/-inf as .inf / -.inf; safe_load reads them back
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields: {unknown}")
        return cls(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "ModelConfig":
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ConfigError("model config YAML must be a mapping")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _from_yaml_number(v: Any) -> Any:
    if isinstance(v, str) and v.lower() in ("inf", "+inf", "-inf"):
        return float(v)
    return v


# ---- the official constructor strings ---------------------------------------------------
_OFFICIAL_KWARGS = {
    "enc_embed_dim",
    "enc_depth",
    "enc_num_heads",
    "dec_embed_dim",
    "dec_depth",
    "dec_num_heads",
    "head_type",
    "output_mode",
    "depth_mode",
    "conf_mode",
    "desc_conf_mode",
    "two_confs",
    "desc_mode",
    "patch_size",
    "mlp_ratio",
    "norm_im2_in_dec",
    "img_size",
}
# Accepted and ignored: pre-training or training-time options with no effect on inference.
_IGNORED_KWARGS = {"patch_embed_cls", "landscape_only", "freeze", "mask_ratio", "pos_embed"}


def _literal(node: ast.AST, text: str) -> Any:
    """Evaluate a literal argument; the only name allowed is ``inf``."""
    if isinstance(node, ast.Name):
        if node.id == "inf":
            return INF
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise ConfigError(f"constructor string uses the name {node.id!r}, only literals and inf are allowed: {text}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, text) for e in node.elts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return float(node.args[0].value)  # float('inf') appears in some hand-written strings
    raise ConfigError(f"unsupported expression in constructor string: {ast.dump(node)[:80]}")


def parse_constructor_string(text: str) -> ModelConfig:
    """Build a :class:`ModelConfig` from an official ``args.model`` string, e.g.
    ``AsymmetricMASt3R(pos_embed='RoPE100', ..., two_confs=True)``.

    The string is parsed with :mod:`ast` and never evaluated.  Head widths are not in
    it; :func:`lunar_recon.models.checkpoint.infer_head_widths` reads them from tensors.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"cannot parse model constructor string {text!r}: {exc}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ConfigError(f"model constructor string is not a call: {text!r}")
    if call.func.id not in ARCH_BY_CLASS:
        raise ConfigError(f"unknown model class {call.func.id!r} (known: {sorted(ARCH_BY_CLASS)})")
    if call.args:
        raise ConfigError("model constructor string has positional arguments; only keywords are supported")
    kwargs = {kw.arg: _literal(kw.value, text) for kw in call.keywords}
    unknown = sorted(set(kwargs) - _OFFICIAL_KWARGS - _IGNORED_KWARGS)
    if unknown:
        raise ConfigError(f"unsupported constructor arguments {unknown} in {text!r}")
    pos_embed = kwargs.get("pos_embed", "cosine")  # the CroCo default, which we do not support
    if not (isinstance(pos_embed, str) and pos_embed.startswith("RoPE")):
        raise ConfigError(f"only RoPE position embeddings are supported, got pos_embed={pos_embed!r}")
    arch = ARCH_BY_CLASS[call.func.id]
    # Constructor defaults of the official classes (not those of ModelConfig).
    fields: dict[str, Any] = dict(
        arch=arch,
        rope_base=float(pos_embed[4:] or 100),
        patch_size=16,
        mlp_ratio=4.0,
        enc_embed_dim=768,
        enc_depth=12,
        enc_num_heads=12,
        dec_embed_dim=512,
        dec_depth=8,
        dec_num_heads=16,
        norm_im2_in_dec=True,
        img_size=(224, 224),
        head_type="linear",
        output_mode="pts3d",
        depth_mode=("exp", -INF, INF),
        conf_mode=("exp", 1.0, INF),
        desc_mode="norm",
        two_confs=False,
        desc_conf_mode=None,
    )
    fields.update({k: v for k, v in kwargs.items() if k in _OFFICIAL_KWARGS})
    if fields["desc_conf_mode"] is None and "+desc" in fields["output_mode"]:
        fields["desc_conf_mode"] = fields["conf_mode"]  # official default
    if fields["conf_mode"] is not None:
        fields["conf_mode"] = tuple(fields["conf_mode"])
    return ModelConfig(**fields)


def to_constructor_string(cfg: ModelConfig) -> str:
    """The official constructor string for ``cfg`` (inference layout), for export to naver code."""

    def fmt(v: Any) -> str:
        if isinstance(v, float) and math.isinf(v):
            return "-inf" if v < 0 else "inf"
        if isinstance(v, tuple):
            return "(" + ", ".join(fmt(x) for x in v) + ")"
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return repr(v)

    parts = [
        f"pos_embed='RoPE{int(cfg.rope_base)}'",
        "patch_embed_cls='PatchEmbedDust3R'",
        f"img_size={fmt(tuple(cfg.img_size))}",
        f"head_type={cfg.head_type!r}",
        f"output_mode={cfg.output_mode!r}",
        f"depth_mode={fmt(cfg.depth_mode)}",
        f"conf_mode={fmt(cfg.conf_mode)}",
    ]
    for k in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads"):
        parts.append(f"{k}={getattr(cfg, k)}")
    if cfg.arch == "mast3r":
        parts.append(f"two_confs={cfg.two_confs}")
        parts.append(f"desc_conf_mode={fmt(cfg.desc_conf_mode)}")
    parts.append("landscape_only=False")
    return f"{cfg.class_name}({', '.join(parts)})"


MAST3R_RELEASED = ModelConfig(name="MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric")
DUST3R_RELEASED = ModelConfig(
    arch="dust3r",
    head_type="dpt",
    output_mode="pts3d",
    two_confs=False,
    desc_conf_mode=None,
    name="DUSt3R_ViTLarge_BaseDecoder_512_dpt",
)
