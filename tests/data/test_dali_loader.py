"""The DALI loader yields exactly the PyTorch loader's batches (physok.data.loaders / dali_loader).

Two generated datasets with different names, grids and lengths are mixed (one dataset per
batch); runs resume from a non-zero start_batch. The CPU DALI pipeline runs everywhere DALI is
installed; the GPU pipeline is checked against it under @pytest.mark.gpu.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from physok.data.errors import DataError
from physok.data.loaders import (
    LOADER_KINDS,
    Normalisation,
    build_batch_loader,
    build_sampler,
    collate_windows,
    normalise_batch,
)
from physok.data.mixing import MixedBatchSampler
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.data.well_format import write_well_file
from physok.ops.rms_normalise import rms_normalise

CPU = SimpleNamespace(rank=0, world_size=1, device=torch.device("cpu"))


def _cfg(steps: int, batch_size: int = 2, seed: int = 5, num_workers: int = 0) -> Any:
    return SimpleNamespace(batch_size=batch_size, seed=seed, steps=steps, num_workers=num_workers)


@pytest.fixture
def dali() -> Any:
    return pytest.importorskip("nvidia.dali", reason="DALI (physok[dali]) is not installed")


@pytest.fixture
def two_datasets(
    tmp_path: Path, trajectories_factory: Callable[..., Any]
) -> list[WellWindowDataset]:
    """'alpha' 8x6 grid, 12 snapshots and 'beta' 4x4, 11 snapshots; two files each."""
    rng = np.random.default_rng(7)
    for name, grid, steps in (("alpha", (8, 6), 12), ("beta", (4, 4), 11)):
        for i, gamma in enumerate((1.4, 1.1)):
            traj = trajectories_factory(
                rng, n_traj=2, n_steps=steps, grid=grid, gamma=gamma, name=name
            )
            write_well_file(tmp_path / name / "data" / "train" / f"{name}_{i}.hdf5", traj)
    registry = FieldRegistry.default()
    return [
        WellWindowDataset(tmp_path / name, "train", window=10, registry=registry)
        for name in ("alpha", "beta")
    ]


def assert_same_batches(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["dataset"] == w["dataset"]
        assert torch.equal(g["field_indices"], w["field_indices"])
        assert g["fields"].dtype == w["fields"].dtype == torch.float32
        assert torch.equal(g["fields"].cpu(), w["fields"].cpu())


def test_dali_cpu_equals_torch_loader_with_mixing_and_resume(
    dali: Any, two_datasets: list[WellWindowDataset]
) -> None:
    cfg = _cfg(steps=9)
    full = list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=0))
    torch_batches = list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=3))
    loader = build_batch_loader("dali", two_datasets, cfg, CPU, start_batch=3)
    dali_batches = list(loader)
    assert len(loader) == len(dali_batches) == 6
    assert {b["dataset"] for b in dali_batches} == {"alpha", "beta"}  # a real mixture
    assert {tuple(b["fields"].shape[-2:]) for b in dali_batches} == {(8, 6), (4, 4)}
    assert all(b["fields"].shape[:2] == (2, 10) for b in dali_batches)  # full batches only
    assert_same_batches(dali_batches, torch_batches)
    assert_same_batches(dali_batches, full[3:])  # resuming continues the uninterrupted run
    # The data really differ between batches (a loader repeating one batch would fail above).
    assert not torch.equal(dali_batches[0]["fields"], dali_batches[1]["fields"])


def test_torch_kind_equals_a_plain_dataloader_over_the_mixed_sampler(
    two_datasets: list[WellWindowDataset],
) -> None:
    """The torch kind is exactly DataLoader(concat, MixedBatchSampler, collate), what the stages
    used before loaders were selectable (and what the stages' `build_loader` returns now)."""
    from torch.utils.data import DataLoader

    from physok.data.mixing import concat

    cfg = _cfg(steps=6)
    ours = list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=1))
    data, lengths = concat(two_datasets)
    sampler = MixedBatchSampler(lengths, 2, seed=5, num_batches=5, start_batch=1)
    plain = list(DataLoader(data, batch_sampler=sampler, collate_fn=collate_windows))
    assert_same_batches(ours, plain)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_torch_loader_leaves_the_global_rng_alone(
    two_datasets: list[WellWindowDataset], num_workers: int
) -> None:
    """Starting a loader draws nothing from torch's global RNG: a resumed run starts its loader
    at another point of that stream than an uninterrupted run, and stochastic depth draws from
    it."""
    cfg = _cfg(steps=3, num_workers=num_workers)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    loader = build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=1)
    assert len(list(loader)) == 2
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(
    ("norm", "reference"),
    [
        # the tokeniser: frames 1..9 normalised by their own scales (normalised_input)
        (Normalisation(9, 9), lambda f: rms_normalise(f[:, :9], backend="reference")),
        # prediction: scales from the 9 context frames, applied to the whole window
        (Normalisation(9, None), lambda f: rms_normalise(f, 9, backend="reference")),
        (Normalisation(None, 4, eps=1e-3), lambda f: rms_normalise(f, None, 1e-3, "reference")),
    ],
    ids=["tokeniser", "prediction", "all-frames"],
)
def test_normalisation_matches_reference(
    dali: Any, two_datasets: list[WellWindowDataset], norm: Normalisation, reference: Callable
) -> None:
    cfg = _cfg(steps=5)
    dali_batches = list(
        build_batch_loader("dali", two_datasets, cfg, CPU, start_batch=1, normalisation=norm)
    )
    torch_batches = list(
        build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=1, normalisation=norm)
    )
    assert_same_batches(dali_batches, torch_batches)
    _, o = norm.frames(10)
    for d, t in zip(dali_batches, torch_batches, strict=True):
        want, want_scales = reference(d["fields"])
        want = want[:, :o]
        # the PyTorch path is the reference exactly (same op on the same CPU tensors)
        assert torch.equal(t["normalised"], want) and torch.equal(t["scales"], want_scales)
        # DALI reduces in another order: float32 results agree to a few ulp, not bit for bit
        assert d["normalised"].shape == want.shape and d["scales"].shape == want_scales.shape
        torch.testing.assert_close(d["scales"], want_scales, rtol=1e-6, atol=0)
        torch.testing.assert_close(d["normalised"], want, rtol=1e-6, atol=1e-12)
        assert not torch.equal(d["normalised"], d["fields"][:, :o])  # it did normalise


