"""Fast windowed reader of a Well dataset split, for training and evaluation.

A sample is a window of `window` consecutive snapshots of one trajectory, returned as a
`(T, C, X, Y)` float32 tensor (channels in The Well's flattening order) plus the metadata a
model needs. Window order matches `the_well.data.WellDataset`: file, trajectory, start time.

Why it is faster than WellDataset: files are opened once per worker process and kept open,
datasets are looked up once, and each field's window is one low-level HDF5 hyperslab read into
contiguous memory (bypassing h5py's per-call selection machinery). Files written by physok are
chunked per snapshot, so only the window's frames are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from h5py import h5s
from torch.utils.data import Dataset

from physok.data.errors import DataError, WellFormatError
from physok.data.registry import FieldRegistry
from physok.data.well_format import FIELD_GROUPS, SPATIAL_DIMS, flat_channel_names

# the_well's boundary codes (the_well.data.datasets.BoundaryCondition).
BC_CODES: dict[str, int] = {"wall": 0, "open": 1, "periodic": 2}
_CHUNK_CACHE_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class WellFileInfo:
    """What the reader needs to know about one file, read once at construction."""

    path: Path
    n_trajectories: int
    n_steps: int
    constant_scalars: dict[str, float]
    time: np.ndarray


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
    except OSError as e:
        raise WellFormatError(
            f"{path}: cannot be opened as HDF5 (truncated or corrupt?): {e}"
        ) from None


def list_split_files(dataset_dir: str | os.PathLike, split: str) -> list[Path]:
    """The sorted HDF5 files of `<dataset_dir>/data/<split>`, with clear errors when absent."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.exists():
        raise DataError(
            f"dataset folder {dataset_dir} does not exist; generate it with "
            f"`python -m physok.data generate --dataset NAME --out BASE` or point to a Well copy"
        )
    split_dir = dataset_dir / "data" / split
    if not split_dir.is_dir():
        raise DataError(f"{dataset_dir}: no split folder data/{split} (expected train|valid|test)")
    files = sorted(list(split_dir.glob("*.hdf5")) + list(split_dir.glob("*.h5")))
    if not files:
        raise DataError(f"{split_dir}: no .hdf5 files")
    return files


