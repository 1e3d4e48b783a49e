"""The experiment's figures (paper Figures 2 and 3 analogues), drawn from `results.json` alone.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than pyplot:
no global figure registry or backend switch, so rendering works headless and from threads.
Each condition keeps one colour, line style and marker in every figure: in-domain solid,
out-of-domain dashed, no pretraining dotted, mostly frozen with square markers.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from physok.atomic_io import write_bytes_atomic
from physok.experiment.report import CONDITION_ORDER, NEPS_RANGES, horizon_keys

__all__ = [
    "CONDITION_STYLES",
    "plot_rollout_horizons",
    "plot_tokeniser_curves",
    "plot_validation_curves",
    "write_figures",
]

DPI = 120

CONDITION_STYLES: dict[str, dict[str, Any]] = {
    "no_pretraining": {"color": "#333333", "linestyle": ":", "marker": "^"},
    "in_domain_trainable": {"color": "#1f77b4", "linestyle": "-", "marker": "o"},
    "in_domain_frozen": {"color": "#2ca02c", "linestyle": "-", "marker": "s"},
    "out_of_domain_trainable": {"color": "#ff7f0e", "linestyle": "--", "marker": "o"},
    "out_of_domain_frozen": {"color": "#d62728", "linestyle": "--", "marker": "s"},
}
_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_TOKENISER_STYLES: dict[str, dict[str, Any]] = {
    "in_domain": {"color": "#1f77b4", "linestyle": "-", "marker": "o"},
    "out_of_domain": {"color": "#ff7f0e", "linestyle": "--", "marker": "o"},
}


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _conditions(results: dict) -> list[tuple[str, dict]]:
    conds = results.get("conditions") or {}
    keys = [k for k in CONDITION_ORDER if k in conds] + [
        k for k in conds if k not in CONDITION_ORDER
    ]
    return [(k, conds[k] or {}) for k in keys]


def _style(key: str, index: int) -> dict[str, Any]:
    if key in CONDITION_STYLES:
        return CONDITION_STYLES[key]
    return {
        "color": _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)],
        "linestyle": "-.",
        "marker": "D",
    }


def _label(key: str, cond: dict) -> str:
    label = cond.get("label")
    return label if isinstance(label, str) and label else key


def _points(curve: Any, x_key: str, y_key: str, positive: bool = False) -> tuple[list, list]:
    """(x, y) of the curve entries where both are finite numbers (and y > 0 for log axes)."""
    xs, ys = [], []
    for entry in curve or []:
        if not isinstance(entry, dict):
            continue
        x, y = _num(entry.get(x_key)), _num(entry.get(y_key))
        if x is None or y is None or (positive and y <= 0.0):
            continue
        xs.append(x)
        ys.append(y)
    return xs, ys


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888888")


def _log_y(ax: Any, values: list[float]) -> None:
    """Log y axis; within less than a decade, label ticks as plain numbers (not 1.02×10⁰)."""
    ax.set_yscale("log")
    lo, hi = min(values), max(values)
    if hi < 10.0 * lo:
        plain = FuncFormatter(lambda y, _pos: f"{y:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def _save(fig: Figure, path: Path) -> Path:
    """Save as PNG atomically (`physok.atomic_io`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return write_bytes_atomic(path, buffer.getvalue())


def plot_validation_curves(results: dict, path: Path) -> Path:
    """Figure 2 analogue: validation VRMSE and NEPS low/mid/high vs rollout-training step."""
    panels = [("val_vrmse", "Validation VRMSE", False)] + [
        (f"val_neps_{r}", f"NEPS {r} frequencies", True) for r in NEPS_RANGES
    ]
    fig = _new_figure(18.0, 4.6)
    axes = fig.subplots(1, len(panels))
    handles: dict[str, Any] = {}
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        drawn: list[float] = []
        for i, (ckey, cond) in enumerate(_conditions(results)):
            curve = (cond.get("training") or {}).get("curve")
            xs, ys = _points(curve, "step", key, positive=log)
            if not xs:
                continue
            st = _style(ckey, i)
            (line,) = ax.plot(xs, ys, label=_label(ckey, cond), markersize=5, linewidth=1.6, **st)
            handles.setdefault(_label(ckey, cond), line)
            drawn += ys
        if key == "val_vrmse" and drawn:
            # the baselines' next-frame VRMSE from the evaluation, for scale (the validation
            # curves use a fixed subset of the same split, so the levels are comparable)
            for b_i, (bkey, entry) in enumerate((results.get("baselines") or {}).items()):
                v = _num(((entry.get("next_frame") or {}).get("vrmse") or {}).get("mean"))
                if v is None:
                    continue
                color, dash = _BASELINE_STYLES[b_i % len(_BASELINE_STYLES)]
                label = entry.get("label", bkey)
                line = ax.axhline(v, color=color, linestyle=dash, linewidth=1.2, label=label)
                handles.setdefault(label, line)
        if log and drawn:
            _log_y(ax, drawn)
        if not drawn:
            _no_data(ax)
        ax.set_title(title)
        ax.set_xlabel("rollout-training step")
        ax.set_ylabel("VRMSE" if key == "val_vrmse" else "NEPS")
        ax.grid(True, which="both", alpha=0.3)
    _shared_legend(fig, handles)
    fig.suptitle(f"Validation during rollout training — {results.get('name', 'run')}")
    return _save(fig, path)


def _shared_legend(fig: Figure, handles: dict[str, Any]) -> None:
    """One legend for all panels, below them (labels in first-drawn order)."""
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncol=min(len(handles), 4),
            frameon=False,
        )


