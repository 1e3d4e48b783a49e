"""The experiment's report: compare the conditions and render Markdown from `results.json` alone.

Everything here is a pure function of the results dict (schema "physok.experiment/1"), so
`render_report(json.load(open("runs/<name>/results.json")))` reproduces a run's report.md, and
every claim in the report's text is derived from the numbers, never written in advance. The
paper's own numbers (DESIGN.md §1) are kept apart in `PAPER_REFERENCE` and only shown side by
side with the run's.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from physok.atomic_io import write_text_atomic
from physok.experiment.conditions import BASELINE, CONDITION_ORDER, CONDITIONS

__all__ = [
    "CONDITION_ORDER",
    "HORIZONS",
    "NEPS_RANGES",
    "PAPER_REFERENCE",
    "compare",
    "horizon_keys",
    "horizon_stat",
    "render_report",
    "write_report",
]

# the paper's horizons; a run reports its own (physok.evaluate clips them to the steps run, e.g.
# "7-10" for 10 steps), so tables and figures use `horizon_keys(results)`
HORIZONS: tuple[str, ...] = ("1-2", "3-6", "7-18")
NEPS_RANGES: tuple[str, ...] = ("low", "mid", "high")

# A difference between two numbers counts only when it exceeds SPREAD_FACTOR × its standard
# error (about 95 % for a normal error); within that, the report calls the two indistinguishable.
SPREAD_FACTOR = 2.0
# A condition this much worse than no pretraining on any metric shown is named in the text.
LARGE_REGRESSION_PCT = 10.0
# A next-frame NEPS value this many times persistence's (same range) is named as an outlier.
OUTLIER_FACTOR = 10.0
# Timing noise: conditions with the same architecture and trainable parameters whose median
# step times differ by more than this fraction, or a stage whose step times' interquartile
# range spans more than STEP_TIME_SPREAD of its median, get a warning in the cost section
# (quartiles, not deciles: SOAP's periodic preconditioner steps are the stage's own cost).
STEP_TIME_MISMATCH = 0.25
STEP_TIME_SPREAD = 0.25

# The paper's headline numbers (DESIGN.md §1; paper §3.2, Table 5 text and §3.3). VRMSE on Euler
# after 10,500 rollout-training steps; the out-of-domain frozen value was lost in extraction, only
# its direction ("worse than no pretraining") is known.
PAPER_REFERENCE: dict[str, Any] = {
    "rollout_steps": 10_500,
    "dataset": "euler_multi_quadrants",
    "vrmse": {
        "no_pretraining": 0.439,
        "in_domain_trainable": 0.158,
        "in_domain_frozen": 0.162,
        "out_of_domain_trainable": 0.355,
        "out_of_domain_frozen": None,
    },
    # as stated in the paper's text (in-domain frozen: from its VRMSE, 0.162 vs 0.439)
    "vrmse_change_pct": {
        "in_domain_trainable": -64.0,
        "in_domain_frozen": round(100.0 * (0.162 - 0.439) / 0.439, 1),
        "out_of_domain_trainable": -19.0,
        "out_of_domain_frozen": None,
    },
    # sign of the change vs no pretraining: "lower" (better) or "higher" (worse)
    "direction": {
        "in_domain_trainable": "lower",
        "in_domain_frozen": "lower",
        "out_of_domain_trainable": "lower",
        "out_of_domain_frozen": "higher",
    },
    "notes": {
        "out_of_domain_frozen": "worse than no pretraining",
    },
    "neps": {
        "in_domain": {"low": 0.001, "mid": [0.1, 0.3], "high": 1.0},
        "no_pretraining": {"low": 0.02, "mid": [0.3, 1.0], "high": 1.0},
    },
    "neps_statements": [
        "low frequencies: in-domain NEPS ~0.001 vs ~0.02 without pretraining",
        "mid frequencies: in-domain NEPS 0.1-0.3 vs 0.3-1.0 without pretraining",
        "high frequencies: NEPS ~1.0 for all conditions",
    ],
    "long_rollouts": (
        "in-domain mostly frozen beats fully trainable at every horizon, the gap widening with "
        "the horizon and largest at steps 7-18 (representative run, training extended to "
        "210,000 steps)"
    ),
    "cost_steps": 2100,
}

# ----------------------------------------------------------------------------- number helpers


def _num(x: Any) -> float | None:
    """A finite float, or None for None/NaN/inf/non-numbers (JSON writes NaN as null)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _get(d: Any, *keys: str) -> Any:
    """Nested lookup that yields None as soon as a level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _pct_change(value: Any, base: Any) -> float | None:
    v, b = _num(value), _num(base)
    if v is None or b is None or b == 0.0:
        return None
    return 100.0 * (v - b) / b


def fmt_metric(x: Any) -> str:
    """3 significant figures (trailing zeros kept), scientific below 1e-3; n/a when missing."""
    v = _num(x)
    if v is None:
        return "n/a"
    if v != 0.0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    if abs(v) >= 1000.0:
        return f"{v:.0f}"
    return f"{v:#.3g}".rstrip(".")


def fmt_neps(x: Any) -> str:
    """NEPS spans orders of magnitude: scientific notation below 0.01."""
    v = _num(x)
    if v is None:
        return "n/a"
    if v != 0.0 and abs(v) < 0.01:
        return f"{v:.2e}"
    return fmt_metric(v)


def fmt_pct(x: Any) -> str:
    v = _num(x)
    return "n/a" if v is None else f"{v:+.1f}%"


def fmt_seconds(x: Any) -> str:
    v = _num(x)
    return "n/a" if v is None else f"{v:.1f}"


def _fmt_mean_std(stat: Any, fmt=fmt_metric) -> str:
    mean, std = _num(_get(stat, "mean")), _num(_get(stat, "std"))
    if mean is None:
        return "n/a"
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _fmt_count(x: Any) -> str:
    v = _num(x)
    return "n/a" if v is None else f"{round(v):,}"


# ----------------------------------------------------------------------------- comparison


def _horizon_start(key: str) -> float:
    try:
        return float(key.split("-", 1)[0])
    except ValueError:
        return math.inf


def horizon_keys(results: dict) -> list[str]:
    """Rollout horizons present in any condition ("first-last"), by first step; else HORIZONS."""
    seen: list[str] = []
    for cond in (results.get("conditions") or {}).values():
        for key in _get(cond, "rollout", "horizons") or {}:
            if key not in seen:
                seen.append(key)
    return sorted(seen, key=_horizon_start) if seen else list(HORIZONS)


def _condition_keys(results: dict) -> list[str]:
    """Conditions present in the results: canonical ones first, then any others in file order."""
    conds = results.get("conditions") or {}
    known = [k for k in CONDITION_ORDER if k in conds]
    return known + [k for k in conds if k not in CONDITION_ORDER]


def _label(results: dict, key: str) -> str:
    label = _get(results, "conditions", key, "label")
    if isinstance(label, str) and label:
        return label
    return CONDITIONS[key].label if key in CONDITIONS else key


def _seed_count(results: dict) -> int:
    seeds = results.get("seeds")
    return len(seeds) if isinstance(seeds, list) else 1


def spread_kind(results: dict) -> str:
    """"seeds" when the run has several seeds (their spread is what a claim must beat), else
    "subsets" (the spread over validation subsets of one seed's models)."""
    return "seeds" if _seed_count(results) > 1 else "subsets"


def _vrmse(
    results: dict, key: str, section: str = "conditions"
) -> tuple[float | None, float | None]:
    """Next-frame VRMSE (mean, std) of a condition (or a baseline, `section="baselines"`): over
    seeds when there are several, else over the validation subsets of the one seed."""
    entry = _get(results, section, key) or {}
    if spread_kind(results) == "seeds" and _get(entry, "across_seeds", "vrmse"):
        stat = _get(entry, "across_seeds", "vrmse")
    else:
        stat = _get(entry, "next_frame", "vrmse")
    return _num(_get(stat, "mean")), _num(_get(stat, "std"))


def horizon_stat(results: dict, key: str, h: str, section: str = "conditions") -> tuple[Any, Any]:
    """Rollout VRMSE (mean, spread or None) of horizon `h`: mean and std over seeds when there
    are several; else the mean over the windows and its standard error (None when the results
    predate per-window values)."""
    entry = _get(results, section, key) or {}
    if spread_kind(results) == "seeds" and _get(entry, "across_seeds", "horizons", h):
        stat = _get(entry, "across_seeds", "horizons", h)
        return _num(_get(stat, "mean")), _num(_get(stat, "std"))
    ro = _get(entry, "rollout") or {}
    return _num(_get(ro, "horizons", h)), _num(_get(ro, "horizon_spread", h, "sem"))


def _threshold(sa: Any, sb: Any) -> float | None:
    """SPREAD_FACTOR·sqrt(sa² + sb²): what a difference of two independent means must beat."""
    a, b = _num(sa), _num(sb)
    if a is None or b is None or (a == 0 and b == 0):  # no spread to compare with
        return None
    return SPREAD_FACTOR * math.sqrt(a * a + b * b)


def _test(diff: float | None, threshold: float | None) -> dict[str, Any]:
    exceeds = None if diff is None or threshold is None else abs(diff) > threshold
    return {"difference": diff, "threshold": threshold, "exceeds": exceeds}


def relation(test: dict[str, Any]) -> str | None:
    """ "lower" / "higher" (by more than the spread), "indistinguishable" (within it), or None
    (no spread to compare with): how the first of a tested pair compares with the second."""
    if test.get("exceeds") is None:
        return None
    if not test["exceeds"]:
        return "indistinguishable"
    return "lower" if test["difference"] < 0 else "higher"


def next_frame_test(
    results: dict, a: str, b: str, sec_a: str = "conditions", sec_b: str = "conditions"
) -> dict[str, Any]:
    """Next-frame VRMSE of `a` minus `b`, against SPREAD_FACTOR·sqrt(s_a² + s_b²) with s the std
    across seeds when the run has several, else over validation subsets (`spread_kind`)."""
    va, sa = _vrmse(results, a, sec_a)
    vb, sb = _vrmse(results, b, sec_b)
    diff = None if va is None or vb is None else va - vb
    return _test(diff, _threshold(sa, sb))


def _window_values(results: dict, key: str, h: str, section: str) -> tuple[list, Any]:
    ro = _get(results, section, key, "rollout") or {}
    values = _get(ro, "per_window_horizons", h)
    return (values if isinstance(values, list) else []), ro.get("window_indices")


def rollout_test(
    results: dict, a: str, b: str, h: str, sec_a: str = "conditions", sec_b: str = "conditions"
) -> dict[str, Any]:
    """Rollout VRMSE of `a` minus `b` at horizon `h`, against its spread.

    Several seeds: SPREAD_FACTOR·sqrt(s_a² + s_b²) with the stds across seeds. One seed: when
    both were evaluated on the same windows (same `window_indices`, per-window values kept),
    SPREAD_FACTOR × the standard error of the per-window differences (a paired comparison: a
    hard window is hard for both); else the two standard errors combined as above.
    """
    ma, sa = horizon_stat(results, a, h, sec_a)
    mb, sb = horizon_stat(results, b, h, sec_b)
    diff = None if ma is None or mb is None else ma - mb
    out = {**_test(diff, _threshold(sa, sb)), "paired": False}
    if spread_kind(results) == "seeds" or diff is None:
        return out
    wa, ia = _window_values(results, a, h, sec_a)
    wb, ib = _window_values(results, b, h, sec_b)
    pairs = [(_num(x), _num(y)) for x, y in zip(wa, wb, strict=False)]
    same = ia is not None and ia == ib and len(wa) == len(wb) >= 2
    if same and all(x is not None and y is not None for x, y in pairs):
        d = np.array([x - y for x, y in pairs])
        se = float(d.std(ddof=1) / math.sqrt(len(d)))
        out = {**_test(diff, SPREAD_FACTOR * se if se > 0 else None), "paired": True}
    return out


def _spread_test(results: dict, a: str, b: str) -> tuple[bool | None, float | None]:
    """Does |VRMSE_a − VRMSE_b| exceed 2·sqrt(std_a² + std_b²)? The std is across seeds when
    the run has several, else over validation subsets (`spread_kind`)."""
    t = next_frame_test(results, a, b)
    return t["exceeds"], t["threshold"]


def compare(results: dict) -> dict:
    """Relative changes of every condition vs no pretraining, the ranking and the headline answer.

    Changes are 100·(v − v_none)/v_none in percent (negative = lower error = better) for the
    next-frame VRMSE, each NEPS range (means) and each rollout horizon. Missing conditions or
    metrics give None rather than an error, so a miniature run still compares what it has.
    """
    keys = _condition_keys(results)
    horizons = horizon_keys(results)
    base_v, base_s = _vrmse(results, BASELINE)
    base = _get(results, "conditions", BASELINE) or {}

    per_condition: dict[str, dict] = {}
    for key in keys:
        if key == BASELINE:
            continue
        cond = _get(results, "conditions", key) or {}
        v, s = _vrmse(results, key)
        nf_test = next_frame_test(results, key, BASELINE)
        exceeds, threshold = nf_test["exceeds"], nf_test["threshold"]
        h_tests = {h: rollout_test(results, key, BASELINE, h) for h in horizons}
        change = _pct_change(v, base_v)
        paper_dir = PAPER_REFERENCE["direction"].get(key)
        direction = None if change is None else ("lower" if change < 0 else "higher")
        per_condition[key] = {
            "label": _label(results, key),
            "vrmse": v,
            "vrmse_std": s,
            "vrmse_change_pct": change,
            "neps_change_pct": {
                r: _pct_change(
                    _get(cond, "next_frame", "neps", r, "mean"),
                    _get(base, "next_frame", "neps", r, "mean"),
                )
                for r in NEPS_RANGES
            },
            "well_nmse_change_pct": {
                r: _pct_change(
                    _get(cond, "next_frame", "well_nmse", r, "mean"),
                    _get(base, "next_frame", "well_nmse", r, "mean"),
                )
                for r in NEPS_RANGES
            },
            "horizon_change_pct": {
                h: _pct_change(
                    horizon_stat(results, key, h)[0], horizon_stat(results, BASELINE, h)[0]
                )
                for h in horizons
            },
            "difference_exceeds_subset_spread": exceeds,
            "subset_spread_threshold": threshold,
            "spread_kind": spread_kind(results),
            # vs no pretraining: "lower" / "higher" beyond the spread, "indistinguishable", None
            "vrmse_relation": relation(nf_test),
            "horizon_tests": h_tests,
            "horizon_relation": {h: relation(t) for h, t in h_tests.items()},
            "direction": direction,
            "paper_vrmse": PAPER_REFERENCE["vrmse"].get(key),
            "paper_vrmse_change_pct": PAPER_REFERENCE["vrmse_change_pct"].get(key),
            "paper_direction": paper_dir,
            "matches_paper_direction": (
                None if direction is None or paper_dir is None else direction == paper_dir
            ),
        }

    scored = [(k, _vrmse(results, k)[0]) for k in keys]
    ranking = [k for k, v in sorted((kv for kv in scored if kv[1] is not None), key=lambda t: t[1])]

    def change_of(key: str) -> float | None:
        return _get(per_condition, key, "vrmse_change_pct")

    # The headline uses the fully trainable in-domain model (the paper's −64%); a run without it
    # falls back to the mostly frozen one so the question still gets an answer.
    head = "in_domain_trainable" if change_of("in_domain_trainable") is not None else None
    if head is None and change_of("in_domain_frozen") is not None:
        head = "in_domain_frozen"
    head_change = change_of(head) if head else None

    # the paper's §3.3 finding concerns the longest horizon (steps 7-18)
    longest = horizons[-1]
    frozen_h = horizon_stat(results, "in_domain_frozen", longest)[0]
    train_h = horizon_stat(results, "in_domain_trainable", longest)[0]
    frozen_vs_trainable = rollout_test(results, "in_domain_frozen", "in_domain_trainable", longest)
    head_relation = _get(per_condition, head, "vrmse_relation") if head else None
    ood_frozen = change_of("out_of_domain_frozen")
    steps = {k: _num(_get(results, "conditions", k, "training", "steps")) for k in keys}
    head_steps = [steps.get(BASELINE), steps.get(head)] if head else []
    answer = {
        "in_domain_condition": head,
        "in_domain_lowers_vrmse": None if head_change is None else head_change < 0,
        "in_domain_trainable_change_pct": change_of("in_domain_trainable"),
        "in_domain_frozen_change_pct": change_of("in_domain_frozen"),
        "out_of_domain_trainable_change_pct": change_of("out_of_domain_trainable"),
        "out_of_domain_frozen_change_pct": ood_frozen,
        "paper_in_domain_trainable_change_pct": PAPER_REFERENCE["vrmse_change_pct"][
            "in_domain_trainable"
        ],
        "matches_paper_direction": None if head_change is None else head_change < 0,
        "difference_exceeds_subset_spread": _get(
            per_condition, head, "difference_exceeds_subset_spread"
        )
        if head
        else None,
        "subset_spread_threshold": _get(per_condition, head, "subset_spread_threshold")
        if head
        else None,
        "rollout_steps": steps.get(head) if head else None,
        "equal_rollout_steps": (
            None if not head_steps or None in head_steps else head_steps[0] == head_steps[1]
        ),
        "out_of_domain_frozen_worse": None if ood_frozen is None else ood_frozen > 0,
        "longest_horizon": longest,
        "in_domain_frozen_beats_trainable_longest_horizon": (
            None if frozen_h is None or train_h is None else frozen_h < train_h
        ),
        # the same, tested against the spread: "lower" means the frozen one is better
        "in_domain_frozen_vs_trainable_longest_horizon": relation(frozen_vs_trainable),
        "in_domain_frozen_vs_trainable_test": frozen_vs_trainable,
        "in_domain_relation": head_relation,
        # the paper's direction (lower) confirmed or contradicted beyond the spread; None within
        "confirms_paper_direction": (
            None if head_relation in (None, "indistinguishable") else head_relation == "lower"
        ),
    }
    answer["spread_kind"] = spread_kind(results)
    answer["seeds"] = _seed_count(results)
    answer["ordering"] = _ordering(results, per_condition)
    return {
        "baseline": BASELINE,
        "baseline_vrmse": base_v,
        "baseline_vrmse_std": base_s,
        "conditions": per_condition,
        "ranking": ranking,
        "ranking_separated": [
            next_frame_test(results, a, b)["exceeds"] for a, b in itertools.pairwise(ranking)
        ],
        "answer": answer,
        "versus_baselines": versus_baselines(results),
        "regressions": large_regressions(results, per_condition),
        "outliers": outliers(results),
        "timing_warnings": timing_warnings(results),
        "paper": PAPER_REFERENCE,
    }


# the paper's ordering of the fully trainable conditions, best first
PAPER_ORDERING = ("in_domain_trainable", "out_of_domain_trainable", "no_pretraining")


def _ordering(results: dict, per_condition: dict) -> dict[str, Any]:
    """Does in-domain < out-of-domain trainable < no pretraining hold, and is each step of it
    separated by more than the spread (2·sqrt(s1² + s2²), across seeds when there are several)?"""
    present = [k for k in PAPER_ORDERING if _vrmse(results, k)[0] is not None]
    if len(present) < len(PAPER_ORDERING):
        return {"conditions": list(PAPER_ORDERING), "holds": None, "separated": None}
    pairs = []
    for better, worse in itertools.pairwise(PAPER_ORDERING):
        vb, sb = _vrmse(results, better)
        vw, sw = _vrmse(results, worse)
        threshold = None if sb is None or sw is None else 2.0 * math.sqrt(sb * sb + sw * sw)
        pairs.append(
            {
                "better": better,
                "worse": worse,
                "difference": vw - vb,
                "threshold": threshold,
                "holds": vb < vw,
                "separated": None if threshold is None else (vw - vb) > threshold,
            }
        )
    separated = [p["separated"] for p in pairs]
    return {
        "conditions": list(PAPER_ORDERING),
        "pairs": pairs,
        "holds": all(p["holds"] for p in pairs),
        "separated": None if None in separated else all(separated),
        "spread_kind": spread_kind(results),
    }


def versus_baselines(results: dict) -> dict[str, Any]:
    """Every condition's next-frame VRMSE and rollout horizons as ratios to each baseline
    (persistence, linear extrapolation, the trained ones): < 1 means the condition is better."""
    out: dict[str, Any] = {}
    horizons = horizon_keys(results)
    for b in results.get("baselines") or {}:
        vb = _vrmse(results, b, "baselines")[0]
        per = {}
        for key in _condition_keys(results):
            v = _vrmse(results, key)[0]
            ratio = None if v is None or vb is None or vb == 0 else v / vb
            hz = {}
            for h in horizons:
                a, r = horizon_stat(results, key, h)[0], horizon_stat(results, b, h, "baselines")[0]
                hz[h] = None if a is None or r is None or r == 0 else a / r
            per[key] = {
                "vrmse_ratio": ratio,
                "beats": None if ratio is None else ratio < 1.0,
                "horizon_ratio": hz,
                "beats_every_horizon": None
                if None in hz.values() or not hz
                else all(x < 1.0 for x in hz.values()),
                # against the spread: "lower" means the condition is better than the baseline
                "vrmse_relation": relation(
                    next_frame_test(results, key, b, "conditions", "baselines")
                ),
                "horizon_relation": {
                    h: relation(rollout_test(results, key, b, h, "conditions", "baselines"))
                    for h in horizons
                },
            }
        out[b] = {"label": _get(results, "baselines", b, "label") or b, "vrmse": vb, "per": per}
    return out


def _metric_test(a: Any, b: Any) -> dict[str, Any]:
    """A difference of two {"mean", "std"} entries (e.g. NEPS over subsets) against its spread."""
    ma, mb = _num(_get(a, "mean")), _num(_get(b, "mean"))
    return _test(
        None if ma is None or mb is None else ma - mb, _threshold(_get(a, "std"), _get(b, "std"))
    )


def large_regressions(results: dict, per_condition: dict) -> list[dict[str, Any]]:
    """Every (condition, metric) at least LARGE_REGRESSION_PCT % worse than no pretraining,
    over the metrics the report shows: next-frame VRMSE, NEPS and NMSE per range, rollout
    horizons; each with its relation to the spread ("higher" = beyond it)."""
    base = _get(results, "conditions", BASELINE) or {}
    out = []
    for key, c in per_condition.items():
        cond = _get(results, "conditions", key) or {}
        found = [("next-frame VRMSE", c.get("vrmse_change_pct"), c.get("vrmse_relation"))]
        for part, name in (("neps", "NEPS"), ("well_nmse", "NMSE")):
            for r in NEPS_RANGES:
                stat = _get(cond, "next_frame", part, r)
                found.append(
                    (
                        f"{name} {r}",
                        _get(
                            c, f"{part}_change_pct" if part == "neps" else "well_nmse_change_pct", r
                        ),
                        relation(_metric_test(stat, _get(base, "next_frame", part, r))),
                    )
                )
        for h, change in (c.get("horizon_change_pct") or {}).items():
            found.append((f"rollout VRMSE {h}", change, _get(c, "horizon_relation", h)))
        for metric, change, rel in found:
            if change is not None and change >= LARGE_REGRESSION_PCT:
                out.append(
                    {
                        "condition": key,
                        "label": c.get("label") or key,
                        "metric": metric,
                        "change_pct": change,
                        "relation": rel,
                    }
                )
    return out


def outliers(results: dict) -> list[dict[str, Any]]:
    """NEPS values over OUTLIER_FACTOR × persistence's in the same range: each condition's and
    trained baseline's next-frame NEPS, and the peak of each condition's validation curve."""
    baselines = _baselines(results)
    ref = {
        r: _num(_get(baselines, "persistence", "next_frame", "neps", r, "mean"))
        for r in NEPS_RANGES
    }
    entries = [("conditions", k, _label(results, k)) for k in _condition_keys(results)]
    entries += [
        ("baselines", b, e.get("label") or b) for b, e in baselines.items() if b != "persistence"
    ]
    out = []
    for section, key, label in entries:
        entry = results if section == "conditions" else {"baselines": baselines}
        entry = _get(entry, section, key) or {}
        for r in NEPS_RANGES:
            p = ref[r]
            if p is None or p <= 0:
                continue
            v = _num(_get(entry, "next_frame", "neps", r, "mean"))
            if v is not None and v > OUTLIER_FACTOR * p:
                out.append(
                    {
                        "label": label,
                        "metric": f"NEPS {r}",
                        "where": "evaluation",
                        "value": v,
                        "reference": p,
                        "ratio": v / p,
                        "step": None,
                    }
                )
            curve = [
                (x.get("step"), _num(x.get(f"val_neps_{r}")))
                for x in _get(entry, "training", "curve") or []
                if isinstance(x, dict)
            ]
            curve = [(st, v) for st, v in curve if v is not None]
            if curve:
                step, peak = max(curve, key=lambda t: t[1])
                if peak > OUTLIER_FACTOR * p:
                    out.append(
                        {
                            "label": label,
                            "metric": f"NEPS {r}",
                            "where": "validation curve",
                            "value": peak,
                            "reference": p,
                            "ratio": peak / p,
                            "step": step,
                        }
                    )
    return out


def _stages(results: dict) -> list[tuple[str, dict, tuple | None]]:
    """(label, training record, (trainable, total) parameters or None) of every timed stage."""
    out = [
        (f"Tokeniser pretraining: {t.get('label', k)}", t, None)
        for k, t in (results.get("tokenisers") or {}).items()
        if isinstance(t, dict)
    ]
    for key in _condition_keys(results):
        cond = _get(results, "conditions", key) or {}
        p = cond.get("params") or {}
        params = (p.get("trainable"), p.get("total")) if p.get("total") is not None else None
        out.append(
            (f"Rollout training: {_label(results, key)}", cond.get("training") or {}, params)
        )
    return out


def timing_warnings(results: dict) -> dict[str, Any]:
    """Signs that the machine's load moved the step times: conditions with the same
    architecture and trainable parameters (same work per step) whose median step times differ
    by more than STEP_TIME_MISMATCH, and stages whose step times' interquartile range spans
    more than STEP_TIME_SPREAD of their median."""
    stages = _stages(results)
    groups: dict[tuple, list[tuple[str, float]]] = {}
    for label, rec, params in stages:
        med = _num(rec.get("median_step_s"))
        if params is not None and med is not None and med > 0:
            groups.setdefault(params, []).append((label, med))
    warnings = []
    compared = [g for g in groups.values() if len(g) > 1]
    for params, group in groups.items():
        if len(group) < 2:
            continue
        lo, hi = min(m for _, m in group), max(m for _, m in group)
        if hi / lo - 1.0 > STEP_TIME_MISMATCH:
            warnings.append(
                {
                    "kind": "same_architecture",
                    "stages": [lbl for lbl, _ in group],
                    "params": list(params),
                    "median_step_s": [m for _, m in group],
                    "ratio": hi / lo,
                }
            )
    spreads = 0
    for label, rec, _ in stages:
        med, spread = _num(rec.get("median_step_s")), rec.get("step_time_spread_s")
        p25, p75 = _num(_get(spread, "p25")), _num(_get(spread, "p75"))
        if med is None or med <= 0 or p25 is None or p75 is None:
            continue
        spreads += 1
        if (p75 - p25) / med > STEP_TIME_SPREAD:
            warnings.append(
                {
                    "kind": "spread",
                    "stages": [label],
                    "median_step_s": [med],
                    "p25": p25,
                    "p75": p75,
                    "relative": (p75 - p25) / med,
                }
            )
    return {"warnings": warnings, "groups_compared": len(compared), "spreads_checked": spreads}


# ----------------------------------------------------------------------------- report sections


PERSISTENCE_LABEL = "Persistence (repeat the last context frame)"
TOKENISER_NAMES = {"in_domain": "in-domain", "out_of_domain": "out-of-domain"}


def _persistence(results: dict, part: str) -> dict:
    """The persistence reference of `part` ("next_frame" | "rollout"): the same for every
    condition (same windows), taken from the first condition that has it."""
    for key in _condition_keys(results):
        ref = _get(results, "conditions", key, part, "persistence")
        if ref:
            return ref
    return {}


def _baselines(results: dict) -> dict[str, dict]:
    """The run's baselines; results of schema 1 held only persistence, inside each condition."""
    found = results.get("baselines")
    if isinstance(found, dict) and found:
        return found
    ref = _persistence(results, "next_frame")
    if not ref:
        return {}
    return {
        "persistence": {
            "label": PERSISTENCE_LABEL,
            "kind": "reference",
            "next_frame": ref,
            "rollout": _persistence(results, "rollout"),
        }
    }


_RELATION_TEXT = {
    "lower": "lower by more than the spread",
    "higher": "higher by more than the spread",
    "indistinguishable": "within the spread: indistinguishable at this budget",
    None: "no spread to compare with",
}


def _vs_none(change: Any, rel: str | None) -> str:
    """ "-20.8% vs no pretraining, lower by more than the spread" and the like."""
    return f"{fmt_pct(change)} vs no pretraining, {_RELATION_TEXT[rel]}"


def _spread_note(results: dict) -> str:
    """What the spread is, in words (it depends on how many seeds the run has)."""
    if spread_kind(results) == "seeds":
        return (
            f"Spread: the std across {_seed_count(results)} seeds (each seed trains every "
            f"stage again); a difference counts when it exceeds {SPREAD_FACTOR:g}·sqrt(s1² + "
            "s2²), else the two are called indistinguishable."
        )
    ro = next(
        (
            _get(results, "conditions", k, "rollout")
            for k in _condition_keys(results)
            if _get(results, "conditions", k, "rollout")
        ),
        {},
    )
    windows = _fmt_count(ro.get("windows")) if isinstance(ro, dict) else "n/a"
    if isinstance(ro, dict) and ro.get("horizon_spread"):
        rollout = (
            f"the standard error over the {windows} rollout windows for rollouts (two models "
            "are compared window by window, on the same windows)"
        )
    else:
        rollout = "none for rollouts (these results predate per-window rollout values)"
    return (
        "Spread (one seed): the std over the validation subsets for next-frame numbers, "
        f"{rollout}; a difference counts when it exceeds {SPREAD_FACTOR:g} standard errors, "
        "else the two are called indistinguishable. With one seed this spread only measures "
        "which validation windows were drawn, not how much another training run would differ "
        "(`--seeds 3`)."
    )


def _reconstruction_text(results: dict) -> str | None:
    """The tokenisers' reconstruction of the downstream validation windows, side by side."""
    toks = results.get("tokenisers") or {}
    downstream = results.get("downstream_dataset") or "the downstream dataset"
    parts = []
    for key, tok in toks.items():
        rec = tok.get("downstream_reconstruction") if isinstance(tok, dict) else None
        if not isinstance(rec, dict):
            continue
        mean, sem = _get(rec, "vrmse", "mean"), _get(rec, "vrmse", "sem")
        cell = _fmt_mean_std({"mean": mean, "std": sem})
        name = TOKENISER_NAMES.get(key, key)
        own = ""
        if key != "in_domain":
            val = [v for v in (tok.get("val_vrmse") or {}).values() if _num(v) is not None]
            if val:
                own = f", {fmt_metric(float(np.mean(val)))} on its own datasets"
        parts.append(f"{name} tokeniser {cell}{own}")
    if parts:
        windows = next(
            (_get(t, "downstream_reconstruction", "windows") for t in toks.values()), None
        )
        return (
            f"Reconstruction VRMSE of `{downstream}`'s validation windows ({_fmt_count(windows)} "
            "windows, ± standard error), after pretraining: " + "; ".join(parts) + "."
        )
    tok = _get(results, "tokenisers", "in_domain", "val_vrmse")
    if isinstance(tok, dict) and tok:
        recon = _num(np.mean([v for v in tok.values() if v is not None]))
        return (
            f"The in-domain tokeniser reconstructs validation windows at VRMSE "
            f"{fmt_metric(recon)} after its pretraining (this run did not record the "
            "out-of-domain tokeniser's reconstruction of the downstream data)."
        )
    return None


def _context_paragraph(results: dict) -> str | None:
    """How the conditions compare with what a user would use instead: the baselines."""
    baselines = _baselines(results)
    if not baselines:
        return None
    if "baselines" not in results:  # schema 1: only persistence, inside the conditions
        results = {**results, "baselines": baselines}
    vs = versus_baselines(results)
    keys = _condition_keys(results)
    parts = []
    for b, entry in vs.items():
        vb = entry["vrmse"]
        per = entry["per"]
        beat = [k for k in keys if _get(per, k, "vrmse_relation") == "lower"]
        tie = [k for k in keys if _get(per, k, "vrmse_relation") == "indistinguishable"]
        above = [k for k in keys if _get(per, k, "vrmse_relation") == "higher"]
        unknown = [k for k in keys if k in per and per[k].get("vrmse_relation") is None]
        label = entry["label"]
        training = _get(results, "baselines", b, "training") or {}
        if training.get("steps") is not None:
            label += (
                f", {_fmt_count(training.get('steps'))} steps in "
                f"{fmt_seconds(training.get('wall_clock_s'))} s"
            )
        text = f"{label}: next-frame VRMSE {fmt_metric(vb)}; "
        text += f"{len(beat)} of {len(keys)} conditions beat it by more than the spread"
        text += " (" + ", ".join(_label(results, k) for k in beat) + ")" if beat else ""
        if tie:
            text += (
                f", {len(tie)} indistinguishable from it ("
                + ", ".join(_label(results, k) for k in tie)
                + ")"
            )
        if above:
            text += f", {len(above)} above it by more than the spread"
        if unknown:
            below = [k for k in unknown if per[k].get("beats")]
            text += f", {len(below)} of {len(unknown)} without a spread to compare with below it"
        parts.append(text)
    text = "Against what a user would use instead, on the same windows: " + "; ".join(parts) + "."
    head = "in_domain_trainable" if "in_domain_trainable" in keys else None
    if head is not None:
        rows = []
        for b, entry in vs.items():
            per = entry["per"].get(head) or {}
            ratio = per.get("vrmse_ratio")
            if ratio is None:
                continue
            rel = list((per.get("horizon_relation") or {}).values())
            counts = []
            for word, name in (
                ("lower", "below it"),
                ("higher", "above it"),
                ("indistinguishable", "indistinguishable"),
                (None, "without a spread"),
            ):
                n = sum(r == word for r in rel)
                if n:
                    counts.append(f"{name} at {n}")
            if rel and all(r is None for r in rel):
                rollout = "no rollout spread recorded"
            else:
                rollout = f"rollout: {', '.join(counts)} of {len(rel)} horizons"
            rows.append(
                f"{ratio:.2f}× {_get(results, 'baselines', b, 'label') or b}"
                + (f" ({rollout})" if rel else "")
            )
        if rows:
            text += " In-domain, trainable next-frame VRMSE is " + "; ".join(rows) + "."
    recon = _reconstruction_text(results)
    if recon:
        text += " " + recon
    persist = (vs.get("persistence") or {}).get("per") or {}
    if persist and not any(v.get("vrmse_relation") == "lower" for v in persist.values()):
        text += (
            " With no condition below persistence by more than the spread, the models here have "
            "not learned to forecast: read the comparison between conditions as one between "
            "untrained models."
        )
    return text


def _headline(results: dict, comp: dict) -> str:
    ans = comp["answer"]
    head = ans["in_domain_condition"]
    c = comp["conditions"][head]
    base_v, base_s = comp["baseline_vrmse"], comp["baseline_vrmse_std"]
    steps = ans["rollout_steps"]
    if ans["equal_rollout_steps"] is True:
        steps_txt = f"After {_fmt_count(steps)} rollout-training steps for both models, "
    elif ans["equal_rollout_steps"] is False:
        s_base = _get(results, "conditions", BASELINE, "training", "steps")
        steps_txt = (
            f"After unequal rollout training ({_fmt_count(steps)} steps vs "
            f"{_fmt_count(s_base)} for no pretraining, so the comparison is not at equal "
            "cost), "
        )
    else:
        steps_txt = "At the end of rollout training (step counts not recorded), "
    kind = "fully trainable" if head == "in_domain_trainable" else "mostly frozen"
    seeds = ans.get("seeds") or 1
    over = f"mean over {seeds} seeds" if seeds > 1 else "one seed"
    numbers = (
        f"{fmt_metric(c['vrmse'])} vs {fmt_metric(base_v)} ({fmt_pct(c['vrmse_change_pct'])}, "
        f"{over})"
    )
    exceeds = ans["difference_exceeds_subset_spread"]
    spread = "across seeds" if ans.get("spread_kind") == "seeds" else "over validation subsets"
    if exceeds is None:
        return (
            f"{steps_txt}in-domain tokeniser pretraining ({kind}) reached next-frame VRMSE "
            f"{numbers} against no pretraining. There is no spread to compare with (one seed "
            "and every subset the whole split, or not recorded), so whether the two differ is "
            "unknown."
        )
    detail = (
        f"the spread {spread} (2·sqrt(s1² + s2²) = "
        f"{fmt_metric(ans['subset_spread_threshold'])}, with std {fmt_metric(c['vrmse_std'])} "
        f"and {fmt_metric(base_s)})"
    )
    if exceeds:
        verb = "lowered" if c["vrmse_change_pct"] < 0 else "raised"
        return (
            f"{steps_txt}in-domain tokeniser pretraining ({kind}) {verb} next-frame VRMSE "
            f"compared with no pretraining: {numbers}. The difference exceeds {detail}."
        )
    return (
        f"{steps_txt}in-domain tokeniser pretraining ({kind}) and no pretraining are "
        f"indistinguishable at this budget in next-frame VRMSE: {numbers}, a difference that "
        f"does not exceed {detail}."
    )


def _ordering_sentence(results: dict, order: dict) -> str | None:
    if order.get("holds") is None:
        return None
    spread = "across seeds" if order.get("spread_kind") == "seeds" else "over subsets"
    pairs = order.get("pairs") or []
    if order["holds"] and order.get("separated"):
        return (
            "The paper's ordering in-domain < out-of-domain trainable < no pretraining holds "
            f"here, each step separated by more than the spread {spread}."
        )
    steps = []
    for p in pairs:
        a, b = _label(results, p["better"]), _label(results, p["worse"])
        if p["separated"] is None:
            word = "below" if p["holds"] else "above"
            steps.append(f"{a} is {word} {b} (no spread to compare with)")
        elif not p["separated"]:
            steps.append(f"{a} and {b} are indistinguishable")
        elif p["holds"]:
            steps.append(f"{a} is below {b} by more than the spread")
        else:
            steps.append(f"{a} is above {b} by more than the spread")
    reversed_ = any(p["separated"] and not p["holds"] for p in pairs)
    verdict = "does not hold" if reversed_ else "is not established at this budget"
    return (
        "The paper's ordering in-domain < out-of-domain trainable < no pretraining "
        f"{verdict}: " + "; ".join(steps) + f" (spread {spread})."
    )


def _ranking_sentence(results: dict, comp: dict) -> str | None:
    ranking = comp.get("ranking") or []
    if not ranking:
        return None
    separated = comp.get("ranking_separated") or []
    text = f"{_label(results, ranking[0])} {fmt_metric(_vrmse(results, ranking[0])[0])}"
    for k, sep in zip(ranking[1:], separated, strict=False):
        sign = "<" if sep else ("≈" if sep is False else "≤")
        text += f" {sign} {_label(results, k)} {fmt_metric(_vrmse(results, k)[0])}"
    legend = "< lower by more than the spread, ≈ indistinguishable"
    if None in separated:
        legend += ", ≤ no spread to compare with"
    return f"Next-frame VRMSE, best first ({legend}): {text}."


def _regressions_paragraph(results: dict, comp: dict) -> str:
    regs = comp.get("regressions") or []
    if not regs:
        text = (
            f"No condition is {LARGE_REGRESSION_PCT:g}% or more worse than no pretraining on any "
            "metric shown (next-frame VRMSE, NEPS and NMSE per range, rollout horizons)."
        )
    else:
        by: dict[str, list[str]] = {}
        for r in regs:
            rel = {
                "higher": "beyond the spread",
                "indistinguishable": "within the spread",
            }.get(r["relation"], "no spread")
            by.setdefault(r["label"], []).append(
                f"{r['metric']} {fmt_pct(r['change_pct'])} ({rel})"
            )
        text = (
            f"Large regressions (≥ +{LARGE_REGRESSION_PCT:g}% vs no pretraining): "
            + "; ".join(f"{label}: {', '.join(items)}" for label, items in by.items())
            + "."
        )
    outs = comp.get("outliers") or []
    final = [o for o in outs if o["where"] == "evaluation"]
    curve = [o for o in outs if o["where"] != "evaluation"]
    if final:
        text += (
            f" Outliers (over {OUTLIER_FACTOR:g}× persistence's value in the same range): "
            + "; ".join(
                f"{o['label']} {o['metric']} {fmt_neps(o['value'])}, {o['ratio']:.0f}× "
                f"persistence's {fmt_neps(o['reference'])}"
                for o in final
            )
            + ": at these scales the model's error carries far more power than the truth."
        )
    if curve:
        text += (
            " During rollout training the validation NEPS peaked over "
            f"{OUTLIER_FACTOR:g}× persistence's final value: "
            + "; ".join(
                f"{o['label']} {o['metric']} {fmt_neps(o['value'])} at step {_fmt_count(o['step'])}"
                for o in curve
            )
            + " (Figure 2's NEPS panels use log axes)."
        )
    return text


def _answer_paragraphs(results: dict, comp: dict) -> list[str]:
    """The answer to the experiment's question, phrased from the compared numbers and their
    spread: an ordering is claimed only where a difference exceeds it."""
    ans = comp["answer"]
    head = ans["in_domain_condition"]
    out: list[str] = []
    if head is None:
        present = ", ".join(_label(results, k) for k in _condition_keys(results)) or "none"
        out.append(
            "This run cannot answer whether in-domain tokeniser pretraining lowers next-frame "
            "VRMSE: it lacks a usable in-domain condition or the no-pretraining baseline "
            f"(conditions with results: {present})."
        )
    else:
        out.append(_headline(results, comp))

    sentences: list[str] = []
    frozen = comp["conditions"].get("in_domain_frozen")
    if frozen is not None and head != "in_domain_frozen":
        s = (
            f"In-domain, mostly frozen: next-frame VRMSE {fmt_metric(frozen['vrmse'])} "
            f"({_vs_none(frozen['vrmse_change_pct'], frozen.get('vrmse_relation'))})"
        )
        test = ans.get("in_domain_frozen_vs_trainable_test") or {}
        rel = ans.get("in_domain_frozen_vs_trainable_longest_horizon")
        if test.get("difference") is not None:
            longest = ans["longest_horizon"]
            f_h = horizon_stat(results, "in_domain_frozen", longest)[0]
            t_h = horizon_stat(results, "in_domain_trainable", longest)[0]
            numbers = f"{fmt_metric(f_h)} vs {fmt_metric(t_h)}"
            if rel is None:
                s += (
                    f"; over rollout steps {longest}: {numbers} for the fully trainable one, "
                    "with no rollout spread recorded, so no ordering is claimed"
                )
            else:
                word = {
                    "lower": "below the fully trainable one by more than the spread",
                    "higher": "above the fully trainable one by more than the spread",
                    "indistinguishable": "indistinguishable from the fully trainable one",
                }[rel]
                s += (
                    f"; over rollout steps {longest} it is {word} ({numbers}, difference "
                    f"{fmt_metric(test['difference'])} against {fmt_metric(test['threshold'])})"
                )
        sentences.append(s + ".")
    ood_t = comp["conditions"].get("out_of_domain_trainable")
    ood_f = comp["conditions"].get("out_of_domain_frozen")
    if ood_t is not None or ood_f is not None:
        parts = []
        for name, c in (("fully trainable", ood_t), ("mostly frozen", ood_f)):
            if c is not None:
                parts.append(
                    f"{name} {fmt_metric(c['vrmse'])} "
                    f"({_vs_none(c['vrmse_change_pct'], c.get('vrmse_relation'))})"
                )
        sentences.append("Out-of-domain pretraining: " + "; ".join(parts) + ".")
    order = _ordering_sentence(results, ans.get("ordering") or {})
    if order:
        sentences.append(order)
    ranking = _ranking_sentence(results, comp)
    if ranking:
        sentences.append(ranking)
    if sentences:
        out.append(" ".join(sentences))
    if _condition_keys(results):
        out.append(_regressions_paragraph(results, comp))
    context = _context_paragraph(results)
    if context:
        out.append(context)
    out.append(_spread_note(results))
    paper = _paper_paragraph(results, comp)
    if paper:
        out.append(paper)
    return out


def _run_scale(results: dict) -> str:
    """ "32×32 generated data, 160 rollout-training steps": what this run's numbers are at."""
    res = _get(results, "data", "resolution")
    res_txt = "×".join(str(r) for r in res) if isinstance(res, list) and res else "unrecorded"
    origin = "generated" if _get(results, "data", "generated") else "real"
    steps = _get(results, "conditions", BASELINE, "training", "steps")
    return f"{res_txt} {origin} data, {_fmt_count(steps)} rollout-training steps"


def _paper_paragraph(results: dict, comp: dict) -> str | None:
    """The paper's numbers as context: other data, other budget, so levels are not comparable;
    only the directions of this run's changes beyond the spread are set beside the paper's."""
    paper = PAPER_REFERENCE
    keys = [k for k in _condition_keys(results) if k in paper["vrmse"]]
    if not keys:
        return None
    values = []
    for k in keys:
        v, ch = paper["vrmse"].get(k), paper["vrmse_change_pct"].get(k)
        if v is not None:
            values.append(
                f"{_label(results, k)} {fmt_metric(v)}"
                + ("" if ch is None or k == BASELINE else f" ({fmt_pct(ch)})")
            )
        elif k in paper["notes"]:
            values.append(f"{_label(results, k)} {paper['notes'][k]}")
    text = (
        f"For context only, the paper's numbers (The Well's 512×512 real Euler data, "
        f"{paper['rollout_steps']:,} rollout-training steps; this run: {_run_scale(results)}, "
        "so the levels are not comparable): next-frame VRMSE " + "; ".join(values) + "."
    )
    agree, against, undecided = [], [], []
    for k, c in (comp.get("conditions") or {}).items():
        want, rel = c.get("paper_direction"), c.get("vrmse_relation")
        if want is None:
            continue
        if rel in ("lower", "higher"):
            (agree if rel == want else against).append(_label(results, k))
        else:
            undecided.append(_label(results, k))
    if agree or against or undecided:
        text += (
            " Directions vs no pretraining: this run agrees with the paper beyond the spread for "
            + (", ".join(agree) or "no condition")
            + "; goes against it for "
            + (", ".join(against) or "no condition")
            + (f"; cannot tell for {', '.join(undecided)}" if undecided else "")
            + "."
        )
    rel = _get(comp, "answer", "in_domain_frozen_vs_trainable_longest_horizon")
    longest = _get(comp, "answer", "longest_horizon")
    if "in_domain_frozen" in keys and "in_domain_trainable" in keys:
        here = {
            "lower": "agrees (frozen below trainable by more than the spread)",
            "higher": "goes against it (frozen above trainable by more than the spread)",
            "indistinguishable": "cannot tell (the two are within the spread)",
            None: "cannot tell (no rollout spread recorded)",
        }[rel]
        text += (
            f" The paper's long-rollout finding, mostly frozen in-domain below fully trainable "
            f"at the longest horizon: this run, at steps {longest}, {here}."
        )
    return text


def _setup_section(results: dict) -> list[str]:
    env = results.get("environment") or {}
    lines = ["## Setup", ""]
    dev = env.get("device_name") or env.get("device") or "n/a"
    extras = [f"device `{env.get('device', 'n/a')}`"]
    if env.get("torch"):
        extras.append(f"torch {env['torch']}")
    if env.get("cuda"):
        extras.append(f"CUDA {env['cuda']}")
    if env.get("world_size") is not None:
        extras.append(f"world size {env['world_size']}")
    lines.append(f"- **Hardware:** {dev} ({', '.join(extras)})")
    lines.append(f"- **Downstream dataset:** `{results.get('downstream_dataset', 'n/a')}`")
    data = results.get("data") or {}
    if data:
        res = data.get("resolution")
        res_txt = "×".join(str(r) for r in res) if isinstance(res, list) else "n/a"
        origin = "generated by physok's solvers" if data.get("generated") else "read from disk"
        lines.append(
            f"- **Data:** {origin} at {res_txt} (base `{data.get('base', 'n/a')}`, "
            f"{fmt_seconds(data.get('wall_clock_s'))} s)"
        )
    for key, tok in (results.get("tokenisers") or {}).items():
        ds = ", ".join(f"`{d}`" for d in tok.get("datasets") or []) or "n/a"
        reused = " (reused from an earlier run)" if tok.get("reused") else ""
        lines.append(
            f"- **Tokeniser pretraining, {tok.get('label', key)}:** {ds}; "
            f"{_fmt_count(tok.get('steps'))} steps{reused}"
        )
    model = results.get("model") or {}
    if model:
        policy = model.get("scale_policy", "n/a")
        if policy == "mixed":
            policy += f" (eval scales with probability {model.get('eval_scale_prob')})"
        lines.append(
            f"- **Model choices (every condition):** prediction target `{model.get('target')}`, "
            f"input normalisation `{model.get('normalisation')}`, tokeniser training scales "
            f"`{policy}`, eval scales {model.get('eval_scales')}, rollout lr "
            f"{model.get('rollout_lr')} (batch {model.get('rollout_batch_size')}), tokeniser lr "
            f"{model.get('tokeniser_lr')}"
        )
    if _seed_count(results) > 1:
        lines.append(
            f"- **Seeds:** {results.get('seeds')}: each seed pretrains its own tokenisers and "
            "trains every condition and baseline (the data are the same); tables give the mean "
            "± std across seeds"
        )
    for b, entry in (results.get("baselines") or {}).items():
        t = entry.get("training") or {}
        if t:
            lines.append(
                f"- **Baseline {entry.get('label', b)}:** {_fmt_count(t.get('steps'))} steps in "
                f"{fmt_seconds(t.get('wall_clock_s'))} s (budget {fmt_seconds(t.get('budget_s'))}"
                " s, the no-pretraining condition's rollout-training wall-clock)"
            )
    keys = _condition_keys(results)
    if keys:
        steps = ", ".join(
            f"{_label(results, k)} "
            f"{_fmt_count(_get(results, 'conditions', k, 'training', 'steps'))}"
            for k in keys
        )
        lines.append(f"- **Rollout training steps:** {steps}")
        nf = next(
            (
                _get(results, "conditions", k, "next_frame")
                for k in keys
                if _get(results, "conditions", k, "next_frame")
            ),
            {},
        )
        ro = next(
            (
                _get(results, "conditions", k, "rollout")
                for k in keys
                if _get(results, "conditions", k, "rollout")
            ),
            {},
        )
        lines.append(
            f"- **Next-frame evaluation:** `{nf.get('split', 'n/a')}` split, mean ± std over "
            f"{_fmt_count(nf.get('subsets'))} random subsets × {_fmt_count(nf.get('subset_size'))}"
            f" windows ({_fmt_count(nf.get('windows'))} distinct windows in all); VRMSE, "
            "NEPS (low/mid/high) and the_well's binned NMSE"
        )
        lines.append(
            f"- **Rollout evaluation:** `{ro.get('split', 'n/a')}` split, "
            f"{_fmt_count(ro.get('steps'))} autoregressive steps from 9 true frames over "
            f"{_fmt_count(ro.get('windows'))} windows; VRMSE by horizon "
            + ", ".join(horizon_keys(results))
            + (
                " (± the standard error over the windows)"
                if spread_kind(results) != "seeds"
                else " (± the std across seeds)"
            )
        )
    total = _num(results.get("total_wall_clock_s"))
    total_txt = "n/a" if total is None else f"{total:.1f} s ({total / 60.0:.1f} min)"
    lines.append(f"- **Total wall-clock:** {total_txt}")
    return lines


def _cost_section(results: dict) -> list[str]:
    n = _num(results.get("cost_steps")) or PAPER_REFERENCE["cost_steps"]
    n_txt = f"{int(n):,}"
    lines = [
        "## Table 4 analogue — cost",
        "",
        f"| Stage | Steps run | Wall-clock (s) | Median s/step | Min per {n_txt} steps "
        "| Trainable / total params |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, stage: dict, params: str) -> str:
        med = _num(stage.get("median_step_s"))
        minutes = None if med is None else med * n / 60.0
        reused = " (reused)" if stage.get("reused") else ""
        return (
            f"| {name}{reused} | {_fmt_count(stage.get('steps'))} | "
            f"{fmt_seconds(stage.get('wall_clock_s'))} | {fmt_metric(med)} | "
            f"{fmt_metric(minutes)} | {params} |"
        )

    for key, tok in (results.get("tokenisers") or {}).items():
        lines.append(row(f"Tokeniser pretraining: {tok.get('label', key)}", tok, "—"))
    for key in _condition_keys(results):
        cond = _get(results, "conditions", key) or {}
        p = cond.get("params") or {}
        params = f"{_fmt_count(p.get('trainable'))} / {_fmt_count(p.get('total'))}"
        lines.append(
            row(f"Rollout training: {_label(results, key)}", cond.get("training") or {}, params)
        )
    for b, entry in (results.get("baselines") or {}).items():
        t = entry.get("training")
        if t:
            p = entry.get("params") or {}
            lines.append(
                row(
                    f"Baseline: {entry.get('label', b)}",
                    {**t, "median_step_s": t.get("median_step_s")},
                    f"{_fmt_count(p.get('trainable'))} / {_fmt_count(p.get('total'))}",
                )
            )
    env = results.get("environment") or {}
    res = _get(results, "data", "resolution")
    res_txt = "×".join(str(r) for r in res) if isinstance(res, list) and res else "unrecorded"
    lines += [
        "",
        f"Minutes per {n_txt} steps are the median step time × {n_txt} (the median keeps "
        "compilation and warm-up steps from dominating). Measured on "
        f"{env.get('device_name') or env.get('device') or 'an unrecorded device'} "
        f"(`{env.get('device', 'n/a')}`, world size {env.get('world_size', 'n/a')}) at "
        f"{res_txt} resolution; the paper's Table 4 used 8 H100 GPUs at batch 16 on 512×512 "
        "Euler data, so compare ratios between stages rather than absolute minutes. A reused "
        "stage shows the time of the run that trained it.",
    ]
    lines += ["", _timing_text(timing_warnings(results))]
    return lines


def _timing_text(timing: dict) -> str:
    """The step-time noise check in words: a warning per sign of load, or what was checked."""
    warnings = timing.get("warnings") or []
    if not warnings:
        if not timing.get("groups_compared") and not timing.get("spreads_checked"):
            return (
                "Timing noise could not be checked (no stages of identical architecture, no "
                "per-step spread recorded)."
            )
        return (
            "Timing check: median step times of conditions with the same architecture and "
            f"trainable parameters agree within {STEP_TIME_MISMATCH:.0%}"
            + (
                f", and every stage's middle half of step times (interquartile range) spans "
                f"less than {STEP_TIME_SPREAD:.0%} of its median"
                if timing.get("spreads_checked")
                else ""
            )
            + "."
        )
    items = []
    for w in warnings:
        if w["kind"] == "same_architecture":
            meds = ", ".join(fmt_metric(m) for m in w["median_step_s"])
            items.append(
                f"{', '.join(w['stages'])} do the same work per step (same architecture and "
                f"trainable parameters) but their median step times ({meds} s) differ by "
                f"{w['ratio']:.1f}×"
            )
        else:
            items.append(
                f"{w['stages'][0]}: the middle half of its step times spans "
                f"{fmt_metric(w['p25'])} to {fmt_metric(w['p75'])} s around a median of "
                f"{fmt_metric(w['median_step_s'][0])} s"
            )
    return (
        "**Warning, timing noise:** " + "; ".join(items) + ". The machine's load changed "
        "during the run (other processes, thermal limits), so these step times and minutes "
        "measure the machine as much as the stages: rerun on an idle machine before comparing "
        "costs."
    )


def _vrmse_cell(results: dict, key: str, section: str = "conditions") -> str:
    mean, std = _vrmse(results, key, section)
    return _fmt_mean_std({"mean": mean, "std": std})


_WITHIN_NOTE = (
    "† within the spread (see the answer's note on the spread): indistinguishable from no "
    "pretraining at this budget."
)


def _delta_cell(change: Any, rel: str | None) -> str:
    """The change vs no pretraining, marked † when it is within the spread."""
    return fmt_pct(change) + ("†" if rel == "indistinguishable" else "")


def _quality_section(results: dict, comp: dict) -> list[str]:
    spread = (
        f"mean ± std across {_seed_count(results)} seeds"
        if spread_kind(results) == "seeds"
        else "mean ± std over validation subsets, one seed"
    )
    lines = [
        "## Table 5 analogue — quality",
        "",
        f"Next-frame prediction on the validation split (lower is better; VRMSE {spread}; "
        "NEPS of the first seed).",
        "",
        "| Condition | VRMSE | Δ vs no pretraining | NEPS low | NEPS mid | NEPS high |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    keys = _condition_keys(results)
    for key in keys:
        nf = _get(results, "conditions", key, "next_frame") or {}
        delta = (
            "—"
            if key == BASELINE
            else _delta_cell(
                _get(comp, "conditions", key, "vrmse_change_pct"),
                _get(comp, "conditions", key, "vrmse_relation"),
            )
        )
        neps = " | ".join(fmt_neps(_get(nf, "neps", r, "mean")) for r in NEPS_RANGES)
        lines.append(f"| {_label(results, key)} | {_vrmse_cell(results, key)} | {delta} | {neps} |")
    bres = {**results, "baselines": _baselines(results)}
    for b, entry in bres["baselines"].items():
        nf = entry.get("next_frame") or {}
        neps = " | ".join(fmt_neps(_get(nf, "neps", r, "mean")) for r in NEPS_RANGES)
        lines.append(
            f"| *{entry.get('label', b)}* | {_vrmse_cell(bres, b, 'baselines')} | — | {neps} |"
        )
    lines += [
        "",
        _WITHIN_NOTE,
        "",
        "NEPS per range: the ratio of the error to the true power spectrum of the evaluated "
        "windows (spectra summed over a subset's windows in RMS-normalised units, shells one "
        "fundamental wavenumber wide, the mean mode left out), averaged over the range's shells "
        "and over the fields; the ranges split at the_well's three bin edges. 1 means the "
        "error has as much power as the truth at that scale.",
        "",
        f"For context only, the paper's NEPS ({PAPER_REFERENCE['rollout_steps']:,} steps on "
        "512×512 real data, not comparable in level): "
        + "; ".join(PAPER_REFERENCE["neps_statements"])
        + ".",
        "",
        "the_well's binned spectral NMSE (summed error power / summed true power per range):",
        "",
        "| Condition | NMSE low | NMSE mid | NMSE high |",
        "|---|---:|---:|---:|",
    ]
    for key in keys:
        nf = _get(results, "conditions", key, "next_frame") or {}
        cells = " | ".join(_fmt_mean_std(_get(nf, "well_nmse", r), fmt_neps) for r in NEPS_RANGES)
        lines.append(f"| {_label(results, key)} | {cells} |")
    return lines


def _rollout_section(results: dict, comp: dict) -> list[str]:
    horizons = horizon_keys(results)
    head = " | ".join(f"VRMSE {h} | Δ {h}" for h in horizons)
    if spread_kind(results) == "seeds":
        spread = f"mean ± std across {_seed_count(results)} seeds"
    else:
        spread = "one seed; mean ± standard error over the windows"
    lines = [
        "## Long rollouts",
        "",
        f"Autoregressive rollout VRMSE by horizon (prediction steps), Δ vs no pretraining ({spread}"
        "; † marks a change within the spread of the paired per-window differences).",
        "",
        f"| Condition | {head} |",
        "|---|" + "---:|" * (2 * len(horizons)),
    ]
    for key in _condition_keys(results):
        cells = []
        for h in horizons:
            delta = (
                "—"
                if key == BASELINE
                else _delta_cell(
                    _get(comp, "conditions", key, "horizon_change_pct", h),
                    _get(comp, "conditions", key, "horizon_relation", h),
                )
            )
            mean, std = horizon_stat(results, key, h)
            cells += [_fmt_mean_std({"mean": mean, "std": std}), delta]
        lines.append(f"| {_label(results, key)} | {' | '.join(cells)} |")
    bres = {**results, "baselines": _baselines(results)}
    for b, entry in bres["baselines"].items():
        cells = []
        for h in horizons:
            mean, std = horizon_stat(bres, b, h, "baselines")
            cells += [_fmt_mean_std({"mean": mean, "std": std}), "—"]
        lines.append(f"| *{entry.get('label', b)}* | {' | '.join(cells)} |")
    notes = []
    for key in _condition_keys(results):
        for note in _get(results, "conditions", key, "rollout", "notes") or []:
            if isinstance(note, str) and note not in notes:
                notes.append(note)
    keys = _condition_keys(results)
    if spread_kind(results) != "seeds" and not any(
        horizon_stat(results, k, h)[1] is not None for k in keys for h in horizons
    ):
        notes.append(
            "these results predate per-window rollout values, so the rollout numbers have no "
            "spread and no ordering between them is claimed"
        )
    lines += [""] + [f"Note: {n}." for n in notes]
    lines += [
        f"For context only, the paper ({_run_scale(results)} here; its representative run "
        "on 512×512 real data): " + PAPER_REFERENCE["long_rollouts"] + "."
    ]
    return lines


_FIGURE_CAPTIONS = {
    "validation_curves": "Figure 2 analogue: validation VRMSE and NEPS during rollout training",
    "rollout_horizons": (
        "Figure 3 analogue: rollout VRMSE by horizon and by step; error bars and bands ± the "
        "standard error over the windows (± the std across seeds for the bars of a run with "
        "several); the text's comparisons pair the windows, which is tighter than the bars"
    ),
    "tokeniser_pretraining": (
        "Tokeniser pretraining: validation reconstruction VRMSE vs step, one panel per dataset; "
        "the star is the out-of-domain tokeniser's reconstruction of the downstream data"
    ),
}


def render_report(results: dict, figures: dict[str, str] | None = None) -> str:
    """The experiment's report as Markdown, computed from `results` (and figure paths) alone."""
    comp = compare(results)
    name = results.get("name", "unnamed")
    lines = [
        f"# Tokeniser pretraining experiment: `{name}`",
        "",
        f"Preset `{results.get('preset', 'n/a')}` · created {results.get('created_utc', 'n/a')}"
        f" · physok {results.get('physok_version', 'n/a')} · schema "
        f"`{results.get('schema', 'n/a')}`",
        "",
    ]
    lines += _setup_section(results)
    lines += ["", "## Answer", ""]
    for p in _answer_paragraphs(results, comp):
        lines += [p, ""]
    lines += [*_cost_section(results), ""]
    lines += [*_quality_section(results, comp), ""]
    lines += [*_rollout_section(results, comp), ""]
    lines += ["## Figures", ""]
    if figures:
        for key, rel in figures.items():
            caption = _FIGURE_CAPTIONS.get(key, key)
            lines += [f"![{caption}]({rel})", "", f"*{caption}.*", ""]
    else:
        lines += ["No figures were rendered for this run.", ""]
    lines += ["## Reproduce", ""]
    command = _get(results, "config", "command")
    if command:
        cmd = command if isinstance(command, str) else " ".join(str(c) for c in command)
        lines += ["```bash", cmd, "```"]
    else:
        lines.append("The command line was not recorded (`config.command` is missing).")
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: dict, run_dir: Path, figures: dict[str, str] | None = None) -> Path:
    """Write `run_dir/report.md` atomically (`physok.atomic_io`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = render_report(results, figures)
    target = run_dir / "report.md"
    write_text_atomic(target, text)
    return target
