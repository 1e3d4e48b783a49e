"""What every kernel module shares: interpreter mode, poisoned buffers, op registration."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from physok.ops.backend import interpreting

# With PHYSOK_KERNEL_POISON=1 every output and scratch buffer starts filled with NaN, so an
# element a kernel forgets to write shows up in any comparison.
POISON_ENV = "PHYSOK_KERNEL_POISON"
# Fixed at import, as triton decided when it was imported.
INTERPRET = interpreting()


def poison_enabled() -> bool:
    return os.environ.get(POISON_ENV, "0") not in ("", "0")


def empty(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    channels_last: bool = False,
) -> torch.Tensor:
    """torch.empty (channels_last_3d if asked), NaN-filled when poisoning is enabled."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
    if poison_enabled():
        out.fill_(float("nan"))
    return out


def define_op(name: str, impl: Callable, fake: Callable) -> Callable:
    """Register `impl` as a torch op that torch.compile can trace.

    On GPU a `triton_op` (torch.compile sees the Triton launches inside); under the interpreter
    `wrap_triton` cannot capture interpreted kernels, so an opaque `custom_op` with a
    shapes-only fake implementation.
    """
    if INTERPRET:
        op = torch.library.custom_op(name, impl, mutates_args=())
        op.register_fake(fake)
        return op
    return torch.library.triton_op(name, impl, mutates_args=())
