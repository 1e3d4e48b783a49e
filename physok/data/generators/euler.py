"""2D compressible Euler multi-quadrant Riemann problems (The Well's `euler_multi_quadrants_*`).

Ideal gas, p = (gamma - 1) (e - rho |u|^2 / 2), on the unit square with periodic or open
(outflow) boundaries. Nondimensional units throughout: lengths in domain lengths, time in the
same units as the real dataset (snapshots every 0.015, 101 snapshots over t in [0, 1.5]).

Scheme (second order finite volume, dimension-unsplit):
- MUSCL reconstruction of the primitive variables (rho, u, v, p) with the monotonised-central
  (MC) limiter: second order on smooth data, and its face values stay within the neighbouring
  cell values, so reconstructed density and pressure remain positive.
- HLLC approximate Riemann solver (Toro) with Davis wave-speed bounds; it resolves contacts,
  which dominate multi-quadrant problems.
- SSP-RK2 (Heun) in time; the step is CFL-limited, dt = 0.4 / max over cells and directions
  of (|u_n| + c) / h: below the ~0.5 limit of unsplit second-order schemes in 2D, with margin
  for positivity at strong shocks. Each snapshot interval is split into equal sub-steps so
  snapshots land exactly on multiples of 0.015.
- Boundaries by two ghost cells per side: copies from the far side (periodic: fluxes through
  the two ends are bitwise equal, so mass, momentum and energy are conserved to round-off) or
  edge replicas (open: zero-gradient outflow).
The whole batch of trajectories advances with one shared time step (the most restrictive).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from physok.data.generators.base import DatasetGenerator, SimulationRequest
from physok.data.well_format import BoundarySpec, WellTrajectories

SNAPSHOT_DT = 0.015
CFL = 0.4
DEFAULT_GAMMA = 1.4
# The Well's ten gases; ordered so that the first few (used by small runs) span the range.
GAMMAS: tuple[float, ...] = (1.4, 1.13, 1.76, 1.3, 1.597, 1.22, 1.453, 1.33, 1.365, 1.404)

# Random quadrant states. Log-uniform density and pressure give jumps of up to 9x (shocks,
# rarefactions and contacts of varied strength) and a mean of 2 / ln 9 = 0.91, near the real
# dataset's ~0.9; the velocity range puts the momentum rms near its ~0.4. The bounds also cap
# the sound speed (<= 4 at gamma 1.76), which sets the CFL step and so the cost.
RHO_RANGE = (0.25, 2.25)
P_RANGE = (0.25, 2.25)
VELOCITY_MAX = 0.6
SPLIT_RANGE = (0.3, 0.7)

BC_TYPES = ("periodic", "open")
MIN_RESOLUTION = 4
N_GHOST = 2  # MUSCL needs the slope of the cell beyond each boundary face

# Conserved components, first axis of a state array (4, B, X, Y).
RHO, MX, MY, ENERGY = range(4)


def primitive_to_conserved(
    rho: np.ndarray, u: np.ndarray, v: np.ndarray, p: np.ndarray, gamma: float
) -> np.ndarray:
    """Stack (rho, rho u, rho v, e) with total energy density e = p/(gamma-1) + rho|u|^2/2."""
    e = p / (gamma - 1.0) + 0.5 * rho * (u * u + v * v)
    return np.stack(np.broadcast_arrays(rho, rho * u, rho * v, e)).astype(np.float64)


def pressure(state: np.ndarray, gamma: float) -> np.ndarray:
    """Pressure of a conserved state (4, ...)."""
    rho, mx, my, e = state
    return (gamma - 1.0) * (e - 0.5 * (mx * mx + my * my) / rho)


class _FiniteVolume:
    """The semi-discrete operator -div F for one batch shape (B, X, Y), with its work arrays.

    Every NumPy operation writes into a buffer allocated here once. With a fresh temporary per
    operation, glibc hands the freed heap back to the OS at the end of each Riemann solve and
    page-faults it in again on the next: that made a 2 x 64 x 64 solve ~4x slower.
    The y sweep works on transposed copies (B, Y, X), so both sweeps reconstruct along
    contiguous rows of axis 2.
    """

    # Along y the normal velocity is v: y-sweep states are kept as (rho, v, u, p).
    SWAP = (0, 2, 1, 3)

    def __init__(self, shape: tuple[int, int, int], gamma: float, bc: str) -> None:
        b, nx, ny = shape
        self.gamma, self.bc = gamma, bc
        self.inv_h = (float(nx), float(ny))  # unit square: 1 / dx, 1 / dy
        self.w = np.empty((4, b, nx, ny))  # primitives rho, u, v, p
        self.cell = np.empty((2, b, nx, ny))
        self.cell_t = np.empty((4, b, ny, nx))
        # Per sweep (x, then y transposed): cells along axis 2, `n` of them, `m` rows.
        sweeps = ((nx, ny), (ny, nx))
        self.pad = tuple(np.empty((4, b, n + 2 * N_GHOST, m)) for n, m in sweeps)
        self.diff = tuple(np.empty((4, b, n + 3, m)) for n, m in sweeps)
        self.slope = tuple(np.empty((4, 4, b, n + 2, m)) for n, m in sweeps)
        # Faces of both sweeps side by side, so that one HLLC call serves both directions.
        n_faces = [b * (n + 1) * m for n, m in sweeps]
        self.face_l = np.empty((4, sum(n_faces)))
        self.face_r = np.empty_like(self.face_l)
        self.flux = np.empty_like(self.face_l)
        self.blend = np.empty_like(self.face_l)
        self.face = np.empty((12, sum(n_faces)))  # HLLC scalars
        split = (slice(0, n_faces[0]), slice(n_faces[0], None))
        shapes = [(4, b, n + 1, m) for n, m in sweeps]
        self.sweep_l, self.sweep_r, self.sweep_flux = (
            tuple(a[:, part].reshape(sh) for part, sh in zip(split, shapes, strict=True))
            for a in (self.face_l, self.face_r, self.flux)
        )

    def primitives(self, state: np.ndarray) -> np.ndarray:
        """(rho, u, v, p) of a conserved state, into the shared buffer `self.w`."""
        w, tmp = self.w, self.cell[0]
        rho, u, v, p = w
        rho[...] = state[RHO]
        np.divide(state[MX], rho, out=u)
        np.divide(state[MY], rho, out=v)
        np.multiply(state[MX], u, out=p)
        np.multiply(state[MY], v, out=tmp)
        p += tmp
        p *= -0.5
        p += state[ENERGY]
        p *= self.gamma - 1.0
        return w

    def stable_dt(self) -> float:
        """CFL step for the primitives last computed: CFL / max((|u_n| + c) / h)."""
        rho, u, v, p = self.w
        c, tmp = self.cell
        with np.errstate(invalid="ignore"):  # negative pressure: reported below
            np.divide(p, rho, out=c)
            c *= self.gamma
            np.sqrt(c, out=c)
        rates = []
        for vel, inv_h in ((u, self.inv_h[0]), (v, self.inv_h[1])):
            np.abs(vel, out=tmp)
            tmp += c
            rates.append(float(tmp.max()) * inv_h)
        if not all(math.isfinite(r) for r in rates):
            raise RuntimeError("Euler solution became non-finite or lost positive pressure")
        return CFL / max(rates)

    def rhs(self, w: np.ndarray, out: np.ndarray) -> np.ndarray:
        """-div F from primitives `w` (4, B, X, Y), written into `out`."""
        g = N_GHOST
        self.pad[0][:, :, g:-g] = w
        for k_sweep, k_w in enumerate(self.SWAP):
            self.pad[1][k_sweep, :, g:-g] = w[k_w].transpose(0, 2, 1)
        for sweep in (0, 1):
            self._reconstruct(sweep)
        self._hllc()
        fx, fy = self.sweep_flux
        np.subtract(fx[:, :, :-1], fx[:, :, 1:], out=out)
        out *= self.inv_h[0]
        div_y = self.cell_t
        np.subtract(fy[:, :, :-1], fy[:, :, 1:], out=div_y)
        div_y *= self.inv_h[1]
        for k_sweep, k_state in enumerate(self.SWAP):
            out[k_state] += div_y[k_sweep].transpose(0, 2, 1)
        return out

    def _reconstruct(self, sweep: int) -> None:
        """MC-limited MUSCL states at the faces along axis 2 of the padded cells of `sweep`."""
        g = N_GHOST
        pad = self.pad[sweep]
        if self.bc == "periodic":
            pad[:, :, :g] = pad[:, :, -2 * g : -g]
            pad[:, :, -g:] = pad[:, :, g : 2 * g]
        else:  # open: zero-gradient extrapolation
            pad[:, :, :g] = pad[:, :, g : g + 1]
            pad[:, :, -g:] = pad[:, :, -g - 1 : -g]

        cells = pad[:, :, 1:-1]  # cells -1 .. n, each gets a limited slope
        diff = self.diff[sweep]
        np.subtract(pad[:, :, 1:], pad[:, :, :-1], out=diff)
        dl, dr = diff[:, :, :-1], diff[:, :, 1:]
        half_slope, other, total, sign = self.slope[sweep]
        np.add(dl, dr, out=total)
        # Half the MC slope, s * max(0, min(s dl, s dr, |dl + dr| / 4)) with s = sign(dl + dr):
        # zero at extrema (s dl or s dr <= 0), so face values stay within the neighbouring cell
        # values and reconstructed density and pressure stay positive.
        np.copysign(1.0, total, out=sign)
        np.multiply(dl, sign, out=half_slope)
        np.multiply(dr, sign, out=other)
        np.minimum(half_slope, other, out=half_slope)
        np.abs(total, out=total)
        total *= 0.25
        np.minimum(half_slope, total, out=half_slope)
        np.maximum(half_slope, 0.0, out=half_slope)
        half_slope *= sign
        # Face i sits between cells i-1 and i: left state from cell i-1, right from cell i.
        np.add(cells[:, :, :-1], half_slope[:, :, :-1], out=self.sweep_l[sweep])
        np.subtract(cells[:, :, 1:], half_slope[:, :, 1:], out=self.sweep_r[sweep])

    def _hllc(self) -> None:
        """HLLC flux (mass, normal momentum, tangential momentum, energy) through every face.

        Face states are (rho, u_normal, u_tangential, p). Davis bounds S_L, S_R on the fastest
        waves and the contact speed S* as in Toro (2009) ch. 10. Only the side K upwind of the
        contact is evaluated: flux = F_K + S_K^- (U*_K - U_K) with S_K^- = min(S_L, 0) or
        max(S_R, 0), which is F_K itself when the whole wave fan lies on the far side.
        """
        gamma = self.gamma
        rl, ul, _, pl = self.face_l
        rr, ur, _, pr = self.face_r
        cl, cr, sl, sr, ml, mr, s_star, pick_l, pick_r, m, s_k, tmp = self.face

        np.divide(pl, rl, out=cl)
        cl *= gamma
        np.sqrt(cl, out=cl)
        np.divide(pr, rr, out=cr)
        cr *= gamma
        np.sqrt(cr, out=cr)
        np.subtract(ul, cl, out=sl)
        np.subtract(ur, cr, out=tmp)
        np.minimum(sl, tmp, out=sl)
        np.add(ul, cl, out=sr)
        np.add(ur, cr, out=tmp)
        np.maximum(sr, tmp, out=sr)
        np.subtract(sl, ul, out=ml)
        ml *= rl  # mass flux through the left wave, in its frame (< 0)
        np.subtract(sr, ur, out=mr)
        mr *= rr  # (> 0)
        # S* = (pR - pL + mL uL - mR uR) / (mL - mR)
        np.subtract(pr, pl, out=s_star)
        np.multiply(ml, ul, out=tmp)
        s_star += tmp
        np.multiply(mr, ur, out=tmp)
        s_star -= tmp
        np.subtract(ml, mr, out=tmp)
        s_star /= tmp

        # Upwind side by an exact 0/1 blend (x * 1 + y * 0 == x), cheaper than np.where.
        np.greater_equal(s_star, 0.0, out=pick_l, casting="unsafe")
        np.subtract(1.0, pick_l, out=pick_r)
        side = self.blend
        np.multiply(self.face_l, pick_l, out=side)
        np.multiply(self.face_r, pick_r, out=self.flux)  # flux is free scratch until below
        side += self.flux
        r, un, ut, p = side
        np.multiply(sl, pick_l, out=s_k)
        np.multiply(sr, pick_r, out=tmp)
        s_k += tmp
        np.subtract(s_k, un, out=m)
        m *= r  # m_K, as m_L or m_R above
        s_minus = sl  # S_K^-, overwrites S_L (no longer needed)
        np.minimum(sl, 0.0, out=s_minus)
        s_minus *= pick_l
        np.maximum(sr, 0.0, out=tmp)
        tmp *= pick_r
        s_minus += tmp

        # Star state U*_K = r* (1, S*, u_t, e / r + (S* - u_n)(S* + p / m)), r* = m / (S_K - S*).
        e, r_star, mass = cl, cr, sr  # reuse: sound speeds and S_R are no longer needed
        np.multiply(un, un, out=e)
        np.multiply(ut, ut, out=tmp)
        e += tmp
        e *= r
        e *= 0.5
        np.multiply(p, 1.0 / (gamma - 1.0), out=tmp)
        e += tmp
        np.subtract(s_k, s_star, out=r_star)
        np.divide(m, r_star, out=r_star)
        np.multiply(r, un, out=mass)

        f_mass, f_normal, f_tangential, f_energy = self.flux
        np.subtract(r_star, r, out=tmp)
        tmp *= s_minus
        np.add(mass, tmp, out=f_mass)
        np.multiply(f_mass, ut, out=f_tangential)
        np.multiply(r_star, s_star, out=tmp)
        tmp -= mass
        tmp *= s_minus
        np.multiply(mass, un, out=f_normal)
        f_normal += p
        f_normal += tmp
        e_star = ml  # reuse; ends as S_K^- (e*_K - e_K)
        np.divide(p, m, out=e_star)
        e_star += s_star
        np.subtract(s_star, un, out=tmp)
        e_star *= tmp
        np.divide(e, r, out=tmp)
        e_star += tmp
        e_star *= r_star
        e_star -= e
        e_star *= s_minus
        np.add(e, p, out=f_energy)
        f_energy *= un
        f_energy += e_star


def evolve(
    state: np.ndarray,
    gamma: float,
    bc: str,
    n_snapshots: int,
    snapshot_dt: float = SNAPSHOT_DT,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Integrate conserved states (4, B, X, Y) on the unit square; return (4, B, T, X, Y).

    Snapshot k is the solution at t = k * snapshot_dt (k = 0 is `state`). `on_snapshot(k,
    state)` is called after each one is stored. Raises RuntimeError if the solution loses
    finiteness or positivity of density or pressure.
    """
    if bc not in BC_TYPES:
        raise ValueError(f"bc must be one of {BC_TYPES}, got {bc!r}")
    u = np.array(state, dtype=np.float64)
    fv = _FiniteVolume(u.shape[1:], gamma, bc)
    u1, k = np.empty_like(u), np.empty_like(u)
    out = np.empty((4, u.shape[1], n_snapshots, *u.shape[2:]))
    out[:, :, 0] = u
    _check(u, gamma, 0.0)
    for snap in range(1, n_snapshots):
        remaining = snapshot_dt
        while remaining > 0.0:
            w = fv.primitives(u)
            n_sub = max(1, math.ceil(remaining / fv.stable_dt() - 1e-12))
            dt = remaining / n_sub
            # SSP-RK2 (Heun): u1 = u + dt L(u); u <- (u + u1 + dt L(u1)) / 2.
            np.multiply(fv.rhs(w, k), dt, out=u1)
            u1 += u
            fv.rhs(fv.primitives(u1), k)
            k *= dt
            u += u1
            u += k
            u *= 0.5
            remaining = 0.0 if n_sub == 1 else remaining - dt
        _check(u, gamma, snap * snapshot_dt)
        out[:, :, snap] = u
        if on_snapshot is not None:
            on_snapshot(snap, u)
    return out


