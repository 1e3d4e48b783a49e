"""Validate Well files and dataset folders: layout, values (NaN/Inf) and dead (constant) frames.

Layout rules follow The Well's own format checker (scripts/check_thewell_formatting.py) plus
two it misses and physok relies on: `time` must be time-varying, and boundary masks must
mark the boundary (not be all False).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

from physok.data.stats import STAT_KEYS
from physok.data.well_format import BC_TYPES, FIELD_GROUPS

# The split folders of a dataset (data/<split>/): train for training, valid for validation
# and the experiment's evaluation, test for held-out evaluation.
WELL_SPLITS = ("train", "valid", "test")


@dataclass
class CheckReport:
    """Errors make a file unusable; warnings are worth a look but do not fail the check."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def merge(self, other: CheckReport) -> None:
        self.errors += other.errors
        self.warnings += other.warnings
        self.files_checked += other.files_checked


def _is_bool(v: object) -> bool:
    return isinstance(v, bool | np.bool_)


def _str_list(v: object) -> bool:
    return isinstance(v, list | np.ndarray) and all(isinstance(x, str) for x in v)


def _check_flags(obj: h5py.HLObject, err: list[str]) -> bool:
    ok = True
    for attr in ("sample_varying", "time_varying"):
        if attr not in obj.attrs or not _is_bool(obj.attrs[attr]):
            err.append(f"{obj.name}: attribute {attr!r} missing or not a boolean")
            ok = False
    return ok


def _check_layout(f: h5py.File, err: list[str]) -> None:
    for attr, kind in (
        ("dataset_name", str),
        ("grid_type", str),
        ("n_spatial_dims", int | np.integer),
        ("n_trajectories", int | np.integer),
    ):
        if attr not in f.attrs or not isinstance(f.attrs[attr], kind):
            err.append(f"root attribute {attr!r} missing or of the wrong type")
    if "simulation_parameters" not in f.attrs:
        err.append("root attribute 'simulation_parameters' missing")
    for g in ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS):
        if g not in f:
            err.append(f"group /{g} missing")
    if err:
        return
    n_dims, n_traj = int(f.attrs["n_spatial_dims"]), int(f.attrs["n_trajectories"])
    for p in f.attrs["simulation_parameters"]:
        if p not in f.attrs or p not in f["scalars"]:
            err.append(f"simulation parameter {p!r} must be a root attribute and a /scalars entry")

    dims = f["dimensions"]
    spatial = list(dims.attrs.get("spatial_dims", []))
    if len(spatial) != n_dims or not _str_list(spatial):
        err.append("/dimensions: 'spatial_dims' must list n_spatial_dims names")
        return
    if "time" not in dims:
        err.append("/dimensions/time missing")
        return
    if _check_flags(dims["time"], err) and not dims["time"].attrs["time_varying"]:
        err.append("/dimensions/time: time_varying must be True")
    n_steps = dims["time"].shape[-1]
    grid = []
    for d in spatial:
        if d not in dims:
            err.append(f"/dimensions/{d} missing")
            return
        _check_flags(dims[d], err)
        grid.append(dims[d].shape[-1])

    for order, gname in enumerate(FIELD_GROUPS):
        group = f[gname]
        if "field_names" not in group.attrs:
            err.append(f"/{gname}: attribute 'field_names' missing")
            continue
        for name in group.attrs["field_names"]:
            if name not in group:
                err.append(f"/{gname}: listed field {name!r} has no dataset")
                continue
            dset = group[name]
            if not _check_flags(dset, err):
                continue
            dv = dset.attrs.get("dim_varying")
            if dv is None or len(dv) != n_dims:
                err.append(f"{dset.name}: 'dim_varying' missing or not of length {n_dims}")
                continue
            expected = (
                *((n_traj,) if dset.attrs["sample_varying"] else ()),
                *((n_steps,) if dset.attrs["time_varying"] else ()),
                *(g for g, v in zip(grid, dv, strict=True) if v),
                *((n_dims,) * order),
            )
            if dset.shape != expected:
                err.append(f"{dset.name}: shape {dset.shape}, expected {expected}")

    scalars = f["scalars"]
    for name in scalars.attrs.get("field_names", []):
        if name not in scalars:
            err.append(f"/scalars: listed scalar {name!r} has no dataset")
        else:
            _check_flags(scalars[name], err)

    for name, bc in f["boundary_conditions"].items():
        where = f"/boundary_conditions/{name}"
        bc_type = bc.attrs.get("bc_type")
        if not isinstance(bc_type, str) or bc_type.lower() not in BC_TYPES:
            err.append(f"{where}: bc_type {bc_type!r} is not one of {BC_TYPES}")
        assoc = bc.attrs.get("associated_dims")
        if assoc is None or not _str_list(assoc) or any(a not in spatial for a in assoc):
            err.append(f"{where}: associated_dims must name spatial dims {spatial}")
            continue
        if "associated_fields" not in bc.attrs:
            err.append(f"{where}: attribute 'associated_fields' missing")
        _check_flags(bc, err)
        if "mask" not in bc:
            err.append(f"{where}: dataset 'mask' missing")
            continue
        expected = tuple(grid[spatial.index(a)] for a in assoc)
        mask = np.asarray(bc["mask"])
        if mask.shape != expected:
            err.append(f"{where}/mask: shape {mask.shape}, expected {expected}")
        elif not mask.any():
            err.append(f"{where}/mask: all False, so it marks no boundary")


