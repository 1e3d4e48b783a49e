"""What a next-frame model predicts, and in which units: context normalisation and target.

A model sees a context window (B, T, C, X, Y) in physical units. It works in *normalised units*:
each field of each sample is mapped by the context's own statistics (`normalisation`):

- "rms" (the paper): x̂ = x / rms, rms over the context's frames and points;
- "zscore": x̂ = (x - mean) / std over the same points (physok.data.normalise says why).

Its raw output is in *output units*, fixed by the `target`:

- "frame" (the paper's text, "predicts the next frame"): output j is frame j + 1 in normalised
  units;
- "delta" (Walrus's default `prediction_type: delta`): output j is the change from frame j to
  frame j + 1 in units of the context's typical change, s_Δ = RMS over the context of
  x̂_t - x̂_{t-1} per sample and field; frame j + 1 = x̂_j + s_Δ · output j. A model whose output
  is zero is persistence; the loss (MAE in output units) weighs every sample's change equally
  whatever its speed, as Walrus's loss on the normalised delta does.

s_Δ is floored at `DELTA_SCALE_FLOOR` (normalised units, where a field's spread is 1): a field
that does not change over the context would otherwise make the delta target of any later change
arbitrarily large. Every statistic comes from the context frames only, never from the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from physok.ops.rms_normalise import (
    rms_denormalise,
    rms_normalise,
    zscore_denormalise,
    zscore_normalise,
)

TARGETS = ("frame", "delta")
NORMALISATIONS = ("rms", "zscore")
DELTA_SCALE_FLOOR = 1e-3


@dataclass
class ContextStats:
    """Per-sample, per-field statistics of one context, each (B, C), float32 or wider.

    `shift` is zero for "rms"; `delta_scale` (normalised units) is set for the "delta" target.
    """

    normalisation: str
    shift: torch.Tensor
    scale: torch.Tensor
    delta_scale: torch.Tensor | None = None


def _check(normalisation: str, target: str | None = None) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    if target is not None and target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def _acc(t: torch.Tensor) -> torch.Tensor:
    """float32 or wider (bf16 autocast outputs are widened; float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _bc(stat: torch.Tensor) -> torch.Tensor:
    return stat[:, None, :, None, None]  # (B, C) -> (B, 1, C, 1, 1)


def delta_scale(x: torch.Tensor) -> torch.Tensor:
    """RMS over time and space of x[:, t] - x[:, t-1] (B, T >= 2, C, X, Y) -> (B, C), floored."""
    if x.shape[1] < 2:
        raise ValueError(f"the delta target needs >= 2 context frames, got {x.shape[1]}")
    d = _acc(x[:, 1:]) - _acc(x[:, :-1])
    return d.square().mean(dim=(1, 3, 4)).sqrt().clamp_min(DELTA_SCALE_FLOOR)


def normalise_context(
    fields: torch.Tensor, normalisation: str, target: str, n_context: int | None = None
) -> tuple[torch.Tensor, ContextStats]:
    """(every frame of `fields` in normalised units, the statistics of the first `n_context`
    frames (all when None)). Frames after the context (a training target) are mapped by the
    context's statistics; `delta_scale` comes from the context frames alone."""
    _check(normalisation, target)
    n = fields.shape[1] if n_context is None else n_context
    if normalisation == "rms":
        x, scale = rms_normalise(fields, n_context=n)
        shift = torch.zeros_like(scale)
    else:
        x, shift, scale = zscore_normalise(fields, n_context=n)
    stats = ContextStats(normalisation, shift, scale)
    if target == "delta":
        stats.delta_scale = delta_scale(x[:, :n])
    return x, stats


def denormalise(x: torch.Tensor, stats: ContextStats) -> torch.Tensor:
    """Normalised-unit frames (B, T, C, X, Y) back to physical units."""
    if stats.normalisation == "rms":
        return rms_denormalise(x, stats.scale)
    return zscore_denormalise(x, stats.shift, stats.scale)


def outputs_to_frames(
    outputs: torch.Tensor, context: torch.Tensor, stats: ContextStats, target: str
) -> torch.Tensor:
    """Raw outputs (B, T, C, X, Y) -> the frames they predict, in normalised units, float32.

    Output j predicts frame j + 1; for "delta" that is context frame j plus s_Δ · output j, so
    `context` must be the normalised frames the outputs were computed from (the same T).
    """
    _check(stats.normalisation, target)
    out = _acc(outputs)
    if target == "frame":
        return out
    if stats.delta_scale is None:
        raise ValueError("the delta target needs stats with delta_scale (normalise_context)")
    if context.shape[1] != out.shape[1]:
        raise ValueError(
            f"outputs cover {out.shape[1]} frames but the context has {context.shape[1]}"
        )
    return _acc(context) + _bc(stats.delta_scale) * out


def target_in_output_units(
    next_frames: torch.Tensor, last_frames: torch.Tensor, stats: ContextStats, target: str
) -> torch.Tensor:
    """What the raw output should be for normalised true frames `next_frames` that follow
    normalised frames `last_frames` (same shape): the frames ("frame") or the scaled change
    ("delta")."""
    _check(stats.normalisation, target)
    if target == "frame":
        return next_frames
    return (_acc(next_frames) - _acc(last_frames)) / _bc(stats.delta_scale)
