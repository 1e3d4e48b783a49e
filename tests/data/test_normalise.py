"""Sample-wise per-field RMS normalisation: definition, context-only scales, inverse."""

from __future__ import annotations

import pytest
import torch

from physok.data.normalise import field_rms, rms_denormalise, rms_normalise


def test_rms_matches_definition_on_random_input() -> None:
    x = torch.randn(3, 10, 5, 16, 8, dtype=torch.float64) * torch.rand(3, 1, 5, 1, 1) * 10
    scales = field_rms(x)
    for b in range(3):
        for c in range(5):
            expected = x[b, :, c].pow(2).mean().sqrt()
            torch.testing.assert_close(scales[b, c], expected)
    y, s = rms_normalise(x)
    torch.testing.assert_close(field_rms(y), torch.ones(3, 5, dtype=torch.float64))
    torch.testing.assert_close(rms_denormalise(y, s), x)


def test_context_scales_ignore_the_target() -> None:
    x = torch.randn(2, 10, 3, 8, 8)
    y = x.clone()
    y[:, 9] *= 1000.0  # a wild target must not change the scales
    _, s1 = rms_normalise(x, n_context=9)
    yn, s2 = rms_normalise(y, n_context=9)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(yn[:, 9], y[:, 9] / s2[:, None, :, None, None].squeeze(1))


def test_zero_field_is_clamped_not_nan() -> None:
    x = torch.zeros(1, 4, 2, 4, 4)
    x[:, :, 1] = 3.0
    y, s = rms_normalise(x, eps=1e-6)
    assert torch.isfinite(y).all()
    assert s[0, 0] == pytest.approx(1e-6) and s[0, 1] == pytest.approx(3.0)


def test_bf16_input_keeps_dtype_and_uses_fp32_accumulation() -> None:
    x = torch.randn(2, 9, 4, 32, 32).to(torch.bfloat16)
    y, s = rms_normalise(x)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    torch.testing.assert_close(s, field_rms(x.float()))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="n_context=12"):
        field_rms(torch.randn(1, 10, 2, 4, 4), n_context=12)
    with pytest.raises(ValueError, match="scales shape"):
        rms_denormalise(torch.randn(2, 3, 4, 4, 4), torch.ones(2, 5))
