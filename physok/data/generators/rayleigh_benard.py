"""Rayleigh–Bénard convection: 2D Boussinesq flow between no-slip, fixed-temperature walls.

Equations in free-fall units (height H = 1, temperature jump 1, as in The Well's dataset):
    db/dt + u.grad b = kappa lap b,    du/dt + u.grad u = -grad p + nu lap u + b e_y,   div u = 0,
with kappa = (Ra Pr)^(-1/2) and nu = (Ra/Pr)^(-1/2). Domain x in [0, 4) periodic, y in [0, 1]
with u = 0 on both walls, b = 1 at the bottom (hot) and b = 0 at the top.

Discretisation (float64, batched over trajectories):
- x: Fourier, 2/3-rule dealiased (modes |m| <= (X-1)/3 kept, so quadratic products are exact on
  them). Stored points x_i = (i + 1/2) dx, dx = 4/X (any offset is valid: x is homogeneous).
- y: second-order finite differences on nodes y_j = j h, h = 1/(Y+1); j = 0 and Y+1 are the walls,
  the Y interior nodes are what is stored (`coords['y']`), so no stored value sits on a wall.
- Streamfunction-vorticity form: u = dpsi/dy, v = -dpsi/dx, omega = dv/dx - du/dy = -lap psi,
      domega/dt + div(u omega) = nu lap omega + db/dx,    psi = 0 on the walls,
  with the no-slip condition dpsi/dy = 0 entering as Thom's wall vorticity omega_w = -2 psi_1/h^2.
  Per wavenumber k that wall value is a linear function of the interior vorticity, so it is
  folded into a dense (Y x Y) viscous operator and treated implicitly: no wall-vorticity lag.
  Central differences make the discrete divergence D_x u + D_y v vanish to round-off.
- Mode k = 0: psi may not be pinned on both walls, since the net horizontal flux is free to
  evolve (there is no mean pressure gradient, as in the Dedalus set-up of the real data), so the
  mean flow u0(y) is evolved directly: du0/dt = -d<uv>/dy + nu u0''. It occupies slot 0 of the
  vorticity array, which lets one batched matmul apply every per-k operator.
- Buoyancy is evolved as the departure theta = b - (1 - y) from the conduction profile, which has
  homogeneous wall values: dtheta/dt + div(u theta) = v + kappa lap theta.
- Time: low-storage RK3 / Crank–Nicolson IMEX (Spalart, Moser & Rogers 1991): diffusion
  implicit, advection and buoyancy explicit. The step size is set per snapshot interval from the
  advective CFL number, so steps land exactly on the snapshots; an interval whose CFL number
  grows past the stability bound is redone with more steps. Per-k inverses are cached per dt.
- Pressure (output only, at snapshots): lap p = 2 det(grad u) + db/dy, which is the divergence of
  the momentum equation, with the consistent wall condition dp/dy = b + nu d2v/dy2 (the y-momentum
  equation at a no-slip wall; d2v/dy2 = d(omega_w)/dx there), discretised with a ghost node.
  Its k = 0 part follows exactly from x-averaged y-momentum, d<p>/dy = <b> - d<v^2>/dy, and the
  gauge is zero domain mean, as in the real data.

Initial state and spin-up: conduction b = 1 - y plus random noise eps * y(1-y) * N(0,1) per node,
velocity zero. The real data uses eps = 1e-3 and stores t in [0, 50], onset included; a short
embedded window (40 snapshots = 10 free-fall times) would then hold only the quiescent start, so
eps = 0.1 (onset near t = 7, first plumes burst by t = 10) and `SPIN_UP` = 12 free-fall times
are simulated but not stored. `time` holds the true simulation time of every snapshot.

Parameter sets: with 2/3 dealiasing a 64-point x-grid keeps 21 modes over a length of 4, and the
buoyancy plumes (width ~ the thermal boundary layer, 1/(2 Nu)) set the resolution. At Ra Pr <= 3e5
the top quarter of the kept x-modes holds <= ~1.5% of the buoyancy variance and the fields are
clean; at Ra = 1e6 (the real data's lowest) it is ~4.5% with visible Gibbs streaks, so that regime
needs >= 128 x-points. Hence Ra in {1e5, 3e5} with Pr in {0.5, 1, 2}: time-dependent convection,
Nu ~ 4-7, velocity resolved everywhere (y: h = 1/65 puts >= 5 nodes in each boundary layer).
"""

