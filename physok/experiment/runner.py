"""Run the whole experiment: data, tokeniser pretraining, rollout training, evaluation, report.

`run_experiment(cfg)` runs the stages in order (DESIGN.md §1):

1. `prepare_data`: generate the embedded datasets (reused when generated with the same
   settings) or check a real Well copy.
2. `pretrain_tokenisers`: the in-domain tokeniser (downstream dataset) and the out-of-domain
   one (the mixture), each a `physok.train.tokeniser_stage` run.
3. `train_conditions`: one `physok.train.rollout_stage` run per condition, same budget and seed.
4. `evaluate_condition` per condition: next-frame metrics over random validation subsets and
   18-step rollouts (`physok.evaluate`), cached in eval/.
5. `write_outputs`: `results.json` (every number), `report.md` and PNG figures.

Everything lands in `runs_dir/name/`. A re-run reuses what is finished: a stage whose run is
at its final step is not touched, an interrupted one resumes from its last checkpoint, and an
evaluation is cached with the checkpoint (and its weights' hashes) and the settings it used.
`force=True` deletes the experiment's folder first and redoes every stage (generated data is
kept when its settings match; a folder without experiment.json is never deleted, and dataset
folders physok did not generate are never replaced). A stage whose run was made with other
settings is an error naming the differing keys, never a silent mix.

Under torchrun every rank runs the training stages (DDP for the tokeniser, FSDP for the rollout
model); rank 0 alone generates data (the others wait), and after training every rank leaves the
process group and rank 0 evaluates and writes the outputs on its own.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from physok import __version__
from physok import checkpoint as ckpt_io
from physok.atomic_io import write_json_atomic
from physok.data.errors import DataError, StaleDatasetError
from physok.experiment.conditions import (
    BASELINE,
    CONDITION_ORDER,
    get_condition,
    tokenisers_needed,
)
from physok.experiment.config import ExperimentConfig
from physok.run_lock import FolderLock
from physok.train import distributed as dist_utils
from physok.train.common import METRICS_FILE, same_path_from_run
from physok.train.config_overrides import ConfigError
from physok.train.threads import apply_threads

SCHEMA = "physok.experiment/2"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
EXPERIMENT_FILE = "experiment.json"
EVAL_DIR = "eval"
# Part of an evaluation's cache key: bump when physok's evaluation numbers change (metric
# definitions, protocol), so a re-run does not reuse evaluations computed the old way.
# 6: rollouts keep each window's values (the spread over windows); the means are unchanged.
EVAL_CACHE_VERSION = 6
# Config keys that only change how a run executes, not what it computes: a difference in them
# does not make a finished stage or a recorded experiment "different".
RUNTIME_KEYS = ("progress", "device", "num_workers", "loader", "compile")
TOKENISER_LABELS = {"in_domain": "In-domain", "out_of_domain": "Out-of-domain"}
# Reference forecasts every evaluation computes on the same windows (physok.evaluate)
REFERENCE_FORECASTS = {
    "persistence": "Persistence (repeat the last context frame)",
    "linear_extrapolation": "Linear extrapolation (2·f₉ − f₈)",
}
TRAINED_BASELINES = {"unet": "U-Net (the_well's UNetClassic), same downstream wall-clock"}


@dataclass
class ExperimentOutcome:
    """What `run_experiment` produced (paths on rank 0; None on other ranks)."""

    results: dict[str, Any] | None
    run_dir: Path
    results_path: Path | None
    report_path: Path | None
    figures: dict[str, str]


def _say(text: str, main: bool = True) -> None:
    if main:
        print(text, flush=True)


def _clean_floats(value: Any) -> Any:
    """NaN/inf -> None, recursively: results.json is strict JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_floats(v) for v in value]
    return value


def _same(key: str, saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a stage's saved setting `key` equals the wanted one. Paths inside the experiment
    folder compare relative to it, so a moved or copied experiment folder is the same
    experiment; `data_dir` compares as an absolute path ("data", "./data", "/abs/data")."""
    a, b = saved.get(key), wanted.get(key)
    if key == "run_dir" and isinstance(a, str) and isinstance(b, str):
        return Path(a).name == Path(b).name  # the stage's folder in the experiment folder
    if key == "tokeniser_checkpoint" and isinstance(a, str) and isinstance(b, str):
        return same_path_from_run(a, saved.get("run_dir", ""), b, wanted.get("run_dir", ""))
    if key == "data_dir" and isinstance(a, str) and isinstance(b, str):
        return os.path.abspath(a) == os.path.abspath(b)
    return a == b


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys whose values differ, ignoring runtime-only keys and where the folder lies."""
    keys = sorted((set(saved) | set(wanted)) - set(RUNTIME_KEYS))
    return [k for k in keys if not _same(k, saved, wanted)]


# ---- the experiment folder ----------------------------------------------------------------------
def claim_run_dir(cfg: ExperimentConfig, *, force: bool) -> Path:
    """Create the experiment folder (recording its settings in experiment.json) or take up an
    existing one; with `force`, delete it first. A non-empty folder without experiment.json is
    not an experiment folder: it is refused either way, never written into or deleted."""
    run_dir = cfg.run_dir
    record = run_dir / EXPERIMENT_FILE
    if run_dir.exists() and not record.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"{run_dir} exists and is not a physok experiment folder (no {EXPERIMENT_FILE}); "
            "it is left alone: choose another --name or --runs-dir"
        )
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        record_settings(cfg)
    return run_dir


