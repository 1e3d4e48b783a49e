"""ExperimentConfig: the whole tokeniser-pretraining experiment in one dataclass, with presets.

The experiment is a fixed recipe of stages (DESIGN.md §1): data, in-domain and out-of-domain
tokeniser pretraining, rollout training under the five conditions, evaluation, report. The
stages keep their own configs (`TokeniserTrainConfig`, `RolloutTrainConfig`, `EvalConfig`); this
config holds what ties them together (data, datasets, conditions, names, seed) plus per-stage
overrides, and builds each stage's config from its preset of the same name.

`--set KEY=VALUE` (`apply_experiment_overrides`) reaches every level:
`tokeniser.steps=200` (a TokeniserTrainConfig field), `rollout.processor.dim=64`,
`evaluation.subsets=3`, `model.channels=[8,16,32]` (the tokeniser architecture: both the
pretraining and the rollout stages, which must agree), or an ExperimentConfig field
(`conditions=no_pretraining,in_domain_trainable`, `resolution=[32,32]`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from physok.data.generate import GenerationConfig
from physok.evaluate.config import EvalConfig
from physok.experiment.conditions import BASELINE as BASELINE_CONDITION
from physok.experiment.conditions import CONDITION_ORDER, get_condition
from physok.models.tokeniser.scales import total_compression
from physok.train import config_overrides
from physok.train.common import StageConfigMixin
from physok.train.config_overrides import ConfigError
from physok.train.rollout_stage import RolloutTrainConfig
from physok.train.tokeniser_stage import TokeniserTrainConfig

DOWNSTREAM = "euler_multi_quadrants_periodicBC"
BASELINES = ("unet",)  # trained baselines (physok.baselines)
# Out-of-domain mixture. The paper's: Rayleigh-Bénard, active matter and shear flow. physok has
# no active-matter generator, so the embedded default mixes the other generated datasets.
OUT_OF_DOMAIN_PAPER = ("rayleigh_benard", "active_matter", "shear_flow")
OUT_OF_DOMAIN_GENERATED = ("rayleigh_benard", "shear_flow", "gray_scott_reaction_diffusion")
# Stage-config keys the experiment owns (set from its own fields, not by overrides).
_OWNED = {
    "tokeniser": ("data_dir", "datasets", "run_dir", "seed", "device", "progress", "preset"),
    "rollout": (
        "data_dir",
        "datasets",
        "run_dir",
        "seed",
        "device",
        "progress",
        "preset",
        "tokeniser_checkpoint",
        "tokeniser_strategy",
    ),
    "evaluation": ("seed", "device"),
    "unet": ("data_dir", "dataset", "run_dir", "seed", "device", "progress", "wall_clock_s"),
}


@dataclass(frozen=True)
class ExperimentConfig(StageConfigMixin):
    """The experiment's settings; presets `fast()` (embedded data, CPU minutes) and `paper()`."""

    # `--set tokeniser.KEY` etc. collect into the per-stage mappings below (config_overrides)
    PRESETS: ClassVar[tuple[str, ...]] = ("fast", "literal_fast", "paper")
    NESTED_OVERRIDES: ClassVar[dict[str, str]] = {
        prefix: prefix[:-1]
        for prefix in ("tokeniser.", "rollout.", "evaluation.", "model.", "unet.")
    }

    name: str = "fast"
    preset: str = "fast"  # the stage presets used ("fast" | "paper")
    runs_dir: str = "runs"  # the experiment writes runs_dir/name/
    # data: generated into data_dir (embedded default), or an existing Well copy
    data_dir: str = "data"
    generate_data: bool = True
    resolution: tuple[int, int] = (32, 32)
    trajectories: int = 24
    trajectory_steps: int = 40  # snapshots per trajectory (>= 27 for 18-step rollouts)
    downstream: str = DOWNSTREAM
    out_of_domain: tuple[str, ...] = OUT_OF_DOMAIN_GENERATED
    conditions: tuple[str, ...] = CONDITION_ORDER
    # per-stage overrides on the stage presets ({"steps": 300}; rollout also "processor.dim")
    tokeniser: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # tokeniser architecture, both stages
    seed: int = 0
    # Independent repetitions: seeds seed, seed + 1, ..., each with its own tokenisers, conditions
    # and baseline (the data stay those of `seed`); results report the spread across them.
    seeds: int = 1
    # Trained baselines beside the conditions ("unet": the_well's UNetClassic in pixel space,
    # trained on the downstream data for the no-pretraining condition's downstream wall-clock);
    # persistence and linear extrapolation are always evaluated.
    baselines: tuple[str, ...] = ("unet",)
    unet: dict[str, Any] = field(default_factory=dict)  # UNetTrainConfig overrides
    device: str = "auto"
    # intra-op CPU threads (physok.train.threads): 0 = every available core (split between CPU
    # ranks); results depend on the count, which results.json records
    threads: int = 0
    cost_steps: int = 2_100  # Table 4: wall-clock per this many steps (the paper's epoch)
    progress: bool = True

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def fast(cls, **overrides: Any) -> ExperimentConfig:
        """Embedded generated data at 32², the fast models, equal budgets for every condition.

        Sized to finish in under 10 minutes on an idle 2-core CPU (README, "What the fast run
        found"): tokenisers 200 SOAP steps of batch 8 at lr 3e-3; rollout training 160 AdamW
        steps of batch 8 at peak lr 1e-3 in 8 epochs of 20 with the paper's schedule; the delta
        target, z-score inputs and a tokeniser trained at its eval scales (the stage presets;
        docs/design.md gives the evidence for each choice). `literal_fast()` is the same run
        with the paper's own choices.
        """
        base = cls(
            tokeniser={
                "steps": 200,
                "batch_size": 8,
                "lr": 3e-3,
                "val_every": 50,
                "ckpt_every": 100,
            },
            rollout={
                "steps": 160,
                "batch_size": 8,
                "lr": 1e-3,
                "epoch_steps": 20,
                "val_every": 20,
                "ckpt_every": 80,
            },
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def literal_fast(cls, **overrides: Any) -> ExperimentConfig:
        """The fast experiment with the paper's literal choices, for comparison: frame target,
        RMS inputs, flexible tokeniser scales over Table 7's sets (compression 8 in space at
        evaluation), the paper's rollout lr 2e-4; the same data, sizes, batches and steps."""
        fast = cls.fast()
        base = dataclasses.replace(
            fast,
            name="literal_fast",
            tokeniser={**fast.tokeniser, "model_preset": "literal_fast"},
            rollout={**fast.rollout, "model_preset": "literal_fast", "target": "frame", "lr": 2e-4},
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> ExperimentConfig:
        """The paper's settings on a real copy of The Well (`data_dir` = its base path, set by
        `--well-base-path`); run under torchrun (see README)."""
        base = cls(
            name="paper",
            preset="paper",
            generate_data=False,
            out_of_domain=OUT_OF_DOMAIN_PAPER,
        )
        return dataclasses.replace(base, **overrides)

    # ---- derived paths and stage configs ------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def generation(self) -> GenerationConfig:
        return GenerationConfig(
            resolution=tuple(self.resolution),
            trajectories=self.trajectories,
            steps=self.trajectory_steps,
            seed=self.seed,
        )

    def datasets_needed(self) -> tuple[str, ...]:
        """Every dataset a stage of this experiment reads, downstream first."""
        from physok.experiment.conditions import tokenisers_needed

        names = [self.downstream]
        if "out_of_domain" in tokenisers_needed(self.conditions):
            names += [d for d in self.out_of_domain if d not in names]
        return tuple(names)

    def tokeniser_datasets(self, source: str) -> tuple[str, ...]:
        return (self.downstream,) if source == "in_domain" else tuple(self.out_of_domain)

    def seed_list(self) -> tuple[int, ...]:
        """The seeds run: `seed` first (whose runs keep the unsuffixed folders, so adding seeds
        to a finished single-seed experiment reuses it), then seed + 1, ..."""
        return tuple(self.seed + i for i in range(self.seeds))

    def _suffix(self, seed: int | None) -> str:
        return "" if seed is None or seed == self.seed else f"_seed{seed}"

    def tokeniser_run_dir(self, source: str, seed: int | None = None) -> Path:
        return self.run_dir / f"tokeniser_{source}{self._suffix(seed)}"

    def rollout_run_dir(self, condition: str, seed: int | None = None) -> Path:
        return self.run_dir / f"rollout_{condition}{self._suffix(seed)}"

    def baseline_run_dir(self, baseline: str, seed: int | None = None) -> Path:
        return self.run_dir / f"baseline_{baseline}{self._suffix(seed)}"

    def _model_assignments(self) -> list[str]:
        return [f"model.{k}={json.dumps(v)}" for k, v in self.model.items()]

    def tokeniser_config(self, source: str, seed: int | None = None) -> TokeniserTrainConfig:
        """The pretraining stage of `source` ("in_domain" | "out_of_domain") for `seed`
        (None: the experiment's `seed`)."""
        cfg = TokeniserTrainConfig.preset_named(self.preset)
        cfg = _apply(cfg, self.tokeniser, "tokeniser", self._model_assignments())
        return dataclasses.replace(
            cfg,
            data_dir=self.data_dir,
            datasets=self.tokeniser_datasets(source),
            run_dir=str(self.tokeniser_run_dir(source, seed)),
            seed=self.seed if seed is None else seed,
            device=self.device,
            progress=self.progress,
        )

    def rollout_config(self, condition: str, seed: int | None = None) -> RolloutTrainConfig:
        """Rollout training of `condition` for `seed` (same budget and seed for every
        condition; the tokeniser is the one pretrained with the same seed)."""
        c = get_condition(condition)
        cfg = RolloutTrainConfig.preset_named(self.preset)
        cfg = _apply(cfg, self.rollout, "rollout", self._model_assignments())
        source = None if c.tokeniser is None else str(self.tokeniser_run_dir(c.tokeniser, seed))
        return dataclasses.replace(
            cfg,
            data_dir=self.data_dir,
            datasets=(self.downstream,),
            run_dir=str(self.rollout_run_dir(condition, seed)),
            tokeniser_checkpoint=source,
            tokeniser_strategy=c.strategy,
            seed=self.seed if seed is None else seed,
            device=self.device,
            progress=self.progress,
        )

    def unet_config(self, wall_clock_s: float, seed: int | None = None) -> Any:
        """The U-Net baseline for `seed`, trained for `wall_clock_s` seconds: the
        no-pretraining condition's downstream training time (a step cap is `unet.max_steps`,
        none by default)."""
        from physok.baselines.unet_training import UNetTrainConfig

        # the emulators' batch (the same samples per step), unless `unet.batch_size` says else
        batch = self.rollout_config(BASELINE_CONDITION, seed).batch_size
        cfg = UNetTrainConfig(max_steps=None, wall_clock_s=wall_clock_s, batch_size=batch)
        cfg = _apply(cfg, self.unet, "unet", [])
        return dataclasses.replace(
            cfg,
            data_dir=self.data_dir,
            dataset=self.downstream,
            run_dir=str(self.baseline_run_dir("unet", seed)),
            seed=self.seed if seed is None else seed,
            device=self.device,
            progress=self.progress,
            wall_clock_s=wall_clock_s,
        )

    def eval_config(self) -> EvalConfig:
        base = EvalConfig.fast() if self.preset == "fast" else EvalConfig.paper()
        cfg = _apply(base, self.evaluation, "evaluation", [])
        return dataclasses.replace(cfg, seed=self.seed, device=self.device)

    # ---- checks -------------------------------------------------------------
    def validate(self) -> None:
        """Option-level checks, including every stage config it builds."""
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"--name {self.name!r}: use a plain folder name like 'fast'")
        if self.preset not in ("fast", "paper"):
            raise ConfigError(f"preset {self.preset!r}: choose fast or paper")
        if not self.conditions:
            raise ConfigError("conditions: give at least one condition")
        for c in self.conditions:
            get_condition_checked(c)
        if len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"conditions repeat: {list(self.conditions)}")
        if "no_pretraining" not in self.conditions:
            raise ConfigError(
                "conditions must include no_pretraining: every change is reported against it"
            )
        if self.downstream in self.out_of_domain:
            raise ConfigError(
                f"out_of_domain {list(self.out_of_domain)} includes the downstream dataset "
                f"{self.downstream}: out-of-domain pretraining must not see it"
            )
        if self.seeds < 1:
            raise ConfigError(f"--seeds {self.seeds}: give a number of seeds >= 1")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: seeds must be >= 0")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ConfigError(
                f"baselines: unknown {unknown}; choose from {list(BASELINES)} (or [] for none)"
            )
        if self.threads < 0:
            raise ConfigError(f"--threads {self.threads}: give a count >= 1, or 0 for automatic")
        if self.cost_steps < 1:
            raise ConfigError(f"cost_steps must be >= 1, got {self.cost_steps}")
        for stage in ("tokeniser", "rollout"):
            nested = [k for k in getattr(self, stage) if k.startswith("model.")]
            if nested:
                raise ConfigError(
                    f"--set {stage}.{nested[0]}: the tokeniser architecture must be the same in "
                    f"both stages; set it once with --set {nested[0]}"
                )
        self._check_paths()
        if self.generate_data:
            try:
                self.generation().validate()
            except ValueError as e:
                raise ConfigError(_in_experiment_terms("", str(e))) from None
        from physok.experiment.conditions import tokenisers_needed

        # every stage's config and the model architecture, before any data or training
        for source in tokenisers_needed(self.conditions):
            with _stage_errors("tokeniser"):
                self.tokeniser_config(source).validate()
        for c in self.conditions:
            with _stage_errors("rollout"):
                self.rollout_config(c).validate()
        self._check_architecture()
        if "unet" in self.baselines:
            with _stage_errors("unet"):
                self.unet_config(60.0)  # the overrides, checked before any training
        try:
            self.eval_config().validate()
        except ValueError as e:
            raise ConfigError(f"evaluation: {_in_experiment_terms('evaluation', str(e))}") from None
        self._check_trajectory_length()

    def _check_paths(self) -> None:
        """Folders the experiment reads or writes must not be files (named as the user typed)."""
        data_option = "--data-dir" if self.generate_data else "--well-base-path"
        for option, path in (
            (data_option, Path(self.data_dir)),
            ("--runs-dir", Path(self.runs_dir)),
            ("--name", self.run_dir),
        ):
            if path.exists() and not path.is_dir():
                raise ConfigError(f"{option} {path} is a file, not a folder; give a folder")

    def _check_architecture(self) -> None:
        """Build the tokeniser and rollout-model configs the stages will build, and check the
        generated grid against the tokeniser's spatial compression: an architecture error comes
        before the data step, naming the `--set` options that made it."""
        from physok.experiment.conditions import tokenisers_needed
        from physok.models.rollout_model import RolloutModelConfig
        from physok.train import rollout_stage, tokeniser_stage

        model_set = " ".join(f"--set model.{k}={json.dumps(v)}" for k, v in self.model.items())
        where = model_set or f"the {self.preset} tokeniser preset"
        for source in tokenisers_needed(self.conditions):
            stage = self.tokeniser_config(source)
            try:
                tok = stage.model_config()
                tokeniser_stage.check_shapes(stage, tok, [])
            except ValueError as e:
                raise ConfigError(f"{where}: {_strip_stage_prefix(str(e))}") from None
            scale = math.prod(max(ss) for ss in tok.spatial_scales)
            self._check_resolution(scale, "spatial_scales", where)
        rollout = self.rollout_config(BASELINE_CONDITION)
        try:
            tok = rollout.tokeniser_config()
            rollout_stage.check_shapes(rollout, tok, [])
        except ValueError as e:
            raise ConfigError(f"{where}: {_strip_stage_prefix(str(e))}") from None
        _, scale = total_compression(tok.eval_scales)
        self._check_resolution(scale, "eval_scales", where)
        processor_set = " ".join(
            f"--set rollout.{k}={json.dumps(v)}" for k, v in self.rollout.items()
            if k.startswith("processor.")
        )  # fmt: skip
        try:
            RolloutModelConfig(
                tok,
                rollout.processor_config(tok.latent_channels),
                rollout.input_frames,
                rollout.target,
            )
        except ValueError as e:
            parts = (processor_set,) if "ProcessorConfig" in str(e) else (model_set, processor_set)
            names = " ".join(x for x in parts if x) or "the model presets"
            raise ConfigError(f"{names}: {_strip_stage_prefix(str(e))}") from None

    def _check_resolution(self, compression: int, scales: str, where: str) -> None:
        if not self.generate_data:
            return  # a Well copy's grids are checked when its data are opened
        bad = [n for n in self.resolution if n < 1 or n & (n - 1) or n % compression]
        if bad:
            fix = [max(compression, 1 << (max(n, 1) - 1).bit_length()) for n in self.resolution]
            raise ConfigError(
                f"--set resolution={json.dumps(list(self.resolution))}: the tokeniser ({where}) "
                f"compresses space by up to {compression} (model.{scales}), so each size must be "
                f"a power of two and a multiple of {compression}; e.g. --set "
                f"resolution={json.dumps(fix)}"
            )

    def _check_trajectory_length(self) -> None:
        """Generated trajectories must hold a rollout evaluation window (checked before any
        training, not after it)."""
        rollout = self.rollout_config(self.conditions[0])
        steps = self.eval_config().rollout_steps
        needed = max(rollout.input_frames + steps, rollout.window)
        if self.generate_data and self.trajectory_steps < needed:
            raise ConfigError(
                f"trajectory_steps={self.trajectory_steps}: the evaluation rolls out {steps} "
                f"steps from {rollout.input_frames} context frames and training reads windows "
                f"of {rollout.window} frames, so trajectories need at least {needed} snapshots; "
                f"--set trajectory_steps={needed} or a smaller --set evaluation.rollout_steps"
            )


