"""Rollout training: next-frame prediction of frame 10 from frames 1-9 (DESIGN.md §4-§5).

Layout (read top to bottom, same shape as `tokeniser_stage`): `RolloutTrainConfig` and its
presets; `setup` builds everything (process group, datasets, `build_model` from a pretrained or
random tokeniser plus a fresh processor, `parallelise`, optimiser, schedule, resume state);
`train_step` is one optimiser step; `validate` measures frame-10 MAE and VRMSE; `save_checkpoint`
/ `resume_from` persist and restore the complete state; `train` is the loop. The data pipeline
(`build_datasets`, `build_loader`, `collate_windows`) is shared with the tokeniser stage
(`physok.train.common`, `physok.data.loaders`).

Choices (documented where they are made):
- Loss: MAE of frame 10 in the model's output units (`RolloutModel.training_pair`): frame 10
  normalised by the statistics of frames 1-9 of each sample and field ("frame" target), or its
  change from frame 9 in units of the context's typical change ("delta" target); the model
  cannot see the target's statistics, and every field and sample weighs equally. Only the
  last output frame is trained: it is the one strictly causal prediction under chunked
  decoding (physok.models.rollout_model).
- Validation: MAE (output units, as the loss) and VRMSE (of the predicted frame, invariant to
  the normalisation) of frame 10, per dataset, on a fixed, evenly spread subset of validation
  windows split across ranks.
- Learning rate: `InverseSqrtSchedule` (physok.train.schedule), a pure function of the step, set
  before every step; an epoch is `epoch_steps` optimiser steps.
- Parallelism (under torchrun): FSDP2 `fully_shard` on each processor block, on the processor,
  and on the whole model root, which shards the tokeniser's parameters too. Sharding the
  tokeniser (instead of replicating it) keeps every parameter a DTensor on one mesh, so gradient
  averaging is FSDP's reduce-scatter for all of them and `clip_grad_norm_` sees one kind of
  tensor; the tokeniser is small (~5M), so its one all-gather per forward is cheap. Frozen
  tokeniser parameters ("mostly_frozen") stay in the root group: FSDP2 gathers them and
  produces no gradients for them.
- Randomness: initial weights come from `seed` (same on every rank); afterwards each rank's
  stream is reseeded from (seed, rank) so stochastic depth draws differ across ranks. Every RNG
  state is checkpointed, the batch sequence is a pure function of (seed, rank, step), and
  nothing else draws from the global stream (loaders have their own generator, FLOP counting
  forks the RNG, validation runs in eval mode), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from physok import checkpoint as ckpt_io
from physok.data.loaders import LOADER_KINDS, BatchLoader, collate_windows
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.metrics.neps import RANGES, ensemble_neps, shell_edges, shell_powers
from physok.metrics.vrmse import vrmse
from physok.models.prediction_target import TARGETS, denormalise
from physok.models.processor import Processor, ProcessorConfig
from physok.models.rollout_model import CHECKPOINT_KIND, RolloutModel, RolloutModelConfig
from physok.models.tokeniser import STRATEGIES, Tokeniser, TokeniserConfig
from physok.models.tokeniser import apply_training_strategy as apply_tokeniser_strategy
from physok.models.tokeniser.scales import total_compression
from physok.ops.rms_normalise import rms_normalise
from physok.train import distributed as dist_utils
from physok.train.common import (
    StageConfigMixin,
    TrainingError,
    begin_loop,
    build_datasets,
    build_loader,
    non_finite_step_error,
    progress_bar,
    rng_state,
    same_path_from_run,
    set_rng_state,
    validation_indices,
)
from physok.train.config_overrides import (  # apply_overrides: the stage's `--set`
    ConfigError,
    apply_overrides,
)
from physok.train.distributed import DistContext
from physok.train.optim import build_adamw
from physok.train.schedule import InverseSqrtSchedule
from physok.train.throughput import StepFlops, mfu, peak_flops

TOKENISER_KIND = "tokeniser"
MODEL_PRESETS = ("fast", "literal_fast", "paper")  # TokeniserConfig.preset names
# Tokeniser config keys a run may set on top of a pretrained tokeniser: they choose how the
# weights are used (which kernels, which fixed compression), not what the weights are.
TOKENISER_RUNTIME_KEYS = ("kernel_backend", "eval_scales")

__all__ = [
    "CHECKPOINT_KIND",
    "RolloutTrainConfig",
    "Stage",
    "TrainResult",
    "TrainingError",
    "apply_overrides",
    "build_model",
    "parallelise",
    "prediction_loss",
    "resume_from",
    "save_checkpoint",
    "setup",
    "train",
    "train_step",
    "validate",
]


# ---- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutTrainConfig(StageConfigMixin):
    """Everything the rollout stage needs; presets `fast()` and `paper()`."""

    # `--set model.NAME` / `processor.NAME` collect into these mappings (config_overrides)
    NESTED_OVERRIDES: ClassVar[dict[str, str]] = {
        "model.": "model_overrides",
        "processor.": "processor_overrides",
    }

    preset: str = "fast"
    # data: `<data_dir>/<dataset>/data/{train,valid}/*.hdf5` (The Well layout), at its resolution
    data_dir: str = "data"
    datasets: tuple[str, ...] = ("euler_multi_quadrants_periodicBC",)
    window: int = 10  # frames read per sample: input_frames context frames + the target
    input_frames: int = 9  # frames 1..9 are the context; frame input_frames + 1 the target
    num_workers: int = 0
    loader: str = "torch"
    # tokeniser: a tokeniser-stage checkpoint (checkpoint or run dir), or None = random init
    tokeniser_checkpoint: str | None = None
    tokeniser_strategy: str = "trainable"  # "trainable" | "mostly_frozen"
    # what the model predicts: "frame" | "delta" (physok.models.prediction_target); the input
    # normalisation is the tokeniser's (`--set model.normalisation=rms|zscore`). Both presets
    # use "delta" (docs/design.md says why); a config without the key is an older run: "frame".
    target: str = "frame"
    # Tokeniser architecture: a TokeniserConfig preset + `--set model.*` overrides. With a
    # checkpoint these must agree with it (None: take the checkpoint's architecture).
    model_preset: str | None = "fast"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # processor: a ProcessorConfig preset + `--set processor.*` overrides
    processor_preset: str = "fast"
    processor_overrides: dict[str, Any] = field(default_factory=dict)
    compile: bool | None = None  # torch.compile per processor block; None: on CUDA only
    # optimisation: AdamW (Walrus defaults), inverse-sqrt schedule stepped per epoch
    lr: float = 2e-4  # peak
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eps: float = 1e-10
    grad_clip: float = 5.0
    batch_size: int = 2  # per rank
    steps: int = 300
    epoch_steps: int = 50
    warmup_epochs: int = 1
    cooldown_epochs: int = 2
    warmup_start_factor: float = 0.1
    decay_offset: float = 1.0
    amp: bool = True  # bf16 autocast, CUDA only
    # validation: frame-10 MAE and VRMSE on a fixed subset of `val_windows` windows per dataset
    val_every: int = 50
    val_windows: int = 32
    val_batch_size: int = 4
    val_at_start: bool = True
    # checkpoints and logs
    run_dir: str = "runs/rollout"
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @classmethod
    def fast(cls, **overrides: Any) -> RolloutTrainConfig:
        """Fast tokeniser and processor, delta target, 300 steps of batch 2 in epochs of 50
        (the experiment's fast preset sets its own budget)."""
        return dataclasses.replace(cls(target="delta"), **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> RolloutTrainConfig:
        """The paper's recipe: AdamW 2e-4 (wd 1e-4, eps 1e-10), clip 5, 29,400 steps of batch 2
        per rank, epochs of 2,100 steps, warmup 1 / cooldown 2 epochs, f 0.1, offset 1."""
        base = cls(
            preset="paper",
            target="delta",
            model_preset="paper",
            processor_preset="paper",
            steps=29_400,
            epoch_steps=2_100,
            num_workers=4,
            val_every=2_100,
            val_windows=256,
            val_batch_size=8,
            ckpt_every=2_100,
            run_dir="runs/rollout_paper",
        )
        return dataclasses.replace(base, **overrides)

    def schedule(self) -> InverseSqrtSchedule:
        try:
            return InverseSqrtSchedule(
                self.lr,
                self.steps,
                self.epoch_steps,
                self.warmup_epochs,
                self.cooldown_epochs,
                self.warmup_start_factor,
                self.decay_offset,
            )
        except ValueError as e:
            raise ConfigError(
                f"learning-rate schedule (--steps {self.steps}, epoch_steps {self.epoch_steps}, "
                f"warmup_epochs, cooldown_epochs, warmup_start_factor, decay_offset): {e}"
            ) from None

    def validate(self) -> None:
        """Option-level checks (data- and checkpoint-dependent ones happen in `setup`)."""

        def bad(option: str, why: str) -> ConfigError:
            return ConfigError(f"{option}: {why}")

        if not self.datasets:
            raise bad("--datasets", "give at least one dataset name")
        if len(set(self.datasets)) != len(self.datasets):
            raise bad("--datasets", f"names repeat: {list(self.datasets)}")
        if self.input_frames < 2:
            raise bad("input_frames", f"must be >= 2, got {self.input_frames}")
        if self.window < self.input_frames + 1:
            raise bad(
                "window",
                f"windows of {self.window} frames cannot hold input_frames={self.input_frames} "
                "context frames and the target frame; set window >= input_frames + 1",
            )
        for option, value in (
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--val-every", self.val_every),
            ("--ckpt-every", self.ckpt_every),
            ("epoch_steps", self.epoch_steps),
            ("val_windows", self.val_windows),
            ("val_batch_size", self.val_batch_size),
            ("keep_checkpoints", self.keep_checkpoints),
        ):
            if value < 1:
                raise bad(option, f"must be >= 1, got {value}")
        if not self.lr > 0:
            raise bad("--lr", f"must be > 0, got {self.lr}")
        if not self.grad_clip > 0:
            raise bad("grad_clip", f"must be > 0, got {self.grad_clip}")
        if not self.eps > 0:
            raise bad("eps", f"must be > 0, got {self.eps}")
        if self.target not in TARGETS:
            raise bad("target", f"must be one of {list(TARGETS)}, got {self.target!r}")
        if self.tokeniser_strategy not in STRATEGIES:
            raise bad("--strategy", f"must be one of {STRATEGIES}, got {self.tokeniser_strategy!r}")
        if self.loader not in LOADER_KINDS:
            raise bad("loader", f"must be one of {list(LOADER_KINDS)}, got {self.loader!r}")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if self.model_preset is not None and self.model_preset not in MODEL_PRESETS:
            raise bad(
                "model_preset",
                f"must be one of {list(MODEL_PRESETS)} or null, got {self.model_preset!r}",
            )
        if self.processor_preset not in ("fast", "paper"):
            raise bad("processor_preset", f"must be fast or paper, got {self.processor_preset!r}")
        self.schedule()

    def tokeniser_config(self, default_fields: Sequence[str] | None = None) -> TokeniserConfig:
        """The configured tokeniser (random-init runs): preset + `model.*` overrides."""
        overrides = dict(self.model_overrides)
        if "field_names" not in overrides and default_fields is not None:
            overrides["field_names"] = tuple(default_fields)
        try:
            base = TokeniserConfig.preset(self.model_preset or self.preset).to_dict()
            base.update(overrides)
            return TokeniserConfig.from_dict(base)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"tokeniser config (model_preset / --set model.*): {e}") from None

    def processor_config(self, latent_channels: int) -> ProcessorConfig:
        """Preset + `processor.*` overrides; latent_channels follows the tokeniser's unless
        set explicitly."""
        try:
            base = ProcessorConfig.preset_named(self.processor_preset).to_dict()
            base["latent_channels"] = latent_channels
            base.update(self.processor_overrides)
            return ProcessorConfig.from_dict(base)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"processor config (processor_preset / --set processor.*): {e}"
            ) from None