def record_settings(cfg: ExperimentConfig) -> None:
    """Write the settings to experiment.json: at creation (which marks the folder as physok's,
    for --force), then after every successful training, so it describes what the folder holds
    (reuse decisions are made per stage, from each run's own config)."""
    write_json_atomic(cfg.run_dir / EXPERIMENT_FILE, cfg.to_dict())


# ---- 1. data ----------------------------------------------------------------------------------
def check_data_dir(cfg: ExperimentConfig) -> None:
    """Refuse to generate into dataset folders physok did not make (a real Well copy under
    --data-dir by mistake): they are never replaced, not even with --force."""
    from physok.data.generate import GENERATION_RECORD, read_generation_record

    if not cfg.generate_data:
        return
    base = Path(cfg.data_dir)
    foreign = [
        n
        for n in cfg.datasets_needed()
        if (base / n).exists() and read_generation_record(base / n) is None
    ]
    if foreign:
        raise DataError(
            f"--data-dir {base}: {', '.join(foreign)} hold data that physok did not generate "
            f"(no {GENERATION_RECORD}); to run on a real copy of The Well pass --well-base-path "
            "instead, or choose another --data-dir for generated data"
        )


def check_well_trajectories(cfg: ExperimentConfig) -> None:
    """A Well copy's trajectories must hold the training windows and the evaluation's rollouts
    (checked from the files' metadata before any training, not at the evaluation after it)."""
    from physok.data.reader import WellWindowDataset
    from physok.data.registry import FieldRegistry

    rollout = cfg.rollout_config(cfg.conditions[0])
    eval_cfg = cfg.eval_config()
    needs = {(cfg.downstream, eval_cfg.split): rollout.input_frames + eval_cfg.rollout_steps}
    for name in cfg.datasets_needed():
        for split in ("train", "valid"):
            key = (name, split)
            needs[key] = max(needs.get(key, 0), rollout.window)
    for (name, split), needed in needs.items():
        folder = Path(cfg.data_dir) / name
        probe = WellWindowDataset(folder, split, window=1, registry=FieldRegistry())
        shortest = min(f.n_steps for f in probe.files)
        probe.close()
        if shortest >= needed:
            continue
        is_eval = (name, split) == (cfg.downstream, eval_cfg.split)
        fix = (
            f"--set evaluation.rollout_steps={shortest - rollout.input_frames} (at most)"
            if is_eval and shortest >= rollout.window
            else "a copy with longer trajectories"
        )
        raise DataError(
            f"--well-base-path {cfg.data_dir}: the {split} trajectories of {name} have {shortest} "
            f"snapshots, but the experiment needs {needed} (training windows of {rollout.window} "
            f"frames; a {eval_cfg.rollout_steps}-step rollout evaluation from "
            f"{rollout.input_frames} context frames); use {fix}"
        )


def prepare_data(cfg: ExperimentConfig, *, force: bool) -> dict[str, Any]:
    """Generate the datasets the experiment reads, or check that a Well copy has them (rank 0
    only, under torchrun)."""
    names = cfg.datasets_needed()
    t0 = time.perf_counter()
    base = Path(cfg.data_dir)
    if cfg.generate_data:
        from physok.data.generate import generate_datasets

        def generate(overwrite: bool) -> None:
            generate_datasets(
                names,
                base,
                cfg.generation(),
                overwrite=overwrite,
                progress=cfg.progress,
                jobs=min(len(names), os.cpu_count() or 1),
            )

        check_data_dir(cfg)
        try:
            generate(overwrite=False)  # reuses intact datasets generated with these settings
        except StaleDatasetError as e:
            if force:
                generate(overwrite=True)  # replaces only the stale or damaged datasets
            elif e.reason == "files":
                problems = "; ".join(e.problems[:5]) + ("; ..." if len(e.problems) > 5 else "")
                raise DataError(
                    f"--data-dir {base}: the dataset {Path(e.folder).name} does not match the "
                    f"record made when it was generated ({problems}); the finished stages were "
                    "trained on the data as generated: pass --force to regenerate it and redo "
                    "the experiment, or choose another --data-dir"
                ) from None
            else:
                raise DataError(
                    f"--data-dir {base} holds datasets generated with other settings than this "
                    "experiment's (resolution, trajectories, trajectory_steps, seed): pass "
                    "--force to regenerate them, or choose another --data-dir"
                ) from None
    else:
        missing = [n for n in names if not (base / n / "data").is_dir()]
        if missing:
            raise DataError(
                f"--well-base-path {base}: no dataset folder for {missing} (expected "
                f"{base}/<name>/data/{{train,valid}}/*.hdf5); download them from The Well "
                "(`the-well-download --base-path B --dataset NAME` puts them in B/datasets, "
                "the folder to pass) or fix the path"
            )
        check_well_trajectories(cfg)
    return {
        "generated": cfg.generate_data,
        "base": str(base),
        "datasets": list(names),
        "resolution": list(cfg.resolution) if cfg.generate_data else None,
        "wall_clock_s": time.perf_counter() - t0,
    }


# ---- 2./3. training stages ----------------------------------------------------------------------
def stage_is_finished(run_dir: Path, wanted: dict[str, Any], kind: str) -> bool:
    """True when `run_dir`'s latest checkpoint reached `wanted["steps"]`; an error when that
    run was made with other settings (so a finished stage is never silently reused wrongly)."""
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is None:
        return False
    meta = ckpt_io.read_checkpoint_config(latest, kind=kind)
    saved = meta.get("train_config") or {}
    diff = _differences(saved, wanted)
    if diff == ["data_dir"]:  # the same run, reading its data from elsewhere
        raise ConfigError(
            f"{run_dir}: its run read the data in {saved['data_dir']}, this experiment reads "
            f"{wanted['data_dir']}; pass --data-dir {saved['data_dir']} (or --well-base-path) to "
            "continue it, or --name NEW for a new experiment on this data"
        )
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in diff)
        raise ConfigError(
            f"{run_dir}: its run was made with other settings ({shown}); pass --force to redo "
            "the experiment, or --name NEW to keep this one"
        )
    return int(meta["step"]) >= int(wanted["steps"])


