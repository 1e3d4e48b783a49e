"""Gray-Scott reaction-diffusion (The Well's `gray_scott_reaction_diffusion`), periodic in 2D.

    dA/dt = dA lap(A) - A B^2 + F (1 - A)
    dB/dt = dB lap(B) + A B^2 - (F + k) B,        dA = 2e-5, dB = 1e-5

Scheme, as the real data (Chebfun `spin2`): Fourier pseudo-spectral in space with the reaction
terms evaluated on the grid; ETDRK4 in time with step 1 (the diffusion is integrated exactly, the
phi functions by Kassam-Trefethen contour integrals); snapshots every 10 time units.

Dealiasing: the real run zeroed the top third of the reaction spectrum (2/3 rule). At this cell
size that truncation under-resolves the reaction fronts: against a run with half the cell size,
the B field is off by 11-16 % (relative rms, t = 50-200) and B dips to -0.03. Keeping the full
spectrum gives 1.7 % and keeps A in [0, 1] and B >= 0 (the PDE's invariant ranges) to ~5e-4; its
aliasing error is small because diffusion keeps the spectrum decaying (0.2 % when the same
comparison is made at half the cell size). So no dealiasing is applied here.

Domain: the real data is [-1, 1]^2 at 128^2, i.e. a cell size of 1/64. Pattern fronts are only
a few such cells wide (diffusion lengths sqrt(dB / F) ~ 0.01-0.03), so a coarser grid over the
same square would not resolve them. A grid of N points per axis therefore spans 2 N / 128 per
axis, centred at 0: the real cell size, and the real physics on a smaller periodic patch. The
initial conditions are scaled to the patch the same way (Gaussian count by area, Fourier-series
mode count by side length).
"""

from __future__ import annotations

import math

import numpy as np

from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.generators.spectral import Etdrk4, dealias_mask, wavenumbers
from physok.data.well_format import BoundarySpec, WellTrajectories

DATASET_NAME = "gray_scott_reaction_diffusion"
DIFFUSIVITY_A = 2e-5
DIFFUSIVITY_B = 1e-5
CELL_SIZE = 2.0 / 128  # the real data's grid spacing
SNAPSHOT_INTERVAL = 10.0
TIME_STEP = 1.0  # the real data's ETDRK4 step
MIN_RESOLUTION = 16

# Real initial conditions (danfortunato/spectral-gray-scott), per a real [-1, 1]^2 domain.
GAUSSIAN_COUNT = (10, 100)  # number of Gaussians per field, uniform integer
GAUSSIAN_AMPLITUDE = (1.0, 3.0)
GAUSSIAN_SHARPNESS = (150.0, 300.0)  # s in exp(-s r^2), r in domain units
FOURIER_SAMPLES = 32  # random values per axis, trigonometrically interpolated
FOURIER_PEAK_TO_PEAK = 0.5  # 0.5 * (rand - 0.5) scaled by the allowed deviation


def _gaussian_cluster(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, area_fraction: float
) -> np.ndarray:
    """Sum of random Gaussians, periodised by its 3x3 images as in the real recipe."""
    lx, ly = x.size * CELL_SIZE, y.size * CELL_SIZE
    lo, hi = (max(1, round(c * area_fraction)) for c in GAUSSIAN_COUNT)
    m = int(rng.integers(lo, hi + 1))
    amp = rng.uniform(*GAUSSIAN_AMPLITUDE, size=m)
    sharp = rng.uniform(*GAUSSIAN_SHARPNESS, size=m)
    cx = x[0] - 0.5 * CELL_SIZE + lx * rng.random(m)
    cy = y[0] - 0.5 * CELL_SIZE + ly * rng.random(m)
    images = np.arange(-1, 2)[None, :, None]
    # exp(-s r^2) factorises in x and y, and so does the 3x3 image sum.
    dx = x[None, None, :] - cx[:, None, None] + lx * images
    dy = y[None, None, :] - cy[:, None, None] + ly * images
    gx = np.exp(-sharp[:, None, None] * dx**2).sum(axis=1)
    gy = np.exp(-sharp[:, None, None] * dy**2).sum(axis=1)
    return np.einsum("m,mx,my->xy", amp, gx, gy)


