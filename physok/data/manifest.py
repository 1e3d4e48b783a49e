"""The files of a generated dataset as recorded at generation (size, SHA-256, mtime), and the
check of a dataset folder against that record, so that a truncated, edited or missing file is
never reused as if it were the data the record describes.

The check hashes only files whose size is right but whose modification time changed (a copied
folder, or a file edited in place): an untouched dataset costs one `stat` per file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

DATA_SUFFIXES = (".hdf5", ".h5")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dataset_files(folder: Path) -> list[Path]:
    """Every file a reader of the dataset uses: data/<split>/*.hdf5|*.h5 and stats.yaml."""
    data = folder / "data"
    files = [p for p in data.glob("*/*") if p.suffix in DATA_SUFFIXES and p.is_file()]
    stats = folder / "stats.yaml"
    return sorted([*files, *([stats] if stats.is_file() else [])])


def describe_files(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{path relative to `folder`: {"bytes", "sha256", "mtime_ns"}} of the dataset's files."""
    folder = Path(folder)
    out = {}
    for p in _dataset_files(folder):
        st = p.stat()
        out[p.relative_to(folder).as_posix()] = {
            "bytes": st.st_size,
            "sha256": _sha256(p),
            "mtime_ns": st.st_mtime_ns,
        }
    return out


def file_problems(folder: str | os.PathLike, recorded: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between the dataset in `folder` and its recorded files: one line per file
    (missing, another size, another SHA-256, not in the record); [] when they match."""
    folder = Path(folder)
    problems = []
    for rel, info in sorted(recorded.items()):
        p = folder / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
            continue
        st = p.stat()
        if st.st_size != info.get("bytes"):
            problems.append(f"{p}: {st.st_size} bytes, {info.get('bytes')} when generated")
        elif st.st_mtime_ns != info.get("mtime_ns") and _sha256(p) != info.get("sha256"):
            problems.append(f"{p}: content changed since generation (SHA-256 differs)")
    extra = [p for p in _dataset_files(folder) if p.relative_to(folder).as_posix() not in recorded]
    problems += [f"{p}: not part of the generated dataset" for p in extra]
    return problems