# Settings that define the trajectory of a run: changing them on resume is impossible (rejected)
# or makes the result differ from an uninterrupted run (allowed, with a warning).
_RESUME_FIXED = (
    "datasets",
    "input_frames",
    "target",
    "tokeniser_checkpoint",
    "tokeniser_strategy",
    "model_preset",
    "model_overrides",
    "processor_preset",
    "processor_overrides",
)
_RESUME_WARN = (
    "window",
    "lr",
    "betas",
    "weight_decay",
    "eps",
    "grad_clip",
    "batch_size",
    "steps",
    "epoch_steps",
    "warmup_epochs",
    "cooldown_epochs",
    "warmup_start_factor",
    "decay_offset",
    "seed",
    "amp",
)


# ---- setup ------------------------------------------------------------------------------------
@dataclass
class Stage:
    """Everything `train` works with, built by `setup`."""

    cfg: RolloutTrainConfig
    ctx: DistContext
    model: RolloutModel  # FSDP2-sharded in place under torchrun
    optimizer: torch.optim.Optimizer
    schedule: InverseSqrtSchedule
    train_sets: list[WellWindowDataset]
    val_sets: list[WellWindowDataset]
    registry: FieldRegistry
    run_dir: Path
    model_config: RolloutModelConfig
    tokeniser_source: str | None = None  # the tokeniser checkpoint the weights started from
    start_step: int = 0
    elapsed_before: float = 0.0
    resumed_from: Path | None = None
    resumed_metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class TokeniserSource:
    """A loaded tokeniser-stage checkpoint and the config the run will use with it."""

    checkpoint: ckpt_io.Checkpoint
    config: TokeniserConfig

    @property
    def config_file(self) -> Path:
        return self.checkpoint.path / ckpt_io.CONFIG_FILE


