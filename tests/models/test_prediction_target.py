"""Prediction targets (frame | delta) and input normalisations (rms | zscore) of the rollout model:
units, inverses, causality of the delta path, rollout consistency, configs and checkpoints, and
the tokeniser's training-scale policies."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import pytest
import torch

from physok.models.prediction_target import (
    DELTA_SCALE_FLOOR,
    delta_scale,
    denormalise,
    normalise_context,
    outputs_to_frames,
    target_in_output_units,
)
from physok.models.processor import Processor, ProcessorConfig
from physok.models.rollout_model import RolloutModel, RolloutModelConfig
from physok.models.tokeniser import Tokeniser, TokeniserConfig
from physok.models.tokeniser.scales import sample_scales

T, GRID, IDX = 9, (16, 16), [0, 3, 7]
COMBOS = list(itertools.product(("frame", "delta"), ("rms", "zscore")))
IDS = [f"{t}-{n}" for t, n in COMBOS]


def _model(target: str, normalisation: str, seed: int = 0) -> RolloutModel:
    torch.manual_seed(seed)
    tok = TokeniserConfig(
        channels=(4, 8, 8),
        latent_channels=6,
        norm_groups=2,
        eval_scales=((1, 2), (2, 2), (1, 2)),
        normalisation=normalisation,
    )
    proc = ProcessorConfig(
        latent_channels=6, dim=16, depth=2, heads=2, mlp_hidden=32, norm_groups=2
    )
    model = RolloutModel(Tokeniser(tok), Processor(proc), T, target)
    return model.to(torch.float64).eval()


def _fields(seed: int = 0, frames: int = T + 1) -> torch.Tensor:
    """Fields with very different offsets and spreads per channel, changing over time."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, frames, 3, *GRID, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.1
    offset = torch.tensor([5.0, -300.0, 0.02], dtype=x.dtype).reshape(1, 1, 3, 1, 1)
    spread = torch.tensor([1.0, 30.0, 0.001], dtype=x.dtype).reshape(1, 1, 3, 1, 1)
    return x * spread + offset


