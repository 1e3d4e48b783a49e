"""physok's window reader: same numbers as the_well's WellDataset, metadata, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from the_well.data import WellDataset

from physok.data.errors import DataError, WellFormatError
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry


def assert_matches_the_well(dataset_dir: Path, split: str, window: int = 10) -> None:
    ours = WellWindowDataset(dataset_dir, split, window=window)
    theirs = WellDataset(
        path=str(dataset_dir),
        well_split_name=split,
        n_steps_input=window - 1,
        n_steps_output=1,
        use_normalization=False,
    )
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        expected = torch.cat([b["input_fields"], b["output_fields"]]).permute(0, 3, 1, 2)
        torch.testing.assert_close(a["fields"], expected, rtol=0, atol=0)
        torch.testing.assert_close(a["constant_scalars"], b["constant_scalars"].float())
        torch.testing.assert_close(a["boundary_conditions"].float(), b["boundary_conditions"])


def test_windows_equal_the_well_dataset(synthetic_dataset: Path) -> None:
    for split in ("train", "valid"):
        assert_matches_the_well(synthetic_dataset, split)


def test_rollout_windows_and_metadata(tmp_path: Path, synthetic_factory) -> None:
    root = synthetic_factory(tmp_path, n_steps=30)
    ds = WellWindowDataset(root, "train", window=27)
    # 2 files x 3 trajectories x (30 - 27 + 1) windows
    assert len(ds) == 2 * 3 * 4
    sample = ds[5]
    assert sample["fields"].shape == (27, 8, 8, 6)
    assert sample["fields"].dtype == torch.float32
    assert ds.channel_names == [
        "density", "pressure", "velocity_x", "velocity_y", "D_xx", "D_xy", "D_yx", "D_yy",
    ]  # fmt: skip
    assert ds.dataset_name == "synthetic" and ds.grid_shape == (8, 6)
    assert ds.constant_scalar_names == ["gamma", "Reynolds"]
    # x periodic (2) at both ends, y wall (0) at both ends: the_well's codes.
    assert ds.boundary_conditions.tolist() == [[2, 2], [0, 0]]
    assert ds.locate(5) == (0, 1, 1)
    reg = FieldRegistry.default()
    assert sample["field_indices"].tolist() == reg.indices(ds.channel_names)
    times = sample["time"]
    assert torch.allclose(times[1:] - times[:-1], torch.full((26,), 0.5))


def test_every_window_is_consecutive_frames_of_one_trajectory(synthetic_dataset: Path) -> None:
    ds = WellWindowDataset(synthetic_dataset, "train", window=4)
    path = ds.files[1].path
    with h5py.File(path) as f:
        vel = f["t1_fields"]["velocity"][2, 5:9]  # trajectory 2, snapshots 5..8
    index = int(ds._offsets[1]) + 2 * (12 - 4 + 1) + 5
    got = ds[index]["fields"]
    np.testing.assert_array_equal(got[:, 2].numpy(), vel[..., 0])
    np.testing.assert_array_equal(got[:, 3].numpy(), vel[..., 1])


def test_works_in_dataloader_workers(synthetic_dataset: Path) -> None:
    ds = WellWindowDataset(synthetic_dataset, "train", window=10)
    ds[0]  # open handles in the parent first: workers must not reuse them
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    got = torch.cat([b["fields"] for b in batches])
    expected = torch.stack([ds[i]["fields"] for i in range(len(ds))])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert batches[0]["dataset"] == ["synthetic"] * 4


def test_missing_base_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*physok.data generate"):
        WellWindowDataset(tmp_path / "nope", "train")


def test_missing_split(synthetic_dataset: Path) -> None:
    with pytest.raises(DataError, match="data/validation"):
        WellWindowDataset(synthetic_dataset, "validation")


def test_window_longer_than_trajectory(synthetic_dataset: Path) -> None:
    with pytest.raises(DataError, match=r"12 snapshots, shorter than the requested window of 27"):
        WellWindowDataset(synthetic_dataset, "train", window=27)


def test_truncated_file(synthetic_dataset: Path) -> None:
    path = sorted((synthetic_dataset / "data" / "train").glob("*.hdf5"))[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(WellFormatError, match=f"{path.name}.*truncated or corrupt"):
        WellWindowDataset(synthetic_dataset, "train")


def test_nan_in_file_is_reported_with_location(synthetic_dataset: Path) -> None:
    path = sorted((synthetic_dataset / "data" / "valid").glob("*.hdf5"))[0]
    with h5py.File(path, "r+") as f:
        f["t0_fields"]["pressure"][1, 4, 2, 2] = np.nan
    ds = WellWindowDataset(synthetic_dataset, "valid", window=10)
    ds[0]  # trajectory 0 is clean
    with pytest.raises(WellFormatError, match=rf"{path.name}: NaN or Inf in trajectory 1"):
        ds[3]


def test_mixed_datasets_in_one_split_are_rejected(synthetic_dataset: Path) -> None:
    path = sorted((synthetic_dataset / "data" / "train").glob("*.hdf5"))[1]
    with h5py.File(path, "r+") as f:
        f.attrs["dataset_name"] = "other"
    with pytest.raises(WellFormatError, match="one dataset"):
        WellWindowDataset(synthetic_dataset, "train")
