"""Training batch loaders and the one place that picks between them (config field `loader`).

Both kinds yield the same batches, in the same order, from the same `MixedBatchSampler` (one
dataset per batch, equal probability, this rank's disjoint shard, `start_batch` to resume):

    "torch"  a PyTorch `DataLoader` over the windows (default; worker processes read in parallel)
    "dali"   an NVIDIA DALI pipeline fed by `fn.external_source` (physok.data.dali_loader);
             with a CUDA device the host->device copy and the RMS normalisation run on the GPU

A batch is a dict: `fields` (B, T, C, X, Y) float32, `field_indices` (C,) int64 on the host and
`dataset` (its name). With a `Normalisation`, it also holds `normalised` (B, T', C, X, Y) and
`scales` (B, C), computed on `ctx.device` (the torch kind uses physok.ops.rms_normalise, which
picks the Triton kernel on CUDA; the dali kind computes them inside the pipeline).

The training stages ask for raw `fields` (no `Normalisation`) and normalise on the device
themselves with physok.ops.rms_normalise, the fused Triton kernel on CUDA, which keeps the two
loader kinds bit-identical in training; the in-loader normalisation is for consumers that want
it inside the pipeline (with DALI it then overlaps with the training step).

A loader runs `cfg.steps - start_batch` batches per iteration, all full (the sampler never makes a
partial batch); iterating again starts the same sequence from `start_batch` again.

No loader draws from torch's global RNG: a DataLoader without a `generator` draws its workers'
base seed from it each time an iterator starts, so a resumed run (whose iterator starts after
the checkpointed RNG state is restored) would shift the stream stochastic depth draws from, and
differ from an uninterrupted run. Every DataLoader physok builds gets `loader_generator(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from physok.data.errors import DataError
from physok.data.mixing import MixedBatchSampler, concat
from physok.data.normalise import DEFAULT_EPS
from physok.data.reader import WellWindowDataset

LOADER_KINDS: tuple[str, ...] = ("torch", "dali")


class BatchConfig(Protocol):
    """The config fields a loader reads (TokeniserTrainConfig and the other stages have them)."""

    batch_size: int
    seed: int
    steps: int
    num_workers: int


class DeviceContext(Protocol):
    """Where this process sits (physok.train.distributed.DistContext satisfies it)."""

    rank: int
    world_size: int
    device: torch.device


class BatchLoader(Protocol):
    """What the training loop consumes: an iterable of batch dicts with a length."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Normalisation:
    """Sample-wise, per-field RMS normalisation done by the loader (DESIGN.md §2).

    Scales (B, C) come from the first `context_frames` snapshots (None: all); the first
    `output_frames` snapshots (None: all) are divided by them. The tokeniser autoencodes frames
    1..9 of a 10-frame window: `Normalisation(9, 9)`, which equals
    `physok.ops.rms_normalise(fields[:, :9])`. The processor predicts frame 10 from 1..9 with
    context scales applied to the target too: `Normalisation(9, None)`.
    """

    context_frames: int | None = None
    output_frames: int | None = None
    eps: float = DEFAULT_EPS

    def frames(self, window: int) -> tuple[int, int]:
        """(context, output) frame counts for windows of `window` snapshots, validated."""
        c = window if self.context_frames is None else self.context_frames
        o = window if self.output_frames is None else self.output_frames
        for name, v in (("context_frames", c), ("output_frames", o)):
            if not 1 <= v <= window:
                raise DataError(f"Normalisation.{name}={v} outside 1..{window} (the window)")
        if not self.eps > 0:
            raise DataError(f"Normalisation.eps must be > 0, got {self.eps}")
        return c, o


