"""One writer per folder: an exclusive lock that says who holds it and dies with its holder.

A run that writes into a folder (an experiment folder, a stage's run directory, a data folder
while datasets are generated) first takes that folder's lock: `fcntl.flock` on a small lock
file that records the owner (pid, host, command, start time). A second run asking for the same
lock is refused at once with a `FolderLockedError` naming the owner and the folder. The kernel
releases a flock when its process ends, however it ends (SIGKILL included), so a lock left by
a killed run never blocks: the next run simply takes it over (its file still names the dead
owner, which `FolderLock.previous_owner` reports).

The lock file is removed on release while the lock is still held; an acquirer checks after
locking that the file it locked is still the one at the path (else it retries), so removal
never lets two holders in. Locks are advisory: only physok's writers take them.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is then not enforced (physok targets Linux)
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderLock", "FolderLockedError", "lock_file_beside"]

_POLL_S = 0.1


class FolderLockedError(ValueError):
    """Another live process holds the lock of a folder; the message names it and the folder."""


def lock_file_beside(folder: str | os.PathLike) -> Path:
    """`<parent>/.<name>.lock`: outside the folder, so deleting or emptying the folder (e.g.
    `--force`) neither removes the lock nor makes the folder look non-empty."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def _command_line() -> str:
    # orig_argv keeps `-m physok.train` as typed (argv[0] would be the module's file path)
    return shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process (it has not recorded itself yet)"
    where = f"pid {owner.get('pid', '?')}"
    if owner.get("host") and owner.get("host") != socket.gethostname():
        where += f" on {owner['host']}"
    command = " ".join(str(owner.get("command", "?")).split())  # one line, even for `-c CODE`
    if len(command) > 160:
        command = command[:157] + "..."
    return f"{where} (`{command}`, since {owner.get('since', '?')})"


class FolderLock:
    """The exclusive lock of `folder`, held through the file `lock_file`.

    `what` names the use in messages ("experiment folder", "data folder"); `hint` is the
    message's advice to the refused run. Use as a context manager, or acquire()/release().
    `enabled=False` makes a lock that does nothing, for processes that must not take it.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        lock_file: str | os.PathLike | None = None,
        *,
        what: str = "folder",
        hint: str = "wait for it to finish or stop it, then rerun",
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled  # False: acquire and release do nothing (e.g. ranks other than 0)
        self.folder = Path(folder)
        self.path = Path(lock_file) if lock_file is not None else lock_file_beside(self.folder)
        self.what, self.hint = what, hint
        self.previous_owner: dict[str, Any] | None = None  # a dead holder whose lock was taken
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 0.0) -> FolderLock:
        """Take the lock, waiting up to `timeout` seconds; FolderLockedError if still held."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FolderLock")
        if fcntl is None or not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise FolderLockedError(
                        f"{self.what} {self.folder} is in use by {_describe(self.owner())}; "
                        f"{self.hint} (lock file {self.path})"
                    ) from None
                time.sleep(_POLL_S)
                continue
            except BaseException:
                os.close(fd)
                raise
            if self._is_current(fd):
                break
            os.close(fd)  # the holder released and removed the file meanwhile: lock the new one
        self._fd = fd
        self.previous_owner = self._read(fd)
        self._record(fd)
        return self

    def release(self) -> None:
        """Give the lock up and remove its file (nothing when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see the module docstring
        except OSError:
            pass  # a read-only folder: the left file holds no lock once fd is closed
        os.close(fd)

    def owner(self) -> dict[str, Any] | None:
        """The owner recorded in the lock file (None when absent or not yet written)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _is_current(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    @staticmethod
    def _read(fd: int) -> dict[str, Any] | None:
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(fd, 4096):
            data += chunk
        try:
            return json.loads(data) if data.strip() else None
        except ValueError:
            return None

    @staticmethod
    def _record(fd: int) -> None:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)

    def __enter__(self) -> FolderLock:
        return self.acquire() if self._fd is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
