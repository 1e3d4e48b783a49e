"""Flexible causal upsampling: depth-to-space (default) or causal transposed convolution.

Depth-to-space: a causal 3x3x3 convolution expands C channels to C * st * ss * ss for the
largest scale, and the channels are rearranged into time and space (pixel shuffle). A smaller
scale (st', ss') keeps every (st/st')-th sub-frame and every (ss/ss')-th sub-pixel of the base
output; that subsampling commutes with the convolution, so it is done on the kernel's output
channels instead (no wasted compute). The first st' - 1 frames are dropped so 1 + n frames
become 1 + n * st' (MAGVIT-2). Latent frame i then decodes frames (i-1)*st'+1 .. i*st': the
decoder is causal per compression chunk, like MAGVIT-2.

Transposed: a strided causal transposed convolution whose kernel (tied to the stride as in
downsampling) is modulated from one base kernel, trimmed to (n - 1) * st' + 1 frames, then a
causal 3x3x3 convolution. Output frame j sees latent frames <= j / st' only (strictly causal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from physok.models.tokeniser.causal_conv import CausalConv3d, init_conv_
from physok.models.tokeniser.kernel_modulation import ModulatedConvBase
from physok.ops.causal_conv3d import causal_conv3d


def _check_scale(scale: tuple[int, int], ts: tuple[int, ...], ss: tuple[int, ...]) -> None:
    if scale[0] not in ts or scale[1] not in ss:
        raise ValueError(f"scale {scale} not in this layer's sets {ts} x {ss}")


class DepthToSpaceUpsample(nn.Module):
    def __init__(
        self,
        channels: int,
        temporal_scales: tuple[int, ...],
        spatial_scales: tuple[int, ...],
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.temporal_scales = tuple(temporal_scales)
        self.spatial_scales = tuple(spatial_scales)
        self.max_t, self.max_s = max(temporal_scales), max(spatial_scales)
        expand = self.max_t * self.max_s * self.max_s
        self.weight = nn.Parameter(torch.empty(channels * expand, channels, 3, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels * expand))
        self.backend = backend
        init_conv_(self.weight, self.bias)

    def output_channels(self, scale: tuple[int, int]) -> torch.Tensor:
        """Indices of the base conv's output channels that a smaller scale keeps."""
        st, ss = scale
        _check_scale(scale, self.temporal_scales, self.spatial_scales)
        c = torch.arange(self.channels)[:, None, None, None]
        pt = torch.arange(0, self.max_t, self.max_t // st)[None, :, None, None]
        px = torch.arange(0, self.max_s, self.max_s // ss)[None, None, :, None]
        py = torch.arange(0, self.max_s, self.max_s // ss)[None, None, None, :]
        # Base channel layout is (c, pt, px, py), flattened.
        idx = ((c * self.max_t + pt) * self.max_s + px) * self.max_s + py
        return idx.reshape(-1)

    def forward(self, x: torch.Tensor, scale: tuple[int, int]) -> torch.Tensor:
        st, ss = scale
        if (st, ss) == (self.max_t, self.max_s):
            weight, bias = self.weight, self.bias
        else:
            idx = self.output_channels(scale).to(self.weight.device)
            weight, bias = self.weight[idx], self.bias[idx]
        y = causal_conv3d(x, weight, bias, 1, "same", backend=self.backend)
        y = rearrange(y, "b (c pt px py) t x y -> b c (t pt) (x px) (y py)", pt=st, px=ss, py=ss)
        return y[:, :, st - 1 :]

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, expand={self.max_t}x{self.max_s}x{self.max_s}, "
            f"temporal={self.temporal_scales}, spatial={self.spatial_scales}"
        )


class TransposedUpsample(ModulatedConvBase):
    def __init__(
        self,
        channels: int,
        temporal_scales: tuple[int, ...],
        spatial_scales: tuple[int, ...],
        kernel_resize: str = "pinv",
        backend: str = "auto",
    ) -> None:
        # conv_transpose3d weight layout: (in, out, kt, kx, ky)
        super().__init__(
            (channels, channels), channels, temporal_scales, spatial_scales, kernel_resize
        )
        self.post = CausalConv3d(channels, channels, 3, backend=backend)

    def forward(self, x: torch.Tensor, scale: tuple[int, int]) -> torch.Tensor:
        st, ss = scale
        frames = x.shape[2]
        y = F.conv_transpose3d(x, self.kernel(scale), self.bias, stride=(st, ss, ss))
        return self.post(y[:, :, : (frames - 1) * st + 1])
