"""Periodic shear flow (The Well's `shear_flow`): 2D incompressible Navier-Stokes plus a tracer.

Equations (non-dimensionalised by the velocity jump across a layer and the domain width Lx = 1):

    du/dt + u.grad(u) = -grad(p) + nu lap(u),   div(u) = 0,   nu = 1/Re
    ds/dt + u.grad(s) = D lap(s),                                D = nu/Sc

on x in [0, 1), y in [-1, 1), periodic in both directions, as in the real dataset.

Scheme: Fourier pseudo-spectral vorticity-streamfunction form. The state is the vorticity
w = dv/dx - du/dy and the tracer s; velocity is rebuilt from the streamfunction (lap psi = -w,
u = U + dpsi/dy, v = V - dpsi/dx, with the conserved mean flow (U, V) carried separately), so it
is divergence-free to round-off. Nonlinear terms are evaluated in flux form div(u w), div(u s)
with the 2/3 dealiasing rule, which makes the tracer mean an exact invariant. Time stepping is
ETDRK4 (viscous and diffusive terms integrated exactly) with a CFL-limited step chosen per
snapshot interval so that steps land exactly on every snapshot. Pressure (kinematic, i.e. divided
by density) solves lap(p) = -d_i d_j (u_i u_j) with zero mean, the real data's gauge.

Reynolds numbers and filter: the real data uses Re in {1e4, 5e4, 1e5, 5e5} at 256x512. A
64x64 grid resolves Re <~ 1e3 (a 128x128 run then agrees to ~1 %), but there a shear layer of
resolvable thickness (>= 3 cells, ~0.1) thickens by viscosity faster than the Kelvin-Helmholtz
instability rolls it up, so the flow merely decays. The embedded sets therefore keep the real
data's two lowest Reynolds numbers, 1e4 and 5e4, and add the standard exponential filter
exp(-36 (n/n_c)^36) per axis (Hou & Li 2007; n_c the 2/3-rule cutoff), applied as a damping rate
equivalent to one application per snapshot interval so that it does not depend on the step. It
removes the enstrophy that reaches the cutoff while leaving the large scales alone: at t = 4 the
velocity is within ~1 % (u) and ~10 % (v) of a 128x128 run with the same filter, and the roll-up
amplitude matches. This is a filtered (implicit large-eddy) solution, not a DNS. Sc in {0.1, 1}:
a tracer ten times more diffusive than momentum (within ~2 % of the 128x128 run at t = 4) and one
as diffusive as momentum, whose filaments reach the filter scale (~8-14 % there).
"""

from __future__ import annotations

import math

import numpy as np

from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.generators.spectral import Etdrk4, dealias_mask, wavenumbers
from physok.data.well_format import BoundarySpec, WellTrajectories

DATASET_NAME = "shear_flow"
LENGTHS = (1.0, 2.0)  # (Lx, Ly); y starts at -1
Y_MIN = -1.0
SNAPSHOT_INTERVAL = 0.1  # the real data: 200 snapshots over t in [0, 20]
COURANT = 1.0  # dt * max(|u|/dx + |v|/dy); ETDRK4 with 2/3-rule advection is stable to ~1.35
MIN_RESOLUTION = 16

# Initial-condition choices of the real data (init_standard_shear). n_blobs is restricted to the
# even values of the real set {2, 3, 4, 5}: sin(n pi x) is periodic on [0, 1) only for even n.
N_SHEAR_CHOICES = (2, 4)
N_BLOBS_CHOICES = (2, 4)
WIDTH_CHOICES = (0.25, 0.5, 1.0, 2.0, 4.0)
PERTURBATION_AMPLITUDE = 0.1  # peak u_y of the sinusoidal seed, as in the real data
NOISE_AMPLITUDE = 1e-3  # rms of the extra smooth random velocity, per component
NOISE_MAX_MODE = 4  # the noise lives on Fourier mode numbers |n| <= 4 per axis
# The real layer thickness is 0.2 w / n_shear; its thinnest (w = 0.25, n_shear = 4) spans 3.2
# grid spacings of the real 512-point y grid. Thinner layers are floored at that many spacings
# here, so a coarse grid still resolves every layer instead of producing Gibbs ringing.
MIN_LAYER_CELLS = 3.2
FILTER_ORDER = 36
FILTER_RATE = 36.0 / SNAPSHOT_INTERVAL  # exp(-36) ~ 2e-16 at the cutoff per snapshot interval
N_IMAGES = 2  # periodic images summed on each side when building the y-profiles


