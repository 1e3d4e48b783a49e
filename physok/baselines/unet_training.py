"""Train the U-Net baseline (`UNetForecaster`) on the downstream windows the emulators see.

Shape: `UNetTrainConfig` -> `train_unet` = reuse check, `_setup` (data, model, optimiser),
`_loop`, `_save`. The data path is the rollout stage's (`physok.train.common.build_datasets` /
`build_loader`: 10-frame windows of `<data_dir>/<dataset>/data/train`, batch order a pure
function of the seed); the loss is its too: MAE of frame 10 from frames 1-9, in output units
(the U-Net's delta target, `UNetForecaster.training_pair`). Training stops at `max_steps` or
once `wall_clock_s` seconds (data loading included, setup not) have passed, whichever comes
first; the budget is checked after each step, so a run always takes at least one step and may
overshoot the budget by at most one step. A fixed step count is deterministic on a device (same
seed, same weights); a wall-clock stop is not, by nature. The final checkpoint is written
atomically to `<run_dir>/checkpoints/step_XXXXXXXX` with the training config and the results;
a run directory holding one with the same config is returned as is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from physok import checkpoint as ckpt_io
from physok.baselines.extrapolation import CONTEXT_FRAMES
from physok.baselines.unet import CHECKPOINT_KIND, N_INPUT, UNetForecaster, check_resolution
from physok.data.registry import FieldRegistry
from physok.train.common import (
    METRICS_FILE,
    MetricsLog,
    TrainingError,
    build_datasets,
    build_loader,
)
from physok.train.config_overrides import ConfigError
from physok.train.distributed import DistContext, select_device
from physok.train.optim import build_adamw

EULER = "euler_multi_quadrants_periodicBC"
# Config keys that say where and how visibly a run happens, not what it computes: a finished run
# is reused whatever they are now.
RUNTIME_KEYS = ("run_dir", "device", "progress", "num_workers")
_ENDLESS = 1 << 62  # loader length for a wall-clock-only run (the sampler draws lazily)


@dataclass(frozen=True)
class UNetTrainConfig:
    """One U-Net baseline run. Either `max_steps` or `wall_clock_s` may be None, not both."""

    data_dir: str = "data"
    dataset: str = EULER
    run_dir: str = "runs/unet_baseline"
    n_input: int = N_INPUT
    init_features: int = 16
    context_frames: int = CONTEXT_FRAMES  # frames 1..9 the context, frame 10 the target
    batch_size: int = 2  # the emulators' per-rank batch
    # AdamW at a constant 1e-3: a short run (hundreds of steps) of a small BatchNorm conv net
    # needs a higher rate than the emulator's 2e-4 transformer schedule, and 1e-3 is the usual
    # stable choice for such U-Nets; wd 1e-4 as the emulator.
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int | None = 300  # the fast emulator's step count
    wall_clock_s: float | None = None  # e.g. one emulator condition's training time
    log_every: int = 10  # steps between loss records (metrics.jsonl, loss_history)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"UNetTrainConfig.{key}: {why}")

        if self.max_steps is None and self.wall_clock_s is None:
            raise bad("max_steps", "max_steps and wall_clock_s are both None; set one of them")
        for key in ("n_input", "init_features", "batch_size", "log_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise bad(key, f"must be an integer >= 1, got {value!r}")
        if self.max_steps is not None and (
            not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise bad("max_steps", f"must be an integer >= 1 or None, got {self.max_steps!r}")
        if self.wall_clock_s is not None and not self.wall_clock_s > 0:
            raise bad("wall_clock_s", f"must be > 0 seconds or None, got {self.wall_clock_s!r}")
        if not 2 <= self.context_frames or self.n_input > self.context_frames:
            raise bad(
                "context_frames",
                f"must be >= 2 and >= n_input ({self.n_input}), got {self.context_frames}",
            )
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise bad(
                "lr", f"lr must be > 0 and weight_decay >= 0 (got {self.lr}, {self.weight_decay})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def window(self) -> int:
        return self.context_frames + 1


@dataclass
class UNetTrainResult:
    """What a run did: steps, training seconds, last step's loss (output units), the final
    checkpoint, (step, loss) every `log_every` steps and at the end, and why it stopped."""

    steps: int
    wall_clock_s: float
    final_loss: float
    checkpoint: Path
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    stopped_by: str = "max_steps"  # "max_steps" | "wall_clock"
    reused: bool = False

    def metrics(self) -> dict[str, Any]:
        """The JSON record stored in the checkpoint (everything but the path and `reused`)."""
        return {
            "steps": self.steps,
            "wall_clock_s": self.wall_clock_s,
            "final_loss": self.final_loss,
            "loss_history": [list(p) for p in self.loss_history],
            "stopped_by": self.stopped_by,
        }


def train_unet(cfg: UNetTrainConfig) -> UNetTrainResult:
    """Train the U-Net baseline per `cfg`, or return the finished run already in `run_dir`.

    A finished run with another config (any key but `RUNTIME_KEYS`) is a ConfigError naming
    the differing keys.
    """
    finished = _finished_run(cfg)
    if finished is not None:
        return finished
    setup = _setup(cfg)
    result = _loop(cfg, setup)
    result.checkpoint = _save(cfg, setup.model, result)
    return result


# ---- reuse ---------------------------------------------------------------------------------------
def _finished_run(cfg: UNetTrainConfig) -> UNetTrainResult | None:
    latest = ckpt_io.latest_checkpoint(cfg.run_dir)
    if latest is None:
        return None
    meta = ckpt_io.read_checkpoint_config(latest, kind=CHECKPOINT_KIND)
    saved, now = meta.get("train_config") or {}, json.loads(json.dumps(cfg.to_dict()))
    differ = sorted(
        k for k in set(saved) | set(now) if k not in RUNTIME_KEYS and saved.get(k) != now.get(k)
    )
    if differ:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in differ)
        raise ConfigError(
            f"--run-dir {cfg.run_dir} already holds a finished U-Net run ({latest}) trained with "
            f"a different config ({diffs}); choose another run_dir, or delete that one to retrain"
        )
    m = meta["metrics"]
    return UNetTrainResult(
        steps=int(m["steps"]),
        wall_clock_s=float(m["wall_clock_s"]),
        final_loss=float(m["final_loss"]),
        checkpoint=latest,
        loss_history=[(int(s), float(v)) for s, v in m["loss_history"]],
        stopped_by=m["stopped_by"],
        reused=True,
    )


# ---- setup ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _LoaderView:
    """The fields `build_datasets` / `build_loader` read (the stages' config shape)."""

    data_dir: str
    datasets: tuple[str, ...]
    window: int
    batch_size: int
    seed: int
    steps: int
    num_workers: int
    loader: str = "torch"


@dataclass
class _Setup:
    model: UNetForecaster
    optimizer: torch.optim.Optimizer
    loader: Any
    device: torch.device


def _setup(cfg: UNetTrainConfig) -> _Setup:
    view = _LoaderView(
        cfg.data_dir,
        (cfg.dataset,),
        cfg.window,
        cfg.batch_size,
        cfg.seed,
        cfg.max_steps or _ENDLESS,
        cfg.num_workers,
    )
    (train_set,) = build_datasets(view, FieldRegistry.default(), "train")
    grid = tuple(train_set.grid_shape)
    try:
        check_resolution(grid, f"dataset {cfg.dataset}")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.batch_size * (grid[0] // 16) * (grid[1] // 16) < 2:
        # BatchNorm at the 1x1 bottleneck needs two values per channel in training mode.
        raise ConfigError(
            f"UNetTrainConfig.batch_size: {cfg.batch_size} at {grid} leaves one value per "
            "channel at the U-Net's bottleneck, which BatchNorm cannot train on; use >= 2"
        )
    device = select_device(cfg.device)
    loader = build_loader([train_set], view, DistContext(device=device))
    torch.manual_seed(cfg.seed)  # the initial weights
    model = UNetForecaster(
        len(train_set.channel_names),
        grid,
        n_input=cfg.n_input,
        init_features=cfg.init_features,
        context_frames=cfg.context_frames,
        field_names=tuple(train_set.channel_names),
    ).to(device)
    optimizer = build_adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _Setup(model, optimizer, loader, device)


# ---- loop ----------------------------------------------------------------------------------------
def _loop(cfg: UNetTrainConfig, s: _Setup) -> UNetTrainResult:
    run_dir = Path(cfg.run_dir)
    log = MetricsLog(run_dir / METRICS_FILE, True, None)  # a fresh log: runs restart from 0
    bar = tqdm(total=cfg.max_steps, desc="unet", unit="step", disable=not cfg.progress)
    history: list[tuple[int, float]] = []
    step, loss_value, stopped_by = 0, math.nan, "max_steps"
    s.model.train()
    t0 = time.perf_counter()
    try:
        for batch in s.loader:
            x, target = s.model.training_pair(batch["fields"].to(s.device))
            loss = (s.model.unet(x).float() - target.float()).abs().mean()
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"U-Net baseline: non-finite loss at step {step + 1} (dataset "
                    f"{batch['dataset']}); lower lr or check the data. No checkpoint was written"
                )
            s.optimizer.step()
            step += 1
            elapsed = time.perf_counter() - t0
            out_of_time = cfg.wall_clock_s is not None and elapsed >= cfg.wall_clock_s
            last = out_of_time or step == cfg.max_steps
            if step % cfg.log_every == 0 or last:
                history.append((step, loss_value))
                log.write({"kind": "train", "step": step, "loss": loss_value, "elapsed_s": elapsed})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
            if out_of_time:
                stopped_by = "wall_clock"
                break
    finally:
        bar.close()
        log.close()
    s.model.eval()
    elapsed = time.perf_counter() - t0
    return UNetTrainResult(step, elapsed, loss_value, run_dir, history, stopped_by)


# ---- save ----------------------------------------------------------------------------------------
def _save(cfg: UNetTrainConfig, model: UNetForecaster, result: UNetTrainResult) -> Path:
    return ckpt_io.save_checkpoint(
        cfg.run_dir,
        result.steps,
        kind=CHECKPOINT_KIND,
        model=model,
        model_config=model.config.to_dict(),
        train_config=cfg.to_dict(),
        metrics=result.metrics(),
        field_names=model.config.field_names,
        keep=1,
    )
