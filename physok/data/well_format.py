"""The Well's HDF5 layout: an in-memory description of one file and an exact writer for it.

One Well file holds a batch of trajectories that share one set of simulation parameters
(e.g. one gamma for Euler). The layout is specified in The Well's `docs/data_format.md`;
`WellTrajectories` mirrors it so generators never touch h5py themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SPATIAL_DIMS: tuple[str, ...] = ("x", "y")
BC_TYPES: tuple[str, ...] = ("periodic", "wall", "open")
FIELD_GROUPS: tuple[str, ...] = ("t0_fields", "t1_fields", "t2_fields")


@dataclass(frozen=True)
class BoundarySpec:
    """An axis-aligned boundary condition on both ends of one spatial dimension."""

    dim: str
    bc_type: str
    associated_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.bc_type not in BC_TYPES:
            raise ValueError(f"bc_type must be one of {BC_TYPES}, got {self.bc_type!r}")

    @property
    def name(self) -> str:
        # The Well's format checker warns unless the group is named after dim and type.
        return f"{self.dim}_{self.bc_type}"


@dataclass
class WellTrajectories:
    """Trajectories of one dataset and one parameter set, ready to be written as one Well file.

    Shapes (2D, B trajectories, T snapshots, grid X x Y, x first):
    t0 fields `(B, T, X, Y)`, t1 fields `(B, T, X, Y, 2)`, t2 fields `(B, T, X, Y, 2, 2)`.
    Insertion order of the field dicts is the channel order.
    """

    dataset_name: str
    time: np.ndarray
    coords: dict[str, np.ndarray]
    t0_fields: dict[str, np.ndarray]
    t1_fields: dict[str, np.ndarray] = field(default_factory=dict)
    t2_fields: dict[str, np.ndarray] = field(default_factory=dict)
    parameters: dict[str, float] = field(default_factory=dict)
    boundary_conditions: list[BoundarySpec] = field(default_factory=list)

    @property
    def field_groups(self) -> tuple[dict[str, np.ndarray], ...]:
        return (self.t0_fields, self.t1_fields, self.t2_fields)

    @property
    def n_trajectories(self) -> int:
        return int(next(iter(self.t0_fields.values())).shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.time.shape[0])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(int(self.coords[d].shape[0]) for d in SPATIAL_DIMS)

    def validate(self) -> None:
        """Check shapes and finiteness; raise ValueError naming the offending field."""
        if not self.t0_fields and not self.t1_fields and not self.t2_fields:
            raise ValueError(f"{self.dataset_name}: no fields")
        b, t, grid = self.n_trajectories, self.n_steps, self.grid_shape
        for order, group in enumerate(self.field_groups):
            for name, arr in group.items():
                expected = (b, t, *grid) + (len(SPATIAL_DIMS),) * order
                if arr.shape != expected:
                    raise ValueError(
                        f"{self.dataset_name}: field {name!r} (t{order}) has shape {arr.shape}, "
                        f"expected {expected}"
                    )
                if not np.isfinite(arr).all():
                    raise ValueError(f"{self.dataset_name}: field {name!r} contains NaN or Inf")
        for bc in self.boundary_conditions:
            if bc.dim not in SPATIAL_DIMS:
                raise ValueError(f"boundary condition on unknown dim {bc.dim!r}")


def _str_list(values: Sequence[str]) -> list[str]:
    # h5py stores a list of Python str as a variable-length UTF-8 string array, which reads
    # back as an object ndarray of str: what The Well's own files and checker use.
    return [str(v) for v in values]


def _flag_attrs(dset: h5py.Dataset | h5py.Group, *, sample: bool, time: bool) -> None:
    dset.attrs["sample_varying"] = bool(sample)
    dset.attrs["time_varying"] = bool(time)


def write_well_file(path: str | os.PathLike, traj: WellTrajectories) -> Path:
    """Write `traj` to `path` in The Well's layout, atomically (temporary name, then rename).

    A crash mid-write leaves only `<path>.tmp`, never a file that looks complete; a failed write
    (e.g. a full disk) removes it and raises the OSError once, from a plain file write.
    """
    traj.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_hdf5(tmp, traj)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_hdf5(path: Path, traj: WellTrajectories) -> None:
    # Built in memory, then written with plain file I/O: HDF5 writing to disk itself reacts
    # badly to a full disk (its failed flushes print as "Exception ignored" tracebacks, the write
    # carries on, and the library can crash at exit on the half-closed file). The image is
    # about the size of `traj`'s arrays, which are in memory already.
    with h5py.File(path.name, "w", driver="core", backing_store=False) as f:
        _write_root(f, traj)
        _write_dimensions(f, traj)
        _write_boundary_conditions(f, traj)
        _write_scalars(f, traj)
        _write_fields(f, traj)
        f.flush()
        image = f.id.get_file_image()
    with open(path, "wb") as out:
        out.write(image)
        out.flush()
        os.fsync(out.fileno())


def _write_root(f: h5py.File, traj: WellTrajectories) -> None:
    f.attrs["dataset_name"] = traj.dataset_name
    f.attrs["grid_type"] = "cartesian"
    f.attrs["n_spatial_dims"] = np.int64(len(SPATIAL_DIMS))
    f.attrs["n_trajectories"] = np.int64(traj.n_trajectories)
    f.attrs["simulation_parameters"] = _str_list(traj.parameters.keys())
    for name, value in traj.parameters.items():
        f.attrs[name] = float(value)


def _write_dimensions(f: h5py.File, traj: WellTrajectories) -> None:
    g = f.create_group("dimensions")
    g.attrs["spatial_dims"] = _str_list(SPATIAL_DIMS)
    t = g.create_dataset("time", data=np.asarray(traj.time, dtype=np.float32))
    _flag_attrs(t, sample=False, time=True)
    for dim in SPATIAL_DIMS:
        d = g.create_dataset(dim, data=np.asarray(traj.coords[dim], dtype=np.float32))
        _flag_attrs(d, sample=False, time=False)


def _write_boundary_conditions(f: h5py.File, traj: WellTrajectories) -> None:
    g = f.create_group("boundary_conditions")
    for bc in traj.boundary_conditions:
        b = g.create_group(bc.name)
        b.attrs["associated_dims"] = _str_list([bc.dim])
        b.attrs["associated_fields"] = _str_list(bc.associated_fields)
        b.attrs["bc_type"] = bc.bc_type
        _flag_attrs(b, sample=False, time=False)
        n = traj.coords[bc.dim].shape[0]
        mask = np.zeros(n, dtype=bool)
        mask[0] = mask[-1] = True  # the boundary sits at both ends of the axis
        b.create_dataset("mask", data=mask)


def _write_scalars(f: h5py.File, traj: WellTrajectories) -> None:
    g = f.create_group("scalars")
    g.attrs["field_names"] = _str_list(traj.parameters.keys())
    for name, value in traj.parameters.items():
        s = g.create_dataset(name, data=np.float32(value))
        _flag_attrs(s, sample=False, time=False)


def _write_fields(f: h5py.File, traj: WellTrajectories) -> None:
    for group_name, group in zip(FIELD_GROUPS, traj.field_groups, strict=True):
        g = f.create_group(group_name)
        g.attrs["field_names"] = _str_list(group.keys())
        for name, arr in group.items():
            # One chunk per (trajectory, snapshot) so a window read touches only its frames.
            data = np.asarray(arr, dtype=np.float32)
            chunks = (1, 1, *data.shape[2:])
            d = g.create_dataset(name, data=data, chunks=chunks)
            d.attrs["dim_varying"] = np.ones(len(SPATIAL_DIMS), dtype=bool)
            _flag_attrs(d, sample=True, time=True)
            if group_name == "t2_fields":
                d.attrs["symmetric"] = False
                d.attrs["antisymmetric"] = False


def flat_channel_names(field_groups: Sequence[Mapping[str, object]]) -> list[str]:
    """Channel names in The Well's flattening order: t0, t1, t2; tensor components x, y."""
    names: list[str] = []
    for order, group in enumerate(field_groups):
        for base in group:
            if order == 0:
                names.append(base)
            elif order == 1:
                names.extend(f"{base}_{d}" for d in SPATIAL_DIMS)
            else:
                names.extend(f"{base}_{a}{b}" for a in SPATIAL_DIMS for b in SPATIAL_DIMS)
    return names
