"""VRMSE against an explicit per-(sample, frame, field) loop and its defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from physok.metrics.vrmse import vrmse


def _loop_reference(
    pred: torch.Tensor, true: torch.Tensor, eps: float, correction: int = 1
) -> torch.Tensor:
    b, t, c = true.shape[:3]
    out = torch.empty(b, t, c, dtype=torch.float64)
    for i in range(b):
        for j in range(t):
            for k in range(c):
                p, y = pred[i, j, k].double().flatten(), true[i, j, k].double().flatten()
                mse = ((p - y) ** 2).mean().item()
                # correction=1: the_well's torch.std (Bessel); 0: population variance
                var = ((y - y.mean()) ** 2).sum().item() / (y.numel() - correction)
                out[i, j, k] = math.sqrt(mse / (var + eps))
    return out


def test_matches_loop_reference_on_random_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    true = torch.randn(3, 4, 2, 8, 6, generator=g) * torch.rand(3, 1, 2, 1, 1, generator=g) * 5
    pred = true + 0.3 * torch.randn(true.shape, generator=g)
    ref = _loop_reference(pred, true, 1e-7)
    torch.testing.assert_close(vrmse(pred, true, reduce="none").double(), ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(vrmse(pred, true).double(), ref.mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(vrmse(pred, true, reduce="sample").double(), ref.mean((1, 2)))
    torch.testing.assert_close(vrmse(pred, true, reduce="frame").double(), ref.mean((0, 2)))
    torch.testing.assert_close(vrmse(pred, true, reduce="field").double(), ref.mean((0, 1)))
    pop = _loop_reference(pred, true, 1e-7, correction=0)
    got = vrmse(pred, true, reduce="none", correction=0).double()
    torch.testing.assert_close(got, pop, rtol=1e-5, atol=0)


def test_defining_values_and_scale_invariance() -> None:
    g = torch.Generator().manual_seed(1)
    true = torch.randn(2, 3, 4, 16, 16, generator=g) + 3.0
    assert vrmse(true, true).item() == 0.0
    mean_pred = true.mean(dim=(3, 4), keepdim=True).expand_as(true)
    n = 16 * 16
    want = torch.tensor(((n - 1) / n) ** 0.5)  # the_well's Bessel-corrected variance
    torch.testing.assert_close(vrmse(mean_pred, true), want, rtol=1e-5, atol=0)
    one = vrmse(mean_pred, true, correction=0)
    torch.testing.assert_close(one, torch.tensor(1.0), rtol=1e-5, atol=0)
    pred = true + torch.randn(true.shape, generator=g)
    scale = torch.rand(2, 1, 4, 1, 1, generator=g) * 100 + 0.01  # per sample and field
    torch.testing.assert_close(
        vrmse(pred * scale, true * scale, reduce="none"),
        vrmse(pred, true, reduce="none"),
        rtol=1e-4,
        atol=0,
    )


def test_bf16_inputs_are_computed_in_float32() -> None:
    true = torch.randn(1, 2, 1, 8, 8)
    out = vrmse(true.bfloat16(), true.bfloat16())
    assert out.dtype == torch.float32 and out.item() == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        vrmse(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 1, 4, 5))
    with pytest.raises(ValueError, match="reduce must be one of"):
        vrmse(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 1, 4, 4), reduce="max")
    with pytest.raises(ValueError, match="correction must be"):
        vrmse(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 1, 1, 4, 4), correction=2)
