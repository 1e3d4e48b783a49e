"""CausalConv3d: a learned causal 3D convolution layer over (B, C, T, X, Y)."""

from __future__ import annotations

import math

import torch
from torch import nn

from physok.ops.causal_conv3d import causal_conv3d


def init_conv_(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """PyTorch's default Conv3d initialisation (kaiming-uniform with a=sqrt(5))."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


class CausalConv3d(nn.Module):
    """Stride-1 causal convolution, "same" in space (odd kernels), kt-1 leading zero frames."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *k))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.backend = backend
        init_conv_(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return causal_conv3d(x, self.weight, self.bias, 1, "same", backend=self.backend)

    def extra_repr(self) -> str:
        co, ci, *k = self.weight.shape
        return f"{ci}, {co}, kernel_size={tuple(k)}, causal"
