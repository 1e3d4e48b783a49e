"""Autoregressive rollout VRMSE by horizon (DESIGN.md §1, §6).

From the first `context_frames` true frames of a window (9: frames 1-9) the model predicts
`rollout_steps` frames (18: frames 10-27), each from a window that holds its own earlier
predictions (`RolloutModel.rollout`). VRMSE is taken per step, averaged over windows and fields,
and summarised by horizon: the mean of the per-step values over each inclusive, 1-based step
range (paper: 1-2, 3-6, 7-18). Each window's own values are kept too (`per_window`), so a
report can give the spread over windows (`horizon_spread`: std and standard error) and compare
two models window by window: every model is evaluated on the same windows (`window_indices`).

Windows: `rollout_windows` are drawn at random (seeded) and spread over trajectories: one
window per trajectory in a random order of trajectories, then a second one, and so on, so a
small sample does not hold many overlapping windows of one simulation. Metrics are float32, in
units normalised by each window's context RMS (per sample and field), like the next-frame ones.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from physok.baselines.extrapolation import LinearExtrapolation, Persistence
from physok.data.errors import DataError
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.evaluate.config import EvalConfig, autocast
from physok.evaluate.next_frame import window_loader
from physok.evaluate.report import json_number
from physok.metrics.vrmse import vrmse
from physok.ops.rms_normalise import rms_normalise

__all__ = [
    "choose_rollout_windows",
    "evaluate_rollout",
    "horizon_means",
    "open_rollout_dataset",
    "window_spread",
]


def horizon_means(
    per_step: Sequence[float], horizons: Sequence[tuple[int, int]]
) -> dict[str, float]:
    """Mean of `per_step` (step 1 first) over each inclusive 1-based range (first, last).

    A range is clipped to the steps given (its key then names the clipped range, e.g. "7-10"
    for 10 steps); a range that starts after the last step is left out.
    """
    out: dict[str, float] = {}
    n = len(per_step)
    for first, last in horizons:
        if first < 1 or last < first:
            raise ValueError(f"horizon ({first}, {last}) must satisfy 1 <= first <= last")
        if first > n:
            continue
        end = min(last, n)
        values = per_step[first - 1 : end]
        out[f"{first}-{end}"] = float(sum(values) / len(values))
    return out


def choose_rollout_windows(dataset: WellWindowDataset, count: int, seed: int) -> list[int]:
    """`count` distinct window indices (all when fewer), spread over trajectories, sorted.

    Reproducible for a seed: trajectories are visited in a random order, taking in each round
    the next window of a random per-trajectory order.
    """
    n = len(dataset)
    if count >= n:
        return list(range(n))
    by_traj: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in range(n):
        file_idx, traj, _ = dataset.locate(i)
        by_traj[(file_idx, traj)].append(i)
    g = torch.Generator().manual_seed(int(seed))
    trajs = list(by_traj.values())
    trajs = [trajs[j] for j in torch.randperm(len(trajs), generator=g).tolist()]
    queues = [[w[j] for j in torch.randperm(len(w), generator=g).tolist()] for w in trajs]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count:
        for q in queues:
            if depth < len(q):
                chosen.append(q[depth])
                if len(chosen) == count:
                    break
        depth += 1
    return sorted(chosen)


def open_rollout_dataset(
    dataset_dir: str | os.PathLike,
    split: str,
    steps: int,
    context_frames: int,
    registry: FieldRegistry | None = None,
) -> WellWindowDataset:
    """Windows of `context_frames + steps` frames of a split, with a clear error (and the fix)
    when its trajectories are shorter than that."""
    needed = context_frames + steps
    # A 1-frame reader opens any split: it tells the trajectories' length before the real one.
    probe = WellWindowDataset(dataset_dir, split, window=1, registry=FieldRegistry())
    shortest = min(f.n_steps for f in probe.files)
    probe.close()
    if shortest < needed:
        raise DataError(
            f"{Path(dataset_dir)}: the {split} trajectories have {shortest} snapshots, but a "
            f"{steps}-step rollout from {context_frames} context frames needs {needed}; generate "
            "longer trajectories (`python -m physok.data generate --steps 40`) or pass a smaller "
            f"--rollout-steps (at most {max(shortest - context_frames, 0)} here)"
        )
    return WellWindowDataset(dataset_dir, split, window=needed, registry=registry)


@torch.no_grad()
def rollout_vrmse(
    model: nn.Module,
    fields: torch.Tensor,
    field_indices: torch.Tensor | list[int],
    steps: int,
    cfg: EvalConfig,
) -> torch.Tensor:
    """VRMSE (B, steps, C), float32 CPU, of a `steps`-frame rollout from the first
    `model.context_frames` frames of `fields` (B, T >= context + steps, C, X, Y) vs the truth."""
    ctx = model.context_frames
    param = next(model.parameters(), None)  # a parameter-free baseline runs on the CPU
    device = param.device if param is not None else torch.device("cpu")
    fields = fields[:, : ctx + steps].to(device)
    idx = field_indices.tolist() if isinstance(field_indices, torch.Tensor) else field_indices
    with autocast(cfg, device):
        pred = model.rollout(fields[:, :ctx], steps, idx)
    _, rms = rms_normalise(fields[:, :ctx])  # (B, C): the context's scales, for both
    scale = rms[:, None, :, None, None]
    truth = fields[:, ctx:].float() / scale
    return vrmse(pred.float() / scale, truth, reduce="none").cpu()


def persistence_vrmse(fields: torch.Tensor, context_frames: int, steps: int) -> torch.Tensor:
    """VRMSE (B, steps, C) of persistence, the reference forecast that repeats the last
    context frame, against the `steps` frames after the context of `fields` (in the context's
    RMS units, as `rollout_vrmse`)."""
    return _reference_vrmse(Persistence(), fields, context_frames, steps)


def linear_extrapolation_vrmse(
    fields: torch.Tensor, context_frames: int, steps: int
) -> torch.Tensor:
    """VRMSE (B, steps, C) of linear extrapolation (each step 2 f_T - f_{T-1} of its window, so
    a straight line through the last two context frames), as `persistence_vrmse`."""
    return _reference_vrmse(LinearExtrapolation(), fields, context_frames, steps)


def _reference_vrmse(
    forecaster: nn.Module, fields: torch.Tensor, context_frames: int, steps: int
) -> torch.Tensor:
    fields = fields[:, : context_frames + steps].float()
    _, rms = rms_normalise(fields[:, :context_frames])
    fields = fields / rms[:, None, :, None, None]
    pred = forecaster.rollout(fields[:, :context_frames], steps, [])
    return vrmse(pred, fields[:, context_frames:], reduce="none").cpu()


def evaluate_rollout(
    model: nn.Module,
    dataset: WellWindowDataset,
    cfg: EvalConfig,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Rollout VRMSE per step and by horizon on `dataset` (windows of at least
    `model.context_frames + cfg.rollout_steps` frames; see `open_rollout_dataset`).

    Returns {"split", "steps", "windows", "window_indices", "per_step_vrmse", "per_step_std",
    "horizons", "horizon_spread", "per_window_horizons", "persistence", "linear_extrapolation",
    "notes"}; "persistence" and "linear_extrapolation" hold the same numbers (less the window
    indices and notes) for the forecasts that repeat the last context frame and continue the
    line through the last two. Stds are sample stds over the windows (None for one window).
    """
    ctx, steps = model.context_frames, cfg.rollout_steps
    if dataset.window < ctx + steps:
        raise DataError(
            f"{dataset.dataset_dir}: a {steps}-step rollout needs windows of {ctx + steps} frames "
            f"({ctx} context frames), the dataset reads {dataset.window}; open it with "
            "open_rollout_dataset"
        )
    if device is not None:
        model.to(device)
    notes: list[str] = []
    indices = choose_rollout_windows(dataset, cfg.rollout_windows, cfg.seed)
    if len(indices) < cfg.rollout_windows:
        notes.append(
            f"split {dataset.split} of {dataset.dataset_name} has {len(indices)} windows of "
            f"{dataset.window} frames, fewer than rollout_windows {cfg.rollout_windows}: all used"
        )
    loader = window_loader(dataset, indices, cfg)
    was_training = model.training
    model.eval()
    total = torch.zeros(steps, dtype=torch.float64)
    persist = torch.zeros(steps, dtype=torch.float64)
    linear = torch.zeros(steps, dtype=torch.float64)
    # (windows, steps) per forecast, fields averaged: the spread over windows
    windows: dict[str, list[torch.Tensor]] = {"model": [], "persistence": [], "linear": []}
    try:
        with tqdm(total=len(indices), desc="rollout", unit="window", disable=not progress) as bar:
            for batch in loader:
                per = rollout_vrmse(model, batch["fields"], batch["field_indices"], steps, cfg)
                windows["model"].append(per.double().mean(dim=2))
                total += per.double().mean(dim=2).sum(dim=0)  # fields averaged, windows summed
                ref = persistence_vrmse(batch["fields"], ctx, steps)
                windows["persistence"].append(ref.double().mean(dim=2))
                persist += ref.double().mean(dim=2).sum(dim=0)
                ref = linear_extrapolation_vrmse(batch["fields"], ctx, steps)
                windows["linear"].append(ref.double().mean(dim=2))
                linear += ref.double().mean(dim=2).sum(dim=0)
                bar.update(per.shape[0])
    finally:
        model.train(was_training)
    # the means stay the running sums above (identical to the numbers before the spread was kept)
    per_step = (total / len(indices)).tolist()
    persist_step = (persist / len(indices)).tolist()
    linear_step = (linear / len(indices)).tolist()
    per_window = {k: torch.cat(v).tolist() for k, v in windows.items()}
    clipped = [(a, b) for a, b in cfg.horizons if b > steps]
    if clipped:
        notes.append(
            f"horizons {[f'{a}-{b}' for a, b in clipped]} reach past the {steps} steps run: "
            "clipped (or left out when they start after the last step)"
        )
    return {
        "split": dataset.split,
        "steps": steps,
        "windows": len(indices),
        "window_indices": indices,
        **_per_step_summary(per_step, per_window["model"], cfg),
        # the reference forecasts on the same windows: "repeat the last context frame" and
        # "extrapolate the last two linearly"
        "persistence": _per_step_summary(persist_step, per_window["persistence"], cfg),
        "linear_extrapolation": _per_step_summary(linear_step, per_window["linear"], cfg),
        "notes": notes,
    }


def window_spread(values: Sequence[float]) -> dict[str, Any]:
    """{"std" (sample std over windows), "sem" (standard error of their mean), "n"}; std and
    sem are None for fewer than two values."""
    n = len(values)
    if n < 2:
        return {"std": None, "sem": None, "n": n}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"std": json_number(std), "sem": json_number(std / math.sqrt(n)), "n": n}


def _per_step_summary(
    per_step: list[float], per_window: list[list[float]], cfg: EvalConfig
) -> dict[str, Any]:
    """Means per step and by horizon, with each window's own horizon means and their spread."""
    by_window = [horizon_means(w, cfg.horizons) for w in per_window]
    keys = list(horizon_means(per_step, cfg.horizons))
    columns = {h: [w[h] for w in by_window] for h in keys}
    return {
        "per_step_vrmse": [json_number(v) for v in per_step],
        "per_step_std": [window_spread(list(col))["std"] for col in zip(*per_window, strict=True)]
        if per_window
        else [],
        "horizons": {k: json_number(v) for k, v in horizon_means(per_step, cfg.horizons).items()},
        "horizon_spread": {h: window_spread(columns[h]) for h in keys},
        "per_window_horizons": {h: [json_number(v) for v in columns[h]] for h in keys},
    }
