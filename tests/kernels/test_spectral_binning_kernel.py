"""Triton spectral binning kernel vs the torch reference (interpreter on CPU, 512² on GPU).

Scratch buffers are pre-filled with NaN (PHYSOK_KERNEL_POISON=1) so an unwritten partial sum
fails. Edges include the_well's, [0, inf), ranges that drop modes, an empty bin, and edges that
sit exactly on mode wavenumbers (a bin decided differently from the reference, even by one ulp of
|k|, moves a whole mode's power and fails).
"""

from __future__ import annotations

import pytest
import torch
from physok_kernels._common import POISON_ENV

from physok.ops import spectral_binning as ref

sb = pytest.importorskip("physok_kernels.spectral_binning")


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POISON_ENV, "1")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pair(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(shape, generator=g) + 0.5
    pred = true + 0.3 * torch.randn(shape, generator=g)
    return pred.to(_device(), dtype), true.to(_device(), dtype)


def _tie_edges(shape: tuple[int, int], n: int = 5) -> torch.Tensor:
    """Edges equal to the |k| of actual modes (plus 0 and inf): every edge is a tie."""
    k = torch.unique(ref.wavenumber_magnitude(shape))
    pick = k[torch.linspace(1, k.numel() - 2, n).round().long()]
    return torch.cat([torch.zeros(1), pick, torch.tensor([float("inf")])])


def _edge_sets(shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    return {
        "the_well": ref.the_well_bin_edges(shape),
        "all": torch.tensor([0.0, float("inf")]),
        "partial_with_empty_bin": torch.tensor([0.5, 1.0, 1.0, 2.0, 3.0]),
        "ties": _tie_edges(shape),
    }


def _check(pred, true, edges, **tiling) -> None:
    err, tru = sb.binned_spectral_power(pred, true, edges, **tiling)
    err_r, tru_r = ref.binned_spectral_power_reference(pred, true, edges)
    assert err.shape == err_r.shape == (*pred.shape[:-2], edges.numel() - 1)
    assert err.dtype == tru.dtype == torch.float32
    scale_e = err_r.abs().max().clamp_min(1e-30).item()
    scale_t = tru_r.abs().max().clamp_min(1e-30).item()
    torch.testing.assert_close(err, err_r, rtol=1e-5, atol=1e-5 * scale_e)
    torch.testing.assert_close(tru, tru_r, rtol=1e-5, atol=1e-5 * scale_t)


# Leading dims (B, T, C) and grids: non-square, odd X, odd Y, both odd.
@pytest.mark.parametrize(
    ("shape", "block", "rows"),
    [
        ((2, 3, 8, 4), None, None),
        ((2, 2, 3, 6, 10), 16, 4),  # several mode blocks and a ragged last row group
        ((3, 7, 5), 16, 2),
        ((2, 5, 8), None, 1),
        ((1, 2, 9, 9), 32, None),
    ],
)
def test_kernel_matches_reference(shape, block, rows) -> None:
    pred, true = _pair(shape, seed=sum(shape))
    for edges in _edge_sets(shape[-2:]).values():
        _check(pred, true, edges, block=block, rows=rows)


def test_inputs_requiring_grad_are_detached() -> None:
    pred, true = _pair((2, 6, 4), seed=3)
    pred.requires_grad_(True)
    err, tru = sb.binned_spectral_power(pred, true, ref.the_well_bin_edges((6, 4)))
    assert not err.requires_grad and not tru.requires_grad
    assert torch.isfinite(err).all()


def test_float64_and_bfloat16_inputs() -> None:
    edges = ref.the_well_bin_edges((8, 6))
    pred, true = _pair((2, 8, 6), dtype=torch.float64, seed=4)
    _check(pred, true, edges)
    pred, true = _pair((2, 8, 6), dtype=torch.bfloat16, seed=5)
    _check(pred, true, edges)


def test_bad_arguments_are_named() -> None:
    pred, true = _pair((2, 6, 4))
    with pytest.raises(ValueError, match="block=24"):
        sb.binned_spectral_power(pred, true, torch.tensor([0.0, 1.0]), block=24)
    with pytest.raises(ValueError, match="non-decreasing"):
        sb.binned_spectral_power(pred, true, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        sb.binned_spectral_power(pred, true, torch.tensor([0.0]))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_size_on_gpu(dtype) -> None:
    shape = (2, 10, 5, 512, 512)
    pred, true = _pair(shape, dtype=dtype, seed=9)
    for name, edges in _edge_sets((512, 512)).items():
        err, tru = sb.binned_spectral_power(pred, true, edges)
        err_r, tru_r = ref.binned_spectral_power_reference(pred, true, edges)
        # fp32 sums over ~10^5 modes in different orders: 1e-4 relative per bin is ample, while a
        # tie mode binned differently moves ~1/n_modes_in_bin of a bin (>= 1e-2 for small bins).
        torch.testing.assert_close(err, err_r, rtol=1e-4, atol=0, msg=name)
        torch.testing.assert_close(tru, tru_r, rtol=1e-4, atol=0, msg=name)


def test_torch_compile_traces_through_the_op() -> None:
    # CPU: the interpreter's opaque custom op (checks the fake implementation); GPU: inductor.
    pred, true = _pair((2, 3, 8, 6), seed=2)
    edges = ref.the_well_bin_edges((8, 6)).to(pred.device)

    def f(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        err, tru = sb.binned_spectral_power(p, t, edges)
        return err / tru

    torch._dynamo.reset()
    backend = "inductor" if torch.cuda.is_available() else "aot_eager"
    out = torch.compile(f, backend=backend)(pred, true)
    err_r, tru_r = ref.binned_spectral_power_reference(pred, true, edges)
    torch.testing.assert_close(out, err_r / tru_r, rtol=1e-5, atol=0)
