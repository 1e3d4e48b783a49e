"""Spectral binning: conventions, Parseval, and exact agreement with the_well's binned NMSE.

the_well's `binned_spectral_mse` works on channels-last (..., X, Y, C) fields with a full fft2;
physok's sums use rfft2 (..., X, Y) with interior columns weighted 2. The per-bin NMSE derived
from physok's sums (formula in `physok.ops.spectral_binning`) must match the_well's to 1e-5,
on both backends (Triton through the interpreter on CPU).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from physok.ops import backend
from physok.ops.spectral_binning import (
    bin_mode_counts,
    binned_spectral_power,
    column_weights,
    the_well_bin_edges,
    wavenumber_magnitude,
)

CAN_TRITON = torch.cuda.is_available() or backend.interpreting()
BACKENDS = [
    "reference",
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(not CAN_TRITON, reason="needs CUDA or TRITON_INTERPRET=1"),
    ),
]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(shape, generator=g) + 0.2
    pred = true + 0.5 * torch.randn(shape, generator=g)
    return pred.to(DEVICE), true.to(DEVICE)


def _well_magnitude_full(shape: tuple[int, int]) -> np.ndarray:
    """|k| on the full fft2 grid with the_well's float32 recipe, in numpy (IEEE float32 ops)."""
    x, y = shape
    fx = (2 * np.pi * torch.fft.fftfreq(x)).numpy()  # the_well's float32 per-axis values
    fy = (2 * np.pi * torch.fft.fftfreq(y)).numpy()
    return np.sqrt(fx[:, None] * fx[:, None] + fy[None, :] * fy[None, :])


