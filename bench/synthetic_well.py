"""Random Euler-like trajectories in The Well's layout, shared by the data benchmarks.

Kept apart from the benchmarks that import `the_well`, so the loader benchmarks collect on
machines without it (e.g. the GPU image).
"""

from __future__ import annotations

import numpy as np

from physok.data.well_format import BoundarySpec, WellTrajectories


def euler_like(rng: np.random.Generator, n_traj: int, steps: int, n: int) -> WellTrajectories:
    """`n_traj` trajectories of `steps` snapshots on an n x n grid: energy, density, pressure,
    momentum (2 components), uniform/normal random values, periodic boundaries."""
    shape = (n_traj, steps, n, n)
    return WellTrajectories(
        dataset_name="euler_multi_quadrants_periodicBC",
        time=np.arange(steps) * 0.015,
        coords={"x": (np.arange(n) + 0.5) / n, "y": (np.arange(n) + 0.5) / n},
        t0_fields={k: rng.uniform(0.1, 2.0, shape) for k in ("energy", "density", "pressure")},
        t1_fields={"momentum": rng.normal(size=(*shape, 2))},
        parameters={"gamma": 1.4},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
    )
