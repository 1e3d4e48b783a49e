"""The U-Net baseline: loading the_well's UNetClassic without its package init, and
UNetForecaster's shapes, delta target, statistics, equivariance, causality, rollout and
save/load."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
import torch

from physok.baselines import UNetConfig, UNetForecaster, load_unet_classic
from physok.baselines.unet import NetworkInputs
from physok.checkpoint import CheckpointError
from physok.data.normalise import field_mean_std
from physok.models.prediction_target import DELTA_SCALE_FLOOR

MODELS_PKG = "the_well.benchmark.models"
SUBMODULES = (f"{MODELS_PKG}.common", f"{MODELS_PKG}.unet_classic")
C, GRID = 5, (16, 16)


def small_model(seed: int = 0, **kw: object) -> UNetForecaster:
    torch.manual_seed(seed)
    return UNetForecaster(C, GRID, init_features=4, **kw).eval()


def context(b: int = 2, t: int = 9, seed: int = 1) -> torch.Tensor:
    """Smooth-ish fields with offsets and different scales per field, as physical data has."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, 1, C, *GRID, generator=g)
    drift = 0.1 * torch.randn(b, t, C, *GRID, generator=g).cumsum(dim=1)
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 0.5])[None, None, :, None, None]
    return (base + drift) * scale + 2.0


# ---- loading ------------------------------------------------------------------------------------
def test_loader_runs_the_submodules_but_not_the_package_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = {m for m in ("timm", "neuralop", MODELS_PKG) if m in sys.modules}
    for name in SUBMODULES:  # force the trick to run now (restored after the test)
        monkeypatch.delitem(sys.modules, name, raising=False)
    cls = load_unet_classic()
    assert cls.__name__ == "UNetClassic"
    assert cls.__module__ == f"{MODELS_PKG}.unet_classic"
    for name in ("timm", "neuralop", MODELS_PKG):
        if name not in before:
            assert name not in sys.modules, f"{name} was imported"
    assert all(name in sys.modules for name in SUBMODULES)
    assert load_unet_classic() is cls  # cached, one class identity
    net = cls(dim_in=8, dim_out=2, n_spatial_dims=2, spatial_resolution=(16, 16), init_features=4)
    assert type(net).__module__ == f"{MODELS_PKG}.unet_classic"


def test_forecaster_wraps_the_real_class() -> None:
    model = small_model()
    assert type(model.unet).__module__ == f"{MODELS_PKG}.unet_classic"
    assert type(model.unet).__name__ == "UNetClassic"
    assert model.unet.encoder1[0].in_channels == 4 * C  # n_input * C
    assert model.unet.conv.out_channels == C


def test_missing_huggingface_hub_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    had_package = MODELS_PKG in sys.modules
    for name in SUBMODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # "not installed"
    with pytest.raises(ImportError, match="pip install -U huggingface-hub"):
        load_unet_classic()
    assert (MODELS_PKG in sys.modules) == had_package  # no stand-in left behind
    assert not any(name in sys.modules for name in SUBMODULES)


def test_an_unusable_huggingface_hub_is_a_clear_error_and_leaves_no_stand_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    had_package = MODELS_PKG in sys.modules
    for name in SUBMODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    old = types.ModuleType("huggingface_hub")  # importable, but without PyTorchModelHubMixin
    old.__spec__ = importlib.machinery.ModuleSpec("huggingface_hub", None)
    monkeypatch.setitem(sys.modules, "huggingface_hub", old)
    with pytest.raises(ImportError, match=r"huggingface-hub .*PyTorchModelHubMixin"):
        load_unet_classic()
    assert (MODELS_PKG in sys.modules) == had_package
    assert not any(name in sys.modules for name in SUBMODULES)


# ---- shapes and validation ---------------------------------------------------------------------
def test_shapes_dtype_and_interface() -> None:
    model = small_model()
    assert model.context_frames == 9 and model.n_input == 4
    assert next(model.parameters(), None) is not None
    ctx = context()
    with torch.no_grad():
        one = model.predict_next(ctx, torch.arange(C))
        roll = model.rollout(ctx, 3, list(range(C)))
    assert one.shape == (2, C, *GRID) and one.dtype == torch.float32
    assert roll.shape == (2, 3, C, *GRID)
    assert torch.isfinite(roll).all()
    assert model.predict_next(ctx.double(), None).dtype == torch.float64


def test_invalid_inputs_and_configs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        UNetForecaster(C, (24, 32))
    with pytest.raises(ValueError, match="n_input"):
        UNetForecaster(C, GRID, n_input=10)
    model = small_model()
    with pytest.raises(ValueError, match="T >= 9"):
        model.predict_next(context(t=8), None)
    with pytest.raises(ValueError, match="built for 5"):
        model.predict_next(context()[:, :, :3], None)
    with pytest.raises(ValueError, match="divisible by 16"):
        model.predict_next(torch.randn(1, 9, C, 24, 16), None)


# ---- delta target and statistics ---------------------------------------------------------------
def test_zero_output_is_persistence_exactly() -> None:
    model = small_model()
    with torch.no_grad():
        model.unet.conv.weight.zero_()
        model.unet.conv.bias.zero_()
        ctx = context()
        assert torch.equal(model.predict_next(ctx, None), ctx[:, -1])
        assert torch.equal(model.rollout(ctx, 3, None), ctx[:, -1:].expand(-1, 3, -1, -1, -1))


