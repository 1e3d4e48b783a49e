"""What every training stage shares: datasets and batch loaders from a config, the metrics log,
RNG state for exact resume, the fixed validation subset, and the error that stops a run.

The stages (`tokeniser_stage`, `rollout_stage`) differ in model, loss and optimiser; their data
handling, logging and resume mechanics are these functions, so both behave the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from physok import checkpoint as ckpt_io
from physok.data.generators import GENERATORS
from physok.data.loaders import BatchLoader, build_batch_loader
from physok.data.reader import WellWindowDataset
from physok.data.registry import WELL_CHANNELS, FieldRegistry
from physok.train.config_overrides import ConfigError, config_from_dict
from physok.train.distributed import DistContext
from physok.write_errors import writing

METRICS_FILE = "metrics.jsonl"


def begin_loop(stage: Any) -> tuple[MetricsLog, Callable[[], float]]:
    """Start a stage's training loop: open the metrics log (a resumed run drops the records
    after its checkpoint), print the stage's notes on rank 0 (adding one when the run is
    already done), and return the log and a clock of the run's total wall-clock seconds
    (time before a resume included). `stage` has cfg, ctx, run_dir, notes, start_step,
    resumed_from and elapsed_before (both stages' Stage)."""
    main = stage.ctx.is_main
    log = MetricsLog(
        stage.run_dir / METRICS_FILE, main, stage.start_step if stage.resumed_from else None
    )
    if stage.start_step >= stage.cfg.steps:
        stage.notes.append(
            f"the run is already at step {stage.start_step} (--steps {stage.cfg.steps}): "
            "nothing to train"
        )
    if main:
        for note in stage.notes:
            print(f"note: {note}", flush=True)
    t0 = time.perf_counter()

    def elapsed() -> float:
        return stage.elapsed_before + time.perf_counter() - t0

    return log, elapsed


def non_finite_step_error(run_dir: Path, step: int, out: Any) -> TrainingError:
    """The error that stops a run whose step `step` (1-based) had a non-finite loss or gradient
    (`out`: the stage's StepOutput); it names the last good checkpoint to resume from."""
    last = ckpt_io.latest_checkpoint(run_dir)
    return TrainingError(
        f"non-finite loss or gradient at step {step} (loss {out.loss}, grad norm "
        f"{out.grad_norm}, dataset {out.dataset}); the step was not applied and no "
        "checkpoint was written. Last good checkpoint: "
        f"{last if last is not None else 'none'}. Lower --lr or grad_clip and "
        "continue with --resume, or check the data"
    )


def progress_bar(stage_name: str, total: int, initial: int, *, enabled: bool) -> tqdm:
    """The training loop's progress bar (rank 0 only, `progress=false` to silence)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=stage_name,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
    )


class StageConfigMixin:
    """Preset lookup and JSON round trip shared by the stage configs (frozen dataclasses with
    one class method per name in `PRESETS`)."""

    PRESETS: ClassVar[tuple[str, ...]] = ("fast", "paper")

    @classmethod
    def preset_named(cls, name: str, **overrides: Any) -> Any:
        if name not in cls.PRESETS:
            raise ConfigError(f"--config {name!r}: choose one of {sorted(cls.PRESETS)}")
        return getattr(cls, name)(**overrides)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train_config") -> Any:
        return config_from_dict(cls, data, where)


class StageDataConfig(Protocol):
    """The config fields the shared data functions read (both stage configs have them)."""

    data_dir: str
    datasets: tuple[str, ...]
    window: int
    batch_size: int
    seed: int
    steps: int
    num_workers: int
    loader: str


class TrainingError(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the message says what and how to proceed."""


def same_path_from_run(
    saved: str | None, saved_run_dir: str, now: str | None, now_run_dir: str
) -> bool:
    """Whether a path in a run's saved config (e.g. its tokeniser_checkpoint) names the same
    place as now: the same absolute path, or the same path relative to the run's folder's
    parent (the run and what it points to were moved or copied together, e.g. an experiment
    folder)."""
    if saved is None or now is None:
        return saved == now
    if os.path.abspath(saved) == os.path.abspath(now):
        return True
    saved_parent = os.path.dirname(os.path.abspath(saved_run_dir))
    now_parent = os.path.dirname(os.path.abspath(now_run_dir))
    return os.path.relpath(os.path.abspath(saved), saved_parent) == os.path.relpath(
        os.path.abspath(now), now_parent
    )


def _dataset_dir(cfg: StageDataConfig, name: str) -> Path:
    base = Path(cfg.data_dir)
    if not base.is_dir():
        raise ConfigError(
            f"--data-dir {base} does not exist; generate data with `python -m physok.data "
            f"generate --dataset {name} --out {base}` or point --data-dir at a Well copy"
        )
    path = base / name
    if path.is_dir():
        return path
    known = sorted(set(GENERATORS) | set(WELL_CHANNELS))
    if name in known:
        raise ConfigError(
            f"--datasets {name}: folder {path} is missing; generate it with `python -m "
            f"physok.data generate --dataset {name} --out {base}`"
        )
    present = sorted(  # not the hidden `.NAME.partial` folders of unfinished generations
        p.name for p in base.iterdir() if not p.name.startswith(".") and (p / "data").is_dir()
    )
    raise ConfigError(
        f"--datasets {name}: unknown dataset (no folder {path}); datasets in {base}: "
        f"{present or 'none'}; known names: {known}"
    )


def build_datasets(
    cfg: StageDataConfig,
    registry: FieldRegistry,
    split: str,
    field_names: Sequence[str] | None = None,
) -> list[WellWindowDataset]:
    """One WellWindowDataset per `cfg.datasets` entry, sharing (and extending) `registry`.

    With `field_names` (a tokeniser's fixed head registry) every channel must already be in it.
    """
    out = []
    for name in cfg.datasets:
        ds = WellWindowDataset(_dataset_dir(cfg, name), split, window=cfg.window, registry=registry)
        if field_names is not None:
            missing = [c for c in ds.channel_names if c not in field_names]
            if missing:
                raise ConfigError(
                    f"--datasets {name}: channels {missing} are not in the tokeniser's "
                    f"field_names {list(field_names)}; add them at the end of model.field_names "
                    "or train a tokeniser whose registry includes them"
                )
        for size in ds.grid_shape:
            if size < 1 or size & (size - 1):
                raise ConfigError(
                    f"--datasets {name}: grid {ds.grid_shape} is not a power of two in each "
                    "dimension, which the tokeniser's spatial compression needs; regenerate "
                    "with --resolution 64 (or another power of two)"
                )
        out.append(ds)
    return out


def build_loader(
    datasets: Sequence[WellWindowDataset],
    cfg: StageDataConfig,
    ctx: DistContext,
    start_batch: int = 0,
) -> BatchLoader:
    """Batches for steps start_batch..cfg.steps-1: one dataset per batch (equal probability),
    this rank's disjoint shard; `start_batch` resumes the exact sequence. `cfg.loader` picks
    the PyTorch DataLoader or the DALI pipeline (identical batches)."""
    for ds in datasets:
        if len(ds) // ctx.world_size < cfg.batch_size:
            raise ConfigError(
                f"--batch-size {cfg.batch_size}: dataset {ds.dataset_name} has {len(ds)} training "
                f"windows, fewer than {cfg.batch_size} per rank for {ctx.world_size} rank(s); "
                "lower the batch size or generate more trajectories"
            )
    return build_batch_loader(cfg.loader, datasets, cfg, ctx, start_batch)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global stream itself)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state as tensors and ints so train_state.pt loads with weights_only=True
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def validation_indices(n_windows: int, n: int) -> list[int]:
    """A fixed, evenly spread subset of `n` window indices (all when fewer exist)."""
    if n >= n_windows:
        return list(range(n_windows))
    return np.unique(np.rint(np.linspace(0, n_windows - 1, n)).astype(np.int64)).tolist()


class MetricsLog:
    """`metrics.jsonl` in the run dir (rank 0 only): one JSON object per step or validation."""

    def __init__(self, path: Path, enabled: bool, keep_through_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_through_step is not None and path.exists():
            # A resumed run replays the steps after its checkpoint: drop their old records.
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= keep_through_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    break  # a line cut by the crash
        tmp = path.with_suffix(".tmp")
        with writing(path, "the metrics log"):
            try:
                tmp.write_text("".join(line + "\n" for line in kept))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self._f = open(path, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with writing(self.path, "the metrics log"):  # a full disk: one clear error
                self._f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.enabled:
            self._f.close()
