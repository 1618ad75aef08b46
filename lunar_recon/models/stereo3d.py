"""The asymmetric two-view network of CroCo / DUSt3R / MASt3R.

A shared ViT encoder embeds both images; two decoder stacks (one per view) run in
lock-step, each cross-attending to the other view's tokens of the previous layer; one
head per view turns the decoder tokens into a pointmap (both in view 1's camera frame)
with confidences (and, for MASt3R, local descriptors).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .blocks import DecoderBlock, EncoderBlock, LockstepDecoderLayer, PatchEmbed, RoPE2D, layer_norm
from .cnn import ConvEncoder
from .config import ModelConfig
from .heads import build_head


def _image_hw(view: dict[str, Any]) -> tuple[int, int]:
    img = view["img"]
    if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"view['img'] must be a (B, 3, H, W) tensor, got {getattr(img, 'shape', type(img))}")
    hw = (int(img.shape[-2]), int(img.shape[-1]))
    shape = view.get("true_shape")
    if shape is not None:
        shape = torch.as_tensor(shape).reshape(-1, 2)
        if not bool((shape == torch.tensor(hw)).all()):
            raise ValueError(
                f"true_shape {shape.tolist()} disagrees with the image size {hw} (H, W); "
                "lunar_recon runs the inference layout: images in their own orientation"
            )
    return hw


class AsymmetricCroCo3DStereo(nn.Module):
    """DUSt3R (``head_type`` 'dpt' or 'linear', ``output_mode`` 'pts3d')."""

    # the model protocol's capabilities (pipeline.StereoModel): a pointmap whose metric scale
    # the pipeline's scale mode decides; no calibration needed to predict
    metric_depth = False
    needs_calibration = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        rope = RoPE2D(cfg.rope_base)
        if cfg.encoder_type == "vit":
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_embed_dim)
        else:  # a student's CNN encoder: same tokens and positions, no patch embedding
            self.cnn_encoder = ConvEncoder(cfg.encoder_type, cfg.enc_embed_dim, cfg.enc_depth, cfg.patch_size)
        # Pre-training leftover, never used at inference; kept so state dicts match exactly.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_embed_dim))
        self.enc_blocks = nn.ModuleList(
            EncoderBlock(cfg.enc_embed_dim, cfg.enc_num_heads, cfg.mlp_ratio, rope)
            for _ in range(cfg.enc_depth if cfg.encoder_type == "vit" else 0)
        )
        self.enc_norm = layer_norm(cfg.enc_embed_dim)
        self.decoder_embed = nn.Linear(cfg.enc_embed_dim, cfg.dec_embed_dim)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, rope, cfg.norm_im2_in_dec)
            for _ in range(cfg.dec_depth)
        )
        self.dec_blocks2 = nn.ModuleList(
            DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, rope, cfg.norm_im2_in_dec)
            for _ in range(cfg.dec_depth)
        )
        self.dec_norm = layer_norm(cfg.dec_embed_dim)
        self.downstream_head1 = build_head(cfg)
        self.downstream_head2 = build_head(cfg)
        # a student's calibrated-stereo head (models.stereo_head), stored beside the weights by the
        # checkpoint; None for the teacher and for students without one
        self.stereo_head: nn.Module | None = None

    def predict(self, image_left, image_right, size: int = 512, square_ok: bool = True, right_view: bool = True):
        """Numpy images of any size -> :class:`~lunar_recon.models.predict.PairPrediction`."""
        from .predict import predict_pair

        return predict_pair(self, image_left, image_right, size=size, square_ok=square_ok, right_view=right_view)

    # ---- encoder ------------------------------------------------------------------------
    def _encode(self, img: torch.Tensor, tokens: dict | None, views: tuple[str, ...]):
        if self.config.encoder_type != "vit":
            x, pos = self.cnn_encoder(img)
        else:
            x, pos = self.patch_embed(img)
        if tokens is not None:
            _store(tokens, views, "pos", pos)
            _store(tokens, views, "patch_embed", x)
        for i, blk in enumerate(self.enc_blocks):
            x = blk(x, pos)
            if tokens is not None:
                _store(tokens, views, f"enc_block.{i:02d}", x)
        x = self.enc_norm(x)
        if tokens is not None:
            _store(tokens, views, "enc_out", x)
        return x, pos

    def encode_pair(self, img1: torch.Tensor, img2: torch.Tensor, tokens: dict | None = None):
        if img1.shape == img2.shape:
            # One batch for both views: identical result, one pass over the weights.
            x, pos = self._encode(torch.cat([img1, img2]), tokens, ("view1", "view2"))
            b = img1.shape[0]
            return x[:b], pos[:b], x[b:], pos[b:]
        x1, pos1 = self._encode(img1, tokens, ("view1",))
        x2, pos2 = self._encode(img2, tokens, ("view2",))
        return x1, pos1, x2, pos2

    # ---- decoder ------------------------------------------------------------------------
    def decode(self, enc1, pos1, enc2, pos2, tokens: dict | None = None):
        """Both decoder stacks in lock-step; returns the two 'decout' lists the heads read."""
        f1 = self.decoder_embed(enc1)
        f2 = self.decoder_embed(enc2)
        if tokens is not None:
            tokens["view1.dec_embed"], tokens["view2.dec_embed"] = f1, f2
        out1, out2 = [enc1], [enc2]
        if tokens is None and not torch.is_grad_enabled() and not f1.is_meta and f1.shape == f2.shape:
            return self._decode_lockstep(f1, f2, pos1, pos2, out1, out2)
        for i, (blk1, blk2) in enumerate(zip(self.dec_blocks, self.dec_blocks2)):
            # Each view reads the other view's tokens of the previous layer.
            f1, f2 = blk1(f1, f2, pos1, pos2), blk2(f2, f1, pos2, pos1)
            out1.append(f1)
            out2.append(f2)
            if tokens is not None:
                tokens[f"view1.dec_block.{i:02d}"], tokens[f"view2.dec_block.{i:02d}"] = f1, f2
        out1[-1] = self.dec_norm(out1[-1])
        out2[-1] = self.dec_norm(out2[-1])
        if tokens is not None:
            tokens["view1.dec_out"], tokens["view2.dec_out"] = out1[-1], out2[-1]
        return out1, out2

    def _decode_lockstep(self, f1, f2, pos1, pos2, out1: list, out2: list):
        """Inference: both stacks as one batched computation per layer (same maths)."""
        layers = self._lockstep_layers()
        x = torch.stack([f1, f2])
        xpos, ypos = torch.cat([pos1, pos2]), torch.cat([pos2, pos1])
        for layer in layers:
            x = layer(x, x.flip(0), xpos, ypos)  # each view reads the other's previous layer
            out1.append(x[0])
            out2.append(x[1])
        out1[-1] = self.dec_norm(out1[-1])
        out2[-1] = self.dec_norm(out2[-1])
        return out1, out2

    def _lockstep_layers(self) -> list[LockstepDecoderLayer]:
        # Rebuilt whenever a decoder weight changed (training step, load_state_dict, .to()).
        key = tuple((p.data_ptr(), p._version) for p in self._decoder_params())
        cached = getattr(self, "_lockstep_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                layers = [LockstepDecoderLayer(b1, b2) for b1, b2 in zip(self.dec_blocks, self.dec_blocks2)]
            self._lockstep_cache = (key, layers)
        return self._lockstep_cache[1]

    def _decoder_params(self):
        for blocks in (self.dec_blocks, self.dec_blocks2):
            yield from blocks.parameters()

    # ---- full model ---------------------------------------------------------------------
    def forward(self, view1: dict[str, Any], view2: dict[str, Any], return_tokens: bool = False, view2_head: bool = True):
        """Official contract: ``view = {'img': (B,3,H,W) in [-1,1], 'true_shape': (B,2) [[H, W]]}``.

        Returns ``(res1, res2)``: ``res1['pts3d']`` (view-1 pixels, view-1 frame),
        ``res2['pts3d_in_other_view']`` (view-2 pixels, view-1 frame), ``conf``, and for
        MASt3R ``desc`` / ``desc_conf``.  With ``return_tokens=True`` a third element maps
        'view{1,2}.{pos,patch_embed,enc_block.KK,enc_out,dec_embed,dec_block.KK,dec_out}'
        to the intermediate tokens (for feature distillation); the plain call stores none.
        ``view2_head=False`` skips view 2's head (``res2`` is then empty) for callers that
        need only view 1's pointmap; both decoders still run, as each reads the other.
        """
        hw1, hw2 = _image_hw(view1), _image_hw(view2)
        tokens: dict[str, torch.Tensor] | None = {} if return_tokens else None
        enc1, pos1, enc2, pos2 = self.encode_pair(view1["img"], view2["img"], tokens)
        dec1, dec2 = self.decode(enc1, pos1, enc2, pos2, tokens)
        # Heads run in float32 outside autocast, as the official code does.
        amp_device = "cpu" if enc1.is_meta else enc1.device.type
        with torch.autocast(device_type=amp_device, enabled=False):
            res1 = self.downstream_head1([t.float() for t in dec1], hw1)
            res2 = self.downstream_head2([t.float() for t in dec2], hw2) if view2_head else {}
        if view2_head:
            res2["pts3d_in_other_view"] = res2.pop("pts3d")
        if return_tokens:
            return res1, res2, tokens
        return res1, res2


class AsymmetricMASt3R(AsymmetricCroCo3DStereo):
    """MASt3R: the DUSt3R trunk with the 'catmlp+dpt' head (metric points + descriptors)."""


def build_model(cfg: ModelConfig) -> AsymmetricCroCo3DStereo:
    cls = AsymmetricMASt3R if cfg.arch == "mast3r" else AsymmetricCroCo3DStereo
    return cls(cfg)


def _store(tokens: dict, views: tuple[str, ...], name: str, value: torch.Tensor) -> None:
    if len(views) == 1:
        tokens[f"{views[0]}.{name}"] = value
    else:  # batched pair: first half is view 1
        b = value.shape[0] // 2
        tokens[f"view1.{name}"], tokens[f"view2.{name}"] = value[:b], value[b:]
