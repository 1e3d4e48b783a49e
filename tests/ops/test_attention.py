"""Attention dispatch: every backend matches the explicit reference; bias never reaches flash."""

from __future__ import annotations

import math

import pytest
import torch

from physok.ops import attention as attn
from physok.ops.attention import attention, attention_math, available_backends, resolve_backend

CPU_BACKENDS = available_backends("cpu")
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def _inputs(b, h, lq, lk, d, dtype, device="cpu", seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (
        torch.randn(b, h, n, d, generator=g, dtype=torch.float64).to(device, dtype)
        for n in (lq, lk, lk)
    )
    bias = torch.randn(1, h, lq, lk, generator=g, dtype=torch.float64).to(device, torch.float32)
    return q, k, v, bias


def _naive(q, k, v, bias=None, causal=False):
    """Row-by-row attention in fp64, causal by truncating the keys (independent of masking)."""
    q, k, v = q.double(), k.double(), v.double()
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=torch.float64)
    for i in range(q.shape[-2]):
        n = i + 1 if causal else k.shape[-2]
        s = (q[..., i : i + 1, :] @ k[..., :n, :].transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if bias is not None:
            s = s + bias[..., i : i + 1, :n].double()
        out[..., i : i + 1, :] = torch.softmax(s, dim=-1) @ v[..., :n, :]
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_math_reference_matches_row_by_row_attention(causal, with_bias):
    q, k, v, bias = _inputs(2, 3, 6, 6, 68, torch.float64)
    out = attention_math(q, k, v, bias=bias if with_bias else None, causal=causal)
    ref = _naive(q, k, v, bias if with_bias else None, causal)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [68, 64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_cpu_backends_match_math(backend, dtype, head_dim, causal, with_bias):
    q, k, v, bias = _inputs(2, 4, 9, 9, head_dim, dtype, seed=head_dim + causal)
    bias = bias if with_bias else None
    out = attention(q, k, v, bias=bias, causal=causal, backend=backend)
    assert out.dtype == dtype and out.shape == q.shape
    ref = attention_math(q.double(), k.double(), v.double(), bias=bias, causal=causal)
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])


def test_cross_attention_lengths_and_default_scale():
    q, k, v, bias = _inputs(1, 2, 3, 7, 20, torch.float64)
    for backend in CPU_BACKENDS:
        out = attention(q, k, v, bias=bias, backend=backend)
        torch.testing.assert_close(out, _naive(q, k, v, bias), rtol=1e-10, atol=1e-10)
    scaled = attention(q, k, v, scale=0.3, backend="sdpa")
    torch.testing.assert_close(scaled, _naive(q * 0.3 * math.sqrt(20), k, v))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_padded_flash_path_is_exact_with_the_original_scale(causal, dtype):
    # The flash path zero-pads D=68 to 72 and passes scale=1/sqrt(68). Off CUDA it runs SDPA's
    # CPU flash kernel, which exercises the padding and the scale (not the GPU kernels).
    q, k, v, _ = _inputs(2, 3, 10, 10, 68, dtype)
    out = attn._attention_flash(q, k, v, causal=causal, scale=1 / math.sqrt(68))
    assert out.shape == q.shape and out.dtype == dtype
    ref = attention_math(q.double(), k.double(), v.double(), causal=causal)
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])


