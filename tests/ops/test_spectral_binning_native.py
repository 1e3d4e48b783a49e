"""Native (csrc/) spectral binning vs the torch reference, and the build/fallback machinery.

The library is built once per session (module fixture; ~30 s the first time on 2 cores, then
loaded from the cache folder). Build tests skip, with the reason, when no C++ compiler or ninja
is found. Edge sets include the_well's, [0, inf), ranges that drop modes, empty bins, edges that
sit exactly on mode wavenumbers (a mode binned differently by one ulp of |k| moves a whole mode's
power and fails) and many bins.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from physok.ops import backend, native_build
from physok.ops import spectral_binning as sb


@pytest.fixture(scope="module")
def native() -> None:
    problem = native_build._compiler_problem()
    if problem is not None:
        pytest.skip(f"native build impossible here: {problem}")
    if not native_build.native_available():
        pytest.fail(f"the native build failed: {native_build.native_unavailable_reason()}")


def _pair(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(shape, generator=g, dtype=torch.float64) + 0.5
    pred = true + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    return pred.to(dtype), true.to(dtype)


def _tie_edges(shape: tuple[int, int], n: int = 5) -> torch.Tensor:
    k = torch.unique(sb.wavenumber_magnitude(shape))
    pick = k[torch.linspace(1, k.numel() - 2, n).round().long()]
    return torch.cat([torch.zeros(1), pick, torch.tensor([float("inf")])])


def _edge_sets(shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    return {
        "the_well": sb.the_well_bin_edges(shape),
        "all": torch.tensor([0.0, float("inf")]),
        "partial_with_empty_bin": torch.tensor([0.5, 1.0, 1.0, 2.0, 3.0]),
        "ties": _tie_edges(shape),
        "many": torch.linspace(0.0, 4.5, 97),  # 96 bins, fine ones empty on small grids
    }


def _check(
    pred: torch.Tensor,
    true: torch.Tensor,
    edges: torch.Tensor,
    name: str,
    rtol_float32: float = 1e-5,
) -> None:
    err, tru = sb.binned_spectral_power_native(pred, true, edges)
    err_r, tru_r = sb.binned_spectral_power_reference(pred, true, edges)
    assert err.shape == err_r.shape == (*pred.shape[:-2], edges.numel() - 1)
    assert err.dtype == tru.dtype == torch.float32
    # float64: both sum in double and round once to float32; float32: different sum orders.
    rtol = 1e-6 if pred.dtype == torch.float64 else rtol_float32
    for got, want in ((err, err_r), (tru, tru_r)):
        scale = want.abs().max().clamp_min(1e-30).item()
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=name)
        # An empty or mode-free bin is exactly zero in both.
        assert torch.equal(got == 0, want == 0), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [
        (2, 3, 8, 4),  # even, non-square
        (3, 7, 5),  # both odd
        (2, 5, 8),  # odd X
        (2, 2, 3, 6, 10),  # (B, T, C) batch of frames
        (1, 2, 9, 9),
        (17, 33, 20),  # more leading rows than one tile, odd X
        (2, 64, 48),
        (1, 2, 3),  # tiny grid: most of the 96 bins empty
    ],
)
def test_native_matches_reference(native, shape, dtype) -> None:
    pred, true = _pair(shape, dtype, seed=sum(shape))
    for name, edges in _edge_sets(shape[-2:]).items():
        _check(pred, true, edges, name)


def test_parseval_over_all_modes_float64(native) -> None:
    pred, true = _pair((3, 2, 11, 6), torch.float64, seed=7)
    err, tru = sb.binned_spectral_power_native(pred, true, torch.tensor([0.0, float("inf")]))
    n = 11 * 6
    torch.testing.assert_close(
        err[..., 0].double(), n * (pred - true).square().sum((-2, -1)), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(
        tru[..., 0].double(), n * true.square().sum((-2, -1)), rtol=1e-6, atol=0
    )


def test_deterministic_and_independent_of_thread_count(native) -> None:
    pred, true = _pair((40, 24, 18), seed=3)
    edges = sb.the_well_bin_edges((24, 18))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sb.binned_spectral_power_native(pred, true, edges)
        torch.set_num_threads(max(2, before))
        many = sb.binned_spectral_power_native(pred, true, edges)
        again = sb.binned_spectral_power_native(pred, true, edges)
    finally:
        torch.set_num_threads(before)
    for a, b, c in zip(one, many, again, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_op_takes_complex_or_real_views_and_names_bad_arguments(native) -> None:
    pred, true = _pair((2, 6, 7), seed=4)
    p_ft, t_ft = torch.fft.rfft2(pred), torch.fft.rfft2(true)
    edges = sb.the_well_bin_edges((6, 7))
    op = torch.ops.physok_native.binned_spectral_power
    a = op(p_ft, t_ft, edges, 7)
    b = op(torch.view_as_real(p_ft), torch.view_as_real(t_ft), edges, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(RuntimeError, match="does not match the rfft width"):
        op(p_ft, t_ft, edges, 9)
    with pytest.raises(RuntimeError, match="differ in shape"):
        op(p_ft, t_ft[:1], edges, 7)
    with pytest.raises(RuntimeError, match="float32/complex64 or"):
        op(p_ft, t_ft.to(torch.complex128), edges, 7)
    with pytest.raises(RuntimeError, match="at least 2 entries"):
        op(p_ft, t_ft, edges[:1], 7)


def test_dispatch_by_argument_and_environment(native, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = sb._native_op

    def spy():
        calls.append(1)
        return real()

    monkeypatch.setattr(sb, "_native_op", spy)
    pred, true = _pair((2, 8, 6), seed=5)
    pred.requires_grad_(True)
    edges = sb.the_well_bin_edges((8, 6))
    err, tru = sb.binned_spectral_power(pred, true, edges, backend="native")
    assert len(calls) == 1 and not err.requires_grad and not tru.requires_grad
    monkeypatch.setenv(backend.ENV_VAR, "native")
    sb.binned_spectral_power(pred, true, edges)
    assert len(calls) == 2
    monkeypatch.setenv(backend.ENV_VAR, "auto")
    sb.binned_spectral_power(pred, true, edges)  # auto on CPU: the reference
    assert len(calls) == 2


def test_native_means_auto_for_ops_without_one() -> None:
    x = torch.zeros(1)
    assert backend.use_native("native", "binned_spectral_power")
    assert not backend.use_native("native", "causal_conv3d")
    assert not backend.use_native("auto", "binned_spectral_power")
    assert backend.use_triton(x, "native", "causal_conv3d") == backend.use_triton(x, "auto")


def test_torch_compile_traces_through_the_op(native) -> None:
    pred, true = _pair((2, 3, 8, 6), seed=2)
    edges = sb.the_well_bin_edges((8, 6))

    def f(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        err, tru = sb.binned_spectral_power(p, t, edges, backend="native")
        return err / tru

    torch._dynamo.reset()
    out = torch.compile(f, backend="aot_eager")(pred, true)
    err_r, tru_r = sb.binned_spectral_power_reference(pred, true, edges)
    torch.testing.assert_close(out, err_r / tru_r, rtol=1e-5, atol=0)


def test_cached_build_loads_without_rebuilding(native, tmp_path) -> None:
    marker = native_build.build_dir() / native_build._MARKER
    assert marker.is_file() and os.path.isfile(marker.read_text().strip())
    # A fresh process must load from the marker: cpp_extension.load (ninja) is made to fail.
    code = (
        "import torch.utils.cpp_extension as c\n"
        "def boom(*a, **k): raise AssertionError('rebuilt')\n"
        "c.load = boom\n"
        "from physok.ops import native_build as nb\n"
        "assert nb.native_available(), nb.native_unavailable_reason()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_importing_physok_builds_nothing(tmp_path) -> None:
    out = tmp_path / "build"
    code = (
        "import physok, physok.ops.spectral_binning, physok.ops.native_build as nb\n"
        "assert not nb._state['tried']\n"
    )
    env = {**os.environ, native_build.BUILD_DIR_ENV: str(out)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not out.exists()


@pytest.fixture
def forget_build():
    native_build._reset_for_tests()
    yield
    native_build._reset_for_tests()  # the next user re-detects the library loaded in-process


def test_failed_build_falls_back_to_reference_with_one_warning_and_a_reason(
    forget_build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_build, "_op_registered", lambda: False)
    monkeypatch.setattr(
        native_build, "_build_and_load", lambda: (False, False, "simulated: the compiler died")
    )
    pred, true = _pair((2, 7, 6), seed=6)
    edges = sb.the_well_bin_edges((7, 6))
    with pytest.warns(RuntimeWarning, match=r"else the reference\): simulated: the compiler died"):
        err, tru = sb.binned_spectral_power(pred, true, edges, backend="native")
    err_r, tru_r = sb.binned_spectral_power_reference(pred, true, edges)
    assert torch.equal(err, err_r) and torch.equal(tru, tru_r)
    assert not native_build.native_available()
    assert native_build.native_unavailable_reason() == "simulated: the compiler died"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once already: silent now
        sb.binned_spectral_power(pred, true, edges, backend="native")
    with pytest.raises(RuntimeError, match="the compiler died"):
        sb.binned_spectral_power_native(pred, true, edges)


def test_failed_cuda_build_keeps_the_cpu_op_and_says_why_cuda_falls_back(
    forget_build, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def variant(with_cuda: bool):
        calls.append(with_cuda)
        return (False, "simulated: nvcc 12.4 vs torch's CUDA 13.0") if with_cuda else (True, None)

    monkeypatch.setattr(native_build, "_op_registered", lambda: False)
    monkeypatch.setattr(native_build, "_cuda_toolchain", lambda: True)
    monkeypatch.setattr(native_build, "_build_and_load_variant", variant)
    assert native_build.native_available()  # the CPU op
    assert calls == [True, False]
    cuda_like = torch.empty(0, device="meta")  # any non-CPU tensor
    assert not native_build.native_available(cuda_like)
    assert "nvcc 12.4" in native_build.native_unavailable_reason(cuda_like)


def test_build_folder_always_carries_the_hash(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(native_build.BUILD_DIR_ENV, str(tmp_path))
    folder = native_build.build_dir(with_cuda=False)
    assert folder.parent == tmp_path and folder.name.startswith(torch.__version__.split("+")[0])
    assert native_build.build_dir(with_cuda=True) != folder  # another variant, another folder


def test_missing_compiler_is_a_reason_not_a_crash(
    forget_build, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv(native_build.BUILD_DIR_ENV, str(tmp_path / "build"))
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    ok, _, reason = native_build._build_and_load()
    assert not ok and "no C++ compiler" in reason and "CXX" in reason


def test_compile_error_is_a_reason_not_a_crash(
    native, forget_build, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in native_build.CPU_SOURCES + native_build.HEADERS:
        (src / name).write_text("this is not C++;\n")
    monkeypatch.setattr(native_build, "source_dir", lambda: src)
    monkeypatch.setattr(native_build, "_cuda_toolchain", lambda: False)
    monkeypatch.setenv(native_build.BUILD_DIR_ENV, str(tmp_path / "build"))
    ok, _, reason = native_build._build_and_load()
    assert not ok and reason.startswith("building the native ops failed")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_cuda_matches_reference_at_512(dtype) -> None:
    """The CUDA build (shared-memory histograms) at the paper's grid; skips with the reason
    when the GPU machine cannot build it (no nvcc)."""
    g = torch.Generator(device="cuda").manual_seed(1)
    true = torch.randn(2, 3, 5, 512, 512, device="cuda", generator=g, dtype=dtype)
    pred = true + 0.3 * torch.randn(true.shape, device="cuda", generator=g, dtype=dtype)
    if not native_build.native_available(true):
        reason = native_build.native_unavailable_reason(true)
        pytest.skip(f"native CUDA build unavailable: {reason}")
    for name, edges in _edge_sets((512, 512)).items():
        # float32 on CUDA sums in float with atomics (order varies): looser than the CPU's.
        _check(pred, true, edges.to("cuda"), name, rtol_float32=1e-4)
