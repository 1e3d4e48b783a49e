"""EvalConfig presets, validation messages and JSON round trip."""

from __future__ import annotations

import json

import pytest

from physok.evaluate import EvalConfig, EvalConfigError


def test_presets() -> None:
    fast, paper = EvalConfig.fast(), EvalConfig.paper()
    assert (fast.subsets, fast.subset_size, fast.rollout_windows, fast.batch_size) == (5, 32, 8, 8)
    assert (paper.subsets, paper.subset_size, paper.rollout_windows) == (10, 4096, 256)
    assert paper.batch_size == 16 and paper.preset == "paper"
    for cfg in (fast, paper):
        assert cfg.split == "valid" and cfg.rollout_steps == 18 and cfg.seed == 0
        assert cfg.horizons == ((1, 2), (3, 6), (7, 18))
        assert cfg.device == "auto" and cfg.amp is False
    assert EvalConfig.preset_named("paper", subsets=3).subsets == 3
    with pytest.raises(EvalConfigError, match="--config 'huge'"):
        EvalConfig.preset_named("huge")


def test_round_trip_through_json() -> None:
    cfg = EvalConfig.paper(seed=7, horizons=((1, 1), (2, 9)), split="test")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["horizons"] == [[1, 1], [2, 9]]
    assert EvalConfig.from_dict(data) == cfg
    with pytest.raises(EvalConfigError, match="unknown keys \\['subset'\\]"):
        EvalConfig.from_dict({**data, "subset": 3})


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"split": "validation"}, "--split"),
        ({"subsets": 0}, "--subsets"),
        ({"subset_size": -1}, "--subset-size"),
        ({"rollout_steps": 0}, "--rollout-steps"),
        ({"rollout_windows": 0}, "--rollout-windows"),
        ({"batch_size": 0}, "--batch-size"),
        ({"subsets": 2.5}, "--subsets"),
        ({"num_workers": -1}, "num_workers"),
        ({"seed": "x"}, "--seed"),
        ({"device": "tpu"}, "--device"),
        ({"horizons": ((3, 2),)}, "horizons"),
        ({"horizons": ((0, 2),)}, "horizons"),
        ({"horizons": ()}, "horizons"),
        ({"horizons": (1, 2)}, "horizons"),
    ],
)
def test_validation_names_the_option(change: dict, option: str) -> None:
    with pytest.raises(EvalConfigError, match=f"^{option}"):
        EvalConfig(**change)