def load_tokeniser_source(cfg: RolloutTrainConfig) -> TokeniserSource:
    """Load `cfg.tokeniser_checkpoint` and check it against the configured tokeniser.

    The architecture is the checkpoint's. `model_preset` (unless None) and explicit
    `model.*` overrides must agree with it, except the runtime keys (kernel_backend,
    eval_scales), which the run may change. Errors name the file and every mismatching key.
    """
    option = f"--tokeniser-checkpoint {cfg.tokeniser_checkpoint}"
    try:
        ckpt = ckpt_io.load_checkpoint(cfg.tokeniser_checkpoint, kind=TOKENISER_KIND)
    except ckpt_io.CheckpointError as e:
        raise ConfigError(f"{option}: {e}") from None
    where = ckpt.path / ckpt_io.CONFIG_FILE
    try:
        saved = TokeniserConfig.from_dict(ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{option}: {where} holds no valid tokeniser config ({e})") from None
    saved_dict = saved.to_dict()
    expected = (
        TokeniserConfig.preset(cfg.model_preset).to_dict()
        if cfg.model_preset is not None
        else dict(saved_dict)
    )
    expected["field_names"] = saved_dict["field_names"]
    expected.update(cfg.model_overrides)
    try:
        expected = TokeniserConfig.from_dict(expected).to_dict()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"tokeniser config (model_preset / --set model.*): {e}") from None
    if expected["field_names"] != saved_dict["field_names"]:
        raise ConfigError(
            f"{option}: {where} was trained for the fields {saved_dict['field_names']}, but "
            f"model.field_names asks for {expected['field_names']}; drop model.field_names (the "
            "checkpoint's registry is used) or pass a tokeniser trained on those fields"
        )
    diffs = [
        f"{k}: checkpoint {saved_dict[k]!r} vs configured {expected[k]!r}"
        for k in saved_dict
        if k not in (*TOKENISER_RUNTIME_KEYS, "field_names") and saved_dict[k] != expected[k]
    ]
    if diffs:
        source = f"model_preset {cfg.model_preset!r}" if cfg.model_preset else "--set model.*"
        raise ConfigError(
            f"{option}: {where} holds a different tokeniser architecture than the configured "
            f"one ({source}): {'; '.join(diffs)}. Use the matching preset (--set "
            "model_preset=paper|fast), drop the model.* overrides, or --set model_preset=null "
            "to take the checkpoint's architecture"
        )
    runtime = {k: expected[k] for k in TOKENISER_RUNTIME_KEYS}
    return TokeniserSource(ckpt, TokeniserConfig.from_dict({**saved_dict, **runtime}))


