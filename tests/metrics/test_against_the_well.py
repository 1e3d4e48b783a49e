"""physok's VRMSE and three-bin spectral NMSE against `the_well.benchmark.metrics` itself.

the_well's metrics take channels-last fields (B, T, X, Y, C) plus a `WellMetadata` and return
per-(B, T, C) values: `VRMSE()(x, y, meta)` a tensor, `binned_spectral_mse()(x, y, meta)` a dict
with keys `spectral_error_{mse,nmse}_per_bin_{0,1,2}`. physok's metrics take channels-first
(B, T, C, X, Y). Both are compared to 1e-5 relative on random fields and on fields from physok's
own generators (Euler and shear flow, square and non-square grids), with predictions that are
the next frame (persistence) or the truth plus smooth noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from the_well.benchmark.metrics import VRMSE, binned_spectral_mse
from the_well.data.datasets import WellMetadata

from physok.data.generate import GenerationConfig, generate_dataset
from physok.data.reader import WellWindowDataset
from physok.metrics import the_well_nmse_per_bin, vrmse
from physok.ops.spectral_binning import wavenumber_magnitude

PHYSICAL = ("euler_multi_quadrants_periodicBC", "shear_flow")
PHYSICAL_GRIDS = ((32, 32), (48, 32))
RTOL = 1e-5


def _meta(shape: tuple[int, int], n_fields: int) -> WellMetadata:
    return WellMetadata(
        dataset_name="physok_test",
        n_spatial_dims=2,
        spatial_resolution=tuple(shape),
        scalar_names=[],
        constant_scalar_names=[],
        field_names={0: [f"f{i}" for i in range(n_fields)], 1: [], 2: []},
        constant_field_names={0: [], 1: [], 2: []},
        boundary_condition_types=["periodic", "periodic"],
        n_files=1,
        n_trajectories_per_file=[1],
        n_steps_per_trajectory=[1],
    )


def _last(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, X, Y) -> the_well's channels-last (B, T, X, Y, C)."""
    return x.permute(0, 1, 3, 4, 2).contiguous()


def _well_vrmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    meta = _meta(tuple(true.shape[-2:]), true.shape[2])
    return VRMSE()(_last(pred), _last(true), meta)  # (B, T, C)


def _well_nmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    meta = _meta(tuple(true.shape[-2:]), true.shape[2])
    out = binned_spectral_mse()(_last(pred), _last(true), meta)
    assert isinstance(out, dict) and len(out) == 6
    return torch.stack([out[f"spectral_error_nmse_per_bin_{i}"] for i in range(3)], -1)


def _smooth_noise(like: torch.Tensor, rel: float, seed: int) -> torch.Tensor:
    """Smooth (red-spectrum) random noise with `rel` times each field's spatial std.

    Its amplitude falls as 1 / (1 + (|k| / 0.5)²) but stays non-zero in every bin: a bin whose
    error is at float32 round-off level has no meaningful ratio (physok's and the_well's FFTs
    and bin sums round differently).
    """
    g = torch.Generator().manual_seed(seed)
    x, y = like.shape[-2:]
    noise = torch.randn(like.shape, generator=g, dtype=torch.float64)
    taper = 1.0 / (1.0 + (wavenumber_magnitude((x, y)).double() / 0.5) ** 2)
    noise = torch.fft.irfft2(torch.fft.rfft2(noise) * taper, s=(x, y))
    noise = noise / noise.std(dim=(-2, -1), keepdim=True)
    return (rel * like.double().std(dim=(-2, -1), keepdim=True) * noise).to(like.dtype)


def _check_both(pred: torch.Tensor, true: torch.Tensor) -> None:
    ours = vrmse(pred, true, reduce="none")
    torch.testing.assert_close(ours, _well_vrmse(pred, true), rtol=RTOL, atol=0)
    nmse = the_well_nmse_per_bin(pred, true)
    assert nmse.shape == (*true.shape[:3], 3)
    torch.testing.assert_close(nmse, _well_nmse(pred, true), rtol=RTOL, atol=0)


