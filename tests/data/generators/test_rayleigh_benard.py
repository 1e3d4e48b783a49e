"""Acceptance tests for the Rayleigh–Bénard generator: onset threshold, Nusselt number,
incompressibility, wall conditions, a consistent pressure, format and determinism.

Small grids (32 x 16 / 32 x 32) keep the whole file to a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from physok.data.generators import rayleigh_benard as rb
from physok.data.generators.base import SimulationRequest
from physok.data.well_format import BoundarySpec


def _simulate(ra: float, pr: float, res=(32, 32), n_steps=3, n_traj=2, seed=0, spin_up=0.0):
    req = SimulationRequest(n_traj, res, n_steps, seed, {"Rayleigh": ra, "Prandtl": pr})
    return rb.simulate_rayleigh_benard(req, spin_up=spin_up)


def _kinetic_energy(traj) -> np.ndarray:
    """Domain-mean kinetic energy per (trajectory, snapshot)."""
    return 0.5 * np.mean(np.sum(traj.t1_fields["velocity"] ** 2, axis=-1), axis=(2, 3))


def _nusselt(traj) -> np.ndarray:
    """Nu = (<v b> - kappa <db/dy>) / kappa, volume mean; <db/dy> = b_top - b_bottom = -1.

    So Nu = 1 + <v b> / kappa, with kappa = (Ra Pr)^(-1/2); exactly 1 for pure conduction.
    """
    kappa = 1.0 / math.sqrt(traj.parameters["Rayleigh"] * traj.parameters["Prandtl"])
    b, v = traj.t0_fields["buoyancy"], traj.t1_fields["velocity"][..., 1]
    return 1.0 + np.mean(v * b, axis=(2, 3)) / kappa


def _ddx(f: np.ndarray) -> np.ndarray:
    """Spectral x-derivative along axis 2 (fields are band-limited, so this is exact)."""
    nx = f.shape[2]
    k = 2.0 * np.pi * np.fft.rfftfreq(nx, d=rb.LENGTH_X / nx)
    shape = (1,) * 2 + (k.size,) + (1,) * (f.ndim - 3)
    return np.fft.irfft(1j * k.reshape(shape) * np.fft.rfft(f, axis=2), n=nx, axis=2)


def _ddy_walls(f: np.ndarray, h: float) -> np.ndarray:
    """Central y-derivative (last axis) on the interior nodes with zero wall values."""
    g = np.pad(f, [(0, 0)] * (f.ndim - 1) + [(1, 1)])
    return (g[..., 2:] - g[..., :-2]) / (2.0 * h)


@pytest.fixture(scope="module")
def convecting():
    """Ra = 1e5 from the perturbed conduction state, t in [0, 18]: onset near t = 7."""
    return _simulate(1e5, 1.0, res=(32, 32), n_steps=73)


def test_subcritical_perturbations_decay_to_conduction():
    # Ra = 1000 < Ra_c ~ 1708 (no-slip): the noise stirs a weak flow that then dies out.
    traj = _simulate(1000.0, 1.0, res=(32, 16), n_steps=161)  # t in [0, 40]
    ke = _kinetic_energy(traj)
    peak = ke.argmax(axis=1)
    assert np.all(peak < 20)
    for i, p in enumerate(peak):
        assert np.all(np.diff(ke[i, p:]) < 0.0), "kinetic energy must decrease after its peak"
    assert np.all(ke[:, -1] < 1e-4 * ke.max(axis=1))
    assert np.all(ke[:, -1] < 1e-10)

    y = traj.coords["y"]
    b, p = traj.t0_fields["buoyancy"][:, -1], traj.t0_fields["pressure"][:, -1]
    assert np.abs(b - (1.0 - y)).max() < 1e-4  # back to the linear conduction profile
    # Hydrostatic balance dp/dy = b with zero mean: p = y - y^2/2 - 1/3 (to the h^2 of the
    # trapezoidal mean that fixes the gauge).
    h = y[0]
    assert np.abs(p - (y - y**2 / 2 - 1.0 / 3.0)).max() < h**2
    assert np.allclose(_nusselt(traj)[:, -1], 1.0, atol=1e-6)


def test_supercritical_convection_raises_nusselt(convecting):
    nu = _nusselt(convecting)
    assert np.allclose(nu[:, 0], 1.0, atol=0.02), "Nu must start at the conductive value 1"
    late = convecting.time >= 14.0
    assert late.sum() >= 16
    assert np.all(nu[:, late].mean(axis=1) > 2.0), nu[:, late].mean(axis=1)
    assert np.all(nu[:, late].min(axis=1) > 1.5)
    ke = _kinetic_energy(convecting)
    assert np.all(ke[:, late].min(axis=1) > 1e3 * ke[:, 1])


def test_velocity_is_divergence_free(convecting):
    # The solver's own operators (spectral x, central y, zero normal velocity on the walls):
    # u = dpsi/dy, v = -dpsi/dx make D_x u + D_y v vanish to round-off.
    u, v = convecting.t1_fields["velocity"][..., 0], convecting.t1_fields["velocity"][..., 1]
    h = convecting.coords["y"][0]
    div = _ddx(u) + _ddy_walls(v, h)
    scale = np.abs(_ddx(u)).max()
    assert scale > 0.1
    assert np.abs(div).max() < 1e-10 * scale


def test_wall_values(convecting):
    # Stored nodes are interior (y = h ... 1 - h); extrapolate quadratically to the walls. The
    # thermal boundary layer (~1/(2 Nu) ~ 0.1) spans only ~3 nodes at Y = 32, hence the bounds
    # (measured: ~8% of the peak speed for u, ~0.05 for b).
    y = convecting.coords["y"]
    assert np.allclose(y, np.arange(1, y.size + 1) / (y.size + 1))
    late = convecting.time >= 14.0
    vel = convecting.t1_fields["velocity"][:, late]
    b = convecting.t0_fields["buoyancy"][:, late]

    def wall(f):
        bottom = 3.0 * f[..., 0] - 3.0 * f[..., 1] + f[..., 2]
        top = 3.0 * f[..., -1] - 3.0 * f[..., -2] + f[..., -3]
        return bottom, top

    speed = np.abs(vel).max()
    for comp in range(2):
        bottom, top = wall(vel[..., comp])
        assert np.abs(bottom).max() < 0.15 * speed
        assert np.abs(top).max() < 0.15 * speed
    bottom, top = wall(b)
    assert np.abs(bottom - 1.0).max() < 0.1  # hot bottom wall, b = 1
    assert np.abs(top).max() < 0.1  # cold top wall, b = 0
    assert b.min() > -0.05 and b.max() < 1.05  # maximum principle, up to discretisation


def test_pressure_satisfies_momentum_equations():
    # Pressure is diagnostic, so check it against the dynamics: the residual of both momentum
    # equations, with du/dt from two tiny steps, must be small next to the pressure gradient.
    # Compared on the kept (dealiased) x-modes, the only ones the solver evolves. What remains is
    # the O(h^2) mismatch of the vorticity-form and primitive-form stencils (~1% at Y = 64, ~3%
    # at Y = 32), hence the fine y-grid.
    nx, ny, ra = 32, 64, 1e5
    model = rb._Boussinesq(nx, ny, 1, ra, 1.0)
    noise = 0.1 * np.random.default_rng(0).standard_normal((nx, ny, 1))
    z = model.initial_state(noise * (model.y * (1.0 - model.y))[None, :, None])
    for _ in range(56):  # t = 14: convecting
        z = model.advance(z, rb.SNAPSHOT_DT)
    dt, states = 1e-3, [z]
    for _ in range(2):
        states.append(model.step(states[-1], dt)[0])
    # Fields as (B, T=1, X, Y), the layout the helpers above expect.
    (b, p, u, v), (_, _, u1, v1), (_, _, u2, v2) = (
        [f[:, None] for f in model.fields(s)] for s in states
    )
    u_t, v_t = (-3 * u + 4 * u1 - u2) / (2 * dt), (-3 * v + 4 * v1 - v2) / (2 * dt)

    h, nu = model.h, model.nu

    def lap(f):
        g = np.pad(f, [(0, 0), (0, 0), (0, 0), (1, 1)])
        return _ddx(_ddx(f)) + (g[..., 2:] - 2 * g[..., 1:-1] + g[..., :-2]) / h**2

    p_x, p_y = _ddx(p), np.gradient(p, h, axis=3, edge_order=2)
    res_x = u_t + u * _ddx(u) + v * _ddy_walls(u, h) + p_x - nu * lap(u)
    res_y = v_t + u * _ddx(v) + v * _ddy_walls(v, h) + p_y - nu * lap(v) - b

    def kept(f):
        spec = np.fft.rfft(f, axis=2)
        spec[:, :, model.k.size :] = 0.0
        return np.fft.irfft(spec, n=nx, axis=2)

    def rms(f):
        return float(np.sqrt(np.mean(f**2)))

    assert rms(kept(res_x)) < 0.03 * rms(p_x)
    assert rms(kept(res_y)) < 0.03 * rms(p_y - b)
    assert abs(p.mean()) < h  # zero domain mean (trapezoid incl. walls; interior mean: O(h))


def test_format_shapes_and_metadata():
    traj = _simulate(1e5, 2.0, res=(32, 16), n_steps=4, n_traj=3, spin_up=1.0)
    traj.validate()
    assert traj.dataset_name == "rayleigh_benard"
    assert list(traj.t0_fields) == ["buoyancy", "pressure"]
    assert list(traj.t1_fields) == ["velocity"]
    assert not traj.t2_fields
    assert traj.t0_fields["buoyancy"].shape == (3, 4, 32, 16)
    assert traj.t1_fields["velocity"].shape == (3, 4, 32, 16, 2)
    assert all(
        a.dtype == np.float64 for a in (*traj.t0_fields.values(), traj.t1_fields["velocity"])
    )
    assert traj.boundary_conditions == [BoundarySpec("x", "periodic"), BoundarySpec("y", "wall")]
    assert traj.parameters == {"Rayleigh": 1e5, "Prandtl": 2.0}
    # True simulation time: spin-up of 1.0 then snapshots every 0.25.
    assert np.allclose(traj.time, 1.0 + 0.25 * np.arange(4))
    assert np.allclose(np.diff(traj.coords["x"]), 4.0 / 32)
    assert 0.0 < traj.coords["x"][0] < traj.coords["x"][-1] < 4.0
    assert np.allclose(traj.coords["y"], np.arange(1, 17) / 17)


def test_default_spin_up_and_progress():
    calls = []
    req = SimulationRequest(1, (16, 8), 3, 0, {"Rayleigh": 1e5}, progress=calls.append)
    traj = rb.simulate_rayleigh_benard(req)
    assert calls == [1, 1, 1]
    assert np.isclose(traj.time[0], rb.SPIN_UP)
    assert traj.parameters == {"Rayleigh": 1e5, "Prandtl": 1.0}
    assert all(np.isfinite(a).all() for a in (*traj.t0_fields.values(), traj.t1_fields["velocity"]))


def test_deterministic_per_seed():
    a = _simulate(1e5, 1.0, res=(16, 16), n_steps=5, seed=7, spin_up=8.0)
    b = _simulate(1e5, 1.0, res=(16, 16), n_steps=5, seed=7, spin_up=8.0)
    c = _simulate(1e5, 1.0, res=(16, 16), n_steps=5, seed=8, spin_up=8.0)
    for group in ("t0_fields", "t1_fields"):
        for name, arr in getattr(a, group).items():
            assert np.array_equal(arr, getattr(b, group)[name])
            assert not np.array_equal(arr, getattr(c, group)[name])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": (4, 16)}, "resolution"),
        ({"resolution": (32, 2)}, "resolution"),
        ({"n_steps": 1}, "n_steps"),
        ({"n_trajectories": 0}, "n_trajectories"),
        ({"parameters": {"Reynolds": 1e3}}, "Reynolds"),
        ({"parameters": {"Rayleigh": -1.0}}, "Rayleigh"),
    ],
)
def test_invalid_requests(kwargs, match):
    base = {"n_trajectories": 1, "resolution": (16, 8), "n_steps": 2, "seed": 0}
    with pytest.raises(ValueError, match=match):
        rb.simulate_rayleigh_benard(SimulationRequest(**{**base, **kwargs}))


def test_non_finite_solution_raises(monkeypatch):
    monkeypatch.setattr(rb, "NOISE", float("nan"))
    with pytest.raises(RuntimeError, match="non-finite"):
        _simulate(1e5, 1.0, res=(16, 8), n_steps=2, n_traj=1)


def test_registered_generator():
    (gen,) = rb.GENERATORS
    assert gen.name == "rayleigh_benard"
    assert gen.simulate is rb.simulate_rayleigh_benard
    assert gen.default_steps == 200
    assert len(gen.parameter_sets) >= 3
    for params in gen.parameter_sets:
        assert set(params) == {"Rayleigh", "Prandtl"}
        assert params["Rayleigh"] > 1708.0  # all convect
