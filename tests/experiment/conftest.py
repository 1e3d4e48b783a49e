"""Synthetic, schema-complete `results.json` dicts for the report and figure tests.

The numbers are made up but follow the schema of "physok.experiment/1" exactly, with round
values so the tests can check arithmetic (e.g. in-domain trainable VRMSE is half the baseline).
"""

from __future__ import annotations

import copy

import pytest

_LABELS = {
    "no_pretraining": ("No pretraining", None, "trainable"),
    "in_domain_trainable": ("In-domain, trainable", "in_domain", "trainable"),
    "in_domain_frozen": ("In-domain, mostly frozen", "in_domain", "mostly_frozen"),
    "out_of_domain_trainable": ("Out-of-domain, trainable", "out_of_domain", "trainable"),
    "out_of_domain_frozen": ("Out-of-domain, mostly frozen", "out_of_domain", "mostly_frozen"),
}

# next-frame VRMSE mean per condition (baseline 0.4; in-domain trainable exactly half)
_VRMSE = {
    "no_pretraining": 0.4,
    "in_domain_trainable": 0.2,
    "in_domain_frozen": 0.21,
    "out_of_domain_trainable": 0.3,
    "out_of_domain_frozen": 0.5,
}
_NEPS_LOW = {
    "no_pretraining": 0.02,
    "in_domain_trainable": 0.001,
    "in_domain_frozen": 0.0012,
    "out_of_domain_trainable": 0.015,
    "out_of_domain_frozen": 0.03,
}


def _condition(key: str, steps: int = 400) -> dict:
    label, tok, strategy = _LABELS[key]
    v = _VRMSE[key]
    low = _NEPS_LOW[key]
    mid = 0.5 * v / 0.4
    horizons = {"1-2": v * 0.8, "3-6": v * 1.5, "7-18": v * 3.0}
    if key == "in_domain_frozen":  # the paper's finding: frozen beats trainable late in rollouts
        horizons["7-18"] = _VRMSE["in_domain_trainable"] * 2.5
    curve = []
    for i, step in enumerate(range(0, steps + 1, 100)):
        decay = 1.0 / (1.0 + i)
        curve.append(
            {
                "step": step,
                "val_vrmse": v * (1.0 + 2.0 * decay),
                "val_mae": 0.5 * v,
                "val_neps_low": low * (1.0 + 10.0 * decay),
                "val_neps_mid": mid * (1.0 + decay),
                "val_neps_high": 1.0 + 0.01 * i,
            }
        )
    curve[1]["val_neps_mid"] = None  # a NaN written as null must be skipped, not crash
    total = 2_140_000
    return {
        "label": label,
        "tokeniser": tok,
        "strategy": strategy,
        "params": {"total": total, "trainable": total if strategy == "trainable" else 1_500_000},
        "training": {
            "steps": steps,
            "wall_clock_s": 50.0,
            "median_step_s": 0.1 if tok is None else 0.12,
            "run_dir": f"runs/fast/rollout_{key}",
            "reused": False,
            "curve": curve,
        },
        "next_frame": {
            "split": "valid",
            "vrmse": {"mean": v, "std": 0.01},
            "neps": {
                "low": {"mean": low, "std": low / 10},
                "mid": {"mean": mid, "std": 0.01},
                "high": {"mean": 1.0, "std": 0.001},
            },
            "well_nmse": {
                "low": {"mean": low * 2, "std": low / 5},
                "mid": {"mean": mid * 0.8, "std": 0.01},
                "high": {"mean": 0.95, "std": 0.002},
            },
            "vrmse_per_field": {
                "density": v,
                "energy": v,
                "pressure": v,
                "momentum_x": v,
                "momentum_y": v,
            },
            "persistence": {
                "vrmse": {"mean": 0.5, "std": 0.01},
                "neps": {r: {"mean": 0.25, "std": 0.01} for r in ("low", "mid", "high")},
            },
            "subsets": 5,
            "subset_size": 32,
            "windows": 93,
        },
        "rollout": {
            "split": "valid",
            "steps": 18,
            "windows": 8,
            "per_step_vrmse": [v * (0.7 + 0.15 * s) for s in range(18)],
            "horizons": horizons,
            "persistence": {
                "per_step_vrmse": [0.2 + 0.05 * s for s in range(18)],
                "horizons": {"1-2": 0.225, "3-6": 0.375, "7-18": 0.775},
            },
        },
    }


def _tokeniser(label: str, datasets: list[str], run: str, scale: float = 1.0) -> dict:
    return {
        "label": label,
        "datasets": datasets,
        "steps": 300,
        "wall_clock_s": 95.2,
        "median_step_s": 0.29,
        "val_vrmse": {d: 0.71 for d in datasets},
        "curve": [
            {"step": 0, "val_vrmse_mean": 1.9 * scale},
            {"step": 100, "val_vrmse_mean": 0.9 * scale},
            {"step": 200, "val_vrmse_mean": None},
            {"step": 300, "val_vrmse_mean": 0.71 * scale},
        ],
        "run_dir": f"runs/fast/{run}",
        "reused": False,
    }


def make_results(conditions: tuple[str, ...] = tuple(_LABELS)) -> dict:
    return {
        "schema": "physok.experiment/1",
        "name": "fast",
        "preset": "fast",
        "created_utc": "2026-11-28T22:40:00Z",
        "physok_version": "0.1.0",
        "environment": {
            "device": "cpu",
            "device_name": "Test CPU (2 threads)",
            "torch": "2.13.0",
            "cuda": None,
            "world_size": 1,
        },
        "config": {"command": "python -m physok.experiment --preset fast", "seed": 0},
        "downstream_dataset": "euler_multi_quadrants_periodicBC",
        "cost_steps": 2100,
        "total_wall_clock_s": 512.3,
        "data": {"generated": True, "wall_clock_s": 25.1, "resolution": [64, 64], "base": "data"},
        "tokenisers": {
            "in_domain": _tokeniser(
                "In-domain (Euler)", ["euler_multi_quadrants_periodicBC"], "tokeniser_in_domain"
            ),
            "out_of_domain": _tokeniser(
                "Out-of-domain (mixture)",
                ["rayleigh_benard", "shear_flow", "active_matter"],
                "tokeniser_out_of_domain",
                scale=1.3,
            ),
        },
        "conditions": {k: _condition(k) for k in _LABELS if k in conditions},
    }


@pytest.fixture
def results() -> dict:
    """All five conditions."""
    return make_results()


@pytest.fixture
def mini_results() -> dict:
    """A miniature run: only no_pretraining and in_domain_trainable, one tokeniser."""
    r = make_results(("no_pretraining", "in_domain_trainable"))
    del r["tokenisers"]["out_of_domain"]
    return r


@pytest.fixture
def worse_results() -> dict:
    """In-domain pretraining made things worse: VRMSE 0.6 vs 0.4 (+50%)."""
    r = copy.deepcopy(make_results())
    r["conditions"]["in_domain_trainable"]["next_frame"]["vrmse"] = {"mean": 0.6, "std": 0.01}
    return r
