"""The CPU thread policy: automatic count, CPU ranks sharing the cores, explicit counts."""

from __future__ import annotations

import pytest
import torch

from physok.train import threads


def test_auto_is_every_available_core(monkeypatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.resolve_threads(threads.AUTO) == 8
    # CPU ranks of one torchrun split the cores; GPU ranks keep them
    assert threads.resolve_threads(threads.AUTO, world_size=2) == 4
    assert threads.resolve_threads(threads.AUTO, world_size=16) == 1
    assert threads.resolve_threads(threads.AUTO, world_size=2, device_type="cuda") == 8


def test_explicit_counts_and_errors() -> None:
    assert threads.resolve_threads(3, world_size=4) == 3
    with pytest.raises(ValueError, match="threads must be"):
        threads.resolve_threads(-1)
    assert threads.available_cores() >= 1


def test_apply_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
