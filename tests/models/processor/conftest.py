"""Small processor configs for tests (head dims that are not multiples of 8 exercise padding)."""

from __future__ import annotations

import pytest

from physok.models.processor import ProcessorConfig


@pytest.fixture
def tiny_config() -> ProcessorConfig:
    # Head dim 20: not a multiple of 8 (flash padding), fully rotated by the 2D RoPE.
    return ProcessorConfig(dim=40, depth=2, heads=2, mlp_hidden=64, norm_groups=2, drop_path=0.0)
