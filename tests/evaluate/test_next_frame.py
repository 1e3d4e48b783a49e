"""Next-frame protocol: subsets, and metrics equal to an independent per-window loop."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.evaluate import EvalConfig, draw_subsets, evaluate_next_frame
from physok.evaluate.next_frame import window_loader
from physok.metrics.neps import shell_edges, shell_ranges, the_well_nmse_per_bin
from physok.metrics.vrmse import vrmse
from physok.models.rollout_model import RolloutModel

EULER = "euler_multi_quadrants_periodicBC"


@pytest.fixture(scope="module")
def valid_set(euler_base: Path, model: RolloutModel) -> WellWindowDataset:
    names = list(model.config.tokeniser.field_names)
    return WellWindowDataset(euler_base / EULER, "valid", window=10, registry=FieldRegistry(names))


def test_subsets_are_reproducible_distinct_and_seeded() -> None:
    a = draw_subsets(100, 4, 10, seed=3)
    assert a == draw_subsets(100, 4, 10, seed=3)
    assert a != draw_subsets(100, 4, 10, seed=4)
    assert len(a) == 4
    for s in a:
        assert len(s) == len(set(s)) == 10 and s == sorted(s) and 0 <= s[0] and s[-1] < 100
    assert len({tuple(s) for s in a}) == 4  # subsets differ from each other
    assert draw_subsets(7, 3, 10, seed=0) == [list(range(7))] * 3  # fewer windows: all


def _hand_metrics(model: RolloutModel, ds: WellWindowDataset, index: int) -> dict[str, np.ndarray]:
    """One window's metrics in physical units via predict_next (the evaluation itself
    normalises by the context RMS first; every metric is invariant to that)."""
    item = ds[index]
    fields, idx = item["fields"][None], item["field_indices"]
    with torch.no_grad():
        pred = model.predict_next(fields[:, :9], idx)  # (1, C, X, Y)
    true = fields[:, 9]
    per_field = vrmse(pred[:, None], true[:, None], reduce="none")[0, 0]
    # spectra in units of the context's RMS per field, so every window weighs alike
    rms = fields[0, :9].double().square().mean(dim=(0, 2, 3)).sqrt()[:, None, None]
    return {
        "vrmse": per_field.mean().numpy(),
        "field": per_field.numpy(),
        "spectra": _spectra((pred[0].double() - true[0].double()) / rms, true[0].double() / rms),
        "well": the_well_nmse_per_bin(pred[0], true[0]).mean(0).numpy(),
        # persistence: frame 9 (index 8) as the forecast of frame 10
        "persist": vrmse(fields[:, 8:9], true[:, None]).numpy(),
        "persist_spectra": _spectra(
            (fields[0, 8].double() - true[0].double()) / rms, true[0].double() / rms
        ),
        # linear extrapolation: 2 * frame 9 - frame 8
        "linear": vrmse(2 * fields[:, 8:9] - fields[:, 7:8], true[:, None]).numpy(),
    }


def _spectra(err: torch.Tensor, true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-field, per-shell sums of |FFT|² of the error and the truth, (C, S) each, written
    out with fft2 and masks (the full spectrum, no half-spectrum weights)."""
    x, y = true.shape[-2:]
    kx = 2 * np.pi * np.fft.fftfreq(x)[:, None]
    ky = 2 * np.pi * np.fft.fftfreq(y)[None, :]
    k = np.sqrt(kx**2 + ky**2)
    edges = shell_edges((x, y)).double().numpy()
    pe = np.abs(np.fft.fft2(err.numpy())) ** 2
    pt = np.abs(np.fft.fft2(true.numpy())) ** 2
    masks = [(k >= lo) & (k < hi) for lo, hi in itertools.pairwise(edges)]
    return (
        np.stack([(pe * m).sum(axis=(-2, -1)) for m in masks], -1),
        np.stack([(pt * m).sum(axis=(-2, -1)) for m in masks], -1),
    )


def _ensemble_neps(windows: list[dict], grid: tuple[int, int]) -> np.ndarray:
    """NEPS low/mid/high of a set of windows: summed spectra, ratio per shell, range means
    over shells, mean over fields."""
    err = sum(w["spectra"][0] for w in windows)
    tru = sum(w["spectra"][1] for w in windows)
    ratio = err / tru  # (C, S); the generated Euler truth has power in every shell
    ranges = shell_ranges(grid).numpy()
    return np.array([ratio[:, ranges == r].mean(axis=1).mean() for r in range(3)])


