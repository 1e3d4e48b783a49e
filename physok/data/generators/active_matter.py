"""Active matter (The Well's `active_matter`): kinetic theory of rod-like active particles in a
Stokes fluid (Maddu, Weady & Shelley, J. Comput. Phys. 504, 112869, 2024, equations (1)-(5)).

The state is the distribution psi(x, theta, t) of particle positions x in the periodic box
[0, 10)^2 and orientations p = (cos theta, sin theta):

    d(psi)/dt + div_x(u psi) + d/dtheta(theta_dot psi) = dT lap_x(psi) + dR d2(psi)/dtheta2
    theta_dot = p_perp . (grad(u) + 2 zeta D) p            (Jeffery's equation + steric alignment)
    -lap(u) + grad(q) = div(Sigma),  div(u) = 0           (Stokes, unit viscosity)
    Sigma = alpha (D - c I/2) + beta S:E - 2 zeta beta (D.D - S:D)

with the moments c = <1>, D = <pp>, S = <pppp> (<f> = integral of f psi over theta) and the
strain rate E = (grad(u) + grad(u)^T)/2; dT = dR = 0.05, immotile particles (swimming speed 0).
There is no closure: The Well's data come from this full kinetic model (the authors'
`Kinetic_simulations.py`, SuryanarayanaMK/Learning_closures; the paper then *learns* closures
from it), and so do these. Stored fields are its moments, as in the real files:
concentration c (t0), velocity u (t1), D and E (t2, 2x2). Identities that hold exactly:
tr D = c (since |p| = 1), D and E symmetric, tr E = div(u) = 0, and c obeys
dc/dt + u.grad(c) = dT lap(c) (the theta-flux integrates to zero), so its mean is conserved and
it stays within its initial range (positive).

Scheme: Fourier pseudo-spectral in x, y and theta, 2/3-rule dealiasing on all three axes, as
the real code. The particles are apolar (no swimming), so psi(theta + pi) = psi(theta) holds
for all time; theta is therefore sampled on [0, pi) with N_ANGLES points (even angular modes
only, half the cost of a [0, 2 pi) grid). Time stepping is ETDRK4 with translational and
rotational diffusion integrated exactly, and a step chosen per snapshot interval from a Courant
number on the velocity and theta_dot (the real data: SBDF2 with a fixed step 0.00625/16). The
Stokes equation is solved exactly in Fourier space at every stage; its beta S:E term depends on
u itself, so u is the fixed point of u = Stokes(Sigma(psi, E(u))), a contraction (rate at most
beta c / 4 for the viscous-like S:E term) iterated to a relative change below 1e-12 (the real
code instead lags E by one step).

Initial conditions, per the real code: psi = 1 + sum_{i=1..8} 0.1 (r - 1/2) cos(2 pi k1 x / L +
r') cos(2 pi k2 y / L + r'') cos(2 theta + r''')^i with k1, k2 uniform in {1..8} and r uniform
in [0, 1), normalised so that the mean concentration is 1; u is the Stokes flow of that state.
The perturbation is a plane-wave perturbation of the isotropic orientation tensor D = c I/2
(the odd powers of cos(2 theta) carry the even powers' small concentration ripple too, as in
the real data, whose README simplifies this to c = 1).

Stability of the isotropic state c = 1, psi = 1/(2 pi) (linearised equations (1)-(5), derived
here): a homogeneous orientation perturbation grows at rate zeta - 4 dR; a perturbation of
wavenumber k in the shear mode grows at

    sigma(k) = zeta - (alpha - zeta beta / 2) / (4 + beta / 2) - 4 dR - dT k^2,

so the isotropic state is linearly stable when zeta - (alpha - zeta beta/2)/(4 + beta/2) < 4 dR
(+ dT k_min^2 with k_min = 2 pi / L): extensile activity (alpha < 0) and alignment (zeta > 0)
both destabilise it. Every real parameter set (alpha in {-1..-5}, zeta in {1..17}, beta = 0.8)
is far above that threshold (zeta_c = 0.2 with alpha = 0): the real data are all active-nematic
turbulence, which these grow into from the isotropic start.

Resolution: the real data are 256x256 with 256 angles (cell 0.039); the fast default is 32x32
(cell 0.31) with N_ANGLES = 16, and the top mode numbers are damped by the exponential filter
exp(-36 (n/n_c)^36) per axis (n_c the 2/3-rule cutoff; as the shear-flow generator), applied as
a rate equivalent to one application per snapshot interval. The growth band
k < sqrt(sigma(0)/dT) fits under a 32x32 grid's cutoff (k_c = 6.3) only for zeta = 1
(sigma(0) = 1.1 to 2.0 for alpha = -1 to -5), so the embedded PARAMETER_SETS are the five real
sets with zeta = 1; REAL_PARAMETER_SETS lists all 45 for requests on finer grids. Even these are
a truncated-mode (filtered) solution rather than a converged one at 32x32: the nematic state's
defect cores (~ sqrt(dT / zeta) = 0.22) are below the cell size, and psi, which the exact
equations keep non-negative, dips below zero locally: measured over t in [0, 10], the smallest
eigenvalue of D (>= 0 for psi >= 0) reaches +0.05 (alpha = -1), -0.07 (alpha = -2) and
-0.24 (alpha = -5); 32 angles at 32x32 (-0.18 for alpha = -5) or 64x64 at 16 angles (-0.16 for
alpha = -3, against -0.17 at 32x32) barely change it: the strongly aligned distributions (mean
order 0.85) need both finer angles and a finer grid. At zeta = 3 a 32x32 grid with 16 angles
fails outright (the order parameter exceeds 1), so ask for finer grids there. The solver refuses
a grid whose cutoff k_c = (2 pi / L) floor(N / 3) leaves modes growing faster than
MAX_GROWTH_AT_CUTOFF = 1 (per unit time): sigma(k_c) = sigma(0) - dT k_c^2 > 1. Measured over
t in [0, 10], one trajectory, 16 angles: alpha = -5, zeta = 1 at 24x24 (sigma(k_c) = 0.77) stays
bounded (mean order 0.85 at t = 10, smallest D eigenvalue -0.34), while alpha = -1, zeta = 3 at
32x32 (sigma(k_c) = 1.33) blows up (mean order 7.9, smallest D eigenvalue -11.6). The threshold
is a lead from those two runs, not a convergence criterion: passing it does not make a coarse
grid converged.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.generators.spectral import Etdrk4, dealias_mask, wavenumbers
from physok.data.well_format import BoundarySpec, WellTrajectories

DATASET_NAME = "active_matter"
LENGTH = 10.0  # the real box is [0, 10)^2
SNAPSHOT_INTERVAL = 0.25  # the real data: 81 snapshots over t in [0, 20]
TRANSLATIONAL_DIFFUSION = 0.05
ROTATIONAL_DIFFUSION = 0.05
N_ANGLES = 16  # theta points on [0, pi); dealiased angular modes |m| <= 2 (N_ANGLES // 3)
COURANT = 1.0  # dt * max(|u|/dx + |v|/dy + |theta_dot|/dtheta); RK4 with 2/3 rule: ~1.35
FILTER_ORDER = 36
FILTER_RATE = 36.0 / SNAPSHOT_INTERVAL  # exp(-36) ~ 2e-16 at the cutoff per snapshot interval
STOKES_TOLERANCE = 1e-10  # relative change of u between fixed-point iterations
STOKES_MAX_ITERATIONS = 200

# Real initial condition (Kinetic_simulations.py, initialize2_pytorch).
IC_TERMS = 8
IC_MAX_MODE = 8
IC_AMPLITUDE = 0.1
# The 2/3 rule keeps mode numbers <= N/3: 24 points are the fewest that hold every initial mode
# (a coarser grid would drop some trajectories' whole perturbation and leave them isotropic).
MIN_RESOLUTION = 3 * IC_MAX_MODE
# Largest linear growth rate allowed at the grid's cutoff wavenumber (module docstring).
MAX_GROWTH_AT_CUTOFF = 1.0


def isotropic_growth_rate(alpha: float, beta: float, zeta: float, k: float) -> float:
    """Linear growth rate of a shear-mode perturbation of wavenumber k of the isotropic state."""
    sigma0 = zeta - (alpha - zeta * beta / 2.0) / (4.0 + beta / 2.0) - 4.0 * ROTATIONAL_DIFFUSION
    return sigma0 - TRANSLATIONAL_DIFFUSION * k**2


def cutoff_wavenumber(n: int) -> float:
    """The largest wavenumber an n x n grid keeps under the 2/3 rule: (2 pi / L) floor(n / 3)."""
    return 2.0 * math.pi / LENGTH * (n // 3)


def min_resolution_for(alpha: float, beta: float, zeta: float) -> int:
    """The smallest even N whose N x N grid keeps sigma(k_c) <= MAX_GROWTH_AT_CUTOFF (>= 24)."""
    excess = isotropic_growth_rate(alpha, beta, zeta, 0.0) - MAX_GROWTH_AT_CUTOFF
    if excess <= 0.0:
        return MIN_RESOLUTION
    modes = math.ceil(LENGTH / (2.0 * math.pi) * math.sqrt(excess / TRANSLATIONAL_DIFFUSION))
    return max(MIN_RESOLUTION, 3 * modes + (3 * modes) % 2)


def _initial_distribution(
    rng: np.random.Generator, n: int, x: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """psi of shape (n, N_ANGLES, X, Y), mean concentration 1 (before dealiasing)."""
    psi = np.ones((n, theta.size, x.size, x.size))
    for b in range(n):
        for i in range(IC_TERMS):
            k1, k2 = rng.integers(1, IC_MAX_MODE + 1, size=2)
            r = rng.random(4)
            psi[b] += (
                IC_AMPLITUDE
                * (r[0] - 0.5)
                * np.cos(2.0 * np.pi * k1 * x / LENGTH + r[1])[None, :, None]
                * np.cos(2.0 * np.pi * k2 * x / LENGTH + r[2])[None, None, :]
                * (np.cos(2.0 * theta + r[3]) ** (i + 1))[:, None, None]
            )
    # c = integral over [0, 2 pi) = 2 pi * (mean over the pi-periodic theta grid)
    return psi / (2.0 * np.pi * psi.mean(axis=(1, 2, 3), keepdims=True))


class _Kinetics:
    """Spectral operators, moments, the Stokes solve and the kinetic right-hand side."""

    def __init__(self, n: int, alpha: float, beta: float, zeta: float) -> None:
        self.shape = (n, n)
        self.alpha, self.beta, self.zeta = alpha, beta, zeta
        self.kx, self.ky = wavenumbers(self.shape, (LENGTH, LENGTH))
        self.k2 = self.kx**2 + self.ky**2
        self.inv_k2 = np.divide(1.0, self.k2, out=np.zeros_like(self.k2), where=self.k2 > 0.0)
        self.mask2 = dealias_mask(self.shape)
        self.theta = np.arange(N_ANGLES) * np.pi / N_ANGLES
        mode = np.fft.fftfreq(N_ANGLES, d=1.0 / N_ANGLES)
        self.m = (2.0 * mode)[:, None, None]  # angular wavenumber of each theta mode
        keep_theta = (np.abs(mode) <= N_ANGLES // 3)[:, None, None]
        self.mask = keep_theta & self.mask2[None]
        # Exponential filter (as the shear-flow generator) as a damping rate on the mode numbers
        # over their 2/3-rule cutoffs, per axis: it removes what reaches the cutoffs.
        n_x = np.abs(np.fft.fftfreq(n, d=1.0 / n))[:, None] / (n // 3)
        n_y = np.fft.rfftfreq(n, d=1.0 / n)[None, :] / (n // 3)
        n_t = (np.abs(mode) / (N_ANGLES // 3))[:, None, None]
        self.filter_rate = FILTER_RATE * (n_x**FILTER_ORDER + n_y**FILTER_ORDER + n_t**FILTER_ORDER)
        diffusion = TRANSLATIONAL_DIFFUSION * self.k2[None] + ROTATIONAL_DIFFUSION * self.m**2
        self.lin = -(diffusion + self.filter_rate)
        cos, sin = np.cos(self.theta), np.sin(self.theta)
        # Quadrature weights of the moments over [0, 2 pi) on the pi-periodic grid (exact for
        # the dealiased modes): c, D11, D12, D22, S1111, S1112, S1122, S1222, S2222.
        monomials = [cos**0, cos**2, cos * sin, sin**2]
        monomials += [cos**4, cos**3 * sin, cos**2 * sin**2, cos * sin**3, sin**4]
        self.weights = 2.0 * np.pi / N_ANGLES * np.stack(monomials)
        self.cos2 = (cos**2)[:, None, None]
        self.sin2 = (sin**2)[:, None, None]
        self.sincos = (sin * cos)[:, None, None]
        self.dx = LENGTH / n
        self.dtheta = np.pi / N_ANGLES
        self.u_hat: np.ndarray | None = None  # warm start of the Stokes fixed point

    # ---- moments and flow ---------------------------------------------------------------
    def moments(self, psi: np.ndarray) -> np.ndarray:
        """(9, B, X, Y): c, D11, D12, D22, S1111, S1112, S1122, S1222, S2222."""
        return np.moveaxis(np.tensordot(psi, self.weights, axes=([1], [1])), -1, 0)

    def grad_hat(self, u_hat: np.ndarray) -> np.ndarray:
        """Spectra (B, 2, 2, ...) of du_i/dx_j from velocity spectra (B, 2, ...)."""
        return 1j * np.stack([self.kx * u_hat, self.ky * u_hat], axis=2)

    def strain(self, u_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E11, E12, E22 on the grid; E22 = dv/dy exactly, so tr E = div u (zero)."""
        g = np.fft.irfft2(self.grad_hat(u_hat), s=self.shape)
        return g[:, 0, 0], 0.5 * (g[:, 0, 1] + g[:, 1, 0]), g[:, 1, 1]

    def stokes(self, sigma: np.ndarray, viscosity: float) -> np.ndarray:
        """Velocity spectrum (B, 2, ...) of -mu lap u + grad q = div Sigma, div u = 0, zero mean.

        `sigma` is (3, B, X, Y): Sigma11, Sigma12, Sigma22 on the grid.
        """
        s11, s12, s22 = self.mask2 * np.fft.rfft2(sigma)
        fx = 1j * (self.kx * s11 + self.ky * s12)
        fy = 1j * (self.kx * s12 + self.ky * s22)
        k_dot_f = (self.kx * fx + self.ky * fy) * self.inv_k2  # remove the gradient part
        scale = self.inv_k2 / viscosity
        return np.stack([fx - self.kx * k_dot_f, fy - self.ky * k_dot_f], axis=1) * scale

    def flow(self, mom: np.ndarray) -> np.ndarray:
        """Velocity spectrum consistent with the moments: the fixed point of the Stokes solve.

        The isotropic part of S at the mean concentration c0, S0:E = c0 E / 4, is a constant
        extra viscosity beta c0 / 8 and is moved to the left-hand side; the fixed point then
        iterates only on the anisotropic rest, which contracts by at most ~ beta c / (8 + beta).
        """
        c, d11, d12, d22, s1111, s1112, s1122, s1222, s2222 = mom
        a, b, z = self.alpha, self.beta, self.zeta
        dd11, dd12, dd22 = d11 * d11 + d12 * d12, d12 * (d11 + d22), d12 * d12 + d22 * d22
        sd11 = s1111 * d11 + 2.0 * s1112 * d12 + s1122 * d22
        sd12 = s1112 * d11 + 2.0 * s1122 * d12 + s1222 * d22
        sd22 = s1122 * d11 + 2.0 * s1222 * d12 + s2222 * d22
        active = np.stack(
            [
                a * (d11 - 0.5 * c) - 2.0 * z * b * (dd11 - sd11),
                a * d12 - 2.0 * z * b * (dd12 - sd12),
                a * (d22 - 0.5 * c) - 2.0 * z * b * (dd22 - sd22),
            ]
        )
        c0 = c.mean(axis=(1, 2))[:, None, None]
        viscosity = 1.0 + b * c0[:, None] / 8.0  # per trajectory, broadcast over (2, kx, ky)
        r1111, r1122, r2222 = s1111 - 3.0 * c0 / 8.0, s1122 - c0 / 8.0, s2222 - 3.0 * c0 / 8.0
        u_hat = self.u_hat if self.u_hat is not None else self.stokes(active, viscosity)
        for _ in range(STOKES_MAX_ITERATIONS):
            e11, e12, e22 = self.strain(u_hat)
            se11 = r1111 * e11 + 2.0 * s1112 * e12 + r1122 * e22
            se12 = s1112 * e11 + 2.0 * r1122 * e12 + s1222 * e22
            se22 = r1122 * e11 + 2.0 * s1222 * e12 + r2222 * e22
            new = self.stokes(active + b * np.stack([se11, se12, se22]), viscosity)
            change = np.abs(new - u_hat).max()
            u_hat = new
            if change <= STOKES_TOLERANCE * max(np.abs(new).max(), 1e-300):
                break
        else:
            raise RuntimeError(
                f"{DATASET_NAME}: the Stokes fixed point did not converge in "
                f"{STOKES_MAX_ITERATIONS} iterations (beta = {b})"
            )
        self.u_hat = u_hat
        return u_hat

    def theta_dot(self, mom: np.ndarray, u_hat: np.ndarray) -> np.ndarray:
        """p_perp . (grad u + 2 zeta D) p on the (B, theta, X, Y) grid."""
        g = np.fft.irfft2(self.grad_hat(u_hat), s=self.shape)  # g[:, i, j] = du_i/dx_j
        two_z = 2.0 * self.zeta
        t11 = (g[:, 0, 0] + two_z * mom[1])[:, None]
        t12 = (g[:, 0, 1] + two_z * mom[2])[:, None]
        t21 = (g[:, 1, 0] + two_z * mom[2])[:, None]
        t22 = (g[:, 1, 1] + two_z * mom[3])[:, None]
        return t21 * self.cos2 - t12 * self.sin2 + (t22 - t11) * self.sincos

    def rhs(self, psi_hat: np.ndarray) -> np.ndarray:
        """Dealiased spectrum of -div_x(u psi) - d/dtheta(theta_dot psi)."""
        psi = np.fft.irfftn(psi_hat, s=(N_ANGLES, *self.shape), axes=(1, 2, 3))
        mom = self.moments(psi)
        u_hat = self.flow(mom)
        u, v = np.fft.irfft2(u_hat, s=self.shape).transpose(1, 0, 2, 3)
        flux = np.stack([u[:, None] * psi, v[:, None] * psi, self.theta_dot(mom, u_hat) * psi])
        fx, fy, ft = np.fft.rfftn(flux, axes=(2, 3, 4))
        return -1j * self.mask * (self.kx * fx + self.ky * fy + self.m * ft)

    def rate(self, psi_hat: np.ndarray) -> float:
        """The Courant rate max(|u|/dx + |v|/dx + |theta_dot|/dtheta) of a state."""
        psi = np.fft.irfftn(psi_hat, s=(N_ANGLES, *self.shape), axes=(1, 2, 3))
        mom = self.moments(psi)
        u_hat = self.flow(mom)
        u, v = np.fft.irfft2(u_hat, s=self.shape).transpose(1, 0, 2, 3)
        spatial = (np.abs(u) + np.abs(v)) / self.dx
        return float(
            np.max(spatial[:, None] + np.abs(self.theta_dot(mom, u_hat)) / self.dtheta)
        )


