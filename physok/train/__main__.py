"""Command line: `python -m physok.train --fast` (the whole experiment) or one stage,
`python -m physok.train tokeniser|rollout [options]` (see --help).

Without a stage, the top-level options run the experiment (`physok.experiment`): `--fast` on the
embedded generated data, `--config paper --well-base-path PATH` on a real copy of The Well.
Run one process, or several with `torchrun --standalone --nproc_per_node=N -m physok.train ...`
(DDP for the tokeniser, FSDP2 for the rollout model).

Exit status: 0 done, 2 bad options or data, 3 training stopped (e.g. non-finite loss),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from physok.experiment.conditions import CONDITION_ORDER  # plain data: no torch import

EXIT_OK, EXIT_CONFIG, EXIT_TRAINING, EXIT_INTERRUPTED = 0, 2, 3, 130


def _add_stage_options(
    p: argparse.ArgumentParser, *, datasets_help: str, lr_help: str, seed_help: str
) -> None:
    """The options every stage has, before its own ones."""
    p.add_argument(
        "--config",
        choices=("fast", "paper"),
        default=None,
        help="preset (default: fast; with --resume: the run's own)",
    )
    p.add_argument("--data-dir", help="base folder holding <dataset>/data/{train,valid}")
    p.add_argument("--datasets", help=datasets_help)
    p.add_argument("--run-dir", help="folder for checkpoints/ and metrics.jsonl")
    p.add_argument("--steps", type=int, help="total optimiser steps")
    p.add_argument("--batch-size", type=int, help="windows per batch per rank")
    p.add_argument("--lr", type=float, help=lr_help)
    p.add_argument("--val-every", type=int, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, help="checkpoint every N steps")
    p.add_argument("--seed", type=int, help=seed_help)


def _add_run_options(p: argparse.ArgumentParser, *, set_example: str) -> None:
    """The options every stage has, after its own ones."""
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in --run-dir (fresh start if none)",
    )
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field (repeatable), e.g. {set_example}")  # fmt: skip


def _add_tokeniser_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokeniser",
        help="pretrain the tokeniser (autoencode frames 1-9 of 10-frame windows)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Pretrain the causal-convolution tokeniser with MSE reconstruction of frames 1-9 "
            "(SOAP, constant lr, grad clip 0.5). Options left out come from --config (or, with "
            "--resume, from the run's checkpoint); --set overrides any config field."
        ),
    )
    _add_stage_options(
        p,
        datasets_help="comma-separated dataset names, mixed with equal probability (one dataset "
        "per batch)",
        lr_help="learning rate (constant)",
        seed_help="seed of init, data order and scale draws",
    )
    _add_run_options(p, set_example="--set grad_clip=1.0 or --set model.channels=[8,16,32]")
    p.set_defaults(handler=_run_tokeniser)


def _add_rollout_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="train the rollout model (predict frame 10 from frames 1-9)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train tokeniser encoder -> processor -> decoder to predict frame 10 from frames 1-9 "
            "(MAE in normalised units; AdamW, inverse-sqrt schedule per epoch, grad clip 5; "
            "FSDP2 under torchrun). The tokeniser starts from --tokeniser-checkpoint or random "
            "weights. Options left out come from --config (or, with --resume, from the run's "
            "checkpoint); --set overrides any config field."
        ),
    )
    _add_stage_options(
        p,
        datasets_help="comma-separated dataset names (default: Euler periodic)",
        lr_help="peak learning rate",
        seed_help="seed of init, data order and stochastic depth",
    )
    p.add_argument(
        "--tokeniser-checkpoint",
        help="tokeniser-stage checkpoint or run directory to start from (default: random init)",
    )
    p.add_argument(
        "--strategy",
        choices=("trainable", "mostly_frozen"),
        help="tokeniser training strategy (mostly_frozen: only its heads and bottlenecks train)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile each processor block (default: on CUDA only)",
    )
    _add_run_options(
        p,
        set_example="--set epoch_steps=100, --set processor.dim=64 or --set "
        "model.kernel_backend=reference",
    )
    p.set_defaults(handler=_run_rollout)


class _StageParser(argparse.ArgumentParser):
    """Renders the presets' values in --help (imported only then: the stage pulls in torch)."""

    def format_help(self) -> str:
        if self.epilog is None and self.prog.endswith((" tokeniser", " rollout")):
            if self.prog.endswith(" tokeniser"):
                from physok.train.tokeniser_stage import TokeniserTrainConfig as config_cls

                nested = "model.<TokeniserConfig key>"
            else:
                from physok.train.rollout_stage import RolloutTrainConfig as config_cls

                nested = "model.<TokeniserConfig key> and processor.<ProcessorConfig key>"
            fast, paper = config_cls.fast().to_dict(), config_cls.paper().to_dict()
            width = max(len(k) for k in fast) + 1
            rows = [
                f"  {k:<{width}} {json.dumps(fast[k]):<36} {json.dumps(paper[k])}" for k in fast
            ]
            self.epilog = (
                f"config fields (--set KEY=VALUE; also {nested}), fast and paper values:\n"
                + "\n".join(rows)
            )
        return super().format_help()


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    """Top-level options: the whole experiment (used when no STAGE is given)."""
    g = p.add_argument_group(
        "the whole experiment (no STAGE): data, both tokenisers, five conditions, evaluation, "
        "report in RUNS_DIR/NAME"
    )
    g.add_argument(
        "--fast",
        action="store_true",
        help="the embedded default: generated data, fast models (minutes on a CPU)",
    )
    g.add_argument(
        "--config",
        dest="experiment_config",
        choices=("fast", "literal_fast", "paper"),
        help="experiment preset (literal_fast: the fast run with the paper's literal choices; "
        "paper: the paper's settings, needs --well-base-path)",
    )
    g.add_argument(
        "--well-base-path",
        metavar="PATH",
        help="base folder of a real The Well copy (<base>/<dataset>/data/...): no data generation",
    )
    g.add_argument(
        "--data-dir",
        dest="experiment_data_dir",
        metavar="DIR",
        help="where generated datasets go (default: data)",
    )
    g.add_argument(
        "--runs-dir", metavar="DIR", help="parent of the experiment folder (default: runs)"
    )
    g.add_argument("--name", help="experiment folder name (default: the preset's name)")
    g.add_argument(
        "--conditions",
        metavar="LIST",
        help="comma-separated subset of the conditions (default: all five: "
        f"{', '.join(CONDITION_ORDER)}; no_pretraining is always needed)",
    )
    g.add_argument(
        "--seed", dest="experiment_seed", metavar="SEED", type=int, help="seed of every stage"
    )
    g.add_argument(
        "--seeds",
        dest="experiment_seeds",
        metavar="N",
        type=int,
        help="repeat the experiment with seeds SEED, SEED+1, ..., SEED+N-1 (own tokenisers, "
        "conditions and baselines per seed; the report gives the spread across seeds)",
    )
    g.add_argument(
        "--device", dest="experiment_device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"
    )
    g.add_argument(
        "--threads",
        dest="experiment_threads",
        metavar="N",
        type=int,
        help="intra-op CPU threads (default: every available core; 1 on a shared machine); "
        "numbers repeat exactly only with the same count",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="redo every stage (deletes RUNS_DIR/NAME first; matching generated data is kept)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--set", dest="experiment_overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a setting (repeatable): tokeniser.steps=200, rollout.lr=1e-3, "
                   "rollout.processor.dim=64, evaluation.subsets=3, model.channels=[8,16,32], "
                   "resolution=[64,64]")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m physok.train",
        description="physok training: the whole experiment (`--fast`, or `--config paper "
        "--well-base-path PATH`) or one stage (`python -m physok.train STAGE --help`).",
    )
    _add_experiment_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="STAGE", parser_class=_StageParser)
    _add_tokeniser_parser(sub)
    _add_rollout_parser(sub)
    return parser


