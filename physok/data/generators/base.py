"""What every embedded physics generator provides, and how a dataset is written from it.

A generator is a real numerical solver, batched over trajectories, integrating in float64.
It returns `WellTrajectories` for one parameter set; `generate_dataset` turns that into
`<base>/<name>/data/{train,valid,test}/*.hdf5` plus `stats.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from physok.data.well_format import WellTrajectories

ProgressFn = Callable[[int], None]
"""Called by a solver with the number of snapshots it just completed (for progress bars)."""


@dataclass(frozen=True)
class SimulationRequest:
    """One batch of trajectories to simulate with one parameter set."""

    n_trajectories: int
    resolution: tuple[int, int]  # (X, Y) grid points, x first as in The Well
    n_steps: int  # snapshots written, including t = 0
    seed: int
    parameters: dict[str, float] = field(default_factory=dict)
    progress: ProgressFn | None = None

    def report(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress(n)


@dataclass(frozen=True)
class DatasetGenerator:
    """A registered embedded dataset: its solver and the parameter sets it sweeps."""

    name: str
    simulate: Callable[[SimulationRequest], WellTrajectories]
    # One Well file per parameter set (as in the real Well, e.g. one file per gamma).
    parameter_sets: tuple[dict[str, float], ...]
    default_steps: int
    description: str

    def file_name(self, parameters: dict[str, float]) -> str:
        parts = [self.name] + [f"{k}_{_fmt(v)}" for k, v in parameters.items()]
        return "_".join(parts) + ".hdf5"


def _fmt(value: float) -> str:
    return f"{value:g}".replace("+", "")
