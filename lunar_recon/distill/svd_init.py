"""Initialise a narrow student from the teacher's weights.

**Shared basis (default).**  Every feature space of the network gets one orthonormal basis
``U`` (teacher width x student width), chosen from the teacher, and every weight is
projected with the bases of the spaces it reads and writes: ``W_s = U_out^T W U_in`` — the
Eckart-Young-optimal approximation of ``W`` among matrices whose row and column spaces are
those of the bases.  The spaces are:

* the encoder and decoder residual streams (one basis each, shared by every matrix that
  reads or writes the stream, by both decoder stacks, and by the heads reading them);
* attention heads, kept whole and paired: a student head is a teacher head, so its Q, K and
  V come from the same teacher head (RoPE frequency pairs selected consistently when the
  student head is narrower);
* MLP hidden units and DPT channels (selections: an element-wise nonlinearity only commutes
  with a coordinate selection).

Residual-stream bases are a coordinate selection by default (LayerNorm only commutes with a
coordinate selection, so a student at the teacher's width reproduces it exactly) or the top
singular vectors of the stacked weights / principal directions of cached activations.
Layers are taken evenly spaced over the teacher's depth.

**Per-matrix (Grethen et al.)**: each matrix on its own: top-left block of its rank-r SVD
approximation.  Kept for comparison; it pairs a student's V with a teacher's K, etc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..models.config import ModelConfig
from ..models.stereo3d import AsymmetricCroCo3DStereo, build_model

STREAM_BASES = ("select", "svd", "pca")


def truncated_svd(W: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of a matrix (Eckart-Young)."""
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return ((U[:, :rank] * S[:rank]) @ Vh[:rank]).to(W.dtype)


