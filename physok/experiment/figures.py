"""The experiment's figures (paper Figures 2 and 3 analogues), drawn from `results.json` alone.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than pyplot:
no global figure registry or backend switch, so rendering works headless and from threads.
Each condition keeps one colour, line style and marker in every figure: in-domain solid,
out-of-domain dashed, no pretraining dotted, mostly frozen with square markers. Rollout bars
carry error bars and per-step lines a band: the standard error over the evaluated windows (or
the std across seeds, for bars of a run with several), the spread the report's claims use.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from physok.atomic_io import write_bytes_atomic
from physok.experiment.report import (
    CONDITION_ORDER,
    NEPS_RANGES,
    horizon_keys,
    horizon_stat,
    spread_kind,
)

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


def _per_step_points(rollout: dict) -> list[tuple[int, float, float | None]]:
    """(step, mean, standard error or None) of a rollout's finite per-step values."""
    means = rollout.get("per_step_vrmse") or []
    stds = rollout.get("per_step_std") or []
    n = _num(rollout.get("windows"))
    out = []
    for k, v in enumerate(means):
        v = _num(v)
        if v is None:
            continue
        std = _num(stds[k]) if k < len(stds) else None
        sem = None if std is None or n is None or n < 2 else std / math.sqrt(n)
        out.append((k + 1, v, sem))
    return out


def _band(ax: Any, pts: list[tuple[int, float, float | None]], color: str, alpha: float) -> bool:
    """A shaded ± standard error band around a per-step line (where the errors are known);
    True when one was drawn."""
    known = [(s, v, e) for s, v, e in pts if e is not None]
    if len(known) > 1:
        ax.fill_between(
            [p[0] for p in known],
            [p[1] - p[2] for p in known],
            [p[1] + p[2] for p in known],
            color=color,
            alpha=alpha,
            linewidth=0,
        )
        return True
    return False


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
    errors_drawn = False
    for j, (i, ckey, cond) in enumerate(with_rollout):
        st = _style(ckey, i)
        xs, hs, errs = [], [], []
        for h_i, h in enumerate(horizons):
            v, err = horizon_stat(results, ckey, h)
            v = _num(v)
            if v is not None:
                xs.append(h_i - 0.4 + width * (j + 0.5))
                hs.append(v)
                errs.append(_num(err) or 0.0)
        if xs:
            bars = ax_bar.bar(
                xs,
                hs,
                width=width * 0.95,
                color=st["color"],
                hatch="//" if st["marker"] == "s" else None,
                edgecolor="white",
                label=_label(ckey, cond),
                yerr=errs if any(errs) else None,
                error_kw={"ecolor": "#222222", "elinewidth": 1.0, "capsize": 3},
            )
            errors_drawn = errors_drawn or any(errs)
            handles.setdefault(_label(ckey, cond), bars)
            bars_drawn = True
    ax_bar.set_xticks(range(len(horizons)), [f"steps {h}" for h in horizons])
    ax_bar.set_ylabel("VRMSE")
    several = spread_kind(results) == "seeds"
    spread = "± std across seeds" if several else "± standard error over windows"
    ax_bar.set_title(
        f"Rollout VRMSE by horizon ({spread if errors_drawn else 'no spread recorded'})"
    )
    ax_bar.grid(True, axis="y", alpha=0.3)
    if not bars_drawn:
        _no_data(ax_bar)

    lines_drawn = False
    bands_drawn = False
    for i, ckey, cond in with_rollout:
        st = _style(ckey, i)
        pts = _per_step_points(cond["rollout"])
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
        bands_drawn = _band(ax_line, pts, st["color"], 0.15) or bands_drawn
        handles.setdefault(_label(ckey, cond), line)
        lines_drawn = True
    # the baselines (same windows for every condition) as reference lines
    for b_i, (bkey, entry) in enumerate(_baseline_rollouts(results, with_rollout)):
        color, dash = _BASELINE_STYLES[b_i % len(_BASELINE_STYLES)]
        label = entry.get("label", bkey)
        ref = entry["rollout"]
        pts = _per_step_points(ref)
        if pts:
            (line,) = ax_line.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color=color,
                linestyle=dash,
                linewidth=1.4,
                label=label,
            )
            _band(ax_line, pts, color, 0.08)
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
    band = "band: ± standard error over windows" if bands_drawn else "no spread recorded"
    ax_line.set_title(f"Rollout VRMSE per step{', first seed' if several else ''} ({band})")
    ax_line.grid(True, alpha=0.3)
    if not lines_drawn:
        _no_data(ax_line)
    _shared_legend(fig, handles)
    fig.suptitle(f"Long rollouts — {results.get('name', 'run')}")
    return _save(fig, path)


