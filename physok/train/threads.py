"""CPU thread policy: how many intra-op threads torch uses, chosen once and recorded.

Measured on the 2-core development machines (one rollout training step of the fast experiment's
model, batch 8, 32², README "Threads"): with the machine otherwise idle, 2 threads ran a step
1.6-1.8x faster than 1; with two other busy processes on the machine, 2 threads ran it 1.5x
slower than 1 (the threads wait on each other for cores). A user running the experiment usually
leaves the machine to it, so the default is every core this process may use, split between the
ranks of a CPU torchrun; `--threads 1` (or `--set threads=1`) is the choice on a shared machine.

Results depend on the thread count (floating-point sums are split differently), so the count is
set explicitly, not left to torch's own default, and written to results.json: a run repeats its
numbers on the same machine with the same thread count.
"""

from __future__ import annotations

import os

import torch

AUTO = 0  # "every core available to this process, divided between the CPU ranks"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(requested: int, world_size: int = 1, device_type: str = "cpu") -> int:
    """The intra-op thread count for `requested` (AUTO or a positive count).

    AUTO gives every available core, divided between the ranks when several CPU ranks share the
    machine (GPU ranks keep the whole count: their CPU work is data loading and bookkeeping).
    """
    if requested < 0:
        raise ValueError(f"threads must be >= 1, or {AUTO} for automatic; got {requested}")
    if requested != AUTO:
        return requested
    cores = available_cores()
    if device_type == "cpu" and world_size > 1:
        return max(1, cores // world_size)
    return cores


def apply_threads(requested: int, world_size: int = 1, device_type: str = "cpu") -> int:
    """Set torch's intra-op thread count by the policy; returns the count set."""
    n = resolve_threads(requested, world_size, device_type)
    torch.set_num_threads(n)
    return n
