"""`stats.yaml` of a Well dataset: per-field statistics over the train split.

Keys as in The Well: mean, std, mean_delta, std_delta, rms, rms_delta, each keyed by base
field name; tensor fields get one value per flattened component. Deltas are differences of
consecutive snapshots. Accumulated in float64, one field and file at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import yaml

from physok.data.errors import WellFormatError
from physok.data.well_format import FIELD_GROUPS

STAT_KEYS: tuple[str, ...] = ("mean", "std", "mean_delta", "std_delta", "rms", "rms_delta")


class _Moments:
    """Running count, sum and sum of squares per component."""

    def __init__(self) -> None:
        self.n = 0
        self.s: np.ndarray | float = 0.0
        self.s2: np.ndarray | float = 0.0

    def add(self, x: np.ndarray, n_components: int) -> None:
        x = x.reshape(-1, n_components).astype(np.float64)
        self.n += x.shape[0]
        self.s = self.s + x.sum(axis=0)
        self.s2 = self.s2 + (x * x).sum(axis=0)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = np.asarray(self.s) / self.n
        ms = np.asarray(self.s2) / self.n
        return mean, np.sqrt(np.maximum(ms - mean**2, 0.0)), np.sqrt(ms)


def compute_stats(split_dir: str | os.PathLike) -> dict[str, dict[str, float | list[float]]]:
    """Statistics of every time-varying field over all files of one split folder."""
    files = sorted(Path(split_dir).glob("*.hdf5")) + sorted(Path(split_dir).glob("*.h5"))
    if not files:
        raise WellFormatError(f"no .hdf5 files in {split_dir} to compute stats from")
    values: dict[str, _Moments] = {}
    deltas: dict[str, _Moments] = {}
    components: dict[str, int] = {}
    for path in files:
        with h5py.File(path, "r") as f:
            for order, group in enumerate(FIELD_GROUPS):
                for name in f[group].attrs["field_names"]:
                    dset = f[group][name]
                    if not dset.attrs["time_varying"]:
                        continue
                    n_comp = int(np.prod(dset.shape[dset.ndim - order :])) if order else 1
                    components[name] = n_comp
                    # One trajectory at a time: real Well files hold gigabytes per field.
                    n_traj = dset.shape[0] if dset.attrs["sample_varying"] else 1
                    for b in range(n_traj):
                        data = dset[b] if dset.attrs["sample_varying"] else dset[()]
                        values.setdefault(name, _Moments()).add(data, n_comp)
                        deltas.setdefault(name, _Moments()).add(np.diff(data, axis=0), n_comp)
    stats: dict[str, dict[str, float | list[float]]] = {k: {} for k in STAT_KEYS}
    for name in values:
        mean, std, rms = values[name].finish()
        dmean, dstd, drms = deltas[name].finish()
        for key, arr in zip(STAT_KEYS, (mean, std, dmean, dstd, rms, drms), strict=True):
            vals = [float(v) for v in np.atleast_1d(arr)]
            stats[key][name] = vals[0] if components[name] == 1 else vals
    return stats


def write_stats_yaml(path: str | os.PathLike, stats: dict) -> None:
    """Write stats atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(stats, sort_keys=True))
    os.replace(tmp, path)


def read_stats_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise WellFormatError(f"{path}: stats.yaml not found (generate the dataset or copy it)")
    stats = yaml.safe_load(path.read_text())
    missing = [k for k in STAT_KEYS if not isinstance(stats, dict) or k not in stats]
    if missing:
        raise WellFormatError(f"{path}: missing keys {missing}")
    return stats
