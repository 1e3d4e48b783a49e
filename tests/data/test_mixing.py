"""Multi-dataset batches: one dataset per batch, equal probability, disjoint shards, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from physok.data.errors import DataError
from physok.data.mixing import MixedBatchSampler, concat


def dataset_of(batch: list[int], lengths: list[int]) -> int:
    offsets = np.cumsum([0, *lengths])
    ids = {int(np.searchsorted(offsets, i, side="right") - 1) for i in batch}
    assert len(ids) == 1, "a batch must come from one dataset"
    return ids.pop()


def test_one_dataset_per_batch_with_equal_probability() -> None:
    lengths = [1000, 50, 300]  # very unequal sizes: still equal probability
    s = MixedBatchSampler(lengths, batch_size=4, seed=3, num_batches=3000)
    counts = Counter(dataset_of(b, lengths) for b in s)
    for d in range(3):
        assert abs(counts[d] / 3000 - 1 / 3) < 0.04


def test_ranks_read_disjoint_shards_covering_the_data() -> None:
    lengths = [103, 64]
    shards = [MixedBatchSampler(lengths, 2, rank=r, world_size=4, seed=1) for r in range(4)]
    for d in range(2):
        parts = [set(s.shard(d).tolist()) for s in shards]
        assert sum(len(p) for p in parts) == lengths[d]
        assert set().union(*parts) == set(range(lengths[d]))
    # What a rank actually yields stays within its shard.
    for r, s in enumerate(shards):
        s.num_batches = 200
        allowed = set(s.shard(0).tolist()) | {103 + i for i in s.shard(1).tolist()}
        assert {i for b in s for i in b} <= allowed, r


def test_unique_batches_then_reshuffle() -> None:
    s = MixedBatchSampler([40], batch_size=4, seed=0, num_batches=30)
    batches = list(s)
    first_pass = [i for b in batches[:10] for i in b]
    assert sorted(first_pass) == list(range(40))  # every window once per pass
    second_pass = [i for b in batches[10:20] for i in b]
    assert sorted(second_pass) == list(range(40))
    assert first_pass != second_pass  # reseeded order


def test_resume_continues_the_same_sequence() -> None:
    full = list(MixedBatchSampler([30, 17], 3, seed=5, num_batches=50))
    tail = list(MixedBatchSampler([30, 17], 3, seed=5, num_batches=30, start_batch=20))
    assert tail == full[20:]


def test_with_dataloader() -> None:
    a = torch.utils.data.TensorDataset(torch.zeros(20, 2))
    b = torch.utils.data.TensorDataset(torch.ones(12, 3))
    cat, lengths = concat([a, b])
    loader = torch.utils.data.DataLoader(
        cat, batch_sampler=MixedBatchSampler(lengths, 4, seed=0, num_batches=20)
    )
    for (x,) in loader:  # different channel counts per dataset collate fine
        assert x.shape in {(4, 2), (4, 3)}


def test_bad_options() -> None:
    with pytest.raises(DataError, match="fewer than batch_size=8 per rank"):
        MixedBatchSampler([10], 8, world_size=2)
    with pytest.raises(DataError, match="rank 2 outside world size 2"):
        MixedBatchSampler([10], 1, rank=2, world_size=2)
