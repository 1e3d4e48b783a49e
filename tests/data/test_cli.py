"""`python -m physok.data`: help, generate, check, and clear errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from physok.data.__main__ import main


def test_help_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "physok.data", "generate", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for option in ("--dataset", "--out", "--resolution", "--trajectories", "--steps", "--seed"):
        assert option in out


def test_generate_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--dataset", "gray_scott_reaction_diffusion", "--out", str(tmp_path)]
    argv += ["--resolution", "16x24", "--trajectories", "3", "--steps", "4", "--quiet"]
    assert main(argv) == 0
    root = tmp_path / "gray_scott_reaction_diffusion"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["test", "train", "valid"]
    assert (root / "stats.yaml").exists()
    assert main(["check", str(root)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_fails_with_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.hdf5: cannot be read as HDF5" in out and "FAILED" in out


def test_unknown_dataset_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["generate", "--dataset", "navier", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error: unknown dataset 'navier'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "--dataset", "shear_flow"], "--out"),
        (["generate", "--dataset", "shear_flow", "--out", "x", "--resolution", "big"], "NXxNY"),
        (["generate", "--dataset", "shear_flow", "--out", "x", "--trajectories", "two"], "int"),
    ],
)
def test_bad_options_exit_2(argv: list[str], needle: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_values_exit_2(tmp_path: Path, capsys) -> None:
    argv = ["generate", "--dataset", "shear_flow", "--out", str(tmp_path), "--trajectories", "2"]
    assert main(argv) == 2
    assert "--trajectories must be at least 3" in capsys.readouterr().err
