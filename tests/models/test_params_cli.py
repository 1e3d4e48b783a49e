"""Parameter counts: printed by `python -m physok.models params` and within the paper's range."""

from __future__ import annotations

import json

import pytest

from physok.models.__main__ import main
from physok.models.tokeniser import (
    Tokeniser,
    TokeniserConfig,
    apply_training_strategy,
    count_parameters,
)


def test_paper_preset_counts_via_cli(capsys):
    assert main(["params", "--preset", "paper", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["paper"]
    assert 4_500_000 <= counts["total"] <= 5_500_000
    share = counts["trainable[mostly_frozen]"] / counts["total"]
    # The paper: 85k of 5M (1.7%, "2%"); ours freezes exactly the same layers.
    assert 0.005 <= share <= 0.03
    assert main(["params"]) == 0
    table = capsys.readouterr().out
    assert "paper" in table and "fast" in table and "mostly_frozen" in table


def test_mostly_frozen_trains_only_heads_and_bottlenecks():
    tok = Tokeniser(TokeniserConfig.fast())
    apply_training_strategy(tok, "mostly_frozen")
    trainable = {
        n.split(".")[0] + "." + n.split(".")[1]
        for n, p in tok.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"encoder.head", "encoder.bottleneck", "decoder.bottleneck", "decoder.head"}
    expected = sum(
        count_parameters(tok.get_submodule(m))
        for m in ("encoder.head", "encoder.bottleneck", "decoder.bottleneck", "decoder.head")
    )
    assert count_parameters(tok, trainable_only=True) == expected
    apply_training_strategy(tok, "trainable")
    assert count_parameters(tok, trainable_only=True) == count_parameters(tok)
    with pytest.raises(ValueError, match="strategy"):
        apply_training_strategy(tok, "frozen")
