"""Physics acceptance tests for the Gray-Scott generator and its ETDRK4 integrator."""

from __future__ import annotations

import numpy as np
import pytest

from physok.data.generators import gray_scott
from physok.data.generators.base import SimulationRequest
from physok.data.generators.gray_scott import (
    GENERATORS,
    PARAMETER_SETS,
    PATTERNS,
    simulate_gray_scott,
)
from physok.data.generators.spectral import Etdrk4

RES = (32, 32)
# Concentrations obey a maximum principle (A in [0, 1], B >= 0); what the pseudo-spectral
# solution may overshoot at the real cell size is ~5e-4 (measured), so allow 2e-3.
TOL = 2e-3


@pytest.fixture(scope="module")
def all_sets() -> list:
    return [
        simulate_gray_scott(SimulationRequest(4, RES, 31, seed=i, parameters=p))
        for i, p in enumerate(PARAMETER_SETS)
    ]


def test_shapes_names_and_metadata(all_sets: list) -> None:
    out = all_sets[0]
    out.validate()
    assert out.dataset_name == "gray_scott_reaction_diffusion"
    assert list(out.t0_fields) == ["A", "B"]
    assert not out.t1_fields and not out.t2_fields
    assert out.t0_fields["A"].shape == (4, 31, *RES)
    np.testing.assert_allclose(out.time, np.arange(31) * 10.0)
    # Real cell size 2/128, centred at 0: a 32-point axis spans [-0.25, 0.25).
    for dim in ("x", "y"):
        np.testing.assert_allclose(np.diff(out.coords[dim]), 2.0 / 128)
        np.testing.assert_allclose(out.coords[dim].mean(), 0.0, atol=1e-15)
    assert [(b.dim, b.bc_type) for b in out.boundary_conditions] == [
        ("x", "periodic"),
        ("y", "periodic"),
    ]
    assert out.parameters == PARAMETER_SETS[0]
    (gen,) = GENERATORS
    assert gen.name == "gray_scott_reaction_diffusion" and gen.default_steps == 1001
    assert {tuple(p.values()) for p in gen.parameter_sets} == {
        tuple(p.values()) for p in PATTERNS.values()
    }


def test_concentrations_stay_in_physical_range(all_sets: list) -> None:
    for out in all_sets:
        a, b = out.t0_fields["A"], out.t0_fields["B"]
        assert a.min() > -TOL and a.max() < 1.0 + TOL, out.parameters
        assert b.min() > -TOL, out.parameters
        # B <= 1 is not invariant (a B seed on A ~ 1 first grows), but it stays bounded.
        assert b.max() < 1.25, out.parameters


@pytest.mark.parametrize("pattern", ["maze", "spots"])
def test_patterns_form_and_persist(pattern: str) -> None:
    out = simulate_gray_scott(SimulationRequest(4, RES, 41, seed=1, parameters=PATTERNS[pattern]))
    std_b = out.t0_fields["B"].std(axis=(2, 3))  # (samples, snapshots)
    # The uniform state (A, B) = (1, 0) has std 0; patterns keep a clear spatial contrast and
    # do not fade between t = 200 and t = 400.
    assert std_b[:, -1].min() > 0.04
    assert (std_b[:, -1] > 0.5 * std_b[:, 20]).all()


def test_etdrk4_matches_exact_solutions() -> None:
    lam = np.array([0.0, -1e-9, -0.5, -3.0, -40.0])
    # Linear decay is exact, including L = 0 and |L dt| tiny (the contour-integral regime).
    v = np.ones(lam.size)
    stepper = Etdrk4(lam, 0.5)
    for _ in range(8):
        v = stepper.step(v, np.zeros_like)
    np.testing.assert_allclose(v, np.exp(4.0 * lam), rtol=1e-13, atol=1e-300)

    # Bernoulli equation v' = -v + v^2, v(0) = 1/2: v(t) = 1 / (1 + e^t). Fourth order in dt.
    def error(dt: float) -> float:
        stepper = Etdrk4(np.array([-1.0]), dt)
        v = np.array([0.5])
        for _ in range(round(4.0 / dt)):
            v = stepper.step(v, np.square)
        return abs(v[0] - 1.0 / (1.0 + np.exp(4.0)))

    e1, e2 = error(0.5), error(0.25)
    assert e1 < 1e-5
    assert 12.0 < e1 / e2 < 20.0


def test_time_step_convergence(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(dt: float) -> np.ndarray:
        monkeypatch.setattr(gray_scott, "TIME_STEP", dt)
        req = SimulationRequest(2, RES, 6, seed=5, parameters=PATTERNS["maze"])
        return simulate_gray_scott(req).t0_fields["B"][:, -1]

    ref = run(0.25)
    e1 = np.sqrt(np.mean((run(1.0) - ref) ** 2))
    e2 = np.sqrt(np.mean((run(0.5) - ref) ** 2))
    # dt = 1 (the real data's step) is already accurate; halving it gains ~2^4.
    assert e1 < 1e-3 * ref.std()
    assert e1 / e2 > 8.0


def test_reaction_conserves_a_plus_b_without_feed() -> None:
    # With F = k = 0 the reaction only converts A into B and diffusion conserves means.
    out = simulate_gray_scott(
        SimulationRequest(3, RES, 11, seed=2, parameters={"F": 0.0, "k": 0.0})
    )
    total = (out.t0_fields["A"] + out.t0_fields["B"]).mean(axis=(2, 3))
    assert np.abs(total - total[:, :1]).max() < 1e-13
    assert not np.allclose(out.t0_fields["B"][:, -1], out.t0_fields["B"][:, 0])


def test_deterministic_per_seed() -> None:
    req = SimulationRequest(3, (16, 16), 4, seed=11, parameters=PATTERNS["spots"])
    a, b = simulate_gray_scott(req), simulate_gray_scott(req)
    for name in ("A", "B"):
        np.testing.assert_array_equal(a.t0_fields[name], b.t0_fields[name])
    other = simulate_gray_scott(
        SimulationRequest(3, (16, 16), 4, seed=12, parameters=PATTERNS["spots"])
    )
    assert not np.allclose(a.t0_fields["B"], other.t0_fields["B"])


def test_progress_is_reported_per_snapshot() -> None:
    calls: list[int] = []
    simulate_gray_scott(SimulationRequest(1, (16, 16), 4, seed=0, progress=calls.append))
    assert sum(calls) == 4


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"resolution": (32, 8)}, "resolution"),
        ({"n_steps": 1}, "n_steps"),
        ({"parameters": {"F": 0.03, "kill": 0.06}}, "kill"),
        ({"parameters": {"F": -0.1}}, "F"),
    ],
)
def test_invalid_requests_name_the_option(kwargs: dict, option: str) -> None:
    base = {"n_trajectories": 1, "resolution": (16, 16), "n_steps": 3, "seed": 0}
    with pytest.raises(ValueError, match=option):
        simulate_gray_scott(SimulationRequest(**{**base, **kwargs}))
