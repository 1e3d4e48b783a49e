"""Flexible strided causal downsampling: one base kernel, a stride chosen per forward.

For a scale (st, ss) the convolution strides by (st, ss, ss) with a kernel tied to the stride:
temporal 1 when st = 1 and st + 1 otherwise (one-frame overlap, causal padding), spatial ss
("valid", non-overlapping). The kernel is the base kernel (the largest scale's) resized by
kernel modulation, so all scales share, and train, the same parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from physok.models.tokeniser.causal_conv import init_conv_
from physok.models.tokeniser.kernel_modulation import modulate_kernel, temporal_kernel
from physok.ops.causal_conv3d import causal_conv3d


class FlexibleDownsample(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal_scales: tuple[int, ...],
        spatial_scales: tuple[int, ...],
        kernel_resize: str = "pinv",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.temporal_scales = tuple(temporal_scales)
        self.spatial_scales = tuple(spatial_scales)
        self.base_kernel = (temporal_kernel(max(temporal_scales)), *(2 * (max(spatial_scales),)))
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.base_kernel))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.kernel_resize = kernel_resize
        self.backend = backend
        init_conv_(self.weight, self.bias)

    def kernel(self, scale: tuple[int, int]) -> torch.Tensor:
        """The modulated kernel for a (temporal, spatial) scale."""
        st, ss = scale
        if st not in self.temporal_scales or ss not in self.spatial_scales:
            raise ValueError(
                f"scale {scale} not in this layer's sets {self.temporal_scales} x "
                f"{self.spatial_scales}"
            )
        return modulate_kernel(self.weight, (temporal_kernel(st), ss, ss), self.kernel_resize)

    def forward(self, x: torch.Tensor, scale: tuple[int, int]) -> torch.Tensor:
        st, ss = scale
        return causal_conv3d(
            x, self.kernel(scale), self.bias, (st, ss, ss), "valid", backend=self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]}, {self.weight.shape[0]}, base_kernel={self.base_kernel}, "
            f"temporal={self.temporal_scales}, spatial={self.spatial_scales}"
        )
