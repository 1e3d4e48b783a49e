"""Worker processes that end when the process that started them dies, however it dies.

A pool worker whose parent is killed (SIGKILL, an out-of-memory kill) is otherwise orphaned: it
keeps computing, keeps writing into folders a rerun is about to claim, and never exits (its
task queue never closes, as it holds both ends itself). `exit_with_parent` is a pool
initialiser (`ProcessPoolExecutor(initializer=exit_with_parent, initargs=(os.getpid(),))`)
that makes the kernel kill the worker with its parent on Linux (`prctl(PR_SET_PDEATHSIG)`), and
elsewhere polls the parent pid from a daemon thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

__all__ = ["POLL_S", "exit_with_parent"]

POLL_S = 0.5  # the portable fallback notices a dead parent within this many seconds
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    stopped = threading.Event()
    while not stopped.wait(POLL_S):
        if os.getppid() != parent_pid:
            os._exit(1)  # an orphan must not finish its task: nobody will clean up after it


def exit_with_parent(parent_pid: int) -> None:
    """End this process (exit status 1, no clean-up) as soon as `parent_pid` is gone."""
    if not _set_parent_death_signal():
        threading.Thread(target=_watch, args=(parent_pid,), daemon=True).start()
    # The parent may have died before the death signal was armed: it would never come.
    if os.getppid() != parent_pid:
        os._exit(1)
