"""Flexible strided causal downsampling: one base kernel, a stride chosen per forward.

For a scale (st, ss) the convolution strides by (st, ss, ss) with a kernel tied to the stride:
temporal 1 when st = 1 and st + 1 otherwise (one-frame overlap, causal padding), spatial ss
("valid", non-overlapping). The kernel is the base kernel (the largest scale's) resized by
kernel modulation, so all scales share, and train, the same parameters.
"""

from __future__ import annotations

import torch

from physok.models.tokeniser.kernel_modulation import ModulatedConvBase
from physok.ops.causal_conv3d import causal_conv3d


class FlexibleDownsample(ModulatedConvBase):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal_scales: tuple[int, ...],
        spatial_scales: tuple[int, ...],
        kernel_resize: str = "pinv",
        backend: str = "auto",
    ) -> None:
        super().__init__(
            (out_channels, in_channels),
            out_channels,
            temporal_scales,
            spatial_scales,
            kernel_resize,
        )
        self.backend = backend

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
