"""Next-frame metrics on a split: mean and spread over random subsets (DESIGN.md §1, §6).

Protocol: draw `subsets` random subsets of `subset_size` distinct windows (paper: 10 x 4,096
validation windows); each window's frame after the context (frame 10 of the experiment's
windows) is predicted from the context frames (1-9). Every window of the subsets' union is
evaluated once and its metrics kept; a subset's value is the mean over its windows, and the
report gives the mean and the sample standard deviation over subsets.

Per window: VRMSE (mean over fields), the_well's three-bin spectral NMSE (mean over fields)
and VRMSE per field. NEPS low/mid/high is a property of a set of windows, not a mean of
per-window values: per field, the error and true power spectra are summed over the subset's
windows (ensemble spectra; per-window ratios are heavy-tailed, see physok.metrics.neps), NEPS(k)
is their ratio per shell, a range's NEPS the mean over its shells, and the subset's value the
mean over fields. The model predicts in physical units (`predict_next`: any forecaster, the
emulator or a baseline, is evaluated the same way, whatever its own normalisation and target);
metrics are computed in float32 in units normalised by the context's per-sample, per-field RMS,
so VRMSE's epsilon applies to unit-RMS fields whatever their physical magnitude; all metrics are
invariant to those scales otherwise.

Two reference forecasts are evaluated on the same windows beside every model: persistence
(repeat the last context frame) and linear extrapolation (2 f_T - f_{T-1}, physok.baselines).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from physok.baselines.extrapolation import LinearExtrapolation
from physok.data.errors import DataError
from physok.data.loaders import collate_windows, loader_generator
from physok.data.reader import WellWindowDataset
from physok.evaluate.config import EvalConfig, autocast
from physok.evaluate.report import json_number
from physok.metrics.neps import RANGES, ensemble_neps, shell_powers, the_well_nmse_per_bin
from physok.metrics.vrmse import vrmse
from physok.ops.rms_normalise import rms_normalise

__all__ = [
    "draw_subsets",
    "evaluate_next_frame",
    "mean_std",
    "next_frame_metrics",
    "window_loader",
]


def draw_subsets(n_windows: int, subsets: int, subset_size: int, seed: int) -> list[list[int]]:
    """`subsets` sorted lists of min(subset_size, n_windows) distinct window indices.

    Reproducible: a torch.Generator seeded with `seed` draws one permutation per subset.
    """
    if n_windows < 1:
        raise DataError("the split holds no windows to evaluate")
    size = min(subset_size, n_windows)
    g = torch.Generator().manual_seed(int(seed))
    return [sorted(torch.randperm(n_windows, generator=g)[:size].tolist()) for _ in range(subsets)]


def mean_std(values: list[float]) -> dict[str, float | None]:
    """{"mean", "std"} over subsets: the sample standard deviation (None for one subset).

    Any NaN or Inf subset value (a diverged prediction, or a metric the truth leaves undefined)
    makes both None: a mean over the remaining subsets would hide it (and JSON has no NaN).
    """
    if not values or not all(math.isfinite(v) for v in values):
        return {"mean": None, "std": None}
    std = json_number(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": json_number(np.mean(values)), "std": std}


def window_loader(dataset: WellWindowDataset, indices: list[int], cfg: EvalConfig) -> DataLoader:
    """Batches of the windows `indices`, in that order (cfg.batch_size, cfg.num_workers)."""
    return DataLoader(
        Subset(dataset, indices),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate_windows,
        generator=loader_generator(cfg.seed),  # leaves torch's global RNG alone
    )


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (a parameter-free baseline: the CPU)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def next_frame_metrics(
    model: nn.Module,
    fields: torch.Tensor,
    field_indices: torch.Tensor | list[int],
    cfg: EvalConfig,
) -> dict[str, torch.Tensor]:
    """Per-window metrics of one batch (B, T >= context + 1, C, X, Y) on the model's device:
    {"vrmse": (B,), "well_nmse": (B, 3), "vrmse_field": (B, C), "shell_err": (B, C, S),
    "shell_true": (B, C, S), "persistence_vrmse": (B,), "persistence_shell_err": (B, C, S),
    "linear_vrmse": (B,), "linear_shell_err": (B, C, S)}, float32 on the CPU; the shell entries
    are the per-shell power sums (physok.metrics.neps.shell_powers) that ensemble NEPS is built
    from; "persistence_*" are the metrics of repeating the last context frame, "linear_*" those
    of linear extrapolation from the last two."""
    ctx = model.context_frames
    device = _device_of(model)
    fields = fields[:, : ctx + 1].to(device)
    idx = field_indices.tolist() if isinstance(field_indices, torch.Tensor) else field_indices
    with autocast(cfg, device):
        pred = model.predict_next(fields[:, :ctx], idx)  # physical units
    # metric units: the context's RMS per sample and field
    x, rms = rms_normalise(fields.float(), n_context=ctx)
    context, target = x[:, :ctx], x[:, ctx : ctx + 1]
    pred = (pred.float() / rms[:, :, None, None])[:, None]
    per_field = vrmse(pred, target, reduce="none")[:, 0]  # (B, C)
    err, tru = shell_powers(pred[:, 0], target[:, 0])  # (B, C, S) each
    well = the_well_nmse_per_bin(pred[:, 0], target[:, 0])  # (B, C, 3)
    out = {
        "vrmse": per_field.mean(dim=1).cpu(),
        "well_nmse": well.mean(dim=1).cpu(),
        "vrmse_field": per_field.cpu(),
        "shell_err": err.cpu(),
        "shell_true": tru.cpu(),
    }
    # the reference forecasts, on the same windows
    references = {
        "persistence": context[:, -1:],
        "linear": LinearExtrapolation().predict_next(context, idx)[:, None],
    }
    for name, ref in references.items():
        out[f"{name}_vrmse"] = vrmse(ref, target, reduce="sample").cpu()
        out[f"{name}_shell_err"] = shell_powers(ref[:, 0], target[:, 0])[0].cpu()
    return out


def evaluate_next_frame(
    model: nn.Module,
    dataset: WellWindowDataset,
    cfg: EvalConfig,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Next-frame VRMSE / NEPS / the_well NMSE of `model` on `dataset` (see the module docstring).

    `dataset` windows must hold at least `model.context_frames + 1` frames (the first ones are
    used). `device` moves the model there (None: where it is). Returns {"split", "vrmse",
    "neps", "well_nmse", "vrmse_per_field", "persistence", "subsets", "subset_size", "windows",
    "notes"}.
    """
    ctx = model.context_frames
    if dataset.window < ctx + 1:
        raise DataError(
            f"{dataset.dataset_dir}: next-frame evaluation needs windows of {ctx + 1} frames "
            f"({ctx} context frames and the target), the dataset reads {dataset.window}"
        )
    if device is not None:
        model.to(device)
    notes: list[str] = []
    n = len(dataset)
    if cfg.subset_size > n:
        notes.append(
            f"split {dataset.split} of {dataset.dataset_name} has {n} windows, fewer than "
            f"subset_size {cfg.subset_size}: every subset is the whole split (std over subsets 0)"
        )
    chosen = draw_subsets(n, cfg.subsets, cfg.subset_size, cfg.seed)
    union = sorted(set().union(*chosen))
    row = {w: i for i, w in enumerate(union)}
    subset_rows = [torch.tensor([row[w] for w in s]) for s in chosen]
    membership = torch.zeros(len(union), len(chosen), dtype=torch.float64)
    for j, rows in enumerate(subset_rows):
        membership[rows, j] = 1.0
    per_window, spectra = _evaluate_windows(model, dataset, union, membership, cfg, progress)
    err, tru = spectra["shell_err"], spectra["shell_true"]
    grid = tuple(dataset.grid_shape)

    def subset_neps(errors: torch.Tensor) -> dict[str, dict[str, float | None]]:
        values = torch.stack([ensemble_neps(errors[j], tru[j], grid) for j in range(len(chosen))])
        return {r: mean_std([float(v) for v in values[:, i]]) for i, r in enumerate(RANGES)}

    def over_subsets(values: torch.Tensor) -> dict[str, float | None]:
        # a NaN window (a diverged prediction) makes its subset, and the result, None
        return mean_std([float(values[r].double().mean()) for r in subset_rows])

    names = list(dataset.channel_names)
    field_means = per_window["vrmse_field"].double().mean(dim=0)
    return {
        "split": dataset.split,
        "vrmse": over_subsets(per_window["vrmse"]),
        "neps": subset_neps(err),
        "well_nmse": {r: over_subsets(per_window["well_nmse"][:, i]) for i, r in enumerate(RANGES)},
        "vrmse_per_field": {name: json_number(field_means[c]) for c, name in enumerate(names)},
        # the reference forecasts on the same subsets: "repeat the last context frame" and
        # "extrapolate the last two linearly"
        "persistence": {
            "vrmse": over_subsets(per_window["persistence_vrmse"]),
            "neps": subset_neps(spectra["persistence"]),
        },
        "linear_extrapolation": {
            "vrmse": over_subsets(per_window["linear_vrmse"]),
            "neps": subset_neps(spectra["linear"]),
        },
        "subsets": cfg.subsets,
        "subset_size": min(cfg.subset_size, n),
        "windows": len(union),
        "notes": notes,
    }