_ARG_TO_FIELD = {
    "data_dir": "data_dir",
    "run_dir": "run_dir",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "val_every": "val_every",
    "ckpt_every": "ckpt_every",
    "seed": "seed",
    "device": "device",
}


def _stage_config_from_args(
    args: argparse.Namespace,
    config_cls: Any,
    kind: str,
    apply_overrides: Callable[[Any, list[str]], Any],
    extra_changes: dict[str, Any],
) -> Any:
    """A stage config: preset (or, with --resume, the run's own config) + options + --set."""
    import dataclasses
    from pathlib import Path

    from physok import checkpoint as ckpt_io
    from physok.train.config_overrides import ConfigError

    cfg = config_cls.preset_named(args.config or "fast")
    run_dir = Path(args.run_dir or cfg.run_dir)
    if args.resume:
        latest = ckpt_io.latest_checkpoint(run_dir)
        if latest is not None:
            meta = ckpt_io.read_checkpoint_config(latest, kind=kind)
            saved = config_cls.from_dict(
                meta["train_config"] or {}, where=f"{latest / ckpt_io.CONFIG_FILE}"
            )
            if args.config is not None and args.config != saved.preset:
                raise ConfigError(
                    f"--config {args.config}: the run in {run_dir} was started with --config "
                    f"{saved.preset}; drop --config when resuming"
                )
            cfg = saved
    changes = {
        f: getattr(args, a) for a, f in _ARG_TO_FIELD.items() if getattr(args, a) is not None
    }
    if args.datasets is not None:
        changes["datasets"] = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    changes.update({k: v for k, v in extra_changes.items() if v is not None})
    cfg = dataclasses.replace(cfg, **changes)
    cfg = apply_overrides(cfg, args.overrides)
    cfg.validate()
    return cfg


