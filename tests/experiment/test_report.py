"""Report and comparison of the experiment, from synthetic results dicts (see conftest.py)."""

from __future__ import annotations

import json
import math

import pytest

from physok.experiment.report import (
    CONDITION_ORDER,
    PAPER_REFERENCE,
    compare,
    render_report,
    write_report,
)


def _row(text: str, label: str) -> list[str]:
    """The cells of the first Markdown table row starting with `label`, after the label."""
    for line in text.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")][1:]
    raise AssertionError(f"no table row for {label!r}")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_constants():
    assert CONDITION_ORDER == (
        "no_pretraining",
        "in_domain_trainable",
        "in_domain_frozen",
        "out_of_domain_trainable",
        "out_of_domain_frozen",
    )
    assert PAPER_REFERENCE["vrmse"]["no_pretraining"] == 0.439
    assert PAPER_REFERENCE["vrmse"]["in_domain_trainable"] == 0.158
    assert PAPER_REFERENCE["vrmse"]["in_domain_frozen"] == 0.162
    assert PAPER_REFERENCE["vrmse"]["out_of_domain_trainable"] == 0.355
    assert PAPER_REFERENCE["vrmse"]["out_of_domain_frozen"] is None
    assert PAPER_REFERENCE["direction"]["out_of_domain_frozen"] == "higher"
    assert PAPER_REFERENCE["vrmse_change_pct"]["in_domain_trainable"] == -64.0
    assert PAPER_REFERENCE["rollout_steps"] == 10_500
    json.dumps(PAPER_REFERENCE)  # stored in results.json: must be JSON-serialisable


def test_compare_arithmetic(results):
    comp = compare(results)
    c = comp["conditions"]
    assert "no_pretraining" not in c
    assert list(c) == list(CONDITION_ORDER[1:])
    assert c["in_domain_trainable"]["vrmse_change_pct"] == pytest.approx(-50.0)
    assert c["out_of_domain_trainable"]["vrmse_change_pct"] == pytest.approx(-25.0)
    assert c["out_of_domain_frozen"]["vrmse_change_pct"] == pytest.approx(25.0)
    # NEPS low: 0.001 vs 0.02 -> -95%; horizons scale with VRMSE except frozen 7-18
    assert c["in_domain_trainable"]["neps_change_pct"]["low"] == pytest.approx(-95.0)
    assert c["in_domain_trainable"]["neps_change_pct"]["high"] == pytest.approx(0.0)
    assert c["in_domain_trainable"]["horizon_change_pct"]["3-6"] == pytest.approx(-50.0)
    assert c["in_domain_frozen"]["horizon_change_pct"]["7-18"] == pytest.approx(
        100 * (0.5 - 1.2) / 1.2
    )
    assert comp["ranking"] == [
        "in_domain_trainable",
        "in_domain_frozen",
        "out_of_domain_trainable",
        "no_pretraining",
        "out_of_domain_frozen",
    ]
    assert c["out_of_domain_frozen"]["matches_paper_direction"] is True
    json.dumps(comp)  # the runner stores it under "comparison"


def test_answer_flags(results):
    ans = compare(results)["answer"]
    assert ans["in_domain_condition"] == "in_domain_trainable"
    assert ans["in_domain_lowers_vrmse"] is True
    assert ans["matches_paper_direction"] is True
    assert ans["in_domain_trainable_change_pct"] == pytest.approx(-50.0)
    assert ans["in_domain_frozen_change_pct"] == pytest.approx(-47.5)
    assert ans["out_of_domain_trainable_change_pct"] == pytest.approx(-25.0)
    assert ans["paper_in_domain_trainable_change_pct"] == -64.0
    # |0.2 - 0.4| = 0.2 > 2 * sqrt(0.01² + 0.01²) = 0.0283
    assert ans["subset_spread_threshold"] == pytest.approx(2 * math.sqrt(2e-4))
    assert ans["difference_exceeds_subset_spread"] is True
    assert ans["equal_rollout_steps"] is True
    assert ans["out_of_domain_frozen_worse"] is True
    assert ans["in_domain_frozen_beats_trainable_longest_horizon"] is True


def test_answer_flips_when_in_domain_is_worse(worse_results):
    ans = compare(worse_results)["answer"]
    assert ans["in_domain_trainable_change_pct"] == pytest.approx(50.0)
    assert ans["in_domain_lowers_vrmse"] is False
    assert ans["matches_paper_direction"] is False
    assert compare(worse_results)["answer"]["confirms_paper_direction"] is False
    text = _section(render_report(worse_results), "Answer")
    assert "(fully trainable) raised next-frame VRMSE" in text
    assert ") lowered next-frame VRMSE" not in text
    assert "+50.0%" in text
    assert "goes against it for In-domain, trainable" in text


