"""Radial binning of spectral powers (the core of NEPS), reference and dispatch.

`binned_spectral_power(pred, true, edges)` takes real fields (..., X, Y), computes the rfft2 of
both, and sums per wavenumber bin b the error power |P - T|² and the true power |T|² over the
modes with edges[b] <= |k| < edges[b + 1]. The fast path (`physok_kernels.spectral_binning`)
keeps the FFT in torch (cuFFT) and does the whole binning in one Triton kernel. The "native"
backend (`binned_spectral_power_native`) does the binning in the C++/CUDA op
`torch.ops.physok_native.binned_spectral_power` (csrc/, built on first use by
`physok.ops.native_build`; if it cannot be built the dispatch warns once and uses the reference).

Conventions (chosen to reproduce `the_well.benchmark.metrics.spectral.binned_spectral_mse`):
- |k| is in radians per cell: k_x = 2π·fftfreq(X), k_y = 2π·fftfreq(Y) (rfftfreq on the half
  spectrum), |k| = sqrt(k_x² + k_y²), computed with the_well's float32 operations, every one
  IEEE-rounded (`wavenumber_magnitude`; the Triton kernel repeats them bit for bit), so a mode
  that sits exactly on an edge lands in a well-defined bin. This should equal the_well's |k| on
  CUDA, whose float32 sqrt is IEEE-rounded by default (not checked on a GPU yet).
  On the CPU, torch's vectorised float32 sqrt (AVX2) is not correctly rounded (1 ulp off for
  ~17% of modes), so the_well run on the CPU could bin a mode differently when it lies within
  an ulp of an edge; with the_well's default edges this happens on none of the paper's grids
  (tested).
- Bins are half-open, edges[b] <= |k| < edges[b + 1] (the_well: `bucketize(right=True) - 1`).
  Modes below edges[0] or at/above edges[-1] are dropped (the_well discards its last, open-ended
  bin). Edges are compared in float32. Use edges [0, inf) to cover every mode.
- The sums are full-spectrum (fft2) sums of unnormalised FFT powers: interior rfft columns
  (not column 0 and, for even Y, not the Nyquist column Y/2) count twice, because the dropped
  half of the spectrum mirrors them. Hence by Parseval, with edges [0, inf),
  sum_b err[..., b] = N·sum((pred - true)²), N = X·Y.
- the_well's per-bin values follow from the sums S_err, S_true and the full-spectrum mode counts
  c = `bin_mode_counts(shape, edges)`:
      mse_per_bin  = S_err  · c / (c + 1e-7) / N²
      true_per_bin = S_true · c / (c + 1e-7) / N²
      nmse_per_bin = mse_per_bin / (true_per_bin + 1e-7)
  (the c / (c + 1e-7) factor is the_well's mean-then-multiply round trip; it is 0 for an empty
  bin). The_well's default edges are `the_well_bin_edges(shape)`.
- Averages within bins (DESIGN.md §6 NEPS) are S / c.

The FFT runs in float32 (float64 for float64 inputs; bfloat16/float16 are upcast, cuFFT has no
bf16 transform); the outputs are float32 (..., n_bins). The Triton and native paths are forward
only: they detach their inputs (a metric needs no gradient), so their outputs never require grad.
The reference is differentiable.
"""

from __future__ import annotations

import numpy as np
import torch

from physok.ops.backend import use_native, use_triton


def _fft_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _axis_wavenumbers(n: int, half: bool) -> torch.Tensor:
    # Same ops as the_well (2π * fftfreq in float32): bit-identical values matter at bin edges.
    freq = torch.fft.rfftfreq(n) if half else torch.fft.fftfreq(n)
    return 2 * np.pi * freq


def _magnitude(shape: tuple[int, int], half: bool) -> torch.Tensor:
    x, y = (int(s) for s in shape)
    kx = _axis_wavenumbers(x, half=False).reshape(x, 1)
    ky = _axis_wavenumbers(y, half=half).reshape(1, -1)
    # the_well accumulates 0 + kx² + ky² (rounds as a + b) and takes the sqrt. The sqrt goes
    # through float64: sqrt of a float32 computed in double and rounded once is correctly
    # rounded, which torch's vectorised CPU float32 sqrt is not (CUDA's sqrtf and Triton's
    # sqrt_rn are).
    return (kx**2 + ky**2).double().sqrt().float()


