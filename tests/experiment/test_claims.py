"""The report claims only what its numbers and their spread support: no ordering within the
spread, large regressions and outliers named, timing noise warned about, paper numbers kept as
context; rollout figures carry error bars. Synthetic results (conftest.py) with per-window
rollout values, as physok.evaluate records them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from physok.experiment.figures import plot_rollout_horizons, plot_tokeniser_curves
from physok.experiment.report import compare, render_report, rollout_test

WINDOWS = 8


def _with_windows(results: dict, noise: float = 0.01, seed: int = 0) -> dict:
    """Per-window horizon values around each condition's means (the same windows for all)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 0.2, WINDOWS)  # a hard window is hard for every model
    for cond in results["conditions"].values():
        ro = cond["rollout"]
        ro["window_indices"] = list(range(WINDOWS))
        ro["per_window_horizons"], ro["horizon_spread"] = {}, {}
        for h, mean in ro["horizons"].items():
            values = mean + difficulty + rng.normal(0.0, noise, WINDOWS)
            values += mean - values.mean()  # keep the recorded mean exact
            ro["per_window_horizons"][h] = values.tolist()
            std = float(values.std(ddof=1))
            ro["horizon_spread"][h] = {"std": std, "sem": std / WINDOWS**0.5, "n": WINDOWS}
    return results


def _answer(text: str) -> str:
    start = text.index("## Answer")
    return text[start : text.index("\n## ", start + 1)]


def test_paired_rollout_test_uses_the_per_window_differences(results: dict) -> None:
    r = _with_windows(results)
    t = rollout_test(r, "in_domain_frozen", "in_domain_trainable", "7-18")
    a = np.array(r["conditions"]["in_domain_frozen"]["rollout"]["per_window_horizons"]["7-18"])
    b = np.array(r["conditions"]["in_domain_trainable"]["rollout"]["per_window_horizons"]["7-18"])
    assert t["paired"] is True
    assert t["difference"] == pytest.approx(a.mean() - b.mean())
    assert t["threshold"] == pytest.approx(2 * (a - b).std(ddof=1) / np.sqrt(WINDOWS))
    # the shared difficulty cancels: far tighter than the two standard errors combined
    sa, sb = a.std(ddof=1) / np.sqrt(WINDOWS), b.std(ddof=1) / np.sqrt(WINDOWS)
    assert t["threshold"] < 2 * np.hypot(sa, sb) / 3
    # other windows for one model: no pairing, the combined standard errors
    r["conditions"]["in_domain_frozen"]["rollout"]["window_indices"] = list(range(1, 9))
    t = rollout_test(r, "in_domain_frozen", "in_domain_trainable", "7-18")
    assert t["paired"] is False and t["threshold"] == pytest.approx(2 * np.hypot(sa, sb))


def test_a_difference_within_the_spread_gets_no_ordering_claim(results: dict) -> None:
    r = _with_windows(results, noise=0.05)
    # frozen 1.19 vs trainable 1.18 at steps 7-18: well within 8 noisy windows' spread
    r["conditions"]["in_domain_frozen"]["rollout"]["horizons"]["7-18"] = 1.19
    r["conditions"]["in_domain_trainable"]["rollout"]["horizons"]["7-18"] = 1.18
    r = _with_windows(r, noise=0.05)
    # and out-of-domain trainable next-frame 0.405 ± 0.01 vs no pretraining 0.4 ± 0.01
    r["conditions"]["out_of_domain_trainable"]["next_frame"]["vrmse"]["mean"] = 0.405
    comp = compare(r)
    assert comp["answer"]["in_domain_frozen_vs_trainable_longest_horizon"] == "indistinguishable"
    assert comp["answer"]["in_domain_frozen_beats_trainable_longest_horizon"] is False  # raw
    assert comp["conditions"]["out_of_domain_trainable"]["vrmse_relation"] == "indistinguishable"
    answer = _answer(render_report(r))
    assert "it is indistinguishable from the fully trainable one (1.19 vs 1.18" in answer
    assert "does not beat" not in answer and "beats the fully trainable" not in answer
    assert "fully trainable 0.405 (+1.3% vs no pretraining, within the spread: " in answer
    assert "No pretraining 0.400 ≈ Out-of-domain, trainable 0.405" in answer
    assert "cannot tell for Out-of-domain, trainable" in answer
    # the rollout table marks within-spread changes
    rollouts = render_report(r).split("## Long rollouts")[1]
    row = next(x for x in rollouts.splitlines() if x.startswith("| In-domain, mostly frozen |"))
    assert "±" in row and "†" in row


