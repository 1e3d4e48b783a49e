"""Dispatch of z-score normalisation: reference by default on CPU, the Triton kernel when forced.

The kernels themselves are compared with the reference in
tests/kernels/test_zscore_normalise_kernel.py;
here: which implementation runs, that both agree through the public functions (forward and
gradients), and the dtype rule.
"""

from __future__ import annotations

import pytest
import torch

from physok.data import normalise as ref
from physok.ops import backend
from physok.ops.rms_normalise import zscore_denormalise, zscore_normalise


def _fields(shape=(2, 4, 3, 6, 5), dtype=torch.float32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spread = 10.0 ** torch.empty(shape[0], 1, shape[2], 1, 1).uniform_(-1, 1, generator=g)
    offset = torch.randn(shape[0], 1, shape[2], 1, 1, generator=g) * 3 * spread
    return (torch.randn(shape, generator=g) * spread + offset).to(dtype)


def _can_run_triton() -> None:
    if not backend.interpreting() and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")


def test_reference_backend_is_the_data_layer_reference_exactly() -> None:
    x = _fields()
    y, m, s = zscore_normalise(x, n_context=3, backend="reference")
    y_r, m_r, s_r = ref.zscore_normalise(x, n_context=3)
    assert torch.equal(y, y_r) and torch.equal(m, m_r) and torch.equal(s, s_r)
    got = zscore_denormalise(y, m, s, backend="reference")
    assert torch.equal(got, ref.zscore_denormalise(y, m, s))


def test_auto_on_cpu_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import physok_kernels.rms_normalise as kmod

    def boom(*args, **kwargs):
        raise AssertionError("the Triton path must not run for a CPU tensor under 'auto'")

    monkeypatch.setattr(kmod, "zscore_normalise", boom)
    monkeypatch.setattr(kmod, "zscore_denormalise", boom)
    x = _fields()
    y, m, s = zscore_normalise(x)
    assert torch.equal(y, ref.zscore_normalise(x)[0])
    zscore_denormalise(y, m, s)


def test_environment_variable_forces_the_triton_path(monkeypatch: pytest.MonkeyPatch) -> None:
    _can_run_triton()
    import physok_kernels.rms_normalise as kmod

    calls = []
    real_n, real_d = kmod.zscore_normalise, kmod.zscore_denormalise
    monkeypatch.setattr(kmod, "zscore_normalise", lambda *a: calls.append("n") or real_n(*a))
    monkeypatch.setattr(kmod, "zscore_denormalise", lambda *a: calls.append("d") or real_d(*a))
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    y, m, s = zscore_normalise(_fields(shape=(1, 2, 2, 4, 3)))
    zscore_denormalise(y, m, s)
    assert calls == ["n", "d"]


@pytest.mark.parametrize("n_context", [None, 2])
def test_triton_and_reference_agree_with_gradients(n_context) -> None:
    _can_run_triton()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = _fields(seed=4).to(device)
    g = torch.randn(x.shape, device=device)
    gm, gs = torch.randn(2, x.shape[0], x.shape[2], device=device)
    results = []
    for be in ("triton", "reference"):
        xg = x.clone().requires_grad_(True)
        y, m, s = zscore_normalise(xg, n_context=n_context, backend=be)
        mg = m.detach().clone().requires_grad_(True)
        sg = s.detach().clone().requires_grad_(True)
        back = zscore_denormalise(y.detach(), mg, sg, backend=be)
        (dx,) = torch.autograd.grad((y * g).sum() + (m * gm).sum() + (s * gs).sum(), xg)
        dm, ds = torch.autograd.grad((back * g).sum(), (mg, sg))
        results.append((y, m, s, dx, back, dm, ds))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_dtype_rule() -> None:
    x = _fields(dtype=torch.float64)
    # auto: float64 is not a kernel dtype, the reference runs (on any device).
    y, m, s = zscore_normalise(x, backend="auto")
    assert y.dtype == m.dtype == s.dtype == torch.float64
    assert zscore_denormalise(y, m, s, backend="auto").dtype == torch.float64
    if backend.interpreting() or torch.cuda.is_available():
        x = x.to("cuda" if torch.cuda.is_available() else "cpu")
        with pytest.raises(ValueError, match="zscore_normalise.*float64.*backend='reference'"):
            zscore_normalise(x, backend="triton")
        with pytest.raises(ValueError, match="zscore_denormalise.*float64"):
            zscore_denormalise(x, m.to(x.device), s.to(x.device), backend="triton")
