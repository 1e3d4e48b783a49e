"""Walrus-style processor: space-time split transformer over tokeniser latents (DESIGN.md §4).

Modules (each one concept):
    config                  ProcessorConfig and its `fast` / `paper` presets
    rms_group_norm          RMSGroupNorm (RMS over a frame's spatial tokens within channel groups)
    rotary                  axial 2D RoPE on positions normalised to [-1, 1]
    relative_position_bias  T5-style learned relative position bias (causal buckets)
    drop_path               per-sample stochastic depth
    spatial_attention       full attention over a frame's tokens fused with a SwiGLU MLP
    temporal_attention      causal attention over time at each spatial position
    block                   ProcessorBlock: spatial then temporal
    processor               Processor: projections and blocks, (B, T, C, X, Y) in and out
Attention runs through physok.ops.attention (flash / sdpa / math dispatch).
"""

from physok.models.processor.block import ProcessorBlock
from physok.models.processor.config import ATTENTION_BACKENDS, ProcessorConfig
from physok.models.processor.drop_path import DropPath, drop_path
from physok.models.processor.processor import Processor
from physok.models.processor.relative_position_bias import (
    RelativePositionBias,
    relative_position_bucket,
)
from physok.models.processor.rms_group_norm import RMSGroupNorm
from physok.models.processor.rotary import AxialRotary, normalised_positions
from physok.models.processor.spatial_attention import SpatialAttention, swiglu
from physok.models.processor.temporal_attention import TemporalAttention

__all__ = [
    "ATTENTION_BACKENDS",
    "AxialRotary",
    "DropPath",
    "Processor",
    "ProcessorBlock",
    "ProcessorConfig",
    "RMSGroupNorm",
    "RelativePositionBias",
    "SpatialAttention",
    "TemporalAttention",
    "drop_path",
    "normalised_positions",
    "relative_position_bucket",
    "swiglu",
]
