"""Timing helpers shared by the GPU benchmarks (imported as `cuda_timing` from bench/ tests)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def cuda_seconds(fn: Callable[[], object], reps: int = 20) -> float:
    """Mean seconds per call of `fn` measured with CUDA events (after one warm-up call)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / reps
