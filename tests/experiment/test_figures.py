"""Figures of the experiment: valid PNGs from full, miniature and degenerate results dicts."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from physok.experiment.figures import (
    CONDITION_STYLES,
    plot_rollout_horizons,
    plot_tokeniser_curves,
    plot_validation_curves,
    write_figures,
)
from physok.experiment.report import CONDITION_ORDER

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_width: int = 600) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[1] >= min_width and img.shape[0] >= 300
    assert float(img[..., :3].std()) > 0.01  # something was drawn, not a blank canvas
    return img


def test_styles_are_distinct_and_follow_the_convention():
    assert set(CONDITION_STYLES) == set(CONDITION_ORDER)
    assert len({s["color"] for s in CONDITION_STYLES.values()}) == len(CONDITION_STYLES)
    assert CONDITION_STYLES["in_domain_trainable"]["linestyle"] == "-"
    assert CONDITION_STYLES["in_domain_frozen"]["linestyle"] == "-"
    assert CONDITION_STYLES["out_of_domain_trainable"]["linestyle"] == "--"
    assert CONDITION_STYLES["out_of_domain_frozen"]["linestyle"] == "--"
    frozen = {CONDITION_STYLES[k]["marker"] for k in ("in_domain_frozen", "out_of_domain_frozen")}
    trainable = {
        CONDITION_STYLES[k]["marker"] for k in ("in_domain_trainable", "out_of_domain_trainable")
    }
    assert frozen.isdisjoint(trainable)


def test_write_figures(results, tmp_path):
    figs = write_figures(results, tmp_path)
    assert figs == {
        "validation_curves": "figures/validation_curves.png",
        "rollout_horizons": "figures/rollout_horizons.png",
        "tokeniser_pretraining": "figures/tokeniser_pretraining.png",
    }
    shapes = {name: _check_png(tmp_path / rel).shape for name, rel in figs.items()}
    # 1×4 panels are much wider than tall
    assert shapes["validation_curves"][1] > 3 * shapes["validation_curves"][0]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        Path(rel).name for rel in figs.values()
    )  # no temporary files left behind


def test_miniature_and_missing_values(mini_results, tmp_path):
    cond = mini_results["conditions"]["in_domain_trainable"]
    cond["rollout"]["per_step_vrmse"][3] = None
    cond["rollout"]["horizons"]["7-18"] = float("nan")
    cond["training"]["curve"][2]["val_neps_low"] = float("nan")
    cond["training"]["curve"][3]["val_neps_low"] = 0.0  # not drawable on a log axis
    figs = write_figures(mini_results, tmp_path)
    assert set(figs) == {"validation_curves", "rollout_horizons", "tokeniser_pretraining"}
    for rel in figs.values():
        _check_png(tmp_path / rel)


def test_no_tokenisers_and_no_curves(mini_results, tmp_path):
    del mini_results["tokenisers"]
    assert plot_tokeniser_curves(mini_results, tmp_path / "tok.png") is None
    assert not (tmp_path / "tok.png").exists()
    for cond in mini_results["conditions"].values():
        cond["training"]["curve"] = []
        cond["rollout"] = None
    figs = write_figures(mini_results, tmp_path)
    assert set(figs) == {"validation_curves", "rollout_horizons"}
    for rel in figs.values():  # empty panels say "no data" instead of crashing
        _check_png(tmp_path / rel)


def test_data_changes_the_picture(results, tmp_path):
    a = plot_rollout_horizons(results, tmp_path / "a.png")
    results["conditions"]["no_pretraining"]["rollout"]["horizons"]["7-18"] = 5.0
    b = plot_rollout_horizons(results, tmp_path / "b.png")
    ia, ib = imread(a), imread(b)
    assert ia.shape == ib.shape and not np.array_equal(ia, ib)


@pytest.mark.parametrize("n_threads", [2])
def test_rendering_from_threads(results, tmp_path, n_threads):
    """No pyplot state: figures render concurrently from worker threads."""
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            plot_validation_curves(results, tmp_path / f"v{i}.png")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(n_threads):
        _check_png(tmp_path / f"v{i}.png")


def test_clipped_horizons(mini_results, tmp_path):
    for cond in mini_results["conditions"].values():
        ro = cond["rollout"]
        ro["per_step_vrmse"] = ro["per_step_vrmse"][:4]
        ro["horizons"] = {"1-2": 0.2, "3-4": 0.3}
    _check_png(plot_rollout_horizons(mini_results, tmp_path / "r.png"))
