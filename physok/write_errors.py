"""Failures while writing outputs (a full disk, a read-only or unwritable folder) as one clear
line: which path, what was being written, why, and what to do.

Writers wrap their work in `writing(path, what)`; an OSError inside, or the RuntimeError that
`torch.save` raises when its file write fails (`[enforce fail at inline_container.cc] ...`),
comes out as a `WriteError` (an OSError that is also a ValueError, so the command lines report
it as bad input, exit 2, without a traceback). The writer itself removes its temporary files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WriteError", "describe_os_error", "is_torch_write_failure", "translate", "writing"]

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_PERMISSION = (errno.EACCES, errno.EPERM)


class WriteError(OSError, ValueError):
    """Writing `path` failed; `str()` is the whole one-line message (path, what, cause, fix)."""

    def __init__(self, err: int | None, message: str, path: str | os.PathLike) -> None:
        super().__init__(err, message, os.fspath(path))
        self.message = message

    def __str__(self) -> str:
        return self.message


def is_torch_write_failure(exc: BaseException) -> bool:
    """torch.save's C++ writer failing on its file (its RuntimeError carries no errno)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "inline_container" in text or "PytorchStreamWriter" in text or "file write failed" in text
    )


def _reason(err: int | None, strerror: str | None) -> str:
    if err in _NO_SPACE:
        return "no space left on device; free space (or choose a folder on another disk) and rerun"
    if err in _NO_PERMISSION:
        return "permission denied; fix the folder's permissions (or choose another one) and rerun"
    if err == errno.EROFS:
        return "the file system is read-only; choose a writable folder and rerun"
    if err:  # os.strerror, not the exception's text: h5py's runs over several lines
        return f"{os.strerror(err)} ({errno.errorcode.get(err, err)})"
    return " ".join((strerror or "the write failed").split())


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):
        try:
            st = os.statvfs(p)
        except (OSError, AttributeError):  # not there (yet), or no statvfs (Windows)
            continue
        return st.f_bavail * st.f_frsize
    return None


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: its file (or `path`), what failed, and a hint that fits."""
    where = exc.filename if exc.filename is not None else path
    reason = _reason(exc.errno, exc.strerror or (None if exc.errno else str(exc)))
    return f"{where}: {reason}" if where is not None else reason


def _cannot(what: str | None, path: Path) -> str:
    return f"cannot write {what} to {path}" if what else f"cannot write {path}"


def translate(
    exc: BaseException, path: str | os.PathLike, what: str | None = None
) -> WriteError | None:
    """The WriteError for `exc` raised while writing `what` to `path`, or None if `exc` is not
    a write failure (it then propagates unchanged)."""
    if isinstance(exc, WriteError):
        return exc
    path = Path(path)
    if isinstance(exc, OSError):
        where = Path(exc.filename) if exc.filename is not None else path
        shown = where if where == path or path in where.parents else path
        reason = _reason(exc.errno, exc.strerror or str(exc))
        return WriteError(exc.errno, f"{_cannot(what, shown)}: {reason}", path)
    if is_torch_write_failure(exc):
        free = _free_bytes(path)
        if free is not None and free < 64 << 20:  # torch gives no errno: a (nearly) full disk
            reason = _reason(errno.ENOSPC, None)
            return WriteError(errno.ENOSPC, f"{_cannot(what, path)}: {reason}", path)
        return WriteError(
            None,
            f"{_cannot(what, path)}: torch's file write failed ({str(exc).strip()[:200]}); "
            "check the disk (space, quota) and the folder's permissions, then rerun",
            path,
        )
    return None


@contextmanager
def writing(path: str | os.PathLike, what: str | None = None) -> Iterator[None]:
    """Turn write failures inside the block into a WriteError naming `path` and `what`."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        translated = translate(e, path, what)
        if translated is None or translated is e:
            raise
        raise translated from e
