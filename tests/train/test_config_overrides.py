"""`--set KEY=VALUE` parsing: types, lists, model.* keys, clear errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from physok.train.config_overrides import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    parse_value,
)


@dataclass(frozen=True)
class Cfg:
    steps: int = 10
    lr: float = 1e-3
    name: str = "a"
    flag: bool = False
    betas: tuple[float, float] = (0.9, 0.95)
    datasets: tuple[str, ...] = ("x",)
    maybe: bool | None = None
    model_overrides: dict = field(default_factory=dict)


def test_parse_value() -> None:
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3
    assert parse_value("[4, 8]") == [4, 8] and parse_value("soap") == "soap"
    assert parse_value("True") is True and parse_value("none") is None


def test_apply_overrides_coerces_types() -> None:
    cfg = apply_overrides(
        Cfg(),
        [
            "steps=20",
            "lr=5e-4",
            "name=soap",
            "flag=true",
            "betas=[0.9,0.99]",
            "datasets=a,b",
            "maybe=null",
            "model.channels=[4,8,8]",
            "model.upsampling=transposed",
        ],
    )
    assert cfg.steps == 20 and cfg.lr == 5e-4 and cfg.name == "soap" and cfg.flag is True
    assert cfg.betas == (0.9, 0.99) and cfg.datasets == ("a", "b") and cfg.maybe is None
    assert cfg.model_overrides == {"channels": [4, 8, 8], "upsampling": "transposed"}
    assert apply_overrides(Cfg(), ["lr=1"]).lr == 1.0  # int to float


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("stepz=3", r"--set stepz: unknown option for Cfg; valid keys: betas, datasets, flag"),
        ("steps=1.5", r"--set steps: expected an integer, got 1.5"),
        ("flag=maybe", r"--set flag: expected true or false"),
        ("betas=[1]", r"--set betas: expected 2 values"),
        ("steps", r"expected KEY=VALUE"),
    ],
)
def test_bad_overrides(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Cfg(), [item])


def test_config_from_dict() -> None:
    cfg = config_from_dict(Cfg, {"steps": 5, "betas": [0.1, 0.2]}, "ckpt")
    assert cfg.steps == 5 and cfg.betas == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"ckpt: unknown Cfg keys \['nope'\]"):
        config_from_dict(Cfg, {"nope": 1}, "ckpt")