def _check(state: np.ndarray, gamma: float, t: float) -> None:
    if not np.isfinite(state).all():
        raise RuntimeError(f"Euler solution became non-finite by t={t:.4g}")
    if state[RHO].min() <= 0.0 or pressure(state, gamma).min() <= 0.0:
        raise RuntimeError(f"Euler solution lost positivity of density or pressure by t={t:.4g}")


def random_quadrant_state(
    rng: np.random.Generator, n_trajectories: int, nx: int, ny: int, gamma: float
) -> np.ndarray:
    """Conserved states (4, B, X, Y) of random four-quadrant Riemann problems."""
    b = n_trajectories
    x0 = rng.uniform(*SPLIT_RANGE, size=(b, 1, 1))
    y0 = rng.uniform(*SPLIT_RANGE, size=(b, 1, 1))
    log_rho = rng.uniform(*np.log(RHO_RANGE), size=(b, 4))
    log_p = rng.uniform(*np.log(P_RANGE), size=(b, 4))
    vel = rng.uniform(-VELOCITY_MAX, VELOCITY_MAX, size=(2, b, 4))
    x, y = _cell_centres(nx), _cell_centres(ny)
    # Quadrant index 0..3: bit 0 set right of x0, bit 1 set above y0.
    quadrant = (x[None, :, None] >= x0).astype(np.intp) + 2 * (y[None, None, :] >= y0)
    pick = np.arange(b)[:, None, None]
    return primitive_to_conserved(
        np.exp(log_rho)[pick, quadrant],
        vel[0][pick, quadrant],
        vel[1][pick, quadrant],
        np.exp(log_p)[pick, quadrant],
        gamma,
    )


