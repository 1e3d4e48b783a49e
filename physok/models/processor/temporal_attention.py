"""TemporalAttention: causal attention over time at each spatial position, with a T5 bias.

x (B, T, X, Y, C) -> RMSGroupNorm (per frame) -> qkv projection -> per-head LayerNorm on q and
k -> attention over the T frames of each (sample, x, y) sequence, causal (frame t attends to
frames <= t) with a learned T5-style relative position bias per head -> output projection;
out = x + drop_path(projected). The bias is additive, so the call always takes an exact
attention path (physok.ops.attention never sends a bias to a flash kernel).
"""

from __future__ import annotations

import torch
from torch import nn

from physok.models.processor.drop_path import DropPath
from physok.models.processor.relative_position_bias import RelativePositionBias
from physok.models.processor.rms_group_norm import RMSGroupNorm
from physok.ops.attention import attention, probe_kernels


class TemporalAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        norm_groups: int,
        drop_path: float = 0.0,
        bias_buckets: int = 32,
        bias_max_distance: int = 128,
        layer_scale_init: float = 0.0,
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"TemporalAttention: heads={heads} must divide dim={dim}")
        self.heads = heads
        self.head_dim = dim // heads
        self.attention_backend = attention_backend
        probe_kernels()  # outside any torch.compile trace
        self.norm = RMSGroupNorm(norm_groups, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim)
        # No bias on k's LayerNorm: it would add the same q.b to every score of a query row,
        # which softmax ignores (a parameter with zero gradient). Spatial attention keeps it:
        # RoPE rotates b differently per key position there, so it does change the scores.
        self.k_norm = nn.LayerNorm(self.head_dim, bias=False)
        self.position_bias = RelativePositionBias(
            heads, num_buckets=bias_buckets, max_distance=bias_max_distance, bidirectional=False
        )
        self.out = nn.Linear(dim, dim)
        self.layer_scale = (
            nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            if layer_scale_init > 0
            else None
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, nx, ny, c = x.shape
        qkv = self.qkv(self.norm(x))  # (B, T, X, Y, 3C)
        # -> (3, B*X*Y, H, T, D): one sequence over time per sample and spatial position.
        qkv = qkv.reshape(b, t, nx * ny, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).reshape(3, b * nx * ny, self.heads, t, -1)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = self.position_bias(t)  # (1, H, T, T), future keys -inf
        a = attention(q, k, v, bias=bias, causal=True, backend=self.attention_backend)
        a = a.reshape(b, nx * ny, self.heads, t, self.head_dim).permute(0, 3, 1, 2, 4)
        out = self.out(a.reshape(b, t, nx, ny, c))
        if self.layer_scale is not None:
            out = out * self.layer_scale
        return x + self.drop_path(out)
