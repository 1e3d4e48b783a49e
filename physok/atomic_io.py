"""Atomic file writes for everything physok produces outside checkpoints (reports, figures,
JSON results, caches).

A write goes to a temporary file beside the target, is flushed and fsynced, then renamed over
the target with `os.replace`: a reader, or a crash, sees the old file or the new one, never a
part, and nothing already written is lost. A failed write (a full disk, no permission) removes
its temporary file and raises `physok.write_errors.WriteError` naming the path. Checkpoints
have their own directory-level scheme (`physok.checkpoint`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from physok.write_errors import writing

__all__ = ["write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, what: str | None = None) -> Path:
    """Write `data` to `path` atomically (creating its folder); returns the path. `what` names
    the content in the WriteError of a failed write (e.g. "the results")."""
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, what: str | None = None) -> Path:
    """`write_bytes_atomic` of UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"), what=what)


def write_json_atomic(path: str | os.PathLike, data: Any, *, what: str | None = None) -> Path:
    """`data` as indented, strict JSON (NaN/Inf are an error: convert them to null first)."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n", what=what)
