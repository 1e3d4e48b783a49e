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

import pytest
import torch

from physok import checkpoint as ck
from physok.train.__main__ import main

OOD = "gray_scott_reaction_diffusion"
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
    assert first["in_domain_trainable"] != pytest.approx(first["no_pretraining"], rel=1e-3)
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


def test_rerun_reuses_finished_stages(mini_run: Path, capsys: pytest.CaptureFixture) -> None:
    before = _results(mini_run)
    evals = sorted((mini_run / "runs" / "mini" / "eval").glob("*.json"))
    assert len(evals) == 6  # five conditions and the U-Net
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
        """Every result but wall-clock times, paths and whether a stage was reused."""
        results = _results(d)
        cond = results["conditions"]["no_pretraining"]
        training = {k: cond["training"][k] for k in ("steps", "curve")}
        return {
            "condition": {**cond, "training": training},
            "baselines": results["baselines"],
            "comparison": results["comparison"],
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
