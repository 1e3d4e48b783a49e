"""Reporting evaluation results: JSON-safe numbers, the atomic JSON file and a short table."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from physok.atomic_io import write_json_atomic

__all__ = ["format_table", "json_number", "write_json"]


def json_number(value: float) -> float | None:
    """`value` as a float, or None when NaN/Inf (strict JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as JSON atomically (`physok.atomic_io`)."""
    return write_json_atomic(path, data)


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _mean_std(entry: dict[str, float | None]) -> str:
    std = entry.get("std")
    return _num(entry.get("mean")) + ("" if std is None else f" ± {_num(std, 2)}")


def _horizon_cells(part: dict[str, Any]) -> str:
    """"1-2: 0.1 ± 0.01  3-6: ..." from a rollout summary's horizons and their spread (results
    written before the spread was kept show the means alone)."""
    spread = part.get("horizon_spread", {})
    cells = []
    for h, v in part["horizons"].items():
        sem = spread.get(h, {}).get("sem")
        cells.append(f"{h}: {_num(v)}" + ("" if sem is None else f" ± {_num(sem, 2)}"))
    return "  ".join(cells)


def format_table(result: dict[str, Any]) -> str:
    """A few readable lines: next-frame VRMSE and NEPS (mean ± std over subsets), the_well
    NMSE, and the rollout VRMSE by horizon."""
    lines = [f"checkpoint: {result['checkpoint']}", f"dataset:    {result['dataset']}"]
    nf = result.get("next_frame")
    if nf is not None:
        lines.append(
            f"next frame ({nf['split']}, {nf['subsets']} subsets x {nf['subset_size']} windows, "
            f"{nf['windows']} distinct):"
        )
        lines.append(f"  VRMSE            {_mean_std(nf['vrmse'])}")
        for key, title in (("neps", "NEPS"), ("well_nmse", "Well NMSE")):
            cells = "  ".join(f"{r} {_mean_std(v)}" for r, v in nf[key].items())
            lines.append(f"  {title:<16} {cells}")
        fields = "  ".join(f"{k} {_num(v)}" for k, v in nf["vrmse_per_field"].items())
        lines.append(f"  VRMSE per field  {fields}")
        ref = nf.get("persistence")
        if ref is not None:
            cells = "  ".join(f"{r} {_mean_std(v)}" for r, v in ref["neps"].items())
            lines.append(f"  persistence (repeat the last frame): VRMSE {_mean_std(ref['vrmse'])}")
            lines.append(f"  persistence NEPS {cells}")
    ro = result.get("rollout")
    if ro is not None:
        spread = " ± standard error over the windows" if ro.get("horizon_spread") else ""
        lines.append(
            f"rollout ({ro['split']}, {ro['steps']} steps, {ro['windows']} windows; "
            f"VRMSE by horizon{spread}):"
        )
        lines.append(f"  model            {_horizon_cells(ro)}")
        for key, title in (("persistence", "persistence"), ("linear_extrapolation", "linear")):
            ref = ro.get(key)
            if ref is not None:
                lines.append(f"  {title:<16} {_horizon_cells(ref)}")
    for part in (nf, ro):
        for note in (part or {}).get("notes", []):
            lines.append(f"note: {note}")
    return "\n".join(lines)