# ---- the target module on its own ------------------------------------------------------------
@pytest.mark.parametrize("normalisation", ["rms", "zscore"])
def test_normalisation_inverse_and_statistics(normalisation: str) -> None:
    x = _fields(1)
    xn, stats = normalise_context(x, normalisation, "frame", n_context=T)
    torch.testing.assert_close(denormalise(xn, stats), x, rtol=1e-12, atol=1e-12)
    ctx = xn[:, :T]
    if normalisation == "zscore":
        # mean 0 and std 1 over the context, whatever the field's offset
        torch.testing.assert_close(ctx.mean(dim=(1, 3, 4)), torch.zeros(2, 3, dtype=x.dtype))
        torch.testing.assert_close(
            ctx.std(dim=(1, 3, 4), unbiased=False), torch.ones(2, 3, dtype=x.dtype)
        )
    else:
        torch.testing.assert_close(stats.shift, torch.zeros_like(stats.shift))
        rms = ctx.square().mean(dim=(1, 3, 4)).sqrt()
        torch.testing.assert_close(rms, torch.ones(2, 3, dtype=x.dtype))
    # the statistics come from the context only: changing the frame after it changes nothing
    y = x.clone()
    y[:, T:] *= 7.0
    _, stats2 = normalise_context(y, normalisation, "delta", n_context=T)
    _, stats1 = normalise_context(x, normalisation, "delta", n_context=T)
    for a, b in ((stats1.shift, stats2.shift), (stats1.scale, stats2.scale)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(stats1.delta_scale, stats2.delta_scale, rtol=0, atol=0)


def test_delta_scale_is_the_rms_of_frame_changes_and_floored() -> None:
    x = torch.zeros(1, 4, 2, 4, 4, dtype=torch.float64)
    x[:, :, 0] = torch.arange(4, dtype=x.dtype).reshape(1, 4, 1, 1) * 0.5  # constant change 0.5
    s = delta_scale(x)
    torch.testing.assert_close(s[0, 0], torch.tensor(0.5, dtype=torch.float64))
    assert s[0, 1] == DELTA_SCALE_FLOOR  # a static field gets the floor, not 0


@pytest.mark.parametrize("normalisation", ["rms", "zscore"])
def test_delta_target_round_trip_and_zero_output_is_persistence(normalisation: str) -> None:
    x = _fields(2)
    xn, stats = normalise_context(x, normalisation, "delta", n_context=T)
    ctx, nxt = xn[:, :T], xn[:, T:]
    target = target_in_output_units(nxt, ctx[:, -1:], stats, "delta")
    # the target mapped back is the true next frame
    frames = outputs_to_frames(target, ctx[:, -1:], stats, "delta")
    torch.testing.assert_close(frames, nxt, rtol=1e-10, atol=1e-10)
    # a zero output repeats each frame: persistence
    zero = outputs_to_frames(torch.zeros_like(ctx), ctx, stats, "delta")
    torch.testing.assert_close(zero, ctx, rtol=0, atol=0)
    with pytest.raises(ValueError, match="frames"):
        outputs_to_frames(torch.zeros_like(ctx), ctx[:, :2], stats, "delta")


def test_unknown_choices_are_refused() -> None:
    x = _fields()
    with pytest.raises(ValueError, match="normalisation"):
        normalise_context(x, "minmax", "frame")
    with pytest.raises(ValueError, match="target"):
        normalise_context(x, "rms", "residual")
    with pytest.raises(ValueError, match="RolloutModelConfig.target"):
        RolloutModelConfig.preset("fast", target="residual")
    with pytest.raises(ValueError, match="TokeniserConfig.normalisation"):
        TokeniserConfig.fast(normalisation="minmax")
    with pytest.raises(ValueError, match="TokeniserConfig.scale_policy"):
        TokeniserConfig.fast(scale_policy="sometimes")
    with pytest.raises(ValueError, match="eval_scale_prob"):
        TokeniserConfig.fast(scale_policy="mixed", eval_scale_prob=1.5)


# ---- the rollout model under each combination ------------------------------------------------
@pytest.mark.parametrize(("target", "normalisation"), COMBOS, ids=IDS)
def test_physical_units_equivariance(target: str, normalisation: str) -> None:
    """Scaling a field scales its predictions (both normalisations); with the z-score an offset
    shifts them too: the model sees the same normalised input either way."""
    model = _model(target, normalisation)
    x = _fields(3)[:, :T]
    a = torch.tensor([3.0, 1e-3, 250.0], dtype=x.dtype).reshape(1, 1, 3, 1, 1)
    b = torch.tensor([-2.0, 40.0, 0.5], dtype=x.dtype).reshape(1, 1, 3, 1, 1)
    with torch.no_grad():
        y = model(x, IDX)
        torch.testing.assert_close(model(x * a, IDX), y * a, rtol=1e-9, atol=1e-9)
        if normalisation == "zscore":
            torch.testing.assert_close(model(x * a + b, IDX), y * a + b, rtol=1e-9, atol=1e-9)
    assert y.shape == x.shape and y.dtype == torch.float64


@pytest.mark.parametrize(("target", "normalisation"), COMBOS, ids=IDS)
def test_forward_is_raw_outputs_mapped_back(target: str, normalisation: str) -> None:
    """Physical predictions = denormalise(frames_from_outputs(raw outputs of the normalised
    context)): the loss's units and the predictions are one code path."""
    model = _model(target, normalisation)
    x = _fields(4)[:, :T]
    with torch.no_grad():
        xn, stats = model.normalise(x)
        raw = model(xn, IDX, normalised=True)
        frames = model.frames_from_outputs(raw, xn, stats)
        expected = denormalise(frames.double(), stats)
        torch.testing.assert_close(model(x, IDX), expected, rtol=1e-6, atol=1e-6)
        if target == "delta":
            # output j is frame j plus the scaled change
            step = stats.delta_scale[:, None, :, None, None]
            torch.testing.assert_close(frames, xn + step * raw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("target", "normalisation"), COMBOS, ids=IDS)
def test_training_pair_matches_the_prediction_path(target: str, normalisation: str) -> None:
    """A model whose last raw output equals the training target predicts the true frame 10."""
    model = _model(target, normalisation)
    window = _fields(5)
    ctx, tgt, stats = model.training_pair(window)
    assert ctx.shape == window[:, :T].shape and tgt.shape == window[:, T:].shape
    raw = torch.zeros_like(ctx)
    raw[:, -1:] = tgt
    frames = model.frames_from_outputs(raw, ctx, stats)[:, -1:]
    physical = denormalise(frames.double(), stats)
    torch.testing.assert_close(physical, window[:, T:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="training window"):
        model.training_pair(window[:, :T])


@pytest.mark.parametrize("normalisation", ["rms", "zscore"])
def test_delta_path_is_causal(normalisation: str) -> None:
    """The frame-10 prediction of the delta target depends on the context only, and on frame 9
    directly (prediction = frame 9 + change): perturbing frame 9 moves it even where the raw
    output would not."""
    model = _model("delta", normalisation)
    window = _fields(6)
    with torch.no_grad():
        base = model.predict_next(window[:, :T], IDX)
        # frames after the context are never read
        other = window.clone()
        other[:, T:] += 100.0
        torch.testing.assert_close(model.predict_next(other[:, :T], IDX), base, rtol=0, atol=0)
        # raw outputs keep the tokeniser's chunk causality (last output sees frames 1-9)
        xn, _ = model.normalise(window[:, :T])
        raw = model(xn, IDX, normalised=True)
        for t in range(T):
            xp = xn.clone()
            xp[:, t] += 1.0
            moved = (model(xp, IDX, normalised=True) - raw).abs().amax(dim=(0, 2, 3, 4))
            assert moved[-1] > 0, t  # the last output sees every context frame


@pytest.mark.parametrize(("target", "normalisation"), COMBOS, ids=IDS)
def test_rollout_is_repeated_predict_next(target: str, normalisation: str) -> None:
    model = _model(target, normalisation)
    x = _fields(7)[:, :T]
    with torch.no_grad():
        roll = model.rollout(x, 3, IDX)
        window = x
        for k in range(3):
            nxt = model.predict_next(window, IDX)
            torch.testing.assert_close(roll[:, k], nxt, rtol=0, atol=0)
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)


# ---- configs and checkpoints ------------------------------------------------------------------
def test_config_round_trip_and_old_configs() -> None:
    cfg = RolloutModelConfig.preset("fast", target="delta")
    cfg = dataclasses.replace(
        cfg, tokeniser=dataclasses.replace(cfg.tokeniser, normalisation="zscore")
    )
    data = cfg.to_dict()
    assert data["target"] == "delta" and data["tokeniser"]["normalisation"] == "zscore"
    assert RolloutModelConfig.from_dict(data) == cfg
    # a checkpoint written before the choices existed: the paper's reading
    old = {k: v for k, v in data.items() if k != "target"}
    old["tokeniser"] = {
        k: v
        for k, v in data["tokeniser"].items()
        if k not in ("normalisation", "scale_policy", "eval_scale_prob")
    }
    loaded = RolloutModelConfig.from_dict(old)
    assert loaded.target == "frame" and loaded.normalisation == "rms"
    assert loaded.tokeniser.scale_policy == "flexible"


@pytest.mark.parametrize(("target", "normalisation"), [("delta", "zscore"), ("frame", "rms")])
def test_save_and_load_keep_the_choices(tmp_path, target: str, normalisation: str) -> None:
    model = _model(target, normalisation)
    model.save_pretrained(tmp_path / "m")
    loaded = RolloutModel.from_pretrained(tmp_path / "m").to(torch.float64).eval()
    assert loaded.target == target and loaded.normalisation == normalisation
    x = _fields(8)[:, :T]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, IDX), model(x, IDX), rtol=0, atol=0)


# ---- training-scale policies ------------------------------------------------------------------
def test_scale_policies() -> None:
    base = TokeniserConfig.literal_fast()  # Table 7's sets, flexible
    assert base.scale_policy == "flexible"
    g = torch.Generator().manual_seed(0)
    fixed = dataclasses.replace(base, scale_policy="fixed")
    assert all(sample_scales(fixed, g) == base.eval_scales for _ in range(20))
    flexible = Counter(sample_scales(base, g) for _ in range(1600))
    # the fast preset's sets: 1 x 4 x 4 = 16 combinations, drawn uniformly (~100 each)
    assert len(flexible) == 16 and min(flexible.values()) > 50
    mixed = dataclasses.replace(base, scale_policy="mixed", eval_scale_prob=0.5)
    draws = Counter(sample_scales(mixed, g) for _ in range(1600))
    share = draws[base.eval_scales] / 1600
    # 0.5 directly plus 0.5 / 16 from the uniform draw
    assert abs(share - (0.5 + 0.5 / 16)) < 0.05
    assert len(draws) == 16
    # a training forward of the tokeniser follows the policy
    tok = Tokeniser(dataclasses.replace(fixed, field_names=("a", "b"))).train()
    assert tok.resolve_scales(None) == base.eval_scales
