"""Command line: `python -m physok.evaluate --checkpoint RUN_OR_CKPT --data-dir DIR [options]`.

Evaluates a rollout-stage checkpoint: next-frame VRMSE / NEPS over random subsets of a split
and rollout VRMSE by horizon; prints a short table and writes the full result as JSON (--out).

Exit status (as `python -m physok.train`): 0 done, 2 bad options, data or checkpoint,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 2, 130
DEFAULT_DATASET = "euler_multi_quadrants_periodicBC"

# argparse destination -> EvalConfig field, for options that override the preset
_ARG_TO_FIELD = {
    "split": "split",
    "subsets": "subsets",
    "subset_size": "subset_size",
    "rollout_steps": "rollout_steps",
    "rollout_windows": "rollout_windows",
    "batch_size": "batch_size",
    "num_workers": "num_workers",
    "device": "device",
    "seed": "seed",
    "amp": "amp",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m physok.evaluate",
        description=(
            "Evaluate a rollout-stage checkpoint: next-frame VRMSE / NEPS (mean ± std over "
            "random subsets of a split) and autoregressive rollout VRMSE by horizon. Options "
            "left out come from --config."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="rollout checkpoint dir or run dir")
    p.add_argument("--data-dir", required=True, help="base folder holding <dataset>/data/<split>")
    p.add_argument("--dataset", default=DEFAULT_DATASET, help=f"default: {DEFAULT_DATASET}")
    p.add_argument("--split", choices=("valid", "test", "train"), help="default: valid")
    p.add_argument(
        "--config",
        choices=("fast", "paper"),
        default="fast",
        help="preset: fast (5 x 32 windows, 8 rollouts) or paper (10 x 4096, 256 rollouts)",
    )
    p.add_argument("--subsets", type=int, help="number of random next-frame subsets")
    p.add_argument("--subset-size", type=int, help="windows per subset")
    p.add_argument("--rollout-steps", type=int, help="autoregressive steps (default 18)")
    p.add_argument("--rollout-windows", type=int, help="windows rolled out")
    p.add_argument("--batch-size", type=int, help="windows per forward")
    p.add_argument("--num-workers", type=int, help="DataLoader workers reading windows")
    p.add_argument("--no-rollout", action="store_true", help="skip the rollout evaluation")
    p.add_argument("--no-next-frame", action="store_true", help="skip the next-frame evaluation")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, help="seed of the subset and window draws")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast on CUDA (default: off; metrics of bf16 predictions carry its rounding)",
    )
    p.add_argument("--out", help="write the result as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> Any:  # -> EvalConfig
    from physok.evaluate.config import EvalConfig

    changes = {f: getattr(args, a) for a, f in _ARG_TO_FIELD.items()}
    changes = {k: v for k, v in changes.items() if v is not None}
    return EvalConfig.preset_named(args.config, **changes)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _check_writable(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name like eval.json")
    folder.mkdir(parents=True, exist_ok=True)  # OSError (e.g. permission) maps to exit 2
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--out {path} exists and is not writable")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {path}: folder {folder} is not writable")


def _write_results(path: Path, result: dict[str, Any]) -> int:
    """Write --out; when that fails the finished evaluation is kept in a fallback file (or
    printed as JSON when even that fails) and the exit status is 2."""
    from physok.evaluate.report import write_json

    try:
        write_json(path, result)
    except OSError as e:
        reason = f"{e.strerror or e}"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        fallback = Path(tempfile.gettempdir()) / f"physok-eval-{stamp}-{os.getpid()}.json"
        try:
            write_json(fallback, result)
            kept = f"the results are kept in {fallback}"
        except OSError:
            print(json.dumps(result, indent=2, default=str))
            kept = "the results are printed above as JSON"
        _error(f"--out {path}: cannot write it ({reason}); {kept}")
        return EXIT_CONFIG
    print(f"written: {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from physok.evaluate.checkpoint_eval import evaluate_checkpoint

        cfg = config_from_args(args)
        if args.out:
            _check_writable(Path(args.out))  # before the evaluation, not after it
        result = evaluate_checkpoint(
            args.checkpoint,
            args.data_dir,
            args.dataset,
            cfg,
            next_frame=not args.no_next_frame,
            rollout=not args.no_rollout,
            progress=not args.quiet,
        )
    except ValueError as e:  # EvalConfigError, DataError, CheckpointError
        _error(str(e))
        return EXIT_CONFIG
    except OSError as e:  # an unreadable file, an unwritable --out folder
        _error(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    from physok.evaluate.report import format_table

    print(format_table(result), flush=True)  # first: the numbers survive a failed write
    code = _write_results(Path(args.out), result) if args.out else EXIT_OK
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
