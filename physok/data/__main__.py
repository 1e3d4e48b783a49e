"""`python -m physok.data`: generate embedded datasets in The Well's format, check Well files.

Examples:
    python -m physok.data generate --dataset all --out data/
    python -m physok.data generate --dataset shear_flow --out data/ --resolution 128x64
    python -m physok.data check data/shear_flow
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from physok.data.check import check_path
from physok.data.errors import DataError
from physok.data.generate import DEFAULT_DATASETS, GenerationConfig, generate_datasets
from physok.data.generators import GENERATORS
from physok.run_lock import FolderLockedError
from physok.write_errors import WriteError


def _resolution(text: str) -> tuple[int, int]:
    """`64` (square) or `128x64` (x by y)."""
    usage = f"--resolution {text!r}: use N or NXxNY, e.g. 64 or 128x64"
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(usage)
    return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m physok.data",
        description="Generate embedded physics datasets in The Well's HDF5 format, or check files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    default = GenerationConfig.fast()

    gen = sub.add_parser(
        "generate",
        help="simulate a dataset and write BASE/NAME/data/{train,valid,test}/*.hdf5 + stats.yaml",
        description="Simulate an embedded dataset (a real numerical solver) and write it in "
        "The Well's layout. An existing dataset made with the same settings is reused.",
    )
    gen.add_argument(
        "--dataset",
        required=True,
        action="append",
        help="dataset name (repeatable), or 'all' for the fast experiment's default set: "
        f"{', '.join(DEFAULT_DATASETS)}. Known: {', '.join(sorted(GENERATORS))}",
    )
    gen.add_argument("--out", required=True, help="base folder (BASE); datasets go in BASE/NAME")
    gen.add_argument(
        "--resolution",
        type=_resolution,
        default=default.resolution,
        help="grid points, N or NXxNY (default: %(default)s)",
    )
    gen.add_argument(
        "--trajectories",
        type=int,
        default=default.trajectories,
        help="trajectories over all splits, 75/12.5/12.5 train/valid/test (default: %(default)s)",
    )
    gen.add_argument(
        "--steps",
        type=int,
        default=default.steps,
        help="snapshots per trajectory incl. t=0; >= 27 for rollout eval (default: %(default)s)",
    )
    gen.add_argument("--seed", type=int, default=default.seed, help="random seed (default: 0)")
    gen.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="datasets simulated at once, one process each (default: CPU count, %(default)s)",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace a dataset made differently")
    gen.add_argument("--quiet", action="store_true", help="no progress bars")

    chk = sub.add_parser(
        "check",
        help="validate a Well file, split folder or dataset folder",
        description="Check layout (The Well's specification), NaN/Inf values and dead "
        "(constant) frames. Exits 1 with the reasons when something is wrong.",
    )
    chk.add_argument("paths", nargs="+", help="HDF5 file(s) or folder(s)")
    chk.add_argument("--layout-only", action="store_true", help="skip the scan of values")
    chk.add_argument("--warnings", action="store_true", help="also print warnings")
    return parser


def _generate(args: argparse.Namespace) -> int:
    names: list[str] = []
    for n in args.dataset:
        names.extend(DEFAULT_DATASETS if n == "all" else [n])
    config = GenerationConfig(
        resolution=args.resolution, trajectories=args.trajectories, steps=args.steps, seed=args.seed
    )
    start = time.perf_counter()
    paths = generate_datasets(
        names,
        args.out,
        config,
        overwrite=args.overwrite,
        progress=not args.quiet,
        jobs=args.jobs,
    )
    for p in paths:
        print(f"wrote {p}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.paths:
        report = check_path(path, values=not args.layout_only)
        for e in report.errors:
            print(f"error: {e}")
        if args.warnings:
            for w in report.warnings:
                print(f"warning: {w}")
        status = "OK" if report.ok else "FAILED"
        print(
            f"{path}: {status} ({report.files_checked} file(s), {len(report.errors)} error(s), "
            f"{len(report.warnings)} warning(s))"
        )
        failed |= not report.ok
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _generate(args) if args.command == "generate" else _check(args)
    except (DataError, WriteError, FolderLockedError) as e:  # bad input, a full disk, a 2nd run
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as e:  # a solver blew up, a disk filled: no traceback soup
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing partial was left in place", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
