"""RMS and z-score normalisation: the fused Triton kernels vs the torch reference vs a plain
copy, on GPU.

Run: pytest bench/ --benchmark-only -k rms (all of this file; -k zscore for the z-score ones).
Real size: B=2, T=10, C=5, 512x512, statistics from the 9 context frames, bf16 and fp32. Every
callable synchronises CUDA before returning. `extra_info`: GB_per_s = useful bytes / time
(normalise reads the context frames once for the statistics, then reads and writes every
element: (9/10 + 2) x the tensor, for RMS and z-score alike; denormalise and the copy read and
write it once: 2 x), and copy_fraction = GB_per_s / the bandwidth of `x.clone()` on the same
tensor (DESIGN.md §8 target: >= 0.8 for normalise). The copy itself is an entry of each group
too. Skipped without CUDA (the interpreter says nothing about GPU speed).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from cuda_timing import cuda_seconds

from physok.data import normalise as reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SHAPE = (2, 10, 5, 512, 512)
N_CONTEXT = 9
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _synced(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return run


@pytest.fixture(scope="module", params=list(DTYPES))
def case(request: pytest.FixtureRequest) -> dict:
    dtype = DTYPES[request.param]
    x = (torch.randn(SHAPE, device="cuda") * 3.0 + 1.0).to(dtype)
    nbytes = x.numel() * x.element_size()
    copy_gbps = 2 * nbytes / cuda_seconds(x.clone) / 1e9
    _, scales = reference.rms_normalise(x, N_CONTEXT)
    _, mean, std = reference.zscore_normalise(x, N_CONTEXT)
    return {
        "name": request.param,
        "x": x,
        "scales": scales,
        "mean": mean,
        "std": std,
        "nbytes": nbytes,
        "copy": copy_gbps,
    }


def _record(benchmark, fn: Callable[[], object], case: dict, group: str, bytes_moved: float):
    benchmark.group = f"{group}-{case['name']}-2x10x5x512x512"
    run = _synced(fn)
    run()  # compile / warm up outside the timing
    benchmark(run)
    gbps = bytes_moved / benchmark.stats["mean"] / 1e9
    benchmark.extra_info["GB_per_s"] = gbps
    benchmark.extra_info["copy_fraction"] = gbps / case["copy"]


def _normalise_bytes(case: dict) -> float:
    return (N_CONTEXT / SHAPE[1] + 2) * case["nbytes"]


def test_normalise_triton(benchmark, case: dict) -> None:
    from physok_kernels.rms_normalise import rms_normalise

    x = case["x"]
    _record(
        benchmark,
        lambda: rms_normalise(x, N_CONTEXT),
        case,
        "rms_normalise",
        _normalise_bytes(case),
    )


def test_normalise_reference(benchmark, case: dict) -> None:
    x = case["x"]
    _record(
        benchmark,
        lambda: reference.rms_normalise(x, N_CONTEXT),
        case,
        "rms_normalise",
        _normalise_bytes(case),
    )


def test_normalise_copy(benchmark, case: dict) -> None:
    _record(benchmark, case["x"].clone, case, "rms_normalise", 2 * case["nbytes"])


def test_denormalise_triton(benchmark, case: dict) -> None:
    from physok_kernels.rms_normalise import rms_denormalise

    x, s = case["x"], case["scales"]
    _record(benchmark, lambda: rms_denormalise(x, s), case, "rms_denormalise", 2 * case["nbytes"])


def test_denormalise_reference(benchmark, case: dict) -> None:
    x, s = case["x"], case["scales"]
    _record(
        benchmark,
        lambda: reference.rms_denormalise(x, s),
        case,
        "rms_denormalise",
        2 * case["nbytes"],
    )


def test_denormalise_copy(benchmark, case: dict) -> None:
    _record(benchmark, case["x"].clone, case, "rms_denormalise", 2 * case["nbytes"])


def test_zscore_normalise_triton(benchmark, case: dict) -> None:
    from physok_kernels.rms_normalise import zscore_normalise

    x = case["x"]
    _record(
        benchmark,
        lambda: zscore_normalise(x, N_CONTEXT),
        case,
        "zscore_normalise",
        _normalise_bytes(case),
    )


def test_zscore_normalise_reference(benchmark, case: dict) -> None:
    x = case["x"]
    _record(
        benchmark,
        lambda: reference.zscore_normalise(x, N_CONTEXT),
        case,
        "zscore_normalise",
        _normalise_bytes(case),
    )


def test_zscore_normalise_copy(benchmark, case: dict) -> None:
    _record(benchmark, case["x"].clone, case, "zscore_normalise", 2 * case["nbytes"])


def test_zscore_denormalise_triton(benchmark, case: dict) -> None:
    from physok_kernels.rms_normalise import zscore_denormalise

    x, m, s = case["x"], case["mean"], case["std"]
    _record(
        benchmark,
        lambda: zscore_denormalise(x, m, s),
        case,
        "zscore_denormalise",
        2 * case["nbytes"],
    )


def test_zscore_denormalise_reference(benchmark, case: dict) -> None:
    x, m, s = case["x"], case["mean"], case["std"]
    _record(
        benchmark,
        lambda: reference.zscore_denormalise(x, m, s),
        case,
        "zscore_denormalise",
        2 * case["nbytes"],
    )


def test_zscore_denormalise_copy(benchmark, case: dict) -> None:
    _record(benchmark, case["x"].clone, case, "zscore_denormalise", 2 * case["nbytes"])
