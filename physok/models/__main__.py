"""`python -m physok.models params`: parameter counts of the model presets.

Prints, per preset, the tokeniser's total parameters and its trainable parameters under the two
rollout-training strategies ("trainable", "mostly_frozen"), next to the paper's numbers; then the
processor's parameters (blocks, the 18 <-> dim projections, and their total; the paper: ~100M).
With --json, each preset's tokeniser counts carry a "processor" entry with the same three counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

PAPER_TOKENISER, PAPER_MOSTLY_FROZEN = 5_000_000, 85_000
PAPER_PROCESSOR = 100_000_000


def tokeniser_counts(preset: str) -> dict[str, int]:
    from physok.models.tokeniser import Tokeniser, TokeniserConfig, parameter_summary

    return parameter_summary(Tokeniser(TokeniserConfig.preset(preset)))


def processor_counts(preset: str) -> dict[str, int]:
    """{"blocks", "projections", "total"}; built on the meta device (no memory, no init)."""
    import torch

    from physok.models.processor import Processor, ProcessorConfig

    with torch.device("meta"):
        processor = Processor(ProcessorConfig.preset_named(preset))
    return processor.parameter_summary()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m physok.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="print parameter counts of the presets")
    p.add_argument("--preset", choices=["fast", "paper"], action="append")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    presets = args.preset or ["paper", "fast"]
    counts: dict[str, dict] = {name: tokeniser_counts(name) for name in presets}
    for name in presets:
        counts[name]["processor"] = processor_counts(name)
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    print("tokeniser parameters (trainable under each rollout-training strategy)")
    print(f"{'preset':<8} {'total':>12} {'trainable':>12} {'mostly_frozen':>14} {'share':>7}")
    for name, c in counts.items():
        share = c["trainable[mostly_frozen]"] / c["total"]
        print(
            f"{name:<8} {c['total']:>12,} {c['trainable[trainable]']:>12,} "
            f"{c['trainable[mostly_frozen]']:>14,} {share:>7.2%}"
        )
    share = PAPER_MOSTLY_FROZEN / PAPER_TOKENISER
    print(
        f"{'(paper)':<8} {PAPER_TOKENISER:>12,} {PAPER_TOKENISER:>12,} "
        f"{PAPER_MOSTLY_FROZEN:>14,} {share:>7.2%}  as reported, rounded"
    )
    print()
    print("processor parameters (blocks + latent projections 18 <-> dim)")
    print(f"{'preset':<8} {'blocks':>12} {'projections':>12} {'total':>14}")
    for name, c in counts.items():
        p = c["processor"]
        print(f"{name:<8} {p['blocks']:>12,} {p['projections']:>12,} {p['total']:>14,}")
    print(f"{'(paper)':<8} {'':>12} {'':>12} {PAPER_PROCESSOR:>14,}  ~100M, as reported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