def test_epochs_restart_like_a_dataloader(dali: Any, two_datasets: list[WellWindowDataset]) -> None:
    cfg = _cfg(steps=6)
    want = list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=2))
    loader = build_batch_loader("dali", two_datasets, cfg, CPU, start_batch=2)
    assert_same_batches(list(loader), want)
    assert_same_batches(list(loader), want)  # second epoch: same sequence again
    assert_same_batches(list(islice(loader, 2)), want[:2])  # abandoned midway...
    assert_same_batches(list(loader), want)  # ...the next iteration starts over
    # Nothing left to run (resumed at the last step): empty, like the DataLoader.
    assert list(build_batch_loader("dali", two_datasets, cfg, CPU, start_batch=6)) == []
    assert list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=6)) == []


def test_endless_sampler(dali: Any, two_datasets: list[WellWindowDataset]) -> None:
    from physok.data.dali_loader import DaliBatchLoader

    sampler = MixedBatchSampler([len(d) for d in two_datasets], 3, seed=1, start_batch=4)
    loader = DaliBatchLoader(two_datasets, sampler)
    with pytest.raises(TypeError, match="endless"):
        len(loader)
    got = list(islice(loader, 5))
    want = []
    for idx in islice(iter(sampler), 5):
        d = 0 if idx[0] < len(two_datasets[0]) else 1
        off = 0 if d == 0 else len(two_datasets[0])
        want.append(
            {
                "fields": torch.stack([two_datasets[d][i - off]["fields"] for i in idx]),
                "field_indices": two_datasets[d].field_indices,
                "dataset": two_datasets[d].dataset_name,
            }
        )
    assert_same_batches(got, want)


def test_source_serves_any_later_batch_number(
    dali: Any, two_datasets: list[WellWindowDataset]
) -> None:
    # A parallel DALI worker is asked for every n-th batch only: it must skip the others.
    from physok.data.dali_loader import WindowBatchSource

    cfg = _cfg(steps=7)
    sampler = build_sampler(two_datasets, cfg, CPU, start_batch=2)
    want = list(build_batch_loader("torch", two_datasets, cfg, CPU, start_batch=2))
    source = WindowBatchSource(two_datasets, sampler)
    for epoch, iterations in ((0, [1, 3, 4]), (1, [0, 2]), (1, [1])):  # [1] after 2: rewinds
        for i in iterations:
            windows, tags = source(SimpleNamespace(epoch_idx=epoch, iteration=i))
            assert all(t.dtype == np.int32 and t.shape == (1,) for t in tags)
            d = int(tags[0][0])
            assert two_datasets[d].dataset_name == want[i]["dataset"]
            assert torch.equal(torch.from_numpy(np.stack(windows)), want[i]["fields"])
    with pytest.raises(StopIteration):  # the end of the sequence ends DALI's epoch
        source(SimpleNamespace(epoch_idx=2, iteration=5))


