"""Tokeniser pretraining: autoencode frames 1-9 of 10-frame windows with MSE (DESIGN.md §5).

Layout (read top to bottom): `TokeniserTrainConfig` and its presets; `setup` builds everything
(process group, datasets, model, optimiser, resume state); `build_datasets` / `build_loader`
make the data pipeline (one dataset per batch, equal probability, disjoint shards per rank);
`train_step` is one optimiser step; `validate` measures reconstruction VRMSE per dataset;
`save_checkpoint` / `resume` persist and restore the complete state; `train` is the loop.

Determinism (what makes a resumed run equal an uninterrupted one): the model is initialised
from `seed`; the batch sequence is a pure function of (seed, rank, step) (MixedBatchSampler with
`start_batch`); the compression scales of step s come from a generator seeded with
(seed, s); optimiser state and every RNG state are checkpointed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from physok import checkpoint as ckpt_io
from physok.data.loaders import LOADER_KINDS, collate_windows, loader_generator
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.metrics.vrmse import vrmse
from physok.models.prediction_target import normalise_context
from physok.models.tokeniser import Tokeniser, TokeniserConfig
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
    set_rng_state,
    validation_indices,
)
from physok.train.config_overrides import ConfigError
from physok.train.distributed import DistContext
from physok.train.optim import OPTIMISERS, SOAP_MAX_PRECOND_DIM, build_optimizer
from physok.train.throughput import StepFlops, mfu, peak_flops

CHECKPOINT_KIND = "tokeniser"


# ---- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TokeniserTrainConfig(StageConfigMixin):
    """Everything the tokeniser pretraining stage needs; presets `fast()` and `paper()`."""

    preset: str = "fast"
    # data: `<data_dir>/<dataset>/data/{train,valid}/*.hdf5` (The Well layout)
    data_dir: str = "data"
    datasets: tuple[str, ...] = ("euler_multi_quadrants_periodicBC",)
    window: int = 10  # frames read per sample (the experiment's windows)
    input_frames: int = 9  # frames 1..9 are autoencoded; must be 1 + 2^n
    num_workers: int = 0
    loader: str = "torch"  # "torch" (DataLoader) | "dali" (DALI pipeline; `physok[dali]`)
    # model: a TokeniserConfig preset plus overrides (`--set model.channels=[8,16,32]`)
    model_preset: str = "fast"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # optimisation
    optimizer: str = "soap"
    # SOAP: weight dimensions longer than this get no eigenbasis (physok.train.optim.build_soap)
    soap_max_precond_dim: int = SOAP_MAX_PRECOND_DIM
    lr: float = 1e-3  # constant (DESIGN §5, our choice)
    betas: tuple[float, float] = (0.95, 0.95)
    weight_decay: float = 0.01
    grad_clip: float = 0.5
    batch_size: int = 2  # per rank
    steps: int = 600
    amp: bool = True  # bf16 autocast, CUDA only
    compile_optimizer: bool | None = None  # heavyball kernels; None: on CUDA only
    # validation: reconstruction VRMSE on a fixed subset of `val_windows` windows per dataset
    val_every: int = 50
    val_windows: int = 32
    val_batch_size: int = 4
    val_at_start: bool = True
    # checkpoints and logs
    run_dir: str = "runs/tokeniser"
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @classmethod
    def fast(cls, **overrides: Any) -> TokeniserTrainConfig:
        """Minutes on a 2-core CPU with the fast tokeniser; learns clearly on generated Euler.

        SOAP skips eigenbases of dimensions over 512: in the fast tokeniser that is only the
        1,024 output channels of the deepest depth-to-space upsampler (32 channels x the largest
        2x4x4 expansion), whose 1024² rotation was most of SOAP's 62% of a CPU step. Measured
        (docs/design.md, "Fitting the 10-minute budget"): steps 1.7x faster, validation
        reconstruction after 150 steps 0.38 against 0.41 with every dimension preconditioned.
        """
        return dataclasses.replace(cls(soap_max_precond_dim=512), **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> TokeniserTrainConfig:
        """The paper's recipe: SOAP, lr 1e-3 constant, 168,000 steps of batch 2 per rank."""
        base = cls(
            preset="paper",
            model_preset="paper",
            steps=168_000,
            num_workers=4,
            val_every=2_100,
            val_windows=256,
            val_batch_size=8,
            ckpt_every=2_100,
            run_dir="runs/tokeniser_paper",
        )
        return dataclasses.replace(base, **overrides)

    def validate(self) -> None:
        """Option-level checks (data-dependent ones happen in `build_datasets`)."""

        def bad(option: str, why: str) -> ConfigError:
            return ConfigError(f"{option}: {why}")

        if not self.datasets:
            raise bad("--datasets", "give at least one dataset name")
        if len(set(self.datasets)) != len(self.datasets):
            raise bad("--datasets", f"names repeat: {list(self.datasets)}")
        n = self.input_frames - 1
        if n < 1 or n & (n - 1):
            raise bad(
                "input_frames",
                f"{self.input_frames} frames is not 1 + 2^n (the tokeniser compresses time by "
                "powers of two): use e.g. 9 (--set input_frames=9)",
            )
        if self.window < self.input_frames:
            raise bad(
                "window",
                f"windows of {self.window} frames cannot hold input_frames={self.input_frames}; "
                "set window >= input_frames",
            )
        for option, value in (
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--val-every", self.val_every),
            ("--ckpt-every", self.ckpt_every),
            ("val_windows", self.val_windows),
            ("val_batch_size", self.val_batch_size),
            ("keep_checkpoints", self.keep_checkpoints),
            ("soap_max_precond_dim", self.soap_max_precond_dim),
        ):
            if value < 1:
                raise bad(option, f"must be >= 1, got {value}")
        if not self.lr > 0:
            raise bad("--lr", f"must be > 0, got {self.lr}")
        if not self.grad_clip > 0:
            raise bad("grad_clip", f"must be > 0, got {self.grad_clip}")
        if self.optimizer not in OPTIMISERS:
            raise bad("optimizer", f"must be one of {OPTIMISERS}, got {self.optimizer!r}")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if self.loader not in LOADER_KINDS:
            raise bad("loader", f"must be one of {list(LOADER_KINDS)}, got {self.loader!r}")

    def model_config(self, default_fields: Sequence[str] | None = None) -> TokeniserConfig:
        """The TokeniserConfig: preset + overrides (`default_fields` unless field_names given)."""
        overrides = dict(self.model_overrides)
        if "field_names" not in overrides and default_fields is not None:
            overrides["field_names"] = tuple(default_fields)
        try:
            base = TokeniserConfig.preset(self.model_preset).to_dict()
            base.update(overrides)
            return TokeniserConfig.from_dict(base)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model config (model_preset / --set model.*): {e}") from None