# ---- random fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(2, 3, 1, 16, 16), (1, 2, 4, 32, 24), (2, 1, 3, 12, 20), (1, 2, 2, 9, 15)]
)
def test_random_fields_match_the_well(shape) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    # Per-field offsets and scales of several orders, so the variance and the mean mode differ.
    scale = 10.0 ** torch.empty(shape[0], 1, shape[2], 1, 1).uniform_(-2, 2, generator=g)
    offset = torch.randn(shape[0], 1, shape[2], 1, 1, generator=g) * 3
    true = (torch.randn(shape, generator=g) + offset) * scale
    for pred in (
        true + 0.3 * scale * torch.randn(shape, generator=g),
        true + _smooth_noise(true, 0.2, seed=1),
        torch.zeros_like(true),
    ):
        _check_both(pred, true)


def test_the_wells_vrmse_is_bessel_corrected_and_ignores_its_eps() -> None:
    # The convention physok reproduces: sqrt(mse / (torch.std(true)² + 1e-7)), std with N - 1.
    g = torch.Generator().manual_seed(3)
    true = torch.randn(2, 1, 2, 6, 5, generator=g)
    pred = true + torch.randn(true.shape, generator=g)
    meta = _meta((6, 5), 2)
    well = VRMSE()(_last(pred), _last(true), meta)
    mse = (pred - true).double().square().mean((-2, -1))
    var = true.double().var(dim=(-2, -1), correction=1)
    torch.testing.assert_close(well.double(), (mse / (var + 1e-7)).sqrt(), rtol=1e-6, atol=0)
    # the_well's VRMSE passes no eps on: its own argument changes nothing.
    torch.testing.assert_close(VRMSE()(_last(pred), _last(true), meta, eps=1.0), well)
    # physok's population-variance option is larger by sqrt(N / (N - 1)), N = 30 points.
    pop = vrmse(pred, true, reduce="none", correction=0)
    torch.testing.assert_close(pop * (29 / 30) ** 0.5, well, rtol=1e-5, atol=0)


def test_eps_dominates_both_alike_for_constant_truth() -> None:
    # var(true) = 0: both give sqrt(mse / 1e-7).
    true = torch.full((1, 1, 2, 8, 8), 2.5)
    pred = true + 1e-3 * torch.randn(true.shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        vrmse(pred, true, reduce="none"), _well_vrmse(pred, true), rtol=RTOL, atol=0
    )


# ---- generated physical fields ------------------------------------------------------------


@pytest.fixture(scope="module")
def physical_windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """(B, T=4, C, X, Y) windows of each generated dataset and grid, keyed 'name@XxY'."""
    base = tmp_path_factory.mktemp("metrics_data")
    out = {}
    for grid in PHYSICAL_GRIDS:
        config = GenerationConfig(resolution=grid, trajectories=3, steps=8)
        for name in PHYSICAL:
            folder = generate_dataset(
                name, Path(base, f"{grid[0]}x{grid[1]}"), config, progress=False
            )
            ds = WellWindowDataset(folder, "train", window=4)
            # Windows from both ends of the trajectories: early (near the initial condition), late.
            ends = [ds[0]["fields"], ds[len(ds) - 1]["fields"]]
            out[f"{name}@{grid[0]}x{grid[1]}"] = torch.stack(ends)
            ds.close()
    return out


@pytest.mark.parametrize("grid", PHYSICAL_GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", PHYSICAL)
def test_generated_fields_match_the_well(physical_windows, name, grid) -> None:
    w = physical_windows[f"{name}@{grid[0]}x{grid[1]}"]
    assert w.shape[-2:] == grid and torch.isfinite(w).all()
    true = w[:, 1:]
    persistence = w[:, :-1]  # predict each frame by the one before it
    assert (persistence - true).abs().amax() > 0, "consecutive frames must differ"
    _check_both(persistence, true)
    _check_both(true + _smooth_noise(true, 0.05, seed=2), true)
    # A shifted field: the truth rolled by a few cells (an advection-like phase error).
    _check_both(torch.roll(true, shifts=(3, -2), dims=(-2, -1)), true)
