"""Generated Euler data and tiny rollout models shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from physok import checkpoint as ck
from physok.data.generate import GenerationConfig, generate_dataset
from physok.models.processor import ProcessorConfig
from physok.models.rollout_model import RolloutModel, RolloutModelConfig
from physok.models.tokeniser import TokeniserConfig

EULER = "euler_multi_quadrants_periodicBC"
EULER_FIELDS = ("energy", "density", "pressure", "momentum_x", "momentum_y")


def tiny_model(seed: int = 0, field_names: tuple[str, ...] = EULER_FIELDS) -> RolloutModel:
    """A rollout model small enough for many CPU forwards (fast eval scales: 16² -> 2² latents,
    9 frames -> 5)."""
    torch.manual_seed(seed)
    cfg = RolloutModelConfig(
        TokeniserConfig.fast(field_names=field_names, channels=(4, 8, 8), norm_groups=2),
        ProcessorConfig.fast(
            latent_channels=18, dim=16, depth=1, heads=2, mlp_hidden=32, norm_groups=2
        ),
    )
    return RolloutModel.from_config(cfg).eval()


@pytest.fixture(scope="module")
def euler_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated Euler at 16x16, 4 trajectories of 30 snapshots: train 2, valid 1, test 1
    (21 next-frame windows and 4 windows of 27 frames per trajectory)."""
    base = tmp_path_factory.mktemp("eval_data")
    cfg = GenerationConfig(resolution=(16, 16), trajectories=4, steps=30, seed=0)
    generate_dataset(EULER, base, cfg, progress=False)
    return base


@pytest.fixture(scope="module")
def short_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of data with trajectories of 20 snapshots: too short for 18-step rollouts."""
    base = tmp_path_factory.mktemp("eval_short")
    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=20, seed=1)
    generate_dataset(EULER, base, cfg, progress=False)
    return base


@pytest.fixture(scope="module")
def make_model() -> Callable[..., RolloutModel]:
    """`make_model(seed=0, field_names=EULER_FIELDS)`: a fresh tiny rollout model."""
    return tiny_model


@pytest.fixture(scope="module")
def model() -> RolloutModel:
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model: RolloutModel) -> Path:
    """A rollout run directory (checkpoints/step_*/ and `latest`) holding `model`'s weights."""
    run = tmp_path_factory.mktemp("eval_run")
    ck.save_checkpoint(
        run,
        3,
        kind="rollout",
        model=model,
        model_config=model.config.to_dict(),
        field_names=model.config.tokeniser.field_names,
    )
    return run