def layer_map(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher layers for a shallower student (first and last always kept)."""
    if n_student > n_teacher:
        raise ValueError(f"student depth {n_student} exceeds the teacher's {n_teacher}")
    if n_student == 1:
        return [n_teacher - 1]
    return [int(round(i * (n_teacher - 1) / (n_student - 1))) for i in range(n_student)]


def _select(idx: np.ndarray, n: int) -> torch.Tensor:
    U = torch.zeros(n, len(idx), dtype=torch.float64)
    U[torch.as_tensor(idx), torch.arange(len(idx))] = 1.0
    return U


def _top(scores: torch.Tensor, k: int) -> np.ndarray:
    return np.sort(torch.argsort(scores.double(), descending=True)[:k].numpy())


@dataclass
class Bases:
    """Basis (teacher dim x student dim) of every feature space, by name."""

    spaces: dict[str, torch.Tensor]

    def __getitem__(self, k: str) -> torch.Tensor:
        return self.spaces[k]


def _stream_matrices(sd: dict, prefix_blocks: list[str], readers_extra: list[str], writers_extra: list[str]):
    readers, writers = list(readers_extra), list(writers_extra)
    for p in prefix_blocks:
        readers += [f"{p}.attn.qkv.weight", f"{p}.mlp.fc1.weight"]
        writers += [f"{p}.attn.proj.weight", f"{p}.mlp.fc2.weight"]
        if f"{p}.cross_attn.projq.weight" in sd:
            readers += [f"{p}.cross_attn.projq.weight", f"{p}.cross_attn.projk.weight", f"{p}.cross_attn.projv.weight"]
            writers += [f"{p}.cross_attn.proj.weight"]
    cols = [sd[k].double().T for k in readers if k in sd] + [sd[k].double() for k in writers if k in sd]
    return torch.cat(cols, dim=1)  # (stream dim, many)


def stream_basis(
    teacher_sd: dict,
    stream: str,
    n_student: int,
    kind: str,
    activations: torch.Tensor | None = None,
    n_teacher: int | None = None,
    blocks: list[str] | None = None,
) -> torch.Tensor:
    """Orthonormal basis of a residual stream: 'select' (coordinate selection by weight or
    activation energy), 'svd' (top left singular vectors of every matrix reading/writing the
    stream), 'pca' (principal directions of cached activations)."""
    if kind not in STREAM_BASES:
        raise ValueError(f"stream basis must be one of {STREAM_BASES}")
    if n_student == n_teacher and kind == "select":
        return torch.eye(n_teacher, dtype=torch.float64)
    if kind == "pca":
        if activations is None:
            raise ValueError("the 'pca' basis needs cached teacher activations")
        X = activations.reshape(-1, activations.shape[-1]).double()
        _, _, Vh = torch.linalg.svd(X, full_matrices=False)
        return Vh[:n_student].T.contiguous()
    M = _stream_matrices(teacher_sd, blocks or [], [], [])
    if kind == "svd":
        U, _, _ = torch.linalg.svd(M, full_matrices=False)
        return U[:, :n_student].contiguous()
    if activations is not None:  # energy of the stream's coordinates on real data
        energy = (activations.double() ** 2).reshape(-1, activations.shape[-1]).mean(0)
    else:  # energy of every weight reading or writing each coordinate
        energy = (M * M).sum(dim=1)
    return _select(_top(energy, n_student), n_teacher)


def _head_selection(qkv_w: torch.Tensor, proj_w: torch.Tensor, n_heads_t: int, n_heads_s: int, d_t: int, d_s: int) -> np.ndarray:
    """Teacher channel indices (within one C-wide q/k/v block) of the student's heads: whole
    heads ranked by weight energy; inside a narrower head, every (d_t/d_s)-th RoPE frequency
    pair in each axis half (so the student's RoPE frequencies are exactly the teacher's)."""
    C = n_heads_t * d_t
    energy = torch.stack(
        [
            (qkv_w[[h * d_t + j + s * C for s in range(3) for j in range(d_t)]] ** 2).sum()
            + (proj_w[:, h * d_t : (h + 1) * d_t] ** 2).sum()
            for h in range(n_heads_t)
        ]
    )
    heads = _top(energy, n_heads_s)
    if d_t % d_s or (d_t // d_s) & (d_t // d_s - 1):
        raise ValueError(f"student head size {d_s} must divide the teacher's {d_t} by a power of two")
    k = d_t // d_s
    half_t, quarter_t = d_t // 2, d_t // 4
    within = []
    for axis in range(2):  # y half, x half
        for part in range(2):  # rotate-half pairs: j and j + quarter
            within += [axis * half_t + part * quarter_t + k * j for j in range(quarter_t // k)]
    return np.array([h * d_t + j for h in heads for j in within])


def structured_init(
    teacher: AsymmetricCroCo3DStereo, cfg: ModelConfig, stream: str = "select", activations: dict[str, torch.Tensor] | None = None
) -> AsymmetricCroCo3DStereo:
    """Student of config ``cfg`` initialised from ``teacher`` with one basis per space."""
    tc = teacher.config
    if cfg.patch_size != tc.patch_size:
        raise ValueError("student and teacher must share the patch size")
    sd = {k: v.detach().to(torch.float64) for k, v in teacher.state_dict().items()}
    student = build_model(cfg)
    enc_layers = layer_map(tc.enc_depth, cfg.enc_depth)
    dec_layers = layer_map(tc.dec_depth, cfg.dec_depth)
    acts = activations or {}
    U_enc = stream_basis(
        sd,
        "enc",
        cfg.enc_embed_dim,
        stream,
        acts.get("enc"),
        tc.enc_embed_dim,
        [f"enc_blocks.{i}" for i in range(tc.enc_depth)] + ["decoder_embed_T"],
    )
    dec_blocks = [f"dec_blocks.{i}" for i in range(tc.dec_depth)] + [f"dec_blocks2.{i}" for i in range(tc.dec_depth)]
    U_dec = stream_basis(sd, "dec", cfg.dec_embed_dim, stream, acts.get("dec"), tc.dec_embed_dim, dec_blocks)
    out: dict[str, torch.Tensor] = {}

    def proj(W: torch.Tensor, U_out: torch.Tensor | None, U_in: torch.Tensor | None) -> torch.Tensor:
        if U_out is not None:
            W = torch.tensordot(U_out.T, W, dims=([1], [0]))
        if U_in is not None:
            W = torch.movedim(torch.tensordot(W, U_in, dims=([1], [0])), -1, 1)
        return W

    def ln(prefix_t: str, prefix_s: str, U: torch.Tensor) -> None:
        g, b = sd[f"{prefix_t}.weight"], sd[f"{prefix_t}.bias"]
        out[f"{prefix_s}.weight"] = torch.einsum("ij,i,ij->j", U, g, U)  # diag(U^T diag(g) U)
        out[f"{prefix_s}.bias"] = U.T @ b

    def attention(t: str, s: str, U: torch.Tensor, heads_t: int, heads_s: int, dim_t: int, dim_s: int, cross: bool) -> None:
        d_t, d_s = dim_t // heads_t, dim_s // heads_s
        if cross:
            qkv = torch.cat([sd[f"{t}.projq.weight"], sd[f"{t}.projk.weight"], sd[f"{t}.projv.weight"]])
        else:
            qkv = sd[f"{t}.qkv.weight"]
        sel = _head_selection(qkv, sd[f"{t}.proj.weight"], heads_t, heads_s, d_t, d_s)
        H = _select(sel, dim_t)  # head basis: the same channels for q, k and v (and proj's input)
        if cross:
            for name in ("projq", "projk", "projv"):
                out[f"{s}.{name}.weight"] = proj(sd[f"{t}.{name}.weight"], H, U)
                out[f"{s}.{name}.bias"] = H.T @ sd[f"{t}.{name}.bias"]
        else:
            W, b = sd[f"{t}.qkv.weight"], sd[f"{t}.qkv.bias"]
            out[f"{s}.qkv.weight"] = torch.cat([proj(W[i * dim_t : (i + 1) * dim_t], H, U) for i in range(3)])
            out[f"{s}.qkv.bias"] = torch.cat([H.T @ b[i * dim_t : (i + 1) * dim_t] for i in range(3)])
        out[f"{s}.proj.weight"] = proj(sd[f"{t}.proj.weight"], U, H)
        out[f"{s}.proj.bias"] = U.T @ sd[f"{t}.proj.bias"]

    def mlp(t: str, s: str, U: torch.Tensor, hidden_s: int) -> None:
        w1, w2 = sd[f"{t}.fc1.weight"], sd[f"{t}.fc2.weight"]
        energy = (w1**2).sum(1) + (w2**2).sum(0)
        Hh = _select(_top(energy, hidden_s), w1.shape[0])
        out[f"{s}.fc1.weight"] = proj(w1, Hh, U)
        out[f"{s}.fc1.bias"] = Hh.T @ sd[f"{t}.fc1.bias"]
        out[f"{s}.fc2.weight"] = proj(w2, U, Hh)
        out[f"{s}.fc2.bias"] = U.T @ sd[f"{t}.fc2.bias"]

    # patch embedding and encoder (a CNN encoder has no teacher counterpart: it starts random,
    # and the decoder reads its tokens through the teacher's encoder-stream basis)
    if cfg.encoder_type == "vit":
        out["patch_embed.proj.weight"] = proj(sd["patch_embed.proj.weight"], U_enc, None)
        out["patch_embed.proj.bias"] = U_enc.T @ sd["patch_embed.proj.bias"]
    for i_s, i_t in enumerate(enc_layers if cfg.encoder_type == "vit" else []):
        t, s = f"enc_blocks.{i_t}", f"enc_blocks.{i_s}"
        ln(f"{t}.norm1", f"{s}.norm1", U_enc)
        ln(f"{t}.norm2", f"{s}.norm2", U_enc)
        attention(
            f"{t}.attn", f"{s}.attn", U_enc, tc.enc_num_heads, cfg.enc_num_heads, tc.enc_embed_dim, cfg.enc_embed_dim, False
        )
        mlp(f"{t}.mlp", f"{s}.mlp", U_enc, int(cfg.enc_embed_dim * cfg.mlp_ratio))
    ln("enc_norm", "enc_norm", U_enc)
    out["decoder_embed.weight"] = proj(sd["decoder_embed.weight"], U_dec, U_enc)
    out["decoder_embed.bias"] = U_dec.T @ sd["decoder_embed.bias"]
    out["mask_token"] = proj(sd["mask_token"][0].T, U_dec, None).T[None]
    for stack in ("dec_blocks", "dec_blocks2"):
        for i_s, i_t in enumerate(dec_layers):
            t, s = f"{stack}.{i_t}", f"{stack}.{i_s}"
            for n in ("norm1", "norm2", "norm3", "norm_y"):
                ln(f"{t}.{n}", f"{s}.{n}", U_dec)
            attention(
                f"{t}.attn", f"{s}.attn", U_dec, tc.dec_num_heads, cfg.dec_num_heads, tc.dec_embed_dim, cfg.dec_embed_dim, False
            )
            attention(
                f"{t}.cross_attn",
                f"{s}.cross_attn",
                U_dec,
                tc.dec_num_heads,
                cfg.dec_num_heads,
                tc.dec_embed_dim,
                cfg.dec_embed_dim,
                True,
            )
            mlp(f"{t}.mlp", f"{s}.mlp", U_dec, int(cfg.dec_embed_dim * cfg.mlp_ratio))
    ln("dec_norm", "dec_norm", U_dec)
    if cfg.head_type != tc.head_type and not (cfg.head_type == "dpt" and tc.head_type == "catmlp+dpt"):
        raise ValueError(f"cannot initialise a {cfg.head_type!r} head from a {tc.head_type!r} teacher")
    for h in ("downstream_head1", "downstream_head2"):
        _dpt(sd, out, f"{h}.dpt", tc, cfg, U_enc, U_dec, proj)
        if cfg.head_type == "catmlp+dpt":
            U_cat = torch.block_diag(U_enc, U_dec)
            w1, w2 = sd[f"{h}.head_local_features.fc1.weight"], sd[f"{h}.head_local_features.fc2.weight"]
            energy = (w1**2).sum(1) + (w2**2).sum(0)
            Hh = _select(_top(energy, cfg.local_hidden), w1.shape[0])
            out[f"{h}.head_local_features.fc1.weight"] = proj(w1, Hh, U_cat)
            out[f"{h}.head_local_features.fc1.bias"] = Hh.T @ sd[f"{h}.head_local_features.fc1.bias"]
            out[f"{h}.head_local_features.fc2.weight"] = proj(w2, None, Hh)
            out[f"{h}.head_local_features.fc2.bias"] = sd[f"{h}.head_local_features.fc2.bias"]
    target = student.state_dict()
    missing = [k for k in target if k not in out and ".layer_rn." not in k and not k.startswith("cnn_encoder.")]
    if missing:
        raise RuntimeError(f"structured init left {len(missing)} tensors unset, e.g. {missing[:3]}")
    student.load_state_dict(
        {k: v.to(target[k].dtype).reshape(target[k].shape) for k, v in out.items() if k in target}, strict=False
    )
    return student


def _channel_basis(W: torch.Tensor, n_student: int, dim: int = 0) -> torch.Tensor:
    energy = (W**2).sum(dim=[d for d in range(W.ndim) if d != dim])
    return _select(_top(energy, n_student), W.shape[dim])


def _dpt(sd, out, p: str, tc: ModelConfig, cfg: ModelConfig, U_enc, U_dec, proj) -> None:
    """DPT head: hooked token streams through the stream bases, DPT channels by selection."""
    dims_s = cfg.dpt_layer_dims
    for i in range(4):
        U_tok = U_enc if cfg.hooks[i] == 0 else U_dec
        w0 = sd[f"{p}.act_postprocess.{i}.0.weight"]
        C = _channel_basis(w0, dims_s[i])
        out[f"{p}.act_postprocess.{i}.0.weight"] = proj(w0, C, U_tok)
        out[f"{p}.act_postprocess.{i}.0.bias"] = C.T @ sd[f"{p}.act_postprocess.{i}.0.bias"]
        if f"{p}.act_postprocess.{i}.1.weight" in sd:
            w1 = sd[f"{p}.act_postprocess.{i}.1.weight"]  # ConvTranspose (in, out, k, k) or Conv (out, in, k, k)
            out[f"{p}.act_postprocess.{i}.1.weight"] = proj(w1, C, C)
            out[f"{p}.act_postprocess.{i}.1.bias"] = C.T @ sd[f"{p}.act_postprocess.{i}.1.bias"]
        if i == 0:
            C_layers = [C]
        else:
            C_layers.append(C)
    F_basis = _channel_basis(sd[f"{p}.scratch.layer1_rn.weight"], cfg.dpt_feature_dim)
    for i in range(4):
        out[f"{p}.scratch.layer{i + 1}_rn.weight"] = proj(sd[f"{p}.scratch.layer{i + 1}_rn.weight"], F_basis, C_layers[i])
    for r in range(1, 5):
        for unit in ("resConfUnit1", "resConfUnit2"):
            for c in ("conv1", "conv2"):
                k = f"{p}.scratch.refinenet{r}.{unit}.{c}"
                out[f"{k}.weight"] = proj(sd[f"{k}.weight"], F_basis, F_basis)
                out[f"{k}.bias"] = F_basis.T @ sd[f"{k}.bias"]
        k = f"{p}.scratch.refinenet{r}.out_conv"
        out[f"{k}.weight"] = proj(sd[f"{k}.weight"], F_basis, F_basis)
        out[f"{k}.bias"] = F_basis.T @ sd[f"{k}.bias"]
    h0 = sd[f"{p}.head.0.weight"]
    H0 = _channel_basis(h0, cfg.dpt_feature_dim // 2)
    out[f"{p}.head.0.weight"] = proj(h0, H0, F_basis)
    out[f"{p}.head.0.bias"] = H0.T @ sd[f"{p}.head.0.bias"]
    h2 = sd[f"{p}.head.2.weight"]
    H2 = _channel_basis(h2, cfg.dpt_last_dim)
    out[f"{p}.head.2.weight"] = proj(h2, H2, H0)
    out[f"{p}.head.2.bias"] = H2.T @ sd[f"{p}.head.2.bias"]
    h4 = sd[f"{p}.head.4.weight"]
    n_out = cfg.head_channels
    out[f"{p}.head.4.weight"] = proj(h4[:n_out], None, H2)
    out[f"{p}.head.4.bias"] = sd[f"{p}.head.4.bias"][:n_out]


def per_matrix_init(teacher: AsymmetricCroCo3DStereo, cfg: ModelConfig) -> AsymmetricCroCo3DStereo:
    """Grethen et al.'s initialisation: every student tensor is the top-left block of the
    teacher tensor's rank-r approximation (r = the smaller student dimension), layers mapped
    evenly.  Each matrix is truncated on its own, so related matrices (Q, K, V; a stream's
    readers and writers) are not kept consistent."""
    tc = teacher.config
    sd = teacher.state_dict()
    student = build_model(cfg)
    enc_map = dict(enumerate(layer_map(tc.enc_depth, cfg.enc_depth)))
    dec_map = dict(enumerate(layer_map(tc.dec_depth, cfg.dec_depth)))
    new = {}
    for k, v in student.state_dict().items():
        tk = re.sub(r"^enc_blocks\.(\d+)", lambda m: f"enc_blocks.{enc_map[int(m.group(1))]}", k)
        tk = re.sub(r"^(dec_blocks2?)\.(\d+)", lambda m: f"{m.group(1)}.{dec_map[int(m.group(2))]}", tk)
        if tk not in sd:
            new[k] = v
            continue
        W = sd[tk].double()
        if W.ndim >= 2:
            flat = W.reshape(W.shape[0], -1)
            W = truncated_svd(flat, min(v.shape[0], int(np.prod(v.shape[1:])))).reshape(W.shape)
        block = W[tuple(slice(0, n) for n in v.shape)]
        new[k] = block.to(v.dtype).reshape(v.shape)
    student.load_state_dict(new, strict=False)
    return student


def svd_initialise(
    teacher: AsymmetricCroCo3DStereo,
    cfg: ModelConfig,
    method: str = "shared",
    stream: str = "select",
    activations: dict | None = None,
) -> AsymmetricCroCo3DStereo:
    """Student initialised from the teacher: 'shared' (one basis per space) or 'per_matrix'."""
    if method == "shared":
        return structured_init(teacher, cfg, stream, activations)
    if method == "per_matrix":
        return per_matrix_init(teacher, cfg)
    if method == "random":
        return build_model(cfg)
    raise ValueError(f"unknown init method {method!r} (shared, per_matrix, random)")
