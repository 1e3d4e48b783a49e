"""`python -m physok.evaluate` (in-process `main`) and `evaluate_checkpoint`: end to end on a
saved run, and clear errors with exit status 2 for bad checkpoints, data and options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from physok import checkpoint as ck
from physok.data.errors import DataError
from physok.evaluate import EvalConfig, evaluate_checkpoint
from physok.evaluate.__main__ import main
from physok.models.tokeniser import Tokeniser, TokeniserConfig

EULER = "euler_multi_quadrants_periodicBC"
SMALL = ["--device", "cpu", "--quiet", "--batch-size", "4"]


def test_end_to_end_writes_the_results_json(
    run_dir: Path, euler_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "res" / "eval.json"
    argv = ["--checkpoint", str(run_dir), "--data-dir", str(euler_base), "--out", str(out)]
    argv += ["--subsets", "2", "--subset-size", "4", "--rollout-windows", "1", *SMALL]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"checkpoint", "dataset", "next_frame", "rollout", "eval_config"}
    assert data["checkpoint"] == str(ck.latest_checkpoint(run_dir))
    assert data["dataset"] == EULER
    nf, ro = data["next_frame"], data["rollout"]
    assert (nf["subsets"], nf["subset_size"], nf["split"]) == (2, 4, "valid")
    assert set(nf["neps"]) == set(nf["well_nmse"]) == {"low", "mid", "high"}
    assert nf["vrmse"]["mean"] > 0 and nf["vrmse"]["std"] is not None
    assert ro["steps"] == 18 and ro["windows"] == 1 and len(ro["per_step_vrmse"]) == 18
    assert set(ro["horizons"]) == {"1-2", "3-6", "7-18"}
    assert EvalConfig.from_dict(data["eval_config"]) == EvalConfig(
        subsets=2, subset_size=4, rollout_windows=1, batch_size=4, device="cpu"
    )
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]  # no temporary left
    text = capsys.readouterr().out
    assert "VRMSE" in text and "NEPS" in text and "7-18" in text and str(out) in text


def test_api_skips_what_is_switched_off(run_dir: Path, euler_base: Path) -> None:
    cfg = EvalConfig(subsets=1, subset_size=2, device="cpu")
    res = evaluate_checkpoint(run_dir, euler_base, EULER, cfg, rollout=False, progress=False)
    assert res["rollout"] is None and res["next_frame"]["vrmse"]["std"] is None  # one subset
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_checkpoint(run_dir, euler_base, EULER, cfg, next_frame=False, rollout=False)


def _fails(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main([*argv, *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_checkpoint(euler_base: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no_such_run"
    err = _fails(["--checkpoint", str(missing), "--data-dir", str(euler_base)], capsys)
    assert str(missing) in err


def test_tokeniser_checkpoint_is_refused(euler_base: Path, tmp_path: Path, capsys) -> None:
    path = Tokeniser(TokeniserConfig.fast(channels=(4, 8, 8), norm_groups=2)).save_pretrained(
        tmp_path / "tok"
    )
    err = _fails(["--checkpoint", str(path), "--data-dir", str(euler_base)], capsys)
    assert "'tokeniser' checkpoint" in err and "rollout-stage checkpoint" in err


def test_missing_dataset_folder(run_dir: Path, tmp_path: Path, capsys) -> None:
    err = _fails(["--checkpoint", str(run_dir), "--data-dir", str(tmp_path)], capsys)
    assert str(tmp_path / EULER) in err


def test_short_trajectories_give_the_advice(run_dir: Path, short_base: Path, capsys) -> None:
    err = _fails(["--checkpoint", str(run_dir), "--data-dir", str(short_base)], capsys)
    assert "--steps 40" in err and "--rollout-steps" in err and "needs 27" in err
    # a smaller rollout fits (9 context + 11 steps = 20 snapshots); other options still apply
    argv = ["--checkpoint", str(run_dir), "--data-dir", str(short_base), "--rollout-steps", "2"]
    assert main([*argv, "--no-next-frame", "--rollout-windows", "1", *SMALL]) == 0
    assert "1-2:" in capsys.readouterr().out


def test_bad_options(run_dir: Path, euler_base: Path, capsys) -> None:
    base = ["--checkpoint", str(run_dir), "--data-dir", str(euler_base)]
    with pytest.raises(SystemExit) as e:
        main([*base, "--config", "huge"])
    assert e.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    assert "--subsets" in _fails([*base, "--subsets", "0"], capsys)
    assert "nothing to evaluate" in _fails([*base, "--no-rollout", "--no-next-frame"], capsys)


def test_dataset_fields_the_model_lacks(
    make_model: Callable, euler_base: Path, tmp_path: Path
) -> None:
    other = make_model(field_names=("density", "pressure", "momentum_x", "momentum_y", "tracer"))
    path = other.save_pretrained(tmp_path / "other")
    with pytest.raises(DataError, match=r"not the channels \['energy'\]"):
        evaluate_checkpoint(path, euler_base, EULER, EvalConfig(device="cpu"), progress=False)
    assert torch.is_grad_enabled()


def test_a_damaged_latest_checkpoint_is_an_error_naming_the_file(
    model, euler_base: Path, tmp_path: Path, capsys
) -> None:
    """No silent fall back to an earlier checkpoint when the latest one lost a file."""
    for step in (1, 2):
        ck.save_checkpoint(
            tmp_path, step, kind="rollout", model=model, model_config=model.config.to_dict()
        )
    last = ck.latest_checkpoint(tmp_path)
    (last / ck.CONFIG_FILE).unlink()
    err = _fails(["--checkpoint", str(tmp_path), "--data-dir", str(euler_base)], capsys)
    assert str(last / ck.CONFIG_FILE) in err
    (tmp_path / "checkpoints" / "step_00000001" / ck.MODEL_FILE).unlink()
    err = _fails(["--checkpoint", str(tmp_path / "checkpoints" / "step_00000001"),
                  "--data-dir", str(euler_base)], capsys)  # fmt: skip
    assert "model.safetensors is missing" in err


def test_a_failed_out_write_keeps_the_results(
    run_dir: Path,
    euler_base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table is printed first; when --out cannot be written after the evaluation (disk
    full, permissions changed) the results go to a fallback file and the exit status is 2."""
    import physok.evaluate.report as report_module

    real = report_module.write_json
    out = tmp_path / "eval.json"

    def failing(path, data):
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(report_module, "write_json", failing)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "fallback"))
    (tmp_path / "fallback").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    argv = ["--checkpoint", str(run_dir), "--data-dir", str(euler_base), "--out", str(out)]
    argv += ["--subsets", "1", "--subset-size", "2", "--no-rollout", *SMALL]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "VRMSE" in captured.out  # the table
    assert f"--out {out}" in captured.err and "No space left" in captured.err
    kept = list((tmp_path / "fallback").glob("physok-eval-*.json"))
    assert len(kept) == 1 and str(kept[0]) in captured.err
    assert json.loads(kept[0].read_text())["next_frame"]["vrmse"]["mean"] > 0
    assert not out.exists()
