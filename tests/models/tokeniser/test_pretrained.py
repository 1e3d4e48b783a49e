"""save_pretrained / from_pretrained round trip, and clear errors for checkpoints that don't fit."""

from __future__ import annotations

import json

import pytest
import torch

from physok.checkpoint import CheckpointError
from physok.models.tokeniser import Tokeniser


def test_round_trip_restores_config_and_outputs(tmp_path, make_config):
    tok = Tokeniser(make_config(upsampling="transposed")).eval()
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokeniser.from_pretrained(tmp_path / "tok").eval()
    assert loaded.config == tok.config
    x = torch.randn(1, 9, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, [0, 1]), tok(x, [0, 1]), rtol=0, atol=0)


def test_corrupt_or_mismatched_checkpoints_fail_clearly(tmp_path, make_config):
    tok = Tokeniser(make_config())
    path = tok.save_pretrained(tmp_path / "tok")
    # A checkpoint of another architecture: config and weights disagree.
    meta = json.loads((path / "config.json").read_text())
    meta["model_config"]["channels"] = [4, 8, 16]
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        Tokeniser.from_pretrained(path)
    meta["model_config"]["channels"] = [4, 8, 8]
    meta["model_config"]["n_layers"] = 3
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown tokeniser config key"):
        Tokeniser.from_pretrained(path)
    # A truncated weights file.
    good = tok.save_pretrained(tmp_path / "tok2")
    data = (good / "model.safetensors").read_bytes()
    (good / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Tokeniser.from_pretrained(good)
    with pytest.raises(CheckpointError):
        Tokeniser.from_pretrained(tmp_path / "nothing-here")
