"""TokeniserConfig: presets, JSON round trip, and clear errors for bad values."""

from __future__ import annotations

import json

import pytest

from physok.models.tokeniser import TokeniserConfig


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_round_trip_through_json(preset):
    cfg = TokeniserConfig.preset(preset)
    again = TokeniserConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_bad_values_name_the_option():
    with pytest.raises(ValueError, match="unknown tokeniser config key.*'chanels'"):
        TokeniserConfig.from_dict({"chanels": [1, 2, 3]})
    with pytest.raises(ValueError, match="eval_scales"):
        TokeniserConfig(eval_scales=((1, 2), (2, 8), (2, 4)))
    with pytest.raises(ValueError, match="upsampling"):
        TokeniserConfig(upsampling="nearest")
    with pytest.raises(ValueError, match="temporal_scales"):
        TokeniserConfig(temporal_scales=((1,), (1, 3), (1, 2)))
    with pytest.raises(ValueError, match="unknown tokeniser preset"):
        TokeniserConfig.preset("huge")
