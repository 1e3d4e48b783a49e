"""Attention backends (physok.ops.attention) on the processor's real shapes.

Run: pytest bench/ --benchmark-only -k attention. Shapes are the paper preset's (16 heads of 68)
on a batch of 2 windows of a 512x512 simulation at the eval scales (3 latent frames of 16x16):
spatial attention is 2*3 sequences of 256 tokens; temporal attention 2*256 sequences of 3 steps
with the T5 bias, which must take an exact path. A "long" spatial case (64x64 tokens, e.g. a
1024² grid) shows where flash matters. Forward + backward per call, `extra_info` TFLOP_per_s from
the attention FLOPs (4·L²·D per head forward, 2.5x that for forward + backward).

On CUDA (bf16): flash vs sdpa vs math. On CPU (fp32, smaller batch so a round stays short):
sdpa vs math, the only comparison meaningful there; flash is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from physok.ops.attention import attention, available_backends

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPE = torch.bfloat16 if CUDA else torch.float32
HEADS, HEAD_DIM = 16, 68
# name: (sequences, tokens per sequence, causal with the T5 bias); the exact shape of a run is
# in `extra_info["shape"]`
CASES = {
    "spatial": (6 if CUDA else 2, 256, False),
    "spatial-long": (2 if CUDA else 1, 4096 if CUDA else 1024, False),
    "temporal-bias": (512 if CUDA else 64, 3, True),
}


def _synced(fn: Callable[[], object]) -> Callable[[], None]:
    if not CUDA:
        return fn  # type: ignore[return-value]

    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return run


def _inputs(n: int, length: int, with_bias: bool):
    g = torch.Generator(device=DEVICE).manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=DEVICE, generator=g).to(DTYPE).requires_grad_()

    q, k, v = (rand(n, HEADS, length, HEAD_DIM) for _ in range(3))
    bias = None
    if with_bias:
        bias = torch.randn(1, HEADS, length, length, device=DEVICE, generator=g).to(DTYPE)
    return q, k, v, bias


def _bench(benchmark, case: str, backend: str) -> None:
    n, length, with_bias = CASES[case]
    if backend not in available_backends(DEVICE):
        pytest.skip(f"attention backend {backend!r} is not available on {DEVICE}")
    if backend == "flash" and with_bias:
        pytest.skip("calls with a bias never run flash (they take SDPA's exact path)")
    q, k, v, bias = _inputs(n, length, with_bias)
    grad = torch.randn_like(q)

    def step() -> None:
        out = attention(q, k, v, bias=bias, causal=with_bias, backend=backend)
        out.backward(grad)

    run = _synced(step)
    run()  # warm-up (kernel selection, lazy init) outside the timing
    benchmark.group = "attention"
    benchmark(run)
    flops = 2.5 * 4 * n * HEADS * length * length * HEAD_DIM
    benchmark.extra_info["TFLOP_per_s"] = flops / benchmark.stats["mean"] / 1e12
    benchmark.extra_info["shape"] = f"{n}x{HEADS}x{length}x{HEAD_DIM}"


# One test per backend, parametrised by shape: bench/summarise.py compares entries of the same
# group and parameter, with the "math" entry as the reference.
@pytest.mark.parametrize("case", list(CASES))
def test_attention_flash(benchmark, case: str) -> None:
    _bench(benchmark, case, "flash")


@pytest.mark.parametrize("case", list(CASES))
def test_attention_sdpa(benchmark, case: str) -> None:
    _bench(benchmark, case, "sdpa")


@pytest.mark.parametrize("case", list(CASES))
def test_attention_math(benchmark, case: str) -> None:
    _bench(benchmark, case, "math")
