"""Single-process behaviour of the distributed helpers (the torchrun run is in test_ddp.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from physok.train import distributed as d


@pytest.fixture
def no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_single_process_needs_no_process_group(no_torchrun_env: None) -> None:
    ctx = d.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (0, 1, 0)
    assert ctx.is_main and not ctx.distributed and ctx.device == torch.device("cpu")
    assert not d.is_distributed() and d.get_rank() == 0 and d.get_world_size() == 1
    model = nn.Linear(2, 2)
    assert d.wrap_ddp(model, ctx) is model
    t = torch.tensor([1.5, 2.0])
    assert torch.equal(d.all_reduce_sum(t), torch.tensor([1.5, 2.0]))
    assert d.all_gather_object({"a": 1}) == [{"a": 1}]
    assert d.broadcast_object("x") == "x"
    d.barrier()
    d.teardown()  # no-op without a group


def test_device_selection(no_torchrun_env: None) -> None:
    assert d.select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert d.select_device("auto").type == expected
    with pytest.raises(d.DistributedError, match="--device 'tpu' is not one of"):
        d.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(d.DistributedError, match="--device cuda: CUDA is not available"):
            d.select_device("cuda")


def test_incomplete_torchrun_environment(
    no_torchrun_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(d.DistributedError, match="WORLD_SIZE='two' is not an integer"):
        d.init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(d.DistributedError, match="MASTER_ADDR"):
        d.init_distributed("cpu")
