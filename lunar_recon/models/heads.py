"""Prediction heads: DPT (dense prediction transformer), MASt3R's local-feature MLP,
DUSt3R's linear head, and the per-pixel post-processing of their raw maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Mlp
from .config import ModelConfig


# ---- post-processing ---------------------------------------------------------------------
def reg_dense_depth(xyz: torch.Tensor, mode: tuple) -> torch.Tensor:
    """Raw 3-vector -> 3-D point.  'exp' keeps the direction and maps the norm r to e^r - 1."""
    kind = mode[0]
    if kind == "linear":
        return xyz
    d = xyz.norm(dim=-1, keepdim=True)
    xyz = xyz / d.clamp(min=1e-8)
    if kind == "square":
        return xyz * d.square()
    if kind == "exp":
        if torch.onnx.is_in_onnx_export():  # ONNX has no expm1; exp - 1 differs by < 1e-7 here
            return xyz * (torch.exp(d) - 1)
        return xyz * torch.expm1(d)
    raise ValueError(f"unknown depth mode {kind!r}")


def reg_dense_conf(x: torch.Tensor, mode: tuple) -> torch.Tensor:
    """Confidence logit -> confidence: 'exp' gives vmin + e^x (MASt3R conf >= 1, desc_conf > 0)."""
    kind, vmin, vmax = mode
    if kind == "exp":
        return vmin + x.exp().clamp(max=vmax - vmin)
    if kind == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unknown confidence mode {kind!r}")


def reg_desc(desc: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "norm":
        return desc / desc.norm(dim=-1, keepdim=True)  # no epsilon, as the official code
    raise ValueError(f"unknown descriptor mode {mode!r}")


def postprocess(raw: torch.Tensor, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Raw head map (B, C, H, W) -> output dict with channels last."""
    fmap = raw.permute(0, 2, 3, 1)
    res = {"pts3d": reg_dense_depth(fmap[..., 0:3], cfg.depth_mode)}
    if cfg.conf_mode is not None:
        res["conf"] = reg_dense_conf(fmap[..., 3], cfg.conf_mode)
    desc_dim = cfg.desc_dim
    if desc_dim is not None:
        start = cfg.head_channels
        res["desc"] = reg_desc(fmap[..., start : start + desc_dim], cfg.desc_mode)
        if cfg.two_confs:
            res["desc_conf"] = reg_dense_conf(fmap[..., start + desc_dim], cfg.desc_conf_mode)
        else:
            res["desc_conf"] = res["conf"].clone()
    return res