class WellWindowDataset(Dataset):
    """Every window of `window` consecutive snapshots in one split of one Well dataset.

    Args:
        dataset_dir: `<base>/<dataset_name>` (holds `data/<split>/*.hdf5` and `stats.yaml`).
        split: "train", "valid" or "test".
        window: snapshots per sample (10 for training, 27 for 18-step rollout evaluation).
        registry: field registry giving channel indices; defaults to the paper's registry
            extended with this dataset's channels.
        check_finite: raise on a window holding NaN or Inf (names file, trajectory, time).
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str = "train",
        window: int = 10,
        registry: FieldRegistry | None = None,
        check_finite: bool = True,
    ) -> None:
        if window < 1:
            raise DataError(f"window must be >= 1 snapshot, got {window}")
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.window = window
        self.check_finite = check_finite
        self._meta: tuple | None = None  # set by the first file; every other file must match
        self.files = [self._inspect(p) for p in list_split_files(self.dataset_dir, split)]
        self._windows_per_traj = [f.n_steps - window + 1 for f in self.files]
        counts = [
            f.n_trajectories * w for f, w in zip(self.files, self._windows_per_traj, strict=True)
        ]
        self._offsets = np.cumsum([0, *counts])
        self.registry = registry if registry is not None else FieldRegistry.default()
        self.registry.extend(self.channel_names)
        self.field_indices = torch.tensor(self.registry.indices(self.channel_names))
        self._handles: dict[int, h5py.File] = {}
        self._plans: dict[int, list] = {}
        self._handles_pid = -1

    # ---- metadata, read once ------------------------------------------------------------
    def _inspect(self, path: Path) -> WellFileInfo:
        with _open(path) as f:
            try:
                name = str(f.attrs["dataset_name"])
                n_traj = int(f.attrs["n_trajectories"])
                time = np.asarray(f["dimensions"]["time"], dtype=np.float32)
                if time.ndim != 1:
                    raise WellFormatError(
                        f"{path}: /dimensions/time has shape {time.shape}; physok reads files "
                        "whose snapshot times are shared by all trajectories (shape (T,))"
                    )
                n_steps = int(time.shape[0])
                grid = tuple(int(f["dimensions"][d].shape[-1]) for d in SPATIAL_DIMS)
                groups = [
                    {n: f[g][n].shape for n in f[g].attrs["field_names"]} for g in FIELD_GROUPS
                ]
                for g in FIELD_GROUPS:
                    for n in f[g].attrs["field_names"]:
                        a = f[g][n].attrs
                        if not (
                            a["sample_varying"] and a["time_varying"] and all(a["dim_varying"])
                        ):
                            raise WellFormatError(
                                f"{path}: field {g}/{n} is constant in samples, time or space; "
                                "physok reads only fields that vary in all of them"
                            )
                scalars = {
                    str(n): float(np.asarray(f["scalars"][n]).reshape(-1)[0])
                    for n in f["scalars"].attrs["field_names"]
                    if not f["scalars"][n].attrs["time_varying"]
                }
                bcs = self._read_bcs(f)
            except KeyError as e:
                raise WellFormatError(f"{path}: missing Well entry {e}") from None
        if n_steps < self.window:
            raise DataError(
                f"{path}: trajectories have {n_steps} snapshots, shorter than the requested "
                f"window of {self.window}; lower the window or regenerate with more --steps"
            )
        meta = (name, grid, [list(g) for g in groups], bcs.tolist())
        if self._meta is None:
            self._meta = meta
            self.dataset_name, self.grid_shape = name, grid
            self.field_groups = [list(g) for g in groups]
            self.channel_names = flat_channel_names(groups)
            self.boundary_conditions = bcs
            self._first_path = path
        elif meta != self._meta:
            raise WellFormatError(
                f"{path}: dataset name, grid, fields or boundaries differ from those of "
                f"{self._first_path}; a split folder must hold one dataset"
            )
        return WellFileInfo(path, n_traj, n_steps, scalars, time)

    @staticmethod
    def _read_bcs(f: h5py.File) -> torch.Tensor:
        """(n_dims, 2) boundary codes per axis end, open where unspecified (the_well's rule)."""
        out = torch.full((len(SPATIAL_DIMS), 2), BC_CODES["open"], dtype=torch.long)
        for bc in f["boundary_conditions"].values():
            code = BC_CODES[str(bc.attrs["bc_type"]).lower()]
            mask = np.asarray(bc["mask"])
            for dim in bc.attrs["associated_dims"]:
                i = SPATIAL_DIMS.index(str(dim))
                if mask[0]:
                    out[i, 0] = code
                if mask[-1]:
                    out[i, 1] = code
        return out

    @property
    def constant_scalar_names(self) -> list[str]:
        return list(self.files[0].constant_scalars)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int, int]:
        """(file index, trajectory, start snapshot) of window `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        file_idx = int(np.searchsorted(self._offsets, index, side="right") - 1)
        local = index - int(self._offsets[file_idx])
        traj, start = divmod(local, self._windows_per_traj[file_idx])
        return file_idx, traj, start

    # ---- reading ------------------------------------------------------------------------
    def _plan(self, file_idx: int) -> list[tuple[h5py.h5d.DatasetID, int, int, h5s.SpaceID]]:
        """Per field: (dataset id, first output channel, tensor order, memory dataspace).

        Built once per file and process, so the hot path does no name lookups. Handles are per
        process: a DataLoader worker forked from a parent that already opened files must not
        share HDF5 state with it.
        """
        if self._handles_pid != os.getpid():
            self._handles, self._plans, self._handles_pid = {}, {}, os.getpid()
        plan = self._plans.get(file_idx)
        if plan is None:
            f = self._handles[file_idx] = _open(self.files[file_idx].path)
            plan, c = [], 0
            for order, group in enumerate(FIELD_GROUPS):
                comps = (len(SPATIAL_DIMS),) * order
                for name in self.field_groups[order]:
                    mem = h5s.create_simple((self.window, *self.grid_shape, *comps))
                    plan.append((f[group][name].id, c, order, mem))
                    c += len(SPATIAL_DIMS) ** order
            self._plans[file_idx] = plan
        return plan

    def read_window(self, file_idx: int, traj: int, start: int) -> np.ndarray:
        """Read one window as a (T, C, X, Y) float32 array."""
        t, grid = self.window, self.grid_shape
        # Channel-major while reading: each scalar field lands contiguously (HDF5 is fast only
        # when the memory side is contiguous), then one transpose copy gives (T, C, X, Y).
        out = np.empty((len(self.channel_names), t, *grid), dtype=np.float32)
        for dset_id, c, order, mem in self._plan(file_idx):
            comps = (len(SPATIAL_DIMS),) * order
            file_space = dset_id.get_space()
            file_space.select_hyperslab((traj, start, 0, 0, *(0,) * order), (1, t, *grid, *comps))
            if order == 0:
                dest = out[c]
            else:
                dest = np.empty((t, *grid, *comps), dtype=np.float32)
            dset_id.read(mem, file_space, dest)
            if order:
                n = int(np.prod(comps))
                out[c : c + n] = np.moveaxis(dest.reshape(t, *grid, n), -1, 0)
        if self.check_finite and not np.isfinite(out).all():
            raise WellFormatError(
                f"{self.files[file_idx].path}: NaN or Inf in trajectory {traj}, "
                f"snapshots {start}..{start + t - 1}; run `python -m physok.data check` on it"
            )
        return np.ascontiguousarray(out.transpose(1, 0, 2, 3))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        file_idx, traj, start = self.locate(index)
        info = self.files[file_idx]
        return {
            "fields": torch.from_numpy(self.read_window(file_idx, traj, start)),
            "field_indices": self.field_indices,
            "constant_scalars": torch.tensor(
                list(info.constant_scalars.values()), dtype=torch.float32
            ),
            "boundary_conditions": self.boundary_conditions,
            "time": torch.from_numpy(info.time[start : start + self.window].copy()),
            "dataset": self.dataset_name,
        }

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles, self._plans = {}, {}

    def __getstate__(self) -> dict:
        # Open HDF5 handles cannot be pickled (spawned workers): reopen lazily on the other side.
        state = self.__dict__.copy()
        state["_handles"], state["_plans"], state["_handles_pid"] = {}, {}, -1
        return state

    def __repr__(self) -> str:
        return (
            f"WellWindowDataset({self.dataset_name}, split={self.split}, window={self.window}, "
            f"{len(self)} windows, grid={self.grid_shape}, channels={self.channel_names})"
        )