def test_spread_flag_flips_with_large_subset_std(results):
    for key in ("no_pretraining", "in_domain_trainable"):
        results["conditions"][key]["next_frame"]["vrmse"]["std"] = 0.1
    ans = compare(results)["answer"]
    # threshold 2 * sqrt(0.02) = 0.283 > 0.2
    assert ans["in_domain_lowers_vrmse"] is True
    assert ans["difference_exceeds_subset_spread"] is False
    assert "does not exceed" in _section(render_report(results), "Answer")


def test_unequal_steps_are_reported(results):
    results["conditions"]["in_domain_trainable"]["training"]["steps"] = 200
    assert compare(results)["answer"]["equal_rollout_steps"] is False
    assert "unequal rollout training" in _section(render_report(results), "Answer")


def test_report_tables(results):
    text = render_report(
        results, {"validation_curves": "figures/validation_curves.png", "rollout_horizons": "x.png"}
    )
    for title in (
        "Setup",
        "Answer",
        "Table 4 analogue — cost",
        "Table 5 analogue — quality",
        "Long rollouts",
        "Figures",
        "Reproduce",
    ):
        assert f"## {title}" in text
    assert text.startswith("# Tokeniser pretraining experiment: `fast`")
    assert "Preset `fast`" in text and "2026-11-28T22:40:00Z" in text
    answer = _section(text, "Answer")
    assert ") lowered next-frame VRMSE" in answer and "-50.0%" in answer and "-64.0%" in answer
    assert "exceeds the spread" in answer

    quality = _section(text, "Table 5 analogue — quality")
    assert _row(quality, "No pretraining")[:2] == ["0.400 ± 0.0100", "—"]
    row = _row(quality, "In-domain, trainable")
    assert row[:5] == ["0.200 ± 0.0100", "-50.0%", "1.00e-03", "0.250", "1.00"]
    assert _row(quality, "Out-of-domain, mostly frozen")[1] == "+25.0%"
    # the paper's numbers are context in a sentence, never a column beside this run's
    assert "Paper VRMSE" not in quality and "| 0.158 |" not in quality
    assert "the paper's numbers" in answer and "levels are not comparable" in answer
    assert "NMSE low" in quality

    cost = _section(text, "Table 4 analogue — cost")
    # 0.29 s/step * 2100 steps / 60 = 10.15 min
    assert _row(cost, "Tokeniser pretraining: In-domain (Euler)")[:4] == [
        "300",
        "95.2",
        "0.290",
        "10.2",
    ]
    assert _row(cost, "Rollout training: No pretraining")[:4] == ["400", "50.0", "0.100", "3.50"]
    assert "Min per 2,100 steps" in cost and "Test CPU (2 threads)" in cost

    rollouts = _section(text, "Long rollouts")
    assert _row(rollouts, "In-domain, trainable") == [
        "0.160", "-50.0%", "0.300", "-50.0%", "0.600", "-50.0%",
    ]  # fmt: skip
    assert _row(rollouts, "No pretraining")[1] == "—"

    assert "![" in text and "(figures/validation_curves.png)" in text and "(x.png)" in text
    assert "python -m physok.experiment --preset fast" in _section(text, "Reproduce")
    assert "Total wall-clock:** 512.3 s" in text
    assert "5 random subsets × 32" in text


def test_report_roundtrips_through_json(results, tmp_path):
    """results.json stores NaN as null: the report of the reloaded dict is the same text."""
    reloaded = json.loads(json.dumps(results))
    assert render_report(reloaded) == render_report(results)


def test_missing_values_render_na(results):
    nf = results["conditions"]["in_domain_frozen"]["next_frame"]
    nf["vrmse"] = {"mean": None, "std": None}
    nf["neps"]["mid"]["mean"] = float("nan")
    results["conditions"]["in_domain_frozen"]["rollout"]["horizons"]["3-6"] = None
    results["tokenisers"]["in_domain"]["median_step_s"] = None
    del results["config"]["command"]
    comp = compare(results)
    assert comp["conditions"]["in_domain_frozen"]["vrmse_change_pct"] is None
    assert comp["answer"]["in_domain_frozen_change_pct"] is None
    assert "in_domain_frozen" not in comp["ranking"]
    text = render_report(results)
    q = _row(_section(text, "Table 5 analogue — quality"), "In-domain, mostly frozen")
    assert q[0] == "n/a" and q[1] == "n/a" and q[3] == "n/a"
    r = _row(_section(text, "Long rollouts"), "In-domain, mostly frozen")
    assert r[2] == "n/a" and r[3] == "n/a"
    c = _row(_section(text, "Table 4 analogue — cost"), "Tokeniser pretraining: In-domain (Euler)")
    assert c[2] == "n/a" and c[3] == "n/a"
    assert "was not recorded" in _section(text, "Reproduce")


