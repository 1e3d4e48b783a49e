"""Failed writes of checkpoints and results: one WriteError naming the path, what was being
written and why; the previous state kept; no temporary files left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from physok import atomic_io, write_errors
from physok import checkpoint as ck
from physok.write_errors import WriteError, describe_os_error

# What torch.save raises when its file write fails (it carries no errno)
TORCH_FAILURE = (
    "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
    "data/0: file write failed"
)


def _save(run: Path, step: int) -> Path:
    model = nn.Linear(3, 2)
    return ck.save_checkpoint(
        run,
        step,
        kind="tokeniser",
        model=model,
        model_config={"width": 3},
        train_state={"step": step, "x": torch.zeros(4)},
    )


def _raise(exc: BaseException):
    def fail(*_args, **_kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(
    ("exc", "free", "needle"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), None, "no space left on device"),
        (RuntimeError(TORCH_FAILURE), 0, "no space left on device"),
        (RuntimeError(TORCH_FAILURE), 10 << 30, "torch's file write failed"),
        (PermissionError(errno.EACCES, "Permission denied"), None, "permission denied; fix"),
    ],
)
def test_failed_checkpoint_write_is_named_and_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, free, needle: str
) -> None:
    _save(tmp_path, 1)
    monkeypatch.setattr(ck, "_write_train_state", _raise(exc))
    if free is not None:
        monkeypatch.setattr(write_errors, "_free_bytes", lambda _path: free)
    with pytest.raises(WriteError) as info:
        _save(tmp_path, 2)
    message = str(info.value)
    target = tmp_path / "checkpoints" / "step_00000002"
    assert message.startswith(f"cannot write the tokeniser checkpoint to {target}: {needle}")
    assert "\n" not in message
    if isinstance(exc, OSError):  # a known cause: the permissions hint only for EACCES/EPERM
        assert ("permission" in message) == isinstance(exc, PermissionError)
    assert isinstance(info.value, ValueError)  # the CLIs report it as bad input: exit 2
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001"]
    assert ck.load_checkpoint(tmp_path).step == 1


def test_other_runtime_errors_are_not_taken_for_write_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ck, "_write_train_state", _raise(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug") as info:
        _save(tmp_path, 1)
    assert not isinstance(info.value, WriteError)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


def test_failed_atomic_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.json"
    atomic_io.write_json_atomic(target, {"a": 1})
    monkeypatch.setattr(atomic_io.os, "fsync", _raise(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(WriteError, match=f"cannot write the results to {target}: no space left"):
        atomic_io.write_json_atomic(target, {"a": 2}, what="the results")
    assert os.listdir(tmp_path) == ["results.json"]
    assert target.read_text().strip().endswith("}") and '"a": 1' in target.read_text()


def test_describe_os_error_hints_only_where_it_fits() -> None:
    assert describe_os_error(OSError(errno.ENOSPC, "x", "/d/f")) == (
        "/d/f: no space left on device; free space (or choose a folder on another disk) and rerun"
    )
    assert "permissions" in describe_os_error(PermissionError(errno.EPERM, "x", "/d/f"))
    other = describe_os_error(FileNotFoundError(errno.ENOENT, "No such file", "/d/f"))
    assert other == "/d/f: No such file or directory (ENOENT)"