_STAGE_FLAGS = {  # a stage's own command-line options -> its config fields
    "--steps": "steps",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--val-every": "val_every",
    "--ckpt-every": "ckpt_every",
    "--strategy": "tokeniser_strategy",
}
_GENERATION_FLAGS = {  # physok.data options -> the experiment's settings
    "--resolution": "resolution",
    "--trajectories": "trajectories",
    "--steps": "trajectory_steps",
}


def _in_experiment_terms(stage: str, message: str) -> str:
    """A stage's (or data generation's) error message with its options spelled as an
    experiment user types them: `--steps 4` -> `--set rollout.steps=4`, `window:` ->
    `--set rollout.window:`, `--resolution` -> `--set resolution`."""
    flags = _STAGE_FLAGS if stage else _GENERATION_FLAGS
    prefix = f"{stage}." if stage else ""
    for flag, key in flags.items():
        message = re.sub(rf"{flag} (-?\d[\w.]*)", rf"--set {prefix}{key}=\1", message)
        message = re.sub(rf"{flag}(?![\w-])", f"--set {prefix}{key}", message)
    head, sep, rest = message.partition(":")
    if stage and sep and re.fullmatch(r"[a-z_]+", head):
        message = f"--set {prefix}{head}:{rest}"
    return message


def _strip_stage_prefix(message: str) -> str:
    """Drop the stage CLI's "model config (model_preset / --set model.*): " preamble."""
    return re.sub(r"^\w[\w ]* config \([^)]*\): ", "", message)


