"""Across-seed aggregation, the paper's ordering test and the baseline comparisons of the report,
on synthetic results (tests/experiment/conftest.py) extended to schema 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from physok.experiment.report import compare, render_report
from physok.experiment.runner import (
    ExperimentOutcome,
    _summary_numbers,
    across_seeds,
    print_summary,
)


def _with_seeds(results: dict, per_seed: dict[str, list[float]]) -> dict:
    """Three seeds per condition with the given next-frame VRMSEs; baselines beside them."""
    r = copy.deepcopy(results)
    r["schema"] = "physok.experiment/2"
    r["seeds"] = [0, 1, 2]
    for key, values in per_seed.items():
        cond = r["conditions"][key]
        hz = cond["rollout"]["horizons"]
        summaries = {
            s: {"vrmse": v, "neps": {}, "horizons": {h: x * v / values[0] for h, x in hz.items()}}
            for s, v in zip((0, 1, 2), values, strict=True)
        }
        cond["seeds"] = {str(s): x for s, x in summaries.items()}
        cond["across_seeds"] = across_seeds(summaries)
    first = r["conditions"]["no_pretraining"]
    r["baselines"] = {
        "persistence": {
            "label": "Persistence",
            "kind": "reference",
            "next_frame": {"vrmse": {"mean": 0.35, "std": 0.01}, "neps": {}},
            "rollout": {"horizons": {h: 0.9 * v for h, v in first["rollout"]["horizons"].items()}},
        },
        "unet": {
            "label": "U-Net",
            "kind": "trained",
            "training": {"steps": 1000, "wall_clock_s": 60.0, "budget_s": 60.0},
            "next_frame": {"vrmse": {"mean": 0.25, "std": 0.01}, "neps": {}},
            "rollout": {"horizons": {h: 2.0 for h in first["rollout"]["horizons"]}},
        },
    }
    return r


SEEDS = {
    "no_pretraining": [0.40, 0.42, 0.38],
    "in_domain_trainable": [0.20, 0.21, 0.19],
    "in_domain_frozen": [0.21, 0.22, 0.20],
    "out_of_domain_trainable": [0.30, 0.33, 0.27],
    "out_of_domain_frozen": [0.50, 0.52, 0.48],
}


def test_across_seeds_mean_std_and_missing_values() -> None:
    out = across_seeds(
        {
            0: {"vrmse": 1.0, "neps": {"low": 0.1}, "horizons": {"1-2": 2.0}},
            1: {"vrmse": 3.0, "neps": {"low": 0.3}, "horizons": {"1-2": 4.0}},
        }
    )
    assert out["seeds"] == [0, 1]
    assert out["vrmse"] == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2, "values": [1, 3]}
    assert out["neps"]["low"]["mean"] == pytest.approx(0.2)
    assert out["horizons"]["1-2"]["mean"] == 3.0
    one = across_seeds({0: {"vrmse": 1.0, "neps": {}, "horizons": {}}})
    assert one["vrmse"]["std"] is None and one["vrmse"]["mean"] == 1.0
    # a diverged seed is not averaged away
    bad = across_seeds({0: {"vrmse": 1.0}, 1: {"vrmse": None}})
    assert bad["vrmse"]["mean"] is None and bad["vrmse"]["n"] == 2


def test_comparison_uses_the_spread_across_seeds(results: dict) -> None:
    r = _with_seeds(results, SEEDS)
    comp = compare(r)
    head = comp["conditions"]["in_domain_trainable"]
    assert head["spread_kind"] == "seeds"
    assert head["vrmse"] == pytest.approx(0.20) and head["vrmse_std"] == pytest.approx(0.01)
    std_none = comp["baseline_vrmse_std"]
    assert std_none == pytest.approx(0.02)
    assert head["subset_spread_threshold"] == pytest.approx(2 * (0.01**2 + 0.02**2) ** 0.5)
    assert comp["answer"]["difference_exceeds_subset_spread"] is True
    order = comp["answer"]["ordering"]
    assert order["holds"] is True and order["separated"] is True
    # out-of-domain's seeds spread widely: the ordering holds but is not separated
    wide = dict(SEEDS, out_of_domain_trainable=[0.22, 0.40, 0.28])
    order = compare(_with_seeds(results, wide))["answer"]["ordering"]
    assert order["holds"] is True and order["separated"] is False
    # and a swapped order does not hold
    swapped = dict(SEEDS, out_of_domain_trainable=[0.45, 0.46, 0.44])
    assert compare(_with_seeds(results, swapped))["answer"]["ordering"]["holds"] is False


def test_baseline_ratios_and_report_rows(results: dict) -> None:
    r = _with_seeds(results, SEEDS)
    vs = compare(r)["versus_baselines"]
    per = vs["persistence"]["per"]["in_domain_trainable"]
    assert per["vrmse_ratio"] == pytest.approx(0.20 / 0.35) and per["beats"] is True
    assert vs["unet"]["per"]["no_pretraining"]["beats"] is False
    assert vs["unet"]["per"]["in_domain_trainable"]["beats_every_horizon"] is True
    text = render_report(r)
    assert "across 3 seeds" in text and "spread across seeds" in text
    assert "| *Persistence* |" in text and "| *U-Net* |" in text
    assert "U-Net, 1,000 steps in 60.0 s" in text
    assert "0.57× Persistence" in text
    assert "ordering in-domain < out-of-domain trainable < no pretraining holds" in text


def test_one_seed_report_says_the_spread_is_over_subsets(results: dict) -> None:
    text = render_report(results)  # schema 1: no seeds, persistence inside the conditions
    assert "over validation subsets" in text and "--seeds 3" in text
    assert "Persistence (repeat the last context frame)" in text


def test_printed_summary_gives_across_seed_means_for_every_column(capsys) -> None:
    """With several seeds the end-of-run table shows the means across seeds, NEPS included
    (not seed 0's values under a "means over seeds" heading)."""
    seed_neps = {0: 0.1, 1: 0.3, 2: 0.5}
    summaries = {
        s: {"vrmse": 0.2 + s, "neps": {"low": v}, "horizons": {"1-2": 1.0 + s}}
        for s, v in seed_neps.items()
    }
    entry = {
        "label": "In-domain, trainable",
        "next_frame": {"vrmse": {"mean": 0.2}, "neps": {"low": {"mean": 0.1}}},
        "rollout": {"horizons": {"1-2": 1.0}},
        "across_seeds": across_seeds(summaries),
    }
    vrmse, neps, horizons = _summary_numbers(entry, seeds=True)
    assert vrmse == pytest.approx(1.2) and horizons["1-2"] == pytest.approx(2.0)
    assert neps["low"] == pytest.approx(0.3)
    assert _summary_numbers(entry, seeds=False)[1]["low"] == pytest.approx(0.1)
    results = {
        "name": "fast",
        "seeds": [0, 1, 2],
        "total_wall_clock_s": 1.0,
        "conditions": {"in_domain_trainable": entry},
        "comparison": {},
    }
    out = ExperimentOutcome(results, Path("runs/fast"), Path("r.json"), Path("r.md"), {})
    print_summary(results, out)
    row = next(line for line in capsys.readouterr().out.splitlines() if "In-domain" in line)
    assert row.split()[2:4] == ["1.200", "0.3"]  # VRMSE, NEPS low