def _cell_centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def _validate(req: SimulationRequest, dataset_name: str) -> float:
    params = req.checked_parameters(
        dataset_name, {"gamma": DEFAULT_GAMMA}, (MIN_RESOLUTION, MIN_RESOLUTION)
    )
    if not params["gamma"] > 1.0:
        raise ValueError(f"{dataset_name}: gamma must be > 1, got {params['gamma']}")
    return params["gamma"]


def _simulate(req: SimulationRequest, bc: str, dataset_name: str) -> WellTrajectories:
    gamma = _validate(req, dataset_name)
    nx, ny = req.resolution
    rng = np.random.default_rng(req.seed)
    state0 = random_quadrant_state(rng, req.n_trajectories, nx, ny, gamma)
    req.report(1)  # snapshot 0 is the initial condition itself
    states = evolve(state0, gamma, bc, req.n_steps, on_snapshot=lambda _k, _u: req.report(1))
    return WellTrajectories(
        dataset_name=dataset_name,
        time=np.arange(req.n_steps) * SNAPSHOT_DT,
        coords={"x": _cell_centres(nx), "y": _cell_centres(ny)},
        t0_fields={
            "energy": states[ENERGY],
            "density": states[RHO],
            "pressure": pressure(states, gamma),
        },
        t1_fields={"momentum": np.stack((states[MX], states[MY]), axis=-1)},
        parameters={"gamma": gamma},
        boundary_conditions=[BoundarySpec("x", bc), BoundarySpec("y", bc)],
    )


