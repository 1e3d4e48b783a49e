"""Compression scales: one (temporal, spatial) factor pair per downsampling depth."""

from __future__ import annotations

import itertools
import math

import torch

from physok.models.tokeniser.config import TokeniserConfig

Scales = tuple[tuple[int, int], ...]


def sample_scales(config: TokeniserConfig, generator: torch.Generator | None = None) -> Scales:
    """The scales of one training forward under `config.scale_policy`: "flexible" draws one
    temporal and one spatial factor uniformly per depth (Table 7), "fixed" is the eval scales,
    "mixed" is the eval scales with probability `eval_scale_prob`, else a flexible draw."""
    if config.scale_policy == "fixed":
        return config.eval_scales
    if config.scale_policy == "mixed":
        # drawn whatever the outcome, so the generator advances the same way every forward
        u = float(torch.rand((), generator=generator))
        drawn = _uniform_scales(config, generator)
        return config.eval_scales if u < config.eval_scale_prob else drawn
    return _uniform_scales(config, generator)


def _uniform_scales(config: TokeniserConfig, generator: torch.Generator | None) -> Scales:
    out = []
    for ts, ss in zip(config.temporal_scales, config.spatial_scales, strict=True):
        i = int(torch.randint(len(ts), (1,), generator=generator))
        j = int(torch.randint(len(ss), (1,), generator=generator))
        out.append((ts[i], ss[j]))
    return tuple(out)


def check_scales(config: TokeniserConfig, scales: Scales) -> Scales:
    """Validate a user-given scale choice against the config's sets; return it as tuples."""
    try:
        scales = tuple((int(st), int(ss)) for st, ss in scales)
    except (TypeError, ValueError):
        raise ValueError(
            f"scales must be one (temporal, spatial) pair per depth, got {scales!r}"
        ) from None
    if len(scales) != config.depths:
        raise ValueError(f"scales has {len(scales)} pairs but the tokeniser has {config.depths}")
    for depth, ((st, ss), ts_set, ss_set) in enumerate(
        zip(scales, config.temporal_scales, config.spatial_scales, strict=True)
    ):
        if st not in ts_set or ss not in ss_set:
            raise ValueError(
                f"scale pair {(st, ss)} at depth {depth + 1} is not allowed; temporal factors "
                f"{ts_set}, spatial factors {ss_set}"
            )
    return scales


def total_compression(scales: Scales) -> tuple[int, int]:
    """(temporal, spatial) compression over all depths."""
    return math.prod(s[0] for s in scales), math.prod(s[1] for s in scales)


def latent_shape(frames: int, grid: tuple[int, int], scales: Scales) -> tuple[int, tuple[int, int]]:
    """Latent frames and grid for an input of `frames` x `grid` under `scales`."""
    t, x, y = frames, *grid
    for st, ss in scales:
        t = (t - 1) // st + 1
        x, y = x // ss, y // ss
    return t, (x, y)


def check_input_shape(frames: int, grid: tuple[int, int], scales: Scales) -> None:
    """Frames must be 1 + a multiple of the temporal compression; grids divisible by space's."""
    st, ss = total_compression(scales)
    if (frames - 1) % st:
        raise ValueError(
            f"{frames} frames cannot be compressed by {st} in time: use 1 + a multiple of {st} "
            "frames (the tokeniser is built for 1 + 2^n, e.g. 9)"
        )
    if grid[0] % ss or grid[1] % ss:
        raise ValueError(
            f"grid {grid} is not divisible by the spatial compression {ss}; use power-of-two "
            "grids or smaller spatial scales"
        )


def all_scale_combinations(config: TokeniserConfig) -> list[Scales]:
    """Every allowed scale choice (one (temporal, spatial) pair per depth)."""
    per_depth = [
        list(itertools.product(ts, ss))
        for ts, ss in zip(config.temporal_scales, config.spatial_scales, strict=True)
    ]
    return [tuple(c) for c in itertools.product(*per_depth)]
