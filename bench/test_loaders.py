"""Training batch loaders: the PyTorch DataLoader path vs the DALI path, on the same batches.

Run: pytest bench/ --benchmark-only -k loader. Two Euler-like datasets (5 channels, 10-frame
windows) are mixed one dataset per batch; a round is one pass of 16 batches of 4 windows, read,
stacked and RMS-normalised as the tokeniser stage needs (`Normalisation(9, 9)`). Loaders are
built once; the first round (DALI's pipeline build) is a warm-up. `extra_info`: samples_per_s
(windows/s) and MB_per_s (float32 window bytes delivered per second).

On CPU both read in the main process (num_workers=0: the CI machines have 2 cores), so the
comparison is the per-batch overhead of each path. The GPU entries (CUDA and DALI both needed)
add the host->device copy and normalisation on the device.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from synthetic_well import euler_like

from physok.data.loaders import Normalisation, build_batch_loader
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.data.well_format import write_well_file

WINDOW, BATCH, STEPS = 10, 4, 16
NORM = Normalisation(9, 9)
NAMES = ("euler_multi_quadrants_periodicBC", "euler_multi_quadrants_openBC")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _has_dali() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


needs_dali = pytest.mark.skipif(not _has_dali(), reason='needs DALI: pip install "physok[dali]"')


@pytest.fixture(scope="module", params=[64, 128], ids=lambda n: f"{n}x{n}")
def datasets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> list[WellWindowDataset]:
    n = request.param
    base = tmp_path_factory.mktemp(f"loaders_{n}")
    rng = np.random.default_rng(0)
    for name in NAMES:
        for i in range(2):
            traj = dataclasses.replace(euler_like(rng, 2, 20, n), dataset_name=name)
            write_well_file(base / name / "data" / "train" / f"f{i}.hdf5", traj)
    registry = FieldRegistry.default()
    return [
        WellWindowDataset(base / name, "train", window=WINDOW, registry=registry) for name in NAMES
    ]


def _one_pass(loader: Any, cuda: bool) -> int:
    n = 0
    for batch in loader:
        n += batch["normalised"].shape[0]
    if cuda:
        torch.cuda.synchronize()
    return n


def _run(benchmark, kind: str, datasets: list[WellWindowDataset], device: str) -> None:
    cfg = SimpleNamespace(batch_size=BATCH, seed=0, steps=STEPS, num_workers=0)
    ctx = SimpleNamespace(rank=0, world_size=1, device=torch.device(device))
    loader = build_batch_loader(kind, datasets, cfg, ctx, normalisation=NORM)
    cuda = device.startswith("cuda")
    n = benchmark.pedantic(_one_pass, args=(loader, cuda), rounds=5, warmup_rounds=1)
    assert n == BATCH * STEPS
    window_bytes = (
        WINDOW * len(datasets[0].channel_names) * int(np.prod(datasets[0].grid_shape)) * 4
    )
    benchmark.extra_info["samples_per_s"] = n / benchmark.stats["mean"]
    benchmark.extra_info["MB_per_s"] = n * window_bytes / benchmark.stats["mean"] / 1e6
    benchmark.extra_info["grid"] = datasets[0].grid_shape
    benchmark.extra_info["device"] = device


# One group per device: bench/summarise.py compares each DALI entry with the torch loader on
# the same device.
@pytest.mark.benchmark(group="loader-cpu")
def test_torch_loader_cpu(benchmark, datasets: list[WellWindowDataset]) -> None:
    _run(benchmark, "torch", datasets, "cpu")


@needs_dali
@pytest.mark.benchmark(group="loader-cpu")
def test_dali_loader_cpu(benchmark, datasets: list[WellWindowDataset]) -> None:
    _run(benchmark, "dali", datasets, "cpu")


@needs_cuda
@pytest.mark.benchmark(group="loader-gpu")
def test_torch_loader_gpu(benchmark, datasets: list[WellWindowDataset]) -> None:
    _run(benchmark, "torch", datasets, "cuda:0")


@needs_cuda
@needs_dali
@pytest.mark.benchmark(group="loader-gpu")
def test_dali_loader_gpu(benchmark, datasets: list[WellWindowDataset]) -> None:
    _run(benchmark, "dali", datasets, "cuda:0")
