"""Writing embedded datasets: layout, the_well compatibility, reuse, atomicity, determinism."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from the_well.data import WellDataset

from physok.data import generate as generate_module
from physok.data.check import check_path
from physok.data.errors import DataError, StaleDatasetError
from physok.data.generate import GenerationConfig, generate_dataset, generate_datasets
from physok.data.generators import GENERATORS, get_generator
from physok.data.reader import WellWindowDataset
from physok.data.registry import WELL_CHANNELS

ALL = sorted(GENERATORS)


@pytest.mark.parametrize("name", ALL)
def test_generated_dataset_is_read_identically_by_the_well(
    embedded_base: Path, embedded_config: GenerationConfig, name: str
) -> None:
    root = embedded_base / name
    for split in ("train", "valid", "test"):
        ours = WellWindowDataset(root, split, window=10)
        theirs = WellDataset(
            path=str(root), well_split_name=split, n_steps_input=9, n_steps_output=1
        )
        assert len(ours) == len(theirs) > 0
        for i in range(0, len(ours), 2):
            b = theirs[i]
            expected = torch.cat([b["input_fields"], b["output_fields"]]).permute(0, 3, 1, 2)
            torch.testing.assert_close(ours[i]["fields"], expected, rtol=0, atol=0)
    assert ours.channel_names == list(WELL_CHANNELS[name])
    assert ours.grid_shape == embedded_config.resolution


@pytest.mark.parametrize("name", ALL)
def test_generated_dataset_passes_the_checker(
    embedded_base: Path, embedded_config: GenerationConfig, name: str
) -> None:
    report = check_path(embedded_base / name)
    assert report.ok, report.errors
    sizes = embedded_config.split_sizes()
    for split, n in sizes.items():
        files = sorted((embedded_base / name / "data" / split).glob("*.hdf5"))
        total = 0
        for p in files:
            with h5py.File(p) as f:
                total += int(f.attrs["n_trajectories"])
                assert f.attrs["dataset_name"] == name
                params = list(f.attrs["simulation_parameters"])
                assert params and all(p in f.attrs for p in params)
        assert total == n


def test_split_sizes() -> None:
    assert GenerationConfig(trajectories=24).split_sizes() == {"train": 18, "valid": 3, "test": 3}
    assert GenerationConfig(trajectories=3).split_sizes() == {"train": 1, "valid": 1, "test": 1}
    with pytest.raises(DataError, match="--trajectories must be at least 3"):
        GenerationConfig(trajectories=2).validate()
    with pytest.raises(DataError, match="--steps"):
        GenerationConfig(steps=1).validate()


def test_reuse_conflict_and_overwrite(tmp_path: Path) -> None:
    name = "gray_scott_reaction_diffusion"
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3)
    path = generate_dataset(name, tmp_path, cfg, progress=False)
    stamp = (path / "stats.yaml").stat().st_mtime_ns
    assert generate_dataset(name, tmp_path, cfg, progress=False) == path
    assert (path / "stats.yaml").stat().st_mtime_ns == stamp  # reused, not rewritten
    other = GenerationConfig(resolution=(16, 16), trajectories=3, steps=4)
    with pytest.raises(DataError, match="--overwrite"):
        generate_dataset(name, tmp_path, other, progress=False)
    generate_dataset(name, tmp_path, other, overwrite=True, progress=False)
    assert WellWindowDataset(path, "train", window=4).files[0].n_steps == 4


def test_interrupted_generation_leaves_nothing_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "gray_scott_reaction_diffusion"
    real = get_generator(name)
    calls = []

    def flaky(req):  # the second file fails, after the first was written
        calls.append(req)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real.simulate(req)

    monkeypatch.setitem(
        GENERATORS, name, generate_module.DatasetGenerator(**{**real.__dict__, "simulate": flaky})
    )
    cfg = GenerationConfig(resolution=(16, 16), trajectories=6, steps=3)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(name, tmp_path, cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    name = "gray_scott_reaction_diffusion"
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3, seed=7)
    a = generate_dataset(name, tmp_path / "a", cfg, progress=False)
    b = generate_dataset(name, tmp_path / "b", cfg, progress=False)
    c = generate_dataset(
        name, tmp_path / "c", GenerationConfig(**{**cfg.__dict__, "seed": 8}), progress=False
    )
    fa, fb, fc = (WellWindowDataset(p, "train", window=3)[0]["fields"] for p in (a, b, c))
    torch.testing.assert_close(fa, fb, rtol=0, atol=0)
    assert not np.allclose(fa.numpy(), fc.numpy())


def test_unknown_dataset_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'euler'.*shear_flow"):
        generate_dataset("euler", tmp_path)


def test_mixed_loader_over_generated_datasets(embedded_base: Path) -> None:
    """Reader + mixing sampler + DataLoader: one dataset per batch, registry indices per batch."""
    from physok.data.mixing import MixedBatchSampler, concat

    names = ["shear_flow", "rayleigh_benard", "gray_scott_reaction_diffusion"]
    datasets = [WellWindowDataset(embedded_base / n, "train", window=10) for n in names]
    data, lengths = concat(datasets)
    sampler = MixedBatchSampler(lengths, batch_size=2, seed=0, num_batches=12)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    seen = set()
    for batch in loader:
        (name,) = set(batch["dataset"])
        ds = datasets[names.index(name)]
        assert batch["fields"].shape == (2, 10, len(ds.channel_names), *ds.grid_shape)
        assert (batch["field_indices"] == ds.field_indices).all()
        seen.add(name)
    assert seen == set(names)


def test_parallel_generation_equals_serial(tmp_path: Path) -> None:
    names = ["gray_scott_reaction_diffusion", "shear_flow"]
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3, seed=3)
    serial = generate_datasets(names, tmp_path / "serial", cfg, progress=False, jobs=1)
    parallel = generate_datasets(names, tmp_path / "parallel", cfg, progress=False, jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        assert a.name == b.name
        x = WellWindowDataset(a, "valid", window=3)[0]["fields"]
        y = WellWindowDataset(b, "valid", window=3)[0]["fields"]
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_parallel_generation_reports_worker_errors(tmp_path: Path) -> None:
    cfg = GenerationConfig(resolution=(8, 8), trajectories=3, steps=3)
    # shear_flow needs >= 16 points: the worker's DataError reaches the caller.
    with pytest.raises(DataError, match="shear_flow: resolution must be at least 16x16"):
        generate_datasets(
            ["euler_multi_quadrants_openBC", "shear_flow"], tmp_path, cfg, jobs=2,
            progress=False,
        )  # fmt: skip
    assert not (tmp_path / "shear_flow").exists()
    assert not list(tmp_path.glob(".*.partial"))


def test_reuse_checks_the_files_against_the_record(tmp_path: Path) -> None:
    """A truncated or edited file is never reused as the generated data; --overwrite
    regenerates it (identically: the data depend only on the settings), an intact dataset is
    kept even with --overwrite, and a copied folder (new mtimes, same bytes) is reused."""
    name = "gray_scott_reaction_diffusion"
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3)
    path = generate_dataset(name, tmp_path, cfg, progress=False)
    record = generate_module.read_generation_record(path)
    assert set(record["files"]) >= {"stats.yaml", *(
        p.relative_to(path).as_posix() for p in path.glob("data/*/*.hdf5")
    )}  # fmt: skip
    original = {p: p.read_bytes() for p in path.glob("data/*/*.hdf5")}
    victim = sorted(original)[0]
    victim.write_bytes(original[victim][:-100])  # truncated
    with pytest.raises(StaleDatasetError, match="--overwrite") as e:
        generate_dataset(name, tmp_path, cfg, progress=False)
    assert e.value.reason == "files" and str(victim) in str(e.value)
    generate_dataset(name, tmp_path, cfg, overwrite=True, progress=False)
    assert {p: p.read_bytes() for p in path.glob("data/*/*.hdf5")} == original
    stamp = victim.stat().st_mtime_ns
    generate_dataset(name, tmp_path, cfg, overwrite=True, progress=False)
    assert victim.stat().st_mtime_ns == stamp  # intact: kept
    # a flipped byte (same size) is caught by the hash, an extra file by the listing
    data = bytearray(original[victim])
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    (path / "data" / "train" / "stray.hdf5").write_bytes(b"x")
    with pytest.raises(StaleDatasetError) as e:
        generate_dataset(name, tmp_path, cfg, progress=False)
    assert "SHA-256 differs" in str(e.value) and "stray.hdf5" in str(e.value)
    (path / "data" / "train" / "stray.hdf5").unlink()
    victim.write_bytes(original[victim])
    copy = tmp_path / "copy"
    shutil.copytree(path, copy / name, copy_function=shutil.copyfile)  # new mtimes
    assert generate_dataset(name, copy, cfg, progress=False) == copy / name
