"""Encoder: adaptive head -> (residual blocks, flexible downsampling) per depth -> bottleneck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from physok.models.tokeniser.adaptive_heads import AdaptiveEncoderHead
from physok.models.tokeniser.causal_conv import CausalConv3d
from physok.models.tokeniser.config import TokeniserConfig
from physok.models.tokeniser.flexible_downsample import FlexibleDownsample
from physok.models.tokeniser.residual_block import FrameGroupNorm, ResidualBlock
from physok.models.tokeniser.scales import Scales


class EncoderBottleneck(nn.Module):
    """norm -> SiLU -> 1x1x1 conv to the latent channels."""

    def __init__(self, channels: int, latent: int, groups: int, backend: str) -> None:
        super().__init__()
        self.norm = FrameGroupNorm(channels, groups)
        self.conv = CausalConv3d(channels, latent, 1, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(x)))


class Encoder(nn.Module):
    def __init__(self, config: TokeniserConfig) -> None:
        super().__init__()
        c, g, be = config.channels, config.norm_groups, config.kernel_backend
        self.head = AdaptiveEncoderHead(config.max_fields, c[0], backend=be)
        self.levels = nn.ModuleList()
        prev = c[0]
        for depth, ch in enumerate(c):
            blocks = [
                ResidualBlock(prev if i == 0 else ch, ch, g, be)
                for i in range(config.res_blocks_per_depth)
            ]
            if not blocks and prev != ch:
                raise ValueError("res_blocks_per_depth=0 needs equal channels at every depth")
            level = nn.Module()
            level.blocks = nn.Sequential(*blocks)
            level.down = FlexibleDownsample(
                ch,
                ch,
                config.temporal_scales[depth],
                config.spatial_scales[depth],
                config.kernel_resize,
                be,
            )
            self.levels.append(level)
            prev = ch
        self.mid = nn.Sequential(
            *(ResidualBlock(prev, prev, g, be) for _ in range(config.mid_res_blocks))
        )
        self.bottleneck = EncoderBottleneck(prev, config.latent_channels, g, be)

    def forward(self, x: torch.Tensor, field_indices: torch.Tensor, scales: Scales) -> torch.Tensor:
        """x (B, C_active, T, X, Y) -> latents (B, latent, T', X', Y')."""
        h = self.head(x, field_indices)
        for level, scale in zip(self.levels, scales, strict=True):
            h = level.down(level.blocks(h), scale)
        return self.bottleneck(self.mid(h))
