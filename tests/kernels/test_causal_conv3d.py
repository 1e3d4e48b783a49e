"""Triton causal conv (implicit GEMM) against the F.pad + F.conv3d reference.

On CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so
sizes are tiny; every output buffer the kernels allocate is NaN-poisoned (PHYSOK_KERNEL_POISON),
so an element a kernel fails to write fails the comparison. GPU tests run the tokeniser's real
layer shapes in bf16 and fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from physok_kernels._common import POISON_ENV

pytest.importorskip("triton")

import physok_kernels.causal_conv3d as kmod
from physok_kernels.causal_conv3d import causal_conv3d_triton

from physok.ops.backend import interpreting
from physok.ops.causal_conv3d import causal_conv3d, causal_conv3d_reference

CPU_OK = torch.cuda.is_available() or interpreting()
needs_runner = pytest.mark.skipif(not CPU_OK, reason="needs CUDA or TRITON_INTERPRET=1")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POISON_ENV, "1")


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Exact fp32 on GPU for both paths (the Triton path follows cuDNN's TF32 switch)."""
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = prev


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Same values in another memory layout (the kernels take any strides)."""
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last_3d)
    if layout == "strided":  # a non-contiguous view: every other element of a wider tensor
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x.contiguous()


@_no_tf32()
def _check(
    shape: tuple[int, int, int, int, int],
    co: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int],
    padding: str,
    layout: str = "contiguous",
    bias: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> torch.Tensor:
    """Forward and every gradient of the Triton path against the reference; returns y."""
    gen = torch.Generator().manual_seed(seed)
    ci = shape[1]
    x0 = torch.randn(shape, generator=gen)
    w0 = (
        torch.randn(co, ci, *kernel, generator=gen)
        / (ci * kernel[0] * kernel[1] * kernel[2]) ** 0.5
    )
    b0 = torch.randn(co, generator=gen) if bias else None

    x = _layout(x0.to(DEVICE, dtype), layout).requires_grad_()
    w = w0.to(DEVICE, dtype).requires_grad_()
    b = b0.to(DEVICE, dtype).requires_grad_() if bias else None
    y = causal_conv3d_triton(x, w, b, stride, padding)
    assert y.dtype == dtype
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
    g0 = torch.randn(y.shape, generator=gen)
    inputs = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y, inputs, g0.to(DEVICE, dtype))

    # Reference in fp32 from the same (possibly rounded) values.
    ref_inputs = [t.detach().float().contiguous().requires_grad_() for t in inputs]
    xr, wr, br = (*ref_inputs, None)[:3]
    yr = causal_conv3d_reference(xr, wr, br, stride, padding)
    ref_grads = torch.autograd.grad(yr, ref_inputs, g0.to(DEVICE, dtype).float())

    tol = {torch.float32: (2e-5, 2e-5), torch.bfloat16: (3e-2, 3e-2), torch.float16: (5e-3, 5e-3)}
    rtol, atol = tol[dtype]
    torch.testing.assert_close(y.float(), yr, rtol=rtol, atol=atol, msg="forward")
    for name, got, want in zip(("x", "weight", "bias"), grads, ref_grads, strict=False):
        assert got.shape == want.shape and got.dtype == dtype, name
        scale = want.abs().amax().clamp_min(1.0)  # wgrad sums many rows: compare to its scale
        torch.testing.assert_close(
            got.float() / scale, want / scale, rtol=rtol, atol=atol, msg=f"grad {name}"
        )
    return y


# (shape (B, Ci, T, X, Y), Co, kernel, stride, padding): every tokeniser combination, odd
# channels, non-square grids, batch 2, plus general small combos.
TOKENISER_CASES = [
    ((2, 3, 5, 8, 4), 5, (3, 3, 3), (1, 1, 1), "same"),  # residual-block conv
    ((2, 3, 3, 16, 8), 5, (1, 1, 1), (1, 1, 1), "same"),  # bottleneck / 1x1x1
    ((2, 3, 3, 8, 4), 5, (1, 2, 2), (1, 2, 2), "valid"),  # downsample t1 s2
    ((2, 3, 3, 16, 8), 5, (1, 4, 4), (1, 4, 4), "valid"),  # downsample t1 s4
    ((2, 3, 5, 8, 4), 5, (3, 2, 2), (2, 2, 2), "valid"),  # downsample t2 s2
    ((2, 3, 5, 16, 8), 5, (3, 4, 4), (2, 4, 4), "valid"),  # downsample t2 s4
]
GENERAL_CASES = [
    ((2, 3, 4, 8, 8), 4, (3, 2, 4), (2, 2, 4), "valid"),  # even T, mixed spatial strides
    ((1, 3, 3, 7, 5), 4, (1, 2, 2), (1, 2, 2), "valid"),  # grid not a multiple of the stride
    ((2, 2, 5, 8, 6), 3, (3, 3, 3), (2, 2, 2), "same"),  # overlapping strided kernel
    ((1, 3, 4, 6, 5), 2, (2, 3, 1), (1, 2, 1), "same"),  # even temporal kernel, odd grid
    ((1, 2, 3, 5, 4), 3, (1, 5, 3), (1, 1, 2), "same"),  # kernel wider than half the grid
]


def _case_id(case: tuple) -> str:
    (b, ci, t, x, y), co, k, s, padding = case
    return f"{ci}-{co}_k{k[0]}{k[1]}{k[2]}_s{s[0]}{s[1]}{s[2]}_{padding}_b{b}t{t}_{x}x{y}"


@needs_runner
@pytest.mark.parametrize(
    "shape,co,kernel,stride,padding",
    TOKENISER_CASES + GENERAL_CASES,
    ids=[_case_id(c) for c in TOKENISER_CASES + GENERAL_CASES],
)
def test_matches_reference_fp32(shape, co, kernel, stride, padding):
    _check(shape, co, kernel, stride, padding)


@needs_runner
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize(
    "shape,co,kernel,stride,padding",
    [TOKENISER_CASES[0], TOKENISER_CASES[4]],
    ids=["3x3x3", "3x2x2-s222"],
)
def test_any_input_layout(shape, co, kernel, stride, padding, layout):
    _check(shape, co, kernel, stride, padding, layout=layout, seed=1)


@needs_runner
def test_many_channels_several_blocks_and_wgrad_splits():
    # Ci=70 / Co=130 cross the channel block limits (several K chunks and N blocks), 1536
    # output rows make several M tiles and more than one weight-gradient split.
    _check((2, 70, 3, 16, 16), 130, (1, 1, 1), (1, 1, 1), "same", bias=False, seed=2)
    assert kmod._wgrad_splits(2 * 3 * 16 * 16, 1, torch.device(DEVICE)) > 1


@needs_runner
@pytest.mark.parametrize(
    "shape,co,kernel,stride,padding",
    [TOKENISER_CASES[0], TOKENISER_CASES[4]],
    ids=["3x3x3", "3x2x2-s222"],
)
def test_split_k(monkeypatch, shape, co, kernel, stride, padding):
    # On a GPU, split-K cuts the forward/dgrad reduction when the output grid is too small to
    # fill the device; force 3 slices (for the strided dgrad, more slices than K iterations).
    monkeypatch.setattr(kmod, "_k_splits", lambda programs, k_iters, device: 3)
    _check(shape, co, kernel, stride, padding, seed=7)


@needs_runner
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_inputs(dtype):
    # In the interpreter this exercises the fp32 cast of `tl.dot` operands.
    _check((2, 3, 5, 8, 4), 5, (3, 2, 2), (2, 2, 2), "valid", dtype=dtype, seed=3)


def test_poisoned_buffers_are_nan():
    # The comparisons above would fail on any element a kernel left unwritten.
    out = kmod.empty((2, 3, 4), torch.float32, torch.device("cpu"))
    assert torch.isnan(out).all()
    cl = kmod.empty((1, 2, 3, 4, 5), torch.bfloat16, torch.device("cpu"), channels_last=True)
    assert torch.isnan(cl).all() and cl.is_contiguous(memory_format=torch.channels_last_3d)


def test_grid_smaller_than_kernel_is_a_clear_error():
    x = torch.randn(1, 2, 3, 2, 8)
    w = torch.randn(3, 2, 1, 4, 4)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        causal_conv3d_triton(x, w, None, (1, 4, 4), "valid")


@needs_runner
def test_dispatch_forced_triton_matches_reference_and_reference_never_calls_triton(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, 8, 4, generator=gen).to(DEVICE)
    w = torch.randn(4, 3, 3, 4, 4, generator=gen).to(DEVICE)
    b = torch.randn(4, generator=gen).to(DEVICE)
    y = causal_conv3d(x, w, b, (2, 4, 4), "valid", backend="triton")
    torch.testing.assert_close(y, causal_conv3d_reference(x, w, b, (2, 4, 4), "valid"))

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("the Triton path was called")

    monkeypatch.setattr(kmod, "causal_conv3d_triton", boom)
    monkeypatch.setenv("PHYSOK_KERNELS", "triton")  # the argument must win over the env
    y_ref = causal_conv3d(x, w, b, (2, 4, 4), "valid", backend="reference")
    torch.testing.assert_close(y_ref, y)
    with pytest.raises(AssertionError, match="Triton path"):
        causal_conv3d(x, w, b, (2, 4, 4), "valid", backend="triton")


def _compile_check(backend: str) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 3, 8, 4, generator=gen).to(DEVICE).requires_grad_()
    w = torch.randn(4, 3, 1, 2, 2, generator=gen).to(DEVICE).requires_grad_()
    b = torch.randn(4, generator=gen).to(DEVICE).requires_grad_()

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = causal_conv3d_triton(x, w, b, (1, 2, 2), "valid")
        return torch.tanh(y).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, backend=backend, fullgraph=True)
    got = compiled(x, w, b)
    got_grads = torch.autograd.grad(got, (x, w, b))
    want = f(x, w, b)
    want_grads = torch.autograd.grad(want, (x, w, b))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, r in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


@needs_runner
def test_torch_compile_aot_eager_traces_through():
    _compile_check("aot_eager")


@needs_runner
def test_torch_compile_inductor_traces_through():
    _compile_check("inductor")


# --------------------------------------------------------------------------------------------
# GPU: the tokeniser's real layer shapes (batch 2, 9 frames, 512^2 first level)
# --------------------------------------------------------------------------------------------

REAL_LAYERS = {
    "16-16_k333_512": ((2, 16, 9, 512, 512), 16, (3, 3, 3), (1, 1, 1), "same"),
    "16-32_k122_s122_512": ((2, 16, 9, 512, 512), 32, (1, 2, 2), (1, 2, 2), "valid"),
    "32-64_k344_s244_256": ((2, 32, 9, 256, 256), 64, (3, 4, 4), (2, 4, 4), "valid"),
    "64-2048_k333_16": ((2, 64, 3, 16, 16), 2048, (3, 3, 3), (1, 1, 1), "same"),
}


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).norm() / want.norm().clamp_min(1e-30)).item()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("layer", list(REAL_LAYERS))
def test_real_layer_shapes_gpu(layer, dtype):
    shape, co, kernel, stride, padding = REAL_LAYERS[layer]
    gen = torch.Generator(device="cuda").manual_seed(6)
    ci = shape[1]
    fan_in = ci * kernel[0] * kernel[1] * kernel[2]
    x = torch.randn(shape, device="cuda", generator=gen).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    w = (torch.randn(co, ci, *kernel, device="cuda", generator=gen) / fan_in**0.5).to(dtype)
    w.requires_grad_()
    b = torch.randn(co, device="cuda", generator=gen).to(dtype).requires_grad_()
    y = causal_conv3d_triton(x, w, b, stride, padding)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last_3d)
    g = torch.randn(y.shape, device="cuda", generator=gen).to(dtype)
    gx, gw, gb = torch.autograd.grad(y, (x, w, b), g)

    # Exact fp32 reference (no TF32) from the same values.
    xr, wr, br = (t.detach().float().requires_grad_() for t in (x, w, b))
    with _no_tf32():
        yr = causal_conv3d_reference(xr, wr, br, stride, padding)
        rx, rw, rb = torch.autograd.grad(yr, (xr, wr, br), g.float())
    # bf16: output rounding alone is ~2e-3 relative; fp32 may use TF32 like cuDNN does.
    tol = 1e-2 if dtype == torch.bfloat16 else 3e-3
    for name, got, want in (("y", y, yr), ("x", gx, rx), ("w", gw, rw), ("b", gb, rb)):
        assert torch.isfinite(got).all(), name
        assert _rel_err(got, want) < tol, (name, _rel_err(got, want))


@pytest.mark.gpu
def test_torch_compile_inductor_gpu():
    with _no_tf32():
        _compile_check("inductor")
