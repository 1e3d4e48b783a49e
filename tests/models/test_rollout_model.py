"""RolloutModel: causality by perturbation, rollout feedback, physical units, attention backends,
configs and persistence (tiny tokeniser and processor, so every test runs in about a second)."""

from __future__ import annotations

import math

import pytest
import torch

from physok.models.processor import Processor, ProcessorConfig
from physok.models.rollout_model import RolloutModel, RolloutModelConfig
from physok.models.tokeniser import Tokeniser, TokeniserConfig

T, GRID, IDX = 9, (16, 16), torch.tensor([0, 3, 7])
S2 = ((1, 2), (2, 2), (1, 2))  # temporal compression 2: 9 frames -> 5 latents
S4 = ((1, 2), (2, 2), (2, 2))  # temporal compression 4: 9 frames -> 3 latents


def _tokeniser_config(eval_scales=S2, upsampling="depth_to_space") -> TokeniserConfig:
    return TokeniserConfig(
        channels=(4, 8, 8),
        latent_channels=6,
        norm_groups=2,
        eval_scales=eval_scales,
        upsampling=upsampling,
    )


def _processor_config(**overrides) -> ProcessorConfig:
    base = dict(latent_channels=6, dim=16, depth=2, heads=2, mlp_hidden=32, norm_groups=2)
    base.update(overrides)
    return ProcessorConfig(**base)


def _model(seed: int = 0, dtype=torch.float64, **tok) -> RolloutModel:
    torch.manual_seed(seed)
    model = RolloutModel(Tokeniser(_tokeniser_config(**tok)), Processor(_processor_config()))
    return model.to(dtype).eval()


def _fields(seed: int = 0, frames: int = T, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 30.0, 0.01], dtype=dtype).reshape(1, 1, 3, 1, 1)
    return (torch.randn(2, frames, 3, *GRID, generator=g, dtype=dtype) + 0.5) * scale


# ---- causality ------------------------------------------------------------------------------
def _dependence(model: RolloutModel, x: torch.Tensor) -> torch.Tensor:
    """D[j, t]: whether output frame j moves when input frame t is perturbed (normalised units,
    where the RMS scales are fixed by the caller)."""
    with torch.no_grad():
        y0 = model(x, IDX, normalised=True)
        dep = torch.zeros(T, T, dtype=torch.bool)
        for t in range(T):
            xp = x.clone()
            xp[:, t] += torch.randn_like(xp[:, t])
            dy = (model(xp, IDX, normalised=True) - y0).abs().amax(dim=(0, 2, 3, 4))
            dep[:, t] = dy > 1e-9
            # Unaffected outputs must be bit-for-bit unchanged, not merely close.
            assert all(dy[j] == 0 for j in range(T) if not dep[j, t]), (t, dy)
    return dep


@pytest.mark.parametrize("scales", [S2, S4], ids=["S2", "S4"])
def test_depth_to_space_rollout_is_causal_per_chunk(scales) -> None:
    """Output j depends on exactly the input frames <= S * ceil(j / S) (the end of its chunk):
    strict next-frame prediction at chunk ends, including the last frame that predicts frame 10;
    the other frames of a chunk see their own target (documented limit)."""
    model = _model(eval_scales=scales)
    s = math.prod(st for st, _ in scales)
    torch.manual_seed(1)
    dep = _dependence(model, _fields().div(_fields().std()))
    expected = torch.tensor(
        [[t <= s * math.ceil(j / s) for t in range(T)] for j in range(T)], dtype=torch.bool
    )
    assert torch.equal(dep, expected), (dep.int(), expected.int())
    # The trained output (last frame) sees every context frame and nothing later.
    assert dep[T - 1].all()
    # With chunks, some non-final output sees its own target: the limit is real.
    assert dep[1, 2]


def test_transposed_upsampling_rollout_is_strictly_causal() -> None:
    model = _model(upsampling="transposed")
    torch.manual_seed(2)
    dep = _dependence(model, _fields(1))
    for j in range(T):
        assert not dep[j, j + 1 :].any(), (j, dep[j])  # never a later frame
    assert dep[T - 1].all()  # the last output uses the whole context


# ---- rollout --------------------------------------------------------------------------------
def test_rollout_shape_and_feedback_of_predictions() -> None:
    model = _model()
    context = _fields(3, frames=11)  # longer than the window: its last 9 frames are used
    with torch.no_grad():
        out = model.rollout(context, 3, IDX)
        assert out.shape == (2, 3, 3, *GRID)
        window = context[:, -9:]
        torch.testing.assert_close(out[:, 0], model.predict_next(window, IDX), rtol=0, atol=0)
        # Step 2 is predict_next on the window whose last frame is step 1's prediction ...
        window2 = torch.cat([window[:, 1:], out[:, :1]], dim=1)
        torch.testing.assert_close(out[:, 1], model.predict_next(window2, IDX), rtol=0, atol=0)
        window3 = torch.cat([window2[:, 1:], out[:, 1:2]], dim=1)
        torch.testing.assert_close(out[:, 2], model.predict_next(window3, IDX), rtol=0, atol=0)
        # ... and not the prediction from the true context shifted without feedback.
        other = torch.cat([window[:, 1:], context[:, -1:] * 2], dim=1)
        assert (model.predict_next(other, IDX) - out[:, 1]).abs().max() > 1e-6
        # predict_next is the last of the all-frames forward.
        torch.testing.assert_close(model(window, IDX)[:, -1], out[:, 0], rtol=0, atol=0)


