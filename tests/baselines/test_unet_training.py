"""U-Net baseline training on generated Euler data: learning, determinism, the wall-clock
budget, the metrics log and checkpoint, reuse of a finished run, refusal of a changed config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from physok.baselines import UNetForecaster, UNetTrainConfig, UNetTrainResult, train_unet
from physok.data.generate import GenerationConfig, generate_dataset
from physok.train.config_overrides import ConfigError

EULER = "euler_multi_quadrants_periodicBC"


@pytest.fixture(scope="module")
def euler_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated Euler at 32x32: 2 train trajectories of 14 snapshots (10 windows of 10)."""
    base = tmp_path_factory.mktemp("unet_data")
    cfg = GenerationConfig(resolution=(32, 32), trajectories=4, steps=14, seed=0)
    generate_dataset(EULER, base, cfg, progress=False)
    return base


def config(base: Path, run_dir: Path, **kw: object) -> UNetTrainConfig:
    return UNetTrainConfig(
        data_dir=str(base), run_dir=str(run_dir), device="cpu", progress=False, **kw
    )


@pytest.fixture(scope="module")
def run(euler_base: Path, tmp_path_factory: pytest.TempPathFactory) -> UNetTrainResult:
    """A 20-step run at the default size (init_features 16), loss logged every step."""
    run_dir = tmp_path_factory.mktemp("unet_run")
    return train_unet(config(euler_base, run_dir, max_steps=20, log_every=1))


def test_a_short_run_lowers_the_loss(run: UNetTrainResult) -> None:
    assert run.steps == 20 and run.stopped_by == "max_steps" and not run.reused
    losses = [loss for _, loss in run.loss_history]
    assert [s for s, _ in run.loss_history] == list(range(1, 21))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
    assert run.final_loss == losses[-1]


def test_the_run_leaves_a_metrics_log_and_a_loadable_checkpoint(run: UNetTrainResult) -> None:
    run_dir = run.checkpoint.parent.parent
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 21))
    assert [r["loss"] for r in records] == [loss for _, loss in run.loss_history]
    assert run.checkpoint.name == "step_00000020"
    model = UNetForecaster.from_pretrained(run_dir)  # a run dir resolves to its checkpoint
    assert model.config.field_names == (
        "energy",
        "density",
        "pressure",
        "momentum_x",
        "momentum_y",
    )
    assert model.config.spatial_resolution == (32, 32) and model.config.init_features == 16
    with torch.no_grad():
        pred = model.rollout(torch.rand(1, 9, 5, 32, 32) + 1.0, 2, None)
    assert pred.shape == (1, 2, 5, 32, 32) and torch.isfinite(pred).all()


def test_a_fixed_step_count_is_deterministic(euler_base: Path, tmp_path: Path) -> None:
    states = []
    for name in ("a", "b"):
        cfg = config(euler_base, tmp_path / name, max_steps=4, init_features=4)
        states.append(UNetForecaster.from_pretrained(train_unet(cfg).checkpoint).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_wall_clock_budget_stops_the_run(euler_base: Path, tmp_path: Path) -> None:
    cfg = config(euler_base, tmp_path / "timed", max_steps=None, wall_clock_s=0.3, init_features=4)
    result = train_unet(cfg)
    assert result.stopped_by == "wall_clock"
    assert result.steps >= 1
    assert 0.3 <= result.wall_clock_s < 3.0  # at most one step past the budget
    assert result.loss_history[-1][0] == result.steps  # the last step is always logged
    # whichever comes first: here the step count
    capped = train_unet(
        config(euler_base, tmp_path / "capped", max_steps=2, wall_clock_s=60.0, init_features=4)
    )
    assert capped.steps == 2 and capped.stopped_by == "max_steps"


def test_a_finished_run_is_reused(run: UNetTrainResult) -> None:
    run_dir = run.checkpoint.parent.parent
    saved = json.loads((run.checkpoint / "config.json").read_text())["train_config"]
    weights = (run.checkpoint / "model.safetensors").stat().st_mtime_ns
    # runtime keys (device, progress, ...) may differ
    cfg = dataclasses.replace(UNetTrainConfig(**saved), device="auto", progress=True)
    again = train_unet(cfg)
    assert again.reused
    assert again.checkpoint == run.checkpoint and again.steps == run.steps
    assert again.loss_history == run.loss_history and again.final_loss == run.final_loss
    assert (run.checkpoint / "model.safetensors").stat().st_mtime_ns == weights
    assert str(run_dir) == cfg.run_dir


def test_a_changed_config_is_refused_naming_the_keys(run: UNetTrainResult) -> None:
    saved = json.loads((run.checkpoint / "config.json").read_text())["train_config"]
    cfg = dataclasses.replace(UNetTrainConfig(**saved), lr=5e-4, seed=1)
    with pytest.raises(ConfigError, match=r"different config \(lr: 0\.001 there, 0\.0005 now; "):
        train_unet(cfg)
    with pytest.raises(ConfigError, match=r"seed: 0 there, 1 now"):
        train_unet(cfg)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="both None"):
        UNetTrainConfig(max_steps=None, wall_clock_s=None)
    with pytest.raises(ConfigError, match="wall_clock_s"):
        UNetTrainConfig(wall_clock_s=0)
    with pytest.raises(ConfigError, match="max_steps"):
        UNetTrainConfig(max_steps=0)


def test_a_missing_dataset_is_a_clear_error(euler_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="generate it with"):
        train_unet(config(euler_base, tmp_path / "r", dataset="shear_flow", max_steps=1))
