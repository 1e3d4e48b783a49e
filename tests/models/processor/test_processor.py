"""Processor: shapes, temporal causality for every attention backend, backend agreement, grads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from physok.models.processor import Processor, ProcessorConfig
from physok.ops.attention import available_backends


def _latents(b=2, t=5, x=4, y=6, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 18, x, y, generator=g, dtype=torch.float64).to(device, dtype)


def test_shapes_and_input_check(tiny_config):
    processor = Processor(tiny_config).double().eval()
    z = _latents(x=4, y=6)  # non-square: x and y must not be confused
    assert processor(z).shape == z.shape
    assert isinstance(processor.blocks, torch.nn.ModuleList) and len(processor.blocks) == 2
    with pytest.raises(ValueError, match=r"expected latents \(B, T, 18, X, Y\)"):
        processor(z[:, :, :10])


def _assert_causal(processor, z, atol=0.0):
    base = processor(z)
    g = torch.Generator().manual_seed(1)
    for t in range(z.shape[1]):
        z2 = z.clone()
        z2[:, t] += torch.randn(z2[:, t].shape, generator=g, dtype=torch.float64).to(z2)
        diff = (processor(z2) - base).abs().amax(dim=(0, 2, 3, 4))
        assert (diff[:t] <= atol).all(), f"frame {t} changed earlier frames: {diff.tolist()}"
        assert diff[t] > 1e-3, f"frame {t} did not change its own output"


@pytest.mark.parametrize("backend", available_backends("cpu"))
def test_temporal_causality_by_perturbation(tiny_config, backend):
    cfg = dataclasses.replace(tiny_config, attention_backend=backend)
    processor = Processor(cfg).double().eval()
    with torch.no_grad():
        _assert_causal(processor, _latents(t=5))


def test_backends_agree_on_the_whole_processor(tiny_config):
    ref = Processor(dataclasses.replace(tiny_config, attention_backend="math")).double().eval()
    z = _latents()
    expected = ref(z)
    for backend in available_backends("cpu"):
        other = Processor(dataclasses.replace(tiny_config, attention_backend=backend)).double()
        other.load_state_dict(ref.state_dict())
        torch.testing.assert_close(other.eval()(z), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layer_scale_init", [0.0, 0.1])
def test_gradients_reach_every_parameter(tiny_config, layer_scale_init):
    cfg = dataclasses.replace(tiny_config, layer_scale_init=layer_scale_init)
    processor = Processor(cfg).double().train()
    processor(_latents(t=3)).square().mean().backward()
    for name, p in processor.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert processor.parameter_count() == sum(p.numel() for p in processor.parameters())
    summary = processor.parameter_summary()
    assert summary["total"] == summary["blocks"] + summary["projections"]


def test_fast_preset_runs_a_training_step():
    processor = Processor(ProcessorConfig.fast()).train()
    z = _latents(t=5, x=8, y=8, dtype=torch.float32)
    out = processor(z)
    out.abs().mean().backward()
    assert out.shape == z.shape and torch.isfinite(out).all()
    assert processor.config.head_dim == 16


# -- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_flash_processor_is_causal_and_matches_math():
    cfg = ProcessorConfig(dim=136, depth=2, heads=2, mlp_hidden=256, norm_groups=2, drop_path=0.0)
    flash = Processor(dataclasses.replace(cfg, attention_backend="flash")).cuda().eval()
    math_ = Processor(dataclasses.replace(cfg, attention_backend="math")).cuda().eval()
    math_.load_state_dict(flash.state_dict())
    z = _latents(t=5, x=16, y=16, dtype=torch.float32, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        _assert_causal(flash, z, atol=1e-6)
        out, ref = flash(z).float(), math_(z).float()
    assert (out - ref).abs().max() <= 5e-2 * ref.abs().max()