def _evaluate_windows(
    model: nn.Module,
    dataset: WellWindowDataset,
    indices: list[int],
    membership: torch.Tensor,
    cfg: EvalConfig,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-window metrics of `indices`, in that order, and per subset the shell power sums
    (subsets, C, S) of its windows ({"shell_err", "shell_true", "persistence", "linear"};
    `membership`: (len(indices), subsets) 0/1). Eval mode, restored afterwards."""
    loader = window_loader(dataset, indices, cfg)
    was_training = model.training
    model.eval()
    parts: list[dict[str, torch.Tensor]] = []
    sums: dict[str, torch.Tensor] = {}
    spectra = {"shell_err": "shell_err", "shell_true": "shell_true"}
    spectra["persistence_shell_err"] = "persistence"
    spectra["linear_shell_err"] = "linear"
    start = 0
    try:
        with tqdm(
            total=len(indices), desc="next-frame", unit="window", disable=not progress
        ) as bar:
            for batch in loader:
                fields, idx = batch["fields"], batch["field_indices"]
                part = next_frame_metrics(model, fields, idx, cfg)
                weights = membership[start : start + fields.shape[0]]  # (B, subsets)
                member = weights > 0  # (B, subsets)
                for key, name in spectra.items():
                    # per subset: the sum of its own windows' spectra (subsets, C, S); masked,
                    # not weighted, so a NaN window reaches only the subsets that hold it
                    x = part.pop(key).double()
                    s = torch.stack(
                        [
                            torch.where(member[:, j, None, None], x, 0.0).sum(0)
                            for j in range(member.shape[1])
                        ]
                    )
                    sums[name] = s if name not in sums else sums[name] + s
                parts.append(part)
                start += fields.shape[0]
                bar.update(fields.shape[0])
    finally:
        model.train(was_training)
    per_window = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return per_window, sums
