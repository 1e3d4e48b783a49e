"""SpatialAttention: Walrus' full attention over all spatial tokens of each frame, fused with MLP.

x (B, T, X, Y, C) -> RMSGroupNorm -> one linear to (MLP hidden, q, k, v) -> per-head LayerNorm
on q and k -> axial RoPE -> attention over the X*Y tokens of each frame (no mask) -> out
projection; the MLP half goes through SwiGLU (hidden -> hidden / 2) and its own projection;
out = x + drop_path(attn_out + mlp_out). Frames never mix (temporal causality is untouched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from physok.models.processor.drop_path import DropPath
from physok.models.processor.rms_group_norm import RMSGroupNorm
from physok.models.processor.rotary import AxialRotary
from physok.ops.attention import attention, probe_kernels


def swiglu(x: torch.Tensor) -> torch.Tensor:
    """Halve the last dim: value * silu(gate), value and gate its two halves."""
    value, gate = x.chunk(2, dim=-1)
    return value * F.silu(gate)


class SpatialAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_hidden: int,
        *,
        norm_groups: int,
        drop_path: float = 0.0,
        rope_max_freq: float = 256.0,
        layer_scale_init: float = 0.0,
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % heads or mlp_hidden % 2:
            raise ValueError(
                f"SpatialAttention: heads={heads} must divide dim={dim} and mlp_hidden="
                f"{mlp_hidden} must be even"
            )
        self.heads = heads
        self.head_dim = dim // heads
        self.attention_backend = attention_backend
        probe_kernels()  # outside any torch.compile trace
        self.norm = RMSGroupNorm(norm_groups, dim)
        self.fused_dims = (mlp_hidden, dim, dim, dim)  # MLP, q, k, v
        self.fused = nn.Linear(dim, sum(self.fused_dims))
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)
        self.rotary = AxialRotary(self.head_dim, rope_max_freq)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.mlp_out = nn.Linear(mlp_hidden // 2, dim)
        self.layer_scale = (
            nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            if layer_scale_init > 0
            else None
        )
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, nx, ny, c = x.shape
        mlp, q, k, v = self.fused(self.norm(x)).split(self.fused_dims, dim=-1)

        def heads(u: torch.Tensor) -> torch.Tensor:  # (B, T, X, Y, C) -> (B*T, H, X*Y, D)
            return u.reshape(b * t, nx * ny, self.heads, self.head_dim).transpose(1, 2)

        cos, sin = self.rotary.cos_sin(nx, ny, torch.promote_types(q.dtype, torch.float32))
        q = self.rotary.rotate(self.q_norm(heads(q)), cos, sin)
        k = self.rotary.rotate(self.k_norm(heads(k)), cos, sin)
        a = attention(q, k, heads(v), backend=self.attention_backend)
        a = a.transpose(1, 2).reshape(b, t, nx, ny, c)
        out = self.attn_out(a) + self.mlp_out(swiglu(mlp))
        if self.layer_scale is not None:
            out = out * self.layer_scale
        return x + self.drop_path(out)
