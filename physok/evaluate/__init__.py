"""Evaluation protocol of the experiment (DESIGN.md §1, §6): next-frame VRMSE / NEPS as the mean
over random validation subsets, and autoregressive rollout VRMSE by horizon.

`evaluate_checkpoint` runs both on a rollout-stage checkpoint (`evaluate_model` on any forecaster,
an emulator or a baseline); `python -m physok.evaluate` is
its command line.
"""

from physok.evaluate.checkpoint_eval import evaluate_checkpoint, evaluate_model, load_rollout_model
from physok.evaluate.config import EvalConfig, EvalConfigError
from physok.evaluate.next_frame import draw_subsets, evaluate_next_frame
from physok.evaluate.report import format_table, write_json
from physok.evaluate.rollout import (
    choose_rollout_windows,
    evaluate_rollout,
    horizon_means,
    open_rollout_dataset,
)

__all__ = [
    "EvalConfig",
    "EvalConfigError",
    "choose_rollout_windows",
    "draw_subsets",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_next_frame",
    "evaluate_rollout",
    "format_table",
    "horizon_means",
    "load_rollout_model",
    "open_rollout_dataset",
    "write_json",
]
