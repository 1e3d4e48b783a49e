"""Dispatch of RMS normalisation: reference by default on CPU, the Triton kernel when forced.

The kernels themselves are compared with the reference in
tests/kernels/test_rms_normalise_kernel.py;
here: which implementation runs, that both agree through the public functions (forward and
gradients), and the dtype rule.
"""

from __future__ import annotations

import pytest
import torch

from physok.data import normalise as ref
from physok.ops import backend
from physok.ops.rms_normalise import rms_denormalise, rms_normalise


def _fields(shape=(2, 4, 3, 6, 5), dtype=torch.float32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spread = 10.0 ** torch.empty(shape[0], 1, shape[2], 1, 1).uniform_(-1, 1, generator=g)
    return (torch.randn(shape, generator=g) * spread).to(dtype)


def test_reference_backend_is_the_data_layer_reference_exactly() -> None:
    x = _fields()
    y, s = rms_normalise(x, n_context=3, backend="reference")
    y_r, s_r = ref.rms_normalise(x, n_context=3)
    assert torch.equal(y, y_r) and torch.equal(s, s_r)
    assert torch.equal(rms_denormalise(y, s, backend="reference"), ref.rms_denormalise(y, s))


def test_auto_on_cpu_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import physok_kernels.rms_normalise as kmod

    def boom(*args, **kwargs):
        raise AssertionError("the Triton path must not run for a CPU tensor under 'auto'")

    monkeypatch.setattr(kmod, "rms_normalise", boom)
    monkeypatch.setattr(kmod, "rms_denormalise", boom)
    x = _fields()
    y, s = rms_normalise(x)
    assert torch.equal(y, ref.rms_normalise(x)[0])
    rms_denormalise(y, s)


def test_environment_variable_forces_the_triton_path(monkeypatch: pytest.MonkeyPatch) -> None:
    if not backend.interpreting() and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    import physok_kernels.rms_normalise as kmod

    calls = []
    real = kmod.rms_normalise
    monkeypatch.setattr(kmod, "rms_normalise", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    rms_normalise(_fields())
    assert calls == [1]


@pytest.mark.parametrize("n_context", [None, 2])
def test_triton_and_reference_agree_with_gradients(n_context) -> None:
    if not backend.interpreting() and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = _fields(seed=4).to(device)
    g = torch.randn(x.shape, device=device)
    results = []
    for be in ("triton", "reference"):
        xg = x.clone().requires_grad_(True)
        y, s = rms_normalise(xg, n_context=n_context, backend=be)
        sg = s.detach().clone().requires_grad_(True)
        back = rms_denormalise(y.detach(), sg, backend=be)
        (dx,) = torch.autograd.grad((y * g).sum() + s.sum(), xg)
        (ds,) = torch.autograd.grad((back * g).sum(), sg)
        results.append((y, s, dx, back, ds))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dtype_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _fields(dtype=torch.float64)
    # auto: float64 is not a kernel dtype, the reference runs (on any device).
    y, s = rms_normalise(x, backend="auto")
    assert y.dtype == s.dtype == torch.float64
    if backend.interpreting() or torch.cuda.is_available():
        with pytest.raises(ValueError, match="float64.*backend='reference'"):
            rms_normalise(x.to("cuda" if torch.cuda.is_available() else "cpu"), backend="triton")