def set_aside_damaged_checkpoints(run_dir: Path, kind: str, steps: int) -> list[str]:
    """Check the checkpoint a re-run would reuse or resume from, newest first: a damaged one
    (a file missing, truncated, or not matching the SHA-256 recorded in its config.json) is
    renamed to `damaged-step_*` and the next older one checked, so training continues from the
    last intact checkpoint, or from scratch. A finished run's weights are hashed; a checkpoint
    to resume from has every file hashed. Returns a message per checkpoint set aside (rank 0
    only: the others wait at the caller's broadcast)."""
    notes = []
    while (latest := ckpt_io.latest_checkpoint(run_dir)) is not None:
        try:
            meta = ckpt_io.read_checkpoint_config(latest, kind=kind)
            finished = int(meta["step"]) >= steps
            ckpt_io.verify_checkpoint(latest, files=(ckpt_io.MODEL_FILE,) if finished else None)
            return notes
        except ckpt_io.DamagedCheckpointError as e:
            moved = ckpt_io.set_aside(latest)
            notes.append(f"{e} -> set aside as {moved.name}")
    return notes


def _recorded_weights_sha(damaged: Path) -> str | None:
    """The weights' SHA-256 that a set-aside checkpoint's config.json records (None if
    unreadable)."""
    try:
        meta = json.loads((damaged / ckpt_io.CONFIG_FILE).read_text())
        return meta["files"][ckpt_io.MODEL_FILE]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_stage_log(run_dir: Path) -> dict[str, Any]:
    """Steps, wall-clock, median step time and validation curve from a run's metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    train, val = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            (train if rec.get("kind") == "train" else val).append(rec)
    step_times = [r["step_time_s"] for r in train if "step_time_s" in r]
    elapsed = [r["elapsed_s"] for r in (*train, *val) if "elapsed_s" in r]
    return {
        "steps": max((r["step"] for r in train), default=0),
        "wall_clock_s": max(elapsed, default=0.0),
        "median_step_s": statistics.median(step_times) if step_times else None,
        "step_time_spread_s": _step_time_spread(step_times),
        "val": val,
        "run_dir": str(run_dir),
    }


def _step_time_spread(step_times: list[float]) -> dict[str, Any] | None:
    """Quartiles (and 10th/90th percentiles) of the logged step times, None for fewer than 8
    steps. The report warns when the quartiles spread widely (the machine's load moved them);
    the deciles also catch periodic slow steps that are the stage's own (SOAP's preconditioner
    update every few steps), so they are recorded, not warned about."""
    if len(step_times) < 8:
        return None
    quartiles = statistics.quantiles(step_times, n=4)
    deciles = statistics.quantiles(step_times, n=10)
    return {
        "p10": deciles[0],
        "p25": quartiles[0],
        "p75": quartiles[2],
        "p90": deciles[-1],
        "n": len(step_times),
    }


@dataclass
class StageRun:
    """How `_run_stage` got a stage's run: reused as it was, or trained by this invocation;
    `unchanged`: retrained after damage, to final weights identical to the damaged run's."""

    reused: bool
    unchanged: bool = False


def _run_stage(train_fn: Any, stage_cfg: Any, kind: str, main: bool) -> StageRun:
    """Train `stage_cfg` unless its run is finished and intact (damaged checkpoints are set
    aside first, with a message naming them)."""
    run_dir = Path(stage_cfg.run_dir)
    steps = int(stage_cfg.steps)
    notes = _on_main(main, lambda: set_aside_damaged_checkpoints(run_dir, kind, steps)) or []
    for note in notes:
        _say(f"    damaged checkpoint: {note}; retraining from the last intact checkpoint", main)
    if stage_is_finished(run_dir, stage_cfg.to_dict(), kind):
        return StageRun(reused=True)
    # the run directory's lock, as `python -m physok.train STAGE` takes it (rank 0 holds it)
    with FolderLock(run_dir, what="run directory", enabled=dist_utils.get_rank() == 0):
        train_fn(stage_cfg, resume=True)  # resumes an interrupted run, else starts fresh
    unchanged = False
    if notes and main:  # was the damaged run finished, and is the retrained one the same?
        root = ckpt_io.checkpoints_dir(run_dir)
        final = ckpt_io.latest_checkpoint(run_dir)
        recorded = {_recorded_weights_sha(p) for p in root.glob(f"{ckpt_io.DAMAGED_PREFIX}*")}
        if final is not None:
            now = ckpt_io.read_checkpoint_config(final)["files"][ckpt_io.MODEL_FILE]["sha256"]
            unchanged = now in recorded
    return StageRun(reused=False, unchanged=bool(dist_utils.broadcast_object(unchanged)))


