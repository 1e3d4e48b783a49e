"""Generated Euler data and small tokeniser settings shared by the training tests, and the
SIGKILL-then-rerun harness of the resume tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from physok import checkpoint as ck
from physok.data.generate import GenerationConfig, generate_dataset
from physok.data.well_format import BoundarySpec, WellTrajectories, write_well_file

EULER = "euler_multi_quadrants_periodicBC"
# A tokeniser small enough for quick SOAP steps on 2 cores; the scale sets stay the paper's, so
# grids must be divisible by 2*4*4 = 32.
SMALL_MODEL = ["--set", "model.channels=[4,8,8]", "--set", "model.norm_groups=2"]


@pytest.fixture(scope="session")
def euler_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real (simulated) Euler data at 32x32: 6 train, 1 valid, 1 test trajectories of 14
    snapshots, so 30 training and 5 validation windows of 10 frames."""
    base = tmp_path_factory.mktemp("train_data")
    generate_dataset(
        EULER,
        base,
        GenerationConfig(resolution=(32, 32), trajectories=8, steps=14, seed=0),
        progress=False,
    )
    return base


@pytest.fixture(scope="session")
def mixed_base(tmp_path_factory: pytest.TempPathFactory, euler_base: Path) -> Path:
    """The Euler data next to a second, random-valued dataset `noise_flow` (tracer, pressure;
    32x32), for multi-dataset mixing: different channels, so a mixed batch would be detected."""
    base = tmp_path_factory.mktemp("mixed_data")
    (base / EULER).symlink_to(euler_base / EULER, target_is_directory=True)
    rng = np.random.default_rng(0)
    for split, n_traj in (("train", 2), ("valid", 1)):
        traj = WellTrajectories(
            dataset_name="noise_flow",
            time=np.arange(12) * 0.1,
            coords={"x": (np.arange(32) + 0.5) / 32, "y": (np.arange(32) + 0.5) / 32},
            t0_fields={
                "tracer": rng.normal(size=(n_traj, 12, 32, 32)),
                "pressure": rng.uniform(1, 2, size=(n_traj, 12, 32, 32)),
            },
            boundary_conditions=[BoundarySpec("x", "periodic"), BoundarySpec("y", "periodic")],
        )
        write_well_file(base / "noise_flow" / "data" / split / "noise_flow.hdf5", traj)
    return base


@pytest.fixture
def cli_args() -> Callable[..., list[str]]:
    """`cli_args(base, run_dir, *extra, small=True)`: argv for `physok.train tokeniser` on CPU,
    no progress bar, 2 validation windows, and (small=True) the small tokeniser."""

    def build(base: Path, run_dir: Path, *extra: str, small: bool = True) -> list[str]:
        args = [
            "tokeniser",
            "--data-dir",
            str(base),
            "--datasets",
            EULER,
            "--run-dir",
            str(run_dir),
            "--device",
            "cpu",
            "--set",
            "progress=false",
            "--set",
            "val_windows=2",
        ]
        return args + (SMALL_MODEL if small else []) + list(extra)

    return build


# Rollout stage: the small tokeniser above and a one-block processor of width 16.
TINY_PROCESSOR = [
    *("--set", "processor.dim=16", "--set", "processor.depth=1", "--set", "processor.heads=2"),
    *("--set", "processor.mlp_hidden=32", "--set", "processor.norm_groups=2"),
]


@pytest.fixture
def rollout_args() -> Callable[..., list[str]]:
    """`rollout_args(base, run_dir, *extra, small=True)`: argv for `physok.train rollout` on
    CPU, no progress bar, 2 validation windows, epochs of 1 step with 1 warmup and 1 cooldown
    epoch (so runs of >= 2 steps have a valid schedule), and (small=True) the small tokeniser
    with a tiny processor."""

    def build(base: Path, run_dir: Path, *extra: str, small: bool = True) -> list[str]:
        args = [
            "rollout",
            *("--data-dir", str(base), "--datasets", EULER, "--run-dir", str(run_dir)),
            *("--device", "cpu", "--set", "progress=false", "--set", "val_windows=2"),
            *("--set", "epoch_steps=1", "--set", "cooldown_epochs=1"),
        ]
        return args + ([*SMALL_MODEL, *TINY_PROCESSOR] if small else []) + list(extra)

    return build


# ---- SIGKILL between checkpoints, then the same command again ---------------------------------
@dataclass
class KilledRun:
    """What `sigkill_rerun` observed: the step the killed process had logged last, where the
    rerun resumed (the latest checkpoint then), the records the killed process wrote, and the
    rerun's output."""

    killed_after_step: int
    resumed_from_step: int
    killed_records: list[dict]
    rerun_stdout: str


def train_records(run_dir: Path) -> list[dict]:
    """The complete records of a run's metrics.jsonl (a line cut by a kill is skipped)."""
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
    """The tensors of the latest checkpoint's model.safetensors."""
    latest = ck.latest_checkpoint(run_dir)
    assert latest is not None, f"no checkpoint in {run_dir}"
    return load_file(latest / ck.MODEL_FILE)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: one intra-op thread (results depend on the count,
    so the killed, rerun and reference processes must all use the same)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "physok.train", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def sigkill_rerun(
    argv: list[str], run_dir: Path, kill_after_step: int, env: dict[str, str], log: Path
) -> KilledRun:
    """Start `python -m physok.train *argv`, SIGKILL it once metrics.jsonl holds training step
    `kill_after_step`, then run the same command again to the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "physok.train", *argv], stdout=out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        logged = 0
        while proc.poll() is None and time.monotonic() < deadline:
            steps = [r["step"] for r in train_records(run_dir) if r["kind"] == "train"]
            logged = max(steps, default=0)
            if logged >= kill_after_step:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    killed_records = train_records(run_dir)
    resumed_from = ck.latest_checkpoint(run_dir)
    assert resumed_from is not None, log.read_text()
    resumed_from_step = ck.load_checkpoint(resumed_from).step
    rerun = run_cli(argv, env)
    return KilledRun(logged, resumed_from_step, killed_records, rerun.stdout)


@dataclass
class ResumeComparison:
    """A run killed with SIGKILL and rerun (`got`) beside the same command run uninterrupted
    (`ref`): their metrics.jsonl records and final weights."""

    killed: KilledRun
    got_records: list[dict]
    ref_records: list[dict]
    got_weights: dict[str, torch.Tensor]
    ref_weights: dict[str, torch.Tensor]


@pytest.fixture
def kill_rerun_and_reference(tmp_path: Path) -> Callable[..., ResumeComparison]:
    """`compare(argv_for, kill_after_step, **env)`: `argv_for(run_dir)` is the stage's command
    line (with --resume, so the same command starts, and continues, a run); it runs in
    tmp_path/killed (SIGKILLed after `kill_after_step`, then rerun) and tmp_path/ref (once,
    uninterrupted), each in its own process with one thread and the extra `env`."""

    def compare(
        argv_for: Callable[[Path], list[str]], kill_after_step: int, **env: str
    ) -> ResumeComparison:
        environment = cli_env(**env)
        got, ref = tmp_path / "killed", tmp_path / "ref"
        killed = sigkill_rerun(
            argv_for(got), got, kill_after_step, environment, tmp_path / "killed.log"
        )
        run_cli(argv_for(ref), environment)
        return ResumeComparison(
            killed, train_records(got), train_records(ref), final_weights(got), final_weights(ref)
        )

    return compare
