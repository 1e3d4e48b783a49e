"""Persistence and linear extrapolation: values on hand-made fields, rollouts, the interface."""

from __future__ import annotations

import pytest
import torch

from physok.baselines import LinearExtrapolation, Persistence, slide_rollout


def linear_in_time(t0: int, frames: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """f_t = a + b t per sample, field and point, for t = t0 .. t0 + frames - 1: (2, T, 3, 4, 5)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 1, 3, 4, 5, generator=g, dtype=dtype)
    b = torch.randn(2, 1, 3, 4, 5, generator=g, dtype=dtype)
    t = torch.arange(t0, t0 + frames, dtype=dtype)[None, :, None, None, None]
    return a + b * t


@pytest.mark.parametrize("cls", [Persistence, LinearExtrapolation])
def test_interface_has_no_parameters_and_runs_under_no_grad(cls: type) -> None:
    model = cls().eval()
    assert model.context_frames == 9
    assert next(model.parameters(), None) is None  # what the evaluation asks for a device
    ctx = torch.randn(2, 9, 3, 4, 5)
    with torch.no_grad():
        one = model.predict_next(ctx, torch.tensor([0, 1, 2]))
        roll = model.rollout(ctx, 4, [0, 1, 2])
    assert one.shape == (2, 3, 4, 5) and one.dtype == torch.float32
    assert roll.shape == (2, 4, 3, 4, 5)
    assert torch.equal(model(ctx), one)


def test_persistence_repeats_the_last_frame() -> None:
    ctx = torch.randn(2, 9, 3, 4, 5)
    model = Persistence()
    pred = model.predict_next(ctx, None)
    assert torch.equal(pred, ctx[:, -1])
    pred.add_(1.0)  # a fresh tensor: the caller's context is untouched
    assert not torch.equal(pred, ctx[:, -1])
    assert torch.equal(model.rollout(ctx, 3, None), ctx[:, -1:].expand(-1, 3, -1, -1, -1))
    # one frame of context is enough
    assert torch.equal(model.predict_next(ctx[:, -1:], None), ctx[:, -1])


def test_linear_extrapolation_values_by_hand() -> None:
    ctx = torch.zeros(1, 2, 1, 1, 2)
    ctx[0, :, 0, 0, 0] = torch.tensor([1.0, 3.0])  # slope 2 -> 5
    ctx[0, :, 0, 0, 1] = torch.tensor([4.0, -1.0])  # slope -5 -> -6
    pred = LinearExtrapolation().predict_next(ctx, None)
    assert pred.flatten().tolist() == [5.0, -6.0]


def test_linear_extrapolation_is_exact_on_a_linear_field_over_a_rollout() -> None:
    frames = linear_in_time(0, 9 + 6)
    ctx, truth = frames[:, :9], frames[:, 9:]
    model = LinearExtrapolation()
    assert torch.allclose(model.predict_next(ctx, None), truth[:, 0], rtol=0, atol=1e-12)
    roll = model.rollout(ctx, 6, None)
    assert roll.dtype == torch.float64
    assert torch.allclose(roll, truth, rtol=0, atol=1e-12)
    # float32 in, float32 out, still exact to rounding
    roll32 = model.rollout(ctx.float(), 6, None)
    assert roll32.dtype == torch.float32
    assert torch.allclose(roll32, truth.float(), rtol=1e-5, atol=1e-4)


def test_only_the_last_frames_matter() -> None:
    ctx = torch.randn(2, 9, 3, 4, 5)
    other = ctx.clone()
    other[:, :-2] = torch.randn_like(other[:, :-2])
    lin = LinearExtrapolation()
    assert torch.equal(lin.predict_next(ctx, None), lin.predict_next(other, None))
    assert torch.equal(lin.rollout(ctx, 3, None), lin.rollout(other, 3, None))


@pytest.mark.parametrize("cls", [Persistence, LinearExtrapolation])
def test_rollout_is_repeated_predict_next_over_a_sliding_window(cls: type) -> None:
    model = cls()
    ctx = torch.randn(2, 12, 3, 4, 5)  # longer than context_frames: the last 9 are the window
    window, expected = ctx[:, -9:], []
    for _ in range(4):
        nxt = model.predict_next(window, None)
        expected.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
    assert torch.equal(model.rollout(ctx, 4, None), torch.stack(expected, dim=1))


def test_slide_rollout_passes_windows_of_context_frames() -> None:
    seen = []

    def predict(window: torch.Tensor, idx: object) -> torch.Tensor:
        seen.append((window.shape[1], idx))
        return window[:, -1] + 1

    ctx = torch.zeros(1, 5, 1, 2, 2)
    out = slide_rollout(predict, ctx, 3, 3, [7])
    assert seen == [(3, [7])] * 3
    assert out[0, :, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"T >= 2"):
        LinearExtrapolation().predict_next(torch.randn(1, 1, 1, 4, 4), None)
    with pytest.raises(ValueError, match=r"\(B, T >= 1, C, X, Y\)"):
        Persistence().predict_next(torch.randn(1, 4, 4), None)
    with pytest.raises(ValueError, match="positive integer"):
        Persistence().rollout(torch.randn(1, 9, 1, 4, 4), 0, None)
    with pytest.raises(ValueError, match="context_frames"):
        LinearExtrapolation(context_frames=1)
