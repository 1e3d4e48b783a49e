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