def test_miniature_run(mini_results):
    comp = compare(mini_results)
    assert list(comp["conditions"]) == ["in_domain_trainable"]
    assert comp["answer"]["in_domain_frozen_change_pct"] is None
    assert comp["answer"]["out_of_domain_trainable_change_pct"] is None
    assert comp["answer"]["in_domain_frozen_beats_trainable_longest_horizon"] is None
    assert comp["answer"]["in_domain_lowers_vrmse"] is True
    text = render_report(mini_results)
    assert "Out-of-domain, trainable" not in text
    assert "Out-of-domain pretraining:" not in text
    assert "No figures were rendered" in text


def test_baseline_only_cannot_answer(mini_results):
    del mini_results["conditions"]["in_domain_trainable"]
    del mini_results["tokenisers"]
    comp = compare(mini_results)
    assert comp["conditions"] == {}
    assert comp["answer"]["in_domain_lowers_vrmse"] is None
    assert comp["answer"]["matches_paper_direction"] is None
    assert "cannot answer" in _section(render_report(mini_results), "Answer")


def test_frozen_is_headline_without_trainable(results):
    del results["conditions"]["in_domain_trainable"]
    ans = compare(results)["answer"]
    assert ans["in_domain_condition"] == "in_domain_frozen"
    assert ans["in_domain_trainable_change_pct"] is None
    assert ans["in_domain_lowers_vrmse"] is True
    assert "(mostly frozen) lowered next-frame VRMSE" in render_report(results)


def test_write_report_atomic(results, tmp_path):
    run_dir = tmp_path / "runs" / "fast"
    path = write_report(results, run_dir, {"rollout_horizons": "figures/rollout_horizons.png"})
    assert path == run_dir / "report.md"
    assert path.read_text(encoding="utf-8") == render_report(
        results, {"rollout_horizons": "figures/rollout_horizons.png"}
    )
    assert [p.name for p in run_dir.iterdir()] == ["report.md"]  # no temporary file left
    results["name"] = "again"
    write_report(results, run_dir, None)
    assert "`again`" in path.read_text(encoding="utf-8")


def test_clipped_horizons_follow_the_results(mini_results):
    """A 10-step rollout reports "7-10" (physok.evaluate clips horizons): tables follow it."""
    for cond in mini_results["conditions"].values():
        ro = cond["rollout"]
        ro["steps"] = 10
        ro["per_step_vrmse"] = ro["per_step_vrmse"][:10]
        long = ro["horizons"].pop("7-18")
        ro["horizons"]["7-10"] = long / 2
        ro["notes"] = ["horizons ['7-18'] reach past the 10 steps run: clipped"]
    comp = compare(mini_results)
    assert list(comp["conditions"]["in_domain_trainable"]["horizon_change_pct"]) == [
        "1-2",
        "3-6",
        "7-10",
    ]
    assert comp["conditions"]["in_domain_trainable"]["horizon_change_pct"]["7-10"] == (
        pytest.approx(-50.0)
    )
    assert comp["answer"]["longest_horizon"] == "7-10"
    rollouts = _section(render_report(mini_results), "Long rollouts")
    assert "VRMSE 7-10" in rollouts and "VRMSE 7-18" not in rollouts
    assert _row(rollouts, "In-domain, trainable")[4:] == ["0.300", "-50.0%"]
    assert rollouts.count("reach past the 10 steps run") == 1  # notes deduplicated


def test_persistence_reference_and_context(results):
    # persistence scores 0.5 next-frame; conditions below that beat it, named in the answer
    text = render_report(results)
    assert "| *Persistence (repeat the last context frame)* | 0.500 ± 0.0100 | — | 0.250 |" in text
    assert "| *Persistence (repeat the last context frame)* | 0.225 | — | 0.375 | — |" in text
    beat = [k for k, c in results["conditions"].items() if c["next_frame"]["vrmse"]["mean"] < 0.5]
    assert f"{len(beat)} of 5 conditions beat it by more than the spread" in text
    # 0.5 ± 0.01 vs persistence's 0.5 ± 0.01: not a win, not a loss
    assert "1 indistinguishable from it (Out-of-domain, mostly frozen)" in text
    assert "reconstructs validation windows at VRMSE 0.710" in text
    assert "have not learned to forecast" not in text
    for c in results["conditions"].values():
        c["next_frame"]["vrmse"]["mean"] = 0.9  # now every condition is worse than persistence
    text = render_report(results)
    assert "0 of 5 conditions beat it by more than the spread, 5 above it" in text
    assert "have not learned to forecast" in text
