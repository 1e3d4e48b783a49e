"""Physics acceptance tests for the periodic shear-flow generator (small grids, short runs)."""

from __future__ import annotations

import numpy as np
import pytest

from physok.data.generators.base import SimulationRequest
from physok.data.generators.shear_flow import (
    GENERATORS,
    PARAMETER_SETS,
    SNAPSHOT_INTERVAL,
    simulate_shear_flow,
)
from physok.data.well_format import WellTrajectories

RES = (32, 32)
LX, LY = 1.0, 2.0


@pytest.fixture(scope="module")
def runs() -> dict[int, WellTrajectories]:
    """Two parameter sets (low Re / diffusive tracer and high Re / Sc = 1), 3 samples each."""
    return {
        i: simulate_shear_flow(
            SimulationRequest(3, RES, 16, seed=7 + i, parameters=PARAMETER_SETS[i])
        )
        for i in (0, 1)
    }


def _k(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-FFT wavenumbers (x, y) and the 2/3-rule mask, built independently of the solver."""
    nx, ny = shape
    kx = 2 * np.pi * np.fft.fftfreq(nx, d=LX / nx)[:, None]
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=LY / ny)[None, :]
    mx = np.abs(np.fft.fftfreq(nx, d=1.0 / nx))[:, None] <= nx // 3
    my = np.abs(np.fft.fftfreq(ny, d=1.0 / ny))[None, :] <= ny // 3
    return kx, ky, mx & my


def test_shapes_names_and_metadata(runs: dict[int, WellTrajectories]) -> None:
    out = runs[0]
    out.validate()
    assert out.dataset_name == "shear_flow"
    assert list(out.t0_fields) == ["tracer", "pressure"]
    assert list(out.t1_fields) == ["velocity"]
    assert out.t0_fields["tracer"].shape == (3, 16, *RES)
    assert out.t1_fields["velocity"].shape == (3, 16, *RES, 2)
    assert all(a.dtype == np.float64 for a in (*out.t0_fields.values(), out.t1_fields["velocity"]))
    np.testing.assert_allclose(out.time, np.arange(16) * SNAPSHOT_INTERVAL)
    assert out.coords["x"].min() > 0.0 and out.coords["x"].max() < LX
    assert out.coords["y"].min() > -1.0 and out.coords["y"].max() < 1.0
    np.testing.assert_allclose(np.diff(out.coords["x"]), LX / RES[0])
    assert out.parameters == PARAMETER_SETS[0]
    assert [(b.dim, b.bc_type) for b in out.boundary_conditions] == [
        ("x", "periodic"),
        ("y", "periodic"),
    ]
    (gen,) = GENERATORS
    assert gen.name == "shear_flow" and gen.default_steps == 200
    assert len(gen.parameter_sets) >= 4


def test_velocity_is_divergence_free_and_momentum_conserved(
    runs: dict[int, WellTrajectories],
) -> None:
    for out in runs.values():
        vel = out.t1_fields["velocity"]
        kx, ky, _ = _k(RES)
        u_hat, v_hat = np.fft.fft2(vel[..., 0]), np.fft.fft2(vel[..., 1])
        div = np.fft.ifft2(1j * kx * u_hat + 1j * ky * v_hat).real
        grad = np.sqrt(
            sum(
                np.mean(np.fft.ifft2(1j * k * f).real ** 2)
                for k in (kx, ky)
                for f in (u_hat, v_hat)
            )
        )
        assert np.abs(div).max() < 1e-12 * grad
        mean = vel.mean(axis=(2, 3))  # (B, T, 2): a periodic flow without forcing keeps it
        assert np.abs(mean - mean[:, :1]).max() < 1e-13


def test_tracer_mean_is_conserved(runs: dict[int, WellTrajectories]) -> None:
    for out in runs.values():
        s = out.t0_fields["tracer"]
        mean = s.mean(axis=(2, 3))
        assert np.abs(mean - mean[:, :1]).max() < 1e-12 * np.sqrt(np.mean(s**2))


def test_pressure_has_zero_mean_and_solves_poisson(runs: dict[int, WellTrajectories]) -> None:
    kx, ky, mask = _k(RES)
    for out in runs.values():
        p = out.t0_fields["pressure"]
        u, v = out.t1_fields["velocity"][..., 0], out.t1_fields["velocity"][..., 1]
        assert np.abs(p.mean(axis=(2, 3))).max() < 1e-13 * np.abs(p).max()
        lap_p = -(kx**2 + ky**2) * np.fft.fft2(p)
        # -d_i d_j (u_i u_j) in Fourier space is +k_i k_j (u_i u_j)_hat; the solver represents
        # p on the dealiased (2/3-rule) modes, so compare there.
        rhs = (
            kx**2 * np.fft.fft2(u * u)
            + 2 * kx * ky * np.fft.fft2(u * v)
            + ky**2 * np.fft.fft2(v * v)
        )
        residual = np.abs(mask * (lap_p - rhs)).max()
        assert residual < 1e-11 * np.abs(mask * rhs).max()
        assert np.abs(~mask * np.fft.fft2(p)).max() < 1e-12 * np.abs(np.fft.fft2(p)).max()


def test_kinetic_energy_decays_without_forcing(runs: dict[int, WellTrajectories]) -> None:
    for out in runs.values():
        vel = out.t1_fields["velocity"]
        energy = 0.5 * np.mean(np.sum(vel**2, axis=-1), axis=(2, 3))  # (B, T)
        increase = np.diff(energy, axis=1) / energy[:, :1]
        assert increase.max() < 1e-12
        assert (energy[:, -1] < energy[:, 0]).all()


def test_flow_evolves_and_tracer_is_advected(runs: dict[int, WellTrajectories]) -> None:
    out = runs[1]
    s = out.t0_fields["tracer"]
    # The tracer starts as the x-independent shear profile; advection by the seeded u_y must
    # give it x-structure.
    assert np.abs(np.diff(s[:, 0], axis=1)).max() < 1e-12
    assert np.abs(np.diff(s[:, -1], axis=1)).max() > 1e-2


def test_deterministic_per_seed() -> None:
    req = SimulationRequest(2, (16, 16), 4, seed=3, parameters=PARAMETER_SETS[2])
    a, b = simulate_shear_flow(req), simulate_shear_flow(req)
    for name in ("tracer", "pressure"):
        np.testing.assert_array_equal(a.t0_fields[name], b.t0_fields[name])
    np.testing.assert_array_equal(a.t1_fields["velocity"], b.t1_fields["velocity"])
    other = simulate_shear_flow(
        SimulationRequest(2, (16, 16), 4, seed=4, parameters=PARAMETER_SETS[2])
    )
    assert not np.allclose(a.t1_fields["velocity"], other.t1_fields["velocity"])


def test_progress_is_reported_per_snapshot() -> None:
    calls: list[int] = []
    simulate_shear_flow(SimulationRequest(1, (16, 16), 5, seed=0, progress=calls.append))
    assert sum(calls) == 5


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"resolution": (8, 32)}, "resolution"),
        ({"n_steps": 1}, "n_steps"),
        ({"parameters": {"Reynolds": 1e4, "Mach": 0.1}}, "Mach"),
        ({"parameters": {"Reynolds": -1.0}}, "Reynolds"),
    ],
)
def test_invalid_requests_name_the_option(kwargs: dict, option: str) -> None:
    base = {"n_trajectories": 1, "resolution": (16, 16), "n_steps": 3, "seed": 0}
    with pytest.raises(ValueError, match=option):
        simulate_shear_flow(SimulationRequest(**{**base, **kwargs}))
