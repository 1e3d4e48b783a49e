"""ProcessorConfig: presets, JSON round trip, validation naming the option, drop path schedule."""

from __future__ import annotations

import json

import pytest
import torch

from physok.models.processor import Processor, ProcessorConfig


def test_presets():
    paper = ProcessorConfig.paper()
    assert (paper.latent_channels, paper.dim, paper.depth, paper.heads) == (18, 1088, 6, 16)
    assert paper.head_dim == 68 and paper.mlp_hidden == 4352 and paper.bias_buckets == 32
    assert ProcessorConfig.preset_named("paper") == paper
    fast = ProcessorConfig.preset_named("fast", depth=3)
    assert fast.depth == 3 and fast.dim < paper.dim
    assert ProcessorConfig.preset("fast") == ProcessorConfig.fast()
    with pytest.raises(ValueError, match="unknown processor preset 'huge'"):
        ProcessorConfig.preset_named("huge")


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_json_round_trip(preset):
    cfg = ProcessorConfig.preset_named(preset, attention_backend="math", layer_scale_init=1e-6)
    assert ProcessorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "overrides,option",
    [
        (dict(heads=7), "heads"),
        (dict(dim=8, heads=4, norm_groups=2), "heads"),  # head dim 2 < 4
        (dict(norm_groups=5), "norm_groups"),
        (dict(mlp_hidden=4351), "mlp_hidden"),
        (dict(drop_path=1.0), "drop_path"),
        (dict(depth=0), "depth"),
        (dict(bias_buckets=1), "bias_buckets"),
        (dict(bias_max_distance=16), "bias_max_distance"),
        (dict(rope_max_freq=1.0), "rope_max_freq"),
        (dict(layer_scale_init=-1.0), "layer_scale_init"),
        (dict(attention_backend="flash2"), "attention_backend"),
    ],
)
def test_validation_names_the_option(overrides, option):
    with pytest.raises(ValueError, match=rf"ProcessorConfig\.{option}"):
        ProcessorConfig(**overrides)


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown processor config key\(s\) \['width'\]"):
        ProcessorConfig.from_dict({"width": 3})


def test_drop_path_rates_grow_linearly_to_the_maximum():
    rates = ProcessorConfig.paper().drop_path_rates()
    assert rates == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
    with torch.device("meta"):
        processor = Processor(ProcessorConfig.paper())
    used = [(b.spatial.drop_path.rate, b.temporal.drop_path.rate) for b in processor.blocks]
    assert used == [(r, r) for r in rates]
    assert ProcessorConfig.fast().drop_path_rates() == pytest.approx([0.0, 0.05])
    assert ProcessorConfig(depth=1).drop_path_rates() == (0.0,)
