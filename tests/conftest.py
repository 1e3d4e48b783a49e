"""Shared test setup: skip GPU-marked tests cleanly when no CUDA device is present; a process
holding a folder lock (`lock_holder`) for the lock tests; the SIGKILL-then-rerun harness of the
resume tests (fixture `kill_rerun_and_reference`).

Without CUDA, Triton kernels can only run in its interpreter, which Triton reads from
TRITON_INTERPRET when it is first imported: set it here, before any test module imports triton
(importing torch does not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from physok import checkpoint as ck

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


# ---- SIGKILL between checkpoints, then the same command again ---------------------------------
@dataclass
class KilledRun:
    """What `sigkill_rerun` observed: the training step the killed process had logged last,
    where the rerun resumed (the latest checkpoint then) and the records the killed process
    wrote."""

    killed_after_step: int
    resumed_from_step: int
    killed_records: list[dict]


def run_records(run_dir: Path) -> list[dict]:
    """The complete records of a stage run's metrics.jsonl (a line cut by a kill is skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of a stage run's latest model.safetensors."""
    latest = ck.latest_checkpoint(run_dir)
    assert latest is not None, f"no checkpoint in {run_dir}"
    return load_file(latest / ck.MODEL_FILE)


def run_cli(argv: list[str], env: dict[str, str]) -> None:
    """`python -m physok.train *argv` to the end, in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "physok.train", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sigkill_rerun(
    argv: list[str], run_dir: Path, kill_after_step: int, env: dict[str, str], log: Path
) -> KilledRun:
    """Start `python -m physok.train *argv`, SIGKILL it once the stage run `run_dir`'s
    metrics.jsonl holds training step `kill_after_step`, then run the same command again."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "physok.train", *argv], stdout=out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 600
        logged = 0
        while proc.poll() is None and time.monotonic() < deadline:
            steps = [r["step"] for r in run_records(run_dir) if r["kind"] == "train"]
            logged = max(steps, default=0)
            if logged >= kill_after_step:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    killed_records = run_records(run_dir)
    latest = ck.latest_checkpoint(run_dir)
    assert latest is not None, log.read_text()
    resumed_from_step = ck.load_checkpoint(latest).step
    run_cli(argv, env)
    return KilledRun(logged, resumed_from_step, killed_records)


@dataclass
class ResumeComparison:
    """A command SIGKILLed and rerun (in `got_dir`) beside the same command run uninterrupted
    (in `ref_dir`): the watched stage run's metrics.jsonl records and final weights."""

    killed: KilledRun
    got_dir: Path
    ref_dir: Path
    got_records: list[dict]
    ref_records: list[dict]
    got_weights: dict[str, torch.Tensor]
    ref_weights: dict[str, torch.Tensor]


@pytest.fixture
def kill_rerun_and_reference(tmp_path: Path) -> Callable[..., ResumeComparison]:
    """`compare(argv_for, kill_after_step, stage_dir=lambda d: d, **env)`: `argv_for(d)` is a
    `python -m physok.train` command line writing into folder d that continues its run when run
    again (a stage with --resume, or the experiment). It runs in tmp_path/killed, SIGKILLed once
    the stage run `stage_dir(d)` logged `kill_after_step`, then again to the end, and once
    uninterrupted in tmp_path/ref; every process has one intra-op thread (results depend on the
    count) and the extra `env`."""

    def compare(
        argv_for: Callable[[Path], list[str]],
        kill_after_step: int,
        stage_dir: Callable[[Path], Path] = lambda d: d,
        **env: str,
    ) -> ResumeComparison:
        environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
        got, ref = tmp_path / "killed", tmp_path / "ref"
        log = tmp_path / "killed.log"
        killed = sigkill_rerun(argv_for(got), stage_dir(got), kill_after_step, environment, log)
        run_cli(argv_for(ref), environment)
        return ResumeComparison(
            killed,
            got,
            ref,
            run_records(stage_dir(got)),
            run_records(stage_dir(ref)),
            final_weights(stage_dir(got)),
            final_weights(stage_dir(ref)),
        )

    return compare