def _tokeniser_panels(results: dict) -> list[tuple[str, list[tuple[str, list, list, dict]]]]:
    """(panel title, [(label, steps, values, style)]) with one panel per dataset, so no axis
    mixes reconstructions of different data. A tokeniser whose curve has per-dataset values
    draws one line per dataset; an older record with only the mean over several datasets gets
    a panel of its own for that mean."""
    panels: dict[str, list[tuple[str, list, list, dict]]] = {}
    downstream = results.get("downstream_dataset")
    if downstream:
        panels[downstream] = []
    for i, (key, tok) in enumerate((results.get("tokenisers") or {}).items()):
        if not isinstance(tok, dict):
            continue
        st = _TOKENISER_STYLES.get(key) or _style(key, i)
        name = tok.get("label") or key
        short = {"in_domain": "In-domain tokeniser", "out_of_domain": "Out-of-domain tokeniser"}
        label = short.get(key, name)
        datasets = [d for d in tok.get("datasets") or [] if isinstance(d, str)]
        curve = [e for e in tok.get("curve") or [] if isinstance(e, dict)]
        per_dataset = any(isinstance(e.get("val_vrmse"), dict) for e in curve)
        if per_dataset or len(datasets) == 1:
            for d in datasets:
                xs, ys = [], []
                for e in curve:
                    value = (e.get("val_vrmse") or {}).get(d) if per_dataset else None
                    y = _num(value if per_dataset else e.get("val_vrmse_mean"))
                    x = _num(e.get("step"))
                    if x is not None and y is not None:
                        xs.append(x)
                        ys.append(y)
                if xs:
                    panels.setdefault(d, []).append((label, xs, ys, st))
        else:
            xs, ys = _points(curve, "step", "val_vrmse_mean")
            if xs:
                title = f"mean over {', '.join(datasets) or 'its datasets'}"
                panels.setdefault(title, []).append((f"{label} (mean)", xs, ys, st))
        rec = tok.get("downstream_reconstruction")
        if downstream and isinstance(rec, dict) and downstream not in datasets:
            y = _num((rec.get("vrmse") or {}).get("mean"))
            if y is not None:
                err = _num((rec.get("vrmse") or {}).get("sem"))
                x = _num(tok.get("steps")) or 0.0
                point = {**st, "linestyle": "none", "marker": "*", "markersize": 12}
                panels[downstream].append(
                    (f"{label}, never trained on it (final)", [x], [y], {**point, "err": err})
                )
    return [(title, series) for title, series in panels.items() if series]


def plot_tokeniser_curves(results: dict, path: Path) -> Path | None:
    """Validation reconstruction VRMSE vs pretraining step, one panel per dataset; the
    downstream panel also holds the out-of-domain tokeniser's reconstruction of the downstream
    data (never trained on it). None when there is no curve."""
    panels = _tokeniser_panels(results)
    if not panels:
        return None
    fig = _new_figure(max(5.0 * len(panels), 7.5), 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    downstream = results.get("downstream_dataset")
    for ax, (title, series) in zip(axes, panels, strict=True):
        values = []
        for label, xs, ys, st in series:
            style = {k: v for k, v in st.items() if k != "err"}
            if st.get("err") is not None:
                ax.errorbar(xs, ys, yerr=[st["err"]], label=label, capsize=3, **style)
            else:
                ax.plot(xs, ys, label=label, linewidth=1.6, **{"markersize": 4, **style})
            values += ys
        if values and all(y > 0 for y in values):
            _log_y(ax, values)
        title = f"{title} (downstream)" if title == downstream else title
        ax.set_title(textwrap.fill(title, 42), fontsize="medium")
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("reconstruction VRMSE (validation)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    fig.suptitle(f"Tokeniser pretraining — {results.get('name', 'run')}")
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