def test_physical_units_round_trip() -> None:
    """Scaling a field by a constant scales its predictions by it (normalisation inside);
    predictions are the normalised output times the context's RMS."""
    model = _model()
    x = _fields(4)
    c = torch.tensor([3.0, 1e-3, 250.0], dtype=x.dtype).reshape(1, 1, 3, 1, 1)
    with torch.no_grad():
        y = model(x, IDX)
        y_scaled = model(x * c, IDX)
        torch.testing.assert_close(y_scaled, y * c, rtol=1e-10, atol=0)
        xn, stats = model.normalise(x)
        yn = model(xn, IDX, normalised=True)
        rms = stats.scale
        torch.testing.assert_close(y, yn * rms[:, None, :, None, None], rtol=1e-12, atol=0)
        roll = model.rollout(x, 2, IDX)
        torch.testing.assert_close(model.rollout(x * c, 2, IDX), roll * c, rtol=1e-9, atol=0)
    assert y.dtype == torch.float64 and not torch.allclose(y, yn)


def _backends() -> list:
    out = ["math", "sdpa", "auto"]
    out.append(
        pytest.param(
            "flash",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
            ],
        )
    )
    return out


@pytest.mark.parametrize("backend", _backends())
def test_rollout_with_each_attention_backend_matches_math(backend: str) -> None:
    device = "cuda" if backend == "flash" else "cpu"
    torch.manual_seed(5)
    tok = Tokeniser(_tokeniser_config())
    ref_proc = Processor(_processor_config(attention_backend="math"))
    proc = Processor(_processor_config(attention_backend=backend))
    proc.load_state_dict(ref_proc.state_dict())
    ref = RolloutModel(tok, ref_proc).to(device).eval()
    model = RolloutModel(tok, proc).to(device).eval()
    x = _fields(5, dtype=torch.float32).to(device)
    with torch.no_grad():
        if backend == "flash":  # flash needs half precision: compare both under bf16 autocast
            with torch.autocast("cuda", dtype=torch.bfloat16):
                got, want = model.rollout(x, 2, IDX), ref.rollout(x, 2, IDX)
            tol = dict(rtol=5e-2, atol=5e-2 * float(want.abs().max()))
        else:
            got, want = model.rollout(x, 2, IDX), ref.rollout(x, 2, IDX)
            tol = dict(rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert got.shape == (2, 2, 3, *GRID) and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, **tol)


# ---- configs, validation, persistence ---------------------------------------------------------
def test_config_round_trip_and_errors() -> None:
    cfg = RolloutModelConfig(_tokeniser_config(), _processor_config())
    assert RolloutModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.temporal_compression == 2
    fast = RolloutModelConfig.preset("fast")
    assert fast.tokeniser == TokeniserConfig.fast() and fast.processor == ProcessorConfig.fast()
    with pytest.raises(ValueError, match=r"latent_channels \(6\) must equal .* \(18\)"):
        RolloutModelConfig(_tokeniser_config(), ProcessorConfig.fast())
    with pytest.raises(ValueError, match=r"context_frames: 8 must be .* compression 2"):
        RolloutModelConfig(_tokeniser_config(), _processor_config(), context_frames=8)
    with pytest.raises(ValueError, match="needs the keys 'tokeniser' and 'processor'"):
        RolloutModelConfig.from_dict({"tokeniser": {}})


def test_bad_inputs_are_rejected_with_clear_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"8 frames cannot be compressed by 2"):
        model(_fields(frames=8), IDX)
    with pytest.raises(ValueError, match=r"context must be \(B, T >= 9"):
        model.rollout(_fields(frames=5), 1, IDX)
    with pytest.raises(ValueError, match="positive integer"):
        model.rollout(_fields(), 0, IDX)


def test_save_and_load_pretrained(tmp_path) -> None:
    model = _model(dtype=torch.float32)
    model.save_pretrained(tmp_path / "m")
    loaded = RolloutModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    x = _fields(6, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, IDX), model(x, IDX), rtol=0, atol=0)


def test_loading_resets_runtime_backends(tmp_path) -> None:
    """A model trained with "flash" attention (GPU) or "triton" kernels loads anywhere: the
    backends are runtime choices, set at load time (default: the dispatch's own)."""
    import dataclasses

    model = _model(dtype=torch.float32)
    cfg = model.config
    gpu_cfg = RolloutModelConfig(
        dataclasses.replace(cfg.tokeniser, kernel_backend="triton"),
        dataclasses.replace(cfg.processor, attention_backend="flash"),
        cfg.context_frames,
    )
    trained = RolloutModel.from_config(gpu_cfg)
    trained.load_state_dict(model.state_dict())
    trained.save_pretrained(tmp_path / "m")
    loaded = RolloutModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.processor.attention_backend is None
    assert loaded.config.tokeniser.kernel_backend == "auto"
    x = _fields(7, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, IDX), model.eval()(x, IDX), rtol=0, atol=0)
    forced = RolloutModel.from_pretrained(tmp_path / "m", attention_backend="math")
    assert forced.config.processor.attention_backend == "math"