def test_headline_within_the_spread_is_indistinguishable(results: dict) -> None:
    for key in ("no_pretraining", "in_domain_trainable"):
        results["conditions"][key]["next_frame"]["vrmse"]["std"] = 0.2
    comp = compare(results)
    assert comp["answer"]["in_domain_relation"] == "indistinguishable"
    assert comp["answer"]["confirms_paper_direction"] is None
    answer = _answer(render_report(results))
    assert "and no pretraining are indistinguishable at this budget" in answer
    assert "lowered next-frame VRMSE" not in answer


def test_large_regressions_and_outliers_are_named(results: dict) -> None:
    r = _with_windows(results)
    base = r["conditions"]["no_pretraining"]["rollout"]["horizons"]["7-18"]
    r["conditions"]["out_of_domain_trainable"]["rollout"]["horizons"]["7-18"] = base * 1.316
    r["conditions"]["in_domain_frozen"]["next_frame"]["neps"]["high"]["mean"] = 955.0
    r["baselines"] = {
        "persistence": {
            "label": "Persistence",
            "kind": "reference",
            "next_frame": {
                "vrmse": {"mean": 0.5, "std": 0.01},
                "neps": {x: {"mean": 0.66, "std": 0.01} for x in ("low", "mid", "high")},
            },
            "rollout": r["conditions"]["no_pretraining"]["rollout"]["persistence"],
        }
    }
    comp = compare(r)
    named = {(x["condition"], x["metric"]) for x in comp["regressions"]}
    assert ("out_of_domain_trainable", "rollout VRMSE 7-18") in named
    assert ("out_of_domain_frozen", "next-frame VRMSE") in named  # +25%
    assert ("in_domain_trainable", "next-frame VRMSE") not in named  # -50%
    answer = _answer(render_report(r))
    assert "rollout VRMSE 7-18 +31.6%" in answer
    assert "In-domain, mostly frozen NEPS high 955, 1447× persistence's 0.660" in answer


def test_timing_noise_is_warned_about(results: dict) -> None:
    text = render_report(results)
    assert "Timing check: median step times of conditions with the same architecture" in text
    assert "Warning, timing noise" not in text
    # no pretraining and the two trainable conditions do the same work per step
    results["conditions"]["in_domain_trainable"]["training"]["median_step_s"] = 0.3
    text = render_report(results)
    assert "**Warning, timing noise:**" in text
    assert "differ by 3.0×" in text
    warning = compare(results)["timing_warnings"]["warnings"][0]
    assert warning["kind"] == "same_architecture"
    assert "Rollout training: No pretraining" in warning["stages"]
    # a stage whose middle half of step times spreads widely
    results["conditions"]["in_domain_trainable"]["training"]["median_step_s"] = 0.1
    results["tokenisers"]["in_domain"]["step_time_spread_s"] = {"p25": 0.2, "p75": 0.5, "n": 300}
    text = render_report(results)
    assert "the middle half of its step times spans 0.200 to 0.500 s" in text


def test_paper_numbers_are_context_not_a_column(results: dict) -> None:
    text = render_report(results)
    assert "Paper VRMSE" not in text
    answer = _answer(text)
    assert "For context only, the paper's numbers (The Well's 512×512 real Euler data" in answer
    assert "64×64 generated data, 400 rollout-training steps" in answer


def test_rollout_figure_draws_error_bars(results: dict, tmp_path) -> None:
    plain = imread(plot_rollout_horizons(results, tmp_path / "plain.png"))
    with_bars = imread(plot_rollout_horizons(_with_windows(results), tmp_path / "bars.png"))
    assert plain.shape == with_bars.shape and not np.array_equal(plain, with_bars)
    for cond in results["conditions"].values():  # the per-step band
        ro = cond["rollout"]
        ro["per_step_std"] = [0.2] * len(ro["per_step_vrmse"])
    band = imread(plot_rollout_horizons(results, tmp_path / "band.png"))
    assert not np.array_equal(band, with_bars)


def test_tokeniser_figure_has_a_panel_per_dataset(results: dict, tmp_path) -> None:
    one_mean = imread(plot_tokeniser_curves(results, tmp_path / "a.png"))
    ood = results["tokenisers"]["out_of_domain"]
    for entry in ood["curve"]:
        v = entry["val_vrmse_mean"]
        entry["val_vrmse"] = {d: v for d in ood["datasets"]}
    ood["downstream_reconstruction"] = {"vrmse": {"mean": 1.26, "sem": 0.006}, "windows": 32}
    per_dataset = imread(plot_tokeniser_curves(results, tmp_path / "b.png"))
    # downstream + the three out-of-domain datasets, instead of downstream + one mean panel
    assert per_dataset.shape[1] > 1.5 * one_mean.shape[1]
    text = render_report(results)
    assert "out-of-domain tokeniser 1.26 ± 0.00600, 0.710 on its own datasets" in text
