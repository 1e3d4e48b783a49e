"""What every next-frame forecaster shares (the emulator and the baselines alike): the context
length of the experiment and the sliding-window rollout.

A forecaster has `context_frames`, `predict_next(context, field_indices)` (the frame after the
context, physical units) and `rollout(context, steps, field_indices)`, which is
`slide_rollout` over its own `predict_next`: step k is exactly `predict_next` of the window it
sees, so a rollout can be resumed or checked from any window.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CONTEXT_FRAMES = 9  # frames 1..9 of the experiment's 10-frame windows

FieldIndices = torch.Tensor | list[int] | None


def slide_rollout(
    predict_next: Callable[[torch.Tensor, FieldIndices], torch.Tensor],
    context: torch.Tensor,
    steps: int,
    context_frames: int,
    field_indices: FieldIndices,
) -> torch.Tensor:
    """`steps` autoregressive predictions (B, steps, C, X, Y) from the last `context_frames`
    frames of `context`: each prediction is appended to the window and the oldest frame
    dropped."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"rollout steps must be a positive integer, got {steps!r}")
    window = context[:, -context_frames:]
    out = []
    for _ in range(steps):
        nxt = predict_next(window, field_indices)
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None].to(window.dtype)], dim=1)
    return torch.stack(out, dim=1)
