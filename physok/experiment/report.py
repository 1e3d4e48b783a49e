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
    "render_report",
    "write_report",
]

# the paper's horizons; a run reports its own (physok.evaluate clips them to the steps run, e.g.
# "7-10" for 10 steps), so tables and figures use `horizon_keys(results)`
HORIZONS: tuple[str, ...] = ("1-2", "3-6", "7-18")
NEPS_RANGES: tuple[str, ...] = ("low", "mid", "high")

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


def _horizon(results: dict, key: str, h: str, section: str = "conditions") -> tuple[Any, Any]:
    """Rollout VRMSE (mean, std or None) of horizon `h`: over seeds when there are several."""
    entry = _get(results, section, key) or {}
    if spread_kind(results) == "seeds" and _get(entry, "across_seeds", "horizons", h):
        stat = _get(entry, "across_seeds", "horizons", h)
        return _num(_get(stat, "mean")), _num(_get(stat, "std"))
    return _num(_get(entry, "rollout", "horizons", h)), None


def _spread_test(results: dict, a: str, b: str) -> tuple[bool | None, float | None]:
    """Does |VRMSE_a − VRMSE_b| exceed 2·sqrt(std_a² + std_b²)? The std is across seeds when
    the run has several, else over validation subsets (`spread_kind`)."""
    va, sa = _vrmse(results, a)
    vb, sb = _vrmse(results, b)
    if va is None or vb is None or sa is None or sb is None:
        return None, None
    if sa == 0 and sb == 0:  # every subset was the whole split: no spread to compare with
        return None, None
    threshold = 2.0 * math.sqrt(sa * sa + sb * sb)
    return abs(va - vb) > threshold, threshold


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
        exceeds, threshold = _spread_test(results, key, BASELINE)
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
                h: _pct_change(_horizon(results, key, h)[0], _horizon(results, BASELINE, h)[0])
                for h in horizons
            },
            "difference_exceeds_subset_spread": exceeds,
            "subset_spread_threshold": threshold,
            "spread_kind": spread_kind(results),
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
    frozen_h = _horizon(results, "in_domain_frozen", longest)[0]
    train_h = _horizon(results, "in_domain_trainable", longest)[0]
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
        "answer": answer,
        "versus_baselines": versus_baselines(results),
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
                a, r = _horizon(results, key, h)[0], _horizon(results, b, h, "baselines")[0]
                hz[h] = None if a is None or r is None or r == 0 else a / r
            per[key] = {
                "vrmse_ratio": ratio,
                "beats": None if ratio is None else ratio < 1.0,
                "horizon_ratio": hz,
                "beats_every_horizon": None
                if None in hz.values() or not hz
                else all(x < 1.0 for x in hz.values()),
            }
        out[b] = {"label": _get(results, "baselines", b, "label") or b, "vrmse": vb, "per": per}
    return out


# ----------------------------------------------------------------------------- report sections


PERSISTENCE_LABEL = "Persistence (repeat the last context frame)"


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
        beat = [k for k in keys if entry["per"].get(k, {}).get("beats")]
        label = entry["label"]
        training = _get(results, "baselines", b, "training") or {}
        if training.get("steps") is not None:
            label += (
                f", {_fmt_count(training.get('steps'))} steps in "
                f"{fmt_seconds(training.get('wall_clock_s'))} s"
            )
        text = f"{label}: next-frame VRMSE {fmt_metric(vb)}; "
        text += f"{len(beat)} of {len(keys)} conditions beat it"
        text += " (" + ", ".join(_label(results, k) for k in beat) + ")" if beat else ""
        parts.append(text)
    text = (
        "Against what a user would use instead, on the same windows: " + "; ".join(parts) + "."
    )
    head = "in_domain_trainable" if "in_domain_trainable" in keys else None
    if head is not None:
        rows = []
        for b, entry in vs.items():
            per = entry["per"].get(head) or {}
            ratio = per.get("vrmse_ratio")
            if ratio is None:
                continue
            hz = [r for r in (per.get("horizon_ratio") or {}).values() if r is not None]
            below = sum(r < 1.0 for r in hz)
            rows.append(
                f"{ratio:.2f}× {_get(results, 'baselines', b, 'label') or b}"
                + (f" (below it at {below} of {len(hz)} rollout horizons)" if hz else "")
            )
        if rows:
            text += " In-domain, trainable next-frame VRMSE is " + "; ".join(rows) + "."
    tok = _get(results, "tokenisers", "in_domain", "val_vrmse")
    if isinstance(tok, dict) and tok:
        recon = _num(np.mean([v for v in tok.values() if v is not None]))
        text += (
            f" The in-domain tokeniser reconstructs validation windows at VRMSE "
            f"{fmt_metric(recon)} after its pretraining."
        )
    persist = (vs.get("persistence") or {}).get("per") or {}
    if persist and not any(v.get("beats") for v in persist.values()):
        text += (
            " With persistence ahead of every condition, the models here have not learned to "
            "forecast: read the comparison between conditions as one between untrained models."
        )
    return text