def test_gradients_match_math():
    q, k, v, bias = _inputs(2, 2, 5, 5, 20, torch.float64)
    bias = bias.double()
    for backend in CPU_BACKENDS:
        leaves = [t.clone().requires_grad_() for t in (q, k, v, bias)]
        ref_leaves = [t.clone().requires_grad_() for t in (q, k, v, bias)]
        out = attention(*leaves[:3], bias=leaves[3], causal=True, backend=backend)
        ref = attention_math(*ref_leaves[:3], bias=ref_leaves[3], causal=True)
        w = torch.randn_like(out)
        (out * w).sum().backward()
        (ref * w).sum().backward()
        for a, b in zip(leaves, ref_leaves, strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


def test_selection_argument_beats_environment(monkeypatch):
    q, k, v, bias = _inputs(1, 1, 2, 2, 8, torch.float32)
    monkeypatch.setenv(attn.ENV_VAR, "math")
    assert resolve_backend(q, k, v) == "math"
    assert resolve_backend(q, k, v, backend="sdpa") == "sdpa"
    monkeypatch.setenv(attn.ENV_VAR, " SDPA ")
    assert resolve_backend(q, k, v) == "sdpa"
    monkeypatch.delenv(attn.ENV_VAR)
    # auto on CPU: SDPA (torch's fused CPU kernel).
    assert resolve_backend(q, k, v) == "sdpa"
    assert resolve_backend(q, k, v, bias=bias) == "sdpa"


def test_auto_argument_defers_to_the_environment(monkeypatch):
    q, k, v, _ = _inputs(1, 1, 2, 2, 8, torch.float32)
    monkeypatch.setenv(attn.ENV_VAR, "math")
    assert resolve_backend(q, k, v, backend="auto") == "math"  # a config's "no preference"


def test_math_reference_ignores_autocast():
    q, k, v, bias = _inputs(2, 3, 5, 5, 68, torch.float32, seed=3)
    plain = attention_math(q, k, v, bias=bias, causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = attention_math(q, k, v, bias=bias, causal=True)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=1e-6, atol=1e-6)


def test_bias_calls_never_route_to_flash(monkeypatch):
    q, k, v, bias = _inputs(1, 2, 4, 4, 68, torch.float32)
    # Pretend this machine could run flash for the call: bias-free calls then pick it...
    monkeypatch.setattr(attn, "_flash_refusal", lambda *a: None)
    assert resolve_backend(q, k, v, backend="auto") == "flash"
    assert resolve_backend(q, k, v, backend="flash") == "flash"
    # ...but a bias always goes to the exact SDPA path, even when flash is forced.
    assert resolve_backend(q, k, v, bias=bias, backend="auto") == "sdpa"
    assert resolve_backend(q, k, v, bias=bias, backend="flash") == "sdpa"
    monkeypatch.undo()
    out = attention(q, k, v, bias=bias, causal=True, backend="flash")
    torch.testing.assert_close(out, attention_math(q, k, v, bias=bias, causal=True))


def test_forcing_flash_where_it_cannot_run_is_a_clear_error():
    q, k, v, _ = _inputs(1, 1, 2, 2, 8, torch.float32)
    with pytest.raises(RuntimeError, match="'flash' was forced.*cpu"):
        attention(q, k, v, backend="flash")


def test_bad_backend_names_and_arguments_are_clear(monkeypatch):
    q, k, v, bias = _inputs(1, 1, 3, 3, 8, torch.float32)
    with pytest.raises(ValueError, match="argument='flash2'.*auto, flash, sdpa, math"):
        attention(q, k, v, backend="flash2")
    monkeypatch.setenv(attn.ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match=r"\$PHYSOK_ATTENTION='cudnn'.*auto, flash, sdpa, math"):
        attention(q, k, v)
    monkeypatch.delenv(attn.ENV_VAR)
    with pytest.raises(ValueError, match="causal=True needs equal"):
        attention(q, k[:, :, :2], v[:, :, :2], causal=True)
    with pytest.raises(TypeError, match="additive float"):
        attention(q, k, v, bias=bias > 0)
    with pytest.raises(ValueError, match=r"\(B, H, L, D\)"):
        attention(q[0], k[0], v[0])


def test_available_backends_on_cpu():
    assert available_backends("cpu") == ("math", "sdpa")
    assert attn.flash_kernel_name() in ("fa4", "fa2", "sdpa-flash", "none")


# -- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [68, 64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_gpu_backends_match_math(dtype, head_dim, causal, with_bias):
    q, k, v, bias = _inputs(2, 16, 256, 256, head_dim, dtype, device="cuda", seed=head_dim)
    bias = bias if with_bias else None
    ref = attention_math(q.double(), k.double(), v.double(), bias=bias, causal=causal)
    backends = available_backends("cuda")
    assert "flash" in backends, f"no flash kernel on this GPU ({attn.flash_kernel_name()})"
    for backend in backends:
        out = attention(q, k, v, bias=bias, causal=causal, backend=backend)
        assert out.dtype == dtype and out.shape == q.shape
        torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])
    expected = "sdpa" if with_bias else "flash"
    assert resolve_backend(q, k, v, bias=bias) == expected


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_padded_flash_forward_and_backward_match_math(dtype):
    q, k, v, _ = _inputs(2, 16, 128, 128, 68, dtype, device="cuda", seed=3)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    out = attention(*leaves, causal=True, backend="flash")
    ref = attention_math(*ref_leaves, causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype], atol=TOL[dtype])
    w = torch.randn_like(ref)
    (out.double() * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
def test_gpu_flash_under_autocast_with_fp32_inputs():
    q, k, v, _ = _inputs(2, 4, 64, 64, 68, torch.float32, device="cuda", seed=5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert resolve_backend(q, k, v) == "flash"
        out = attention(q, k, v, backend="flash")
    assert out.dtype == torch.bfloat16
    ref = attention_math(q.double(), k.double(), v.double())
    torch.testing.assert_close(out.double(), ref, rtol=3e-2, atol=3e-2)
    # Outside autocast fp32 cannot run a flash kernel: auto falls back to SDPA, forcing errors.
    assert resolve_backend(q, k, v) == "sdpa"
    with pytest.raises(RuntimeError, match="float16/bfloat16"):
        attention(q, k, v, backend="flash")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_bias_path_runs_the_memory_efficient_kernel_at_head_dim_68(dtype):
    """Unpadded, d=68 in half precision has no fused kernel taking a bias (SDPA would fall to
    its math kernel); the padded call must be served by the memory-efficient kernel alone."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, bias = _inputs(64, 16, 3, 3, 68, dtype, device="cuda", seed=5)
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out = attention(q, k, v, bias=bias.cuda(), causal=True, backend="sdpa")
    want = _naive(q.cpu(), k.cpu(), v.cpu(), bias.cpu(), causal=True)
    torch.testing.assert_close(out.double().cpu(), want, rtol=TOL[dtype], atol=TOL[dtype])