def pretrain_tokenisers(
    cfg: ExperimentConfig, *, main: bool, seed: int | None = None
) -> dict[str, dict[str, Any]]:
    """Pretrain (or reuse) the tokenisers the conditions need, for `seed`."""
    from physok.train import tokeniser_stage

    out = {}
    for source in tokenisers_needed(cfg.conditions):
        stage_cfg = cfg.tokeniser_config(source, seed)
        _say(f"\n==> tokeniser pretraining, {source.replace('_', '-')}: "
             f"{', '.join(stage_cfg.datasets)} ({stage_cfg.steps} steps)", main)  # fmt: skip
        run = _run_stage(tokeniser_stage.train, stage_cfg, tokeniser_stage.CHECKPOINT_KIND, main)
        reused = run.reused
        if reused:
            _say(f"    finished run reused: {stage_cfg.run_dir}", main)
        elif run.unchanged:
            _say("    the retrained weights equal the damaged run's (same SHA-256)", main)
        log = read_stage_log(Path(stage_cfg.run_dir))
        last = log["val"][-1] if log["val"] else {}
        model = _model_config(stage_cfg.run_dir)
        out[source] = {
            "label": f"{TOKENISER_LABELS[source]} ({', '.join(stage_cfg.datasets)})",
            "datasets": list(stage_cfg.datasets),
            "seed": stage_cfg.seed,
            **{k: model.get(k) for k in ("normalisation", "scale_policy")},
            "steps": log["steps"],
            "wall_clock_s": log["wall_clock_s"],
            "median_step_s": log["median_step_s"],
            "step_time_spread_s": log["step_time_spread_s"],
            "val_vrmse": last.get("val_vrmse", {}),
            "curve": [  # the mean over the tokeniser's datasets and each dataset's own value
                {
                    "step": r["step"],
                    "val_vrmse_mean": r.get("val_vrmse_mean"),
                    "val_vrmse": r.get("val_vrmse"),
                }
                for r in log["val"]
            ],
            "run_dir": log["run_dir"],
            "reused": reused,
            "unchanged": run.unchanged,
        }
    return out


def _model_config(run_dir: str | Path) -> dict[str, Any]:
    """The model config of a run's latest checkpoint ({} when there is none)."""
    latest = ckpt_io.latest_checkpoint(Path(run_dir))
    if latest is None:
        return {}
    return ckpt_io.read_checkpoint_config(latest).get("model_config") or {}