@functools.lru_cache(maxsize=32)
def _stepper(n: int, n_sub: int) -> Etdrk4:
    """ETDRK4 for an n x n grid and n_sub steps per snapshot; cached, since every parameter
    set (one Well file each) reuses the same few, and their setup costs ~1 s at 32x32."""
    lin = _Kinetics(n, 0.0, 0.0, 0.0).lin
    return Etdrk4(lin, SNAPSHOT_INTERVAL / n_sub)


def simulate_active_matter(req: SimulationRequest) -> WellTrajectories:
    """Simulate `req.n_trajectories` active-matter trajectories; snapshots every 0.25.

    Parameters missing from `req.parameters` take the values of the first parameter set.
    """
    params = req.checked_parameters(
        DATASET_NAME, PARAMETER_SETS[0], (MIN_RESOLUTION, MIN_RESOLUTION)
    )
    alpha, beta, zeta = params["alpha"], params["beta"], params["zeta"]
    if not (beta >= 0.0 and zeta >= 0.0):
        raise ValueError(
            f"{DATASET_NAME}: parameters beta and zeta must be >= 0, got {params} "
            "(beta is the particle volume fraction, zeta the steric alignment strength)"
        )
    nx, ny = (int(r) for r in req.resolution)
    if nx != ny:
        raise ValueError(
            f"{DATASET_NAME}: resolution must be square (the box is {LENGTH:g} x {LENGTH:g}), "
            f"got {nx}x{ny}"
        )
    growth = isotropic_growth_rate(alpha, beta, zeta, cutoff_wavenumber(nx))
    if growth > MAX_GROWTH_AT_CUTOFF:
        need = min_resolution_for(alpha, beta, zeta)
        raise ValueError(
            f"{DATASET_NAME}: resolution {nx}x{nx} is too coarse for alpha = {alpha:g}, "
            f"beta = {beta:g}, zeta = {zeta:g}: modes at its cutoff wavenumber still grow at "
            f"{growth:.2f} per unit time (at most "
            f"{MAX_GROWTH_AT_CUTOFF:g}) and the solution blows up; use a resolution of at least "
            f"{need}x{need}, or a smaller zeta or |alpha|"
        )
    shape = (nx, nx)
    x = np.arange(nx) * (LENGTH / nx)  # the real grid starts at 0
    kin = _Kinetics(nx, alpha, beta, zeta)
    rng = np.random.default_rng(req.seed)
    psi0 = _initial_distribution(rng, req.n_trajectories, x, kin.theta)
    state = kin.mask * np.fft.rfftn(psi0, axes=(1, 2, 3))

    b, t = req.n_trajectories, req.n_steps
    concentration = np.empty((b, t, *shape))
    velocity = np.empty((b, t, *shape, 2))
    orientation = np.empty((b, t, *shape, 2, 2))
    strain = np.empty((b, t, *shape, 2, 2))

    def store(i: int) -> None:
        psi = np.fft.irfftn(state, s=(N_ANGLES, *shape), axes=(1, 2, 3))
        if not np.isfinite(psi).all():
            t_now = i * SNAPSHOT_INTERVAL
            raise RuntimeError(f"{DATASET_NAME}: solution became non-finite at t = {t_now:g}")
        mom = kin.moments(psi)
        u_hat = kin.flow(mom)
        e11, e12, e22 = kin.strain(u_hat)
        concentration[:, i] = mom[0]
        velocity[:, i] = np.moveaxis(np.fft.irfft2(u_hat, s=shape), 1, -1)
        orientation[:, i] = np.stack([mom[1], mom[2], mom[2], mom[3]], axis=-1).reshape(
            b, *shape, 2, 2
        )
        strain[:, i] = np.stack([e11, e12, e12, e22], axis=-1).reshape(b, *shape, 2, 2)
        req.report(1)

    store(0)
    for i in range(1, t):
        # Equal substeps per interval so every snapshot is hit exactly.
        n_sub = max(1, math.ceil(SNAPSHOT_INTERVAL * kin.rate(state) / COURANT))
        stepper = _stepper(nx, n_sub)
        for _ in range(n_sub):
            state = stepper.step(state, kin.rhs)
        store(i)

    return WellTrajectories(
        dataset_name=DATASET_NAME,
        time=np.arange(t) * SNAPSHOT_INTERVAL,
        coords={"x": x, "y": x.copy()},
        t0_fields={"concentration": concentration},
        t1_fields={"velocity": velocity},
        t2_fields={"D": orientation, "E": strain},
        parameters={"alpha": alpha, "beta": beta, "zeta": zeta},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
    )


