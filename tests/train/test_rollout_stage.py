"""Rollout training stage: learning, exact resume after SIGKILL, NaN handling, tokeniser
checkpoints (mismatch errors, mostly_frozen), option validation, CLI help.

Runs go through the CLI entry point (`physok.train.__main__.main`) in-process, except the
SIGKILL test, which needs a real process to kill.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from physok import checkpoint as ck
from physok.models.processor import Processor, ProcessorConfig
from physok.models.rollout_model import RolloutModel
from physok.models.tokeniser import Tokeniser, TokeniserConfig
from physok.models.tokeniser.freezing import INTERFACE_MODULES
from physok.train import rollout_stage as stage_mod
from physok.train.__main__ import main

EULER = "euler_multi_quadrants_periodicBC"


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return ck.load_checkpoint(run_dir, kind="rollout").state_dict


def _small_tokeniser(path: Path, seed: int = 7, **overrides) -> Path:
    """A tokeniser checkpoint (save_pretrained) with the rollout tests' small architecture."""
    torch.manual_seed(seed)
    cfg = TokeniserConfig.fast(channels=(4, 8, 8), norm_groups=2, **overrides)
    Tokeniser(cfg).save_pretrained(path)
    return path


# ---- learning (acceptance) --------------------------------------------------------------------
def test_fast_preset_validation_error_falls(
    rollout_args, euler_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    extra = ("--config", "fast", "--steps", "24", "--val-every", "8", "--ckpt-every", "24")
    extra += ("--lr", "2e-3", "--set", "val_windows=5", "--set", "epoch_steps=8")
    extra += ("--set", "cooldown_epochs=2")  # E = 3, W = 1, C = 2
    assert main(rollout_args(euler_base, run, *extra)) == 0
    out = capsys.readouterr().out
    val = _records(run, "val")
    assert [r["step"] for r in val] == [0, 8, 16, 24]
    mae = [r["val_mae"][EULER] for r in val]
    vr = [r["val_vrmse"][EULER] for r in val]
    # clearly (delta target: MAE in units of the context's typical change, where a zero
    # output, persistence, already scores ~0.66; measured 0.66 -> 0.59 in 24 steps)
    assert mae[-1] < 0.95 * mae[0], mae
    assert min(mae[1:]) < mae[0] and vr[-1] < vr[0], (mae, vr)
    train = _records(run, "train")
    assert [r["step"] for r in train] == list(range(1, 25))
    # The schedule: epoch 1 at 0.1 x peak; epochs 2-3 the cooldown from the peak (r = 0, 1).
    assert [r["epoch"] for r in train] == [1] * 8 + [2] * 8 + [3] * 8
    assert train[0]["lr"] == pytest.approx(2e-4) and train[8]["lr"] == pytest.approx(2e-3)
    assert train[-1]["lr"] == pytest.approx(2e-3 * (1 - 0.5**0.5))
    for key in ("loss", "lr", "epoch", "grad_norm", "steps_per_s", "samples_per_s"):
        assert key in train[-1]
    assert f"val MAE:     {EULER}: {mae[-1]:.4f}" in out and "checkpoints/step_00000024" in out
    model = RolloutModel.from_pretrained(run)  # the checkpoint is a loadable rollout model
    assert model.config.processor.dim == 16 and model.config.tokeniser.channels == (4, 8, 8)
    # validation NEPS: the ensemble NEPS of the validation windows' frame-10 predictions
    _check_validation_neps(model, euler_base, val[-1])


def _check_validation_neps(model: RolloutModel, base: Path, record: dict) -> None:
    from physok.data.reader import WellWindowDataset
    from physok.data.registry import FieldRegistry
    from physok.metrics.neps import neps_from_powers, shell_powers
    from physok.ops.rms_normalise import rms_normalise
    from physok.train.common import validation_indices

    ds = WellWindowDataset(
        base / EULER, "valid", 10, FieldRegistry(list(model.config.tokeniser.field_names))
    )
    windows = torch.stack([ds[i]["fields"] for i in validation_indices(len(ds), 5)])
    x, rms = rms_normalise(windows, n_context=9)  # the evaluation's units
    with torch.no_grad():
        pred = model.eval().predict_next(windows[:, :9], ds.field_indices.tolist())
    err, tru = shell_powers(pred / rms[:, :, None, None], x[:, 9])
    neps = neps_from_powers(err.sum(0), tru.sum(0), tuple(ds.grid_shape)).nanmean(0)
    for r, value in zip(("low", "mid", "high"), neps.tolist(), strict=True):
        assert record[f"val_neps_{r}"][EULER] == pytest.approx(value, rel=1e-4), r
        assert record[f"val_neps_{r}_mean"] == pytest.approx(value, rel=1e-4), r


def test_dali_loader_trains_exactly_like_the_torch_loader_and_mfu_is_logged(
    rollout_args, euler_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nvidia.dali", reason="the DALI loader needs nvidia-dali")
    monkeypatch.setenv("PHYSOK_PEAK_TFLOPS", "0.5")  # makes MFU reportable on the CPU
    losses = {}
    for loader in ("torch", "dali"):
        run = tmp_path / loader
        extra = ("--steps", "3", "--val-every", "3", "--ckpt-every", "3", "--set")
        assert main(rollout_args(euler_base, run, *extra, f"loader={loader}")) == 0
        records = _records(run, "train")
        losses[loader] = [r["loss"] for r in records]
        for r in records:
            assert r["flops_per_step"] > 1e6
            expected = r["flops_per_step"] / r["step_time_s"] / 0.5e12
            assert r["mfu"] == pytest.approx(expected, rel=1e-9)
    assert losses["dali"] == losses["torch"]


# ---- resume (acceptance) ----------------------------------------------------------------------
def test_sigkill_between_checkpoints_then_same_command_equals_uninterrupted_bit_for_bit(
    rollout_args, euler_base: Path, kill_rerun_and_reference
) -> None:
    """kill -9 mid-epoch between checkpoints (after step 6 of 12; checkpoints every 4 steps,
    validation every 3), then the same command again: the final weights are bit-identical to an
    uninterrupted run's and so is every logged loss. Two processor blocks with stochastic depth
    0.5 make any shifted draw from torch's global RNG visible, and MFU reporting
    ($PHYSOK_PEAK_TFLOPS) runs the FLOP-counting forward in every process."""
    common = ("--steps", "12", "--ckpt-every", "4", "--val-every", "3", "--seed", "3", "--resume")
    drop = ("--set", "processor.depth=2", "--set", "processor.drop_path=0.5")
    r = kill_rerun_and_reference(
        lambda run: rollout_args(euler_base, run, *common, *drop), 6, PHYSOK_PEAK_TFLOPS="0.5"
    )
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
            (x["step"], x["loss"], x["grad_norm"], x["lr"]) for x in records if x["kind"] == "train"
        ]

    def val(records: list[dict]) -> list[tuple]:
        return [(x["step"], x["val_mae"], x["val_vrmse"]) for x in records if x["kind"] == "val"]

    assert [x[0] for x in train(r.got_records)] == list(range(1, 13))
    assert train(r.got_records) == train(r.ref_records)
    assert val(r.got_records) == val(r.ref_records)
    assert [x[0] for x in val(r.got_records)] == [0, 3, 6, 9, 12]
    # the killed process was on the same trajectory up to its last step
    before_kill = train(r.killed.killed_records)
    assert before_kill == train(r.ref_records)[: len(before_kill)]


# ---- failures (acceptance) ----------------------------------------------------------------------
def test_nan_loss_stops_with_exit_3_naming_step_and_last_good_checkpoint(
    rollout_args, euler_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_loss, calls = stage_mod.prediction_loss, {"n": 0}

    def poisoned(pred, target):
        calls["n"] += 1
        loss = real_loss(pred, target)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(stage_mod, "prediction_loss", poisoned)
    run = tmp_path / "run"
    rc = main(rollout_args(euler_base, run, "--steps", "6", "--ckpt-every", "2"))
    err = capsys.readouterr().err
    assert rc == 3
    assert "non-finite loss or gradient at step 5" in err
    assert "Last good checkpoint: " in err and "step_00000004" in err
    ckpt = ck.load_checkpoint(run)
    assert ckpt.step == 4 and all(v.isfinite().all() for v in ckpt.state_dict.values())
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 4]


def test_tokeniser_checkpoint_mismatches_give_clear_errors(
    rollout_args, euler_base: Path, tmp_path: Path, capsys
) -> None:
    def run_with(ckpt: Path, *extra: str) -> str:
        args = rollout_args(euler_base, tmp_path / "run", "--steps", "2")
        args += ["--tokeniser-checkpoint", str(ckpt), *extra]
        assert main(args) == 2
        return capsys.readouterr().err

    # Fields: a tokeniser without Euler's energy and momentum heads.
    fields = _small_tokeniser(tmp_path / "fields", field_names=("density", "pressure", "tracer"))
    err = run_with(fields)
    assert str(fields / "config.json") in err
    assert "lack the channels ['energy', 'momentum_x', 'momentum_y']" in err
    # Kind: a rollout checkpoint is not a tokeniser checkpoint.
    torch.manual_seed(0)
    tok = Tokeniser(TokeniserConfig.fast(channels=(4, 8, 8), norm_groups=2))
    proc = Processor(ProcessorConfig.fast(dim=16, depth=1, heads=2, mlp_hidden=32, norm_groups=2))
    RolloutModel(tok, proc).save_pretrained(tmp_path / "rollout")
    err = run_with(tmp_path / "rollout")
    assert f"{tmp_path / 'rollout'} is a 'rollout' checkpoint, but a 'tokeniser'" in err
    # Architecture: the configured tokeniser (fast preset, 8/16/32) differs from the file's.
    small = _small_tokeniser(tmp_path / "small")
    args = rollout_args(euler_base, tmp_path / "run", "--steps", "2", small=False)
    assert main([*args, "--tokeniser-checkpoint", str(small)]) == 2
    err = capsys.readouterr().err
    assert str(small / "config.json") in err and "different tokeniser architecture" in err
    assert "channels: checkpoint [4, 8, 8] vs configured [8, 16, 32]" in err
    assert "model_preset=null" in err  # the fix
    # A missing path.
    err = run_with(tmp_path / "nowhere")
    assert "--tokeniser-checkpoint" in err and "does not exist" in err


@pytest.mark.parametrize("strategy", ["mostly_frozen", "trainable"])
def test_tokeniser_strategies_train_the_right_parameters(
    rollout_args, euler_base: Path, tmp_path: Path, strategy: str
) -> None:
    tok_dir = _small_tokeniser(tmp_path / "tok")
    pretrained = ck.load_checkpoint(tok_dir).state_dict
    run = tmp_path / "run"
    extra = ("--steps", "3", "--ckpt-every", "3", "--val-every", "3", "--lr", "1e-3")
    extra += ("--tokeniser-checkpoint", str(tok_dir), "--strategy", strategy)
    assert main(rollout_args(euler_base, run, *extra)) == 0
    final = _final_weights(run)
    ckpt = ck.load_checkpoint(run)
    model_cfg = stage_mod.RolloutModelConfig.from_dict(ckpt.model_config)
    # Where the run started: the seed's processor init and the pretrained tokeniser.
    start = stage_mod.build_model(model_cfg, seed=0).state_dict()
    start.update({f"tokeniser.{k}": v for k, v in pretrained.items()})
    assert start.keys() == final.keys()
    changed = {k for k in final if not torch.equal(final[k], start[k])}
    tok_keys = {k for k in final if k.startswith("tokeniser.")}
    interface = {k for k in tok_keys if k[len("tokeniser.") :].startswith(INTERFACE_MODULES)}
    assert interface and len(interface) < len(tok_keys)
    frozen_changed = sorted((tok_keys - interface) & changed)
    if strategy == "mostly_frozen":
        assert frozen_changed == [], frozen_changed  # frozen: bit-for-bit the pretrained ones
    else:
        assert len(frozen_changed) > 0  # the same test can fail: trainable moves them
    assert interface & changed  # interface layers train in both strategies
    assert {k for k in changed if k.startswith("processor.")}  # the processor always trains
    cfg = ckpt.train_config
    assert cfg["tokeniser_strategy"] == strategy and cfg["tokeniser_checkpoint"] == str(tok_dir)


# ---- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "processor.dim=15"], r"processor config .*heads: must divide dim=15"),
        (["--set", "processor.latent_channels=6"], r"rollout model: .*latent_channels \(18\)"),
        (["--set", "epoch_steps=3"], r"1 \+ 1 exceeds total_epochs = 1"),
        (["--set", "window=9"], r"window: windows of 9 frames cannot hold input_frames=9"),
        (["--set", "loader=jax"], r"loader: must be one of \['torch', 'dali'\]"),
        (["--set", "stepz=1"], r"--set stepz: unknown option .*processor.<processor config key>"),
        (["--set", "lr=fast"], r"--set lr: expected a number, got 'fast'$"),
        (["--set", "input_frames=8", "--set", "window=9"], r"input_frames=8: .* multiple of 2"),
        (["--batch-size", "40"], r"--batch-size 40: dataset euler\S* has 30 training windows"),
    ],
)
def test_bad_inputs_name_the_option(
    rollout_args, euler_base: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    assert main(rollout_args(euler_base, tmp_path / "run", "--steps", "2", *extra)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_cli_help_lists_options_and_preset_values() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "physok.train", "rollout", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    ).stdout
    for option in (
        "--config",
        "--data-dir",
        "--run-dir",
        "--steps",
        "--batch-size",
        "--lr",
        "--tokeniser-checkpoint",
        "--strategy",
        "--compile",
        "--resume",
        "--device",
        "--set",
    ):
        assert option in out
    assert "29400" in out and "2100" in out and "processor.<ProcessorConfig key>" in out


@pytest.mark.slow
def test_compiled_blocks_match_eager() -> None:
    """`compile=True` compiles each processor block in place: same names, same outputs."""
    cfg = stage_mod.RolloutModelConfig(
        TokeniserConfig.fast(channels=(4, 8, 8), norm_groups=2),
        ProcessorConfig.fast(dim=16, depth=2, heads=2, mlp_hidden=32, norm_groups=2),
    )
    eager = stage_mod.build_model(cfg, seed=0).eval()
    compiled = stage_mod.build_model(cfg, seed=0).eval()
    stage_mod.compile_blocks(compiled)
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x = torch.rand(1, 9, 5, 32, 32) + 0.5
    idx = torch.arange(5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, idx), eager(x, idx), rtol=1e-4, atol=1e-5)


