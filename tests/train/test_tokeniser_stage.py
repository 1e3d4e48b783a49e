"""Tokeniser pretraining stage: learning, exact resume, failure handling, input validation.

Runs go through the CLI entry point (`physok.train.__main__.main`) in-process, except the
SIGKILL test, which needs a real process to kill.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from physok import checkpoint as ck
from physok.models.tokeniser import Tokeniser
from physok.train import tokeniser_stage as stage_mod
from physok.train.__main__ import main

EULER = "euler_multi_quadrants_periodicBC"


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ck.load_checkpoint(run_dir, kind="tokeniser").state_dict


# ---- learning (acceptance) --------------------------------------------------------------------
def test_fast_preset_reduces_validation_error_steadily(
    cli_args, euler_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    args = cli_args(
        euler_base,
        run,
        "--config",
        "fast",
        "--steps",
        "24",
        "--val-every",
        "6",
        "--ckpt-every",
        "24",
        "--set",
        "val_windows=5",
        small=False,
    )
    assert main(args) == 0
    out = capsys.readouterr().out
    val = [r["val_vrmse"][EULER] for r in _records(run, "val")]
    assert [r["step"] for r in _records(run, "val")] == [0, 6, 12, 18, 24]
    # Steady: every validation improves on the previous one; clear: the end is < 0.93x the start
    # (z-scored inputs leave no offset to learn first, so 24 steps of batch 2 give a smaller
    # first drop than RMS inputs did: measured 1.05 -> 0.95).
    assert all(b < a for a, b in itertools.pairwise(val)), val
    assert val[-1] < 0.93 * val[0], val
    train = _records(run, "train")
    assert [r["step"] for r in train] == list(range(1, 25))
    first, last = train[0], train[-1]
    assert sum(r["loss"] for r in train[-6:]) < 0.8 * sum(r["loss"] for r in train[:6])
    for key in ("loss", "lr", "grad_norm", "steps_per_s", "samples_per_s", "elapsed_s"):
        assert key in first and key in last
    assert last["lr"] == 1e-3 and last["elapsed_s"] > first["elapsed_s"]
    # The summary names steps, loss, VRMSE, wall-clock and the checkpoint.
    assert "steps:       24" in out and f"val VRMSE:   {EULER}: {val[-1]:.4f}" in out
    assert "wall-clock:" in out and "checkpoints/step_00000024" in out
    # The checkpoint is a loadable tokeniser.
    tok = Tokeniser.from_pretrained(run)
    assert tok.config.channels == (8, 16, 32) and tok.config.field_names[0] == "energy"


def test_two_datasets_mix_one_dataset_per_batch(cli_args, mixed_base: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = cli_args(
        mixed_base,
        run,
        "--steps",
        "6",
        "--val-every",
        "6",
        "--ckpt-every",
        "6",
        "--datasets",
        f"{EULER},noise_flow",
    )
    assert main(args) == 0
    used = {r["dataset"] for r in _records(run, "train")}
    assert used == {EULER, "noise_flow"}  # equal probability: both appear in 6 draws here
    assert set(_records(run, "val")[-1]["val_vrmse"]) == {EULER, "noise_flow"}
    tok = Tokeniser.from_pretrained(run)
    # Registry: the default names (tracer and pressure are already in it) in their order.
    assert tok.config.field_names[:3] == ("energy", "density", "pressure")
    assert "tracer" in tok.config.field_names


# ---- loaders and throughput accounting ---------------------------------------------------------
def test_dali_loader_trains_exactly_like_the_torch_loader_and_mfu_is_logged(
    cli_args, mixed_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nvidia.dali", reason="the DALI loader needs nvidia-dali")
    # A declared peak makes MFU reportable on any device (on CPU it is only arithmetic).
    monkeypatch.setenv("PHYSOK_PEAK_TFLOPS", "0.5")
    losses = {}
    for loader in ("torch", "dali"):
        run = tmp_path / loader
        extra = ("--steps", "3", "--val-every", "3", "--ckpt-every", "3", "--set")
        args = cli_args(
            mixed_base, run, *extra, f"loader={loader}", "--datasets", f"{EULER},noise_flow"
        )
        assert main(args) == 0
        records = _records(run, "train")
        losses[loader] = [(r["dataset"], r["loss"]) for r in records]
        for r in records:
            assert r["flops_per_step"] > 1e6
            expected = r["flops_per_step"] / r["step_time_s"] / 0.5e12
            assert r["mfu"] == pytest.approx(expected, rel=1e-9)
    assert losses["dali"] == losses["torch"]


def test_unknown_loader_names_the_option(
    cli_args, euler_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(cli_args(euler_base, tmp_path / "run", "--set", "loader=jax")) == 2
    err = capsys.readouterr().err
    assert "loader" in err and "dali" in err


# ---- resume (acceptance) ----------------------------------------------------------------------
def test_interrupted_then_resumed_run_equals_uninterrupted(
    cli_args, euler_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ("--steps", "6", "--ckpt-every", "3", "--val-every", "3", "--seed", "3")
    assert main(cli_args(euler_base, tmp_path / "ref", *common)) == 0

    real_step, calls = stage_mod.train_step, {"n": 0}

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint and one more step
            raise KeyboardInterrupt
        return real_step(*a, **kw)

    monkeypatch.setattr(stage_mod, "train_step", interrupted)
    run = tmp_path / "run"
    assert main(cli_args(euler_base, run, *common)) == 130
    assert ck.load_checkpoint(run).step == 3
    monkeypatch.setattr(stage_mod, "train_step", real_step)
    assert main(cli_args(euler_base, run, "--resume")) == 0  # settings come from the checkpoint

    ref, got = _final_weights(tmp_path / "ref"), _final_weights(run)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    # Same batches and scales after the resume: identical per-step losses, no duplicate steps.
    ref_loss = [(r["step"], r["loss"], r["scales"]) for r in _records(tmp_path / "ref", "train")]
    got_loss = [(r["step"], r["loss"], r["scales"]) for r in _records(run, "train")]
    assert got_loss == ref_loss
    assert [r["step"] for r in _records(run, "val")] == [0, 3, 6]


def test_sigkill_between_checkpoints_then_same_command_equals_uninterrupted_bit_for_bit(
    cli_args, euler_base: Path, kill_rerun_and_reference
) -> None:
    """kill -9 mid-run between checkpoints (after step 6 of 12; checkpoints every 4 steps,
    validation every 3), then the same command again: the final weights are bit-identical to an
    uninterrupted run's and so are every logged loss, gradient norm and drawn scale."""
    common = ("--steps", "12", "--ckpt-every", "4", "--val-every", "3", "--seed", "3", "--resume")
    r = kill_rerun_and_reference(lambda run: cli_args(euler_base, run, *common), 6)
    resumed, killed = r.killed.resumed_from_step, r.killed.killed_after_step
    assert resumed % 4 == 0 and resumed < killed < 12  # killed between checkpoints
    # the rerun continued the killed run (its records up to the checkpoint are kept as written)
    kept = [x for x in r.killed.killed_records if x["step"] <= resumed]
    assert r.got_records[: len(kept)] == kept

    assert r.got_weights.keys() == r.ref_weights.keys()
    for k in r.ref_weights:
        assert torch.equal(r.got_weights[k], r.ref_weights[k]), k

    def train(records: list[dict]) -> list[tuple]:
        return [
            (x["step"], x["loss"], x["grad_norm"], x["scales"])
            for x in records
            if x["kind"] == "train"
        ]

    def val(records: list[dict]) -> list[tuple]:
        return [(x["step"], x["val_vrmse"]) for x in records if x["kind"] == "val"]

    assert [x[0] for x in train(r.got_records)] == list(range(1, 13))
    assert train(r.got_records) == train(r.ref_records)
    assert val(r.got_records) == val(r.ref_records)
    assert [x[0] for x in val(r.got_records)] == [0, 3, 6, 9, 12]
    # the killed process was on the same trajectory up to its last step
    before_kill = train(r.killed.killed_records)
    assert before_kill == train(r.ref_records)[: len(before_kill)]