@contextlib.contextmanager
def _stage_errors(stage: str) -> Iterator[None]:
    """Re-raise a stage config's error in the experiment's option spelling."""
    try:
        yield
    except ConfigError as e:
        message = str(e)
        if message.startswith("--set ") or message.startswith(f"{stage} stage:"):
            raise  # already an experiment-level message (from `_apply`)
        raise ConfigError(f"{stage} stage: {_in_experiment_terms(stage, message)}") from None


def get_condition_checked(name: str) -> None:
    try:
        get_condition(name)
    except ValueError as e:
        raise ConfigError(f"conditions: {e}") from None


def _apply(cfg: Any, overrides: dict[str, Any], stage: str, extra: list[str]) -> Any:
    """`cfg` with the experiment's overrides for `stage` applied through the stage's own
    `--set` machinery (so unknown keys get the stage's error, prefixed with the stage)."""
    owned = _OWNED[stage]
    assignments = []
    for key, value in overrides.items():
        if key in owned:
            raise ConfigError(
                f"--set {stage}.{key}: set by the experiment itself (from its own options: "
                "--data-dir, --name, --seed, --device, conditions, ...); it cannot be overridden"
            )
        assignments.append(f"{key}={json.dumps(value)}")
    try:
        return config_overrides.apply_overrides(cfg, [*extra, *assignments])
    except ConfigError as e:
        raise ConfigError(f"{stage} stage: {e}") from None


def apply_experiment_overrides(cfg: ExperimentConfig, assignments: list[str]) -> ExperimentConfig:
    """`--set KEY=VALUE` for the experiment (see the module docstring for the key forms)."""
    return config_overrides.apply_overrides(cfg, assignments)