from __future__ import annotations

import math

import numpy as np

from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.well_format import BoundarySpec, WellTrajectories

DATASET = "rayleigh_benard"
LENGTH_X = 4.0
SNAPSHOT_DT = 0.25  # free-fall times between stored snapshots (real data: 200 over [0, 50])
SPIN_UP = 12.0  # free-fall times simulated before the first stored snapshot
NOISE = 0.1  # initial buoyancy noise amplitude (scaled by y(1-y))
MIN_POINTS = (8, 4)  # smallest (X, Y): below this the dealiased x-spectrum or y-stencils vanish
DEFAULT_PARAMETERS = {"Rayleigh": 1e5, "Prandtl": 1.0}

# Advective CFL number dt * (k_max |u| + |v| / h): target, and the bound past which an interval is
# redone (RK3 is stable up to sqrt(3) for purely imaginary eigenvalues). MAX_DT caps the step
# while the flow is still quiescent: one step per snapshot interval still resolves buoyancy
# oscillations (frequency <= 1) and the slow growth of the instability.
CFL_TARGET = 1.5
CFL_LIMIT = 1.73
MAX_DT = 0.25
STAGE_CACHE = 4  # step sizes whose implicit operators are kept

# Spalart-Moser-Rogers RK3/CN: explicit weights gamma (current) and zeta (previous stage), and
# implicit weights alpha (old level) and beta (new level) of each substage.
_GAMMA = (8.0 / 15.0, 5.0 / 12.0, 3.0 / 4.0)
_ZETA = (0.0, -17.0 / 60.0, -5.0 / 12.0)
_ALPHA = (4.0 / 15.0, 1.0 / 15.0, 1.0 / 6.0)
_BETA = _ALPHA


