"""Fixtures for tokeniser tests: tiny configs that exercise every scale set cheaply."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from physok.models.tokeniser import TokeniserConfig


def _tiny_config(**overrides) -> TokeniserConfig:
    """Paper structure (3 depths, Table 7 scale sets) with 4/8/8 channels."""
    base = dict(channels=(4, 8, 8), latent_channels=6, norm_groups=2, mid_res_blocks=1)
    base.update(overrides)
    return TokeniserConfig(**base)


@pytest.fixture
def make_config() -> Callable[..., TokeniserConfig]:
    """Factory: make_config(**overrides) -> a tiny TokeniserConfig."""
    return _tiny_config


@pytest.fixture(params=["depth_to_space", "transposed"])
def upsampling(request) -> str:
    return request.param


@pytest.fixture
def tiny(upsampling) -> TokeniserConfig:
    return _tiny_config(upsampling=upsampling)
