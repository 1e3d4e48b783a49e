"""NEPS (normalised error power spectrum): shells, ranges and the metric's defining values.

The binning op itself (bins, weights, backends, the_well's |k|) is tested in
tests/ops/test_spectral_binning.py; here: the shells NEPS bins into cover every non-zero mode
once and split into ranges at the_well's edges, Parseval over them, NEPS's exact values for
perfect, zero, rescaled, low-pass and single-mode predictions, the backends' agreement, and
input errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physok.metrics import (
    RANGES,
    neps_per_shell,
    neps_ranges,
    shell_centres,
    shell_edges,
    shell_ranges,
    spectral_errors,
    the_well_nmse_per_bin,
)
from physok.ops import backend
from physok.ops.spectral_binning import (
    bin_mode_counts,
    binned_spectral_power,
    wavenumber_magnitude,
)

GRIDS = [(8, 8), (16, 16), (12, 8), (7, 5), (5, 9), (32, 24), (2, 2), (3, 17), (64, 64)]
CAN_TRITON = torch.cuda.is_available() or backend.interpreting()


def _fields(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(shape, generator=g) + 0.5
    pred = true + 0.4 * torch.randn(shape, generator=g)
    return pred, true


# ---- shells and ranges --------------------------------------------------------------------


@pytest.mark.parametrize("shape", GRIDS)
def test_shells_cover_every_mode_but_the_mean_once(shape) -> None:
    edges = shell_edges(shape)
    assert edges.dtype == torch.float32 and (edges[1:] > edges[:-1]).all()
    counts = bin_mode_counts(shape, edges)
    assert counts.sum() == shape[0] * shape[1] - 1
    # The mean mode lies below the first edge; the grid's largest |k| inside the last shell.
    k = wavenumber_magnitude(shape)
    assert edges[0] > 0 and float(k.max()) < float(edges[-1])
    below = (k < edges[0]).nonzero().tolist()
    assert below == [[0, 0]]
    # Shell n is centred on nΔ, one fundamental Δ = 2π / max(X, Y) wide.
    delta = 2 * math.pi / max(shape)
    centres = shell_centres(shape)
    assert torch.allclose(centres, torch.arange(1, centres.numel() + 1).double() * delta)
    assert torch.allclose(edges[:-1].double(), centres - delta / 2, rtol=1e-6, atol=0)
    assert centres.numel() == edges.numel() - 1


@pytest.mark.parametrize("shape", [(16, 16), (64, 64), (12, 8), (32, 24), (512, 128), (7, 5)])
def test_shell_ranges_split_at_the_wells_edges(shape) -> None:
    ranges = shell_ranges(shape)
    assert ranges.dtype == torch.int64 and ranges.numel() == shell_edges(shape).numel() - 1
    assert (ranges[1:] >= ranges[:-1]).all(), "ranges must increase with |k|"
    assert set(ranges.tolist()) == {0, 1, 2}
    # the_well's edges, recomputed from its recipe: logspace(log10(2π/N), log10(π√2 + 1e-6), 4).
    well = np.logspace(np.log10(2 * np.pi / max(shape)), np.log10(np.pi * np.sqrt(2) + 1e-6), 4)
    for n, r in enumerate(ranges.tolist(), start=1):
        centre = n * 2 * np.pi / max(shape)
        if r == 0:
            assert centre < well[1]
        elif r == 1:
            assert well[1] <= centre < well[2]
        else:
            assert centre >= well[2]


@pytest.mark.parametrize("shape", [(8, 8), (12, 8), (7, 5), (5, 9)])
def test_parseval_over_shells_plus_the_mean_mode(shape) -> None:
    pred, true = _fields((3, 2, *shape), seed=1)
    pred, true = pred.double(), true.double()
    err, tru = binned_spectral_power(pred, true, shell_edges(shape), backend="reference")
    d = pred - true
    n = shape[0] * shape[1]
    mean_mode = d.sum(dim=(-2, -1)).square()  # |F(d)[0, 0]|²
    torch.testing.assert_close(
        err.sum(-1).double() + mean_mode, n * d.square().sum((-2, -1)), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        tru.sum(-1).double() + true.sum((-2, -1)).square(),
        n * true.square().sum((-2, -1)),
        rtol=1e-5,
        atol=0,
    )
    # The_well's three bins start at 0 and end past the corner: they hold every mode, mean too.
    one = torch.tensor([0.0, float("inf")])
    all_err, _ = binned_spectral_power(pred, true, one, backend="reference")
    torch.testing.assert_close(
        all_err[..., 0].double(), n * d.square().sum((-2, -1)), rtol=1e-5, atol=0
    )


# ---- defining values ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 16), (12, 20), (7, 5)])
def test_perfect_prediction_is_zero_and_zeros_are_one(shape) -> None:
    _, true = _fields((2, 3, *shape), seed=2)
    zero = neps_per_shell(true, true)
    defined = ~torch.isnan(zero)
    assert defined.any(dim=-1).all()
    assert (zero[defined] == 0).all()
    assert (neps_ranges(true, true)[~torch.isnan(neps_ranges(true, true))] == 0).all()

    ones = neps_per_shell(torch.zeros_like(true), true)
    assert torch.equal(~torch.isnan(ones), defined)
    torch.testing.assert_close(ones[defined], torch.ones_like(ones[defined]), rtol=1e-6, atol=0)
    rng = neps_ranges(torch.zeros_like(true), true)
    assert rng.shape == (2, 3, len(RANGES)) and not torch.isnan(rng).any()
    torch.testing.assert_close(rng, torch.ones_like(rng), rtol=1e-6, atol=0)
    # the_well's NMSE of a zero prediction is 1 up to its 1e-7 epsilon, per bin.
    well = the_well_nmse_per_bin(torch.zeros_like(true), true)
    torch.testing.assert_close(well, torch.ones_like(well), rtol=1e-5, atol=0)


def test_rescaling_a_sample_field_leaves_neps_unchanged() -> None:
    pred, true = _fields((3, 2, 4, 16, 12), seed=3)
    g = torch.Generator().manual_seed(4)
    scale = 10.0 ** torch.empty(3, 1, 4, 1, 1).uniform_(-3, 3, generator=g)
    base = neps_per_shell(pred, true)
    torch.testing.assert_close(neps_per_shell(pred * scale, true * scale), base, rtol=1e-4, atol=0)
    torch.testing.assert_close(
        neps_ranges(pred * scale, true * scale), neps_ranges(pred, true), rtol=1e-4, atol=0
    )


@pytest.mark.parametrize("shape", [(32, 32), (24, 16)])
def test_low_pass_prediction(shape) -> None:
    _, true = _fields((2, 2, *shape), seed=5)
    true = true.double()
    edges = shell_edges(shape)
    cut = 4  # keep the mean and shells 0..cut-1: every |k| below edges[cut]
    keep = (wavenumber_magnitude(shape) < edges[cut]).double()
    pred = torch.fft.irfft2(torch.fft.rfft2(true) * keep, s=shape)
    per = neps_per_shell(pred, true)
    assert not torch.isnan(per).any()
    torch.testing.assert_close(per[..., :cut], torch.zeros_like(per[..., :cut]), rtol=0, atol=1e-9)
    torch.testing.assert_close(per[..., cut:], torch.ones_like(per[..., cut:]), rtol=1e-6, atol=0)
    # Range means: low is all kept shells here (0), the removed ranges give 1.
    ranges = shell_ranges(shape)
    assert (ranges[:cut] <= 1).all() and (ranges[cut:] >= 1).all()
    got = neps_ranges(pred, true)
    for r in range(len(RANGES)):
        in_r = ranges == r
        want = (torch.arange(in_r.numel())[in_r] >= cut).double().mean()
        torch.testing.assert_close(got[..., r].double(), want.expand(2, 2), rtol=1e-6, atol=1e-9)


def test_single_fourier_mode_error_by_hand() -> None:
    # Truth: A·cos at mode (3, 1) + B·cos at (5, 5), plus a mean offset. Error: ε·cos at (1, 3),
    # the same shell as (3, 1) (|k| = Δ·√10, shell 3) but a different mode, plus a constant.
    # Each cosine puts (amplitude·N/2)² into its modes ±k, so shell 3's NEPS is exactly (ε/A)²;
    # the (5, 5) shell (|k| = Δ·√50, shell 7) gets no error; the constant is the mean mode,
    # which NEPS leaves out.
    n = 16
    x = torch.arange(n, dtype=torch.float64).reshape(n, 1)
    y = torch.arange(n, dtype=torch.float64).reshape(1, n)

    def wave(a: int, b: int) -> torch.Tensor:
        return torch.cos(2 * math.pi * (a * x + b * y) / n)

    amp_a, amp_b, eps = 2.0, 0.7, 0.3
    true = 1.5 + amp_a * wave(3, 1) + amp_b * wave(5, 5)
    pred = true + eps * wave(1, 3) + 0.25
    per = neps_per_shell(pred, true)
    assert per.shape == (shell_edges((n, n)).numel() - 1,)
    assert per[2].item() == pytest.approx((eps / amp_a) ** 2, rel=1e-6)
    assert abs(per[6].item()) < 1e-12
    # Shells without true power have no NEPS worth reading (round-off over round-off); the two
    # with power are the only ones whose true power is not round-off.
    _, tru = binned_spectral_power(pred, true, shell_edges((n, n)), backend="reference")
    assert (tru[[2, 6]] > 1e-6 * tru.max()).all()
    assert (torch.cat([tru[:2], tru[3:6], tru[7:]]) < 1e-20 * tru.max()).all()
    # By hand, the summed powers: 2 modes x (A·N²/2)², ...
    n2 = n * n
    assert tru[2].item() == pytest.approx(2 * (amp_a * n2 / 2) ** 2, rel=1e-6)
    assert tru[6].item() == pytest.approx(2 * (amp_b * n2 / 2) ** 2, rel=1e-6)


def test_spectral_errors_bundles_both_metrics() -> None:
    pred, true = _fields((2, 3, 12, 10), seed=6)
    out = spectral_errors(pred, true)
    torch.testing.assert_close(out.neps, neps_ranges(pred, true), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out.well_nmse, the_well_nmse_per_bin(pred, true), rtol=0, atol=0)
    assert out.neps.shape == out.well_nmse.shape == (2, 3, 3)


def test_small_errors_keep_their_relative_precision() -> None:
    # NEPS of a tiny error (1e-5 of the field) in float32 must match float64 closely: the
    # residual is transformed, not the difference of two transforms.
    pred, true = _fields((2, 2, 32, 32), seed=7)
    pred = true + 1e-5 * (pred - true)
    want = neps_per_shell(pred.double(), true.double()).double()
    assert (want > 0).all()
    torch.testing.assert_close(neps_per_shell(pred, true).double(), want, rtol=1e-3, atol=0)
    want_w = the_well_nmse_per_bin(pred.double(), true.double()).double()
    torch.testing.assert_close(
        the_well_nmse_per_bin(pred, true).double(), want_w, rtol=1e-3, atol=0
    )


# ---- backends -----------------------------------------------------------------------------


@pytest.mark.skipif(not CAN_TRITON, reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_backend_agrees_with_the_reference() -> None:
    pred, true = _fields((2, 2, 12, 10), seed=8)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    pred, true = pred.to(dev), true.to(dev)
    ref = neps_ranges(pred, true, backend="reference")
    tri = neps_ranges(pred, true, backend="triton")
    assert not torch.isnan(ref).any()
    torch.testing.assert_close(tri, ref, rtol=1e-4, atol=0)
    torch.testing.assert_close(
        the_well_nmse_per_bin(pred, true, backend="triton"),
        the_well_nmse_per_bin(pred, true, backend="reference"),
        rtol=1e-4,
        atol=0,
    )


# ---- bad input ----------------------------------------------------------------------------


def test_bad_inputs_name_the_shapes() -> None:
    a, b = torch.zeros(2, 8, 8), torch.zeros(2, 8, 6)
    for fn in (neps_per_shell, neps_ranges, the_well_nmse_per_bin, spectral_errors):
        with pytest.raises(ValueError, match=r"\(2, 8, 8\) != true shape \(2, 8, 6\)"):
            fn(a, b)
        with pytest.raises(ValueError, match=r"\(\.\.\., X, Y\).*\(8,\)"):
            fn(torch.zeros(8), torch.zeros(8))
    for shape in [(1, 8), (8, 1), (1, 1)]:
        for fn in (neps_per_shell, neps_ranges, spectral_errors):
            with pytest.raises(ValueError, match=rf"at least 2x2 points, got \({shape[0]}, "):
                fn(torch.zeros(3, *shape), torch.zeros(3, *shape))
        with pytest.raises(ValueError, match="at least 2x2"):
            shell_edges(shape)


def test_nan_predictions_show_as_nan_not_as_undefined_shells() -> None:
    # A diverged prediction (NaN in one field) must not vanish from the ensemble NEPS; shells
    # the truth leaves undefined (no power) are still left out.
    from physok.metrics.neps import ensemble_neps, neps_from_powers, shell_powers

    g = torch.Generator().manual_seed(0)
    true = torch.randn(4, 3, 16, 16, generator=g)
    pred = true + 0.1 * torch.randn(true.shape, generator=g)
    err, tru = shell_powers(pred, true)
    finite = ensemble_neps(err.sum(0), tru.sum(0), (16, 16))
    assert torch.isfinite(finite).all()
    pred[2, 1, 5, 5] = float("nan")
    err, tru = shell_powers(pred, true)
    assert torch.isnan(neps_from_powers(err, tru, (16, 16))[2, 1]).all()
    assert torch.isnan(ensemble_neps(err.sum(0), tru.sum(0), (16, 16))).all()
    # a field whose truth is constant defines no shell: left out, not NaN
    true[:, 2] = 3.0
    pred = true + 0.1 * torch.randn(true.shape, generator=g)
    err, tru = shell_powers(pred, true)
    both = ensemble_neps(err.sum(0), tru.sum(0), (16, 16))
    first_two = ensemble_neps(err.sum(0)[:2], tru.sum(0)[:2], (16, 16))
    torch.testing.assert_close(both, first_two)
