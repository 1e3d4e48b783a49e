"""RMSGroupNorm: RMS normalisation within channel groups over one frame's spatial tokens.

Input is channels-last, (*batch, *spatial, C) with `spatial_dims` spatial axes (the processor
uses (B, T, X, Y, C)). Channels split into `num_groups` contiguous groups; for each leading
index (sample and time step) and each group, one RMS is taken over that group's channels and all
spatial positions of the frame, as Walrus does (F.rms_norm over (C/G, X, Y)):

    y[.., i, j, c] = x[.., i, j, c] * weight[c]
                     / sqrt(mean over i', j', c' in group(c) of x[.., i', j', c']² + eps)

No mean is subtracted and there is no bias. The statistics never cross the leading axes, so a
time step is normalised with its own statistics only (temporal causality is preserved).
Statistics are computed in fp32 (or fp64) whatever the input dtype.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSGroupNorm(nn.Module):
    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-6, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(
                f"RMSGroupNorm: num_groups={num_groups} must divide num_channels={num_channels}"
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.spatial_dims = spatial_dims
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < self.spatial_dims + 1 or x.shape[-1] != self.num_channels:
            raise ValueError(
                f"RMSGroupNorm: expected (*batch, {self.spatial_dims} spatial dims, "
                f"{self.num_channels}), got {tuple(x.shape)}"
            )
        acc = torch.promote_types(x.dtype, torch.float32)
        g = x.to(acc).unflatten(-1, (self.num_groups, -1))  # (..., *spatial, G, C/G)
        reduce = (*range(-2 - self.spatial_dims, -2), -1)
        inv_rms = torch.rsqrt(g.square().mean(dim=reduce, keepdim=True) + self.eps)
        return ((g * inv_rms).flatten(-2) * self.weight.to(acc)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"