@pytest.mark.parametrize("shape", [(8, 4), (6, 10), (7, 5), (5, 9), (64, 32)])
def test_wavenumber_magnitude_is_the_wells_recipe_ieee_rounded(shape) -> None:
    k = wavenumber_magnitude(shape)
    assert k.shape == (shape[0], shape[1] // 2 + 1) and k.dtype == torch.float32
    full = _well_magnitude_full(shape)
    assert np.array_equal(k.numpy(), full[:, : shape[1] // 2 + 1])
    assert k[0, 0] == 0 and k.max() <= np.pi * np.sqrt(2) + 1e-6


@pytest.mark.parametrize("shape", [(512, 512), (512, 128), (256, 512), (256, 256), (128, 128)])
def test_the_wells_default_bins_do_not_depend_on_the_sqrt_rounding(shape) -> None:
    # the_well on the CPU uses torch's (not correctly rounded) float32 sqrt; its default edges
    # must bin every mode as physok's IEEE |k| does, or the CPU NMSE could differ.
    x, y = shape
    kx = (2 * np.pi * torch.fft.fftfreq(x)).reshape(x, 1)
    ky = (2 * np.pi * torch.fft.rfftfreq(y)).reshape(1, -1)
    torch_cpu = torch.sqrt(kx**2 + ky**2)
    edges = the_well_bin_edges(shape)
    ours = torch.bucketize(wavenumber_magnitude(shape), edges, right=True)
    assert torch.equal(torch.bucketize(torch_cpu, edges, right=True), ours)


def test_the_well_bin_edges() -> None:
    e = the_well_bin_edges((512, 128))
    assert e.dtype == torch.float32 and e.shape == (4,) and e[0] == 0
    assert e[1] == pytest.approx((2 * np.pi / 512) ** (2 / 3) * (np.pi * np.sqrt(2)) ** (1 / 3))
    assert e[3] > np.pi * np.sqrt(2)  # the corner mode stays inside the last bin


def _the_well_nmse(pred: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from the_well.benchmark.metrics.spectral import binned_spectral_mse

    meta = types.SimpleNamespace(n_spatial_dims=2)
    # (B, T, C, X, Y) -> the_well's channels-last (B, T, X, Y, C); its default bins.
    out = binned_spectral_mse.eval(
        pred.permute(0, 1, 3, 4, 2).cpu(), true.permute(0, 1, 3, 4, 2).cpu(), meta
    )
    mse = torch.stack([out[f"spectral_error_mse_per_bin_{i}"] for i in range(3)], -1)
    nmse = torch.stack([out[f"spectral_error_nmse_per_bin_{i}"] for i in range(3)], -1)
    return mse, nmse


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("shape", [(8, 4), (6, 10), (7, 5), (9, 16)])
def test_reproduces_the_wells_binned_nmse(be, shape) -> None:
    pred, true = _pair((2, 2, 3, *shape), seed=shape[0] * 100 + shape[1])
    edges = the_well_bin_edges(shape)
    err, tru = binned_spectral_power(pred, true, edges, backend=be)
    c = bin_mode_counts(shape, edges).float().to(err.device)
    n = shape[0] * shape[1]
    f = c / (c + 1e-7)
    mse = err * f / n**2
    nmse = mse / (tru * f / n**2 + 1e-7)
    want_mse, want_nmse = _the_well_nmse(pred, true)
    torch.testing.assert_close(mse.cpu(), want_mse, rtol=1e-5, atol=0)
    torch.testing.assert_close(nmse.cpu(), want_nmse, rtol=1e-5, atol=0)


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("shape", [(8, 4), (7, 5), (6, 9)])
def test_parseval_over_bins_covering_every_mode(be, shape) -> None:
    pred, true = _pair((3, 2, *shape), seed=1)
    edges = torch.tensor([0.0, 0.5, 1.7, float("inf")])
    err, tru = binned_spectral_power(pred, true, edges, backend=be)
    n = shape[0] * shape[1]
    d = (pred - true).double()
    torch.testing.assert_close(
        err.sum(-1).double(), n * d.square().sum((-2, -1)), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        tru.sum(-1).double(), n * true.double().square().sum((-2, -1)), rtol=1e-5, atol=0
    )


@pytest.mark.parametrize("shape", [(8, 4), (7, 5), (6, 9), (5, 6)])
def test_half_spectrum_sums_equal_full_spectrum_sums_per_bin(shape) -> None:
    pred, true = _pair((2, *shape), seed=2)
    edges = torch.tensor([0.0, 0.9, 1.6, 2.5, 4.0])
    err, tru = binned_spectral_power(pred.cpu(), true.cpu(), edges, backend="reference")
    # Brute force on the full fft2 grid with the same |k| recipe.
    k = torch.from_numpy(_well_magnitude_full(shape))
    idx = torch.bucketize(k, edges, right=True) - 1
    fp, ft = torch.fft.fft2(pred.cpu().double()), torch.fft.fft2(true.cpu().double())
    for b in range(edges.numel() - 1):
        m = idx == b
        torch.testing.assert_close(
            err[..., b].double(), ((fp - ft).abs() ** 2 * m).sum((-2, -1)), rtol=1e-5, atol=1e-4
        )
        torch.testing.assert_close(
            tru[..., b].double(), (ft.abs() ** 2 * m).sum((-2, -1)), rtol=1e-5, atol=1e-4
        )
        assert bin_mode_counts(shape, edges)[b] == m.sum()


def test_mode_counts_match_the_well_and_cover_the_grid() -> None:
    from the_well.benchmark.metrics.spectral import power_spectrum

    meta = types.SimpleNamespace(n_spatial_dims=2)
    for shape in [(8, 4), (7, 5), (32, 16)]:
        edges = the_well_bin_edges(shape)
        *_, counts = power_spectrum(torch.zeros(1, *shape, 1), meta, bins=edges, return_counts=True)
        assert torch.equal(bin_mode_counts(shape, edges), counts[:-1])
        assert bin_mode_counts(shape, torch.tensor([0.0, float("inf")])).item() == np.prod(shape)


def test_column_weights() -> None:
    assert column_weights(8).tolist() == [1, 2, 2, 2, 1]
    assert column_weights(7).tolist() == [1, 2, 2, 2]
    assert column_weights(1).tolist() == [1]


def test_reference_is_differentiable_and_triton_path_detaches() -> None:
    pred, true = _pair((2, 6, 4))
    pred.requires_grad_(True)
    edges = the_well_bin_edges((6, 4))
    err, _ = binned_spectral_power(pred, true, edges, backend="reference")
    (g,) = torch.autograd.grad(err.sum(), pred)
    # d/dpred of sum over all bins of N * sum (pred - true)^2 restricted to the binned modes.
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    if CAN_TRITON:
        err_t, tru_t = binned_spectral_power(pred, true, edges, backend="triton")
        assert not err_t.requires_grad and not tru_t.requires_grad


def test_auto_on_cpu_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import physok_kernels.spectral_binning as kmod

    def boom(*args, **kwargs):
        raise AssertionError("the Triton path must not run for a CPU tensor under 'auto'")

    monkeypatch.setattr(kmod, "binned_spectral_power", boom)
    pred, true = _pair((2, 6, 4))
    binned_spectral_power(pred.cpu(), true.cpu(), the_well_bin_edges((6, 4)))


def test_bad_arguments_are_named() -> None:
    pred, true = _pair((2, 6, 4))
    edges = the_well_bin_edges((6, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        binned_spectral_power(pred, true[:1], edges)
    with pytest.raises(ValueError, match="non-decreasing"):
        binned_spectral_power(pred, true, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="real floating"):
        binned_spectral_power(pred.to(torch.complex64), true.to(torch.complex64), edges)
    with pytest.raises(ValueError, match="2-D grid"):
        wavenumber_magnitude((4, 4, 4))
