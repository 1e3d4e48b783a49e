"""NEPS radial binning: rfft2 + Triton / native (csrc/) binning vs rfft2 + torch masked sums.

Run: pytest bench/ --benchmark-only -k spectral. Real size: (B, T, C) = (2, 10, 5) fields of
512x512 in fp32 and bf16, the_well's three bins. Every callable includes the two rfft2 (cuFFT on
GPU) and synchronises CUDA before returning. `extra_info`: throughput_gb_s (bytes of pred + true
per second: the op's input traffic, end to end), and for the fast paths speedup_vs_reference
(the reference's mean from its entry in this run, else timed in the same test: CUDA events on
GPU, best of 2 on CPU) and fft_ms (the two rfft2 alone: the floor of every path).
On a machine without CUDA the reference and the native op run on the CPU in fp32, 2 rounds each
(~2 s per reference round); the first native call builds the library if it is not cached (not
timed). Without a C++ compiler the native entries skip with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from cuda_timing import cuda_seconds

from physok.ops import native_build
from physok.ops.spectral_binning import (
    binned_spectral_power_native,
    binned_spectral_power_reference,
    the_well_bin_edges,
)

SHAPE = (2, 10, 5, 512, 512)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


@pytest.fixture(scope="module", params=list(DTYPES))
def case(request: pytest.FixtureRequest) -> dict:
    if not CUDA and request.param != "fp32":
        pytest.skip("CPU: fp32 reference only")
    device = "cuda" if CUDA else "cpu"
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(SHAPE, generator=gen)
    pred = true + 0.1 * torch.randn(SHAPE, generator=gen)
    dtype = DTYPES[request.param]
    return {
        "name": request.param,
        "pred": pred.to(device, dtype),
        "true": true.to(device, dtype),
        "edges": the_well_bin_edges(SHAPE[-2:]).to(device),
    }


def _group(case: dict) -> str:
    return f"neps_binning-{case['name']}-2x10x5x512x512"


# Reference means of this run, per case: the fast paths' speedups reuse them.
_REFERENCE_S: dict[str, float] = {}


def _gb_per_s(case: dict, seconds: float) -> float:
    p, t = case["pred"], case["true"]
    return (p.numel() * p.element_size() + t.numel() * t.element_size()) / seconds / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    if CUDA:
        return cuda_seconds(fn)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _reference_seconds(case: dict) -> float:
    if case["name"] not in _REFERENCE_S:
        p, t, e = case["pred"], case["true"], case["edges"]
        _REFERENCE_S[case["name"]] = _seconds(lambda: binned_spectral_power_reference(p, t, e))
    return _REFERENCE_S[case["name"]]


def _fast_path_info(benchmark, case: dict) -> None:
    p, t = case["pred"], case["true"]
    mean = benchmark.stats["mean"]
    benchmark.extra_info["device"] = "cuda" if CUDA else "cpu"
    benchmark.extra_info["throughput_gb_s"] = _gb_per_s(case, mean)
    benchmark.extra_info["speedup_vs_reference"] = _reference_seconds(case) / mean
    benchmark.extra_info["fft_ms"] = (
        _seconds(lambda: (torch.fft.rfft2(p.float()), torch.fft.rfft2(t.float()))) * 1e3
    )


def test_spectral_binning_reference(benchmark, case: dict) -> None:
    p, t, e = case["pred"], case["true"], case["edges"]

    def run() -> None:
        binned_spectral_power_reference(p, t, e)
        _sync()

    benchmark.group = _group(case)
    run()
    if CUDA:
        benchmark(run)
    else:
        benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    benchmark.extra_info["device"] = "cuda" if CUDA else "cpu"
    benchmark.extra_info["throughput_gb_s"] = _gb_per_s(case, benchmark.stats["mean"])
    _REFERENCE_S[case["name"]] = benchmark.stats["mean"]


@needs_cuda
def test_spectral_binning_triton(benchmark, case: dict) -> None:
    from physok_kernels.spectral_binning import binned_spectral_power

    p, t, e = case["pred"], case["true"], case["edges"]

    def run() -> None:
        binned_spectral_power(p, t, e)
        _sync()

    benchmark.group = _group(case)
    run()
    benchmark(run)
    _fast_path_info(benchmark, case)


def test_spectral_binning_native(benchmark, case: dict) -> None:
    p, t, e = case["pred"], case["true"], case["edges"]
    if not native_build.native_available(p):
        pytest.skip(f"native op unavailable: {native_build.native_unavailable_reason(p)}")

    def run() -> None:
        binned_spectral_power_native(p, t, e)
        _sync()

    benchmark.group = _group(case)
    run()
    if CUDA:
        benchmark(run)
    else:
        benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    _fast_path_info(benchmark, case)
