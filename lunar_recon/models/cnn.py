"""Convolutional encoders for students (Dutt et al. 2024; Grethen et al.'s MobileNetV3 student).

Each replaces the ViT's patch embedding + encoder blocks: image -> stride-16 feature map ->
tokens (row-major) with the same (y, x) positions as 16x16 patches, so the decoder, its
RoPE and the heads are unchanged and the output contract stays the teacher's.

* ``mobilenet``: MobileNetV3-style inverted residuals (1x1 expand, 3x3 depthwise,
  squeeze-excite, 1x1 project; hard-swish), cheap on a CPU.
* ``resnet``: ResNet-style basic blocks (two 3x3 convolutions with a residual).

Stage widths follow the token width E: E/8, E/4, E/2, E at strides 2, 4, 8, 16, with
``depth`` blocks per stage after each down-sampling block.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import token_positions


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: expand, depthwise, squeeze-excite, project (residual at stride 1)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = c_in * expand
        self.expand = nn.Sequential(nn.Conv2d(c_in, hidden, 1, bias=False), _bn(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), _bn(hidden), nn.Hardswish()
        )
        self.se = SqueezeExcite(hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False), _bn(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected where needed) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), _bn(c_out), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), _bn(c_out))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ConvEncoder(nn.Module):
    """Image -> stride-16 tokens and their patch positions."""

    def __init__(self, kind: str, embed_dim: int, depth: int, patch_size: int = 16):
        super().__init__()
        if patch_size != 16:
            raise ValueError("CNN encoders produce stride-16 tokens: patch_size must be 16")
        if embed_dim % 8:
            raise ValueError(f"CNN encoder width {embed_dim} must be a multiple of 8")
        self.kind = kind
        widths = [embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        act = nn.Hardswish() if kind == "mobilenet" else nn.ReLU()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), _bn(widths[0]), act)
        block = {"mobilenet": lambda a, b, s: InvertedResidual(a, b, s), "resnet": BasicBlock}[kind]
        stages = []
        c = widths[0]
        for i, w in enumerate(widths):
            layers = [] if i == 0 else [block(c, w, 2)]  # the stem already halved the image
            layers += [block(w, w, 1) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
            c = w
        self.stages = nn.ModuleList(stages)
        self.to_tokens = nn.Conv2d(embed_dim, embed_dim, 1)

    def forward(self, img: torch.Tensor, stage_outputs: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = img.shape
        if h % 16 or w % 16:
            raise ValueError(f"image size {h}x{w} is not a multiple of 16")
        x = self.stem(img)
        for stage in self.stages:
            x = stage(x)
            if stage_outputs is not None:
                stage_outputs.append(x)
        x = self.to_tokens(x)
        return x.flatten(2).transpose(1, 2), token_positions(b, h // 16, w // 16, img.device)
