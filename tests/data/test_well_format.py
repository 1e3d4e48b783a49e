"""The writer produces The Well's layout exactly, and writes atomically."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from physok.data import well_format
from physok.data.well_format import BoundarySpec, flat_channel_names, write_well_file


def test_layout_matches_the_well_specification(tmp_path: Path, trajectories_factory) -> None:
    traj = trajectories_factory(np.random.default_rng(0), n_traj=2, n_steps=5, grid=(8, 6))
    path = write_well_file(tmp_path / "f.hdf5", traj)
    with h5py.File(path, "r") as f:
        assert f.attrs["dataset_name"] == "synthetic"
        assert f.attrs["grid_type"] == "cartesian"
        assert f.attrs["n_spatial_dims"] == 2 and f.attrs["n_trajectories"] == 2
        assert list(f.attrs["simulation_parameters"]) == ["gamma", "Reynolds"]
        assert f.attrs["gamma"] == pytest.approx(1.4)
        assert f["scalars"]["gamma"].attrs["time_varying"] == np.False_
        assert list(f["scalars"].attrs["field_names"]) == ["gamma", "Reynolds"]

        dims = f["dimensions"]
        assert list(dims.attrs["spatial_dims"]) == ["x", "y"]
        assert dims["time"].dtype == np.float32 and dims["time"].shape == (5,)
        assert dims["time"].attrs["time_varying"] and not dims["time"].attrs["sample_varying"]
        assert dims["x"].shape == (8,) and dims["y"].shape == (6,)

        bcs = f["boundary_conditions"]
        assert set(bcs) == {"x_periodic", "y_wall"}
        assert bcs["y_wall"].attrs["bc_type"] == "wall"
        assert list(bcs["y_wall"].attrs["associated_dims"]) == ["y"]
        mask = bcs["y_wall"]["mask"][()]
        assert mask.dtype == bool and mask.shape == (6,)
        assert mask[0] and mask[-1] and not mask[1:-1].any()

        assert f["t0_fields"]["density"].shape == (2, 5, 8, 6)
        assert f["t1_fields"]["velocity"].shape == (2, 5, 8, 6, 2)
        assert f["t2_fields"]["D"].shape == (2, 5, 8, 6, 2, 2)
        for g, n in (("t0_fields", "density"), ("t1_fields", "velocity"), ("t2_fields", "D")):
            d = f[g][n]
            assert d.dtype == np.float32
            assert list(d.attrs["dim_varying"]) == [True, True]
            assert d.attrs["sample_varying"] and d.attrs["time_varying"]
        np.testing.assert_array_equal(
            f["t1_fields"]["velocity"][()], traj.t1_fields["velocity"].astype(np.float32)
        )


def test_channel_names_follow_the_well_flattening() -> None:
    groups = [{"a": 0, "b": 0}, {"v": 0}, {"D": 0}]
    assert flat_channel_names(groups) == [
        "a", "b", "v_x", "v_y", "D_xx", "D_xy", "D_yx", "D_yy",
    ]  # fmt: skip


def test_write_is_atomic_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trajectories_factory
) -> None:
    traj = trajectories_factory(np.random.default_rng(0))

    def explode(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(well_format, "_write_fields", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_well_file(tmp_path / "f.hdf5", traj)
    assert list(tmp_path.iterdir()) == []


def test_rejects_nan_and_bad_shapes(tmp_path: Path, trajectories_factory) -> None:
    traj = trajectories_factory(np.random.default_rng(0))
    traj.t0_fields["density"][0, 3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="density.*NaN"):
        write_well_file(tmp_path / "f.hdf5", traj)
    traj = trajectories_factory(np.random.default_rng(0))
    traj.t1_fields["velocity"] = traj.t1_fields["velocity"][..., :1]
    with pytest.raises(ValueError, match="velocity"):
        write_well_file(tmp_path / "f.hdf5", traj)
    with pytest.raises(ValueError, match="bc_type"):
        BoundarySpec("x", "reflective")
