"""Shared test setup: skip GPU-marked tests cleanly when no CUDA device is present; a process
holding a folder lock (`lock_holder`) for the lock tests.

Without CUDA, Triton kernels can only run in its interpreter, which Triton reads from
TRITON_INTERPRET when it is first imported: set it here, before any test module imports triton
(importing torch does not).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


REPO_ROOT = Path(__file__).resolve().parents[1]


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


_HOLD_LOCK = """
import sys
from physok.run_lock import FolderLock
lock = FolderLock(sys.argv[1], sys.argv[2] or None).acquire()
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills this process)
"""


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a `python` subprocess that must import this checkout's physok."""
    return _python_env()


@pytest.fixture
def lock_holder() -> Iterator[Callable[..., subprocess.Popen]]:
    """`lock_holder(folder, lock_file=None)`: a separate process that holds that FolderLock
    (returned once it does); killed at the end of the test."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path, lock_file: Path | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(folder), str(lock_file or "")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_python_env(),
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
