"""Axial 2D rotary position embedding (RoPE) on positions normalised to [-1, 1].

Head dim D is split as: D//4 rotation pairs for the x axis, D//4 for the y axis, the remaining
D % 4 dims unrotated. Pair j of an axis couples dims (j, j + P) of that axis' block of 2P dims
("rotate half" layout) and rotates them by the angle p · ω_j, where p is the token's position on
that axis, p_i = -1 + 2 i / (n - 1) for n grid points (0 when n = 1), and
ω_j = π · linspace(1, max_freq / 2, P)_j (Walrus' "pixel" frequencies).

Because both q and k are rotated by their own angle, q_rot · k_rot depends on positions only
through p_q - p_k per axis: the score is a function of relative position on a given grid.
Tokens are ordered x-major (index = x * Y + y), the processor's flattening of (X, Y).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def normalised_positions(
    n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """n grid positions evenly spaced over [-1, 1] (a single point sits at 0)."""
    if n == 1:
        return torch.zeros(1, device=device, dtype=dtype)
    return torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)


class AxialRotary(nn.Module):
    def __init__(self, head_dim: int, max_freq: float = 256.0) -> None:
        super().__init__()
        if head_dim < 4:
            raise ValueError(f"AxialRotary: head_dim must be >= 4, got {head_dim}")
        self.head_dim = head_dim
        self.pairs = head_dim // 4
        self.max_freq = max_freq
        freqs = math.pi * torch.linspace(1.0, max_freq / 2, self.pairs, dtype=torch.float64)
        # Not persistent: derived from the config, and kept in fp64 so every dtype gets exact
        # angles (they are cast when used).
        self.register_buffer("freqs", freqs, persistent=False)

    def angles(
        self, x_size: int, y_size: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token angles for each axis: two (X*Y, P) tensors, x-major token order."""
        freqs = self.freqs.to(dtype)
        px = normalised_positions(x_size, freqs.device, dtype)
        py = normalised_positions(y_size, freqs.device, dtype)
        ax = (px[:, None] * freqs).repeat_interleave(y_size, dim=0)  # (X*Y, P)
        ay = (py[:, None] * freqs).repeat(x_size, 1)  # (X*Y, P)
        return ax, ay

    def cos_sin(
        self, x_size: int, y_size: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles, each (X*Y, 2, P): axis x then y. Compute once per grid."""
        angle = torch.stack(self.angles(x_size, y_size, dtype), dim=-2)
        return angle.cos(), angle.sin()

    def rotate(self, t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate t (..., X*Y, D) with `cos_sin` of its grid; math in >= fp32, t's dtype out."""
        if t.shape[-1] != self.head_dim or t.shape[-2] != cos.shape[0]:
            raise ValueError(
                f"AxialRotary: expected (..., {cos.shape[0]}, {self.head_dim}), "
                f"got {tuple(t.shape)}"
            )
        p = self.pairs
        acc = torch.promote_types(t.dtype, torch.float32)
        v = t[..., : 4 * p].to(acc).unflatten(-1, (2, 2, p))  # (..., L, axis, half, P)
        a, b = v[..., 0, :], v[..., 1, :]
        cos, sin = cos.to(acc), sin.to(acc)
        rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-2).flatten(-3)
        if 4 * p == self.head_dim:
            return rotated.to(t.dtype)
        return torch.cat((rotated.to(t.dtype), t[..., 4 * p :]), dim=-1)

    def forward(self, t: torch.Tensor, x_size: int, y_size: int) -> torch.Tensor:
        """Rotate t of shape (..., X*Y, D) (tokens x-major) by each token's 2D position."""
        acc = torch.promote_types(t.dtype, torch.float32)
        return self.rotate(t, *self.cos_sin(x_size, y_size, acc))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, pairs_per_axis={self.pairs}, max_freq={self.max_freq:g}"
