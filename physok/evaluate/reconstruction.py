"""A tokeniser's reconstruction VRMSE on a dataset split (DESIGN.md §5's validation metric).

The measurement of the tokeniser stage's validation (`physok.train.tokeniser_stage.validate`):
frames 1..`input_frames` of each window, normalised by the tokeniser's own normalisation,
autoencoded at its eval scales, VRMSE per window (mean over frames and fields), on the same
evenly spread subset of windows (`validation_indices`). So the experiment can put the
out-of-domain tokeniser's reconstruction of the downstream data beside the in-domain one's own
validation number, window for window.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from physok.data.errors import DataError
from physok.data.loaders import collate_windows
from physok.data.reader import WellWindowDataset
from physok.evaluate.report import json_number
from physok.metrics.vrmse import vrmse
from physok.models.prediction_target import normalise_context
from physok.models.tokeniser import Tokeniser
from physok.train.common import validation_indices

__all__ = ["evaluate_reconstruction"]


@torch.no_grad()
def evaluate_reconstruction(
    tokeniser: Tokeniser,
    dataset: WellWindowDataset,
    windows: int,
    *,
    input_frames: int = 9,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Reconstruction VRMSE of `tokeniser` on `windows` evenly spread windows of `dataset`.

    Returns {"dataset", "split", "windows", "vrmse": {"mean", "std", "sem"}, "vrmse_per_field"}
    (std and sem over windows, None for one window). A dataset channel the tokeniser has no head
    for is a DataError naming it.
    """
    names = list(tokeniser.config.field_names)
    missing = [c for c in dataset.channel_names if c not in names]
    if missing:
        raise DataError(
            f"{dataset.dataset_dir}: the tokeniser has no heads for the channels {missing} of "
            f"{dataset.dataset_name} (its fields: {names}); open the dataset with the "
            "tokeniser's registry, FieldRegistry(tokeniser.config.field_names)"
        )
    indices = validation_indices(len(dataset), windows)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate_windows)
    was_training = tokeniser.training
    tokeniser.to(device).eval()
    per_window: list[torch.Tensor] = []
    per_field = torch.zeros(len(dataset.channel_names), dtype=torch.float64)
    try:
        for batch in loader:
            fields = batch["fields"].to(device)[:, :input_frames]
            x, _ = normalise_context(fields, tokeniser.config.normalisation, "frame")
            recon = tokeniser(x, batch["field_indices"], scales=tokeniser.eval_scales).float()
            err = vrmse(recon, x.float(), reduce="none").double().cpu()  # (B, T, C)
            per_window.append(err.mean(dim=(1, 2)))
            per_field += err.mean(dim=1).sum(dim=0)
    finally:
        tokeniser.train(was_training)
    values = torch.cat(per_window)
    n = values.numel()
    std = values.std().item() if n > 1 else math.nan
    return {
        "dataset": dataset.dataset_name,
        "split": dataset.split,
        "windows": n,
        "vrmse": {
            "mean": json_number(values.mean().item()),
            "std": json_number(std),
            "sem": json_number(std / math.sqrt(n)),
        },
        "vrmse_per_field": {
            c: json_number(v / n)
            for c, v in zip(dataset.channel_names, per_field.tolist(), strict=True)
        },
    }
