"""Multi-dataset batching: one dataset per batch, datasets drawn with equal probability.

Each rank owns a disjoint shard of every dataset's windows. A rank walks a shuffled order of
its shard; when the shard's unique batches are used up it reseeds and reshuffles (the paper:
21,000 unique batches per GPU for pretraining, 2,100 for rollout). The whole sequence is a pure
function of (seed, rank, batch number), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Sampler

from physok.data.errors import DataError


class _ShardStream:
    """Endless batches from one rank's shard of one dataset, reshuffled after each pass."""

    def __init__(self, shard: np.ndarray, batch_size: int, seed: tuple[int, ...]) -> None:
        self.shard, self.batch_size, self.seed = shard, batch_size, seed
        self.per_pass = len(shard) // batch_size
        self.pass_index, self.position, self.order = -1, 0, shard

    def next_batch(self) -> np.ndarray:
        if self.pass_index < 0 or self.position == self.per_pass:
            self.pass_index += 1
            rng = np.random.default_rng([*self.seed, self.pass_index])
            self.order, self.position = rng.permutation(self.shard), 0
        b = self.order[self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        return b


class MixedBatchSampler(Sampler[list[int]]):
    """Batch sampler over `ConcatDataset(datasets)` yielding global indices.

    Args:
        dataset_lengths: number of windows of each dataset, in ConcatDataset order.
        batch_size: windows per batch (per rank).
        rank, world_size: this process's shard.
        seed: same on every rank; sharding and draws derive from it.
        num_batches: length of one iteration (None: endless).
        start_batch: skip this many batches (resuming); the skipped draws are replayed without
            touching data, so the continuation is identical to an uninterrupted run.
        weights: dataset probabilities (default equal, as in the paper).
    """

    def __init__(
        self,
        dataset_lengths: Sequence[int],
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        num_batches: int | None = None,
        start_batch: int = 0,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not dataset_lengths:
            raise DataError("MixedBatchSampler needs at least one dataset")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = [int(n) for n in dataset_lengths]
        self.offsets = np.cumsum([0, *self.lengths])[:-1]
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.num_batches, self.start_batch = seed, num_batches, start_batch
        w = np.ones(len(self.lengths)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(self.lengths),) or (w < 0).any() or w.sum() <= 0:
            raise DataError(f"weights must be {len(self.lengths)} non-negative numbers")
        self.weights = w / w.sum()
        for i, n in enumerate(self.lengths):
            if n // world_size < batch_size:
                raise DataError(
                    f"dataset {i} has {n} windows: fewer than batch_size={batch_size} per rank "
                    f"with world_size={world_size}; lower the batch size or add data"
                )

    def shard(self, dataset: int) -> np.ndarray:
        """This rank's disjoint share of a dataset's (local) window indices."""
        perm = np.random.default_rng([self.seed, dataset]).permutation(self.lengths[dataset])
        return np.sort(perm[self.rank :: self.world_size])

    def unique_batches_per_pass(self) -> list[int]:
        return [len(self.shard(i)) // self.batch_size for i in range(len(self.lengths))]

    def __iter__(self) -> Iterator[list[int]]:
        streams = [
            _ShardStream(self.shard(i), self.batch_size, (self.seed, i, self.rank))
            for i in range(len(self.lengths))
        ]
        choose = np.random.default_rng([self.seed, 1 << 20, self.rank])
        step = 0
        while self.num_batches is None or step < self.start_batch + self.num_batches:
            d = int(choose.choice(len(self.lengths), p=self.weights))
            batch = streams[d].next_batch()
            if step >= self.start_batch:
                yield (batch + self.offsets[d]).tolist()
            step += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless MixedBatchSampler has no length")
        return self.num_batches


def concat(datasets: Sequence[Dataset]) -> tuple[ConcatDataset, list[int]]:
    """ConcatDataset of `datasets` and their lengths, for MixedBatchSampler."""
    return ConcatDataset(list(datasets)), [len(d) for d in datasets]  # type: ignore[arg-type]
