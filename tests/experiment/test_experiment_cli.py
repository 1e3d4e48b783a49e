"""A miniature version of the whole experiment through `python -m physok.train`, end to end.

Tiny data (32² generated Euler and one out-of-domain dataset), tiny models and a few steps per
stage, all five conditions: it checks the artefacts (results.json, report.md, figures), that a
re-run reuses every finished stage, that --force redoes them, and the errors of bad input.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physok import checkpoint as ck
from physok.train.__main__ import main

OOD = "active_matter"  # 11 channels with t1 and t2 fields: the tensor path end to end
TINY = [
    "--set", "resolution=[32,32]",
    "--set", "trajectories=4",
    "--set", "trajectory_steps=28",
    "--set", f"out_of_domain=[{OOD}]",
    "--set", "model.channels=[4,8,8]",
    "--set", "model.norm_groups=2",
    "--set", "tokeniser.steps=3",
    "--set", "tokeniser.val_every=3",
    "--set", "tokeniser.val_windows=2",
    "--set", "rollout.steps=4",
    "--set", "rollout.epoch_steps=1",
    "--set", "rollout.val_every=2",
    "--set", "rollout.val_windows=2",
    "--set", "rollout.processor.dim=16",
    "--set", "rollout.processor.depth=1",
    "--set", "rollout.processor.heads=2",
    "--set", "rollout.processor.mlp_hidden=32",
    "--set", "evaluation.subsets=2",
    "--set", "evaluation.subset_size=4",
    "--set", "evaluation.rollout_windows=2",
]  # fmt: skip
CONDITIONS = (
    "no_pretraining",
    "in_domain_trainable",
    "in_domain_frozen",
    "out_of_domain_trainable",
    "out_of_domain_frozen",
)


def _argv(tmp: Path, *extra: str) -> list[str]:
    return [
        "--fast",
        "--data-dir", str(tmp / "data"),
        "--runs-dir", str(tmp / "runs"),
        "--name", "mini",
        "--device", "cpu",
        "--quiet",
        *TINY,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("experiment")
    assert main(_argv(tmp)) == 0
    return tmp


def _results(tmp: Path) -> dict:
    return json.loads((tmp / "runs" / "mini" / "results.json").read_text())


def test_miniature_experiment_writes_every_artefact(mini_run: Path) -> None:
    run = mini_run / "runs" / "mini"
    results = _results(mini_run)
    assert results["schema"] == "physok.experiment/2"
    assert list(results["conditions"]) == list(CONDITIONS)
    assert set(results["tokenisers"]) == {"in_domain", "out_of_domain"}
    assert results["tokenisers"]["out_of_domain"]["datasets"] == [OOD]
    for name, cond in results["conditions"].items():
        assert cond["training"]["steps"] == 4, name
        curve = cond["training"]["curve"]
        assert [p["step"] for p in curve] == [0, 2, 4]
        assert all(p["val_vrmse"] > 0 for p in curve)
        nf = cond["next_frame"]
        assert nf["vrmse"]["mean"] > 0 and nf["subsets"] == 2 and nf["subset_size"] == 4
        assert set(nf["neps"]) == {"low", "mid", "high"}
        assert all(p[f"val_neps_{r}"] is not None for p in curve for r in ("low", "mid", "high"))
        assert nf["persistence"]["vrmse"]["mean"] > 0
        assert len(cond["rollout"]["per_step_vrmse"]) == 18
        assert set(cond["rollout"]["horizons"]) == {"1-2", "3-6", "7-18"}
        assert (run / f"rollout_{name}" / "checkpoints").is_dir()
    # mostly frozen trains fewer parameters than trainable, same model size
    p_train = results["conditions"]["in_domain_trainable"]["params"]
    p_frozen = results["conditions"]["in_domain_frozen"]["params"]
    assert p_frozen["total"] == p_train["total"]
    assert p_frozen["trainable"] < p_train["trainable"] == p_train["total"]
    # every condition starts from the tokeniser it names: same initial validation for the
    # two strategies of one source, a different one without pretraining
    first = {n: c["training"]["curve"][0]["val_vrmse"] for n, c in results["conditions"].items()}
    assert first["in_domain_trainable"] == pytest.approx(first["in_domain_frozen"], rel=1e-6)
    # (3 tokeniser steps move the in-domain tokeniser little from its random start: ~1e-3
    # relative on this data, while the same tokeniser reproduces to 1e-6)
    assert first["in_domain_trainable"] != pytest.approx(first["no_pretraining"], rel=1e-4)
    changes = results["comparison"]["conditions"]
    v0 = results["conditions"]["no_pretraining"]["next_frame"]["vrmse"]["mean"]
    v1 = results["conditions"]["in_domain_trainable"]["next_frame"]["vrmse"]["mean"]
    assert changes["in_domain_trainable"]["vrmse_change_pct"] == pytest.approx(
        100 * (v1 - v0) / v0, rel=1e-6
    )
    report = (run / "report.md").read_text()
    for text in ("Table 4", "Table 5", "No pretraining", "Out-of-domain, mostly frozen"):
        assert text in report
    for rel in ("figures/validation_curves.png", "figures/rollout_horizons.png"):
        png = run / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
        assert rel in report
    assert results["config"]["command"].startswith("python -m physok.train --fast")
    # baselines on the same windows: the reference forecasts and the U-Net trained for the
    # no-pretraining condition's downstream wall-clock
    base = results["baselines"]
    assert set(base) == {"persistence", "linear_extrapolation", "unet"}
    persist = results["conditions"]["no_pretraining"]["next_frame"]["persistence"]
    assert base["persistence"]["next_frame"] == persist
    unet = base["unet"]
    budget = results["conditions"]["no_pretraining"]["training"]["wall_clock_s"]
    assert unet["training"]["budget_s"] == pytest.approx(budget)
    assert unet["training"]["steps"] >= 1 and unet["training"]["stopped_by"] == "wall_clock"
    assert unet["next_frame"]["vrmse"]["mean"] > 0
    assert set(unet["rollout"]["horizons"]) == {"1-2", "3-6", "7-18"}
    assert (run / "baseline_unet").is_dir()
    for text in ("Linear extrapolation", "U-Net"):
        assert text in report
    assert results["environment"]["threads"] >= 1
    assert results["model"]["target"] in ("frame", "delta")
    assert results["seeds"] == [0]


def test_tokenisers_reconstruct_the_downstream_data_and_rollouts_keep_windows(
    mini_run: Path,
) -> None:
    results = _results(mini_run)
    euler = results["downstream_dataset"]
    for source in ("in_domain", "out_of_domain"):
        rec = results["tokenisers"][source]["downstream_reconstruction"]
        assert (rec["dataset"], rec["split"], rec["windows"]) == (euler, "valid", 2)
        assert rec["vrmse"]["mean"] > 0 and rec["vrmse"]["sem"] is not None
    # the same measurement as the in-domain stage's own validation, on the same windows
    tok = results["tokenisers"]["in_domain"]
    assert tok["downstream_reconstruction"]["vrmse"]["mean"] == pytest.approx(
        tok["val_vrmse"][euler], rel=1e-4
    )
    assert set(tok["curve"][-1]["val_vrmse"]) == {euler}  # per-dataset curves
    for cond in results["conditions"].values():
        ro = cond["rollout"]
        assert len(ro["window_indices"]) == ro["windows"] == 2
        assert all(len(v) == 2 for v in ro["per_window_horizons"].values())
        assert ro["horizon_spread"]["1-2"]["n"] == 2
        assert np.mean(ro["per_window_horizons"]["3-6"]) == pytest.approx(ro["horizons"]["3-6"])
    persistence = results["baselines"]["persistence"]["rollout"]
    assert persistence["window_indices"] == ro["window_indices"]
    report = (mini_run / "runs" / "mini" / "report.md").read_text()
    assert "out-of-domain tokeniser" in report and "Reconstruction VRMSE of" in report


def test_rerun_reuses_finished_stages(mini_run: Path, capsys: pytest.CaptureFixture) -> None:
    before = _results(mini_run)
    evals = sorted((mini_run / "runs" / "mini" / "eval").glob("*.json"))
    assert len(evals) == 8  # five conditions, the U-Net and the two tokenisers on the downstream
    stamps = {p: p.stat().st_mtime_ns for p in evals}
    assert main(_argv(mini_run)) == 0
    assert {p: p.stat().st_mtime_ns for p in evals} == stamps  # evaluations came from the cache
    out = capsys.readouterr().out
    assert out.count("finished run reused") == 8  # 2 tokenisers + 5 conditions + the U-Net
    after = _results(mini_run)
    assert all(t["reused"] for t in after["tokenisers"].values())
    assert all(c["training"]["reused"] for c in after["conditions"].values())
    for name in CONDITIONS:
        assert after["conditions"][name]["next_frame"] == before["conditions"][name]["next_frame"]


def test_changed_settings_need_force(mini_run: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(_argv(mini_run, "--set", "rollout.steps=6"))
    err = capsys.readouterr().err
    assert code == 2
    assert "other settings" in err and "rollout" in err and "--force" in err
    # a tokeniser of another architecture in the folder: refused before anything trains
    code = main(_argv(mini_run, "--set", "model.channels=[4,8,16]"))
    err = capsys.readouterr().err
    assert code == 2
    assert "tokeniser_in_domain" in err and "model_overrides" in err and "--force" in err


def test_force_redoes_every_stage(mini_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(_argv(mini_run, "--force")) == 0
    assert "finished run reused" not in capsys.readouterr().out
    results = _results(mini_run)
    assert not any(t["reused"] for t in results["tokenisers"].values())
    assert not any(c["training"]["reused"] for c in results["conditions"].values())
    assert "--force" not in results["config"]["command"]  # the recorded command reproduces


def test_generated_data_never_replaces_a_real_well_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    well = tmp_path / "data" / "euler_multi_quadrants_periodicBC" / "data" / "train"
    well.mkdir(parents=True)
    (well / "real.hdf5").write_bytes(b"not generated by physok")
    for extra in ((), ("--force",)):
        assert main(_argv(tmp_path, *extra)) == 2
        err = capsys.readouterr().err
        assert "did not generate" in err and "--well-base-path" in err
    assert (well / "real.hdf5").read_bytes() == b"not generated by physok"


def test_a_folder_that_is_not_an_experiment_is_never_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    precious = tmp_path / "runs" / "mini" / "notes.txt"
    precious.parent.mkdir(parents=True)
    precious.write_text("mine")
    for extra in ((), ("--force",)):
        assert main(_argv(tmp_path, *extra)) == 2
        assert "not a physok experiment folder" in capsys.readouterr().err
    assert precious.read_text() == "mine"


def test_bad_input_gives_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--fast", "--set", "tokeniser.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "stepz" in err and "tokeniser" in err and "valid keys" in err
    assert main(["--fast", "--set", "colour=blue"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["--fast", "--conditions", "in_domain_trainable"]) == 2
    assert "no_pretraining" in capsys.readouterr().err
    assert main(["--fast", "--conditions", "no_pretraining,sideways"]) == 2
    assert "sideways" in capsys.readouterr().err
    assert main(["--config", "paper"]) == 2
    assert "--well-base-path" in capsys.readouterr().err
    missing = tmp_path / "no_well_here"
    code = main(
        ["--config", "paper", "--well-base-path", str(missing), "--runs-dir", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "euler_multi_quadrants_periodicBC" in err
    assert main(["--fast", "--set", "trajectory_steps=15"]) == 2
    assert "trajectory_steps=27" in capsys.readouterr().err  # caught before any training
    assert main(["--fast", "--set", "rollout.model.channels=[4,8,8]"]) == 2
    assert "--set model.channels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--fast", "tokeniser"])  # experiment options with a stage: argparse error


_ABORT = re.compile(r"SIGABRT|Signal 6|exitcode\s*:\s*-6|signal 6", re.IGNORECASE)


def test_torchrun_two_ranks_run_the_whole_experiment(tmp_path: Path) -> None:
    """Under torchrun (gloo on CPU) one process group carries DDP tokeniser pretraining, FSDP2
    rollout training and rank-0 evaluation. gloo aborts at interpreter exit in ~30% of runs
    after the work is done (tests/train/test_ddp.py): success is judged from the artefacts."""
    argv = [a for a in _argv(tmp_path, "--conditions", "no_pretraining,in_domain_frozen")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "physok.train", *argv], capture_output=True, text=True, timeout=600
    )
    output = proc.stdout + proc.stderr
    results = _results(tmp_path)
    assert results["environment"]["world_size"] == 2, output
    assert list(results["conditions"]) == ["no_pretraining", "in_domain_frozen"]
    assert set(results["tokenisers"]) == {"in_domain"}  # out-of-domain is not needed
    run = tmp_path / "runs" / "mini"
    for stage, kind in (
        ("tokeniser_in_domain", "tokeniser"),
        ("rollout_in_domain_frozen", "rollout"),
    ):
        state = ck.load_checkpoint(run / stage, kind=kind).load_train_state()
        assert state["data"]["world_size"] == 2 and len(state["rng"]) == 2, stage
    assert output.count("experiment mini finished") == 1  # rank 0 alone reports
    assert proc.returncode == 0 or _ABORT.search(output), output


def test_sigkill_mid_rollout_stage_then_same_command_gives_identical_results(
    kill_rerun_and_reference,
) -> None:
    """kill -9 of the experiment while its rollout stage is between checkpoints (step 6 of 12,
    checkpoints every 4), then the same command again: the stage resumes and results.json holds
    exactly the numbers of an uninterrupted run (two processor blocks with stochastic depth 0.5,
    so a shifted random draw would show)."""
    settings = [
        "--conditions", "no_pretraining", "--threads", "1", "--set", "baselines=[]",
        "--set", "rollout.steps=12", "--set", "rollout.ckpt_every=4",
        "--set", "rollout.val_every=3", "--set", "rollout.processor.depth=2",
        "--set", "rollout.processor.drop_path=0.5",
    ]  # fmt: skip
    r = kill_rerun_and_reference(
        lambda d: _argv(d, *settings), 6, lambda d: d / "runs" / "mini" / "rollout_no_pretraining"
    )
    resumed, killed = r.killed.resumed_from_step, r.killed.killed_after_step
    assert resumed % 4 == 0 and resumed < killed < 12  # killed between checkpoints
    for k in r.ref_weights:
        assert torch.equal(r.got_weights[k], r.ref_weights[k]), k

    def numbers(d: Path) -> dict:
        """Every result but wall-clock times (and the timing-noise warnings drawn from them),
        paths and whether a stage was reused."""
        results = _results(d)
        cond = results["conditions"]["no_pretraining"]
        training = {k: cond["training"][k] for k in ("steps", "curve")}
        comparison = {k: v for k, v in results["comparison"].items() if k != "timing_warnings"}
        return {
            "condition": {**cond, "training": training},
            "baselines": results["baselines"],
            "comparison": comparison,
        }

    assert numbers(r.got_dir) == numbers(r.ref_dir)
    assert _results(r.got_dir)["conditions"]["no_pretraining"]["training"]["steps"] == 12


def test_a_retrained_tokeniser_makes_dependent_rollouts_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = _argv(tmp_path, "--conditions", "no_pretraining,in_domain_frozen")
    assert main(argv) == 0
    shutil.rmtree(tmp_path / "runs" / "mini" / "tokeniser_in_domain")  # retrained next time
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "rollout_in_domain_frozen" in err and "earlier in_domain tokeniser" in err


def test_more_seeds_reuse_the_first_and_report_the_spread(
    mini_run: Path, capsys: pytest.CaptureFixture
) -> None:
    """--seeds 2 on a finished one-seed experiment: seed 0's runs are reused as they are, seed 1
    trains its own tokenisers, conditions and U-Net, and the numbers are aggregated across seeds."""
    before = _results(mini_run)
    assert main(_argv(mini_run, "--seeds", "2")) == 0
    out = capsys.readouterr().out
    assert "seed 1 (2 of 2)" in out and "means over seeds [0, 1]" in out
    results = _results(mini_run)
    run = mini_run / "runs" / "mini"
    assert results["seeds"] == [0, 1]
    for name, cond in results["conditions"].items():
        assert (run / f"rollout_{name}_seed1" / "checkpoints").is_dir()
        # seed 0 is the earlier run, reused: same numbers
        assert cond["next_frame"] == before["conditions"][name]["next_frame"]
        per_seed = [cond["seeds"][s]["vrmse"] for s in ("0", "1")]
        assert per_seed[0] == before["conditions"][name]["next_frame"]["vrmse"]["mean"]
        spread = cond["across_seeds"]["vrmse"]
        assert spread["n"] == 2 and spread["values"] == per_seed
        assert spread["mean"] == pytest.approx(sum(per_seed) / 2)
        assert spread["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)
        assert set(cond["across_seeds"]["horizons"]) == {"1-2", "3-6", "7-18"}
    assert results["baselines"]["unet"]["across_seeds"]["vrmse"]["n"] == 2
    assert (run / "baseline_unet_seed1").is_dir()
    assert (run / "tokeniser_in_domain_seed1").is_dir()
    report = (run / "report.md").read_text()
    assert "across 2 seeds" in report and "spread across seeds" in report


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--seed", "-1"], "--seed -1"),
        (["--set", "model.channels=[8,16]"], "--set model.channels=[8, 16]"),
        (["--set", "resolution=[30,30]"], "--set resolution=[30, 30]"),
        (["--set", "rollout.steps=1"], "--set rollout.steps=1"),
        (["--set", "tokeniser.batch_size=0"], "--set tokeniser.batch_size"),
        (["--set", "rollout.window=3"], "--set rollout.window"),
        (["--set", "rollout.processor.heads=3"], "--set rollout.processor.heads=3"),
        (["--set", "trajectories=2"], "--set trajectories"),
    ],
)
def test_option_errors_name_the_option_before_any_data_step(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], expected: str
) -> None:
    assert main(_argv(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "--resolution" not in err and "--steps " not in err  # stage / data-CLI spellings
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_path_options_that_are_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for option in ("--data-dir", "--runs-dir"):
        argv = _argv(tmp_path)
        argv[argv.index(option) + 1] = str(a_file)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{option} {a_file} is a file" in err and "--out" not in err


def test_help_lists_the_conditions_with_user_facing_names(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in CONDITIONS)
    assert "EXPERIMENT_" not in out and "WELL_BASE_PATH" not in out


def test_short_well_trajectories_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from physok.data.generate import GenerationConfig, generate_dataset

    cfg = GenerationConfig(resolution=(16, 16), trajectories=3, steps=20)
    generate_dataset("euler_multi_quadrants_periodicBC", tmp_path / "well", cfg, progress=False)
    argv = ["--fast", "--well-base-path", str(tmp_path / "well"), "--runs-dir",
            str(tmp_path / "runs"), "--conditions", "no_pretraining", "--quiet", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "have 20 snapshots" in err and "needs 27" in err
    assert "--set evaluation.rollout_steps=11" in err
    assert not list((tmp_path / "runs").glob("*/rollout_*"))  # nothing trained


def _copy_runs(mini_run: Path, tmp: Path) -> Path:
    """A copy of the finished miniature experiment at another place (the data stay)."""
    shutil.copytree(mini_run / "runs" / "mini", tmp / "runs" / "mini")
    return tmp / "runs" / "mini"


def _argv_at(mini_run: Path, runs: Path, *extra: str) -> list[str]:
    argv = _argv(mini_run, *extra)
    argv[argv.index("--runs-dir") + 1] = str(runs)
    return argv


def test_a_moved_experiment_folder_continues(
    mini_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Copied elsewhere, every stage and evaluation is reused; no --force advice."""
    run = _copy_runs(mini_run, tmp_path / "moved")
    evals = sorted((run / "eval").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in evals}
    assert main(_argv_at(mini_run, tmp_path / "moved" / "runs")) == 0
    out = capsys.readouterr().out
    assert out.count("finished run reused") == 8
    assert {p: p.stat().st_mtime_ns for p in evals} == stamps
    # a real difference is still refused, and the folder's location is not one
    assert main(_argv_at(mini_run, tmp_path / "moved" / "runs", "--set", "rollout.steps=6")) == 2
    err = capsys.readouterr().err
    assert "steps: 4 there, 6 now" in err
    assert "run_dir" not in err and "tokeniser_checkpoint" not in err


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_checkpoints_are_named_and_retrained(
    mini_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _copy_runs(mini_run, tmp_path)
    frozen = ck.latest_checkpoint(run / "rollout_in_domain_frozen")
    _flip_a_byte(frozen / ck.MODEL_FILE)
    trainable = ck.latest_checkpoint(run / "rollout_in_domain_trainable")
    (trainable / ck.CONFIG_FILE).unlink()
    unet = ck.latest_checkpoint(run / "baseline_unet")
    _flip_a_byte(unet / ck.MODEL_FILE)
    assert main(_argv_at(mini_run, tmp_path / "runs")) == 0
    out = capsys.readouterr().out
    assert str(frozen / ck.MODEL_FILE) in out and "SHA-256" in out
    assert str(trainable / ck.CONFIG_FILE) in out
    assert str(unet / ck.MODEL_FILE) in out
    assert out.count("damaged checkpoint") == 3
    results = json.loads((run / "results.json").read_text())
    training = results["conditions"]
    assert not training["in_domain_frozen"]["training"]["reused"]
    assert not training["in_domain_trainable"]["training"]["reused"]
    assert training["no_pretraining"]["training"]["reused"]
    assert training["in_domain_frozen"]["training"]["steps"] == 4
    assert not results["baselines"]["unet"]["training"]["reused"]
    for stage in ("rollout_in_domain_frozen", "rollout_in_domain_trainable", "baseline_unet"):
        assert (run / stage / "checkpoints" / "damaged-step_00000004").exists() or stage == (
            "baseline_unet"
        )
        ck.verify_checkpoint(ck.latest_checkpoint(run / stage))  # intact again


def test_a_damaged_tokeniser_retrained_to_the_same_weights_keeps_its_rollout_runs(
    mini_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Training is deterministic, so the retrained tokeniser equals the damaged one's record
    and the rollout runs trained from it stay valid (reused, not refused as stale)."""
    run = _copy_runs(mini_run, tmp_path)
    tok = ck.latest_checkpoint(run / "tokeniser_in_domain")
    _flip_a_byte(tok / ck.MODEL_FILE)
    assert main(_argv_at(mini_run, tmp_path / "runs")) == 0
    out = capsys.readouterr().out
    assert str(tok / ck.MODEL_FILE) in out
    assert "the retrained weights equal the damaged run's" in out
    results = json.loads((run / "results.json").read_text())
    for name in ("in_domain_trainable", "in_domain_frozen"):
        assert results["conditions"][name]["training"]["reused"]
    ck.verify_checkpoint(ck.latest_checkpoint(run / "tokeniser_in_domain"))


def test_a_damaged_tokeniser_retrained_to_other_weights_refuses_its_stale_rollout_runs(
    mini_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The damaged run recorded other weights than the retrained ones (its recorded hash is
    changed here, which also marks it damaged): the rollout runs from it are refused."""
    run = _copy_runs(mini_run, tmp_path)
    tok = ck.latest_checkpoint(run / "tokeniser_in_domain")
    meta = json.loads((tok / ck.CONFIG_FILE).read_text())
    meta["files"][ck.MODEL_FILE]["sha256"] = "0" * 64
    (tok / ck.CONFIG_FILE).write_text(json.dumps(meta))
    assert main(_argv_at(mini_run, tmp_path / "runs")) == 2
    captured = capsys.readouterr()
    assert "damaged checkpoint" in captured.out
    assert "rollout_in_domain_trainable was trained from an earlier in_domain tokeniser" in (
        captured.err
    )
    assert "--force" in captured.err


def test_damaged_generated_data_is_refused_then_regenerated_with_force(
    mini_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from physok.experiment.config import apply_experiment_overrides
    from physok.experiment.runner import prepare_data
    from physok.train.__main__ import build_parser, experiment_config_from_args

    shutil.copytree(mini_run / "data", tmp_path / "data")
    victim = sorted((tmp_path / "data" / OOD / "data" / "valid").glob("*.hdf5"))[0]
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])
    _copy_runs(mini_run, tmp_path)
    assert main(_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "--force" in err and OOD in err
    # what --force does to the data (the rest of --force is test_force_redoes_every_stage)
    cfg = experiment_config_from_args(build_parser().parse_args(_argv(tmp_path)))
    cfg = apply_experiment_overrides(cfg, [])
    prepare_data(cfg, force=True)
    assert victim.read_bytes() == original  # regenerated, identical