def test_parallel_worker_gives_the_same_batches(
    dali: Any, two_datasets: list[WellWindowDataset]
) -> None:
    # cfg.num_workers -> DALI's parallel external source (a spawned reader process; the
    # source and datasets are pickled into it).
    cfg = _cfg(steps=5, num_workers=1)
    norm = Normalisation(9, 9)
    want = list(build_batch_loader("torch", two_datasets, _cfg(steps=5), CPU, normalisation=norm))
    loader = build_batch_loader("dali", two_datasets, cfg, CPU, normalisation=norm)
    for _ in range(2):  # the second epoch resets the worker's position in the sequence
        got = list(loader)
        assert_same_batches(got, want)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g["normalised"], w["normalised"], rtol=1e-6, atol=1e-12)


def test_missing_dali_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, two_datasets: list[WellWindowDataset]
) -> None:
    # Block DALI and re-import physok's modules: importing them must still work.
    for name in [m for m in sys.modules if m == "nvidia.dali" or m.startswith("nvidia.dali.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    monkeypatch.delitem(sys.modules, "physok.data.dali_loader", raising=False)
    import physok.data.dali_loader as dali_loader

    assert "nvidia.dali" not in {m for m, v in sys.modules.items() if v is not None}
    with pytest.raises(ImportError, match=r'pip install "physok\[dali\]"') as err:
        build_batch_loader("dali", two_datasets, _cfg(steps=3), CPU)
    assert isinstance(err.value, dali_loader.DaliUnavailableError)
    assert "loader='torch'" in str(err.value)
    # the PyTorch loader is unaffected
    assert len(list(build_batch_loader("torch", two_datasets, _cfg(steps=3), CPU))) == 3


def test_bad_kind_and_bad_options(two_datasets: list[WellWindowDataset]) -> None:
    with pytest.raises(ValueError, match=r"loader='jax'.*\['torch', 'dali'\]"):
        build_batch_loader("jax", two_datasets, _cfg(steps=3), CPU)
    assert LOADER_KINDS == ("torch", "dali")
    with pytest.raises(DataError, match="--batch-size 9.*beta"):
        build_sampler(two_datasets, _cfg(steps=3, batch_size=9), CPU)
    with pytest.raises(DataError, match="context_frames=11 outside 1..10"):
        Normalisation(11).frames(10)
    batch = {"fields": torch.ones(1, 10, 2, 4, 4)}
    with pytest.raises(DataError, match="output_frames=0"):
        normalise_batch(batch, Normalisation(9, 0))


@pytest.mark.gpu
def test_gpu_pipeline_equals_cpu_pipeline(dali: Any, two_datasets: list[WellWindowDataset]) -> None:
    cfg, norm = _cfg(steps=6), Normalisation(9, 9)
    gpu_ctx = SimpleNamespace(rank=0, world_size=1, device=torch.device("cuda", 0))
    cpu = list(build_batch_loader("dali", two_datasets, cfg, CPU, 1, normalisation=norm))
    gpu = list(build_batch_loader("dali", two_datasets, cfg, gpu_ctx, 1, normalisation=norm))
    ref = list(build_batch_loader("torch", two_datasets, cfg, gpu_ctx, 1, normalisation=norm))
    assert_same_batches(gpu, cpu)
    for g, c, r in zip(gpu, cpu, ref, strict=True):
        assert g["fields"].is_cuda and g["normalised"].is_cuda and g["scales"].is_cuda
        assert not g["field_indices"].is_cuda  # indices stay on the host
        torch.testing.assert_close(g["scales"].cpu(), c["scales"], rtol=1e-6, atol=0)
        torch.testing.assert_close(g["normalised"].cpu(), c["normalised"], rtol=1e-6, atol=1e-12)
        # the PyTorch path on CUDA (Triton kernel under auto dispatch)
        torch.testing.assert_close(g["normalised"], r["normalised"], rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(g["scales"], r["scales"], rtol=1e-6, atol=0)