# ---- failures (acceptance) ----------------------------------------------------------------------
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(
    cli_args, euler_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_loss, calls = stage_mod.reconstruction_loss, {"n": 0}

    def poisoned(recon, target):
        calls["n"] += 1
        loss = real_loss(recon, target)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(stage_mod, "reconstruction_loss", poisoned)
    run = tmp_path / "run"
    rc = main(cli_args(euler_base, run, "--steps", "6", "--ckpt-every", "2", "--val-every", "6"))
    err = capsys.readouterr().err
    assert rc == 3
    assert "non-finite loss or gradient at step 5" in err
    assert "Last good checkpoint: " in err and "step_00000004" in err
    ckpt = ck.load_checkpoint(run)
    assert ckpt.step == 4
    assert all(v.isfinite().all() for v in ckpt.state_dict.values())
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4]


def test_corrupt_checkpoint_gives_clear_error_on_resume(
    cli_args, euler_base: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert main(cli_args(euler_base, run, "--steps", "2", "--ckpt-every", "2")) == 0
    weights = run / "checkpoints" / "step_00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    assert main(cli_args(euler_base, run, "--resume", "--steps", "4")) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and "truncated" in err


def test_mismatched_checkpoint_gives_clear_error_on_resume(
    cli_args, euler_base: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert main(cli_args(euler_base, run, "--steps", "2", "--ckpt-every", "2")) == 0
    capsys.readouterr()
    # Asking for another architecture within the same run is refused up front ...
    assert main(cli_args(euler_base, run, "--resume", "--set", "model.channels=[4,8,16]")) == 2
    assert "cannot change within a run" in capsys.readouterr().err
    # ... as is another SOAP preconditioner limit (it sets the shapes of the saved state) ...
    assert main(cli_args(euler_base, run, "--resume", "--set", "soap_max_precond_dim=64")) == 2
    err = capsys.readouterr().err
    assert "cannot change within a run" in err and "soap_max_precond_dim" in err
    # ... and weights that do not fit the recorded config are reported with the keys.
    cfg_file = run / "checkpoints" / "step_00000002" / "config.json"
    meta = json.loads(cfg_file.read_text())
    meta["model_config"]["channels"] = [4, 8, 16]
    cfg_file.write_text(json.dumps(meta))
    assert main(cli_args(euler_base, run, "--resume", "--steps", "4")) == 2
    err = capsys.readouterr().err
    assert "model.safetensors does not fit the model" in err and "shape mismatch" in err


# ---- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--datasets", "no_such_set"], r"--datasets no_such_set: unknown dataset"),
        (["--datasets", "shear_flow"], r"--datasets shear_flow: folder .* is missing; generate"),
        (["--datasets", ""], r"--datasets: give at least one dataset name"),
        (["--set", "input_frames=8"], r"input_frames: 8 frames is not 1 \+ 2\^n"),
        (["--set", "window=5"], r"window: windows of 5 frames cannot hold input_frames=9"),
        (["--set", "stepz=1"], r"--set stepz: unknown option .* valid keys: amp, batch_size"),
        (["--set", "lr=fast"], r"--set lr: expected a number"),
        (["--batch-size", "40"], r"--batch-size 40: dataset euler\S* has 30 training windows"),
        (["--set", "model.channels=[4,8]"], r"model config .*needs one entry per depth"),
        (
            ["--set", 'model.field_names=["density","pressure"]'],
            r"channels \['energy', 'momentum_x', 'momentum_y'\] are not in the tokeniser's",
        ),
        (
            [
                "--set",
                "model.spatial_scales=[[2],[2,4],[4,8]]",
                "--set",
                "model.eval_scales=[[1,2],[2,4],[2,8]]",
            ],
            r"grid \(32, 32\) is not divisible by the largest spatial compression 64",
        ),
        (["--steps", "0"], r"--steps: must be >= 1"),
        (["--device", "tpu"], r"--device 'tpu' is not one of"),
    ],
)
def test_bad_inputs_name_the_option(
    cli_args, euler_base: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:

    assert main(cli_args(euler_base, tmp_path / "run", "--steps", "1", *extra)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_missing_data_dir_and_existing_run(
    cli_args, euler_base: Path, tmp_path: Path, capsys
) -> None:
    assert main(cli_args(tmp_path / "nowhere", tmp_path / "r0", "--steps", "1")) == 2
    assert "--data-dir" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(cli_args(euler_base, run, "--steps", "1", "--ckpt-every", "1")) == 0
    capsys.readouterr()
    assert main(cli_args(euler_base, run, "--steps", "2")) == 2
    assert "already holds checkpoints (latest step_00000001); pass --resume" in (
        capsys.readouterr().err
    )


def test_resume_without_checkpoint_starts_fresh_and_config_must_match(
    cli_args, euler_base: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert main(cli_args(euler_base, run, "--steps", "1", "--resume")) == 0
    assert "no checkpoint in" in capsys.readouterr().out
    assert main(cli_args(euler_base, run, "--resume")) == 0  # already complete: a no-op
    out = capsys.readouterr().out
    assert "already at step 1" in out and "checkpoints/step_00000001" in out
    assert main(cli_args(euler_base, run, "--resume", "--config", "paper")) == 2
    assert "was started with --config fast" in capsys.readouterr().err


def test_cli_help_lists_options_and_preset_values() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "physok.train", "tokeniser", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    ).stdout
    for option in (
        "--config",
        "--data-dir",
        "--datasets",
        "--run-dir",
        "--steps",
        "--batch-size",
        "--lr",
        "--val-every",
        "--ckpt-every",
        "--seed",
        "--resume",
        "--device",
        "--set",
    ):
        assert option in out
    assert "168000" in out and "grad_clip" in out