def _answer_paragraphs(results: dict, comp: dict) -> list[str]:
    """The answer to the experiment's question, phrased from the compared numbers."""
    ans = comp["answer"]
    head = ans["in_domain_condition"]
    paper = PAPER_REFERENCE
    out: list[str] = []
    if head is None:
        present = ", ".join(_label(results, k) for k in _condition_keys(results)) or "none"
        out.append(
            "This run cannot answer whether in-domain tokeniser pretraining lowers next-frame "
            "VRMSE: it lacks a usable in-domain condition or the no-pretraining baseline "
            f"(conditions with results: {present})."
        )
    else:
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
        verb = "lowered" if ans["in_domain_lowers_vrmse"] else "did not lower"
        kind = "fully trainable" if head == "in_domain_trainable" else "mostly frozen"
        seeds = ans.get("seeds") or 1
        over = f"mean over {seeds} seeds" if seeds > 1 else "one seed"
        text = (
            f"{steps_txt}in-domain tokeniser pretraining ({kind}) {verb} next-frame VRMSE "
            f"compared with no pretraining ({over}): {fmt_metric(c['vrmse'])} vs "
            f"{fmt_metric(base_v)} ({fmt_pct(c['vrmse_change_pct'])})."
        )
        exceeds = ans["difference_exceeds_subset_spread"]
        spread = "across seeds" if ans.get("spread_kind") == "seeds" else "over validation subsets"
        if exceeds is None:
            text += (
                " There is no spread to compare with (one seed and every subset the whole"
                " split, or not recorded), so its significance is unknown."
            )
        else:
            text += (
                f" The difference {'exceeds' if exceeds else 'does not exceed'} the spread "
                f"{spread} (2·sqrt(s1² + s2²) = "
                f"{fmt_metric(ans['subset_spread_threshold'])}, with std "
                f"{fmt_metric(c['vrmse_std'])} and {fmt_metric(base_s)})."
            )
            if ans.get("spread_kind") != "seeds":
                text += (
                    " With one seed this spread only measures which validation windows were"
                    " drawn, not how much another training run would differ (`--seeds 3`)."
                )
        p_change = paper["vrmse_change_pct"][head]
        p_v = paper["vrmse"][head]
        agreement = (
            "the same direction" if ans["matches_paper_direction"] else "the opposite direction"
        )
        text += (
            f" The paper reports {fmt_metric(p_v)} vs "
            f"{fmt_metric(paper['vrmse']['no_pretraining'])}"
            f" ({fmt_pct(p_change)}) after {paper['rollout_steps']:,} steps; this run goes in "
            f"{agreement}, with {fmt_pct(c['vrmse_change_pct'])} against "
            f"{fmt_pct(p_change)}."
        )
        out.append(text)

    sentences: list[str] = []
    frozen = comp["conditions"].get("in_domain_frozen")
    if frozen is not None and head != "in_domain_frozen":
        s = (
            f"Mostly frozen in-domain tokeniser: VRMSE {fmt_metric(frozen['vrmse'])} "
            f"({fmt_pct(frozen['vrmse_change_pct'])} vs no pretraining; paper "
            f"{fmt_metric(paper['vrmse']['in_domain_frozen'])}, "
            f"{fmt_pct(paper['vrmse_change_pct']['in_domain_frozen'])})"
        )
        beats = ans["in_domain_frozen_beats_trainable_longest_horizon"]
        if beats is not None:
            s += (
                f"; over rollout steps {ans['longest_horizon']} it "
                + ("beats" if beats else "does not beat")
                + " the fully trainable one (the paper finds it does)"
            )
        sentences.append(s + ".")
    ood_t = comp["conditions"].get("out_of_domain_trainable")
    ood_f = comp["conditions"].get("out_of_domain_frozen")
    if ood_t is not None or ood_f is not None:
        parts = []
        if ood_t is not None:
            parts.append(
                f"fully trainable {fmt_metric(ood_t['vrmse'])} "
                f"({fmt_pct(ood_t['vrmse_change_pct'])}; paper "
                f"{fmt_metric(paper['vrmse']['out_of_domain_trainable'])}, "
                f"{fmt_pct(paper['vrmse_change_pct']['out_of_domain_trainable'])})"
            )
        if ood_f is not None:
            ch = ood_f["vrmse_change_pct"]
            rel = "n/a" if ch is None else ("worse" if ch > 0 else "better")
            parts.append(
                f"mostly frozen {fmt_metric(ood_f['vrmse'])} ({fmt_pct(ch)}, {rel} than no "
                "pretraining; the paper finds it worse)"
            )
        sentences.append("Out-of-domain pretraining: " + "; ".join(parts) + ".")
    order = ans.get("ordering") or {}
    if order.get("holds") is not None:
        spread = "across seeds" if order.get("spread_kind") == "seeds" else "over subsets"
        sep = order.get("separated")
        s = (
            "The paper's ordering in-domain < out-of-domain trainable < no pretraining "
            + ("holds" if order["holds"] else "does not hold")
        )
        if order["holds"] and sep is not None:
            s += (
                f", {'each step separated' if sep else 'not every step separated'} by more "
                f"than the spread {spread}"
            )
        sentences.append(s + ".")
    if comp["ranking"]:
        ranked = [
            f"({i}) {_label(results, k)} {fmt_metric(_vrmse(results, k)[0])}"
            for i, k in enumerate(comp["ranking"], start=1)
        ]
        sentences.append("Ranking by next-frame VRMSE, best first: " + "; ".join(ranked) + ".")
    if sentences:
        out.append(" ".join(sentences))
    context = _context_paragraph(results)
    if context:
        out.append(context)
    return out


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
    return lines


