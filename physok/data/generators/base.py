"""What every embedded physics generator provides, and how a dataset is written from it.

A generator is a real numerical solver, batched over trajectories, integrating in float64.
It returns `WellTrajectories` for one parameter set; `generate_dataset` turns that into
`<base>/<name>/data/{train,valid,test}/*.hdf5` plus `stats.yaml`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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

    def checked_parameters(
        self, dataset: str, defaults: Mapping[str, float], min_resolution: tuple[int, int]
    ) -> dict[str, float]:
        """Validate the options every solver shares; return parameters merged over `defaults`.

        Raises ValueError naming the option: resolution, n_steps, n_trajectories, or a
        parameter that is unknown or not finite. Solver-specific ranges are checked by the solver.
        """
        unknown = sorted(set(self.parameters) - set(defaults))
        if unknown:
            raise ValueError(
                f"{dataset}: unknown parameter(s) {unknown}; expected {sorted(defaults)}"
            )
        if len(self.resolution) != 2 or any(
            int(n) < m for n, m in zip(self.resolution, min_resolution, strict=True)
        ):
            raise ValueError(
                f"{dataset}: resolution must be at least {min_resolution[0]}x{min_resolution[1]} "
                f"(X x Y), got {self.resolution}"
            )
        if self.n_steps < 2:
            raise ValueError(
                f"{dataset}: n_steps must be >= 2 (snapshots including t = 0), got {self.n_steps}"
            )
        if self.n_trajectories < 1:
            raise ValueError(f"{dataset}: n_trajectories must be >= 1, got {self.n_trajectories}")
        merged = {name: float(v) for name, v in {**defaults, **self.parameters}.items()}
        for name, value in merged.items():
            if not math.isfinite(value):
                raise ValueError(f"{dataset}: parameter {name} must be finite, got {value}")
        return merged


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
