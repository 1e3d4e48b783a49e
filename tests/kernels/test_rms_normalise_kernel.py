"""Triton RMS normalisation kernels vs the torch reference (interpreter on CPU, real sizes on GPU).

Every output and scratch buffer is pre-filled with NaN (PHYSOK_KERNEL_POISON=1), so an element a
kernel does not write fails the comparison. Inputs are fresh random fields with per-field scales
spread over orders of magnitude (so a wrong (b, c) pairing cannot pass).
"""

from __future__ import annotations

import pytest
import torch
from physok_kernels._common import POISON_ENV

from physok.data import normalise as ref

rms = pytest.importorskip("physok_kernels.rms_normalise")


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POISON_ENV, "1")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _fields(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, _, c = shape[:3]
    spread = 10.0 ** torch.empty(b, 1, c, *([1] * (len(shape) - 3))).uniform_(-2, 2, generator=g)
    x = torch.randn(shape, generator=g) * spread + 0.3 * spread
    return x.to(device=_device(), dtype=dtype)


def _normalise_and_grads(fn, x, g, gs, n_context):
    xg = x.clone().requires_grad_(True)
    y, s = fn(xg, n_context)
    (dx,) = torch.autograd.grad((y.float() * g).sum() + (s * gs).sum(), xg)
    return y.detach(), s.detach(), dx


# (B, T, C, *spatial): odd channel counts, non-square and odd grids, batch > 1, 1 and 3 spatial
# dims; chunk 16 forces several chunks per frame (the split reduction) with a ragged last chunk.
CASES = [
    ((2, 3, 3, 8, 4), None, None),
    ((2, 3, 5, 6, 10), 2, 16),
    ((3, 4, 1, 5, 7), 1, 16),
    ((2, 2, 3, 7), None, 16),
    ((1, 3, 2, 3, 4, 5), 2, None),
]


@pytest.mark.parametrize(("shape", "n_context", "chunk"), CASES)
def test_normalise_forward_and_gradient_match_reference(shape, n_context, chunk) -> None:
    x = _fields(shape, seed=len(shape) + shape[2])
    g = torch.randn(x.shape, device=x.device)
    gs = torch.randn(shape[0], shape[2], device=x.device)
    y, s, dx = _normalise_and_grads(
        lambda f, n: rms.rms_normalise(f, n, chunk=chunk), x, g, gs, n_context
    )
    y_r, s_r, dx_r = _normalise_and_grads(ref.rms_normalise, x, g, gs, n_context)
    assert s.dtype == torch.float32 and y.dtype == x.dtype
    torch.testing.assert_close(s, s_r, rtol=1e-5, atol=0)
    torch.testing.assert_close(y, y_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dx, dx_r, rtol=1e-4, atol=1e-5 * dx_r.abs().max().item())


@pytest.mark.parametrize(("shape", "chunk"), [((2, 3, 3, 8, 4), None), ((2, 2, 5, 6, 10), 16)])
def test_denormalise_forward_and_gradients_match_reference(shape, chunk) -> None:
    x = _fields(shape, seed=7)
    scales = torch.rand(shape[0], shape[2], device=x.device) * 5 + 0.1
    g = torch.randn(x.shape, device=x.device)
    outs = []
    for fn in (lambda f, s: rms.rms_denormalise(f, s, chunk=chunk), ref.rms_denormalise):
        xg, sg = x.clone().requires_grad_(True), scales.clone().requires_grad_(True)
        y = fn(xg, sg)
        outs.append((y.detach(), *torch.autograd.grad((y * g).sum(), (xg, sg))))
    (y, dx, ds), (y_r, dx_r, ds_r) = outs
    torch.testing.assert_close(y, y_r, rtol=1e-6, atol=0)
    torch.testing.assert_close(dx, dx_r, rtol=1e-6, atol=0)
    torch.testing.assert_close(ds, ds_r, rtol=1e-5, atol=1e-5)


def test_roundtrip_and_gradient_only_through_scales() -> None:
    x = _fields((2, 4, 3, 6, 5), seed=3)
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    _, s = rms.rms_normalise(xg, 3)
    _, s_r = ref.rms_normalise(xr, 3)
    # A loss on the scales alone: the field gradient flows only through the scale reduction.
    (dx,) = torch.autograd.grad(s.square().sum(), xg)
    (dx_r,) = torch.autograd.grad(s_r.square().sum(), xr)
    torch.testing.assert_close(dx, dx_r, rtol=1e-5, atol=1e-6)
    assert (dx[:, 3] == 0).all()  # the target frame does not influence the scales
    y, s = rms.rms_normalise(x, 3)
    torch.testing.assert_close(rms.rms_denormalise(y, s), x, rtol=1e-6, atol=1e-6)


def test_zero_field_is_clamped_and_gradient_is_finite() -> None:
    x = _fields((1, 3, 2, 4, 4), seed=5)
    x[:, :, 0] = 0.0
    xg = x.clone().requires_grad_(True)
    y, s = rms.rms_normalise(xg, eps=1e-3)
    assert s[0, 0].item() == pytest.approx(1e-3)
    g = torch.randn(x.shape, device=x.device)
    (dx,) = torch.autograd.grad((y * g).sum() + s.sum(), xg)
    assert torch.isfinite(dx).all()
    # Clamped scale: no gradient through it, so the field gradient is just g / eps.
    torch.testing.assert_close(dx[:, :, 0], g[:, :, 0] / 1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_dtype_and_accumulates_in_fp32(dtype) -> None:
    x = _fields((2, 3, 3, 8, 6), dtype=dtype, seed=11)
    y, s = rms.rms_normalise(x, 2, chunk=16)
    y_r, s_r = ref.rms_normalise(x, 2)
    assert y.dtype == dtype and s.dtype == torch.float32
    torch.testing.assert_close(s, s_r, rtol=1e-5, atol=0)
    torch.testing.assert_close(y.float(), y_r.float(), rtol=1e-2, atol=1e-2)
    back = rms.rms_denormalise(y, s)
    assert back.dtype == dtype
    torch.testing.assert_close(back.float(), ref.rms_denormalise(y, s).float(), rtol=1e-2, atol=0)


def test_bad_arguments_are_named() -> None:
    x = _fields((1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="n_context=4"):
        rms.rms_normalise(x, 4)
    with pytest.raises(ValueError, match="chunk=24"):
        rms.rms_normalise(x, chunk=24)
    with pytest.raises(ValueError, match="float64"):
        rms.rms_normalise(x.double())
    with pytest.raises(ValueError, match="scales shape"):
        rms.rms_denormalise(x, torch.ones(1, 3, device=x.device))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_size_forward_and_backward_on_gpu(dtype) -> None:
    x = _fields((2, 10, 5, 512, 512), dtype=dtype, seed=1)
    g = torch.randn(x.shape, device=x.device)
    gs = torch.randn(2, 5, device=x.device)
    y, s, dx = _normalise_and_grads(rms.rms_normalise, x, g, gs, 9)
    y_r, s_r, dx_r = _normalise_and_grads(ref.rms_normalise, x, g, gs, 9)
    torch.testing.assert_close(s, s_r, rtol=1e-4, atol=0)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(y.float(), y_r.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(
        dx.float(), dx_r.float(), rtol=tol * 10, atol=tol * dx_r.float().abs().max().item()
    )
    sg = s_r.clone().requires_grad_(True)
    yg = y_r.detach().clone().requires_grad_(True)
    out = rms.rms_denormalise(yg, sg)
    dy, ds = torch.autograd.grad((out.float() * g).sum(), (yg, sg))
    sg_r = s_r.clone().requires_grad_(True)
    yg_r = y_r.detach().clone().requires_grad_(True)
    out_r = ref.rms_denormalise(yg_r, sg_r)
    dy_r, ds_r = torch.autograd.grad((out_r.float() * g).sum(), (yg_r, sg_r))
    torch.testing.assert_close(out.float(), out_r.float(), rtol=tol, atol=0)
    torch.testing.assert_close(dy.float(), dy_r.float(), rtol=tol, atol=0)
    torch.testing.assert_close(ds, ds_r, rtol=1e-3, atol=1e-3)


def _compile_check(backend: str) -> None:
    x = _fields((2, 3, 3, 8, 4), seed=2)
    g = torch.randn(x.shape, device=x.device)

    def f(v: torch.Tensor) -> torch.Tensor:
        y, s = rms.rms_normalise(v, 2)
        return (rms.rms_denormalise(y * g, s) * g).sum() + s.sum()

    torch._dynamo.reset()
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = torch.compile(f, backend=backend, fullgraph=True)(xg)
    want = f(xr)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    (dg,), (dw,) = torch.autograd.grad(got, xg), torch.autograd.grad(want, xr)
    torch.testing.assert_close(dg, dw, rtol=1e-5, atol=1e-5)


def test_torch_compile_traces_through_the_ops() -> None:
    # CPU: the interpreter's opaque custom ops (checks the fake implementations); GPU: inductor
    # inlines the triton_op kernels.
    _compile_check("inductor" if torch.cuda.is_available() else "aot_eager")