def _periodic_profiles(
    y: np.ndarray, n_shear: int, thickness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shear profile, per-layer Gaussian envelopes and layer signs on the periodic y grid.

    The profile is 1/2 + sum_i sign_i/2 tanh((y - y_i)/thickness) with alternating signs, as in
    the real data; summing the periodic images of every layer makes it smooth across y = +-1
    even for wide layers (the signs sum to zero, so the image tails cancel).
    """
    ly = LENGTHS[1]
    centres = np.linspace(-1.0, 1.0, n_shear, endpoint=False) + 1.0 / n_shear
    signs = np.where(np.arange(n_shear) % 2 == 1, 1.0, -1.0)
    shifts = ly * np.arange(-N_IMAGES, N_IMAGES + 1)
    dist = (y[None, None, :] - centres[:, None, None] + shifts[None, :, None]) / thickness
    profile = 0.5 + 0.5 * np.einsum("i,imy->y", signs, np.tanh(dist))
    envelopes = np.exp(-(dist**2)).sum(axis=1)  # (n_shear, Y)
    return profile, envelopes, signs


def _smooth_noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A random Fourier series on mode numbers |n| <= 4 per axis, unit rms, shape (X, Y).

    Evaluated at the coordinates (not by grid index), so it is the same continuous field at
    every resolution.
    """
    modes = np.arange(-NOISE_MAX_MODE, NOISE_MAX_MODE + 1)
    nx, ny = np.meshgrid(modes, modes[NOISE_MAX_MODE:], indexing="ij")
    half = (ny > 0) | (nx > 0)  # one of each +-n pair, without the mean
    nx, ny = nx[half], ny[half]
    coef = rng.standard_normal(nx.size) + 1j * rng.standard_normal(nx.size)
    ex = np.exp(2j * np.pi * nx[:, None] * x[None, :] / LENGTHS[0])
    ey = np.exp(2j * np.pi * ny[:, None] * y[None, :] / LENGTHS[1])
    field = np.einsum("m,mx,my->xy", coef, ex, ey).real
    return field / np.sqrt(np.mean(field**2))


def _initial_state(
    rng: np.random.Generator, n: int, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity (B, 2, X, Y) and tracer (B, X, Y) before projection, per the real recipe."""
    shape = (x.size, y.size)
    dy = LENGTHS[1] / y.size
    velocity = np.zeros((n, 2, *shape))
    tracer = np.zeros((n, *shape))
    for b in range(n):
        n_shear = int(rng.choice(N_SHEAR_CHOICES))
        n_blobs = int(rng.choice(N_BLOBS_CHOICES))
        width = float(rng.choice(WIDTH_CHOICES))
        thickness = max(0.2 * width / n_shear, MIN_LAYER_CELLS * dy)
        profile, envelopes, signs = _periodic_profiles(y, n_shear, thickness)
        seeds = np.sin(signs[:, None] * n_blobs * np.pi * x[None, :] / LENGTHS[0])
        velocity[b, 0] = profile[None, :]
        velocity[b, 1] = PERTURBATION_AMPLITUDE * np.einsum("ix,iy->xy", seeds, envelopes)
        velocity[b] += NOISE_AMPLITUDE * np.stack([_smooth_noise(rng, x, y) for _ in range(2)])
        tracer[b] = profile[None, :]  # the tracer marks the unperturbed shear profile
    return velocity, tracer


class _Spectral:
    """Wavenumbers, dealiasing and field reconstruction on one grid."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.kx, self.ky = wavenumbers(shape, LENGTHS)
        self.k2 = self.kx**2 + self.ky**2
        self.inv_k2 = np.divide(1.0, self.k2, out=np.zeros_like(self.k2), where=self.k2 > 0.0)
        self.mask = dealias_mask(shape)
        self.n_points = shape[0] * shape[1]
        # Exponential filter as a damping rate: mode number over the 2/3-rule cutoff, per axis.
        n_x = np.abs(np.fft.fftfreq(shape[0], d=1.0 / shape[0]))[:, None] / (shape[0] // 3)
        n_y = np.fft.rfftfreq(shape[1], d=1.0 / shape[1])[None, :] / (shape[1] // 3)
        self.filter_rate = FILTER_RATE * (n_x**FILTER_ORDER + n_y**FILTER_ORDER)

    def velocity_hat(self, w_hat: np.ndarray, mean_flow: np.ndarray) -> np.ndarray:
        """(u_hat, v_hat) stacked on axis 0 from vorticity and mean flow (B, 2)."""
        psi_hat = w_hat * self.inv_k2
        u_hat = 1j * self.ky * psi_hat
        v_hat = -1j * self.kx * psi_hat
        u_hat[:, 0, 0] = mean_flow[:, 0] * self.n_points
        v_hat[:, 0, 0] = mean_flow[:, 1] * self.n_points
        return np.stack([u_hat, v_hat])

    def nonlinear(self, state: np.ndarray, mean_flow: np.ndarray) -> np.ndarray:
        """-div(u w), -div(u s) for the state (w_hat, s_hat), dealiased."""
        vel_hat = self.velocity_hat(state[0], mean_flow)
        u, v, w, s = np.fft.irfft2(np.concatenate([vel_hat, state]), s=self.shape)
        flux = np.fft.rfft2(np.stack([u * w, v * w, u * s, v * s]))
        div_w = 1j * (self.kx * flux[0] + self.ky * flux[1])
        div_s = 1j * (self.kx * flux[2] + self.ky * flux[3])
        return -(self.mask * np.stack([div_w, div_s]))

    def pressure(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Zero-mean p solving lap(p) = -d_i d_j(u_i u_j), i.e. -k_i k_j (u_i u_j)_hat / |k|^2."""
        uu, uv, vv = np.fft.rfft2(np.stack([u * u, u * v, v * v]))
        rhs = self.kx**2 * uu + 2.0 * self.kx * self.ky * uv + self.ky**2 * vv
        return np.fft.irfft2(-(self.mask * self.inv_k2) * rhs, s=self.shape)


def simulate_shear_flow(req: SimulationRequest) -> WellTrajectories:
    """Simulate `req.n_trajectories` periodic shear flows; snapshots every 0.1 time units.

    Parameters missing from `req.parameters` take the values of the first parameter set.
    """
    params = req.checked_parameters(
        DATASET_NAME, PARAMETER_SETS[0], (MIN_RESOLUTION, MIN_RESOLUTION)
    )
    reynolds, schmidt = params["Reynolds"], params["Schmidt"]
    if not (reynolds > 0.0 and schmidt > 0.0):
        raise ValueError(f"{DATASET_NAME}: Reynolds and Schmidt must be > 0, got {params}")
    nx, ny = (int(r) for r in req.resolution)
    nu = 1.0 / reynolds
    diffusivity = nu / schmidt

    shape = (nx, ny)
    dx, dy = LENGTHS[0] / nx, LENGTHS[1] / ny
    x = (np.arange(nx) + 0.5) * dx
    y = Y_MIN + (np.arange(ny) + 0.5) * dy
    sp = _Spectral(shape)
    rng = np.random.default_rng(req.seed)
    velocity0, tracer0 = _initial_state(rng, req.n_trajectories, x, y)

    # Keep only the dealiased modes; the vorticity of any velocity is the curl of its
    # divergence-free part, so taking the curl is the projection.
    vel_hat = np.fft.rfft2(velocity0)
    mean_flow = vel_hat[:, :, 0, 0].real / sp.n_points
    w_hat = sp.mask * 1j * (sp.kx * vel_hat[:, 1] - sp.ky * vel_hat[:, 0])
    state = np.stack([w_hat, sp.mask * np.fft.rfft2(tracer0)])
    lin = -np.stack([nu * sp.k2, diffusivity * sp.k2])[:, None] - sp.filter_rate

    b, t = req.n_trajectories, req.n_steps
    tracer = np.empty((b, t, nx, ny))
    pressure = np.empty((b, t, nx, ny))
    velocity = np.empty((b, t, nx, ny, 2))
    steppers: dict[int, Etdrk4] = {}

    def nonlinear(spec: np.ndarray) -> np.ndarray:
        return sp.nonlinear(spec, mean_flow)

    def store(i: int) -> float:
        """Write snapshot i from `state`; return the CFL rate max(|u|/dx + |v|/dy)."""
        u, v = np.fft.irfft2(sp.velocity_hat(state[0], mean_flow), s=shape)
        s = np.fft.irfft2(state[1], s=shape)
        if not (np.isfinite(u).all() and np.isfinite(v).all() and np.isfinite(s).all()):
            t_now = i * SNAPSHOT_INTERVAL
            raise RuntimeError(f"shear_flow: solution became non-finite at t = {t_now:.1f}")
        tracer[:, i] = s
        pressure[:, i] = sp.pressure(u, v)
        velocity[:, i, ..., 0] = u
        velocity[:, i, ..., 1] = v
        req.report(1)
        return float(np.max(np.abs(u) / dx + np.abs(v) / dy))

    cfl_rate = store(0)
    for i in range(1, t):
        # Equal substeps per interval, so every snapshot is hit exactly; ETDRK4 coefficients
        # are cached per step size.
        n_sub = max(1, math.ceil(SNAPSHOT_INTERVAL * cfl_rate / COURANT))
        if n_sub not in steppers:
            steppers[n_sub] = Etdrk4(lin, SNAPSHOT_INTERVAL / n_sub)
        for _ in range(n_sub):
            state = steppers[n_sub].step(state, nonlinear)
        cfl_rate = store(i)

    return WellTrajectories(
        dataset_name=DATASET_NAME,
        time=np.arange(t) * SNAPSHOT_INTERVAL,
        coords={"x": x, "y": y},
        t0_fields={"tracer": tracer, "pressure": pressure},
        t1_fields={"velocity": velocity},
        parameters={"Reynolds": reynolds, "Schmidt": schmidt},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
    )


PARAMETER_SETS: tuple[dict[str, float], ...] = (
    {"Reynolds": 1e4, "Schmidt": 0.1},
    {"Reynolds": 5e4, "Schmidt": 1.0},
    {"Reynolds": 1e4, "Schmidt": 1.0},
    {"Reynolds": 5e4, "Schmidt": 0.1},
)

GENERATORS: tuple[DatasetGenerator, ...] = (
    DatasetGenerator(
        name=DATASET_NAME,
        simulate=simulate_shear_flow,
        parameter_sets=PARAMETER_SETS,
        default_steps=200,
        description=(
            "2D periodic incompressible Navier-Stokes shear layers with a passive tracer "
            "(pseudo-spectral vorticity-streamfunction, 2/3 dealiasing, exponential filter, "
            "ETDRK4)"
        ),
    ),
)
