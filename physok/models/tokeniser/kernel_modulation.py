"""Kernel modulation: smaller convolution kernels derived from one learned base kernel.

A flexible layer learns a single base kernel for its largest scale (e.g. 3x4x4 for temporal
stride 2 and spatial stride 4). For a smaller scale the kernel is resized (Mukhopadhyay et al.
2025, after FlexiViT's PI-resize): with R the linear map that resizes a base-sized input patch
to the small size (area averaging, exact for the integer factors used here), the small kernel is
w' = pinv(R^T) w, the least-squares solution of <x, w> = <R x, w'>. So a small kernel applied to
a coarsened patch answers like the base kernel applied to the full patch. "interpolate" instead
resizes the kernel itself (w' = R w). Both are linear in w, so every scale trains the base kernel.
At the base size the kernel is returned unchanged.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from physok.models.tokeniser.causal_conv import init_conv_

KernelSize = tuple[int, int, int]


@functools.cache
def _resize_matrix(base: KernelSize, target: KernelSize) -> torch.Tensor:
    """R (prod(target), prod(base)): area-resize of a base-shaped patch to the target shape."""
    n = base[0] * base[1] * base[2]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *base)
    resized = F.adaptive_avg_pool3d(basis, target)  # (n, 1, *target)
    return resized.reshape(n, -1).T.contiguous()


@functools.cache
def _modulation_matrix(base: KernelSize, target: KernelSize, mode: str) -> torch.Tensor:
    """M (prod(target), prod(base)) with w'_flat = M @ w_flat."""
    r = _resize_matrix(base, target)
    if mode == "interpolate":
        return r
    if mode == "pinv":
        return torch.linalg.pinv(r.T)
    raise ValueError(f"kernel_resize must be 'pinv' or 'interpolate', got {mode!r}")


def modulate_kernel(weight: torch.Tensor, target: KernelSize, mode: str = "pinv") -> torch.Tensor:
    """Resize the last three dims of `weight` (..., kt, kx, ky) to `target`."""
    base = tuple(weight.shape[-3:])
    target = tuple(int(k) for k in target)
    if target == base:
        return weight
    if any(t > b for t, b in zip(target, base, strict=True)):
        raise ValueError(f"cannot modulate a {base} base kernel up to {target}")
    m = _modulation_matrix(base, target, mode).to(weight.device, weight.dtype)
    flat = weight.reshape(*weight.shape[:-3], -1)
    return (flat @ m.T).reshape(*weight.shape[:-3], *target)


def temporal_kernel(stride: int) -> int:
    """Kernel tied to stride in time: 1 when not striding, stride + 1 (one-frame overlap) else."""
    return 1 if stride == 1 else stride + 1


class ModulatedConvBase(nn.Module):
    """A learned base kernel (and bias) for the largest scale, modulated per (st, ss) scale.

    `leading` are the weight's leading dims: (out, in) for a convolution, (in, out) for a
    transposed one. The kernel is tied to the stride: temporal 1 or st + 1, spatial ss.
    """

    def __init__(
        self,
        leading: tuple[int, int],
        bias_channels: int,
        temporal_scales: tuple[int, ...],
        spatial_scales: tuple[int, ...],
        kernel_resize: str = "pinv",
    ) -> None:
        super().__init__()
        self.temporal_scales = tuple(temporal_scales)
        self.spatial_scales = tuple(spatial_scales)
        s = max(spatial_scales)
        self.base_kernel = (temporal_kernel(max(temporal_scales)), s, s)
        self.weight = nn.Parameter(torch.empty(*leading, *self.base_kernel))
        self.bias = nn.Parameter(torch.empty(bias_channels))
        self.kernel_resize = kernel_resize
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
