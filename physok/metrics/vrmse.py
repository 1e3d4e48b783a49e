"""VRMSE: root-mean-square error normalised by the truth's variance (The Well's headline metric).

For each (sample, frame, field): sqrt(mean((pred - true)²) / (var(true) + eps)), mean and
variance over the spatial points. The default reproduces `the_well.benchmark.metrics.VRMSE`
exactly: its variance is torch.std(true)² with Bessel's correction (divides by N - 1 for N
spatial points) and eps = 1e-7 added to it, with the square root outside. `correction=0` gives
the population variance instead. A perfect prediction scores 0; a constant prediction equal to
the field's spatial mean scores sqrt((N - 1) / N) (1 with `correction=0`). The value does not
change when a sample's field is rescaled (both pred and true), so it can be computed in
RMS-normalised units.
"""

from __future__ import annotations

import torch

REDUCTIONS = ("none", "sample", "frame", "field", "mean")


def vrmse(
    pred: torch.Tensor,
    true: torch.Tensor,
    eps: float = 1e-7,
    reduce: str = "mean",
    correction: int = 1,
) -> torch.Tensor:
    """VRMSE of `pred` against `true`, both (B, T, C, *spatial), computed in float32 or wider.

    reduce: "none" -> (B, T, C); "sample" -> (B,) mean over frames and fields; "frame" -> (T,)
    and "field" -> (C,) means over the other axes; "mean" -> scalar. correction: the variance's
    degrees-of-freedom correction over the spatial points (1: the_well's, 0: population).
    """
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != true shape {tuple(true.shape)}")
    if true.dim() < 4:
        raise ValueError(f"expected (B, T, C, *spatial) tensors, got shape {tuple(true.shape)}")
    if correction not in (0, 1):
        raise ValueError(f"correction must be 0 (population) or 1 (the_well), got {correction!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    dtype = torch.promote_types(true.dtype, torch.float32)
    pred, true = pred.to(dtype), true.to(dtype)
    spatial = tuple(range(3, true.dim()))
    mse = (pred - true).square().mean(dim=spatial)
    var = true.var(dim=spatial, correction=correction)
    per = (mse / (var + eps)).sqrt()  # (B, T, C)
    if reduce == "none":
        return per
    if reduce == "sample":
        return per.mean(dim=(1, 2))
    if reduce == "frame":
        return per.mean(dim=(0, 2))
    if reduce == "field":
        return per.mean(dim=(0, 1))
    return per.mean()
