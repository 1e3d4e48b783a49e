"""Baseline forecasters for the experiment's report: what a user would use instead of an
emulator.

- `Persistence` (f_T) and `LinearExtrapolation` (2 f_T - f_{T-1}): parameter-free;
- `UNetForecaster`: the_well's `UNetClassic` (The Well's benchmark U-Net) on the last 4 context
  frames, predicting the delta to the next frame, trained by `train_unet` on the same
  downstream windows as the emulators (frame 10 from frames 1-9).

All follow the evaluation's forecaster interface (`context_frames`, `predict_next(context,
field_indices)`, `rollout(context, steps, field_indices)`), that of
`physok.models.rollout_model.RolloutModel`. `train_unet` is imported lazily (it pulls in the
training stack).
"""

from __future__ import annotations

from typing import Any

from physok.baselines.extrapolation import LinearExtrapolation, Persistence, slide_rollout
from physok.baselines.unet import UNetConfig, UNetForecaster, load_unet_classic

__all__ = [
    "LinearExtrapolation",
    "Persistence",
    "UNetConfig",
    "UNetForecaster",
    "UNetTrainConfig",
    "UNetTrainResult",
    "load_unet_classic",
    "slide_rollout",
    "train_unet",
]

_TRAINING = ("UNetTrainConfig", "UNetTrainResult", "train_unet")


def __getattr__(name: str) -> Any:
    if name in _TRAINING:
        from physok.baselines import unet_training

        return getattr(unet_training, name)
    raise AttributeError(f"module 'physok.baselines' has no attribute {name!r}")