# ---- DPT ----------------------------------------------------------------------------------
class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Fuse a coarser path with a skip connection, upsample x2 (align_corners=True)."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)  # unused in refinenet4, present in the weights
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTScratch(nn.Module):
    def __init__(self, layer_dims: tuple[int, ...], features: int):
        super().__init__()
        self.layer1_rn = nn.Conv2d(layer_dims[0], features, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(layer_dims[1], features, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(layer_dims[2], features, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(layer_dims[3], features, 3, padding=1, bias=False)
        # The official module lists the same four convs a second time under this name, so
        # every state dict carries 'layer_rn.{0..3}.weight' aliases; mirroring it keeps the
        # key set identical (parameters() counts them once).
        self.layer_rn = nn.ModuleList([self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn])
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features)


class DPT(nn.Module):
    """Dense prediction head reading four token layers (hooks) of one view."""

    def __init__(self, cfg: ModelConfig, out_channels: int):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.hooks = cfg.hooks
        dims = cfg.dpt_layer_dims
        token_dims = [cfg.enc_embed_dim if h == 0 else cfg.dec_embed_dim for h in self.hooks]
        f = cfg.dpt_feature_dim
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(token_dims[0], dims[0], 1), nn.ConvTranspose2d(dims[0], dims[0], 4, stride=4)),
                nn.Sequential(nn.Conv2d(token_dims[1], dims[1], 1), nn.ConvTranspose2d(dims[1], dims[1], 2, stride=2)),
                nn.Sequential(nn.Conv2d(token_dims[2], dims[2], 1)),
                nn.Sequential(nn.Conv2d(token_dims[3], dims[3], 1), nn.Conv2d(dims[3], dims[3], 3, stride=2, padding=1)),
            ]
        )
        self.scratch = DPTScratch(dims, f)
        self.head = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(f // 2, cfg.dpt_last_dim, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(cfg.dpt_last_dim, out_channels, 1),
        )
        # Token maps arrive channels-last (a view of (B, N, C)); channels-last weights keep
        # oneDNN from reordering every activation: the head runs ~1.7x faster on CPU, same maths.
        self.to(memory_format=torch.channels_last)

    def forward(self, decout: list[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        gh, gw = image_hw[0] // self.patch_size, image_hw[1] // self.patch_size
        layers = []
        for i, hook in enumerate(self.hooks):
            tokens = decout[hook]
            b, n, c = tokens.shape
            x = tokens.transpose(1, 2).reshape(b, c, gh, gw)
            layers.append(self.scratch.layer_rn[i](self.act_postprocess[i](x)))
        s = self.scratch
        # Odd token grids: the x2 upsampled coarsest path is one row/column too big; keep the first.
        path4 = s.refinenet4(layers[3])[:, :, : layers[2].shape[2], : layers[2].shape[3]]
        path3 = s.refinenet3(path4, layers[2])
        path2 = s.refinenet2(path3, layers[1])
        path1 = s.refinenet1(path2, layers[0])
        return self.head(path1)


# ---- the three head types ------------------------------------------------------------------
class DPTHead(nn.Module):
    """DUSt3R 'dpt': points + confidence from the DPT map."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dpt = DPT(cfg, cfg.head_channels)

    def forward(self, decout: list[torch.Tensor], image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        return postprocess(self.dpt(decout, image_hw), self.cfg)


class CatMLPDPTHead(nn.Module):
    """MASt3R 'catmlp+dpt': DPT points + confidence, and per-pixel descriptors from an MLP
    on [encoder tokens | last decoder tokens], pixel-shuffled back to full resolution."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dpt = DPT(cfg, cfg.head_channels)
        p = cfg.patch_size
        in_dim = cfg.enc_embed_dim + cfg.dec_embed_dim
        out_dim = (cfg.desc_dim + int(cfg.two_confs)) * p * p
        self.head_local_features = Mlp(in_dim, cfg.local_hidden, out_dim)

    def forward(self, decout: list[torch.Tensor], image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        raw = self.dpt(decout, image_hw)
        p = self.cfg.patch_size
        tokens = torch.cat([decout[0], decout[-1]], dim=-1)
        b, n, _ = tokens.shape
        local = self.head_local_features(tokens).transpose(1, 2)
        local = F.pixel_shuffle(local.reshape(b, -1, image_hw[0] // p, image_hw[1] // p), p)
        return postprocess(torch.cat([raw, local], dim=1), self.cfg)


class LinearHead(nn.Module):
    """DUSt3R 'linear': one Linear on the last decoder tokens, pixel-shuffled."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        self.proj = nn.Linear(cfg.dec_embed_dim, cfg.head_channels * p * p)

    def forward(self, decout: list[torch.Tensor], image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        p = self.cfg.patch_size
        tokens = decout[-1]
        b = tokens.shape[0]
        feat = self.proj(tokens).transpose(1, 2).reshape(b, -1, image_hw[0] // p, image_hw[1] // p)
        return postprocess(F.pixel_shuffle(feat, p), self.cfg)


def build_head(cfg: ModelConfig) -> nn.Module:
    return {"dpt": DPTHead, "catmlp+dpt": CatMLPDPTHead, "linear": LinearHead}[cfg.head_type](cfg)
