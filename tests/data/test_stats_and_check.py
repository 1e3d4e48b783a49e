"""stats.yaml values and the format/value checker."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from physok.data.check import check_path
from physok.data.stats import read_stats_yaml


def test_stats_match_numpy_over_the_train_split(synthetic_dataset: Path) -> None:
    stats = read_stats_yaml(synthetic_dataset / "stats.yaml")
    files = sorted((synthetic_dataset / "data" / "train").glob("*.hdf5"))
    vel = []
    for p in files:
        with h5py.File(p) as f:
            vel.append(f["t1_fields"]["velocity"][()].astype(np.float64))
    v = np.concatenate(vel)  # (B, T, X, Y, 2)
    d = np.diff(v, axis=1)
    for c in range(2):
        assert stats["mean"]["velocity"][c] == pytest.approx(v[..., c].mean(), rel=1e-9, abs=1e-12)
        assert stats["std"]["velocity"][c] == pytest.approx(v[..., c].std(), rel=1e-9)
        assert stats["rms"]["velocity"][c] == pytest.approx(np.sqrt((v[..., c] ** 2).mean()))
        assert stats["std_delta"]["velocity"][c] == pytest.approx(d[..., c].std(), rel=1e-9)
    assert len(stats["mean"]["D"]) == 4 and isinstance(stats["rms"]["density"], float)


def test_clean_dataset_passes(synthetic_dataset: Path) -> None:
    report = check_path(synthetic_dataset)
    assert report.ok, report.errors
    assert report.files_checked == 4


def _first(root: Path, split: str = "train") -> Path:
    return sorted((root / "data" / split).glob("*.hdf5"))[0]


def test_nan_is_an_error_naming_field_and_trajectory(synthetic_dataset: Path) -> None:
    path = _first(synthetic_dataset)
    with h5py.File(path, "r+") as f:
        f["t1_fields"]["velocity"][2, 7, 0, 0, 1] = np.inf
    report = check_path(path)
    assert not report.ok
    assert any("velocity: NaN or Inf in trajectory 2" in e for e in report.errors)


def test_dead_frame_is_an_error_constant_field_a_warning(synthetic_dataset: Path) -> None:
    path = _first(synthetic_dataset)
    with h5py.File(path, "r+") as f:
        f["t0_fields"]["pressure"][0, 3] = 0.0  # one field constant: worth a warning
    report = check_path(path)
    assert report.ok and any("pressure: spatially constant" in w for w in report.warnings)
    with h5py.File(path, "r+") as f:
        for g in ("t0_fields", "t1_fields", "t2_fields"):
            for n in f[g].attrs["field_names"]:
                f[g][n][1, 5] = 1.0  # every field constant in one frame: dead data
    report = check_path(path)
    assert any("dead data" in e and "trajectory 1, snapshot 5" in e for e in report.errors)


def test_layout_errors(synthetic_dataset: Path) -> None:
    path = _first(synthetic_dataset)
    with h5py.File(path, "r+") as f:
        f["boundary_conditions"]["y_wall"]["mask"][...] = False
        f["dimensions"]["time"].attrs["time_varying"] = False
        del f["t0_fields"]["density"].attrs["dim_varying"]
    errors = "\n".join(check_path(path).errors)
    assert "mask: all False" in errors
    assert "time_varying must be True" in errors
    assert "density: 'dim_varying' missing" in errors


def test_missing_stats_and_corrupt_files(synthetic_dataset: Path, tmp_path: Path) -> None:
    (synthetic_dataset / "stats.yaml").write_text(yaml.safe_dump({"mean": {}}))
    path = _first(synthetic_dataset, "valid")
    path.write_bytes(path.read_bytes()[:500])
    errors = "\n".join(check_path(synthetic_dataset).errors)
    assert "stats.yaml: missing keys" in errors
    assert f"{path}: cannot be read as HDF5" in errors
    assert not check_path(tmp_path / "absent").ok


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_a_missing_split_is_an_error(synthetic_dataset: Path, split: str) -> None:
    """Training reads train, validation and the evaluation valid, held-out evaluation test."""
    shutil.rmtree(synthetic_dataset / "data" / split)
    report = check_path(synthetic_dataset)
    assert not report.ok
    assert any(f"data/{split}: missing" in e for e in report.errors), report.errors
    (synthetic_dataset / "data" / split).mkdir()  # present but empty
    assert any(f"data/{split}: no .hdf5 files" in e for e in check_path(synthetic_dataset).errors)
