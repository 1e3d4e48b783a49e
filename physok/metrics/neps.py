"""NEPS, the normalised error power spectrum (paper §3), and the_well's three-bin spectral NMSE.

Both start from the same radial binning of Fourier mode powers (`physok.ops.spectral_binning`,
which dispatches to the Triton / native fast paths): for every (sample, frame, field) the sums
of the error power |F(pred - true)|² and of the true power |F(true)|² over the modes of each
wavenumber bin. |k| is in radians per cell (k = 2π·fftfreq(N) per axis). The residual is formed
before its FFT, as the_well does: F(pred) - F(true) would carry each transform's round-off
(~1e-7·|F(true)| in float32), which swamps a small error (a persistence prediction's low-bin
NMSE came out ~1e-4 relative off in float32).

NEPS (the paper's definition, DESIGN.md §6): the power spectra are *averages* of the mode powers
within each bin, and NEPS(k) = P_err(k) / P_true(k). The bins are shells of one fundamental
wavenumber width, Δ = 2π / max(X, Y), centred on the integer multiples of Δ (shell n holds
(n - ½)Δ <= |k| < (n + ½)Δ, n = 1, 2, ...), out to the grid's corner mode π·√2. The mean
(k = 0) is left out: it is a single mode, and for fields that average to about zero (velocities,
RMS-normalised fluctuations) its true power is near zero, which makes its ratio meaningless.
The paper's three ranges (low / mid / high) lost their bounds in extraction; our choice is
the_well's three logarithmic bins, so both conventions split the spectrum at the same
wavenumbers: a shell belongs to the range that contains its centre nΔ, and a range's NEPS is
the mean of NEPS(k) over its shells. Shells with no modes, or whose true power is zero (where
NEPS is undefined), are left out of those means (NaN per shell).

the_well's convention (`the_well.benchmark.metrics.binned_spectral_mse`, its `nmse_per_bin`):
three bins with edges `the_well_bin_edges`, and per bin the ratio of *summed* error power to
summed true power with its epsilons (`the_well_nmse_per_bin`).

Aggregating NEPS over many samples (`shell_powers`, `neps_from_powers`): per-sample ratios
are heavy-tailed, since a sample whose truth holds almost no power in a shell (a smooth field,
a region before a shock forms) gives a ratio of 1e3-1e6 there. Measured on the fast
experiment's 32² Euler validation windows, the high-range mean over windows was ~1e6-1e7
while its median was ~10. physok's evaluation therefore averages the *spectra* over the
samples first (ensemble power spectra, `ensemble_neps`; physok sums them in units of each
window's context RMS per field, so a window weighs by its normalised power, not by its
physical magnitude) and takes the ratio per shell of those: still P_err(k) / P_true(k) per
field, then the range mean over shells and the mean over fields, as the paper aggregates.

Both are invariant to rescaling a sample's field (prediction and truth alike), like VRMSE, so
they can be computed in RMS-normalised units. NEPS is 0 for a perfect prediction and exactly 1
at every shell for a prediction of zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from physok.ops.spectral_binning import (
    bin_mode_counts,
    binned_spectral_power,
    the_well_bin_edges,
)

RANGES: tuple[str, ...] = ("low", "mid", "high")
WELL_EPS = 1e-7  # the_well's epsilon in mse_per_bin / (true_per_bin + eps)


def shell_edges(shape: tuple[int, int]) -> torch.Tensor:
    """Edges (float32, n_shells + 1) of unit-width wavenumber shells for an (X, Y) grid.

    Shell i (0-based) covers [(n - ½)Δ, (n + ½)Δ) with n = i + 1 and Δ = 2π / max(X, Y): the
    mean mode (k = 0) is in none. The last shell contains the corner mode |k| = π·√2.
    """
    x, y = (int(s) for s in shape)
    if x < 2 or y < 2:
        raise ValueError(f"NEPS needs a 2-D grid of at least 2x2 points, got {tuple(shape)}")
    delta = 2 * math.pi / max(x, y)
    corner = math.pi * math.sqrt(2.0)
    n_shells = math.floor(corner / delta + 0.5)
    edges = (torch.arange(1, n_shells + 2, dtype=torch.float64) - 0.5) * delta
    edges[-1] = max(float(edges[-1]), corner + 1e-6)
    return edges.float()


def shell_centres(shape: tuple[int, int]) -> torch.Tensor:
    """Wavenumber nΔ (radians per cell) at the centre of each shell of `shell_edges(shape)`."""
    n = shell_edges(shape).numel() - 1
    return torch.arange(1, n + 1, dtype=torch.float64) * (2 * math.pi / max(int(s) for s in shape))


def shell_ranges(shape: tuple[int, int]) -> torch.Tensor:
    """Range of each shell, int64 (n_shells,): 0 low, 1 mid, 2 high (the_well's three bins,
    by the shell's centre)."""
    well = the_well_bin_edges(tuple(shape)).double()
    centres = shell_centres(shape)
    idx = torch.bucketize(centres, well, right=True) - 1
    return idx.clamp(0, len(RANGES) - 1)


def _check(pred: torch.Tensor, true: torch.Tensor) -> None:
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != true shape {tuple(true.shape)}")
    if true.dim() < 2:
        raise ValueError(f"expected (..., X, Y) tensors, got shape {tuple(true.shape)}")


def _binned_powers(
    pred: torch.Tensor, true: torch.Tensor, edges: torch.Tensor, backend: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin sums of |F(pred - true)|² and |F(true)|², float32 (..., n_bins) each.

    The binning op forms |F(a) - F(b)|² and |F(b)|²; with b = 0 its first output is |F(a)|², so
    one call on the stacked residual and truth gives both powers with the residual's own
    precision (the zero spectrum is exact).
    """
    dtype = torch.promote_types(torch.promote_types(pred.dtype, true.dtype), torch.float32)
    true = true.to(dtype)
    both = torch.stack((pred.to(dtype) - true, true))
    powers, _ = binned_spectral_power(both, torch.zeros_like(both), edges, backend=backend)
    return powers[0], powers[1]


def shell_powers(
    pred: torch.Tensor, true: torch.Tensor, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-shell sums of the error power and of the true power, float32 (..., n_shells) each.

    Summed over samples (in units where every sample weighs alike, e.g. RMS-normalised), they
    are ensemble spectra: `neps_from_powers` of the sums is the NEPS of a whole set of samples.
    """
    _check(pred, true)
    return _binned_powers(pred, true, shell_edges(tuple(true.shape[-2:])), backend)


def _defined_shells(tru: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Shells where NEPS is defined, decided by the truth alone: modes exist and the true power
    is positive (NaN in a prediction must show as NaN, not as an undefined shell)."""
    counts = bin_mode_counts(tuple(shape), shell_edges(tuple(shape))).to(tru.device)
    return (counts > 0) & (tru > 0)


def neps_per_shell_from_powers(
    err: torch.Tensor, tru: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """NEPS(k) (..., n_shells) from per-shell power sums of an (X, Y) grid; NaN where a shell
    has no modes or no true power (and wherever the error power is NaN)."""
    defined = _defined_shells(tru, shape)
    ratio = err / torch.where(defined, tru, torch.ones_like(tru))
    return torch.where(defined, ratio, torch.full_like(ratio, math.nan))


def _range_means(
    values: torch.Tensor, defined: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """Mean of `values` (..., S) over each range's defined shells: (..., 3); NaN for a range
    without defined shells, and NaN propagates from the values."""
    ranges = shell_ranges(tuple(shape)).to(values.device)
    out = []
    for r in range(len(RANGES)):
        m = defined[..., ranges == r]
        v = torch.where(m, values[..., ranges == r], torch.zeros_like(values[..., ranges == r]))
        out.append(v.sum(-1) / m.sum(-1))  # 0 / 0 = NaN when the range has no defined shell
    return torch.stack(out, dim=-1)


def neps_from_powers(err: torch.Tensor, tru: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """NEPS per range (..., 3) from per-shell power sums (`shell_powers`) of an (X, Y) grid:
    the mean of NEPS(k) over each range's shells (shells the truth leaves undefined are left
    out; a NaN error power, e.g. from a diverged prediction, makes its range NaN)."""
    defined = _defined_shells(tru, shape)
    return _range_means(neps_per_shell_from_powers(err, tru, shape), defined, shape)


def ensemble_neps(err: torch.Tensor, tru: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """NEPS low/mid/high (..., 3) of a set of samples from its per-field shell power sums
    (..., C, S), summed over the samples: per field from the summed spectra, then the mean over
    the fields whose truth defines the range (NaN propagates from the error powers)."""
    per_field = neps_from_powers(err, tru, shape)  # (..., C, 3)
    defined = _defined_shells(tru, shape)
    ranges = shell_ranges(tuple(shape)).to(tru.device)
    has = torch.stack([defined[..., ranges == r].any(-1) for r in range(len(RANGES))], -1)
    v = torch.where(has, per_field, torch.zeros_like(per_field))
    return v.sum(-2) / has.sum(-2)


def neps_per_shell(
    pred: torch.Tensor, true: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """NEPS(k) per wavenumber shell, float32 (..., n_shells) for pred/true (..., X, Y).

    P_err(k) / P_true(k) with both powers averaged over the shell's modes (the mode counts
    cancel, so this is the ratio of the shell's power sums); NaN where the shell has no modes or
    no true power. `backend` chooses the binning implementation (see
    `physok.ops.spectral_binning.binned_spectral_power`).
    """
    err, tru = shell_powers(pred, true, backend)
    return neps_per_shell_from_powers(err, tru, tuple(true.shape[-2:]))


def neps_ranges(pred: torch.Tensor, true: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """NEPS per range, float32 (..., 3) for low / mid / high, of each sample: the mean of
    NEPS(k) over each range's shells (undefined shells left out; NaN if a range has none)."""
    err, tru = shell_powers(pred, true, backend)
    return neps_from_powers(err, tru, tuple(true.shape[-2:]))


def the_well_nmse_per_bin(
    pred: torch.Tensor,
    true: torch.Tensor,
    eps: float = WELL_EPS,
    backend: str | None = None,
) -> torch.Tensor:
    """the_well's `nmse_per_bin` of `binned_spectral_mse`, float32 (..., 3), for pred/true
    (..., X, Y) (channels-first; the_well takes channels last).

    Per default bin: (S_err·c/(c+1e-7)/N²) / (S_true·c/(c+1e-7)/N² + eps), with S the bin's
    power sums, c its mode count and N = X·Y (the_well's mean-then-multiply round trip).
    """
    _check(pred, true)
    shape = tuple(true.shape[-2:])
    edges = the_well_bin_edges(shape)
    err, tru = _binned_powers(pred, true, edges, backend)
    counts = bin_mode_counts(shape, edges).to(err.device, torch.float64)
    n2 = float(shape[0] * shape[1]) ** 2
    keep = counts / (counts + 1e-7)
    mse = err.double() * keep / n2
    tru_p = tru.double() * keep / n2
    return (mse / (tru_p + eps)).float()


@dataclass(frozen=True)
class SpectralErrors:
    """Per-(…, range) NEPS and the_well's three-bin NMSE of one batch, both (..., 3)."""

    neps: torch.Tensor
    well_nmse: torch.Tensor


def spectral_errors(
    pred: torch.Tensor, true: torch.Tensor, backend: str | None = None
) -> SpectralErrors:
    """Both spectral metrics of pred/true (..., X, Y) per leading index and range."""
    return SpectralErrors(
        neps=neps_ranges(pred, true, backend=backend),
        well_nmse=the_well_nmse_per_bin(pred, true, backend=backend),
    )
