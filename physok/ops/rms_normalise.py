"""Sample-wise, per-field RMS and z-score normalisation and their inverses, dispatched per call.

The reference is `physok.data.normalise` (torch ops); the fast path is the fused Triton kernel
pair in `physok_kernels.rms_normalise` (split reduction over T·X·Y per (sample, field), then one
scaling pass). `physok.ops.backend.use_triton` picks one per call. The Triton path handles
float32/bfloat16/float16 fields; under "auto" other dtypes (e.g. float64) quietly take the
reference, while a forced backend="triton" rejects them with a clear error.
"""

from __future__ import annotations

import torch

from physok.data import normalise as reference
from physok.data.normalise import DEFAULT_EPS
from physok.ops.backend import requested_backend, use_triton

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _triton(fields: torch.Tensor, backend: str | None, op: str) -> bool:
    if not use_triton(fields, backend, op):
        return False
    if fields.dtype in TRITON_DTYPES:
        return True
    if requested_backend(backend) == "triton":
        raise ValueError(
            f"{op}: backend 'triton' was forced but the kernel supports float32/bfloat16/float16, "
            f"not {fields.dtype}; use backend='reference' or 'auto'"
        )
    return False


def rms_normalise(
    fields: torch.Tensor,
    n_context: int | None = None,
    eps: float = DEFAULT_EPS,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fields / scales, scales): fields (B, T, C, *spatial), scales (B, C) in fp32 or wider.

    Scales are the per-sample, per-field RMS over the first `n_context` frames (all frames when
    None) and every grid point, clamped >= eps; all frames are divided by them. Differentiable
    w.r.t. fields (through the scales too) on both backends.
    """
    if _triton(fields, backend, "rms_normalise"):
        from physok_kernels.rms_normalise import rms_normalise as fast

        return fast(fields, n_context, eps)
    return reference.rms_normalise(fields, n_context, eps)


def rms_denormalise(
    fields: torch.Tensor, scales: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """Inverse of `rms_normalise`: fields * scales, in fields' dtype.

    Differentiable w.r.t. fields and scales on both backends.
    """
    if _triton(fields, backend, "rms_denormalise"):
        from physok_kernels.rms_normalise import rms_denormalise as fast

        return fast(fields, scales)
    return reference.rms_denormalise(fields, scales)


def zscore_normalise(
    fields: torch.Tensor,
    n_context: int | None = None,
    eps: float = DEFAULT_EPS,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """((fields - mean) / std, mean, std): fields (B, T, C, *spatial), mean and std (B, C) in
    fp32 or wider, over the first `n_context` frames (all when None) and every grid point; std
    clamped >= eps. Differentiable w.r.t. fields (through the statistics too)."""
    if _triton(fields, backend, "zscore_normalise"):
        from physok_kernels.rms_normalise import zscore_normalise as fast

        return fast(fields, n_context, eps)
    return reference.zscore_normalise(fields, n_context, eps)


def zscore_denormalise(
    fields: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """Inverse of `zscore_normalise`: fields * std + mean, in fields' dtype."""
    if _triton(fields, backend, "zscore_denormalise"):
        from physok_kernels.rms_normalise import zscore_denormalise as fast

        return fast(fields, mean, std)
    return reference.zscore_denormalise(fields, mean, std)
