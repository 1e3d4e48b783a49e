"""Summarise a pytest-benchmark JSON file as a short table: each fast path vs its reference.

Usage: python bench/summarise.py BENCH.json [--markdown]. Within each benchmark group the
reference is the entry whose name contains "reference" (or "the_well"/"eager"/"math"/"torch");
every entry's ratio is reference mean / its mean (> 1: faster than the reference).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REFERENCE_MARKERS = ("reference", "the_well", "eager", "math", "torch_")


def _is_reference(name: str) -> bool:
    return any(m in name for m in REFERENCE_MARKERS)


def summarise(data: dict) -> list[dict]:
    # A group compares implementations at one parameter set (e.g. grid size): the reference
    # of `test_x[64x64]` is the reference entry with the same `[64x64]`.
    groups: dict[str, list[dict]] = defaultdict(list)
    for b in data.get("benchmarks", []):
        key = b.get("group") or b["name"]
        if b.get("param"):
            key = f"{key}[{b['param']}]"
        groups[key].append(b)
    rows = []
    for group, items in sorted(groups.items()):
        refs = [b for b in items if _is_reference(b["name"])]
        ref_mean = refs[0]["stats"]["mean"] if refs else None
        for b in items:
            mean = b["stats"]["mean"]
            extra = {k: v for k, v in (b.get("extra_info") or {}).items() if k != "grid"}
            rows.append(
                {
                    "group": group,
                    "name": b["name"],
                    "mean_ms": mean * 1e3,
                    "speedup_vs_reference": (ref_mean / mean) if ref_mean else None,
                    "extra": extra,
                }
            )
    return rows


def _fmt_extra(extra: dict) -> str:
    parts = []
    for k, v in extra.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json_file", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    data = json.loads(args.json_file.read_text())
    machine = data.get("machine_info", {})
    print(f"# {machine.get('node', '?')} {machine.get('cpu', {}).get('brand_raw', '')}".rstrip())
    rows = summarise(data)
    if args.markdown:
        print("| group | benchmark | mean (ms) | vs reference | extra |")
        print("|---|---|---:|---:|---|")
    for r in rows:
        ratio = "" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
        if args.markdown:
            print(
                f"| {r['group']} | {r['name']} | {r['mean_ms']:.3f} | {ratio} | "
                f"{_fmt_extra(r['extra'])} |"
            )
        else:
            print(
                f"{r['group'][:28]:<28} {r['name'][:48]:<48} {r['mean_ms']:>10.3f} ms "
                f"{ratio:>8}  {_fmt_extra(r['extra'])}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