def _apply(mats: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """Per-k matrices (..., K, n, m) times spectra (..., K, 2, m, B), real and imaginary alike."""
    return np.expand_dims(mats, -3) @ spec


def _ddy(a: np.ndarray) -> np.ndarray:
    """Central difference along the y axis (-2) times 2h, with zero values on both walls."""
    d = np.empty_like(a)
    d[..., 0, :] = a[..., 1, :]
    d[..., 1:-1, :] = a[..., 2:, :] - a[..., :-2, :]
    d[..., -1, :] = -a[..., -2, :]
    return d


def _d2y(a: np.ndarray) -> np.ndarray:
    """Second difference along the y axis (-2) times h^2, with zero values on both walls."""
    d = -2.0 * a
    d[..., 1:, :] += a[..., :-1, :]
    d[..., :-1, :] += a[..., 1:, :]
    return d


def _times_ik(k: np.ndarray, a: np.ndarray) -> np.ndarray:
    """x-derivative of spectra (..., K, 2, Y, B) held as (real, imaginary) pairs: times i k."""
    out = np.empty_like(a)
    kb = k[:, None, None]
    out[..., 0, :, :] = -kb * a[..., 1, :, :]
    out[..., 1, :, :] = kb * a[..., 0, :, :]
    return out


class _Boussinesq:
    """The discretised Boussinesq system for one grid, Ra, Pr and batch size.

    The state z is a real array (2, K, 2, Y, B): field (q, theta), kept x-mode, (real, imaginary)
    part, interior y-node, trajectory; coefficients c_k = mean over x of f exp(-i k x), so f sums
    over +-k. q[k >= 1] is the vorticity, q[0] the mean flow u0(y); theta is the buoyancy minus
    the conduction profile. Stacking both fields halves the number of array operations per stage.
    x-transforms are products with DFT matrices over the kept modes only: with a third of the
    modes dropped this is exact and several times faster than numpy.fft at these sizes, and one
    small GEMM per y-node keeps OpenBLAS single-threaded (threaded GEMMs crawl on a busy CPU).
    """

    def __init__(self, nx: int, ny: int, n_batch: int, rayleigh: float, prandtl: float) -> None:
        self.nx, self.ny = nx, ny
        self.kappa = 1.0 / math.sqrt(rayleigh * prandtl)
        self.nu = 1.0 / math.sqrt(rayleigh / prandtl)
        self.h = 1.0 / (ny + 1)
        self.dx = LENGTH_X / nx
        self.x = self.dx * (np.arange(nx) + 0.5)
        self.y = self.h * np.arange(1, ny + 1)
        n_modes = (nx - 1) // 3 + 1
        self.k = 2.0 * np.pi / LENGTH_X * np.arange(n_modes)

        phase = np.outer(self.x, self.k)  # (X, K)
        weight = np.where(self.k == 0.0, 1.0, 2.0)  # +-k pairs of a real field
        synth = np.stack([weight * np.cos(phase), -weight * np.sin(phase)], -1)
        self._synth = synth.reshape(nx, 2 * n_modes)
        self._anal = np.stack([np.cos(phase.T), -np.sin(phase.T)], 1).reshape(2 * n_modes, nx) / nx

        h2 = self.h**2
        eye = np.eye(ny)
        d2 = (np.eye(ny, k=1) - 2.0 * eye + np.eye(ny, k=-1)) / h2
        lap = d2[None] - self.k[:, None, None] ** 2 * eye  # Dirichlet-zero Laplacian per k
        lap_inv = np.linalg.inv(lap)
        # psi = -lap^-1 omega for k >= 1; slot 0 (mean flow) needs no streamfunction.
        self.psi_of_q = -lap_inv
        self.psi_of_q[0] = 0.0
        # Vorticity diffusion with Thom's wall vorticity omega_w = -2 psi_1 / h^2 = (2/h^2)
        # (lap^-1 omega)_1, entering the Laplacian at the first/last node as omega_w / h^2.
        visc = lap.copy()
        visc[1:, 0, :] += 2.0 / h2**2 * lap_inv[1:, 0, :]
        visc[1:, -1, :] += 2.0 / h2**2 * lap_inv[1:, -1, :]
        visc[0] = d2  # mean flow: plain Dirichlet diffusion (u0 = 0 on the walls)
        self.diffusion = np.stack([self.nu * visc, self.kappa * lap])  # A, per field and k
        self._coef = np.array([self.nu, self.kappa]).reshape(2, 1, 1, 1, 1)
        # Thom's wall vorticity per k as rows acting on the interior vorticity: (K, wall, Y).
        self.wall_vort = 2.0 / h2 * np.stack([lap_inv[:, 0, :], lap_inv[:, -1, :]], axis=1)
        self._stages: dict[float, tuple[np.ndarray, ...]] = {}
        self._pressure_inv = self._pressure_operator()
        # Reused buffers for the stacked transforms: fresh multi-MB arrays every substage cost
        # more in page faults than the arithmetic on them.
        spec_shape, phys_shape = (4, n_modes, 2, ny, n_batch), (4, nx, ny, n_batch)
        self._work = tuple(np.empty(sh) for sh in (spec_shape, phys_shape, phys_shape, spec_shape))

    def initial_state(self, theta: np.ndarray) -> np.ndarray:
        """State at rest with buoyancy departure `theta` (X, Y, B) from the conduction profile."""
        th = self.to_spec(theta)
        return np.stack([np.zeros_like(th), th])

    # --- transforms ------------------------------------------------------------------------------

    def to_phys(self, spec: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Spectra (..., K, 2, Y, B) -> physical values (..., X, Y, B) at the stored x points."""
        lead, n_batch = spec.shape[:-4], spec.shape[-1]
        flat = spec.reshape(-1, 2 * self.k.size, self.ny, n_batch)
        if out is None:
            out = np.empty((*lead, self.nx, self.ny, n_batch))
        view = out.reshape(flat.shape[0], self.nx, self.ny, n_batch)
        np.matmul(self._synth, flat.transpose(0, 2, 1, 3), out=view.transpose(0, 2, 1, 3))
        return out

    def to_spec(self, phys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Physical values (..., X, Y, B) -> spectra (..., K, 2, Y, B) of the kept modes."""
        lead, n_batch = phys.shape[:-3], phys.shape[-1]
        flat = phys.reshape(-1, self.nx, self.ny, n_batch)
        if out is None:
            out = np.empty((*lead, self.k.size, 2, self.ny, n_batch))
        view = out.reshape(flat.shape[0], 2 * self.k.size, self.ny, n_batch)
        np.matmul(self._anal, flat.transpose(0, 2, 1, 3), out=view.transpose(0, 2, 1, 3))
        return out

    # --- time stepping -------------------------------------------------------------------------

    def stages(self, dt: float) -> tuple[np.ndarray, ...]:
        """Per substage, the implicit solves (I - beta dt A)^-1 (2, K, Y, Y) at step `dt`.

        Cached because consecutive intervals mostly reuse dt; only the few most recent are kept.
        """
        if dt not in self._stages:
            if len(self._stages) >= STAGE_CACHE:
                del self._stages[next(iter(self._stages))]
            eye = np.eye(self.ny)
            self._stages[dt] = tuple(np.linalg.inv(eye - b * dt * self.diffusion) for b in _BETA)
        return self._stages[dt]

    def velocity_spectra(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, psi) spectra from q: u = dpsi/dy (plus the mean flow), v = -dpsi/dx."""
        psi = _apply(self.psi_of_q, q)
        u = _ddy(psi) / (2.0 * self.h)
        u[0] = q[0]
        return u, -_times_ik(self.k, psi), psi

    def cfl_rate(self, u: np.ndarray, v: np.ndarray) -> float:
        """Largest advective rate k_max |u| + |v| / h over physical velocities: CFL = rate * dt."""
        return float(np.max(self.k[-1] * np.abs(u) + np.abs(v) / self.h))

    def tendencies(self, z: np.ndarray, with_cfl: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """Explicit tendencies N(z) (flux form) and diffusion terms A z of both fields.

        Also the advective CFL rate if asked (else 0). The four fields u, v, omega, theta, and
        then the four fluxes, share one stacked transform. A z uses the stencils of the implicit
        operators, with Thom's wall vorticity -2 psi_wall_adjacent / h^2 read off psi, so it
        needs no dense matrix product.
        """
        h2, inv2h = self.h**2, 1.0 / (2.0 * self.h)
        spec, phys, flux, fs = self._work
        spec[0], spec[1], psi = self.velocity_spectra(z[0])
        spec[2:] = z
        spec[2, 0, 0] = -_ddy(z[0, 0, 0]) * inv2h  # mean vorticity -du0/dy
        self.to_phys(spec, out=phys)
        np.multiply(phys[0:1], phys[2:], out=flux[:2])  # u omega, u theta
        np.multiply(phys[1:2], phys[2:], out=flux[2:])  # v omega, v theta
        self.to_spec(flux, out=fs)
        n = -_times_ik(self.k, fs[:2]) - _ddy(fs[2:]) * inv2h  # -div(u [omega, theta])
        n[0] += _times_ik(self.k, z[1])  # db/dx
        n[0, 0] = 0.0
        n[0, 0, 0] = -_ddy(np.mean(phys[0] * phys[1], axis=0)) * inv2h  # mean flow: -d<uv>/dy
        n[1] += spec[1]  # v, from advection of the conduction profile

        lap = _d2y(z) / h2 - (self.k**2)[:, None, None, None] * z
        lap[0, ..., 0, :] -= 2.0 / h2**2 * psi[..., 0, :]  # psi[0] = 0: no wall term for u0
        lap[0, ..., -1, :] -= 2.0 / h2**2 * psi[..., -1, :]
        rate = self.cfl_rate(phys[0], phys[1]) if with_cfl else 0.0
        return n, self._coef * lap, rate

    def step(self, z: np.ndarray, dt: float) -> tuple[np.ndarray, float]:
        """One RK3/CN step; returns the new state and the CFL number at its start.

        Substage s: (I - beta dt A) z' = z + dt (alpha A z + gamma N(z) + zeta N_previous).
        """
        cfl = 0.0
        prev = 0.0
        for s, inv in enumerate(self.stages(dt)):
            n, a, rate = self.tendencies(z, with_cfl=s == 0)
            cfl = max(cfl, rate * dt)
            z = _apply(inv, z + _ALPHA[s] * dt * a + _GAMMA[s] * dt * n + _ZETA[s] * dt * prev)
            prev = n
        return z, cfl

    def advance(self, z: np.ndarray, duration: float) -> np.ndarray:
        """Integrate exactly `duration` in equal CFL-limited steps (redone if CFL overshoots)."""
        u_hat, v_hat, _ = self.velocity_spectra(z[0])
        rate = self.cfl_rate(self.to_phys(u_hat), self.to_phys(v_hat))
        if not math.isfinite(rate):
            raise RuntimeError(f"{DATASET}: solution became non-finite")
        n_sub = max(1, math.ceil(duration / min(MAX_DT, CFL_TARGET / max(rate, 1e-12))))
        while True:
            dt = duration / n_sub
            z1 = z
            for _ in range(n_sub):
                z1, cfl = self.step(z1, dt)
                if not cfl <= CFL_LIMIT:  # too large, or NaN
                    break
            else:
                if not np.isfinite(z1).all():
                    raise RuntimeError(f"{DATASET}: solution became non-finite")
                return z1
            if not math.isfinite(cfl) or n_sub > 100_000:
                raise RuntimeError(f"{DATASET}: solution became non-finite (CFL number {cfl})")
            n_sub = max(2 * n_sub, math.ceil(n_sub * cfl / CFL_TARGET))

    # --- diagnostics -----------------------------------------------------------------------------

    def _pressure_operator(self) -> np.ndarray:
        """Inverse of the Neumann Laplacian per k >= 1 on all nodes (walls included).

        Ghost nodes from the second-order wall slope p_{-1} = p_1 - 2h g turn the wall rows into
        (2 p_1 - 2 p_0)/h^2 - k^2 p_0 = f_0 + 2 g / h (and mirrored at the top).
        """
        n = self.ny + 2
        eye = np.eye(n)
        d2 = np.eye(n, k=1) - 2.0 * eye + np.eye(n, k=-1)
        d2[0, 1] = d2[-1, -2] = 2.0
        op = d2[None] / self.h**2 - self.k[1:, None, None] ** 2 * eye
        return np.linalg.inv(op)

    def fields(self, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Physical buoyancy, pressure, u, v at the stored nodes, each (B, X, Y)."""
        h, inv2h = self.h, 1.0 / (2.0 * self.h)
        q, th = z
        u_hat, v_hat, _ = self.velocity_spectra(q)
        b_hat = th.copy()
        b_hat[0, 0] += (1.0 - self.y)[:, None]
        ux, uy = self.to_phys(_times_ik(self.k, u_hat)), self.to_phys(_ddy(u_hat) * inv2h)
        vx, vy = self.to_phys(_times_ik(self.k, v_hat)), self.to_phys(_ddy(v_hat) * inv2h)
        b, u, v = self.to_phys(b_hat), self.to_phys(u_hat), self.to_phys(v_hat)
        det = self.to_spec(ux * vy - uy * vx)

        # k >= 1: source on all nodes; det(grad u) = 0 on the walls (u = v = 0 along them), and
        # db/dy there by one-sided second-order differences (theta = 0 on the walls).
        th1 = th[1:]
        src = np.zeros((self.k.size - 1, 2, self.ny + 2, th.shape[-1]))
        src[..., 1:-1, :] = 2.0 * det[1:] + _ddy(th1) * inv2h
        src[..., 0, :] = (4.0 * th1[..., 0, :] - th1[..., 1, :]) * inv2h
        src[..., -1, :] = -(4.0 * th1[..., -1, :] - th1[..., -2, :]) * inv2h
        # Wall slope g = b + nu d2v/dy2 = nu d(omega_w)/dx (b's k >= 1 part is 0 on the walls).
        slope = self.nu * _times_ik(self.k[1:], _apply(self.wall_vort[1:], q[1:]))
        src[..., 0, :] += 2.0 * slope[..., 0, :] / h
        src[..., -1, :] -= 2.0 * slope[..., 1, :] / h
        p_hat = np.zeros_like(q)
        p_hat[1:] = _apply(self._pressure_inv, src)[..., 1:-1, :]

        # k = 0: d<p>/dy = <b> - d<v^2>/dy integrated exactly, with the walls' b = 1 and 0.
        n_batch = th.shape[-1]
        bw = np.concatenate([np.ones((1, n_batch)), np.mean(b, 0), np.zeros((1, n_batch))])
        p_mean = np.concatenate([np.zeros((1, n_batch)), np.cumsum(bw[1:] + bw[:-1], 0)])
        p_mean *= 0.5 * h
        p_mean[1:-1] -= np.mean(v * v, axis=0)
        p_mean -= 0.5 * h * np.sum(p_mean[1:] + p_mean[:-1], axis=0)  # zero domain mean
        p = self.to_phys(p_hat) + p_mean[None, 1:-1]
        return tuple(np.transpose(f, (2, 0, 1)) for f in (b, p, u, v))


def _check_request(req: SimulationRequest) -> tuple[float, float]:
    """Validate the request; return (Rayleigh, Prandtl)."""
    params = req.checked_parameters(DATASET, DEFAULT_PARAMETERS, MIN_POINTS)
    for name, value in params.items():
        if not value > 0:
            raise ValueError(f"{DATASET}: parameter {name} must be positive, got {value}")
    return params["Rayleigh"], params["Prandtl"]


def simulate_rayleigh_benard(req: SimulationRequest, spin_up: float = SPIN_UP) -> WellTrajectories:
    """Simulate `req.n_trajectories` convection runs; snapshots every `SNAPSHOT_DT` after `spin_up`.

    `spin_up` (free-fall times, rounded to whole snapshot intervals) is simulated but not stored;
    tests pass 0 to watch onset or decay from the initial state.
    """
    rayleigh, prandtl = _check_request(req)
    if not (math.isfinite(spin_up) and spin_up >= 0):
        raise ValueError(f"{DATASET}: spin_up must be >= 0, got {spin_up}")
    nx, ny = (int(n) for n in req.resolution)
    n_batch = req.n_trajectories
    model = _Boussinesq(nx, ny, n_batch, rayleigh, prandtl)

    rng = np.random.default_rng(req.seed)
    y = model.y
    noise = NOISE * (y * (1.0 - y))[None, :, None] * rng.standard_normal((nx, ny, n_batch))
    z = model.initial_state(noise)

    n_spin = round(spin_up / SNAPSHOT_DT)
    for _ in range(n_spin):
        z = model.advance(z, SNAPSHOT_DT)

    shape = (n_batch, req.n_steps, nx, ny)
    buoyancy, pressure = np.empty(shape), np.empty(shape)
    velocity = np.empty((*shape, 2))
    for i in range(req.n_steps):
        if i > 0:
            z = model.advance(z, SNAPSHOT_DT)
        b, p, u, v = model.fields(z)
        buoyancy[:, i], pressure[:, i] = b, p
        velocity[:, i, ..., 0], velocity[:, i, ..., 1] = u, v
        req.report(1)

    return WellTrajectories(
        dataset_name=DATASET,
        time=SNAPSHOT_DT * (n_spin + np.arange(req.n_steps)),
        coords={"x": model.x, "y": model.y},
        t0_fields={"buoyancy": buoyancy, "pressure": pressure},
        t1_fields={"velocity": velocity},
        parameters={"Rayleigh": rayleigh, "Prandtl": prandtl},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "wall")],
    )


GENERATORS: tuple[DatasetGenerator, ...] = (
    DatasetGenerator(
        name=DATASET,
        simulate=simulate_rayleigh_benard,
        parameter_sets=(
            {"Rayleigh": 1e5, "Prandtl": 1.0},
            {"Rayleigh": 1e5, "Prandtl": 2.0},
            {"Rayleigh": 3e5, "Prandtl": 0.5},
            {"Rayleigh": 3e5, "Prandtl": 1.0},
        ),
        default_steps=200,
        description=(
            "2D Rayleigh-Benard convection (Boussinesq, free-fall units), periodic x in [0, 4), "
            "no-slip walls with b = 1 (bottom) and 0 (top); Fourier x, finite differences y, "
            "streamfunction-vorticity with implicit Thom walls, RK3/CN."
        ),
    ),
)