_BASELINE_STYLES = (
    ("#888888", (0, (1, 2))),
    ("#444444", (0, (4, 2))),
    ("#b07aa1", (0, (6, 2, 1, 2))),
)


def _baseline_rollouts(results: dict, with_rollout: list) -> list[tuple[str, dict]]:
    """(key, entry) of every baseline with a rollout; results of schema 1 held only
    persistence, inside each condition."""
    found = [
        (k, e)
        for k, e in (results.get("baselines") or {}).items()
        if isinstance(e, dict) and isinstance(e.get("rollout"), dict)
    ]
    if found or results.get("baselines"):
        return found
    ref = next(
        (c["rollout"].get("persistence") for _, _, c in with_rollout),
        None,
    )
    if not ref:
        return []
    return [("persistence", {"label": "Persistence (repeat last frame)", "rollout": ref})]


def plot_rollout_horizons(results: dict, path: Path) -> Path:
    """Figure 3 analogue: rollout VRMSE per horizon (grouped bars) and per step (lines)."""
    fig = _new_figure(14.0, 5.0)
    ax_bar, ax_line = fig.subplots(1, 2)
    conds = _conditions(results)
    horizons = horizon_keys(results)
    with_rollout = [
        (i, k, c) for i, (k, c) in enumerate(conds) if isinstance(c.get("rollout"), dict)
    ]
    n = max(len(with_rollout), 1)
    width = 0.8 / n
    handles: dict[str, Any] = {}
    bars_drawn = False
    for j, (i, ckey, cond) in enumerate(with_rollout):
        st = _style(ckey, i)
        values = cond["rollout"].get("horizons") or {}
        xs, hs = [], []
        for h_i, h in enumerate(horizons):
            v = _num(values.get(h))
            if v is not None:
                xs.append(h_i - 0.4 + width * (j + 0.5))
                hs.append(v)
        if xs:
            bars = ax_bar.bar(
                xs,
                hs,
                width=width * 0.95,
                color=st["color"],
                hatch="//" if st["marker"] == "s" else None,
                edgecolor="white",
                label=_label(ckey, cond),
            )
            handles.setdefault(_label(ckey, cond), bars)
            bars_drawn = True
    ax_bar.set_xticks(range(len(horizons)), [f"steps {h}" for h in horizons])
    ax_bar.set_ylabel("VRMSE")
    ax_bar.set_title("Rollout VRMSE by horizon")
    ax_bar.grid(True, axis="y", alpha=0.3)
    if not bars_drawn:
        _no_data(ax_bar)

    lines_drawn = False
    for i, ckey, cond in with_rollout:
        st = _style(ckey, i)
        per_step = cond["rollout"].get("per_step_vrmse") or []
        pts = [(i + 1, _num(v)) for i, v in enumerate(per_step)]
        pts = [(s, v) for s, v in pts if v is not None]
        if not pts:
            continue
        (line,) = ax_line.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            label=_label(ckey, cond),
            markersize=4,
            linewidth=1.6,
            **st,
        )
        handles.setdefault(_label(ckey, cond), line)
        lines_drawn = True
    # the baselines (same windows for every condition) as reference lines
    for b_i, (bkey, entry) in enumerate(_baseline_rollouts(results, with_rollout)):
        color, dash = _BASELINE_STYLES[b_i % len(_BASELINE_STYLES)]
        label = entry.get("label", bkey)
        ref = entry["rollout"]
        pts = [(s + 1, _num(v)) for s, v in enumerate(ref.get("per_step_vrmse") or [])]
        pts = [(s, v) for s, v in pts if v is not None]
        if pts:
            (line,) = ax_line.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color=color,
                linestyle=dash,
                linewidth=1.4,
                label=label,
            )
            handles.setdefault(label, line)
        for h_i, h in enumerate(horizons):
            v = _num((ref.get("horizons") or {}).get(h))
            if v is not None:
                ax_bar.hlines(v, h_i - 0.42, h_i + 0.42, colors=color, linestyles=dash)
    for h in horizons[:-1]:  # horizon boundaries, e.g. 1-2 | 3-6 | 7-18
        last = h.rsplit("-", 1)[-1]
        if last.isdigit():
            ax_line.axvline(int(last) + 0.5, color="#bbbbbb", linewidth=0.8)
    ax_line.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_line.set_xlabel("autoregressive step")
    ax_line.set_ylabel("VRMSE")
    ax_line.set_title("Rollout VRMSE per step")
    ax_line.grid(True, alpha=0.3)
    if not lines_drawn:
        _no_data(ax_line)
    _shared_legend(fig, handles)
    fig.suptitle(f"Long rollouts — {results.get('name', 'run')}")
    return _save(fig, path)