# Settings that define the trajectory of a run: changing them on resume makes the result differ
# from an uninterrupted run (allowed, with a warning) or is impossible (rejected).
# soap_max_precond_dim sets the shapes of SOAP's saved state, so it cannot change on resume.
_RESUME_FIXED = (
    "datasets",
    "optimizer",
    "soap_max_precond_dim",
    "model_preset",
    "model_overrides",
)
_RESUME_WARN = (
    "window",
    "input_frames",
    "lr",
    "betas",
    "weight_decay",
    "grad_clip",
    "batch_size",
    "seed",
    "amp",
)


# ---- setup ------------------------------------------------------------------------------------
@dataclass
class Stage:
    """Everything `train` works with, built by `setup`."""

    cfg: TokeniserTrainConfig
    ctx: DistContext
    tokeniser: Tokeniser  # the plain module (checkpoints, validation)
    model: nn.Module  # what the step runs: DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    train_sets: list[WellWindowDataset]
    val_sets: list[WellWindowDataset]
    registry: FieldRegistry
    run_dir: Path
    start_step: int = 0
    elapsed_before: float = 0.0  # wall-clock of earlier segments of a resumed run
    resumed_from: Path | None = None
    resumed_metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _base_registry(field_names: Sequence[str] | None) -> FieldRegistry:
    return FieldRegistry(list(field_names)) if field_names is not None else FieldRegistry.default()