def test_metrics_equal_an_independent_loop(
    model: RolloutModel, valid_set: WellWindowDataset
) -> None:
    cfg = EvalConfig(subsets=3, subset_size=4, seed=1, batch_size=4, device="cpu")
    out = evaluate_next_frame(model, valid_set, cfg, progress=False)
    chosen = draw_subsets(len(valid_set), 3, 4, seed=1)
    union = sorted(set().union(*chosen))
    per = {i: _hand_metrics(model, valid_set, i) for i in union}

    def expect(key: str, col: int | None = None) -> dict[str, float]:
        vals = [
            np.mean([per[i][key] if col is None else per[i][key][col] for i in s]) for s in chosen
        ]
        return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1))}

    def close(got: dict, want: dict) -> None:
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-3)
        assert got["std"] == pytest.approx(want["std"], rel=1e-2, abs=1e-6)

    close(out["vrmse"], expect("vrmse"))
    grid = tuple(valid_set.grid_shape)
    neps = np.stack([_ensemble_neps([per[i] for i in s], grid) for s in chosen])  # (subsets, 3)
    for col, r in enumerate(("low", "mid", "high")):
        want = {"mean": float(neps[:, col].mean()), "std": float(neps[:, col].std(ddof=1))}
        close(out["neps"][r], want)
        close(out["well_nmse"][r], expect("well", col))
    close(out["persistence"]["vrmse"], expect("persist"))
    close(out["linear_extrapolation"]["vrmse"], expect("linear"))
    persist = [
        [{"spectra": (per[i]["persist_spectra"][0], per[i]["spectra"][1])} for i in s]
        for s in chosen
    ]
    neps = np.stack([_ensemble_neps(windows, grid) for windows in persist])
    for col, r in enumerate(("low", "mid", "high")):
        want = {"mean": float(neps[:, col].mean()), "std": float(neps[:, col].std(ddof=1))}
        close(out["persistence"]["neps"][r], want)
    fields = np.mean([per[i]["field"] for i in union], axis=0)
    assert list(out["vrmse_per_field"]) == valid_set.channel_names
    assert list(out["vrmse_per_field"].values()) == pytest.approx(fields.tolist(), rel=1e-3)
    assert out["vrmse"]["std"] > 0  # the subsets really differ
    assert (out["split"], out["subsets"], out["subset_size"]) == ("valid", 3, 4)
    assert out["windows"] == len(union) and out["notes"] == []
    assert set(out) == {
        "split", "vrmse", "neps", "well_nmse", "vrmse_per_field", "persistence",
        "linear_extrapolation", "subsets", "subset_size", "windows", "notes",
    }  # fmt: skip


def test_a_parameter_free_forecaster_is_evaluated_like_a_model(
    model: RolloutModel, valid_set: WellWindowDataset
) -> None:
    """Any forecaster goes through the same protocol: LinearExtrapolation evaluated as the
    model gives the numbers every evaluation reports for it as a reference."""
    from physok.baselines import LinearExtrapolation

    cfg = EvalConfig(subsets=2, subset_size=4, seed=3, batch_size=4, device="cpu")
    as_model = evaluate_next_frame(LinearExtrapolation(), valid_set, cfg, progress=False)
    as_reference = evaluate_next_frame(model, valid_set, cfg, progress=False)
    want = as_reference["linear_extrapolation"]
    assert as_model["vrmse"]["mean"] == pytest.approx(want["vrmse"]["mean"], rel=1e-5)
    for r in ("low", "mid", "high"):
        assert as_model["neps"][r]["mean"] == pytest.approx(want["neps"][r]["mean"], rel=1e-4)


def test_seed_changes_the_subsets_and_results_are_reproducible(
    model: RolloutModel, valid_set: WellWindowDataset
) -> None:
    cfg = EvalConfig(subsets=2, subset_size=2, seed=0, batch_size=4, device="cpu")
    model.train()  # evaluation switches to eval mode and restores the mode afterwards
    a = evaluate_next_frame(model, valid_set, cfg, progress=False)
    assert model.training
    model.eval()
    assert evaluate_next_frame(model, valid_set, cfg, progress=False) == a
    b = evaluate_next_frame(
        model, valid_set, EvalConfig(**{**cfg.to_dict(), "seed": 5}), progress=False
    )
    assert b["vrmse"] != a["vrmse"]


def test_evaluation_leaves_the_global_rng_alone(
    model: RolloutModel, valid_set: WellWindowDataset
) -> None:
    """Reading windows and evaluating draw nothing from torch's global RNG (a training run that
    evaluates in-process keeps its stream), with or without loader workers."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for workers in (0, 1):
        cfg = EvalConfig(subsets=1, subset_size=2, batch_size=2, num_workers=workers, device="cpu")
        assert len(list(window_loader(valid_set, [0, 1, 2], cfg))) == 2
    evaluate_next_frame(model, valid_set, EvalConfig(subsets=1, subset_size=2), progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_subset_size_beyond_the_split_uses_every_window(
    model: RolloutModel, valid_set: WellWindowDataset
) -> None:
    n = len(valid_set)
    cfg = EvalConfig(subsets=2, subset_size=n + 10, batch_size=16, device="cpu")
    out = evaluate_next_frame(model, valid_set, cfg, progress=False)
    assert out["windows"] == out["subset_size"] == n
    assert out["vrmse"]["std"] == 0.0
    assert len(out["notes"]) == 1 and f"has {n} windows" in out["notes"][0]
