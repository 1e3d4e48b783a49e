"""Parameter-free forecasters: persistence (f_T) and linear extrapolation (2 f_T - f_{T-1}).

They follow the forecaster interface the evaluation calls (`context_frames`, `predict_next`,
`rollout`), the same as `physok.models.rollout_model.RolloutModel`, so they can be evaluated
beside the emulators unchanged. They hold no parameters (`next(model.parameters(), None)` is
None): their outputs live on the context's device. Their rollouts are
`physok.models.forecaster.slide_rollout`, the emulator's own.
"""

from __future__ import annotations

import torch
from torch import nn

from physok.models.forecaster import CONTEXT_FRAMES, FieldIndices, slide_rollout

__all__ = [
    "CONTEXT_FRAMES",
    "FieldIndices",
    "LinearExtrapolation",
    "Persistence",
    "check_context",
    "out_dtype",
    "slide_rollout",
]


def out_dtype(t: torch.Tensor) -> torch.dtype:
    """float32, or wider when the input is (what the emulator returns)."""
    return torch.promote_types(t.dtype, torch.float32)


def check_context(context: torch.Tensor, min_frames: int, who: str) -> None:
    if context.dim() != 5 or context.shape[1] < min_frames:
        raise ValueError(
            f"{who}: context must be (B, T >= {min_frames}, C, X, Y), got shape "
            f"{tuple(context.shape)}"
        )


class _Extrapolation(nn.Module):
    """Shared interface of the parameter-free forecasters; subclasses define `_extrapolate`."""

    min_frames: int = 1  # frames `_extrapolate` reads (the last ones of the context)

    def __init__(self, context_frames: int = CONTEXT_FRAMES) -> None:
        super().__init__()
        if not isinstance(context_frames, int) or context_frames < self.min_frames:
            raise ValueError(
                f"{type(self).__name__}: context_frames must be an integer >= "
                f"{self.min_frames}, got {context_frames!r}"
            )
        # What the evaluation slices as context; only the last `min_frames` are used.
        self.context_frames = context_frames

    def _extrapolate(self, context: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_next(
        self, context: torch.Tensor, field_indices: FieldIndices = None
    ) -> torch.Tensor:
        """The frame after `context` (B, T, C, X, Y): (B, C, X, Y), physical units; fields are
        ignored (the rule is the same for every field)."""
        check_context(context, self.min_frames, type(self).__name__)
        return self._extrapolate(context[:, -self.min_frames :].to(out_dtype(context)))

    def forward(self, context: torch.Tensor, field_indices: FieldIndices = None) -> torch.Tensor:
        return self.predict_next(context, field_indices)

    def rollout(
        self, context: torch.Tensor, steps: int, field_indices: FieldIndices = None
    ) -> torch.Tensor:
        """`steps` frames after `context`, window sliding over the predictions:
        (B, steps, C, X, Y). Needs only `min_frames` context frames, not `context_frames`."""
        check_context(context, self.min_frames, type(self).__name__)
        return slide_rollout(self.predict_next, context, steps, self.context_frames, field_indices)

    def extra_repr(self) -> str:
        return f"context_frames={self.context_frames}"


class Persistence(_Extrapolation):
    """f_{T+1} = f_T: the last context frame, repeated over a rollout."""

    min_frames = 1

    def _extrapolate(self, last: torch.Tensor) -> torch.Tensor:
        return last[:, -1].clone()  # a fresh tensor, never a view of the caller's context


class LinearExtrapolation(_Extrapolation):
    """f_{T+1} = 2 f_T - f_{T-1}: constant rate of change per point; exact for fields linear
    in time (a rollout continues the line: f_{T+k} = f_T + k (f_T - f_{T-1}))."""

    min_frames = 2

    def _extrapolate(self, last: torch.Tensor) -> torch.Tensor:
        return 2.0 * last[:, -1] - last[:, -2]