def _rollout_curve(val_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("val_vrmse", "val_mae", "val_neps_low", "val_neps_mid", "val_neps_high")
    return [{"step": r["step"], **{k: r.get(f"{k}_mean") for k in keys}} for r in val_records]


def train_conditions(
    cfg: ExperimentConfig,
    *,
    main: bool,
    retrained: tuple[str, ...] = (),
    seed: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Rollout training under every condition for `seed` (or reuse of finished runs).
    `retrained`: the tokenisers trained by this invocation; a rollout run that already started
    from an earlier version of one of them is stale and refused (its config still names the
    same path)."""
    from physok.train import rollout_stage

    out = {}
    for name in cfg.conditions:
        stage_cfg = cfg.rollout_config(name, seed)
        source = get_condition(name).tokeniser
        if source in retrained and ckpt_io.latest_checkpoint(stage_cfg.run_dir) is not None:
            raise ConfigError(
                f"{stage_cfg.run_dir} was trained from an earlier {source} tokeniser than the one "
                f"just trained in {cfg.tokeniser_run_dir(source, seed)}; pass --force to redo "
                "the experiment (or delete that rollout folder)"
            )
        _say(f"\n==> rollout training, {get_condition(name).label} ({stage_cfg.steps} steps)", main)
        run = _run_stage(rollout_stage.train, stage_cfg, rollout_stage.CHECKPOINT_KIND, main)
        reused = run.reused
        if reused:
            _say(f"    finished run reused: {stage_cfg.run_dir}", main)
        log = read_stage_log(Path(stage_cfg.run_dir))
        out[name] = {
            "steps": log["steps"],
            "wall_clock_s": log["wall_clock_s"],
            "median_step_s": log["median_step_s"],
            "step_time_spread_s": log["step_time_spread_s"],
            "run_dir": log["run_dir"],
            "reused": reused,
            "curve": _rollout_curve(log["val"]),
        }
    return out


# ---- 4. evaluation ----------------------------------------------------------------------------
def parameter_counts(model: torch.nn.Module, strategy: str) -> dict[str, int]:
    """Total parameters and those the condition trains (its tokeniser strategy applied)."""
    from physok.models.tokeniser import apply_training_strategy

    apply_training_strategy(model.tokeniser, strategy)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def _evaluation_key(
    cfg: ExperimentConfig, checkpoint: Path, meta: dict[str, Any], eval_cfg: Any
) -> dict[str, Any]:
    """What a cached evaluation must match: the checkpoint, its files' SHA-256 as recorded in
    its config.json (a retrained run can reach the same path and step), data and settings."""
    return {
        "version": EVAL_CACHE_VERSION,
        # relative to the experiment folder, which may be moved or copied
        "checkpoint": str(checkpoint.relative_to(cfg.run_dir)),
        "step": int(meta["step"]),
        "weights_sha256": {k: v.get("sha256") for k, v in sorted(meta["files"].items())},
        "dataset": cfg.downstream,
        "eval_config": eval_cfg.to_dict(),
    }


def _cached_evaluation(cache: Path, key: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The cached evaluation in `cache` when it was made with exactly `key` (None otherwise, or
    with `force`, or when the file is a cut write)."""
    if force or not cache.exists():
        return None
    try:
        saved = json.loads(cache.read_text())
    except json.JSONDecodeError:
        return None  # a cut write: evaluate again
    return saved if {k: saved.get(k) for k in key} == key else None


def evaluate_condition(
    cfg: ExperimentConfig, name: str, *, force: bool, seed: int | None = None
) -> dict[str, Any]:
    """Next-frame and rollout metrics of a condition's final checkpoint (cached in eval/)."""
    from physok.evaluate import evaluate_checkpoint, load_rollout_model

    run_dir = cfg.rollout_run_dir(name, seed)
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is None:
        raise ConfigError(f"{run_dir} holds no checkpoint to evaluate; rerun the experiment")
    eval_cfg = cfg.eval_config()
    meta = ckpt_io.read_checkpoint_config(latest)
    key = _evaluation_key(cfg, latest, meta, eval_cfg)
    cache = cfg.run_dir / EVAL_DIR / f"{run_dir.name.removeprefix('rollout_')}.json"
    saved = _cached_evaluation(cache, key, force)
    if saved is not None:
        return saved
    model = load_rollout_model(latest)
    params = parameter_counts(model, get_condition(name).strategy)
    result = evaluate_checkpoint(
        latest, cfg.data_dir, cfg.downstream, eval_cfg, progress=cfg.progress, model=model
    )
    out = {
        **key,
        "params": params,
        "next_frame": result["next_frame"],
        "rollout": result["rollout"],
    }
    write_json_atomic(cache, _clean_floats(out))
    return out


def model_choices(cfg: ExperimentConfig) -> dict[str, Any]:
    """The modelling choices every condition shares (what the report's setup states)."""
    rollout = cfg.rollout_config(BASELINE)
    tok = rollout.tokeniser_config()
    return {
        "target": rollout.target,
        "normalisation": tok.normalisation,
        "scale_policy": tok.scale_policy,
        "eval_scale_prob": tok.eval_scale_prob if tok.scale_policy == "mixed" else None,
        "eval_scales": [list(p) for p in tok.eval_scales],
        "rollout_lr": rollout.lr,
        "rollout_batch_size": rollout.batch_size,
        "tokeniser_lr": cfg.tokeniser_config("in_domain").lr,
    }


def train_baselines(
    cfg: ExperimentConfig, seed: int, training: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Train (or reuse) the trained baselines of `seed`: the U-Net gets the no-pretraining
    condition's downstream wall-clock."""
    out: dict[str, dict[str, Any]] = {}
    if "unet" in cfg.baselines:
        from physok.baselines.unet_training import train_unet

        budget = float(training[BASELINE]["wall_clock_s"])
        unet_cfg = cfg.unet_config(budget, seed)
        _say(f"\n==> baseline: U-Net, {budget:.0f} s of training (the no-pretraining budget)")
        from physok.baselines.unet import CHECKPOINT_KIND as UNET_KIND

        # a U-Net run has one checkpoint, at its end: a damaged one means training again
        for note in set_aside_damaged_checkpoints(Path(unet_cfg.run_dir), UNET_KIND, 0):
            _say(f"    damaged checkpoint: {note}; training the U-Net again")
        result = train_unet(unet_cfg)
        if result.reused:
            _say(f"    finished run reused: {unet_cfg.run_dir}")
        out["unet"] = {
            "steps": result.steps,
            "wall_clock_s": result.wall_clock_s,
            "median_step_s": _median_logged_step_time(Path(unet_cfg.run_dir)),
            "budget_s": budget,
            "stopped_by": result.stopped_by,
            "final_loss": result.final_loss,
            "checkpoint": str(result.checkpoint),
            "run_dir": unet_cfg.run_dir,
            "reused": result.reused,
            "seed": seed,
        }
    return out


def _median_logged_step_time(run_dir: Path) -> float | None:
    """Median seconds per step between the logged records of a run's metrics.jsonl."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    points = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train" and "elapsed_s" in rec and "step" in rec:
            points.append((rec["step"], rec["elapsed_s"]))
    rates = [
        (t1 - t0) / (s1 - s0)
        for (s0, t0), (s1, t1) in itertools.pairwise(sorted(points))
        if s1 > s0
    ]
    return statistics.median(rates) if rates else None


def evaluate_baseline(
    cfg: ExperimentConfig, key: str, *, seed: int, force: bool
) -> dict[str, Any]:
    """Next-frame and rollout metrics of a trained baseline (cached in eval/ like a condition)."""
    from physok.baselines.unet import UNetForecaster
    from physok.evaluate import evaluate_model

    run_dir = cfg.baseline_run_dir(key, seed)
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is None:
        raise ConfigError(f"{run_dir} holds no checkpoint to evaluate; rerun the experiment")
    eval_cfg = cfg.eval_config()
    key_doc = _evaluation_key(cfg, latest, ckpt_io.read_checkpoint_config(latest), eval_cfg)
    cache = cfg.run_dir / EVAL_DIR / f"{run_dir.name}.json"
    saved = _cached_evaluation(cache, key_doc, force)
    if saved is not None:
        return saved
    model = UNetForecaster.from_pretrained(latest)
    params = sum(p.numel() for p in model.parameters())
    result = evaluate_model(
        model, cfg.data_dir, cfg.downstream, eval_cfg, where=run_dir, progress=cfg.progress
    )
    out = {
        **key_doc,
        "params": {"total": params, "trainable": params},
        "next_frame": result["next_frame"],
        "rollout": result["rollout"],
    }
    write_json_atomic(cache, _clean_floats(out))
    return out


def evaluate_tokeniser_on_downstream(
    cfg: ExperimentConfig, source: str, *, seed: int, force: bool
) -> dict[str, Any]:
    """Reconstruction VRMSE of the `source` tokeniser of `seed` on the downstream dataset's
    validation windows: for the out-of-domain one, how well a tokeniser that never saw the
    downstream data encodes it (the in-domain one's own validation measures the same windows).
    Cached in eval/ like the conditions."""
    from physok.data.reader import WellWindowDataset
    from physok.data.registry import FieldRegistry
    from physok.evaluate.config import select_device
    from physok.evaluate.reconstruction import evaluate_reconstruction
    from physok.models.tokeniser import Tokeniser

    stage_cfg = cfg.tokeniser_config(source, seed)
    run_dir = Path(stage_cfg.run_dir)
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is None:
        raise ConfigError(f"{run_dir} holds no checkpoint to evaluate; rerun the experiment")
    meta = ckpt_io.read_checkpoint_config(latest)
    key = {
        "version": EVAL_CACHE_VERSION,
        # relative to the experiment folder, which may be moved or copied
        "checkpoint": str(latest.relative_to(cfg.run_dir)),
        "step": int(meta["step"]),
        "weights_sha256": {k: v.get("sha256") for k, v in sorted(meta["files"].items())},
        "dataset": cfg.downstream,
        "split": "valid",
        "windows": stage_cfg.val_windows,
        "input_frames": stage_cfg.input_frames,
    }
    cache = cfg.run_dir / EVAL_DIR / f"{run_dir.name}_on_{cfg.downstream}.json"
    saved = _cached_evaluation(cache, key, force)
    if saved is not None:
        return saved
    tokeniser = Tokeniser.from_pretrained(latest)
    registry = FieldRegistry(list(tokeniser.config.field_names))
    dataset = WellWindowDataset(
        Path(cfg.data_dir) / cfg.downstream, "valid", window=stage_cfg.window, registry=registry
    )
    try:
        result = evaluate_reconstruction(
            tokeniser,
            dataset,
            stage_cfg.val_windows,
            input_frames=stage_cfg.input_frames,
            batch_size=stage_cfg.val_batch_size,
            device=select_device(cfg.device),
        )
    finally:
        dataset.close()
    out = {**key, **result}
    write_json_atomic(cache, _clean_floats(out))
    return out


# ---- 5. outputs -------------------------------------------------------------------------------
def cpu_model_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."): step times differ between
    CPUs by 1.5x and more, so the report names the one it ran on. The architecture when unknown."""
    try:
        with open(cpuinfo) as f:  # Linux; platform.processor() is only "x86_64" there
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model_name()} ({torch.get_num_threads()} threads)"
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "world_size": world_size,
        "python": platform.python_version(),
    }


def _seed_summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one seed's evaluation that the across-seed spread is taken over."""
    nf, ro = ev.get("next_frame") or {}, ev.get("rollout") or {}
    return {
        "vrmse": (nf.get("vrmse") or {}).get("mean"),
        "neps": {r: (v or {}).get("mean") for r, v in (nf.get("neps") or {}).items()},
        "horizons": dict(ro.get("horizons") or {}),
    }


def _spread(values: list[Any]) -> dict[str, Any]:
    """{"mean", "std" (sample, None for one value), "n", "values"}; None entries (a diverged
    seed) make mean and std None: an average over the other seeds would hide them."""
    finite = [v for v in values if isinstance(v, (int, float)) and v == v]
    ok = len(finite) == len(values) and values
    return {
        "mean": statistics.fmean(finite) if ok else None,
        "std": statistics.stdev(finite) if ok and len(finite) > 1 else None,
        "n": len(values),
        "values": values,
    }


def across_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of next-frame VRMSE, NEPS and rollout horizons."""
    summaries = [per_seed[s] for s in sorted(per_seed)]
    horizons = [h for h in (summaries[0].get("horizons") or {})] if summaries else []
    ranges = [r for r in (summaries[0].get("neps") or {})] if summaries else []
    return {
        "seeds": sorted(per_seed),
        "vrmse": _spread([x.get("vrmse") for x in summaries]),
        "neps": {r: _spread([(x.get("neps") or {}).get(r) for x in summaries]) for r in ranges},
        "horizons": {
            h: _spread([(x.get("horizons") or {}).get(h) for x in summaries]) for h in horizons
        },
    }


def _with_seeds(entry: dict[str, Any], per_seed_eval: dict[int, dict[str, Any]]) -> dict[str, Any]:
    summaries = {seed: _seed_summary(ev) for seed, ev in per_seed_eval.items()}
    entry["seeds"] = {str(seed): v for seed, v in summaries.items()}
    entry["across_seeds"] = across_seeds(summaries)
    return entry


def _with_reconstruction(
    trained: dict[int, dict[str, Any]],
    reconstruction: dict[int, dict[str, Any]] | None,
    seed: int,
) -> dict[str, Any]:
    """The tokenisers of `seed`, each with its reconstruction of the downstream data."""
    tokenisers = trained[seed]["tokenisers"]
    found = (reconstruction or {}).get(seed) or {}
    return {
        source: {**tok, "downstream_reconstruction": found[source]} if source in found else tok
        for source, tok in tokenisers.items()
    }


def assemble_results(
    cfg: ExperimentConfig,
    *,
    data: dict[str, Any],
    trained: dict[int, dict[str, Any]],
    evaluation: dict[int, dict[str, Any]],
    baselines: dict[int, dict[str, Any]],
    baseline_eval: dict[int, dict[str, Any]],
    device: torch.device,
    world_size: int,
    total_s: float,
    command: str | None,
    threads: int | None = None,
    reconstruction: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The results.json document (schema "physok.experiment/2").

    Every condition's entry holds the first seed's full evaluation (as schema 1 did), the
    per-seed summaries ("seeds") and their spread ("across_seeds"); "baselines" holds the
    reference forecasts (persistence, linear extrapolation, on the same windows) and the
    trained baselines in the same shape as a condition. `reconstruction` ({seed: {source:
    evaluate_tokeniser_on_downstream(...)}}) goes into each tokeniser's entry as
    "downstream_reconstruction".
    """
    from physok.experiment.report import compare

    first = cfg.seed
    conditions = {}
    for name in (c for c in CONDITION_ORDER if c in cfg.conditions):
        c = get_condition(name)
        ev = evaluation[first][name]
        conditions[name] = _with_seeds(
            {
                "label": c.label,
                "tokeniser": c.tokeniser,
                "strategy": c.strategy,
                "params": ev["params"],
                "training": trained[first]["training"][name],
                "next_frame": ev["next_frame"],
                "rollout": ev["rollout"],
            },
            {seed: evaluation[seed][name] for seed in evaluation},
        )
    ref_ev = evaluation[first][cfg.conditions[0]]
    baseline_results: dict[str, Any] = {}
    ref_rollout = ref_ev.get("rollout") or {}
    for key, label in REFERENCE_FORECASTS.items():
        rollout = ref_rollout.get(key)
        if isinstance(rollout, dict) and "window_indices" in ref_rollout:
            # the conditions' windows: the report compares them window by window
            rollout = {**rollout, "window_indices": ref_rollout["window_indices"]}
        baseline_results[key] = {
            "label": label,
            "kind": "reference",
            "next_frame": (ref_ev.get("next_frame") or {}).get(key),
            "rollout": rollout,
        }
    for key in baselines[first]:
        ev = baseline_eval[first][key]
        baseline_results[key] = _with_seeds(
            {
                "label": TRAINED_BASELINES[key],
                "kind": "trained",
                "params": ev["params"],
                "training": baselines[first][key],
                "next_frame": ev["next_frame"],
                "rollout": ev["rollout"],
            },
            {seed: baseline_eval[seed][key] for seed in baseline_eval},
        )
    config = cfg.to_dict()
    if command:
        config["command"] = command
    results = {
        "schema": SCHEMA,
        "name": cfg.name,
        "preset": cfg.preset,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "physok_version": __version__,
        "environment": {
            **environment(device, world_size),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "thread_policy": "auto (every available core)" if cfg.threads == 0 else "set",
        },
        "config": config,
        "downstream_dataset": cfg.downstream,
        "cost_steps": cfg.cost_steps,
        "total_wall_clock_s": total_s,
        "seeds": list(cfg.seed_list()),
        "model": model_choices(cfg),
        "data": data,
        "tokenisers": _with_reconstruction(trained, reconstruction, first),
        "tokenisers_by_seed": {
            str(seed): _with_reconstruction(trained, reconstruction, seed)
            for seed in trained
            if seed != first
        },
        "conditions": conditions,
        "baselines": baseline_results,
    }
    results = _clean_floats(results)
    results["comparison"] = _clean_floats(compare(results))
    return results


def write_outputs(results: dict[str, Any], run_dir: Path) -> tuple[Path, Path, dict[str, str]]:
    """results.json, the figures and report.md (all written atomically)."""
    from physok.experiment.figures import write_figures
    from physok.experiment.report import write_report

    results_path = run_dir / RESULTS_FILE
    write_json_atomic(results_path, results)
    figures = write_figures(results, run_dir)
    report_path = write_report(results, run_dir, figures)
    return results_path, report_path, figures


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _summary_row(label: str, vrmse: Any, neps: dict, horizons: dict, change: Any) -> str:
    return (
        f"  {label:<30} {_fmt(vrmse):>7} "
        f"{('' if change is None else f'{change:+.0f}%'):>8} "
        f"{_fmt(neps.get('low'), '.3g'):>9} {_fmt(neps.get('mid'), '.3g'):>7} "
        f"{_fmt(neps.get('high'), '.3g'):>7} {_fmt(horizons.get('1-2')):>9} "
        f"{_fmt(horizons.get('3-6')):>6} {_fmt(horizons.get('7-18')):>6}"
    )


def _summary_numbers(entry: dict, seeds: bool) -> tuple[Any, dict, dict]:
    """(VRMSE, NEPS means, horizons) of a condition or baseline: across seeds when several."""
    nf, ro = entry.get("next_frame") or {}, entry.get("rollout") or {}
    neps = {r: (v or {}).get("mean") for r, v in (nf.get("neps") or {}).items()}
    across = entry.get("across_seeds")
    if seeds and across:
        hz = {h: v.get("mean") for h, v in (across.get("horizons") or {}).items()}
        neps_seeds = {r: (v or {}).get("mean") for r, v in (across.get("neps") or {}).items()}
        return across["vrmse"]["mean"], neps_seeds or neps, hz
    return (nf.get("vrmse") or {}).get("mean"), neps, ro.get("horizons") or {}


def print_summary(results: dict[str, Any], outcome: ExperimentOutcome) -> None:
    """The end-of-run summary: one line per condition and baseline, and where the outputs are."""
    comp = results.get("comparison", {})
    changes = comp.get("conditions", {}) if isinstance(comp, dict) else {}
    seeds = len(results.get("seeds") or [0]) > 1
    print(f"\nexperiment {results['name']} finished in {results['total_wall_clock_s']:.0f} s")
    if seeds:
        print(f"  means over seeds {results['seeds']}")
    header = f"  {'condition':<30} {'VRMSE':>7} {'vs none':>8} {'NEPS low':>9} {'mid':>7} "
    print(header + f"{'high':>7} {'roll 1-2':>9} {'3-6':>6} {'7-18':>6}")
    for name, c in results["conditions"].items():
        change = (changes.get(name) or {}).get("vrmse_change_pct")
        print(_summary_row(c["label"], *_summary_numbers(c, seeds), change))
    for key, b in (results.get("baselines") or {}).items():
        label = {"persistence": "(persistence)", "linear_extrapolation": "(linear extrapolation)"}
        print(_summary_row(label.get(key, f"({key} baseline)"), *_summary_numbers(b, seeds), None))
    answer = comp.get("answer") if isinstance(comp, dict) else None
    if isinstance(answer, dict) and answer.get("in_domain_trainable_change_pct") is not None:
        verdict = {
            "lower": "lowered",
            "higher": "raised",
            "indistinguishable": "did not measurably change (within the spread)",
        }.get(answer.get("in_domain_relation"), "changed (no spread to compare with)")
        print(
            f"  in-domain pretraining {verdict} next-frame VRMSE vs no pretraining: "
            f"{answer['in_domain_trainable_change_pct']:+.1f}% (the paper's -64% was on 512² "
            "real data after 10,500 steps)"
        )
    print(f"  report:  {outcome.report_path}")
    print(f"  results: {outcome.results_path}")
    for path in outcome.figures.values():
        print(f"  figure:  {outcome.run_dir / path}")
    sys.stdout.flush()


class ExperimentError(ValueError):
    """A step that rank 0 runs alone failed; the other ranks stop with this message."""


def _on_main(main: bool, fn: Any) -> Any:
    """Run `fn` on rank 0 only, and make every rank fail when it fails (instead of the other
    ranks waiting at the next barrier until the process-group timeout)."""
    result, error = None, None
    if main:
        try:
            result = fn()
        except Exception as e:  # re-raised below, and on every other rank as ExperimentError
            error = e
    message = dist_utils.broadcast_object(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise ExperimentError(f"rank 0 stopped the experiment: {message}")
    return result


def run_experiment(
    cfg: ExperimentConfig, *, force: bool = False, command: str | None = None
) -> ExperimentOutcome:
    """Run (or finish) the experiment of `cfg`; see the module docstring.

    The experiment folder is locked for the whole run (`physok.run_lock`; rank 0 holds the lock
    under torchrun): a second run of the same experiment is refused at once with a
    FolderLockedError naming this one, and a lock left by a killed run is taken over."""
    cfg.validate()
    with experiment_lock(cfg, enabled=int(os.environ.get("RANK", "0")) == 0):  # no group yet
        return _run_experiment(cfg, force=force, command=command)


def experiment_lock(cfg: ExperimentConfig, *, enabled: bool = True) -> FolderLock:
    """The lock of the experiment folder (its file sits beside the folder, which --force
    deletes)."""
    return FolderLock(
        cfg.run_dir,
        what="experiment folder",
        hint="wait for that run to finish (or stop it), or run under another --name",
        enabled=enabled,
    )


def _run_experiment(
    cfg: ExperimentConfig, *, force: bool, command: str | None
) -> ExperimentOutcome:
    cfg.validate()
    t0 = time.perf_counter()
    ctx = dist_utils.init_distributed(cfg.device)
    main = ctx.is_main
    threads = apply_threads(cfg.threads, ctx.world_size, ctx.device.type)
    run_dir = cfg.run_dir
    _on_main(main, lambda: check_data_dir(cfg))  # before --force deletes anything
    _on_main(main, lambda: claim_run_dir(cfg, force=force))
    _say(f"==> data: {', '.join(cfg.datasets_needed())} in {cfg.data_dir}", main)
    data = _on_main(main, lambda: prepare_data(cfg, force=force))
    trained: dict[int, dict[str, Any]] = {}
    for seed in cfg.seed_list():
        if cfg.seeds > 1:
            _say(f"\n==> seed {seed} ({len(trained) + 1} of {cfg.seeds})", main)
        tokenisers = pretrain_tokenisers(cfg, main=main, seed=seed)
        retrained = tuple(k for k, t in tokenisers.items() if not (t["reused"] or t["unchanged"]))
        training = train_conditions(cfg, main=main, retrained=retrained, seed=seed)
        trained[seed] = {"tokenisers": tokenisers, "training": training}
    world_size = dist_utils.get_world_size()
    # Training is over: every rank leaves the process group here and rank 0 evaluates alone.
    # Waiting ranks would otherwise sit in a collective for the whole evaluation, which at
    # paper scale outlasts the process group's timeout.
    dist_utils.barrier()
    dist_utils.teardown(sync=False)
    if not main:
        return ExperimentOutcome(None, run_dir, None, None, {})
    # the trained baselines run on rank 0 alone (a U-Net is small, and its wall-clock budget is
    # the no-pretraining condition's)
    baselines = {seed: train_baselines(cfg, seed, t["training"]) for seed, t in trained.items()}
    record_settings(cfg)  # every stage now holds a run made with these settings
    _say("\n==> evaluation: next-frame subsets and 18-step rollouts")
    evaluation = {
        seed: {c: evaluate_condition(cfg, c, force=force, seed=seed) for c in cfg.conditions}
        for seed in trained
    }
    baseline_eval = {
        seed: {b: evaluate_baseline(cfg, b, seed=seed, force=force) for b in baselines[seed]}
        for seed in trained
    }
    reconstruction = {
        seed: {
            source: evaluate_tokeniser_on_downstream(cfg, source, seed=seed, force=force)
            for source in t["tokenisers"]
        }
        for seed, t in trained.items()
    }
    results = assemble_results(
        cfg,
        threads=threads,
        data=data,
        trained=trained,
        evaluation=evaluation,
        baselines=baselines,
        baseline_eval=baseline_eval,
        device=ctx.device,
        world_size=world_size,
        total_s=time.perf_counter() - t0,
        command=command,
        reconstruction=reconstruction,
    )
    results_path, report_path, figures = write_outputs(results, run_dir)
    outcome = ExperimentOutcome(results, run_dir, results_path, report_path, figures)
    print_summary(results, outcome)
    return outcome