def _vrmse_cell(results: dict, key: str, section: str = "conditions") -> str:
    mean, std = _vrmse(results, key, section)
    return _fmt_mean_std({"mean": mean, "std": std})


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
        "| Condition | VRMSE | Δ vs no pretraining | Paper VRMSE | NEPS low "
        "| NEPS mid | NEPS high |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = _condition_keys(results)
    for key in keys:
        nf = _get(results, "conditions", key, "next_frame") or {}
        delta = (
            "—" if key == BASELINE else fmt_pct(_get(comp, "conditions", key, "vrmse_change_pct"))
        )
        paper_v = PAPER_REFERENCE["vrmse"].get(key)
        paper_txt = (
            fmt_metric(paper_v)
            if paper_v is not None
            else (PAPER_REFERENCE["notes"].get(key, "n/a"))
        )
        neps = " | ".join(fmt_neps(_get(nf, "neps", r, "mean")) for r in NEPS_RANGES)
        lines.append(
            f"| {_label(results, key)} | {_vrmse_cell(results, key)} | {delta} | "
            f"{paper_txt} | {neps} |"
        )
    bres = {**results, "baselines": _baselines(results)}
    for b, entry in bres["baselines"].items():
        nf = entry.get("next_frame") or {}
        neps = " | ".join(fmt_neps(_get(nf, "neps", r, "mean")) for r in NEPS_RANGES)
        lines.append(
            f"| *{entry.get('label', b)}* | {_vrmse_cell(bres, b, 'baselines')} | — | — | {neps} |"
        )
    lines += [
        "",
        "NEPS per range: the ratio of the error to the true power spectrum of the evaluated "
        "windows (spectra summed over a subset's windows in RMS-normalised units, shells one "
        "fundamental wavenumber wide, the mean mode left out), averaged over the range's shells "
        "and over the fields; the ranges split at the_well's three bin edges. 1 means the "
        "error has as much power as the truth at that scale.",
        "",
        "Paper, NEPS: " + "; ".join(PAPER_REFERENCE["neps_statements"]) + ".",
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
    lines = [
        "## Long rollouts",
        "",
        "Autoregressive rollout VRMSE by horizon (prediction steps), Δ vs no pretraining"
        + (
            f"; mean ± std across {_seed_count(results)} seeds."
            if spread_kind(results) == "seeds"
            else "; one seed."
        ),
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
                else fmt_pct(_get(comp, "conditions", key, "horizon_change_pct", h))
            )
            mean, std = _horizon(results, key, h)
            cells += [_fmt_mean_std({"mean": mean, "std": std}), delta]
        lines.append(f"| {_label(results, key)} | {' | '.join(cells)} |")
    bres = {**results, "baselines": _baselines(results)}
    for b, entry in bres["baselines"].items():
        cells = []
        for h in horizons:
            mean, std = _horizon(bres, b, h, "baselines")
            cells += [_fmt_mean_std({"mean": mean, "std": std}), "—"]
        lines.append(f"| *{entry.get('label', b)}* | {' | '.join(cells)} |")
    notes = []
    for key in _condition_keys(results):
        for note in _get(results, "conditions", key, "rollout", "notes") or []:
            if isinstance(note, str) and note not in notes:
                notes.append(note)
    lines += [""] + [f"Note: {n}." for n in notes]
    lines += [f"Paper: {PAPER_REFERENCE['long_rollouts']}."]
    return lines


_FIGURE_CAPTIONS = {
    "validation_curves": "Figure 2 analogue: validation VRMSE and NEPS during rollout training",
    "rollout_horizons": "Figure 3 analogue: rollout VRMSE by horizon and by step",
    "tokeniser_pretraining": "Tokeniser pretraining: validation VRMSE vs step",
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
