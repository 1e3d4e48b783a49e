"""Decoder: bottleneck -> (flexible upsampling, residual blocks) per depth -> adaptive head."""

from __future__ import annotations

import torch
from torch import nn

from physok.models.tokeniser.adaptive_heads import AdaptiveDecoderHead
from physok.models.tokeniser.causal_conv import CausalConv3d
from physok.models.tokeniser.config import TokeniserConfig
from physok.models.tokeniser.flexible_upsample import DepthToSpaceUpsample, TransposedUpsample
from physok.models.tokeniser.residual_block import ResidualBlock
from physok.models.tokeniser.scales import Scales


class Decoder(nn.Module):
    def __init__(self, config: TokeniserConfig) -> None:
        super().__init__()
        c, g, be = config.channels, config.norm_groups, config.kernel_backend
        self.bottleneck = CausalConv3d(config.latent_channels, c[-1], 3, backend=be)
        self.mid = nn.Sequential(
            *(ResidualBlock(c[-1], c[-1], g, be) for _ in range(config.mid_res_blocks))
        )
        # Mirror of the encoder: deepest level first; each upsamples at its depth's channels,
        # then its residual blocks step down to the next shallower depth's channels.
        self.levels = nn.ModuleList()
        for depth in reversed(range(config.depths)):
            ch, out = c[depth], c[max(depth - 1, 0)]
            level = nn.Module()
            if config.upsampling == "depth_to_space":
                level.up = DepthToSpaceUpsample(
                    ch, config.temporal_scales[depth], config.spatial_scales[depth], be
                )
            else:
                level.up = TransposedUpsample(
                    ch,
                    config.temporal_scales[depth],
                    config.spatial_scales[depth],
                    config.kernel_resize,
                    be,
                )
            n = config.res_blocks_per_depth
            if n == 0 and ch != out:
                raise ValueError("res_blocks_per_depth=0 needs equal channels at every depth")
            level.blocks = nn.Sequential(
                *(ResidualBlock(ch if i == 0 else out, out, g, be) for i in range(n))
            )
            level.depth = depth
            self.levels.append(level)
        self.head = AdaptiveDecoderHead(c[0], config.max_fields, groups=g, backend=be)

    def forward(self, z: torch.Tensor, field_indices: torch.Tensor, scales: Scales) -> torch.Tensor:
        """latents (B, latent, T', X', Y') -> fields (B, C_active, T, X, Y)."""
        h = self.mid(self.bottleneck(z))
        for level in self.levels:
            h = level.blocks(level.up(h, scales[level.depth]))
        return self.head(h, field_indices)