def test_step_scale_is_the_rms_change_over_the_context_and_pairs_invert() -> None:
    model = small_model()
    window = context(t=10)
    ctx = window[:, :9]
    inputs = model.network_inputs(ctx)
    rms_change = (ctx[:, 1:] - ctx[:, :-1]).square().mean(dim=(1, 3, 4)).sqrt()
    assert torch.allclose(inputs.step_scale, rms_change, rtol=1e-4)
    mean, std = field_mean_std(ctx)
    expected_x = (ctx[:, -4:] - mean[:, None, :, None, None]) / std[:, None, :, None, None]
    assert torch.allclose(inputs.x, expected_x.flatten(1, 2), atol=1e-5)
    x, target = model.training_pair(window)
    assert torch.equal(x, inputs.x)
    assert torch.allclose(inputs.to_frame(target), window[:, -1], atol=1e-5)
    # the same path: predict_next is to_frame of the U-Net's output on that input
    with torch.no_grad():
        assert torch.equal(model.predict_next(ctx, None), inputs.to_frame(model.unet(x)))


def test_a_still_field_gets_the_floored_step_scale() -> None:
    ctx = context()
    ctx[:, :, 2] = ctx[:, :1, 2]  # field 2 does not move over the context
    inputs = small_model().network_inputs(ctx)
    _, std = field_mean_std(ctx)
    assert torch.allclose(inputs.step_scale[:, 2], std[:, 2] * DELTA_SCALE_FLOOR)


def test_per_sample_scale_and_shift_equivariance() -> None:
    model = small_model()
    ctx = context()
    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, C, generator=g) * 5 + 0.1  # positive: the z-score keeps its sign
    b = torch.randn(2, C, generator=g) * 100
    bc = lambda s: s[:, None, :, None, None]  # noqa: E731
    with torch.no_grad():
        pred = model.predict_next(ctx.double(), None)
        moved = model.predict_next(bc(a).double() * ctx.double() + bc(b).double(), None)
    expected = a[:, :, None, None].double() * pred + b[:, :, None, None].double()
    assert torch.allclose(moved, expected, rtol=1e-5, atol=1e-4 * float(b.abs().max()))


def test_eval_mode_predictions_do_not_mix_samples() -> None:
    model = small_model()
    ctx = context(b=3)
    with torch.no_grad():
        both = model.predict_next(ctx, None)
        alone = model.predict_next(ctx[1:2], None)
    assert torch.allclose(both[1:2], alone, atol=1e-6)


# ---- causality ---------------------------------------------------------------------------------
def test_frames_before_the_context_window_are_ignored() -> None:
    model = small_model()
    long = context(t=12)
    other = long.clone()
    other[:, :3] = torch.randn_like(other[:, :3])  # frames before the last 9
    with torch.no_grad():
        assert torch.equal(model.predict_next(long, None), model.predict_next(other, None))


def test_early_context_frames_enter_only_through_the_statistics() -> None:
    model = small_model()
    ctx = context()
    other = ctx.clone()
    other[:, :5] = other[:, :5] * 1.7 + 0.3 * torch.randn_like(other[:, :5])  # not the last 4
    with torch.no_grad():
        pred_a, pred_b = model.predict_next(ctx, None), model.predict_next(other, None)
        # B's prediction, rebuilt from A's last 4 frames (identical to B's) and B's statistics
        mean, std = field_mean_std(other)
        x = (ctx[:, -4:] - mean[:, None, :, None, None]) / std[:, None, :, None, None]
        s_b = model.network_inputs(other).step_scale
        rebuilt = NetworkInputs(x.flatten(1, 2), ctx[:, -1], s_b).to_frame(
            model.unet(x.flatten(1, 2))
        )
    assert torch.allclose(pred_b, rebuilt, atol=1e-5)
    assert not torch.allclose(pred_a, pred_b, atol=1e-3)  # the statistics do matter


# ---- rollout and persistence -------------------------------------------------------------------
def test_rollout_is_repeated_predict_next() -> None:
    model = small_model()
    ctx = context(t=11)
    with torch.no_grad():
        roll = model.rollout(ctx, 3, None)
        window, expected = ctx[:, -9:], []
        for _ in range(3):
            nxt = model.predict_next(window, None)
            expected.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
    assert torch.equal(roll, torch.stack(expected, dim=1))


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = small_model(field_names=("energy", "density", "pressure", "momentum_x", "momentum_y"))
    model.train()
    with torch.no_grad():
        for _ in range(2):  # move the BatchNorm running statistics off their initial values
            model.unet(model.network_inputs(context()).x)
    model.eval()
    path = model.save_pretrained(tmp_path / "unet")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    loaded = UNetForecaster.from_pretrained(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert isinstance(loaded.config, UNetConfig)
    own, back = model.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys() and all(torch.equal(own[k], back[k]) for k in own)
    ctx = context()
    with torch.no_grad():
        assert torch.equal(model.predict_next(ctx, None), loaded.predict_next(ctx, None))
    with pytest.raises(CheckpointError):
        UNetForecaster.from_pretrained(tmp_path / "missing")