def _check_values(f: h5py.File, err: list[str], warn: list[str]) -> None:
    """NaN/Inf anywhere; frames where a field, or every field, is spatially constant."""
    n_traj = int(f.attrs["n_trajectories"])
    n_steps = f["dimensions"]["time"].shape[-1]
    dead = np.ones((n_traj, n_steps), dtype=bool)  # every field constant in that frame
    any_field = False
    for gname in FIELD_GROUPS:
        for name in f[gname].attrs["field_names"]:
            dset = f[gname][name]
            if not (dset.attrs["sample_varying"] and dset.attrs["time_varying"]):
                continue
            any_field = True
            for b in range(n_traj):  # one trajectory at a time: bounded memory
                x = dset[b]
                bad = ~np.isfinite(x)
                if bad.any():
                    t = int(np.argwhere(bad)[0][0])
                    err.append(f"{dset.name}: NaN or Inf in trajectory {b} (first at snapshot {t})")
                    dead[b] = False
                    continue
                flat = x.reshape(n_steps, -1)
                const = np.ptp(flat, axis=1) == 0
                dead[b] &= const
                if const.any():
                    ts = np.flatnonzero(const)
                    warn.append(
                        f"{dset.name}: spatially constant in trajectory {b} at snapshots "
                        f"{ts[:5].tolist()}{' ...' if len(ts) > 5 else ''}"
                    )
    if any_field and dead.any():
        b, t = (int(v) for v in np.argwhere(dead)[0])
        err.append(
            f"every field is spatially constant in {int(dead.sum())} frame(s) "
            f"(first: trajectory {b}, snapshot {t}): dead data"
        )


def check_file(path: str | os.PathLike, values: bool = True) -> CheckReport:
    """Check one HDF5 file; errors and warnings are prefixed with its path."""
    path = Path(path)
    report = CheckReport(files_checked=1)
    err: list[str] = []
    warn: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            _check_layout(f, err)
            if not err and values:
                _check_values(f, err, warn)
    except OSError as e:
        err.append(f"cannot be read as HDF5 (truncated or corrupt?): {e}")
    report.errors = [f"{path}: {m}" for m in err]
    report.warnings = [f"{path}: {m}" for m in warn]
    return report


def check_path(path: str | os.PathLike, values: bool = True) -> CheckReport:
    """Check a file, a split folder of files, or a dataset folder (`data/*/` and stats.yaml)."""
    path = Path(path)
    report = CheckReport()
    if not path.exists():
        report.errors.append(f"{path}: does not exist")
        return report
    if path.is_file():
        return check_file(path, values)
    files = sorted(path.glob("*.hdf5")) + sorted(path.glob("*.h5"))
    if (path / "data").is_dir():
        files = sorted((path / "data").glob("*/*.hdf5")) + sorted((path / "data").glob("*/*.h5"))
        stats = path / "stats.yaml"
        if not stats.exists():
            report.errors.append(f"{stats}: missing (statistics of the train split)")
        else:
            try:
                data = yaml.safe_load(stats.read_text())
                missing = [k for k in STAT_KEYS if not isinstance(data, dict) or k not in data]
                if missing:
                    report.errors.append(f"{stats}: missing keys {missing}")
            except yaml.YAMLError as e:
                report.errors.append(f"{stats}: not valid YAML: {e}")
        for split in WELL_SPLITS:  # training, validation and evaluation each read one
            folder = path / "data" / split
            if not folder.is_dir():
                report.errors.append(f"{folder}: missing (The Well's layout has {WELL_SPLITS})")
            elif not any(folder.glob("*.hdf5")) and not any(folder.glob("*.h5")):
                report.errors.append(f"{folder}: no .hdf5 files")
    if not files:
        report.errors.append(f"{path}: no .hdf5 files found")
    for p in files:
        report.merge(check_file(p, values))
    return report
