"""Process-group setup for data-parallel training, launched by torchrun or as one process.

Under `torchrun` the environment carries RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `init_distributed` then joins the process group (NCCL on CUDA, gloo on CPU) and pins
each process to its local GPU. Without those variables it returns a single-process context and
creates no process group, and every helper here degrades to a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """Bad launch environment or device request (names the variable or option)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, local rank, its device and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: no process group (single process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def launched_by_torchrun() -> bool:
    return all(v in os.environ for v in ("RANK", "WORLD_SIZE"))


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise DistributedError(f"environment variable {name} is not set (launch with torchrun)")
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def select_device(request: str = "auto", local_rank: int = 0) -> torch.device:
    """The device for `--device` (auto|cpu|cuda|cuda:N); auto picks this rank's GPU if any."""
    request = (request or "auto").strip().lower()
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request == "cpu":
        return torch.device("cpu")
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError(
                f"--device {request}: CUDA is not available on this machine; use --device cpu"
            )
        dev = torch.device(request)
        index = dev.index if dev.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise DistributedError(
                f"--device {request}: GPU {index} does not exist "
                f"({torch.cuda.device_count()} visible); check CUDA_VISIBLE_DEVICES"
            )
        return torch.device("cuda", index)
    raise DistributedError(f"--device {request!r} is not one of auto, cpu, cuda, cuda:N")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun process group if launched by torchrun; else a single-process context."""
    if not launched_by_torchrun():
        return DistContext(device=select_device(device))
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK", 0)
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise DistributedError(f"incomplete torchrun environment: {missing} not set")
    dev = select_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev  # binds NCCL to this GPU (avoids barrier device guesses)
        dist.init_process_group(**kwargs)
    return DistContext(rank, world, local_rank, dev, backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place (identity in one process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: nn.Module, ctx: DistContext, **kwargs: Any) -> nn.Module:
    """DistributedDataParallel around `model` when a process group exists; else `model`."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **kwargs)


def teardown(sync: bool = True) -> None:
    """Leave the process group (safe to call twice or without one).

    `sync=False` skips the final barrier: after an error on one rank the others may never
    arrive, and waiting would turn a clear failure into a hang until the timeout.
    """
    if is_distributed():
        try:
            if sync:
                dist.barrier()
        finally:
            dist.destroy_process_group()
