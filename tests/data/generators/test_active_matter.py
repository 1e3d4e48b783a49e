"""Physics acceptance tests for the active-matter kinetic-theory generator (small grids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physok.data.errors import DataError
from physok.data.generate import GenerationConfig, generate_dataset
from physok.data.generators import active_matter
from physok.data.generators.active_matter import (
    GENERATORS,
    LENGTH,
    PARAMETER_SETS,
    SNAPSHOT_INTERVAL,
    simulate_active_matter,
)
from physok.data.generators.base import SimulationRequest
from physok.data.registry import WELL_CHANNELS
from physok.data.well_format import WellTrajectories, flat_channel_names

RES = (24, 24)  # the smallest grid that holds every initial mode
DT, DR = 0.05, 0.05  # the model's diffusivities, restated independently of the module


@pytest.fixture(scope="module")
def run() -> WellTrajectories:
    """The first embedded parameter set (above threshold), 2 samples, t in [0, 5]."""
    return simulate_active_matter(SimulationRequest(2, RES, 21, seed=3))


def _grad(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral d/dx, d/dy of (..., X, Y) fields on the 10 x 10 box, built independently."""
    n = field.shape[-1]
    k = 2 * np.pi * np.fft.fftfreq(n, d=LENGTH / n)
    k[n // 2] = 0.0  # the Nyquist mode has no sign; the data hold none (dealiased)
    f = np.fft.fft2(field)
    return (
        np.fft.ifft2(1j * k[:, None] * f).real,
        np.fft.ifft2(1j * k[None, :] * f).real,
    )


def _order(out: WellTrajectories) -> np.ndarray:
    """Nematic order 2 |D - c I/2| / c per sample and snapshot (0 isotropic, 1 aligned)."""
    c, d = out.t0_fields["concentration"], out.t2_fields["D"]
    q11, q12 = d[..., 0, 0] - c / 2, d[..., 0, 1]
    return (2 * np.sqrt(q11**2 + q12**2) / c).mean(axis=(2, 3))


def _kinetic_energy(out: WellTrajectories) -> np.ndarray:
    return 0.5 * (out.t1_fields["velocity"] ** 2).sum(-1).mean(axis=(2, 3))


def test_fields_layout_and_metadata(run: WellTrajectories) -> None:
    run.validate()
    assert run.dataset_name == "active_matter"
    assert list(run.t0_fields) == ["concentration"]
    assert list(run.t1_fields) == ["velocity"]
    assert list(run.t2_fields) == ["D", "E"]
    assert run.t2_fields["D"].shape == (2, 21, *RES, 2, 2)
    names = flat_channel_names(run.field_groups)
    assert len(names) == 11 and names == list(WELL_CHANNELS["active_matter"])
    arrays = [*run.t0_fields.values(), *run.t1_fields.values(), *run.t2_fields.values()]
    assert all(a.dtype == np.float64 for a in arrays)
    np.testing.assert_allclose(run.time, np.arange(21) * SNAPSHOT_INTERVAL)
    np.testing.assert_allclose(run.coords["x"], np.arange(24) * LENGTH / 24)
    assert run.parameters == PARAMETER_SETS[0] and run.parameters["beta"] == 0.8
    assert [(b.dim, b.bc_type) for b in run.boundary_conditions] == [
        ("x", "periodic"),
        ("y", "periodic"),
    ]
    (gen,) = GENERATORS
    assert gen.name == "active_matter" and gen.default_steps == 81
    for p in gen.parameter_sets:  # real sets only
        assert p["alpha"] in {-1, -2, -3, -4, -5} and p["beta"] == 0.8
        assert p["zeta"] in {1, 3, 5, 7, 9, 11, 13, 15, 17}


def test_velocity_divergence_free_and_strain_is_its_symmetric_gradient(
    run: WellTrajectories,
) -> None:
    u = run.t1_fields["velocity"]
    ux, uy = _grad(u[..., 0])
    vx, vy = _grad(u[..., 1])
    scale = np.sqrt(np.mean(ux**2 + uy**2 + vx**2 + vy**2))
    assert scale > 1e-4  # a flow has developed
    assert np.abs(ux + vy).max() < 1e-10 * scale
    e = run.t2_fields["E"]
    np.testing.assert_allclose(e[..., 0, 0], ux, atol=1e-10 * scale)
    np.testing.assert_allclose(e[..., 1, 1], vy, atol=1e-10 * scale)
    np.testing.assert_allclose(e[..., 0, 1], 0.5 * (uy + vx), atol=1e-10 * scale)
    np.testing.assert_array_equal(e[..., 0, 1], e[..., 1, 0])


def test_orientation_tensor_symmetric_with_trace_equal_to_concentration(
    run: WellTrajectories,
) -> None:
    d, c = run.t2_fields["D"], run.t0_fields["concentration"]
    np.testing.assert_array_equal(d[..., 0, 1], d[..., 1, 0])
    # D = <pp> and |p| = 1, so tr D = <1> = c exactly.
    np.testing.assert_allclose(d[..., 0, 0] + d[..., 1, 1], c, rtol=0, atol=1e-12)


def test_concentration_mean_conserved_and_positive(run: WellTrajectories) -> None:
    c = run.t0_fields["concentration"]
    means = c.mean(axis=(2, 3))
    np.testing.assert_allclose(means, 1.0, rtol=0, atol=1e-12)
    # dc/dt + u.grad c = dT lap c: a maximum principle (up to the spectral truncation).
    lo, hi = c[:, 0].min(), c[:, 0].max()
    assert c.min() > 0.0
    assert c.min() > lo - 1e-3 and c.max() < hi + 1e-3


def test_isotropic_state_persists_below_threshold_and_orders_above() -> None:
    # sigma(0) = zeta - (alpha - zeta beta / 2) / (4 + beta / 2) - 4 dR: -0.068 below, +1.12 above
    below = {"alpha": -0.1, "beta": 0.8, "zeta": 0.1}
    above = {"alpha": -1.0, "beta": 0.8, "zeta": 1.0}
    res = {
        name: simulate_active_matter(SimulationRequest(2, RES, 41, seed=5, parameters=p))
        for name, p in (("below", below), ("above", above))
    }
    s_below, s_above = _order(res["below"]), _order(res["above"])
    ke_below, ke_above = _kinetic_energy(res["below"]), _kinetic_energy(res["above"])
    assert (s_below[:, -1] < 0.5 * s_below[:, 0]).all()  # order decays: stays isotropic
    assert (ke_below[:, -1] < ke_below[:, 0]).all()
    assert (s_above[:, -1] > 0.1).all() and (s_above[:, -1] > 10 * s_above[:, 0]).all()
    assert (ke_above[:, -1] > 100 * ke_above[:, 0]).all()  # active flow grows


@pytest.mark.parametrize(
    ("alpha", "zeta"), [(-1.0, 1.0), (-3.0, 0.1), (-0.1, 0.1), (2.0, 0.5)]
)
def test_linear_growth_rate_of_the_isotropic_state(alpha: float, zeta: float) -> None:
    """A small shear-mode perturbation of the isotropic state grows at the derived rate."""
    beta, n, eps = 0.8, 16, 1e-7
    kin = active_matter._Kinetics(n, alpha, beta, zeta)
    x = np.arange(n) * LENGTH / n
    k = 2 * np.pi / LENGTH
    theta = kin.theta[:, None, None]
    psi = 1 / (2 * np.pi) + eps * np.cos(k * x)[None, :, None] * np.sin(2 * theta)
    psi = np.broadcast_to(psi, (1, theta.size, n, n))
    state = np.fft.rfftn(psi, axes=(1, 2, 3))
    amp0 = np.abs(state[0, 1, 1, 0])
    steps, n_sub = 8, 4
    stepper = active_matter._stepper(n, n_sub)
    for _ in range(steps * n_sub):
        state = stepper.step(state, kin.rhs)
    t = steps * SNAPSHOT_INTERVAL
    measured = np.log(np.abs(state[0, 1, 1, 0]) / amp0) / t
    expected = zeta - (alpha - zeta * beta / 2) / (4 + beta / 2) - 4 * DR - DT * k**2
    assert measured == pytest.approx(expected, abs=1e-4)


def test_deterministic_per_seed() -> None:
    req = SimulationRequest(1, RES, 4, seed=11)
    a, b = simulate_active_matter(req), simulate_active_matter(req)
    np.testing.assert_array_equal(a.t2_fields["D"], b.t2_fields["D"])
    other = simulate_active_matter(SimulationRequest(1, RES, 4, seed=12))
    assert not np.array_equal(a.t2_fields["D"], other.t2_fields["D"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": (16, 16)}, "resolution must be at least 24"),
        ({"resolution": (32, 24)}, "resolution must be square"),
        ({"parameters": {"zeta": -1.0}}, "zeta"),
        ({"parameters": {"beta": -0.5}}, "beta"),
        ({"parameters": {"gamma": 1.0}}, "unknown parameter"),
        ({"n_steps": 1}, "n_steps"),
        (
            {"resolution": (32, 32), "parameters": {"alpha": -1.0, "zeta": 3.0}},
            r"resolution 32x32 is too coarse for alpha = -1, beta = 0.8, zeta = 3: .* at least "
            r"34x34",
        ),
    ],
)
def test_bad_options_name_the_option(kwargs: dict, match: str) -> None:
    base = {"n_trajectories": 1, "resolution": RES, "n_steps": 3, "seed": 0}
    with pytest.raises(ValueError, match=match):
        simulate_active_matter(SimulationRequest(**{**base, **kwargs}))


def test_grid_guard_accepts_the_embedded_sets_and_sizes_the_real_ones() -> None:
    """The embedded sets run at the smallest grid; a suggested grid resolves its set."""
    for p in PARAMETER_SETS:
        assert active_matter.min_resolution_for(p["alpha"], p["beta"], p["zeta"]) == RES[0]
    for p in active_matter.REAL_PARAMETER_SETS:
        n = active_matter.min_resolution_for(p["alpha"], p["beta"], p["zeta"])
        k_c = 2 * np.pi / LENGTH * (n // 3)
        growth = active_matter.isotropic_growth_rate(p["alpha"], p["beta"], p["zeta"], k_c)
        coarser = 2 * np.pi / LENGTH * ((n - 2) // 3)
        assert n % 2 == 0 and growth <= active_matter.MAX_GROWTH_AT_CUTOFF
        if n > RES[0]:  # the next even size down would not
            assert active_matter.isotropic_growth_rate(
                p["alpha"], p["beta"], p["zeta"], coarser
            ) > active_matter.MAX_GROWTH_AT_CUTOFF
        assert n <= 256  # the real data's grid resolves every real set


def test_generation_rejects_an_unsupported_resolution_by_name(tmp_path: Path) -> None:
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3)
    with pytest.raises(DataError, match="active_matter: resolution must be at least 24x24"):
        generate_dataset("active_matter", tmp_path, cfg, progress=False)
    assert not (tmp_path / "active_matter").exists()