def _check_fields(
    datasets: Sequence[WellWindowDataset], field_names: Sequence[str], where: str
) -> None:
    for ds in datasets:
        missing = [c for c in ds.channel_names if c not in field_names]
        if missing:
            raise ConfigError(
                f"{where}: the tokeniser's fields {list(field_names)} lack the channels "
                f"{missing} of dataset {ds.dataset_name}; use a tokeniser trained with a "
                "registry that includes them"
            )


def check_shapes(
    cfg: RolloutTrainConfig, tok_cfg: TokeniserConfig, datasets: Sequence[WellWindowDataset]
) -> None:
    """Context length and grids must fit the tokeniser's eval-scale compression."""
    st, ss = total_compression(tok_cfg.eval_scales)
    if (cfg.input_frames - 1) % st:
        raise ConfigError(
            f"input_frames={cfg.input_frames}: the tokeniser's eval_scales compress time by "
            f"{st}, so input_frames - 1 must be a multiple of {st} (e.g. 9)"
        )
    for ds in datasets:
        if any(n % ss for n in ds.grid_shape):
            raise ConfigError(
                f"--datasets {ds.dataset_name}: grid {ds.grid_shape} is not divisible by the "
                f"tokeniser's spatial compression {ss} at its eval_scales; use a power-of-two "
                "grid or smaller model.eval_scales"
            )


def build_model(
    model_cfg: RolloutModelConfig,
    *,
    seed: int,
    tokeniser_state: ckpt_io.Checkpoint | None = None,
    strategy: str = "trainable",
) -> RolloutModel:
    """The rollout model from `seed` (same weights on every rank), with the pretrained
    tokeniser's weights when given, and `strategy` applied to the tokeniser."""
    torch.manual_seed(seed)
    tokeniser = Tokeniser(model_cfg.tokeniser)
    processor = Processor(model_cfg.processor)
    if tokeniser_state is not None:
        ckpt_io.load_model_state(tokeniser, tokeniser_state)
    apply_tokeniser_strategy(tokeniser, strategy)
    return RolloutModel(tokeniser, processor, model_cfg.context_frames, model_cfg.target)


def compile_blocks(model: RolloutModel) -> None:
    """torch.compile each processor block in place (names stay; torchtitan's per-block compile:
    blocks are identical, so one graph serves all and recompiles stay rare)."""
    for block in model.processor.blocks:
        block.compile()


def parallelise(model: RolloutModel, ctx: DistContext) -> RolloutModel:
    """FSDP2 under torchrun: shard each processor block, the processor, then the root (which
    takes the tokeniser's parameters); see the module docstring. A no-op in one process."""
    if not ctx.distributed:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    for block in model.processor.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model.processor, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _data_registry(fixed_fields: Sequence[str] | None) -> FieldRegistry:
    if fixed_fields is None:
        return FieldRegistry.default()
    return FieldRegistry(list(fixed_fields))


def _per_rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank, 1]).generate_state(1, dtype=np.uint64)[0])


