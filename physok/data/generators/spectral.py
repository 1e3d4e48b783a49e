"""Fourier pseudo-spectral building blocks for doubly periodic 2D solvers.

Fields are real arrays `(..., X, Y)`; their spectra use `numpy.fft.rfft2` over the last two axes,
so the half-spectrum axis is y. Shared by the shear-flow and Gray-Scott generators.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def wavenumbers(shape: tuple[int, int], lengths: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Angular wavenumbers `(kx, ky)` of an rfft2 spectrum, broadcastable to `(X, Y//2+1)`.

    The Nyquist mode of an even axis gets its (ambiguous-sign) wavenumber as numpy lists it;
    first derivatives are only taken of dealiased spectra, where that mode is zero.
    """
    nx, ny = shape
    kx = 2.0 * np.pi * np.fft.fftfreq(nx, d=lengths[0] / nx)
    ky = 2.0 * np.pi * np.fft.rfftfreq(ny, d=lengths[1] / ny)
    return kx[:, None], ky[None, :]


def dealias_mask(shape: tuple[int, int]) -> np.ndarray:
    """Orszag's 2/3 rule on an rfft2 spectrum: keep mode numbers |n| <= N/3 on both axes.

    A quadratic product of two truncated fields then aliases only onto modes that are cut again,
    so pseudo-spectral products are exact on the retained modes.
    """
    nx, ny = shape
    keep_x = np.abs(np.fft.fftfreq(nx, d=1.0 / nx)) <= nx // 3
    keep_y = np.fft.rfftfreq(ny, d=1.0 / ny) <= ny // 3
    return keep_x[:, None] & keep_y[None, :]


class Etdrk4:
    """ETDRK4 (Cox & Matthews 2002) for `dv/dt = L v + N(v)` with diagonal spectral `L`.

    The phi-function coefficients are evaluated by the contour integral of Kassam & Trefethen
    (2005): a mean over `n_contour` points on a unit circle around each `L dt`, which avoids the
    cancellation error of the closed forms when `|L dt|` is small. `L = 0` (mean modes) is exact.
    """

    def __init__(self, lin: np.ndarray, dt: float, n_contour: int = 32) -> None:
        lin_dt = np.asarray(lin, dtype=np.float64) * dt
        roots = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
        z = lin_dt[..., None] + roots
        ez = np.exp(z)
        z3 = z**3
        self.e = np.exp(lin_dt)
        self.e2 = np.exp(lin_dt / 2.0)
        self.q = dt * np.real(np.mean((np.exp(z / 2.0) - 1.0) / z, axis=-1))
        self.f1 = dt * np.real(np.mean((-4.0 - z + ez * (4.0 - 3.0 * z + z**2)) / z3, axis=-1))
        self.f2 = dt * np.real(np.mean((2.0 + z + ez * (z - 2.0)) / z3, axis=-1))
        self.f3 = dt * np.real(np.mean((-4.0 - 3.0 * z - z**2 + ez * (4.0 - z)) / z3, axis=-1))

    def step(self, v: np.ndarray, nonlinear: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Advance the spectrum `v` by one step `dt`; `nonlinear` maps a spectrum to N(v)."""
        nv = nonlinear(v)
        a = self.e2 * v + self.q * nv
        na = nonlinear(a)
        b = self.e2 * v + self.q * na
        nb = nonlinear(b)
        c = self.e2 * a + self.q * (2.0 * nb - nv)
        nc = nonlinear(c)
        return self.e * v + self.f1 * nv + 2.0 * self.f2 * (na + nb) + self.f3 * nc