ALPHAS = (-1.0, -2.0, -3.0, -4.0, -5.0)  # active dipole strength (extensile)
BETA = 0.8
ZETAS = (1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0)  # steric alignment
REAL_PARAMETER_SETS: tuple[dict[str, float], ...] = tuple(
    {"alpha": a, "beta": BETA, "zeta": z} for z in ZETAS for a in ALPHAS
)
# The embedded sets: the real sets with the weakest alignment, zeta = 1, the only ones whose
# growth band fits under a 32x32 grid's cutoff (module docstring). Alternating activity first,
# so that the first few (all that valid and test use by default) span alpha = -1 to -5.
PARAMETER_SETS: tuple[dict[str, float], ...] = tuple(
    {"alpha": a, "beta": BETA, "zeta": 1.0} for a in (-1.0, -3.0, -5.0, -2.0, -4.0)
)

GENERATORS: tuple[DatasetGenerator, ...] = (
    DatasetGenerator(
        name=DATASET_NAME,
        simulate=simulate_active_matter,
        parameter_sets=PARAMETER_SETS,
        default_steps=81,
        description=(
            "kinetic theory of immotile rod-like active particles in Stokes flow (Fourier "
            "pseudo-spectral in x, y and orientation, 2/3 dealiasing, ETDRK4, exact Stokes solve)"
        ),
    ),
)
