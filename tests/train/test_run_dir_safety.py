"""A stage's run directory: one run at a time, and a full disk while checkpointing is one clear
error (exit 2) that leaves the last good checkpoint and no temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from physok import checkpoint as ck
from physok import write_errors
from physok.train.__main__ import main

TORCH_FAILURE = (
    "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
    "data/0: file write failed"
)


def test_a_second_run_into_the_run_dir_is_refused(
    cli_args, euler_base: Path, tmp_path: Path, lock_holder, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    holder = lock_holder(run)
    assert main(cli_args(euler_base, run, "--steps", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"error: run directory {run} is in use by pid {holder.pid} (`")
    assert "another --run-dir" in err
    assert not run.exists()


def test_disk_full_while_checkpointing_is_one_line_and_exit_2(
    cli_args,
    euler_base: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    run = tmp_path / "run"
    real, calls = ck._write_train_state, []

    def full_after_first(path: Path, state: dict) -> None:
        calls.append(path)
        if len(calls) > 1:  # the disk fills up after the first checkpoint
            path.write_bytes(b"PK\x03\x04 half a zip")
            raise RuntimeError(TORCH_FAILURE)
        real(path, state)

    monkeypatch.setattr(ck, "_write_train_state", full_after_first)
    monkeypatch.setattr(write_errors, "_free_bytes", lambda _path: 0)
    args = cli_args(euler_base, run, "--steps", "4", "--ckpt-every", "2", "--val-every", "4")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    target = run / "checkpoints" / "step_00000004"
    assert err == (
        f"error: cannot write the tokeniser checkpoint to {target}: no space left on device; "
        "free space (or choose a folder on another disk) and rerun"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000002"]
    assert ck.load_checkpoint(run).step == 2  # a rerun with --resume continues from here
    assert not (run.parent / f".{run.name}.lock").exists()