def setup(cfg: TokeniserTrainConfig, *, resume: bool = False) -> Stage:
    """Process group, datasets, model, optimiser; restores the latest checkpoint if `resume`."""
    cfg.validate()
    ctx = dist_utils.init_distributed(cfg.device)
    run_dir = Path(cfg.run_dir)
    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ConfigError(
            f"--run-dir {run_dir} already holds checkpoints (latest {latest.name}); pass "
            "--resume to continue that run or choose another --run-dir"
        )
    notes = []
    ckpt = None
    if resume and latest is not None:
        ckpt = ckpt_io.load_checkpoint(latest, kind=CHECKPOINT_KIND)
        notes += _check_resume_config(cfg, ckpt)
    elif resume:
        notes.append(f"no checkpoint in {run_dir}: starting from step 0")

    # Field registry of the tokeniser heads: fixed by a checkpoint or an explicit
    # model.field_names; otherwise the default registry extended with the datasets' channels.
    fixed_fields = None
    if ckpt is not None:
        fixed_fields = _checkpoint_model_config(ckpt).field_names
    elif "field_names" in cfg.model_overrides:
        fixed_fields = tuple(cfg.model_overrides["field_names"])
    registry = _base_registry(fixed_fields)
    train_sets = build_datasets(cfg, registry, "train", fixed_fields)
    val_sets = build_datasets(cfg, registry, "valid", fixed_fields)
    if ckpt is not None:
        model_cfg = _checkpoint_model_config(ckpt)
    else:
        model_cfg = cfg.model_config(registry.names)
    check_shapes(cfg, model_cfg, train_sets)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank and every rerun
    tokeniser = Tokeniser(model_cfg).to(ctx.device)
    if ckpt is not None:
        ckpt_io.load_model_state(tokeniser, ckpt)
    model = dist_utils.wrap_ddp(tokeniser, ctx)
    optimizer = build_optimizer(
        cfg.optimizer,
        tokeniser.parameters(),
        lr=cfg.lr,
        betas=cfg.betas,
        weight_decay=cfg.weight_decay,
        compile=cfg.compile_optimizer,
        max_precond_dim=cfg.soap_max_precond_dim,
    )
    stage = Stage(
        cfg, ctx, tokeniser, model, optimizer, train_sets, val_sets, registry, run_dir, notes=notes
    )
    if ckpt is not None:
        resume_from(stage, ckpt)
    return stage


