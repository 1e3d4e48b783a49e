"""DALI loader: the same batches as the PyTorch loader, fed by `fn.external_source`.

The pipeline's input is `WindowBatchSource`, a callable that DALI calls with the batch number:
it walks the same `MixedBatchSampler` the PyTorch loader uses (same seed, rank, `start_batch`)
and reads the windows with physok's reader, so batch order and content are identical. Each
sample carries its dataset number through the pipeline, which gives the batch its dataset name
and field indices on the way out. With `device_id` set, the windows are copied to that GPU inside
the pipeline and, when asked for (physok.data.loaders.Normalisation), the RMS normalisation
runs there; with `device_id=None` everything runs in a CPU pipeline (no GPU needed: this is what
CI tests). The training stages take the raw fields and normalise with the fused kernel
themselves (see physok.data.loaders).

DALI is optional: importing this module never imports it; building a loader without it raises
`DaliUnavailableError` telling how to install it (`pip install "physok[dali]"`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from physok.data.errors import DataError
from physok.data.loaders import Normalisation
from physok.data.mixing import MixedBatchSampler
from physok.data.reader import WellWindowDataset
from physok.data.well_format import SPATIAL_DIMS

DALI_INSTALL = 'pip install "physok[dali]"'


class DaliUnavailableError(ImportError):
    """loader='dali' was selected but NVIDIA DALI cannot be imported."""


def import_dali() -> SimpleNamespace:
    """The DALI modules the loader uses, or DaliUnavailableError naming the install command."""
    try:
        # The package first: a missing (or blocked) `nvidia.dali` must fail here, not halfway
        # through importing a submodule.
        dali = importlib.import_module("nvidia.dali")
        return SimpleNamespace(
            dali=dali,
            fn=importlib.import_module("nvidia.dali.fn"),
            types=importlib.import_module("nvidia.dali.types"),
            math=importlib.import_module("nvidia.dali.math"),
            pytorch=importlib.import_module("nvidia.dali.plugin.pytorch"),
        )
    except (ImportError, OSError) as e:
        raise DaliUnavailableError(
            f"loader='dali' needs NVIDIA DALI, which cannot be imported ({e}); install it with "
            f"`{DALI_INSTALL}` (its CPU pipelines also run without a GPU) or set the config "
            "field loader='torch'"
        ) from e


def dali_device_id(device: torch.device) -> int | None:
    """DALI's `device_id` for a torch device: the CUDA ordinal, None (CPU pipeline) otherwise."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


