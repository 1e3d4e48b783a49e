"""ProcessorBlock: spatial attention (+ fused MLP) then causal temporal attention."""

from __future__ import annotations

import torch
from torch import nn

from physok.models.processor.config import ProcessorConfig
from physok.models.processor.spatial_attention import SpatialAttention
from physok.models.processor.temporal_attention import TemporalAttention


class ProcessorBlock(nn.Module):
    def __init__(self, config: ProcessorConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        c = config
        self.spatial = SpatialAttention(
            c.dim,
            c.heads,
            c.mlp_hidden,
            norm_groups=c.norm_groups,
            drop_path=drop_path,
            rope_max_freq=c.rope_max_freq,
            layer_scale_init=c.layer_scale_init,
            attention_backend=c.attention_backend,
        )
        self.temporal = TemporalAttention(
            c.dim,
            c.heads,
            norm_groups=c.norm_groups,
            drop_path=drop_path,
            bias_buckets=c.bias_buckets,
            bias_max_distance=c.bias_max_distance,
            layer_scale_init=c.layer_scale_init,
            attention_backend=c.attention_backend,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, X, Y, dim) channels-last -> same shape."""
        return self.temporal(self.spatial(x))