def tokeniser_config_from_args(args: argparse.Namespace):  # -> TokeniserTrainConfig
    """The tokeniser stage config: preset (or the resumed run's) + options + --set overrides."""
    from physok.train.config_overrides import apply_overrides
    from physok.train.tokeniser_stage import CHECKPOINT_KIND, TokeniserTrainConfig

    return _stage_config_from_args(args, TokeniserTrainConfig, CHECKPOINT_KIND, apply_overrides, {})


def rollout_config_from_args(args: argparse.Namespace):  # -> RolloutTrainConfig
    """The rollout stage config: preset (or the resumed run's) + options + --set overrides."""
    from physok.train.config_overrides import apply_overrides
    from physok.train.rollout_stage import CHECKPOINT_KIND, RolloutTrainConfig

    extra = {
        "tokeniser_checkpoint": args.tokeniser_checkpoint,
        "tokeniser_strategy": args.strategy,
        "compile": args.compile,
    }
    return _stage_config_from_args(
        args, RolloutTrainConfig, CHECKPOINT_KIND, apply_overrides, extra
    )


def _print_summary(title: str, result: Any) -> None:
    print(f"{title} finished")
    print(f"  steps:       {result.steps}")
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.6g}"
    print(f"  final loss:  {loss}")
    for name, value in (getattr(result, "val_mae", None) or {}).items():
        print(f"  val MAE:     {name}: {value:.4f}")
    for name, value in result.val_vrmse.items():
        print(f"  val VRMSE:   {name}: {value:.4f}")
    print(f"  wall-clock:  {result.wall_clock_s:.1f} s")
    print(f"  checkpoint:  {result.checkpoint}")
    print(f"  run dir:     {result.run_dir}")
    sys.stdout.flush()


def _run_mapped(
    work: Callable[[], Any], *, training_hint: str, interrupted_hint: str
) -> tuple[int, Any, bool]:
    """Run `work()`, map failures to exit codes with a message on stderr, leave the process
    group. Returns (exit code, result, whether this process is rank 0)."""
    from physok.train import distributed as dist_utils
    from physok.train.common import TrainingError
    from physok.train.distributed import DistributedError

    ok = False
    try:
        result = work()
        # before the teardown below, which forgets the rank (the experiment tears down
        # earlier itself; its caller does not use is_main)
        is_main = dist_utils.get_rank() == 0
        ok = True
    except TrainingError as e:
        _error(f"training stopped: {e}{training_hint}")
        return EXIT_TRAINING, None, False
    except (ValueError, DistributedError) as e:  # DataError, ConfigError, CheckpointError, ...
        _error(str(e))
        return EXIT_CONFIG, None, False
    except OSError as e:  # a full disk, an unwritable folder: what was written is kept
        from physok.write_errors import describe_os_error

        _error(describe_os_error(e))
        return EXIT_CONFIG, None, False
    except KeyboardInterrupt:
        _error(f"interrupted; {interrupted_hint}")
        return EXIT_INTERRUPTED, None, False
    finally:
        dist_utils.teardown(sync=ok)
    return EXIT_OK, result, is_main


def _run_stage(
    args: argparse.Namespace,
    title: str,
    config_from_args: Callable[[argparse.Namespace], Any],
    train: Callable[..., Any],
) -> int:
    """Build the config, train, map failures to exit codes, print the summary on rank 0."""
    code, result, is_main = _run_mapped(
        lambda: _train_locked(train, config_from_args(args), resume=args.resume),
        training_hint="",
        interrupted_hint="continue with --resume (from the last checkpoint)",
    )
    if code == EXIT_OK and is_main:
        _print_summary(title, result)
    return code


