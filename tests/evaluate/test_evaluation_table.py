"""The evaluate CLI's table: rollout rows carry the spread over windows."""

from __future__ import annotations

from physok.evaluate.report import format_table
from physok.evaluate.rollout import window_spread


def _rollout_part(per_window: dict[str, list[float]]) -> dict:
    return {
        "horizons": {h: sum(v) / len(v) for h, v in per_window.items()},
        "horizon_spread": {h: window_spread(v) for h, v in per_window.items()},
    }


def test_rollout_rows_show_the_standard_error_over_windows() -> None:
    model = {"1-2": [0.1, 0.3], "3-6": [0.2, 0.2], "7-18": [0.5, 0.9]}
    persistence = {"1-2": [0.2, 0.4], "3-6": [0.6, 0.6], "7-18": [1.0, 1.2]}
    linear = {"1-2": [0.15, 0.15], "3-6": [0.7, 0.9], "7-18": [2.0, 2.4]}
    result = {
        "checkpoint": "runs/x/checkpoints/step_10",
        "dataset": "euler_multi_quadrants",
        "next_frame": None,
        "rollout": {
            "split": "valid",
            "steps": 18,
            "windows": 2,
            **_rollout_part(model),
            "persistence": _rollout_part(persistence),
            "linear_extrapolation": _rollout_part(linear),
            "notes": [],
        },
    }
    lines = format_table(result).splitlines()
    row = {line.split()[0]: line for line in lines if line.startswith("  ")}
    # two windows 0.1 and 0.3: std 0.1414, standard error 0.1
    assert "1-2: 0.2 ± 0.1 " in row["model"]
    assert "3-6: 0.2 ± 0 " in row["model"]
    assert "7-18: 0.7 ± 0.2" in row["model"]
    assert "7-18: 1.1 ± 0.1" in row["persistence"]
    assert "3-6: 0.8 ± 0.1 " in row["linear"]
    assert "standard error" in next(line for line in lines if line.startswith("rollout"))


def test_results_without_a_spread_show_the_means() -> None:
    result = {
        "checkpoint": "c",
        "dataset": "d",
        "next_frame": None,
        "rollout": {
            "split": "valid",
            "steps": 18,
            "windows": 1,
            "horizons": {"1-2": 0.25, "3-6": 0.5},
            "persistence": {"horizons": {"1-2": 0.3, "3-6": 0.6}},
            "notes": [],
        },
    }
    text = format_table(result)
    assert "1-2: 0.25  3-6: 0.5" in text and "±" not in text
    assert "persistence      1-2: 0.3  3-6: 0.6" in text
