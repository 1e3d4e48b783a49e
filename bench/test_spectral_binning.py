"""NEPS radial binning: rfft2 + the fused Triton binning kernel vs rfft2 + torch masked sums.

Run: pytest bench/ --benchmark-only -k spectral. Real size: (B, T, C) = (2, 10, 5) fields of
512x512 in fp32 and bf16, the_well's three bins. Both callables include the two rfft2 (cuFFT) and
synchronise CUDA before returning. `extra_info` of the Triton entry: speedup_vs_reference (timed
in the same test with CUDA events) and fft_ms (the two rfft2 alone: the floor of either path).
On a machine without CUDA only the reference runs, on the CPU, in 2 rounds (~2 s each).
"""

from __future__ import annotations

import pytest
import torch
from cuda_timing import cuda_seconds

from physok.ops.spectral_binning import binned_spectral_power_reference, the_well_bin_edges

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
    ref_s = cuda_seconds(lambda: binned_spectral_power_reference(p, t, e))
    fft_s = cuda_seconds(lambda: (torch.fft.rfft2(p.float()), torch.fft.rfft2(t.float())))
    benchmark.extra_info["speedup_vs_reference"] = ref_s / benchmark.stats["mean"]
    benchmark.extra_info["fft_ms"] = fft_s * 1e3
