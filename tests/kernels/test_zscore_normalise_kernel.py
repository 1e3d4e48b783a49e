"""Triton z-score normalisation kernels vs the float64 torch reference (interpreter on CPU, real
sizes on GPU).

As for RMS (test_rms_normalise_kernel.py): every output and scratch buffer is pre-filled with NaN
(PHYSOK_KERNEL_POISON=1), inputs are fresh random fields with per-field scales and offsets
spread over orders of magnitude, and chunk=16 forces the split reduction with a ragged last
chunk. The reference runs in float64 on the same (rounded) input, so every difference is the
kernel's own error.
"""

from __future__ import annotations

import pytest
import torch
from physok_kernels._common import POISON_ENV

from physok.data import normalise as ref

rms = pytest.importorskip("physok_kernels.rms_normalise")

FP32_EPS = torch.finfo(torch.float32).eps


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POISON_ENV, "1")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _fields(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, _, c = shape[:3]
    stat = (b, 1, c, *([1] * (len(shape) - 3)))
    spread = 10.0 ** torch.empty(stat).uniform_(-2, 2, generator=g)
    offset = torch.empty(stat).uniform_(-3, 3, generator=g) * spread
    x = torch.randn(shape, generator=g) * spread + offset
    return x.to(device=_device(), dtype=dtype)


def _normalise_and_grads(fn, x, g, gm, gs, n_context):
    """(y, mean, std, dL/dx) for L = sum(y g) + sum(mean gm) + sum(std gs)."""
    xg = x.clone().requires_grad_(True)
    y, m, s = fn(xg, n_context)
    loss = (y.to(g.dtype) * g).sum() + (m.to(g.dtype) * gm).sum() + (s.to(g.dtype) * gs).sum()
    (dx,) = torch.autograd.grad(loss, xg)
    return y.detach(), m.detach(), s.detach(), dx


def _upstream(x: torch.Tensor, dtype: torch.dtype = torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    b, c = x.shape[0], x.shape[2]
    up = (torch.randn(x.shape, generator=g), torch.randn(b, c, generator=g))
    return tuple(t.to(device=x.device, dtype=dtype) for t in (*up, torch.randn(b, c, generator=g)))


def _reference(x: torch.Tensor, g, gm, gs, n_context):
    """The reference forward and gradient in float64, on x's own (rounded) values."""
    up = (g.double(), gm.double(), gs.double())
    return _normalise_and_grads(ref.zscore_normalise, x.double(), *up, n_context)


def _close_grad(dx: torch.Tensor, dx_r: torch.Tensor, rtol: float, atol_frac: float) -> None:
    scale = dx_r.abs().max().item()
    torch.testing.assert_close(dx.double(), dx_r, rtol=rtol, atol=atol_frac * scale)


# (B, T, C, *spatial): odd channel counts, non-square and odd grids, batch > 1, 1 and 3 spatial
# dims, n_context < T; chunk 16 forces several chunks per frame with a ragged last one.
CASES = [
    ((2, 3, 3, 8, 4), None, None),
    ((2, 3, 3, 6, 10), 2, 16),
    ((3, 4, 1, 5, 7), 1, 16),
    ((2, 2, 3, 7), None, 16),
    ((1, 3, 2, 3, 4, 5), 2, None),
]


@pytest.mark.parametrize(("shape", "n_context", "chunk"), CASES)
def test_normalise_forward_and_gradient_match_reference(shape, n_context, chunk) -> None:
    x = _fields(shape, seed=len(shape) + shape[2])
    up = _upstream(x)
    y, m, s, dx = _normalise_and_grads(
        lambda f, n: rms.zscore_normalise(f, n, chunk=chunk), x, *up, n_context
    )
    y_r, m_r, s_r, dx_r = _reference(x, *up, n_context)
    assert y.dtype == x.dtype and m.dtype == s.dtype == torch.float32
    torch.testing.assert_close(s.double(), s_r, rtol=1e-5, atol=0)
    # The mean's error is relative to the field's spread, not to the mean itself.
    torch.testing.assert_close(m.double(), m_r, rtol=0, atol=1e-5 * s_r.max().item())
    torch.testing.assert_close(y.double(), y_r, rtol=1e-5, atol=1e-5)
    _close_grad(dx, dx_r, rtol=1e-4, atol_frac=1e-5)


# Output tolerance ~ a few units of the dtype's rounding; the statistics are fp32-accumulated
# for every dtype, so they are as accurate as for fp32 input.
DTYPE_TOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", list(DTYPE_TOL))
def test_dtypes_keep_the_input_dtype_and_accumulate_in_fp32(dtype) -> None:
    x = _fields((2, 3, 2, 8, 6), dtype=dtype, seed=11)
    up = _upstream(x)
    y, m, s, dx = _normalise_and_grads(lambda f, n: rms.zscore_normalise(f, n, chunk=16), x, *up, 2)
    y_r, m_r, s_r, dx_r = _reference(x, *up, 2)
    tol = DTYPE_TOL[dtype]
    assert y.dtype == dx.dtype == dtype and m.dtype == s.dtype == torch.float32
    torch.testing.assert_close(s.double(), s_r, rtol=1e-5, atol=0)
    torch.testing.assert_close(m.double(), m_r, rtol=0, atol=1e-5 * s_r.max().item())
    torch.testing.assert_close(y.double(), y_r, rtol=tol, atol=tol)
    _close_grad(dx, dx_r, rtol=tol * 10, atol_frac=tol)
    back = rms.zscore_denormalise(y, m, s)
    assert back.dtype == dtype
    want = ref.zscore_denormalise(y.double(), m.double(), s.double())
    torch.testing.assert_close(back.double(), want, rtol=tol, atol=tol * s.max().item())


def test_large_offset_tiny_std_does_not_cancel() -> None:
    # Field 0: mean 100, std 0.01, white noise; field 1: mean -1000, a smooth variation of std
    # ~0.07 across the grid (so the chunk means differ) plus noise. E[f²] - E[f]² in fp32 is off
    # by far more than 10% on both (checked below); the kernel's std is good to ~1e-7 relative.
    # The fp32 mean itself is only resolved to ulp(100) = 7.6e-6, i.e. 7.6e-4 std (the input's
    # own quantisation), so that is the output's tolerance.
    shape, n = (2, 3, 2, 12, 8), 2
    g = torch.Generator().manual_seed(21)
    x = torch.randn(shape, generator=g)
    x[:, :, 0] = x[:, :, 0] * 0.01 + 100.0
    wave = 0.1 * torch.sin(torch.linspace(0, 3, shape[3]))[:, None]
    x[:, :, 1] = x[:, :, 1] * 1e-3 - 1000.0 + wave
    x = x.to(_device())
    up = _upstream(x)
    y, m, s, dx = _normalise_and_grads(lambda f, k: rms.zscore_normalise(f, k, chunk=32), x, *up, n)
    y_r, m_r, s_r, dx_r = _reference(x, *up, n)
    ctx = x[:, :n]
    naive = ctx.square().mean((1, 3, 4)) - ctx.mean((1, 3, 4)).square()  # fp32
    naive_err = (naive.clamp_min(0).sqrt().double() / s_r - 1).abs().min().item()
    assert naive_err > 0.1  # the case really is one where the naive formula breaks
    torch.testing.assert_close(s.double(), s_r, rtol=1e-5, atol=0)
    ulp = 2 * FP32_EPS * m_r.abs()  # a couple of ulps of the mean
    assert ((m.double() - m_r).abs() <= ulp).all()
    torch.testing.assert_close(y.double(), y_r, rtol=1e-4, atol=(ulp / s_r).max().item())
    _close_grad(dx, dx_r, rtol=1e-3, atol_frac=1e-4)


def test_constant_field_is_clamped_and_gradient_is_finite() -> None:
    shape, n, eps = (2, 3, 3, 5, 4), 2, 1e-3
    x = _fields(shape, seed=5)
    x[:, :, 0] = 2.5  # exactly summable: mean exactly 2.5, variance exactly 0
    x[:, :, 1] = 0.1  # not: the residual variance must still clamp, never go NaN
    up = _upstream(x)
    y, m, s, dx = _normalise_and_grads(
        lambda f, k: rms.zscore_normalise(f, k, eps=eps, chunk=16), x, *up, n
    )
    assert (s[:, :2] == eps).all()
    assert (m[:, 0] == 2.5).all() and (y[:, :, 0] == 0).all()
    torch.testing.assert_close(m[:, 1], torch.full_like(m[:, 1], 0.1), rtol=1e-6, atol=0)
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    # Clamped std: no gradient through it (the reference's sqrt backward is NaN at 0), only the
    # mean's: dx = g / eps + [t < n] (gm - sum g / eps) / N.
    g, gm, _ = up
    count = n * x[0, 0, 0].numel()
    want = g[:, :, :2] / eps
    want[:, :n] += ((gm[:, :2] - g[:, :, :2].sum((1, 3, 4)) / eps) / count)[:, None, :, None, None]
    torch.testing.assert_close(dx[:, :, :2], want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    # The other field is unaffected.
    y_r, _, s_r, dx_r = _reference(x, *up, n)
    torch.testing.assert_close(s[:, 2].double(), s_r[:, 2], rtol=1e-5, atol=0)
    torch.testing.assert_close(y[:, :, 2].double(), y_r[:, :, 2], rtol=1e-5, atol=1e-5)
    _close_grad(dx[:, :, 2], dx_r[:, :, 2], rtol=1e-4, atol_frac=1e-5)


@pytest.mark.parametrize(("shape", "chunk"), [((2, 3, 3, 8, 4), None), ((2, 2, 5, 6, 10), 16)])
def test_denormalise_forward_and_gradients_match_reference(shape, chunk) -> None:
    x = _fields(shape, seed=7)
    g = torch.Generator().manual_seed(8)
    mean = (torch.randn(shape[0], shape[2], generator=g) * 50).to(x.device)
    std = (torch.rand(shape[0], shape[2], generator=g) * 5 + 0.1).to(x.device)
    up = torch.randn(x.shape, generator=g).to(x.device)
    runs = (
        (lambda f, a, b: rms.zscore_denormalise(f, a, b, chunk=chunk), torch.float32),
        (ref.zscore_denormalise, torch.float64),
    )
    outs = []
    for fn, dt in runs:
        args = [t.to(dt).clone().requires_grad_(True) for t in (x, mean, std)]
        y = fn(*args)
        outs.append((y.detach(), *torch.autograd.grad((y * up.to(y.dtype)).sum(), args)))
    for got, want in zip(*outs, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_roundtrip_and_gradient_only_through_the_statistics() -> None:
    x = _fields((2, 4, 3, 6, 5), seed=3)
    y, m, s = rms.zscore_normalise(x, 3)
    back = rms.zscore_denormalise(y, m, s)
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5 * x.abs().amax((1, 3, 4)).max())
    # A loss on the statistics alone: the field gradient flows only through the reductions.
    xg, xr = x.clone().requires_grad_(True), x.double().requires_grad_(True)
    _, m, s = rms.zscore_normalise(xg, 3)
    _, m_r, s_r = ref.zscore_normalise(xr, 3)
    (dx,) = torch.autograd.grad((m * 0.3 + s.square()).sum(), xg)
    (dx_r,) = torch.autograd.grad((m_r * 0.3 + s_r.square()).sum(), xr)
    _close_grad(dx, dx_r, rtol=1e-4, atol_frac=1e-5)
    assert (dx[:, 3] == 0).all()  # the target frame does not influence the statistics


def test_bad_arguments_are_named() -> None:
    x = _fields((1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="n_context=4"):
        rms.zscore_normalise(x, 4)
    with pytest.raises(ValueError, match="chunk=24"):
        rms.zscore_normalise(x, chunk=24)
    with pytest.raises(ValueError, match="float64"):
        rms.zscore_normalise(x.double())
    ok = torch.ones(1, 2, device=x.device)
    with pytest.raises(ValueError, match="mean shape"):
        rms.zscore_denormalise(x, torch.ones(1, 3, device=x.device), ok)
    with pytest.raises(ValueError, match="std shape"):
        rms.zscore_denormalise(x, ok, torch.ones(2, 2, device=x.device))


def test_torch_compile_traces_through_the_ops() -> None:
    # CPU: the interpreter's opaque custom ops (checks the fake implementations); GPU: inductor
    # inlines the triton_op kernels.
    x = _fields((1, 3, 2, 4, 4), seed=2)
    g = torch.randn(x.shape, device=x.device)

    def f(v: torch.Tensor) -> torch.Tensor:
        y, m, s = rms.zscore_normalise(v, 2)
        return (rms.zscore_denormalise(y * g, m, s) * g).sum() + s.sum() + m.sum()

    torch._dynamo.reset()
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    backend = "inductor" if torch.cuda.is_available() else "aot_eager"
    got = torch.compile(f, backend=backend, fullgraph=True)(xg)
    want = f(xr)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().item())
    (dg,), (dw,) = torch.autograd.grad(got, xg), torch.autograd.grad(want, xr)
    torch.testing.assert_close(dg, dw, rtol=1e-5, atol=1e-5 * dw.abs().max().item())


def _check_against_reference(shape: tuple[int, ...], dtype: torch.dtype, n_context: int) -> None:
    """Forward, backward and the inverse at `shape` vs the float64 reference."""
    x = _fields(shape, dtype=dtype, seed=1)
    if dtype == torch.float32:  # a large-offset, tiny-std field (bf16 cannot resolve one)
        g = torch.Generator().manual_seed(2)
        x[1, :, -1] = (torch.randn(x[1, :, -1].shape, generator=g) * 0.01 + 100.0).to(x.device)
    up = _upstream(x)
    y, m, s, dx = _normalise_and_grads(rms.zscore_normalise, x, *up, n_context)
    y_r, m_r, s_r, dx_r = _reference(x, *up, n_context)
    tol = DTYPE_TOL[dtype]
    torch.testing.assert_close(s.double(), s_r, rtol=1e-4, atol=0)
    ulp = 4 * FP32_EPS * m_r.abs() + 1e-5 * s_r
    assert ((m.double() - m_r).abs() <= ulp).all()
    atol = max(tol, (ulp / s_r).max().item())
    torch.testing.assert_close(y.double(), y_r, rtol=tol, atol=atol)
    _close_grad(dx, dx_r, rtol=tol * 10, atol_frac=tol)
    args = [t.clone().requires_grad_(True) for t in (y_r.to(dtype), m_r.float(), s_r.float())]
    out = rms.zscore_denormalise(*args)
    grads = torch.autograd.grad((out.float() * up[0]).sum(), args)
    args_r = [t.detach().double().requires_grad_(True) for t in args]
    out_r = ref.zscore_denormalise(*args_r)
    # The op receives the upstream gradient rounded to its output's dtype: so does the reference.
    grads_r = torch.autograd.grad((out_r * up[0].to(dtype).double()).sum(), args_r)
    atol = tol * (m_r.abs() + s_r).max().item()
    torch.testing.assert_close(out.double(), out_r, rtol=tol, atol=atol)
    torch.testing.assert_close(grads[0].double(), grads_r[0], rtol=tol, atol=0)
    for got, want in zip(grads[1:], grads_r[1:], strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-3 * want.abs().max())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_frames", [9, 10])
def test_real_size_forward_and_backward_on_gpu(dtype, n_frames) -> None:
    _check_against_reference((2, n_frames, 5, 512, 512), dtype, 9)