def loader_generator(*key: int) -> torch.Generator:
    """A DataLoader's own generator, seeded from `key` (e.g. seed, rank, start batch): the
    loader draws its workers' base seed from it instead of torch's global RNG (module
    docstring). Windows are read without randomness, so the seed only has to be fixed."""
    seed = np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def collate_windows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack windows of one dataset: fields (B, T, C, X, Y), field_indices (C,), dataset name."""
    names = {s["dataset"] for s in samples}
    if len(names) != 1:
        raise DataError(f"a batch mixes datasets {sorted(names)}; batches must be single-dataset")
    return {
        "fields": torch.stack([s["fields"] for s in samples]),
        "field_indices": samples[0]["field_indices"],
        "dataset": samples[0]["dataset"],
    }


def build_sampler(
    datasets: Sequence[WellWindowDataset],
    cfg: BatchConfig,
    ctx: DeviceContext,
    start_batch: int = 0,
) -> MixedBatchSampler:
    """The batch order both loader kinds follow: steps start_batch..cfg.steps-1 of this rank."""
    if not datasets:
        raise DataError("a loader needs at least one dataset (config field `datasets` is empty)")
    for ds in datasets:
        if len(ds) // ctx.world_size < cfg.batch_size:
            raise DataError(
                f"--batch-size {cfg.batch_size}: dataset {ds.dataset_name} has {len(ds)} "
                f"windows, fewer than {cfg.batch_size} per rank for {ctx.world_size} rank(s); "
                "lower the batch size or generate more trajectories"
            )
    return MixedBatchSampler(
        [len(d) for d in datasets],
        cfg.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=cfg.seed,
        num_batches=max(0, cfg.steps - start_batch),
        start_batch=start_batch,
    )


def normalise_batch(
    batch: dict[str, Any],
    normalisation: Normalisation,
    device: torch.device | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Add `normalised` and `scales` to `batch` (fields moved to `device` first when given).

    This is the PyTorch path's normalisation (physok.ops.rms_normalise: the Triton kernel on
    CUDA, the reference elsewhere); the DALI pipeline computes the same quantities.
    """
    fields = batch["fields"]
    if device is not None:
        fields = fields.to(device, non_blocking=True)
    c, o = normalisation.frames(fields.shape[1])
    from physok.ops.rms_normalise import rms_normalise  # the ops package pulls in the kernels

    normalised, scales = rms_normalise(fields[:, : max(c, o)], c, normalisation.eps, backend)
    return {**batch, "fields": fields, "normalised": normalised[:, :o], "scales": scales}


class TorchBatchLoader:
    """A DataLoader whose batches are normalised on `device` after the host->device copy."""

    def __init__(self, loader: DataLoader, normalisation: Normalisation, device: torch.device):
        self.loader, self.normalisation, self.device = loader, normalisation, device

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield normalise_batch(batch, self.normalisation, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def build_torch_loader(
    datasets: Sequence[WellWindowDataset],
    cfg: BatchConfig,
    ctx: DeviceContext,
    start_batch: int = 0,
    *,
    normalisation: Normalisation | None = None,
) -> BatchLoader:
    """The PyTorch DataLoader path (see the module docstring)."""
    data, _ = concat(datasets)
    loader = DataLoader(
        data,
        batch_sampler=build_sampler(datasets, cfg, ctx, start_batch),
        collate_fn=collate_windows,
        num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
        generator=loader_generator(cfg.seed, ctx.rank, start_batch),
    )
    if normalisation is None:
        return loader
    return TorchBatchLoader(loader, normalisation, ctx.device)


def build_batch_loader(
    kind: str,
    datasets: Sequence[WellWindowDataset],
    cfg: BatchConfig,
    ctx: DeviceContext,
    start_batch: int = 0,
    *,
    normalisation: Normalisation | None = None,
) -> BatchLoader:
    """Training batches for steps start_batch..cfg.steps-1 from the loader `kind`.

    `kind` is the stage config's `loader` field: "torch" (DataLoader, `cfg.num_workers`
    reader processes) or "dali" (DALI pipeline on `ctx.device`'s GPU when it is CUDA, a CPU
    pipeline otherwise; needs `pip install "physok[dali]"`). Both give identical batches.
    """
    if kind == "torch":
        return build_torch_loader(datasets, cfg, ctx, start_batch, normalisation=normalisation)
    if kind == "dali":
        from physok.data.dali_loader import DaliBatchLoader, dali_device_id

        return DaliBatchLoader(
            datasets,
            build_sampler(datasets, cfg, ctx, start_batch),
            device_id=dali_device_id(ctx.device),
            normalisation=normalisation,
            py_num_workers=cfg.num_workers,
        )
    raise ValueError(
        f"loader={kind!r} is not a known loader; choose one of {list(LOADER_KINDS)} "
        "(config field `loader`, e.g. --set loader=torch)"
    )
