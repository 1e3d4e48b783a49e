"""T5-style learned relative position bias for (causal) attention over time.

Relative position r = key_position - query_position. With bidirectional=False (causal use) the
distance into the past n = max(-r, 0) maps to a bucket: distances below num_buckets // 2 get
their own bucket; larger ones share logarithmically wider buckets up to `max_distance`, beyond
which all use the last bucket. Bidirectional: half the buckets for each sign. Each bucket holds a
learned bias per head. Walrus calls the bucket function without its `max_distance` (so the
module's value is silently ignored); here it is always passed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(
    relative_position: torch.Tensor,
    *,
    bidirectional: bool,
    num_buckets: int,
    max_distance: int,
) -> torch.Tensor:
    """Bucket index in [0, num_buckets) of each relative position (key - query), int64."""
    buckets = torch.zeros_like(relative_position, dtype=torch.long)
    n = -relative_position.long()
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (n < 0).long() * num_buckets  # keys after the query
        n = n.abs()
    else:
        n = n.clamp(min=0)  # keys after the query share bucket 0 (and are masked by callers)
    max_exact = num_buckets // 2
    if max_distance <= max_exact:
        raise ValueError(
            f"relative_position_bucket: max_distance={max_distance} must exceed the exact range "
            f"{max_exact} (num_buckets={num_buckets}{' per direction' if bidirectional else ''})"
        )
    # Clamp before the log so n < max_exact (taken from the exact branch) never hits log(0).
    scaled = torch.log(n.clamp(min=max_exact).double() / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (scaled * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(n < max_exact, n, large)


class RelativePositionBias(nn.Module):
    def __init__(
        self,
        heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(num_buckets, heads)
        # Validate the bucket parameters now rather than at the first forward.
        relative_position_bucket(
            torch.zeros(1, dtype=torch.long),
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        )

    def buckets(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """(L, L) bucket of query i (rows) attending to key j (columns)."""
        pos = torch.arange(length, device=device)
        return relative_position_bucket(
            pos[None, :] - pos[:, None],
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )

    def forward(self, length: int) -> torch.Tensor:
        """(1, heads, L, L) additive bias; keys after the query are -inf when causal."""
        weight = self.embedding.weight
        bias = self.embedding(self.buckets(length, weight.device)).permute(2, 0, 1)
        if not self.bidirectional:
            future = torch.ones(length, length, dtype=torch.bool, device=weight.device).triu(1)
            bias = bias.masked_fill(future, float("-inf"))
        return bias.unsqueeze(0)

    def extra_repr(self) -> str:
        return (
            f"heads={self.heads}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}, bidirectional={self.bidirectional}"
        )