def setup(cfg: RolloutTrainConfig, *, resume: bool = False) -> Stage:
    """Process group, datasets, model, optimiser, schedule; restores the latest checkpoint if
    `resume` (then the weights come from it, not from the tokeniser checkpoint)."""
    cfg.validate()
    ctx = dist_utils.init_distributed(cfg.device)
    run_dir = Path(cfg.run_dir)
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ConfigError(
            f"--run-dir {run_dir} already holds checkpoints (latest {latest.name}); pass "
            "--resume to continue that run or choose another --run-dir"
        )
    notes: list[str] = []
    ckpt = None
    if resume and latest is not None:
        ckpt = ckpt_io.load_checkpoint(latest, kind=CHECKPOINT_KIND)
        notes += _check_resume_config(cfg, ckpt)
    elif resume:
        notes.append(f"no checkpoint in {run_dir}: starting from step 0")

    source: TokeniserSource | None = None
    if ckpt is not None:
        model_cfg = _checkpoint_model_config(ckpt)
        fixed_fields: Sequence[str] | None = model_cfg.tokeniser.field_names
    elif cfg.tokeniser_checkpoint is not None:
        source = load_tokeniser_source(cfg)
        fixed_fields = source.config.field_names
    else:
        fixed_fields = cfg.model_overrides.get("field_names")
    registry = _data_registry(fixed_fields)
    train_sets = build_datasets(cfg, registry, "train")
    val_sets = build_datasets(cfg, registry, "valid")
    if fixed_fields is not None:
        where = (
            str(ckpt.path / ckpt_io.CONFIG_FILE)
            if ckpt is not None
            else f"--tokeniser-checkpoint {source.config_file}"
            if source is not None
            else "model.field_names"
        )
        _check_fields([*train_sets, *val_sets], fixed_fields, where)
    if ckpt is None:
        tok_cfg = source.config if source is not None else cfg.tokeniser_config(registry.names)
        check_shapes(cfg, tok_cfg, train_sets)
        try:
            model_cfg = RolloutModelConfig(
                tok_cfg, cfg.processor_config(tok_cfg.latent_channels), cfg.input_frames, cfg.target
            )
        except ValueError as e:
            raise ConfigError(f"rollout model: {e}") from None
    else:
        check_shapes(cfg, model_cfg.tokeniser, train_sets)
    if source is None and ckpt is None and cfg.tokeniser_strategy == "mostly_frozen":
        notes.append(
            "mostly_frozen with a randomly initialised tokeniser (no --tokeniser-checkpoint): "
            "most of the tokeniser stays at its random initialisation"
        )

    model = build_model(
        model_cfg,
        seed=cfg.seed,
        tokeniser_state=source.checkpoint if source is not None else None,
        strategy=cfg.tokeniser_strategy,
    )
    if ckpt is not None:
        ckpt_io.load_model_state(model, ckpt)
    torch.manual_seed(_per_rank_seed(cfg.seed, ctx.rank))  # per-rank stochastic depth
    model.to(ctx.device)
    compile_ = cfg.compile if cfg.compile is not None else ctx.device.type == "cuda"
    if compile_:
        compile_blocks(model)  # before sharding, as torchtitan does
    parallelise(model, ctx)
    optimizer = build_adamw(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=cfg.betas,
        weight_decay=cfg.weight_decay,
        eps=cfg.eps,
    )
    stage = Stage(
        cfg,
        ctx,
        model,
        optimizer,
        cfg.schedule(),
        train_sets,
        val_sets,
        registry,
        run_dir,
        model_cfg,
        tokeniser_source=str(source.checkpoint.path) if source is not None else None,
        notes=notes,
    )
    if ckpt is not None:
        resume_from(stage, ckpt)
    return stage


