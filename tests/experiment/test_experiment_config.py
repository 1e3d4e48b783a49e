"""ExperimentConfig: the stage configs it builds and its `--set` routing."""

from __future__ import annotations

import pytest

from physok.experiment.conditions import CONDITION_ORDER, CONDITIONS, tokenisers_needed
from physok.experiment.config import (
    DOWNSTREAM,
    OUT_OF_DOMAIN_PAPER,
    ExperimentConfig,
    apply_experiment_overrides,
)
from physok.train.config_overrides import ConfigError


def test_fast_preset_builds_the_five_conditions_with_equal_budgets() -> None:
    cfg = ExperimentConfig.fast()
    cfg.validate()
    assert cfg.conditions == CONDITION_ORDER and len(CONDITION_ORDER) == 5
    rollouts = {c: cfg.rollout_config(c) for c in cfg.conditions}
    # same budget, seed, data and model for every condition: only tokeniser and strategy differ
    for field in ("steps", "lr", "batch_size", "seed", "epoch_steps", "processor_preset"):
        assert len({getattr(r, field) for r in rollouts.values()}) == 1, field
    assert all(r.datasets == (DOWNSTREAM,) for r in rollouts.values())
    assert rollouts["no_pretraining"].tokeniser_checkpoint is None
    for name, r in rollouts.items():
        c = CONDITIONS[name]
        assert r.tokeniser_strategy == c.strategy
        if c.tokeniser is not None:
            assert r.tokeniser_checkpoint == str(cfg.tokeniser_run_dir(c.tokeniser))
        assert r.run_dir == str(cfg.run_dir / f"rollout_{name}")
    assert cfg.tokeniser_config("in_domain").datasets == (DOWNSTREAM,)
    assert cfg.tokeniser_config("out_of_domain").datasets == OUT_OF_DOMAIN_PAPER
    assert DOWNSTREAM not in OUT_OF_DOMAIN_PAPER
    assert cfg.datasets_needed() == (DOWNSTREAM, *OUT_OF_DOMAIN_PAPER)


def test_paper_preset_uses_the_paper_stage_presets() -> None:
    cfg = ExperimentConfig.paper(data_dir="/well")
    cfg.validate()
    assert cfg.tokeniser_config("in_domain").steps == 168_000
    assert cfg.rollout_config("in_domain_frozen").steps == 29_400
    assert cfg.eval_config().subsets == 10 and cfg.eval_config().subset_size == 4096
    assert "active_matter" in cfg.out_of_domain and not cfg.generate_data


def test_overrides_reach_every_level() -> None:
    cfg = apply_experiment_overrides(
        ExperimentConfig.fast(),
        [
            "tokeniser.steps=7",
            "rollout.lr=1e-3",
            "rollout.processor.dim=64",
            "evaluation.subsets=3",
            "model.channels=[4,8,8]",
            "conditions=no_pretraining,in_domain_frozen",
            "resolution=[64,64]",
        ],
    )
    cfg.validate()
    assert cfg.tokeniser_config("in_domain").steps == 7
    r = cfg.rollout_config("in_domain_frozen")
    assert r.lr == 1e-3 and r.processor_overrides["dim"] == 64
    # the tokeniser architecture goes to both stages, so the checkpoint and the rollout agree
    assert r.model_overrides["channels"] == [4, 8, 8]
    assert cfg.tokeniser_config("in_domain").model_overrides["channels"] == [4, 8, 8]
    assert cfg.eval_config().subsets == 3
    assert cfg.conditions == ("no_pretraining", "in_domain_frozen")
    assert tokenisers_needed(cfg.conditions) == ("in_domain",)
    assert cfg.datasets_needed() == (DOWNSTREAM,)  # no out-of-domain data needed
    assert cfg.generation().resolution == (64, 64)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("tokeniser.stepz=3", "tokeniser stage: --set stepz"),
        ("rollout.processor_overrides=1", "processor"),
        ("rollout.run_dir=/tmp/x", "set by the experiment"),
        ("tokeniser.datasets=[shear_flow]", "set by the experiment"),
        ("evaluation.subsets=0", "subsets"),
        ("colour=blue", "colour"),
        ("tokeniser=3", "one by one"),
        ("conditions=no_pretraining,sideways", "sideways"),
        ("conditions=in_domain_trainable", "no_pretraining"),
        (f"out_of_domain=[{DOWNSTREAM}]", "must not see it"),
        ("name=a/b", "--name"),
    ],
)
def test_bad_settings_are_named(assignment: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        apply_experiment_overrides(ExperimentConfig.fast(), [assignment]).validate()
    assert expected in str(info.value)