def _checkpoint_model_config(ckpt: ckpt_io.Checkpoint) -> TokeniserConfig:
    try:
        return TokeniserConfig.from_dict(ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise ckpt_io.CheckpointError(
            f"{ckpt.path / ckpt_io.CONFIG_FILE}: model_config is not a valid tokeniser config "
            f"({e}); the file was edited or comes from another physok version"
        ) from None


def check_shapes(
    cfg: TokeniserTrainConfig, model_cfg: TokeniserConfig, datasets: Sequence[WellWindowDataset]
) -> None:
    """Every scale the tokeniser may draw must fit the frames and every dataset's grid."""
    max_t = math.prod(max(ts) for ts in model_cfg.temporal_scales)
    max_s = math.prod(max(ss) for ss in model_cfg.spatial_scales)
    if (cfg.input_frames - 1) % max_t:
        raise ConfigError(
            f"input_frames={cfg.input_frames}: the tokeniser may compress time by {max_t}, so "
            f"input_frames - 1 must be a multiple of {max_t} (e.g. 9); or lower "
            "model.temporal_scales"
        )
    for ds in datasets:
        if any(n % max_s for n in ds.grid_shape):
            raise ConfigError(
                f"--datasets {ds.dataset_name}: grid {ds.grid_shape} is not divisible by the "
                f"largest spatial compression {max_s} the tokeniser may draw; use a larger "
                "power-of-two grid or smaller model.spatial_scales"
            )


def _check_resume_config(cfg: TokeniserTrainConfig, ckpt: ckpt_io.Checkpoint) -> list[str]:
    saved = ckpt.train_config or {}
    now = cfg.to_dict()
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


# ---- RNG state (checkpointed so a resumed run continues every random stream) -------------------
def scale_generator(seed: int, step: int) -> torch.Generator:
    """The generator that draws step `step`'s compression scales (same on every rank)."""
    mixed = int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(mixed)


# ---- one step ---------------------------------------------------------------------------------
def normalised_input(
    fields: torch.Tensor, input_frames: int, normalisation: str = "rms"
) -> torch.Tensor:
    """Frames 1..input_frames of a (B, T, C, X, Y) window, normalised per sample and field by
    their own statistics (the tokeniser's `normalisation`: "rms" or "zscore")."""
    x, _ = normalise_context(fields[:, :input_frames], normalisation, "frame")
    return x


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE in normalised units, in float32 whatever the autocast dtype."""
    return F.mse_loss(recon.float(), target.float())


@dataclass
class StepOutput:
    loss: float  # mean over ranks
    grad_norm: float
    finite: bool
    dataset: str


def train_step(
    stage: Stage, batch: dict[str, Any], scales: tuple[tuple[int, int], ...]
) -> StepOutput:
    """Forward, MSE on frames 1-9, backward, clip to `grad_clip`, optimiser step.

    The step is skipped (and `finite` False on every rank) when the loss or the gradient norm
    is NaN/Inf, so the weights never take a non-finite update.
    """
    cfg, dev = stage.cfg, stage.ctx.device
    fields = batch["fields"].to(dev, non_blocking=True)
    x = normalised_input(fields, cfg.input_frames, stage.tokeniser.config.normalisation)
    # A list, not a tensor: DDP/FSDP move tensor arguments to the GPU, and the tokeniser's
    # index checks would then synchronise the device; a list is checked on the host.
    idx = batch["field_indices"].tolist()
    stage.model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and dev.type == "cuda"):
        recon = stage.model(x, idx, scales=scales)
    loss = reconstruction_loss(recon, x)
    stage.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(stage.tokeniser.parameters(), cfg.grad_clip)
    # One reduction: the mean loss for the log and a "some rank is non-finite" flag, so every
    # rank takes the same decision (gradients are already averaged by DDP).
    stats = torch.stack(
        [loss.detach().float(), (~torch.isfinite(loss) | ~torch.isfinite(grad_norm)).float()]
    )
    dist_utils.all_reduce_sum(stats)
    loss_mean, bad = (stats[0] / stage.ctx.world_size).item(), stats[1].item() > 0
    if not bad:
        stage.optimizer.step()
    return StepOutput(loss_mean, float(grad_norm), not bad, batch["dataset"])


def count_forward_backward(
    stage: Stage, batch: dict[str, Any], scales: tuple[tuple[int, int], ...]
) -> None:
    """The model work of one step (forward + loss + backward) on this rank, without DDP hooks or
    an optimiser step: what FLOP counting measures. Leaves gradients that `train_step` clears."""
    cfg, dev = stage.cfg, stage.ctx.device
    x = normalised_input(
        batch["fields"].to(dev), cfg.input_frames, stage.tokeniser.config.normalisation
    )
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and dev.type == "cuda"):
        recon = stage.tokeniser(x, batch["field_indices"].tolist(), scales=scales)
    reconstruction_loss(recon, x).backward()


# ---- validation -------------------------------------------------------------------------------
@torch.no_grad()
def validate(stage: Stage) -> dict[str, float]:
    """Reconstruction VRMSE per dataset (eval scales) on a fixed subset of validation windows.

    Ranks split the subset and sum their results, so the value does not depend on world size.
    """
    cfg, ctx, tok = stage.cfg, stage.ctx, stage.tokeniser
    was_training = tok.training
    tok.eval()
    out = {}
    for ds in stage.val_sets:
        indices = validation_indices(len(ds), cfg.val_windows)[ctx.rank :: ctx.world_size]
        loader = DataLoader(
            Subset(ds, indices),
            batch_size=cfg.val_batch_size,
            collate_fn=collate_windows,
            num_workers=cfg.num_workers,
            generator=loader_generator(cfg.seed, ctx.rank),  # not the global RNG
        )
        total = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        for batch in loader:
            x = normalised_input(
                batch["fields"].to(ctx.device), cfg.input_frames, tok.config.normalisation
            )
            idx = batch["field_indices"]
            with torch.autocast(
                "cuda", torch.bfloat16, enabled=cfg.amp and ctx.device.type == "cuda"
            ):
                recon = tok(x, idx, scales=tok.eval_scales)
            per_sample = vrmse(recon.float(), x, reduce="sample")
            total[0] += per_sample.double().sum()
            total[1] += per_sample.numel()
        dist_utils.all_reduce_sum(total)
        out[ds.dataset_name] = float(total[0] / total[1].clamp_min(1))
    tok.train(was_training)
    return out


# ---- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(stage: Stage, step: int, elapsed: float, metrics: dict[str, Any]) -> Path:
    """Checkpoint weights, configs, optimiser, RNG (every rank's) and data position (rank 0)."""
    rng = dist_utils.all_gather_object(rng_state())
    path = None
    if stage.ctx.is_main:
        train_state = {
            "step": step,
            "optimizer": stage.optimizer.state_dict(),
            "rng": rng,
            "data": {"batches_consumed": step, "world_size": stage.ctx.world_size},
            "elapsed_s": elapsed,
        }
        path = ckpt_io.save_checkpoint(
            stage.run_dir,
            step,
            kind=CHECKPOINT_KIND,
            model=stage.tokeniser,
            model_config=stage.tokeniser.config.to_dict(),
            train_config=stage.cfg.to_dict(),
            train_state=train_state,
            metrics=metrics,
            field_names=stage.registry.names,
            keep=stage.cfg.keep_checkpoints,
        )
    path = dist_utils.broadcast_object(path)
    return Path(path)


def resume_from(stage: Stage, ckpt: ckpt_io.Checkpoint) -> None:
    """Restore optimiser, step, data position, elapsed time and RNG from `ckpt` (weights are
    already loaded by `setup`)."""
    state = ckpt.load_train_state()
    try:
        stage.optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise ckpt_io.CheckpointError(
            f"{ckpt.path / ckpt_io.TRAIN_STATE_FILE}: optimiser state does not fit this "
            f"optimiser ({e}); resume with the optimizer the run was started with"
        ) from None
    stage.start_step = int(state["step"])
    stage.elapsed_before = float(state.get("elapsed_s", 0.0))
    stage.resumed_from = ckpt.path
    stage.resumed_metrics = dict(ckpt.metrics)
    rngs = state["rng"]
    saved_world = int(state["data"]["world_size"])
    if saved_world != stage.ctx.world_size:
        stage.notes.append(
            f"resuming a {saved_world}-rank run on {stage.ctx.world_size} rank(s): data shards "
            "differ, so the run will not equal an uninterrupted one"
        )
    set_rng_state(rngs[stage.ctx.rank] if stage.ctx.rank < len(rngs) else rngs[0])


# ---- the loop ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    steps: int
    final_loss: float | None
    val_vrmse: dict[str, float]
    wall_clock_s: float
    checkpoint: Path | None
    run_dir: Path
    resumed_from: Path | None = None
    notes: list[str] = field(default_factory=list)


def train(cfg: TokeniserTrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or resume) tokeniser pretraining to `cfg.steps`; see the module docstring."""
    stage = setup(cfg, resume=resume)
    try:
        return _train_loop(stage)
    finally:
        for ds in (*stage.train_sets, *stage.val_sets):
            ds.close()


def _train_loop(stage: Stage) -> TrainResult:
    cfg, ctx = stage.cfg, stage.ctx
    main = ctx.is_main
    log, elapsed = begin_loop(stage)
    step = stage.start_step
    val: dict[str, float] = dict(stage.resumed_metrics.get("val_vrmse") or {})
    val_step: int | None = stage.resumed_metrics.get("val_step")
    last_loss: float | None = stage.resumed_metrics.get("loss")
    ckpt_path = stage.resumed_from

    def run_validation() -> None:
        nonlocal val, val_step
        tv = time.perf_counter()
        val, val_step = validate(stage), step
        log.write(
            {
                "kind": "val",
                "step": step,
                "val_vrmse": val,
                "val_vrmse_mean": float(np.mean(list(val.values()))),
                "val_time_s": time.perf_counter() - tv,
                "elapsed_s": elapsed(),
            }
        )

    if cfg.val_at_start and step == 0:
        run_validation()
    loader = build_loader(stage.train_sets, cfg, ctx, start_batch=step)
    bar = progress_bar("tokeniser", cfg.steps, step, enabled=main and cfg.progress)
    global_batch = cfg.batch_size * ctx.world_size
    # MFU where the peak is known (GPUs): per-device FLOPs of each scale combination and batch
    # shape, counted once on the unwrapped tokeniser (an extra forward + backward, outside the
    # step's timing).
    peak = peak_flops(ctx.device, torch.bfloat16 if cfg.amp else torch.float32)
    step_flops = StepFlops(enabled=peak is not None)
    try:
        for batch in loader:
            scales = stage.tokeniser.sample_scales(scale_generator(cfg.seed, step))
            key = (scales, batch["dataset"], tuple(batch["fields"].shape))  # FLOPs follow shapes
            flops = step_flops.get(key, partial(count_forward_backward, stage, batch, scales))
            ts = time.perf_counter()
            out = train_step(stage, batch, scales)
            if not out.finite:
                raise non_finite_step_error(stage.run_dir, step + 1, out)
            step += 1
            last_loss = out.loss
            dt = time.perf_counter() - ts
            log.write(
                {
                    "kind": "train",
                    "step": step,
                    "loss": out.loss,
                    "lr": stage.optimizer.param_groups[0]["lr"],
                    "grad_norm": out.grad_norm,
                    "dataset": out.dataset,
                    "scales": [list(s) for s in scales],
                    "step_time_s": dt,
                    "steps_per_s": 1.0 / dt,
                    "samples_per_s": global_batch / dt,
                    "flops_per_step": flops,
                    "mfu": mfu(flops, 1.0 / dt, peak),
                    "elapsed_s": elapsed(),
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{out.loss:.4g}", refresh=False)
            if step % cfg.val_every == 0 or step == cfg.steps:
                run_validation()
                bar.set_postfix(loss=f"{out.loss:.4g}", val=f"{np.mean(list(val.values())):.4g}")
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                metrics = {
                    "loss": last_loss,
                    "val_vrmse": val,
                    "val_step": val_step,
                    "elapsed_s": elapsed(),
                }
                ckpt_path = save_checkpoint(stage, step, elapsed(), metrics)
    finally:
        bar.close()
        log.close()
    if step < cfg.steps:
        raise TrainingError(f"the data loader stopped at step {step} of {cfg.steps}")
    if not val and step > 0:
        run_validation()
    return TrainResult(
        step, last_loss, val, elapsed(), ckpt_path, stage.run_dir, stage.resumed_from, stage.notes
    )