class WindowBatchSource:
    """DALI batch-mode source: batch `info.iteration` of the sampler's sequence, as numpy.

    Returns (windows, dataset numbers): per sample a (T, C, X, Y) float32 window and a (1,)
    int32 index into `datasets`. Raises StopIteration after the sampler's last batch (DALI's end
    of epoch). Callable by batch number, so it also works in DALI's parallel workers, each with its
    own copy: a worker asked for a later batch replays the sampler's draws without reading data.
    """

    def __init__(self, datasets: Sequence[WellWindowDataset], sampler: MixedBatchSampler) -> None:
        self.datasets, self.sampler = list(datasets), sampler
        self.offsets = np.cumsum([0, *(len(d) for d in self.datasets)])
        self._epoch: int | None = None
        self._batches: Iterator[list[int]] | None = None
        self._next = 0

    def batch_indices(self, epoch: int, iteration: int) -> list[int]:
        if self._batches is None or epoch != self._epoch or iteration < self._next:
            self._batches, self._epoch, self._next = iter(self.sampler), epoch, 0
        while self._next < iteration:  # skip batches other workers read
            next(self._batches)
            self._next += 1
        self._next += 1
        return next(self._batches)  # StopIteration here ends DALI's epoch

    def __call__(self, info: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        indices = self.batch_indices(info.epoch_idx, info.iteration)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        if (which != which[0]).any():
            names = sorted({self.datasets[int(d)].dataset_name for d in which})
            raise DataError(f"a batch mixes datasets {names}; batches must be single-dataset")
        d = int(which[0])
        ds, tag = self.datasets[d], np.array([d], dtype=np.int32)
        windows = [ds.read_window(*ds.locate(int(i - self.offsets[d]))) for i in indices]
        return windows, [tag] * len(windows)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_batches"], state["_epoch"], state["_next"] = None, None, 0  # not picklable
        return state


def build_pipeline(
    source: WindowBatchSource,
    batch_size: int,
    window: int,
    *,
    device_id: int | None = None,
    normalisation: Normalisation | None = None,
    num_threads: int = 1,
    prefetch_queue_depth: int = 2,
    py_num_workers: int = 0,
) -> tuple[Any, list[str]]:
    """The DALI pipeline and its output names: fields, dataset[, normalised, scales].

    Fields stay float32 (T, C, X, Y) per sample; on a GPU pipeline they and the normalisation
    outputs live on device `device_id`. The dataset number stays on the host.
    """
    d = import_dali()
    parallel = py_num_workers > 0
    pipe = d.dali.Pipeline(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id,
        prefetch_queue_depth=prefetch_queue_depth,
        # spawn, not fork: the training process has usually initialised CUDA already.
        py_num_workers=max(1, py_num_workers),
        py_start_method="spawn",
    )
    names = ["fields", "dataset"]
    with pipe:
        fields, tag = d.fn.external_source(
            source=source,
            num_outputs=2,
            batch=True,
            batch_info=True,
            parallel=parallel,
            dtype=[d.types.FLOAT, d.types.INT32],
            ndim=[2 + len(SPATIAL_DIMS), 1],
        )
        if device_id is not None:
            fields = fields.gpu()  # the host->device copy, inside the pipeline
        outputs = [fields, tag]
        if normalisation is not None:
            c, o = normalisation.frames(window)
            # (T, C, X, Y) per sample: reduce over time and space, keep C; keep_dims so the
            # division broadcasts per channel.
            over = [0, *range(2, 2 + len(SPATIAL_DIMS))]
            scales = d.fn.reductions.rms(fields[:c], axes=over, keep_dims=True)
            scales = d.math.max(scales, normalisation.eps)
            normalised = fields[:o] / scales
            outputs += [normalised, d.fn.squeeze(scales, axes=over)]
            names += ["normalised", "scales"]
        pipe.set_outputs(*outputs)
    return pipe, names


class DaliBatchLoader:
    """Iterable of batch dicts like physok.data.loaders' PyTorch loader, read through DALI.

    Yields `len(sampler)` batches per iteration (all full: the sampler makes no partial batch);
    a new iteration restarts the sequence from the sampler's `start_batch`, like a DataLoader.
    An endless sampler (num_batches=None) gives an endless loader without a length.

    Args:
        datasets: the windows, in the sampler's (ConcatDataset) order.
        sampler: the batch order (physok.data.loaders.build_sampler).
        device_id: CUDA ordinal for a GPU pipeline (copy + normalisation on the GPU); None: CPU.
        normalisation: also return `normalised` and `scales` computed in the pipeline.
        py_num_workers: >0 reads windows in that many DALI worker processes (spawned).
        num_threads: DALI's CPU thread pool.
        prefetch_queue_depth: batches DALI prepares ahead.
    """

    def __init__(
        self,
        datasets: Sequence[WellWindowDataset],
        sampler: MixedBatchSampler,
        *,
        device_id: int | None = None,
        normalisation: Normalisation | None = None,
        py_num_workers: int = 0,
        num_threads: int = 1,
        prefetch_queue_depth: int = 2,
    ) -> None:
        self._dali = import_dali()  # fail at construction, with the install hint
        if not datasets:
            raise DataError("the DALI loader needs at least one dataset")
        windows = {ds.window for ds in datasets}
        if len(windows) != 1:
            raise DataError(f"datasets have different windows {sorted(windows)}; use one window")
        self.datasets, self.sampler = list(datasets), sampler
        self.window = windows.pop()
        self.device_id, self.normalisation = device_id, normalisation
        if normalisation is not None:
            normalisation.frames(self.window)  # validate now, not inside the pipeline
        self.py_num_workers, self.num_threads = py_num_workers, num_threads
        self.prefetch_queue_depth = prefetch_queue_depth
        self._iterator: Any = None
        self._epoch_done = False

    def __len__(self) -> int:
        return len(self.sampler)

    def _new_iterator(self) -> Any:
        pipe, names = build_pipeline(
            WindowBatchSource(self.datasets, self.sampler),
            self.sampler.batch_size,
            self.window,
            device_id=self.device_id,
            normalisation=self.normalisation,
            num_threads=self.num_threads,
            prefetch_queue_depth=self.prefetch_queue_depth,
            py_num_workers=self.py_num_workers,
        )
        # size=-1: the epoch ends when the source raises StopIteration. Reset by hand (at the
        # next __iter__) so the end of a run does not prefetch a new epoch's windows.
        return self._dali.pytorch.DALIGenericIterator(
            [pipe], names, size=-1, auto_reset=False, prepare_first_batch=False
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.sampler.num_batches == 0:
            return  # nothing left to run (resumed at the last step); DALI needs >= 1 batch
        if self._iterator is not None and self._epoch_done:
            self._iterator.reset()
        else:
            # First use, or an epoch abandoned midway (DALI cannot rewind one): a fresh pipeline.
            self._iterator = self._new_iterator()
        self._epoch_done = False
        for out in self._iterator:
            yield self._to_batch(out[0])
        self._epoch_done = True

    def _to_batch(self, out: dict[str, torch.Tensor]) -> dict[str, Any]:
        which = out["dataset"].reshape(-1)
        d = int(which[0])
        if not bool((which == d).all()):
            raise DataError("a DALI batch mixes datasets; batches must be single-dataset")
        ds = self.datasets[d]
        batch: dict[str, Any] = {
            "fields": out["fields"],
            "field_indices": ds.field_indices,
            "dataset": ds.dataset_name,
        }
        if self.normalisation is not None:
            batch["normalised"], batch["scales"] = out["normalised"], out["scales"]
        return batch

    def __repr__(self) -> str:
        where = "cpu" if self.device_id is None else f"cuda:{self.device_id}"
        names = [ds.dataset_name for ds in self.datasets]
        return f"DaliBatchLoader({names}, batch_size={self.sampler.batch_size}, device={where})"
