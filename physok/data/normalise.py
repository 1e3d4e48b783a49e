"""Sample-wise, per-field RMS normalisation (reference implementation).

Each field of each sample is divided by its RMS over all snapshots and grid points of that
sample, clamped below by `eps` so an all-zero field does not blow up. For prediction the scales
come from the context frames only and are applied to the target too: a model must not see the
target's statistics. VRMSE and NEPS are invariant to such per-sample, per-field scales.

A fused Triton kernel is the fast path (kernels/, dispatched elsewhere); this module is the
reference it is tested against.
"""

from __future__ import annotations

import torch

DEFAULT_EPS = 1e-6


def field_rms(
    fields: torch.Tensor, n_context: int | None = None, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Per-sample, per-field RMS of `fields` (B, T, C, *spatial) over time and space.

    Only the first `n_context` snapshots are used when given. Returns (B, C), clamped >= eps,
    computed in float32 or wider.
    """
    if fields.dim() < 4:
        raise ValueError(f"fields must be (B, T, C, *spatial), got shape {tuple(fields.shape)}")
    if n_context is not None:
        if not 1 <= n_context <= fields.shape[1]:
            raise ValueError(f"n_context={n_context} outside 1..{fields.shape[1]} snapshots")
        fields = fields[:, :n_context]
    acc = fields.to(torch.promote_types(fields.dtype, torch.float32))
    dims = [1, *range(3, acc.dim())]
    return acc.square().mean(dim=dims).sqrt().clamp_min(eps)


def _broadcast(scales: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    # (B, C) -> (B, 1, C, 1, ..., 1)
    return scales.reshape(scales.shape[0], 1, scales.shape[1], *([1] * (fields.dim() - 3)))


def rms_normalise(
    fields: torch.Tensor, n_context: int | None = None, eps: float = DEFAULT_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (fields / scales, scales); scales (B, C) from the first `n_context` snapshots."""
    scales = field_rms(fields, n_context, eps)
    return (fields / _broadcast(scales, fields)).to(fields.dtype), scales


def rms_denormalise(fields: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Inverse of `rms_normalise`: map normalised fields back to physical units."""
    if scales.shape != (fields.shape[0], fields.shape[2]):
        raise ValueError(
            f"scales shape {tuple(scales.shape)} does not match fields (B={fields.shape[0]}, "
            f"C={fields.shape[2]})"
        )
    return (fields * _broadcast(scales, fields)).to(fields.dtype)