def simulate_euler_periodic(req: SimulationRequest) -> WellTrajectories:
    """Random multi-quadrant Riemann problems with periodic boundaries."""
    return _simulate(req, "periodic", "euler_multi_quadrants_periodicBC")


def simulate_euler_open(req: SimulationRequest) -> WellTrajectories:
    """Random multi-quadrant Riemann problems with open (zero-gradient outflow) boundaries."""
    return _simulate(req, "open", "euler_multi_quadrants_openBC")


_DESCRIPTION = (
    "2D compressible Euler, ideal gas, random four-quadrant Riemann problems on [0,1]^2 "
    "({bc}); MUSCL-MC + HLLC finite volume, SSP-RK2, CFL 0.4; snapshots every 0.015."
)

GENERATORS: tuple[DatasetGenerator, ...] = (
    DatasetGenerator(
        name="euler_multi_quadrants_periodicBC",
        simulate=simulate_euler_periodic,
        parameter_sets=tuple({"gamma": g} for g in GAMMAS),
        default_steps=101,
        description=_DESCRIPTION.format(bc="periodic boundaries"),
    ),
    DatasetGenerator(
        name="euler_multi_quadrants_openBC",
        simulate=simulate_euler_open,
        parameter_sets=tuple({"gamma": g} for g in GAMMAS),
        default_steps=101,
        description=_DESCRIPTION.format(bc="open zero-gradient outflow boundaries"),
    ),
)
