"""Sample-wise, per-field normalisation (reference implementations): RMS and z-score.

`rms`: each field of each sample is divided by its RMS over all snapshots and grid points of
that sample, clamped below by `eps` so an all-zero field does not blow up (the paper's choice).
`zscore`: the field's mean over the same points is subtracted first and the division is by its
(population) standard deviation, clamped below by `eps`. With RMS scaling a field that is mostly
a constant offset (energy and pressure on Euler are ~92% mean) stays mostly offset; the z-score
puts every field's variation at unit scale. For prediction the statistics come from the context
frames only and are applied to the target too: a model must not see the target's statistics.
VRMSE and NEPS (which leaves out the mean mode) are invariant to both maps.

A fused Triton kernel is the fast path (kernels/, dispatched elsewhere); this module is the
reference it is tested against.
"""

from __future__ import annotations

import torch

DEFAULT_EPS = 1e-6


def _context(fields: torch.Tensor, n_context: int | None) -> tuple[torch.Tensor, list[int]]:
    """The first `n_context` snapshots in float32 or wider, and the time and space dims."""
    if fields.dim() < 4:
        raise ValueError(f"fields must be (B, T, C, *spatial), got shape {tuple(fields.shape)}")
    if n_context is not None:
        if not 1 <= n_context <= fields.shape[1]:
            raise ValueError(f"n_context={n_context} outside 1..{fields.shape[1]} snapshots")
        fields = fields[:, :n_context]
    acc = fields.to(torch.promote_types(fields.dtype, torch.float32))
    return acc, [1, *range(3, acc.dim())]


def field_rms(
    fields: torch.Tensor, n_context: int | None = None, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Per-sample, per-field RMS of `fields` (B, T, C, *spatial) over time and space.

    Only the first `n_context` snapshots are used when given. Returns (B, C), clamped >= eps,
    computed in float32 or wider.
    """
    acc, dims = _context(fields, n_context)
    return acc.square().mean(dim=dims).sqrt().clamp_min(eps)


def field_mean_std(
    fields: torch.Tensor, n_context: int | None = None, eps: float = DEFAULT_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-field mean and population standard deviation of `fields`
    (B, T, C, *spatial) over time and space (the first `n_context` snapshots when given).

    Returns (mean, std), each (B, C) in float32 or wider; std is clamped >= eps. The variance is
    taken about the mean (two passes), not as E[f²] - E[f]², which cancels catastrophically for
    fields with a large offset.
    """
    acc, dims = _context(fields, n_context)
    mean = acc.mean(dim=dims)
    var = (acc - _broadcast(mean, acc)).square().mean(dim=dims)
    return mean, var.sqrt().clamp_min(eps)


def zscore_normalise(
    fields: torch.Tensor, n_context: int | None = None, eps: float = DEFAULT_EPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ((fields - mean) / std, mean, std); statistics (B, C) from the first `n_context`
    snapshots, applied to every snapshot."""
    mean, std = field_mean_std(fields, n_context, eps)
    out = (fields - _broadcast(mean, fields)) / _broadcast(std, fields)
    return out.to(fields.dtype), mean, std


def zscore_denormalise(
    fields: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Inverse of `zscore_normalise`: fields * std + mean, in fields' dtype."""
    for name, stat in (("mean", mean), ("std", std)):
        if stat.shape != (fields.shape[0], fields.shape[2]):
            raise ValueError(
                f"{name} shape {tuple(stat.shape)} does not match fields "
                f"(B={fields.shape[0]}, C={fields.shape[2]})"
            )
    return (fields * _broadcast(std, fields) + _broadcast(mean, fields)).to(fields.dtype)


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