def _checkpoint_model_config(ckpt: ckpt_io.Checkpoint) -> RolloutModelConfig:
    try:
        return RolloutModelConfig.from_dict(ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise ckpt_io.CheckpointError(
            f"{ckpt.path / ckpt_io.CONFIG_FILE}: model_config is not a valid rollout model "
            f"config ({e}); the file was edited or comes from another physok version"
        ) from None


def _check_resume_config(cfg: RolloutTrainConfig, ckpt: ckpt_io.Checkpoint) -> list[str]:
    saved = ckpt.train_config or {}
    now = cfg.to_dict()
    if "tokeniser_checkpoint" in saved and same_path_from_run(
        saved["tokeniser_checkpoint"], saved.get("run_dir", cfg.run_dir),
        now["tokeniser_checkpoint"], cfg.run_dir,
    ):  # fmt: skip
        saved = {**saved, "tokeniser_checkpoint": now["tokeniser_checkpoint"]}  # moved along
    fixed = [k for k in _RESUME_FIXED if k in saved and saved[k] != now[k]]
    if fixed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in fixed)
        raise ConfigError(
            f"--resume: {ckpt.path} was trained with different settings ({diffs}); these cannot "
            "change within a run: drop the options or start a new --run-dir"
        )
    changed = [k for k in _RESUME_WARN if k in saved and saved[k] != now[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
        return [
            f"resuming with changed settings ({diffs}): the run will differ from an "
            "uninterrupted one"
        ]
    return []


# ---- one step ---------------------------------------------------------------------------------
def context_and_target(
    model: RolloutModel, fields: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised context frames (B, T, C, X, Y) and the target of the last output
    (B, 1, C, X, Y) in the model's output units (`RolloutModel.training_pair`)."""
    context, target, _ = model.training_pair(fields)
    return context, target


def prediction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MAE in normalised units, in float32 whatever the autocast dtype."""
    return (pred.float() - target.float()).abs().mean()


def _autocast(cfg: RolloutTrainConfig, device: torch.device) -> torch.autocast:
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (clip_grad_norm_ returns a replicated DTensor under FSDP2)."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


@dataclass
class StepOutput:
    loss: float  # mean over ranks
    grad_norm: float
    finite: bool
    dataset: str
    lr: float


def train_step(stage: Stage, batch: dict[str, Any], step: int) -> StepOutput:
    """Set the lr for `step` (0-based), forward, MAE of frame 10, backward, clip, AdamW step.

    The step is skipped (and `finite` False on every rank) when the loss or the gradient norm
    is NaN/Inf, so the weights never take a non-finite update.
    """
    cfg, dev = stage.cfg, stage.ctx.device
    lr = stage.schedule.apply(stage.optimizer, step)
    x, target = context_and_target(stage.model, batch["fields"].to(dev, non_blocking=True))
    # A list, not a tensor: DDP/FSDP move tensor arguments to the GPU, and the tokeniser's
    # index checks would then synchronise the device; a list is checked on the host.
    idx = batch["field_indices"].tolist()
    stage.model.train()
    with _autocast(cfg, dev):
        pred = stage.model(x, idx, normalised=True)[:, -1:]
    loss = prediction_loss(pred, target)
    stage.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in stage.optimizer.param_groups for p in g["params"]]
    grad_norm = _local(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
    # One reduction: the mean loss for the log and a "some rank is non-finite" flag, so every
    # rank takes the same decision (gradients are already averaged by FSDP).
    stats = torch.stack(
        [
            loss.detach().float(),
            (~torch.isfinite(loss) | ~torch.isfinite(grad_norm)).float().to(loss.device),
        ]
    )
    dist_utils.all_reduce_sum(stats)
    loss_mean, bad = (stats[0] / stage.ctx.world_size).item(), stats[1].item() > 0
    if not bad:
        stage.optimizer.step()
    return StepOutput(loss_mean, float(grad_norm), not bad, batch["dataset"], lr)


def count_forward_backward(stage: Stage, batch: dict[str, Any]) -> None:
    """The model work of one step (forward, frame-10 MAE, backward) without the optimiser step:
    what FLOP counting measures. Every rank runs it (FSDP gathers need all of them); it leaves
    gradients that `train_step` clears."""
    cfg, dev = stage.cfg, stage.ctx.device
    x, target = context_and_target(stage.model, batch["fields"].to(dev))
    stage.model.train()
    with _autocast(cfg, dev):
        pred = stage.model(x, batch["field_indices"].tolist(), normalised=True)[:, -1:]
    prediction_loss(pred, target).backward()


# ---- validation -------------------------------------------------------------------------------
def _validation_batches(
    ds: WellWindowDataset, cfg: RolloutTrainConfig, ctx: DistContext
) -> list[tuple[list[int], bool]]:
    """This rank's (indices, real) validation batches. Under FSDP every rank must run the same
    number of forwards, so ranks with fewer real batches repeat a real one, not counted."""
    chosen = validation_indices(len(ds), cfg.val_windows)
    mine = chosen[ctx.rank :: ctx.world_size]
    bs = cfg.val_batch_size
    batches = [(mine[i : i + bs], True) for i in range(0, len(mine), bs)]
    count = torch.tensor([len(batches)], device=ctx.device)
    dist_utils.all_reduce_max(count)
    filler = chosen[:bs]
    batches += [(filler, False)] * (int(count.item()) - len(batches))
    return batches


@torch.no_grad()
def validate(stage: Stage) -> dict[str, dict[str, float]]:
    """Frame-10 metrics per dataset (eval mode): {"mae": {dataset: value}, "vrmse": {...},
    "neps_low": {...}, "neps_mid": {...}, "neps_high": {...}}.

    MAE and VRMSE are means over windows. NEPS per range (physok.metrics.neps) comes from the
    error and true power spectra summed over the windows (in units of each window's context RMS,
    as the evaluation), per field, then
    averaged over fields. Ranks split the fixed subset and sum their results: values do not
    depend on world size.
    """
    cfg, ctx, model = stage.cfg, stage.ctx, stage.model
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {"mae": {}, "vrmse": {}}
    out.update({f"neps_{r}": {} for r in RANGES})
    for ds in stage.val_sets:
        totals = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # mae, vrmse, count
        spectra = None  # (2, C, shells): error and true power sums
        for indices, real in _validation_batches(ds, cfg, ctx):
            batch = collate_windows([ds[i] for i in indices])
            window = batch["fields"][:, : cfg.input_frames + 1].to(ctx.device)
            x, target, stats = model.training_pair(window)
            with _autocast(cfg, ctx.device):
                raw = model(x, batch["field_indices"].tolist(), normalised=True)
            if not real:
                continue
            mae = (raw[:, -1:].float() - target).abs().mean(dim=(1, 2, 3, 4))
            totals[0] += mae.double().sum()
            # metrics of the predicted frame 10 against the true one in the evaluation's units
            # (the context's RMS per sample and field, physok.evaluate), whatever the model's
            # own normalisation: VRMSE does not depend on it, the NEPS sums over windows do
            frames = model.frames_from_outputs(raw, x, stats)[:, -1:]
            metric, rms = rms_normalise(window.float(), n_context=cfg.input_frames)
            pred = denormalise(frames, stats) / rms[:, None, :, None, None]
            true = metric[:, -1:]
            totals[1] += vrmse(pred, true, reduce="sample").double().sum()
            totals[2] += pred.shape[0]
            err, tru = shell_powers(pred[:, 0], true[:, 0])  # (B, C, shells)
            batch_spectra = torch.stack([err.double().sum(0), tru.double().sum(0)])
            spectra = batch_spectra if spectra is None else spectra + batch_spectra
        if spectra is None:  # this rank had no real batch: contribute zeros
            n_shells = len(shell_edges(tuple(ds.grid_shape))) - 1
            c = len(ds.channel_names)
            spectra = torch.zeros(2, c, n_shells, dtype=torch.float64, device=ctx.device)
        dist_utils.all_reduce_sum(totals)
        dist_utils.all_reduce_sum(spectra)
        n = totals[2].clamp_min(1)
        out["mae"][ds.dataset_name] = float(totals[0] / n)
        out["vrmse"][ds.dataset_name] = float(totals[1] / n)
        neps = ensemble_neps(spectra[0], spectra[1], tuple(ds.grid_shape))
        for r, value in zip(RANGES, neps.tolist(), strict=True):
            out[f"neps_{r}"][ds.dataset_name] = value
    model.train(was_training)
    return out


# ---- checkpoints ------------------------------------------------------------------------------
def _is_dtensor(t: Any) -> bool:
    return callable(getattr(t, "full_tensor", None))


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights under clean names (a collective under FSDP: call on every rank)."""
    out = {}
    for key, value in model.state_dict().items():
        value = value.full_tensor() if _is_dtensor(value) else value
        out[ckpt_io.clean_key(key)] = value.detach().to("cpu", copy=True)
    return out


def _optimizer_params(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[str, Any]]:
    names = {id(p): ckpt_io.clean_key(n) for n, p in model.named_parameters()}
    return [(names[id(p)], p) for g in optimizer.param_groups for p in g["params"]]


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Optimiser state keyed by parameter name, unsharded: restorable at any world size
    (a collective under FSDP: call on every rank)."""
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, p in _optimizer_params(model, optimizer):
        entries = optimizer.state.get(p, {})
        state[name] = {
            k: (v.full_tensor() if _is_dtensor(v) else v).detach().to("cpu", copy=True)
            for k, v in entries.items()
        }
    return {"state": state, "names": [n for n, _ in _optimizer_params(model, optimizer)]}


def load_full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any], where: Path
) -> None:
    """Inverse of `full_optimizer_state`: reshard to this run's layout, load via the optimiser's
    own load_state_dict (which places step counters as the optimiser expects)."""
    params = _optimizer_params(model, optimizer)
    names = [n for n, _ in params]
    if sorted(names) != sorted(saved.get("names", [])):
        raise ckpt_io.CheckpointError(
            f"{where}: optimiser state covers other parameters than this run trains "
            f"({len(saved.get('names', []))} saved vs {len(names)} now); resume with the "
            "tokeniser strategy and model the run was started with"
        )
    template = optimizer.state_dict()
    state = {}
    for i, (name, p) in enumerate(params):
        entries = saved["state"].get(name, {})
        if not entries:
            continue
        out = {}
        for k, v in entries.items():
            if v.dim() > 0 and tuple(v.shape) != tuple(p.shape):
                raise ckpt_io.CheckpointError(
                    f"{where}: optimiser state {name}.{k} has shape {tuple(v.shape)}, the "
                    f"parameter {tuple(p.shape)}; the checkpoint belongs to another model"
                )
            if v.dim() > 0 and _is_dtensor(p):
                from torch.distributed.tensor import distribute_tensor

                v = distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
            out[k] = v
        state[i] = out
    template["state"] = state
    optimizer.load_state_dict(template)


def save_checkpoint(stage: Stage, step: int, elapsed: float, metrics: dict[str, Any]) -> Path:
    """Checkpoint weights, configs, optimiser, schedule, RNG (every rank's) and data position.

    Gathering the sharded weights and optimiser state is collective; rank 0 writes (atomically).
    """
    rng = dist_utils.all_gather_object(rng_state())
    weights = full_model_state(stage.model)
    optim_state = full_optimizer_state(stage.model, stage.optimizer)
    path = None
    if stage.ctx.is_main:
        schedule = stage.schedule.state_dict()
        schedule["epoch"] = stage.schedule.epoch_of_step(max(step - 1, 0))
        train_state = {
            "step": step,
            "optimizer": optim_state,
            "schedule": schedule,
            "rng": rng,
            "data": {"batches_consumed": step, "world_size": stage.ctx.world_size},
            "elapsed_s": elapsed,
            "tokeniser_source": stage.tokeniser_source,
        }
        path = ckpt_io.save_checkpoint(
            stage.run_dir,
            step,
            kind=CHECKPOINT_KIND,
            model=weights,
            model_config=stage.model_config.to_dict(),
            train_config=stage.cfg.to_dict(),
            train_state=train_state,
            metrics=metrics,
            field_names=stage.model_config.tokeniser.field_names,
            keep=stage.cfg.keep_checkpoints,
        )
    path = dist_utils.broadcast_object(path)
    return Path(path)


def resume_from(stage: Stage, ckpt: ckpt_io.Checkpoint) -> None:
    """Restore optimiser, step, data position, elapsed time and RNG from `ckpt` (weights are
    already loaded by `setup`; the schedule is a function of the step)."""
    state = ckpt.load_train_state()
    load_full_optimizer_state(
        stage.model, stage.optimizer, state["optimizer"], ckpt.path / ckpt_io.TRAIN_STATE_FILE
    )
    stage.start_step = int(state["step"])
    stage.elapsed_before = float(state.get("elapsed_s", 0.0))
    stage.resumed_from = ckpt.path
    stage.resumed_metrics = dict(ckpt.metrics)
    stage.tokeniser_source = state.get("tokeniser_source")
    saved_world = int(state["data"]["world_size"])
    if saved_world != stage.ctx.world_size:
        stage.notes.append(
            f"resuming a {saved_world}-rank run on {stage.ctx.world_size} rank(s): data shards "
            "differ, so the run will not equal an uninterrupted one"
        )
    rngs = state["rng"]
    set_rng_state(rngs[stage.ctx.rank] if stage.ctx.rank < len(rngs) else rngs[0])


# ---- the loop ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    steps: int
    final_loss: float | None
    val_mae: dict[str, float]
    val_vrmse: dict[str, float]
    wall_clock_s: float
    checkpoint: Path | None
    run_dir: Path
    resumed_from: Path | None = None
    notes: list[str] = field(default_factory=list)


def train(cfg: RolloutTrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or resume) rollout training to `cfg.steps`; see the module docstring."""
    stage = setup(cfg, resume=resume)
    try:
        return _train_loop(stage)
    finally:
        for ds in (*stage.train_sets, *stage.val_sets):
            ds.close()


def _train_loader(stage: Stage, start_batch: int) -> BatchLoader:
    # `stage.cfg.loader` picks the PyTorch DataLoader or the DALI pipeline (identical batches).
    return build_loader(stage.train_sets, stage.cfg, stage.ctx, start_batch=start_batch)


def _mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


def _train_loop(stage: Stage) -> TrainResult:
    cfg, ctx = stage.cfg, stage.ctx
    main = ctx.is_main
    log, elapsed = begin_loop(stage)
    step = stage.start_step
    val_mae: dict[str, float] = dict(stage.resumed_metrics.get("val_mae") or {})
    val_vrmse: dict[str, float] = dict(stage.resumed_metrics.get("val_vrmse") or {})
    val_step: int | None = stage.resumed_metrics.get("val_step")
    last_loss: float | None = stage.resumed_metrics.get("loss")
    ckpt_path = stage.resumed_from

    def run_validation() -> None:
        nonlocal val_mae, val_vrmse, val_step
        tv = time.perf_counter()
        val = validate(stage)
        val_mae, val_vrmse, val_step = val["mae"], val["vrmse"], step
        record: dict[str, Any] = {
            "kind": "val",
            "step": step,
            "val_mae": val_mae,
            "val_vrmse": val_vrmse,
            "val_mae_mean": _mean(val_mae),
            "val_vrmse_mean": _mean(val_vrmse),
        }
        for r in RANGES:
            record[f"val_neps_{r}"] = val[f"neps_{r}"]
            record[f"val_neps_{r}_mean"] = _mean(val[f"neps_{r}"])
        record.update(val_time_s=time.perf_counter() - tv, elapsed_s=elapsed())
        log.write(record)

    if cfg.val_at_start and step == 0:
        run_validation()
    loader = _train_loader(stage, step)
    bar = progress_bar("rollout", cfg.steps, step, enabled=main and cfg.progress)
    global_batch = cfg.batch_size * ctx.world_size
    # MFU where the peak is known (GPUs): per-device FLOPs of a step, counted once per dataset
    # and batch shape with an extra forward + backward outside the step's timing.
    peak = peak_flops(ctx.device, torch.bfloat16 if cfg.amp else torch.float32)
    step_flops = StepFlops(enabled=peak is not None)
    try:
        for batch in loader:
            key = (batch["dataset"], tuple(batch["fields"].shape))  # mixed datasets: per shape
            flops = step_flops.get(key, partial(count_forward_backward, stage, batch))
            ts = time.perf_counter()
            out = train_step(stage, batch, step)
            if not out.finite:
                raise non_finite_step_error(stage.run_dir, step + 1, out)
            epoch = stage.schedule.epoch_of_step(step) + 1  # 1-based, for the log
            step += 1
            last_loss = out.loss
            dt = time.perf_counter() - ts
            log.write(
                {
                    "kind": "train",
                    "step": step,
                    "epoch": epoch,
                    "loss": out.loss,
                    "lr": out.lr,
                    "grad_norm": out.grad_norm,
                    "dataset": out.dataset,
                    "step_time_s": dt,
                    "steps_per_s": 1.0 / dt,
                    "samples_per_s": global_batch / dt,
                    "flops_per_step": flops,
                    "mfu": mfu(flops, 1.0 / dt, peak),
                    "elapsed_s": elapsed(),
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{out.loss:.4g}", lr=f"{out.lr:.3g}", refresh=False)
            if step % cfg.val_every == 0 or step == cfg.steps:
                run_validation()
                bar.set_postfix(loss=f"{out.loss:.4g}", val_vrmse=f"{_mean(val_vrmse):.4g}")
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                metrics = {
                    "loss": last_loss,
                    "val_mae": val_mae,
                    "val_vrmse": val_vrmse,
                    "val_step": val_step,
                    "elapsed_s": elapsed(),
                }
                ckpt_path = save_checkpoint(stage, step, elapsed(), metrics)
    finally:
        bar.close()
        log.close()
    if step < cfg.steps:
        raise TrainingError(f"the data loader stopped at step {step} of {cfg.steps}")
    if not val_vrmse and step > 0:
        run_validation()
    return TrainResult(
        step,
        last_loss,
        val_mae,
        val_vrmse,
        elapsed(),
        ckpt_path,
        stage.run_dir,
        stage.resumed_from,
        stage.notes,
    )