def plot_tokeniser_curves(results: dict, path: Path) -> Path | None:
    """Validation VRMSE vs step of each tokeniser-pretraining stage; None when there is none."""
    tokenisers = results.get("tokenisers") or {}
    series = []
    for i, (key, tok) in enumerate(tokenisers.items()):
        if not isinstance(tok, dict):
            continue
        xs, ys = _points(tok.get("curve"), "step", "val_vrmse_mean")
        if xs:
            st = _TOKENISER_STYLES.get(key) or _style(key, i)
            series.append((tok.get("label") or key, xs, ys, st))
    if not series:
        return None
    fig = _new_figure(7.5, 4.8)
    ax = fig.subplots()
    for label, xs, ys, st in series:
        ax.plot(xs, ys, label=label, markersize=4, linewidth=1.6, **st)
    values = [y for _, _, ys, _ in series for y in ys]
    if all(y > 0 for y in values):
        _log_y(ax, values)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("validation VRMSE (mean over datasets)")
    ax.set_title(f"Tokeniser pretraining — {results.get('name', 'run')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(frameon=False)
    return _save(fig, path)


def write_figures(results: dict, run_dir: Path) -> dict[str, str]:
    """Write the figures under `run_dir/figures/`; returns {name: path relative to run_dir}."""
    run_dir = Path(run_dir)
    out: dict[str, str] = {}
    plot_validation_curves(results, run_dir / "figures" / "validation_curves.png")
    out["validation_curves"] = "figures/validation_curves.png"
    plot_rollout_horizons(results, run_dir / "figures" / "rollout_horizons.png")
    out["rollout_horizons"] = "figures/rollout_horizons.png"
    if plot_tokeniser_curves(results, run_dir / "figures" / "tokeniser_pretraining.png"):
        out["tokeniser_pretraining"] = "figures/tokeniser_pretraining.png"
    return out
