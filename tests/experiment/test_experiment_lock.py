"""One run per experiment folder: a second `python -m physok.train --fast` of the same
experiment is refused at once, naming the first; a lock left by a killed run does not block."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from physok.run_lock import lock_file_beside
from physok.train.__main__ import main


def _argv(tmp: Path) -> list[str]:
    return [
        "--fast",
        "--data-dir", str(tmp / "data"),
        "--runs-dir", str(tmp / "runs"),
        "--name", "mini",
        "--device", "cpu",
        "--quiet",
    ]  # fmt: skip


def test_a_second_run_of_the_experiment_is_refused(
    tmp_path: Path, lock_holder, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "runs" / "mini"
    holder = lock_holder(run)
    assert main(_argv(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"error: experiment folder {run} is in use by pid {holder.pid} (`")
    assert "since 20" in err and "another --name" in err
    assert not run.exists() and not (tmp_path / "data").exists()  # nothing was touched


def test_a_lock_left_by_a_killed_run_does_not_block(
    tmp_path: Path, lock_holder, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "runs" / "mini"
    holder = lock_holder(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # A folder that is not an experiment: the run gets past the lock to this check and stops.
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    assert main(_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "is not a physok experiment folder" in err and "in use" not in err
    assert not lock_file_beside(run).exists()  # taken over, then released
