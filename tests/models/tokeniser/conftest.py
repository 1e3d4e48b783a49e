"""Fixtures for tokeniser tests: tiny configs that exercise every scale set cheaply."""

from __future__ import annotations

import itertools

import pytest

from physok.models.tokeniser import TokeniserConfig


def tiny_config(**overrides) -> TokeniserConfig:
    """Paper structure (3 depths, Table 7 scale sets) with 4/8/8 channels."""
    base = dict(channels=(4, 8, 8), latent_channels=6, norm_groups=2, mid_res_blocks=1)
    base.update(overrides)
    return TokeniserConfig(**base)


def all_scale_combinations(config: TokeniserConfig) -> list[tuple[tuple[int, int], ...]]:
    per_depth = [
        list(itertools.product(ts, ss))
        for ts, ss in zip(config.temporal_scales, config.spatial_scales, strict=True)
    ]
    return list(itertools.product(*per_depth))


@pytest.fixture(params=["depth_to_space", "transposed"])
def upsampling(request) -> str:
    return request.param


@pytest.fixture
def tiny(upsampling) -> TokeniserConfig:
    return tiny_config(upsampling=upsampling)
