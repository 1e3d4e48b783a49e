"""Rollout protocol: horizon arithmetic, window choice, per-step VRMSE against an independent
rollout, and the error for trajectories too short."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from physok.data.errors import DataError
from physok.data.registry import FieldRegistry
from physok.evaluate import (
    EvalConfig,
    choose_rollout_windows,
    evaluate_rollout,
    horizon_means,
    open_rollout_dataset,
)
from physok.metrics.vrmse import vrmse
from physok.models.rollout_model import RolloutModel

EULER = "euler_multi_quadrants_periodicBC"


def _registry(model: RolloutModel) -> FieldRegistry:
    return FieldRegistry(list(model.config.tokeniser.field_names))


def test_horizon_means_on_given_values() -> None:
    per_step = [float(k) for k in range(1, 19)]  # step k has value k
    paper = ((1, 2), (3, 6), (7, 18))
    assert horizon_means(per_step, paper) == {"1-2": 1.5, "3-6": 4.5, "7-18": 12.5}
    # clipped to the steps run; a horizon starting after the last step is left out
    assert horizon_means(per_step[:10], paper) == {"1-2": 1.5, "3-6": 4.5, "7-10": 8.5}
    assert horizon_means(per_step[:4], paper) == {"1-2": 1.5, "3-4": 3.5}
    assert horizon_means([0.0, 0.0, 2.0], ((1, 1), (3, 3))) == {"1-1": 0.0, "3-3": 2.0}
    with pytest.raises(ValueError, match="first <= last"):
        horizon_means(per_step, ((5, 4),))


def test_windows_spread_over_trajectories_reproducibly(
    euler_base: Path, model: RolloutModel
) -> None:
    ds = open_rollout_dataset(euler_base / EULER, "train", 4, 9, _registry(model))
    assert ds.window == 13 and len(ds) == 2 * 18  # 2 trajectories of 30 snapshots
    two = choose_rollout_windows(ds, 2, seed=0)
    assert len({ds.locate(i)[:2] for i in two}) == 2  # one window from each trajectory
    six = choose_rollout_windows(ds, 6, seed=0)
    assert six == choose_rollout_windows(ds, 6, seed=0) and len(set(six)) == 6
    trajs = [ds.locate(i)[:2] for i in six]
    assert sorted(trajs.count(t) for t in set(trajs)) == [3, 3]
    assert six != choose_rollout_windows(ds, 6, seed=1)
    assert choose_rollout_windows(ds, 100, seed=0) == list(range(len(ds)))


def test_per_step_vrmse_equals_an_independent_rollout(
    euler_base: Path, model: RolloutModel
) -> None:
    steps = 4
    ds = open_rollout_dataset(euler_base / EULER, "train", steps, 9, _registry(model))
    cfg = EvalConfig(rollout_steps=steps, rollout_windows=2, batch_size=2, seed=2, device="cpu")
    out = evaluate_rollout(model, ds, cfg, progress=False)
    chosen = choose_rollout_windows(ds, 2, seed=2)
    per_window, persistence, linear = [], [], []
    for i in chosen:
        item = ds[i]
        fields = item["fields"][None]
        with torch.no_grad():
            pred = model.rollout(fields[:, :9], steps, item["field_indices"])  # physical units
        per_window.append(
            [vrmse(pred[:, k : k + 1], fields[:, 9 + k : 10 + k]).item() for k in range(steps)]
        )
        # persistence repeats frame 9 (index 8)
        persistence.append(
            [vrmse(fields[:, 8:9], fields[:, 9 + k : 10 + k]).item() for k in range(steps)]
        )
        # linear extrapolation continues the line through frames 8 and 9
        slope = fields[:, 8:9] - fields[:, 7:8]
        linear.append(
            [
                vrmse(fields[:, 8:9] + (k + 1) * slope, fields[:, 9 + k : 10 + k]).item()
                for k in range(steps)
            ]
        )
    expected = np.mean(per_window, axis=0)
    assert out["per_step_vrmse"] == pytest.approx(expected.tolist(), rel=1e-3)
    ref = out["persistence"]
    assert ref["per_step_vrmse"] == pytest.approx(np.mean(persistence, axis=0).tolist(), rel=1e-5)
    lin = out["linear_extrapolation"]["per_step_vrmse"]
    assert lin == pytest.approx(np.mean(linear, axis=0).tolist(), rel=1e-4)
    q = ref["per_step_vrmse"]
    assert ref["horizons"] == pytest.approx({"1-2": np.mean(q[:2]), "3-4": np.mean(q[2:4])})
    assert q[0] < q[-1]  # the truth drifts away from the repeated frame
    p = out["per_step_vrmse"]
    assert out["horizons"] == pytest.approx({"1-2": np.mean(p[:2]), "3-4": np.mean(p[2:4])})
    assert (out["split"], out["steps"], out["windows"]) == ("train", steps, 2)
    assert len(out["notes"]) == 1 and "7-18" in out["notes"][0]  # clipped horizons are noted
    assert p[-1] != p[0]  # each step is its own rollout frame
    # each window's own values, for the spread over windows (same windows for every forecast)
    assert out["window_indices"] == chosen
    own = np.array(per_window)  # (windows, steps)
    assert out["per_window_horizons"]["1-2"] == pytest.approx(own[:, :2].mean(1).tolist(), 1e-3)
    assert out["per_window_horizons"]["3-4"] == pytest.approx(own[:, 2:4].mean(1).tolist(), 1e-3)
    assert out["per_step_std"] == pytest.approx(own.std(axis=0, ddof=1).tolist(), rel=1e-2)
    spread = out["horizon_spread"]["3-4"]
    assert spread["n"] == 2
    assert spread["std"] == pytest.approx(own[:, 2:4].mean(1).std(ddof=1), rel=1e-2)
    assert spread["sem"] == pytest.approx(spread["std"] / np.sqrt(2))
    assert np.mean(out["per_window_horizons"]["3-4"]) == pytest.approx(out["horizons"]["3-4"])
    q_own = np.array(persistence)[:, :2].mean(1)
    assert ref["per_window_horizons"]["1-2"] == pytest.approx(q_own.tolist(), rel=1e-5)


def test_too_short_trajectories_name_the_folder_and_the_fix(short_base: Path) -> None:
    with pytest.raises(DataError) as e:
        open_rollout_dataset(short_base / EULER, "valid", 18, 9)
    msg = str(e.value)
    assert str(short_base / EULER) in msg and "20 snapshots" in msg and "needs 27" in msg
    assert "--steps 40" in msg and "--rollout-steps" in msg


def test_rollout_refuses_windows_too_short_for_the_steps(
    euler_base: Path, model: RolloutModel
) -> None:
    ds = open_rollout_dataset(euler_base / EULER, "valid", 2, 9, _registry(model))
    with pytest.raises(DataError, match="windows of 13 frames"):
        evaluate_rollout(model, ds, EvalConfig(rollout_steps=4), progress=False)
