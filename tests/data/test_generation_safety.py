"""Data generation under failure: a killed run's workers die with it, one writer per data
folder, stale `.partial` folders cleaned only when their writer is gone, and a full disk gives
one clear error and leaves nothing behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from physok.data import well_format
from physok.data.__main__ import main
from physok.data.generate import (
    DATA_LOCK_FILE,
    GenerationConfig,
    generate_datasets,
    remove_stale_partials,
)
from physok.run_lock import FolderLock, lock_file_beside

NAMES = ["gray_scott_reaction_diffusion", "shear_flow"]
TINY = GenerationConfig(resolution=(16, 16), trajectories=3, steps=3)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_GENERATE = """
import sys
from physok.data.generate import GenerationConfig, generate_datasets
if __name__ == "__main__":
    generate_datasets(sys.argv[2:], sys.argv[1], GenerationConfig(), progress=False, jobs=2)
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its reaper (not us) can remove it


@linux_only
def test_killing_the_parent_stops_its_workers(tmp_path: Path, subprocess_env) -> None:
    base = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", _GENERATE, str(base), *NAMES],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Both workers are inside a dataset (holding its lock) with minutes of simulation left.
        deadline = time.monotonic() + 120
        while not all(lock_file_beside(base / n).exists() for n in NAMES):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        helpers = _children(proc.pid)  # the workers and the progress queue's manager
        assert len(helpers) >= 3
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in helpers if _alive(p)], "workers outlived their parent"
    assert not any((base / n).exists() for n in NAMES)  # nothing was renamed into place
    # A rerun takes the dead run's locks over and replaces its `.partial` folders.
    paths = generate_datasets(NAMES, base, TINY, progress=False, jobs=1)
    assert [p.name for p in paths] == NAMES
    assert sorted(p.name for p in base.iterdir()) == NAMES  # no .partial, no lock file


def test_a_second_run_into_the_data_folder_is_refused(
    tmp_path: Path, lock_holder, capsys: pytest.CaptureFixture
) -> None:
    base = tmp_path / "data"
    holder = lock_holder(base, base / DATA_LOCK_FILE)
    argv = ["generate", "--dataset", NAMES[0], "--out", str(base), "--resolution", "16"]
    assert main([*argv, "--trajectories", "3", "--steps", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"error: data folder {base} is in use by pid {holder.pid}" in err
    assert not (base / NAMES[0]).exists()


def test_finished_data_is_reused_without_the_lock(tmp_path: Path, lock_holder) -> None:
    base = tmp_path / "data"
    generate_datasets(NAMES[:1], base, TINY, progress=False)
    lock_holder(base, base / DATA_LOCK_FILE)  # e.g. another experiment generating other data
    assert generate_datasets(NAMES[:1], base, TINY, progress=False) == [base / NAMES[0]]


def test_stale_partial_folders_are_removed_only_when_their_writer_is_gone(
    tmp_path: Path,
) -> None:
    dead = tmp_path / f".{NAMES[0]}.partial"  # left by a killed run: its lock is free
    live = tmp_path / f".{NAMES[1]}.partial"  # being written: its dataset lock is held
    for folder in (dead, live):
        (folder / "data" / "train").mkdir(parents=True)
        (folder / "data" / "train" / "x.hdf5.tmp").write_bytes(b"half a file")
    with FolderLock(tmp_path / NAMES[1]):
        assert remove_stale_partials(tmp_path) == [dead]
    assert not dead.exists() and live.exists()


@pytest.mark.parametrize(
    ("error", "needle", "permission_hint"),
    [
        (errno.ENOSPC, "no space left on device", False),
        (errno.EACCES, "permission denied; fix the folder's permissions", True),
        (errno.EIO, "Input/output error (EIO)", False),
    ],
)
def test_a_failed_write_is_one_line_exit_2_and_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    error: int,
    needle: str,
    permission_hint: bool,
) -> None:
    real = well_format._write_hdf5
    calls = []

    def fail_second_file(path: Path, traj: well_format.WellTrajectories) -> None:
        calls.append(path)
        if len(calls) < 2:
            return real(path, traj)
        path.write_bytes(b"the start of a file")  # what a full disk leaves: a partial write
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(well_format, "_write_hdf5", fail_second_file)
    base = tmp_path / "data"
    argv = ["generate", "--dataset", NAMES[0], "--out", str(base), "--resolution", "16"]
    assert main([*argv, "--trajectories", "3", "--steps", "3", "--quiet", "--jobs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"error: cannot write dataset {NAMES[0]} to {base / NAMES[0]}: {needle}" in err
    assert ("permission" in err) == permission_hint
    assert list(base.iterdir()) == []  # no dataset, no .partial, no lock file
