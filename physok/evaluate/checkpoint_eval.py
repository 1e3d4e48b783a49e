"""Evaluate a rollout-stage checkpoint on one dataset split: load, build the data, run both
evaluations, return one JSON-ready dict (what `python -m physok.evaluate` writes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from physok import checkpoint as ckpt_io
from physok.data.errors import DataError
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.evaluate.config import EvalConfig, EvalConfigError, select_device
from physok.evaluate.next_frame import evaluate_next_frame
from physok.evaluate.rollout import evaluate_rollout, open_rollout_dataset
from physok.models.rollout_model import CHECKPOINT_KIND, RolloutModel

__all__ = ["evaluate_checkpoint", "evaluate_model", "load_rollout_model"]


def load_rollout_model(checkpoint: str | os.PathLike, device: str = "cpu") -> RolloutModel:
    """The RolloutModel of a rollout-stage checkpoint dir or run dir (its latest checkpoint).

    Raises CheckpointError naming the path when it is missing, not a checkpoint, or a
    checkpoint of another stage (e.g. a tokeniser).
    """
    meta = ckpt_io.read_checkpoint_config(checkpoint)  # missing / incomplete / corrupt config
    if meta["kind"] != CHECKPOINT_KIND:
        raise ckpt_io.CheckpointError(
            f"{meta['_path']} is a {meta['kind']!r} checkpoint; evaluation needs a "
            f"rollout-stage checkpoint (or run dir) from `python -m physok.train rollout`, "
            "which holds the whole emulator (tokeniser and processor)"
        )
    return RolloutModel.from_pretrained(meta["_path"], map_location=device)


def _check_fields(
    ds: WellWindowDataset, field_names: Sequence[str], where: str | os.PathLike
) -> None:
    missing = [c for c in ds.channel_names if c not in field_names]
    if missing:
        raise DataError(
            f"{ds.dataset_dir}: the model in {where} knows the fields {list(field_names)} but "
            f"not the channels {missing} of dataset {ds.dataset_name}; evaluate it on a dataset "
            "with the fields it was trained with"
        )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    dataset_name: str,
    cfg: EvalConfig,
    *,
    next_frame: bool = True,
    rollout: bool = True,
    progress: bool = True,
    model: RolloutModel | None = None,
) -> dict[str, Any]:
    """Next-frame and rollout metrics of a rollout checkpoint on `<data_dir>/<dataset_name>`.

    `model`: the checkpoint's model when the caller has already loaded it (not loaded again).

    Returns {"checkpoint", "dataset", "next_frame", "rollout", "eval_config"}; a skipped
    evaluation is None. Errors (CheckpointError, DataError, EvalConfigError: all ValueError)
    name the path or option and the fix.
    """
    if not (next_frame or rollout):
        raise EvalConfigError("nothing to evaluate: both next-frame and rollout are switched off")
    cfg.validate()
    ckpt_path = ckpt_io.resolve_checkpoint_path(checkpoint)
    if model is None:
        model = load_rollout_model(ckpt_path, "cpu")
    result = evaluate_model(
        model,
        data_dir,
        dataset_name,
        cfg,
        field_names=model.config.tokeniser.field_names,
        where=ckpt_path,
        next_frame=next_frame,
        rollout=rollout,
        progress=progress,
    )
    return {"checkpoint": str(ckpt_path), **result}


def evaluate_model(
    model: nn.Module,
    data_dir: str | os.PathLike,
    dataset_name: str,
    cfg: EvalConfig,
    *,
    field_names: Sequence[str] | None = None,
    where: str | os.PathLike = "the model",
    next_frame: bool = True,
    rollout: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Next-frame and rollout metrics of any forecaster (an emulator or a baseline: an
    `nn.Module` with `context_frames`, `predict_next` and `rollout`) on
    `<data_dir>/<dataset_name>`; `field_names`: the registry the model knows (None: physok's
    default registry). Returns {"dataset", "next_frame", "rollout", "eval_config"}."""
    if not (next_frame or rollout):
        raise EvalConfigError("nothing to evaluate: both next-frame and rollout are switched off")
    cfg.validate()
    device = select_device(cfg.device)
    model = model.to(device)
    registry = FieldRegistry.default() if field_names is None else FieldRegistry(list(field_names))
    field_names = registry.names
    where = Path(where)
    dataset_dir = Path(data_dir) / dataset_name
    ctx = model.context_frames
    result: dict[str, Any] = {
        "dataset": dataset_name,
        "next_frame": None,
        "rollout": None,
        "eval_config": cfg.to_dict(),
    }
    # Check the rollout's trajectory length before spending time on next-frame metrics.
    roll_ds = None
    if rollout:
        roll_ds = open_rollout_dataset(
            dataset_dir, cfg.split, cfg.rollout_steps, ctx, FieldRegistry(list(field_names))
        )
        _check_fields(roll_ds, field_names, where)
    try:
        if next_frame:
            ds = WellWindowDataset(
                dataset_dir, cfg.split, window=ctx + 1, registry=FieldRegistry(list(field_names))
            )
            try:
                _check_fields(ds, field_names, where)
                result["next_frame"] = evaluate_next_frame(model, ds, cfg, progress=progress)
            finally:
                ds.close()
        if roll_ds is not None:
            result["rollout"] = evaluate_rollout(model, roll_ds, cfg, progress=progress)
    finally:
        if roll_ds is not None:
            roll_ds.close()
    return result
