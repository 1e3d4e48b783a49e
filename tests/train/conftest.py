"""Generated Euler data and small tokeniser settings shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from physok.data.generate import GenerationConfig, generate_dataset
from physok.data.well_format import BoundarySpec, WellTrajectories, write_well_file

EULER = "euler_multi_quadrants_periodicBC"
# A tokeniser small enough for quick SOAP steps on 2 cores; the scale sets stay the paper's, so
# grids must be divisible by 2*4*4 = 32.
SMALL_MODEL = ["--set", "model.channels=[4,8,8]", "--set", "model.norm_groups=2"]


@pytest.fixture(scope="session")
def euler_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real (simulated) Euler data at 32x32: 6 train, 1 valid, 1 test trajectories of 14
    snapshots, so 30 training and 5 validation windows of 10 frames."""
    base = tmp_path_factory.mktemp("train_data")
    generate_dataset(
        EULER,
        base,
        GenerationConfig(resolution=(32, 32), trajectories=8, steps=14, seed=0),
        progress=False,
    )
    return base


@pytest.fixture(scope="session")
def mixed_base(tmp_path_factory: pytest.TempPathFactory, euler_base: Path) -> Path:
    """The Euler data next to a second, random-valued dataset `noise_flow` (tracer, pressure;
    32x32), for multi-dataset mixing: different channels, so a mixed batch would be detected."""
    base = tmp_path_factory.mktemp("mixed_data")
    (base / EULER).symlink_to(euler_base / EULER, target_is_directory=True)
    rng = np.random.default_rng(0)
    for split, n_traj in (("train", 2), ("valid", 1)):
        traj = WellTrajectories(
            dataset_name="noise_flow",
            time=np.arange(12) * 0.1,
            coords={"x": (np.arange(32) + 0.5) / 32, "y": (np.arange(32) + 0.5) / 32},
            t0_fields={
                "tracer": rng.normal(size=(n_traj, 12, 32, 32)),
                "pressure": rng.uniform(1, 2, size=(n_traj, 12, 32, 32)),
            },
            boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
        )
        write_well_file(base / "noise_flow" / "data" / split / "noise_flow.hdf5", traj)
    return base


@pytest.fixture
def cli_args() -> Callable[..., list[str]]:
    """`cli_args(base, run_dir, *extra, small=True)`: argv for `physok.train tokeniser` on CPU,
    no progress bar, 2 validation windows, and (small=True) the small tokeniser."""

    def build(base: Path, run_dir: Path, *extra: str, small: bool = True) -> list[str]:
        args = [
            "tokeniser",
            "--data-dir",
            str(base),
            "--datasets",
            EULER,
            "--run-dir",
            str(run_dir),
            "--device",
            "cpu",
            "--set",
            "progress=false",
            "--set",
            "val_windows=2",
        ]
        return args + (SMALL_MODEL if small else []) + list(extra)

    return build


# Rollout stage: the small tokeniser above and a one-block processor of width 16.
TINY_PROCESSOR = [
    *("--set", "processor.dim=16", "--set", "processor.depth=1", "--set", "processor.heads=2"),
    *("--set", "processor.mlp_hidden=32", "--set", "processor.norm_groups=2"),
]


@pytest.fixture
def rollout_args() -> Callable[..., list[str]]:
    """`rollout_args(base, run_dir, *extra, small=True)`: argv for `physok.train rollout` on
    CPU, no progress bar, 2 validation windows, epochs of 1 step with 1 warmup and 1 cooldown
    epoch (so runs of >= 2 steps have a valid schedule), and (small=True) the small tokeniser
    with a tiny processor."""

    def build(base: Path, run_dir: Path, *extra: str, small: bool = True) -> list[str]:
        args = [
            "rollout",
            *("--data-dir", str(base), "--datasets", EULER, "--run-dir", str(run_dir)),
            *("--device", "cpu", "--set", "progress=false", "--set", "val_windows=2"),
            *("--set", "epoch_steps=1", "--set", "cooldown_epochs=1"),
        ]
        return args + ([*SMALL_MODEL, *TINY_PROCESSOR] if small else []) + list(extra)

    return build