def _fourier_series(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Trigonometric interpolant of uniform random values on a coarse grid (the real recipe).

    The coarse grid has 32 samples per real side of 2, i.e. one sample every 4 fine cells.
    """
    coarse = tuple(max(2, round(FOURIER_SAMPLES * n * CELL_SIZE / 2.0)) for n in shape)
    spec = np.fft.rfft2(rng.random(coarse) - 0.5)
    nx, ny = coarse
    # Drop the coarse Nyquist modes (their interpolant is not unique) and zero-pad to `shape`.
    keep_x = np.abs(np.fft.fftfreq(nx, d=1.0 / nx)) < nx / 2
    keep_y = np.fft.rfftfreq(ny, d=1.0 / ny) < ny / 2
    fine = np.zeros((shape[0], shape[1] // 2 + 1), dtype=np.complex128)
    rows = np.fft.fftfreq(nx, d=1.0 / nx).astype(int)[keep_x] % shape[0]
    fine[rows[:, None], np.arange(ny // 2 + 1)[keep_y][None, :]] = spec[keep_x][:, keep_y]
    return np.fft.irfft2(fine, s=shape)


def _third_steady_state(f: float, k: float) -> tuple[float, float, float, float] | None:
    """Mean and allowed deviation of (A, B) about the non-trivial steady state, if it exists.

    Mirrors the real `init_fourier`: where the upper homogeneous state exists, the Fourier
    initial condition perturbs about it; otherwise about the trivial state (A, B) = (1, 0).
    """
    if k >= (math.sqrt(f) - 2.0 * f) / 2.0:
        return None
    ratio = math.sqrt(f) / (f + k)
    root = math.sqrt(ratio**2 - 4.0)
    mean_a = (ratio - root) / (2.0 * ratio)
    mean_b = math.sqrt(f) * (ratio + root) / 2.0
    return mean_a, mean_b, 0.9 * min(mean_a, 1.0 - mean_a), 0.9 * min(mean_b, 1.0 - mean_b)


def _normalise(field: np.ndarray) -> np.ndarray:
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo)


def _initial_state(
    rng: np.random.Generator, n: int, x: np.ndarray, y: np.ndarray, f: float, k: float
) -> np.ndarray:
    """(A, B) of shape (2, n, X, Y); the kind (Gaussians or Fourier series) is drawn per sample.

    Each field is low-passed to the lower 2/3 of the modes (this removes the kinks of the
    clipped Fourier kind) before being normalised, so it is smooth and exactly in range.
    """
    shape = (x.size, y.size)
    mask = dealias_mask(shape)
    area_fraction = x.size * y.size * CELL_SIZE**2 / 4.0
    steady = _third_steady_state(f, k)

    def smooth(field: np.ndarray) -> np.ndarray:
        return _normalise(np.fft.irfft2(mask * np.fft.rfft2(field), s=shape))

    state = np.empty((2, n, *shape))
    for b in range(n):
        if rng.random() < 0.5:
            state[0, b] = smooth(-_gaussian_cluster(rng, x, y, area_fraction))
            state[1, b] = smooth(_gaussian_cluster(rng, x, y, area_fraction))
            continue
        ra, rb = _fourier_series(rng, shape), _fourier_series(rng, shape)
        if steady is not None:
            mean_a, mean_b, dev_a, dev_b = steady
            state[0, b] = mean_a + FOURIER_PEAK_TO_PEAK * dev_a * (smooth(ra) - 0.5)
            state[1, b] = mean_b + FOURIER_PEAK_TO_PEAK * dev_b * (smooth(rb) - 0.5)
        else:
            # The real recipe is symmetric about (1, 0), which puts A above 1 and B below 0
            # on half the domain. Clipping it to the physical range keeps its localised B seeds
            # (an everywhere-positive shift would instead start a homogeneous reaction that
            # consumes A and dies out); `smooth` then removes the clipping kinks.
            half = FOURIER_PEAK_TO_PEAK / 2.0
            state[0, b] = 1.0 - half * smooth(np.maximum(-ra, 0.0))
            state[1, b] = half * smooth(np.maximum(rb, 0.0))
    return state


def simulate_gray_scott(req: SimulationRequest) -> WellTrajectories:
    """Simulate `req.n_trajectories` Gray-Scott patterns; snapshots every 10 time units.

    Parameters missing from `req.parameters` take the values of the first parameter set.
    """
    params = req.checked_parameters(
        DATASET_NAME, PARAMETER_SETS[0], (MIN_RESOLUTION, MIN_RESOLUTION)
    )
    f, k = params["F"], params["k"]
    if not (f >= 0.0 and k >= 0.0):
        raise ValueError(f"{DATASET_NAME}: F and k must be >= 0, got {params}")
    nx, ny = (int(r) for r in req.resolution)
    steps_per_snapshot = round(SNAPSHOT_INTERVAL / TIME_STEP)

    shape = (nx, ny)
    x = (np.arange(nx) + 0.5 - nx / 2) * CELL_SIZE
    y = (np.arange(ny) + 0.5 - ny / 2) * CELL_SIZE
    kx, ky = wavenumbers(shape, (nx * CELL_SIZE, ny * CELL_SIZE))
    k2 = kx**2 + ky**2
    lin = np.stack([-DIFFUSIVITY_A * k2, -DIFFUSIVITY_B * k2])[:, None]
    stepper = Etdrk4(lin, SNAPSHOT_INTERVAL / steps_per_snapshot)

    def reaction(spec: np.ndarray) -> np.ndarray:
        a, b = np.fft.irfft2(spec, s=shape)
        ab2 = a * b * b
        return np.fft.rfft2(np.stack([-ab2 + f * (1.0 - a), ab2 - (f + k) * b]))

    rng = np.random.default_rng(req.seed)
    fields = _initial_state(rng, req.n_trajectories, x, y, f, k)
    spec = np.fft.rfft2(fields)
    out = np.empty((2, req.n_trajectories, req.n_steps, nx, ny))
    for i in range(req.n_steps):
        if i > 0:
            for _ in range(steps_per_snapshot):
                spec = stepper.step(spec, reaction)
            fields = np.fft.irfft2(spec, s=shape)
            if not np.isfinite(fields).all():
                t_now = i * SNAPSHOT_INTERVAL
                raise RuntimeError(f"{DATASET_NAME}: solution became non-finite at t = {t_now:g}")
        out[:, :, i] = fields
        req.report(1)

    return WellTrajectories(
        dataset_name=DATASET_NAME,
        time=np.arange(req.n_steps) * SNAPSHOT_INTERVAL,
        coords={"x": x, "y": y},
        t0_fields={"A": out[0], "B": out[1]},
        parameters={"F": f, "k": k},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
    )


PATTERNS: dict[str, dict[str, float]] = {
    "gliders": {"F": 0.014, "k": 0.054},
    "bubbles": {"F": 0.098, "k": 0.057},
    "maze": {"F": 0.029, "k": 0.057},
    "worms": {"F": 0.058, "k": 0.065},
    "spirals": {"F": 0.018, "k": 0.051},
    "spots": {"F": 0.03, "k": 0.062},
}
# Fastest and most robust pattern formers first (the default embedded data uses the first few).
# Measured at 64^2 over t in [0, 390], 8 samples each: maze, spots and spirals develop
# persistent patterns by t ~ 100 and keep evolving; bubbles and worms settle into nearly
# static ones; gliders often die out on so small a patch.
PATTERN_ORDER = ("maze", "spots", "spirals", "bubbles", "worms", "gliders")
PARAMETER_SETS: tuple[dict[str, float], ...] = tuple(PATTERNS[p] for p in PATTERN_ORDER)

GENERATORS: tuple[DatasetGenerator, ...] = (
    DatasetGenerator(
        name=DATASET_NAME,
        simulate=simulate_gray_scott,
        parameter_sets=PARAMETER_SETS,
        default_steps=1001,
        description=(
            "Gray-Scott reaction-diffusion patterns (Fourier pseudo-spectral, ETDRK4 with "
            "step 1) at the real data's cell size"
        ),
    ),
)