def wavenumber_magnitude(
    shape: tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """|k| (X, Y // 2 + 1), radians per cell, of the rfft2 half-spectrum of an (X, Y) grid.

    Computed on the CPU in float32 (bit-identical on every device) and then moved to `device`.
    """
    _check_shape(shape)
    return _magnitude(shape, half=True).to(device)


def the_well_bin_edges(shape: tuple[int, ...]) -> torch.Tensor:
    """the_well's default three bins for a spatial `shape`: float32 (4,) edges, first edge 0.

    logspace(log10(2π / max(shape)), log10(π·sqrt(D) + 1e-6), 4) with D = len(shape), exactly as
    `binned_spectral_mse` builds it (the +1e-6 keeps the corner mode |k| = π·sqrt(D) inside the
    last bin), computed on the CPU.
    """
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"shape must be a spatial shape like (X, Y), got {tuple(shape)}")
    edges = torch.logspace(
        np.log10(2 * np.pi / max(shape)), np.log10(np.pi * np.sqrt(len(shape)) + 1e-6), 4
    )
    edges[0] = 0.0
    return edges


def check_edges(edges: torch.Tensor) -> torch.Tensor:
    """Validate bin edges; return them as a contiguous float32 tensor."""
    if not isinstance(edges, torch.Tensor) or edges.dim() != 1 or edges.numel() < 2:
        shape = tuple(edges.shape) if isinstance(edges, torch.Tensor) else type(edges).__name__
        raise ValueError(f"edges must be a 1-D tensor of at least 2 bin edges, got {shape}")
    e = edges.detach().to(torch.float32).contiguous()
    if torch.isnan(e).any() or (e[1:] < e[:-1]).any():
        raise ValueError(f"edges must be non-decreasing and not NaN, got {e.tolist()}")
    return e