def test_resume_accepts_a_run_moved_together_with_its_tokeniser(tmp_path: Path) -> None:
    """An experiment folder moved or copied elsewhere: the run's tokeniser_checkpoint moved
    along (same path relative to the run's parent), so resuming is no change of settings; a
    tokeniser elsewhere still is."""
    from types import SimpleNamespace

    from physok.train.common import same_path_from_run
    from physok.train.config_overrides import ConfigError

    old = stage_mod.RolloutTrainConfig.fast(
        run_dir="/old/exp/rollout_x", tokeniser_checkpoint="/old/exp/tokeniser_in_domain"
    )
    moved = stage_mod.RolloutTrainConfig.fast(
        run_dir=str(tmp_path / "exp" / "rollout_x"),
        tokeniser_checkpoint=str(tmp_path / "exp" / "tokeniser_in_domain"),
    )
    ckpt = SimpleNamespace(train_config=old.to_dict(), path=Path("/old/exp/rollout_x/ck"))
    assert stage_mod._check_resume_config(moved, ckpt) == []
    other = stage_mod.RolloutTrainConfig.fast(
        run_dir=moved.run_dir, tokeniser_checkpoint=str(tmp_path / "tokeniser_elsewhere")
    )
    with pytest.raises(ConfigError, match="tokeniser_checkpoint"):
        stage_mod._check_resume_config(other, ckpt)
    assert same_path_from_run("data", "runs/a", os.path.abspath("data"), "/x/a")
    assert not same_path_from_run(None, "runs/a", "t", "runs/a")
