"""Shared test setup: skip GPU-marked tests cleanly when no CUDA device is present.

Without CUDA, Triton kernels can only run in its interpreter, which Triton reads from
TRITON_INTERPRET when it is first imported: set it here, before any test module imports triton
(importing torch does not).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
