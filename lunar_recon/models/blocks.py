"""Transformer building blocks of the CroCo / DUSt3R / MASt3R family, one block one class.

Parameter names follow the official state-dict layout so released checkpoints load
unchanged (``attn.qkv``, ``cross_attn.projq``, ``norm_y``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # every LayerNorm of encoder and decoder (1e-5 is a measurable error)


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


def token_positions(batch: int, grid_h: int, grid_w: int, device: torch.device | None = None) -> torch.Tensor:
    """Integer (y, x) position of every token of a row-major ``grid_h x grid_w`` grid: (B, N, 2)."""
    y, x = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    pos = torch.stack([y.reshape(-1), x.reshape(-1)], dim=-1)
    return pos.unsqueeze(0).expand(batch, -1, -1)


class RoPE2D(nn.Module):
    """2-D rotary position embedding: first half of each head vector rotated by the row
    (y) position, second half by the column (x); rotate-half pairing, frequencies
    ``base^(-2j/m)`` with m = head_dim / 2."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._gather_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _tables(self, half: int, max_pos: int, device: torch.device, dtype: torch.dtype):
        """cos / sin tables covering positions 0 .. max_pos - 1 (at least): one table per head
        size, device and dtype, grown to the next power of two when a larger image needs it, so a
        stream of new image shapes never adds entries (each row is the same whatever the length)."""
        key = (half, device, dtype)
        have = self._cache.get(key)
        if have is None or have[0].shape[0] < max_pos:
            length = 1 << max(6, (max_pos - 1).bit_length())
            inv_freq = 1.0 / (self.base ** (torch.arange(0, half, 2, device=device).float() / half))
            t = torch.arange(length, device=device, dtype=inv_freq.dtype)
            freqs = torch.outer(t, inv_freq)
            freqs = torch.cat((freqs, freqs), dim=-1).to(dtype)
            self._cache[key] = (freqs.cos(), freqs.sin())
        return self._cache[key]

    def _gathered(self, positions: torch.Tensor, d: int, device: torch.device, dtype: torch.dtype):
        """(cos, signed sin) of every token, (B, 1, N, d); every block of a forward pass
        reuses the same position tensor, so the tables are gathered once per pass."""
        version = -1 if positions.is_inference() else positions._version  # inference tensors have none
        key = (id(positions), version, d, device, dtype, torch.is_inference_mode_enabled())
        hit = self._gather_cache.get(key)
        if hit is not None and hit[0] is positions:  # the strong reference keeps id() unique
            return hit[1], hit[2]
        half = d // 2
        # Table length: any bound >= max position works; meta tensors (FLOP counting) have no values.
        max_pos = positions.shape[1] + 1 if positions.is_meta else int(positions.max()) + 1
        cos, sin = self._tables(half, max_pos, device, dtype)
        py, px = positions[..., 0], positions[..., 1]
        c = torch.cat((F.embedding(py, cos), F.embedding(px, cos)), dim=-1)[:, None]
        # Rotate-half inside each half: [y1, y2, x1, x2] -> [-y2, y1, -x2, x1]; the minus signs
        # live in the sine table so the rotation is one flip of the quarters (same floats).
        q = half // 2
        s = torch.cat((F.embedding(py, sin), F.embedding(px, sin)), dim=-1)
        s = (s.unflatten(-1, (2, 2, q)) * torch.tensor([-1.0, 1.0], dtype=dtype, device=device)[:, None]).flatten(-3)
        if len(self._gather_cache) >= 8:
            self._gather_cache.clear()
        self._gather_cache[key] = (positions, c, s[:, None])
        return c, s[:, None]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, N, d), positions (B, N, 2) integer (y, x)."""
        d = tokens.shape[-1]
        if d % 4:
            raise ValueError(f"RoPE2D needs a head size that is a multiple of 4, got {d}")
        cos, sin = self._gathered(positions, d, tokens.device, tokens.dtype)
        swapped = tokens.unflatten(-1, (2, 2, d // 4)).flip(-2).flatten(-3)  # [y2, y1, x2, x1]
        return tokens * cos + swapped * sin


class PatchEmbed(nn.Module):
    """Non-overlapping 16x16 patches -> tokens (row-major) and their (y, x) positions."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = img.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.proj(img).flatten(2).transpose(1, 2)
        return x, token_positions(b, h // p, w // p, img.device)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()  # exact (erf) GELU, not the tanh approximation
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Fused attention: same maths as softmax(q k^T / sqrt(d)) v, within 1e-6 of it.
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = self.rope(q, pos)
        k = self.rope(k, pos)
        return self.proj(_attend(q, k, v))


class CrossAttention(nn.Module):
    """Queries from this view, keys and values from the other view; keys are rotated
    with the *other* view's positions."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor
    ) -> torch.Tensor:
        q = self.rope(self._heads(self.projq(query)), qpos)
        k = self.rope(self._heads(self.projk(key)), kpos)
        v = self._heads(self.projv(value))
        return self.proj(_attend(q, k, v))


class EncoderBlock(nn.Module):
    """Pre-norm ViT block with RoPE self-attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to the other view, MLP (CroCo decoder block)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D, norm_mem: bool = True):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim) if norm_mem else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: torch.Tensor, ypos: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), xpos)
        y_ = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y_, y_, xpos, ypos)
        return x + self.mlp(self.norm3(x))


