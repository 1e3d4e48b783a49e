"""Small synthetic Well datasets (random values, every field order) for data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from physok.data.generate import GenerationConfig, generate_datasets
from physok.data.generators import GENERATORS
from physok.data.stats import compute_stats, write_stats_yaml
from physok.data.well_format import BoundarySpec, WellTrajectories, write_well_file


def make_trajectories(
    rng: np.random.Generator,
    n_traj: int = 3,
    n_steps: int = 12,
    grid: tuple[int, int] = (8, 6),
    gamma: float = 1.4,
    name: str = "synthetic",
) -> WellTrajectories:
    x, y = grid
    return WellTrajectories(
        dataset_name=name,
        time=np.arange(n_steps) * 0.5,
        coords={"x": (np.arange(x) + 0.5) / x, "y": (np.arange(y) + 0.5) / y},
        t0_fields={
            "density": rng.uniform(0.5, 2.0, (n_traj, n_steps, x, y)),
            "pressure": rng.normal(size=(n_traj, n_steps, x, y)),
        },
        t1_fields={"velocity": rng.normal(size=(n_traj, n_steps, x, y, 2))},
        t2_fields={"D": rng.normal(size=(n_traj, n_steps, x, y, 2, 2))},
        parameters={"gamma": gamma, "Reynolds": 100.0},
        boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "wall")],
    )


def write_synthetic_dataset(base: Path, seed: int = 0, n_steps: int = 12) -> Path:
    rng = np.random.default_rng(seed)
    root = base / "synthetic"
    for split, gammas in (("train", (1.4, 1.13)), ("valid", (1.4,)), ("test", (1.76,))):
        for g in gammas:
            traj = make_trajectories(rng, n_steps=n_steps, gamma=g)
            write_well_file(root / "data" / split / f"synthetic_gamma_{g}.hdf5", traj)
    write_stats_yaml(root / "stats.yaml", compute_stats(root / "data" / "train"))
    return root


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> Path:
    return write_synthetic_dataset(tmp_path)


@pytest.fixture
def synthetic_factory() -> Callable[..., Path]:
    """`factory(base, seed=0, n_steps=12)` writes a synthetic dataset under base."""
    return write_synthetic_dataset


@pytest.fixture
def trajectories_factory() -> Callable[..., WellTrajectories]:
    """`factory(rng, n_traj=3, n_steps=12, grid=(8, 6), ...)` builds random trajectories."""
    return make_trajectories


@pytest.fixture(scope="session")
def embedded_config() -> GenerationConfig:
    """Small but real: 32x32, 3 trajectories (one per split), 12 snapshots."""
    return GenerationConfig(resolution=(32, 32), trajectories=3, steps=12, seed=0)


@pytest.fixture(scope="session")
def embedded_base(
    tmp_path_factory: pytest.TempPathFactory, embedded_config: GenerationConfig
) -> Path:
    """Every embedded dataset, generated once per session at a small size."""
    base = tmp_path_factory.mktemp("embedded")
    generate_datasets(sorted(GENERATORS), base, embedded_config, progress=False)
    return base
