"""Window reading: physok's WellWindowDataset vs the_well's WellDataset on the same files.

Run: pytest bench/ --benchmark-only -k reader. Both read every window of a train split once
(10-snapshot windows, 5 Euler-like channels); `extra_info` holds windows/s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_well import euler_like
from the_well.data import WellDataset

from physok.data.reader import WellWindowDataset
from physok.data.well_format import write_well_file

WINDOW = 10


@pytest.fixture(scope="module", params=[64, 128], ids=lambda n: f"{n}x{n}")
def dataset_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    n = request.param
    root = tmp_path_factory.mktemp(f"bench_{n}") / "euler_multi_quadrants_periodicBC"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_well_file(root / "data" / "train" / f"f{i}.hdf5", euler_like(rng, 2, 20, n))
    return root


def _read_all(ds: object) -> int:
    for i in range(len(ds)):  # type: ignore[arg-type]
        ds[i]  # type: ignore[index]
    return len(ds)  # type: ignore[arg-type]


@pytest.mark.benchmark(group="reader")
def test_physok_reader(benchmark, dataset_dir: Path) -> None:
    ds = WellWindowDataset(dataset_dir, "train", window=WINDOW)
    n = benchmark.pedantic(_read_all, args=(ds,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["windows_per_s"] = n / benchmark.stats["mean"]
    benchmark.extra_info["grid"] = ds.grid_shape


@pytest.mark.benchmark(group="reader")
def test_the_well_reader(benchmark, dataset_dir: Path) -> None:
    ds = WellDataset(
        path=str(dataset_dir),
        well_split_name="train",
        n_steps_input=WINDOW - 1,
        n_steps_output=1,
        use_normalization=False,
    )
    # the_well reopens the file for every window, so a round takes seconds: 3 rounds suffice.
    n = benchmark.pedantic(_read_all, args=(ds,), rounds=3, warmup_rounds=1)
    benchmark.extra_info["windows_per_s"] = n / benchmark.stats["mean"]
