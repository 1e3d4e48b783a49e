"""Folder locks: a second holder is refused with the owner named; a killed owner never blocks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from physok.run_lock import FolderLock, FolderLockedError, lock_file_beside

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock locks are POSIX-only")


def test_a_second_process_is_refused_naming_the_owner(tmp_path: Path, lock_holder) -> None:
    folder = tmp_path / "runs" / "fast"
    holder = lock_holder(folder)
    lock = FolderLock(folder, what="experiment folder", hint="wait for it")
    with pytest.raises(FolderLockedError) as info:
        lock.acquire()
    message = str(info.value)
    assert "\n" not in message
    assert f"experiment folder {folder} is in use by pid {holder.pid}" in message
    assert "-c" in message and "since 20" in message and "UTC" in message  # command, since when
    assert "wait for it" in message
    assert not lock.held


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path, lock_holder) -> None:
    folder = tmp_path / "run"
    holder = lock_holder(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_file_beside(folder).exists()  # no clean-up happened: the file names the dead pid
    with FolderLock(folder) as lock:
        assert lock.previous_owner is not None and lock.previous_owner["pid"] == holder.pid
        assert json.loads(lock_file_beside(folder).read_text())["pid"] == os.getpid()
    assert not lock_file_beside(folder).exists()  # released: the file is removed


def test_waiting_acquire_gets_the_lock_once_released(tmp_path: Path, lock_holder) -> None:
    holder = lock_holder(tmp_path / "data", tmp_path / "data" / ".lock")
    holder.stdin.close()  # the holder exits normally and releases
    lock = FolderLock(tmp_path / "data", tmp_path / "data" / ".lock").acquire(timeout=20)
    assert lock.held
    lock.release()


def test_one_holder_per_folder_within_a_process_too(tmp_path: Path) -> None:
    first = FolderLock(tmp_path / "x").acquire()
    with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
        FolderLock(tmp_path / "x").acquire()
    FolderLock(tmp_path / "y").acquire().release()  # another folder: its own lock
    first.release()
    FolderLock(tmp_path / "x").acquire().release()
    with FolderLock(tmp_path / "x", enabled=False) as disabled:  # e.g. a rank other than 0
        assert not disabled.held
        FolderLock(tmp_path / "x").acquire().release()
