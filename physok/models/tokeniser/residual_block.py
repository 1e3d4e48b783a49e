"""Residual block of causal convolutions, with group normalisation applied frame by frame.

Normalising over time would let a frame's statistics depend on later frames and break
causality, so the group norm runs per frame (statistics over channel groups and space only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physok.models.tokeniser.causal_conv import CausalConv3d


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (channel group, X, Y) of each frame of a (B, C, T, X, Y) tensor."""

    def __init__(self, channels: int, max_groups: int = 8, eps: float = 1e-6) -> None:
        super().__init__(math.gcd(channels, max_groups), channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.reshape(b, t, c, h, w).transpose(1, 2)


class ResidualBlock(nn.Module):
    """norm -> SiLU -> conv3 -> norm -> SiLU -> conv3, plus a (1x1x1 if needed) skip."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int = 8, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(in_channels, groups)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, backend=backend)
        self.norm2 = FrameGroupNorm(out_channels, groups)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, backend=backend)
        self.skip = (
            CausalConv3d(in_channels, out_channels, 1, backend=backend)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h