class LockstepDecoderLayer:
    """Inference only: one decoder layer of *both* views (two blocks with their own weights)
    as batched matmuls over stacked weights, so the pair costs one kernel per op instead of
    two.  At student sizes the decoder is launch-bound, and this saves ~25% of its time.
    Same maths as calling the two blocks (layer norm as normalise-then-affine: ~1e-7 apart)."""

    def __init__(self, blk1: DecoderBlock, blk2: DecoderBlock):
        def stack(get):
            return torch.stack([get(blk1).detach(), get(blk2).detach()])

        def lin(get):  # (2, in, out) weights and (2, 1, out) biases for baddbmm
            return stack(lambda b: get(b).weight).transpose(1, 2).contiguous(), stack(lambda b: get(b).bias)[:, None]

        def norm(get):
            m1 = get(blk1)
            if isinstance(m1, nn.Identity):
                return None
            return stack(lambda b: get(b).weight)[:, None, None], stack(lambda b: get(b).bias)[:, None, None]

        self.num_heads = blk1.attn.num_heads
        self.rope = blk1.attn.rope
        self.eps = blk1.norm1.eps
        self.norm1, self.norm2, self.norm3 = norm(lambda b: b.norm1), norm(lambda b: b.norm2), norm(lambda b: b.norm3)
        self.norm_y = norm(lambda b: b.norm_y)
        self.qkv, self.proj = lin(lambda b: b.attn.qkv), lin(lambda b: b.attn.proj)
        self.projq, self.cproj = lin(lambda b: b.cross_attn.projq), lin(lambda b: b.cross_attn.proj)
        # keys and values read the same (other-view) tokens: one matmul for both
        wk, bk = lin(lambda b: b.cross_attn.projk)
        wv, bv = lin(lambda b: b.cross_attn.projv)
        self.projkv = torch.cat([wk, wv], dim=2).contiguous(), torch.cat([bk, bv], dim=2)
        self.fc1, self.fc2 = lin(lambda b: b.mlp.fc1), lin(lambda b: b.mlp.fc2)

    def _norm(self, x: torch.Tensor, wb) -> torch.Tensor:
        if wb is None:
            return x
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * wb[0] + wb[1]

    @staticmethod
    def _linear(x: torch.Tensor, wb) -> torch.Tensor:
        two, b, n, c = x.shape
        return torch.baddbmm(wb[1], x.reshape(two, b * n, c), wb[0]).view(two, b, n, -1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (2, B, N, C) -> (2B, heads, N, d)
        two, b, n, c = x.shape
        return x.reshape(two * b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor, two: int) -> torch.Tensor:  # (2B, heads, N, d) -> (2, B, N, C)
        bb, h, n, d = x.shape
        return x.transpose(1, 2).reshape(two, bb // two, n, h * d)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, xpos: torch.Tensor, ypos: torch.Tensor) -> torch.Tensor:
        """x, y: (2, B, N, C) this layer's input of view 1 and 2 / the other view's; xpos, ypos: (2B, N, 2)."""
        two, b, n, c = x.shape
        qkv = self._linear(self._norm(x, self.norm1), self.qkv)
        qkv = qkv.reshape(two * b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(qkv[0], xpos), self.rope(qkv[1], xpos)
        x = x + self._linear(self._merge(F.scaled_dot_product_attention(q, k, qkv[2]), two), self.proj)
        kv = self._linear(self._norm(y, self.norm_y), self.projkv)
        q = self.rope(self._heads(self._linear(self._norm(x, self.norm2), self.projq)), xpos)
        k = self.rope(self._heads(kv[..., :c]), ypos)
        v = self._heads(kv[..., c:])
        x = x + self._linear(self._merge(F.scaled_dot_product_attention(q, k, v), two), self.cproj)
        h = F.gelu(self._linear(self._norm(x, self.norm3), self.fc1))
        return x + self._linear(h, self.fc2)