def _train_locked(train: Callable[..., Any], cfg: Any, *, resume: bool) -> Any:
    """`train(cfg)` holding the run directory's lock (rank 0 holds it under torchrun): a second
    run into the same --run-dir is refused at once, naming this one."""
    import os

    from physok.run_lock import FolderLock

    lock = FolderLock(
        cfg.run_dir,
        what="run directory",
        hint="wait for that run to finish (or stop it), or choose another --run-dir",
        enabled=int(os.environ.get("RANK", "0")) == 0,  # the process group does not exist yet
    )
    with lock:
        return train(cfg, resume=resume)


def _run_tokeniser(args: argparse.Namespace) -> int:
    from physok.train.tokeniser_stage import train

    return _run_stage(args, "tokeniser pretraining", tokeniser_config_from_args, train)


def _run_rollout(args: argparse.Namespace) -> int:
    from physok.train.rollout_stage import train

    return _run_stage(args, "rollout training", rollout_config_from_args, train)


def experiment_config_from_args(args: argparse.Namespace):  # -> ExperimentConfig
    """The experiment config: preset + top-level options + --set overrides."""
    import dataclasses

    from physok.experiment.config import ExperimentConfig, apply_experiment_overrides
    from physok.train.config_overrides import ConfigError

    if args.fast and args.experiment_config not in (None, "fast"):
        raise ConfigError(
            f"--fast and --config {args.experiment_config} contradict each other; give one"
        )
    preset = args.experiment_config or "fast"
    cfg = ExperimentConfig.preset_named(preset)
    changes: dict[str, Any] = {}
    if args.well_base_path is not None:
        changes.update(data_dir=args.well_base_path, generate_data=False)
        if args.experiment_data_dir is not None:
            raise ConfigError(
                "--data-dir is where generated data goes; with --well-base-path nothing is "
                "generated: drop --data-dir"
            )
    elif preset == "paper":
        raise ConfigError(
            "--config paper runs on real The Well data: pass --well-base-path PATH (the base "
            "folder holding euler_multi_quadrants_periodicBC/, rayleigh_benard/, ...)"
        )
    if args.experiment_data_dir is not None:
        changes["data_dir"] = args.experiment_data_dir
    for option, name in (
        ("runs_dir", "runs_dir"),
        ("name", "name"),
        ("experiment_seed", "seed"),
        ("experiment_seeds", "seeds"),
        ("experiment_threads", "threads"),
        ("experiment_device", "device"),
    ):
        if getattr(args, option) is not None:
            changes[name] = getattr(args, option)
    if args.conditions is not None:
        changes["conditions"] = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    if args.quiet:
        changes["progress"] = False
    cfg = dataclasses.replace(cfg, **changes)
    cfg = apply_experiment_overrides(cfg, args.experiment_overrides)
    cfg.validate()
    return cfg


def _run_experiment(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The whole experiment; failures map to the stages' exit codes."""
    import shlex

    from physok.experiment.runner import run_experiment

    args_list = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--force"]
    command = "python -m physok.train " + shlex.join(args_list)
    code, _, _ = _run_mapped(
        lambda: run_experiment(
            experiment_config_from_args(args), force=args.force, command=command
        ),
        training_hint=(
            "; the finished stages and the last good checkpoint are kept: change the setting "
            "(e.g. --set rollout.lr=...) under a new --name, or investigate the data"
        ),
        interrupted_hint="rerun the same command to continue (finished stages are reused)",
    )
    return code


def _uses_experiment_options(args: argparse.Namespace) -> bool:
    return bool(
        args.fast
        or args.force
        or args.quiet
        or args.experiment_overrides
        or any(
            getattr(args, k) is not None
            for k in (
                "experiment_config",
                "well_base_path",
                "experiment_data_dir",
                "runs_dir",
                "name",
                "conditions",
                "experiment_seed",
                "experiment_seeds",
                "experiment_threads",
                "experiment_device",
            )
        )
    )


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if not _uses_experiment_options(args):
            parser.print_help()
            return EXIT_CONFIG
        return _run_experiment(args, argv)
    if _uses_experiment_options(args):
        parser.error(
            f"experiment options (--fast, --config, --name, ...) go without a STAGE; "
            f"for the {args.command} stage put its options after the stage name"
        )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