def _check_shape(shape: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be a 2-D grid (X, Y), got {tuple(shape)}")


def bin_index(k: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin of each |k| (edges[b] <= k < edges[b+1]); -1 below edges[0], n_bins at/above the last.

    `edges` must already be float32 (see `check_edges`).
    """
    return torch.bucketize(k, edges.to(k.device), right=True) - 1


def bin_mode_counts(shape: tuple[int, int], edges: torch.Tensor) -> torch.Tensor:
    """Full-spectrum (fft2) number of modes per bin, int64 (n_bins,), on the CPU."""
    _check_shape(shape)
    e = check_edges(edges).cpu()
    idx = bin_index(_magnitude(shape, half=False).flatten(), e)
    n_bins = e.numel() - 1
    idx = idx[(idx >= 0) & (idx < n_bins)]
    return torch.bincount(idx, minlength=n_bins)


def column_weights(y: int) -> torch.Tensor:
    """Weight of each rfft column (Y // 2 + 1,): 1 for column 0 and the Nyquist column, else 2."""
    w = torch.full((y // 2 + 1,), 2.0)
    w[0] = 1.0
    if y % 2 == 0:
        w[-1] = 1.0
    return w


def _check_pair(pred: torch.Tensor, true: torch.Tensor) -> None:
    if pred.shape != true.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and true {tuple(true.shape)} differ in shape")
    if pred.dim() < 2:
        raise ValueError(f"pred/true must be (..., X, Y), got {tuple(pred.shape)}")
    if pred.is_complex() or true.is_complex() or not pred.is_floating_point():
        raise ValueError(f"pred/true must be real floating tensors, got {pred.dtype}")
    if pred.device != true.device:
        raise ValueError(f"pred is on {pred.device} but true on {true.device}")


def binned_spectral_power_reference(
    pred: torch.Tensor, true: torch.Tensor, edges: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: torch.fft.rfft2 + explicit per-bin masked sums. See the module docstring."""
    _check_pair(pred, true)
    e = check_edges(edges)
    ft = _fft_dtype(torch.promote_types(pred.dtype, true.dtype))
    p_ft = torch.fft.rfft2(pred.to(ft))
    t_ft = torch.fft.rfft2(true.to(ft))
    err = torch.view_as_real(p_ft - t_ft).square().sum(-1)  # (..., X, Yh)
    tru = torch.view_as_real(t_ft).square().sum(-1)
    x, y = pred.shape[-2:]
    idx = bin_index(wavenumber_magnitude((x, y), pred.device), e)
    weight = column_weights(y).to(device=pred.device, dtype=err.dtype)
    err_bins, true_bins = [], []
    for b in range(e.numel() - 1):
        w = torch.where(idx == b, weight, torch.zeros_like(weight))
        err_bins.append((err * w).sum(dim=(-2, -1)))
        true_bins.append((tru * w).sum(dim=(-2, -1)))
    return torch.stack(err_bins, -1).float(), torch.stack(true_bins, -1).float()


def binned_spectral_power(
    pred: torch.Tensor, true: torch.Tensor, edges: torch.Tensor, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin error power sum |P - T|² and true power sum |T|², each float32 (..., n_bins).

    pred/true: real (..., X, Y) (leading dims e.g. B, T, C); edges: 1-D, non-decreasing, n_bins
    + 1 entries (|k| in radians per cell). Conventions in the module docstring. backend: "auto"
    (Triton on CUDA, else the reference), "triton", "reference" or "native" (None: the
    $PHYSOK_KERNELS rule of `physok.ops.backend`). The Triton and native paths detach their
    inputs (forward only); the reference is differentiable.
    """
    _check_pair(pred, true)
    if use_native(backend, "binned_spectral_power"):
        from physok.ops import native_build

        if native_build.native_available(pred):
            return binned_spectral_power_native(pred, true, edges)
        # Unavailable (no compiler, failed build, no CUDA build): the default rule instead, so
        # a GPU without nvcc still gets the Triton kernel rather than the slow reference.
        native_build.warn_fallback("binned_spectral_power", pred)
        backend = "auto"
    if use_triton(pred, backend, "binned_spectral_power"):
        from physok_kernels.spectral_binning import binned_spectral_power as fast

        return fast(pred, true, edges)
    return binned_spectral_power_reference(pred, true, edges)


_native_fake_registered = False


def _native_fake(
    p_ft: torch.Tensor, t_ft: torch.Tensor, edges: torch.Tensor, y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (p_ft.shape[0], edges.shape[0] - 1)
    return p_ft.new_empty(shape, dtype=torch.float32), p_ft.new_empty(shape, dtype=torch.float32)


def _native_op() -> object:
    """The loaded native op, with a shapes-only fake registered once (for torch.compile)."""
    global _native_fake_registered
    if not _native_fake_registered:
        torch.library.register_fake("physok_native::binned_spectral_power", _native_fake)
        _native_fake_registered = True
    return torch.ops.physok_native.binned_spectral_power


def binned_spectral_power_native(
    pred: torch.Tensor, true: torch.Tensor, edges: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`binned_spectral_power` through the native op (forward only, detached).

    torch computes the two rfft2 (cuFFT on GPU), the op bins their view_as_real views (no copy).
    Raises RuntimeError when the native library is unavailable (the dispatch checks first);
    `physok.ops.native_build.native_unavailable_reason()` says why.
    """
    from physok.ops import native_build

    _check_pair(pred, true)
    if not native_build.native_available(pred):
        reason = native_build.native_unavailable_reason(pred)
        raise RuntimeError(f"binned_spectral_power: native backend unavailable: {reason}")
    e = check_edges(edges).to(pred.device)
    lead, (x, y) = pred.shape[:-2], pred.shape[-2:]
    ft = _fft_dtype(torch.promote_types(pred.dtype, true.dtype))
    p_ft = torch.fft.rfft2(pred.detach().reshape(-1, x, y).to(ft))
    t_ft = torch.fft.rfft2(true.detach().reshape(-1, x, y).to(ft))
    err, tru = _native_op()(torch.view_as_real(p_ft), torch.view_as_real(t_ft), e, int(y))
    n_bins = e.numel() - 1
    return err.reshape(*lead, n_bins), tru.reshape(*lead, n_bins)
