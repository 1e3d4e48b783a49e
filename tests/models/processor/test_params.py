"""The paper preset's processor + projections count (~100M), printed by the params CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from physok.models.__main__ import main


def test_paper_processor_count_via_cli_subprocess():
    run = subprocess.run(
        [sys.executable, "-m", "physok.models", "params", "--preset", "paper", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    counts = json.loads(run.stdout)["paper"]
    processor = counts["processor"]
    print(processor)
    assert 95_000_000 <= processor["total"] <= 105_000_000
    assert processor["total"] == processor["blocks"] + processor["projections"]
    # The two latent projections 18 -> 1088 and 1088 -> 18, with biases.
    assert processor["projections"] == (18 * 1088 + 1088) + (1088 * 18 + 18)
    # The tokeniser's counts are unchanged alongside.
    assert 4_500_000 <= counts["total"] <= 5_500_000


def test_table_lists_the_processor_for_both_presets(capsys):
    assert main(["params", "--preset", "fast"]) == 0
    table = capsys.readouterr().out
    assert "processor parameters" in table and "fast" in table
