"""EvalConfig: the options of the evaluation protocol (DESIGN.md §1, §6) and its presets.

Next-frame metrics are the mean (and spread) over `subsets` random subsets of `subset_size`
validation windows (paper: 10 x 4,096); rollout metrics come from `rollout_windows` windows of
`context_frames + rollout_steps` frames, reported by horizon (paper: 18 steps, horizons 1-2, 3-6,
7-18). `fast()` is sized for a CPU smoke test, `paper()` for the paper's protocol.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

SPLITS = ("train", "valid", "test")
PRESETS = ("fast", "paper")
DEFAULT_HORIZONS: tuple[tuple[int, int], ...] = ((1, 2), (3, 6), (7, 18))


class EvalConfigError(ValueError):
    """A bad evaluation option; the message names the option and what is allowed."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation options; the defaults are the `fast()` preset."""

    preset: str = "fast"
    split: str = "valid"
    # next-frame: mean and std over `subsets` random subsets of `subset_size` distinct windows
    subsets: int = 5
    subset_size: int = 32
    # rollout: `rollout_steps` autoregressive frames from the first context frames of
    # `rollout_windows` windows; VRMSE reported per step and per inclusive 1-based horizon
    rollout_steps: int = 18
    rollout_windows: int = 8
    horizons: tuple[tuple[int, int], ...] = DEFAULT_HORIZONS
    batch_size: int = 8
    num_workers: int = 0  # DataLoader workers reading windows (HDF5 reads overlap compute)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 autocast of the model (CUDA only). Off by default: the metrics are computed in
    # float32, but a bf16 prediction is already rounded, which alone puts the high-wavenumber
    # NEPS of a smooth 512² field near 19 (and its VRMSE near 0.006).
    amp: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists: normalise to tuples so configs compare and hash reliably.
        try:
            horizons = tuple((int(a), int(b)) for a, b in self.horizons)
        except (TypeError, ValueError):
            raise EvalConfigError(
                f"horizons: {self.horizons!r} must be a list of [first, last] step pairs, "
                "e.g. [[1, 2], [3, 6], [7, 18]]"
            ) from None
        object.__setattr__(self, "horizons", horizons)
        self.validate()

    @classmethod
    def fast(cls, **overrides: Any) -> EvalConfig:
        """Smoke-test size: 5 subsets of 32 windows, 8 rollout windows, batches of 8."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> EvalConfig:
        """The paper's protocol: 10 subsets of 4,096 windows; 256 rollout windows of 18 steps."""
        base: dict[str, Any] = dict(
            preset="paper",
            subsets=10,
            subset_size=4096,
            rollout_windows=256,
            batch_size=16,
            num_workers=4,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset_named(cls, name: str, **overrides: Any) -> EvalConfig:
        if name not in PRESETS:
            raise EvalConfigError(f"--config {name!r}: choose one of {list(PRESETS)}")
        return cls.fast(**overrides) if name == "fast" else cls.paper(**overrides)

    def validate(self) -> None:
        def bad(option: str, why: str) -> EvalConfigError:
            return EvalConfigError(f"{option}: {why}")

        if self.preset not in PRESETS:
            raise bad("preset", f"must be one of {list(PRESETS)}, got {self.preset!r}")
        if self.split not in SPLITS:
            raise bad("--split", f"must be one of {list(SPLITS)}, got {self.split!r}")
        for option, value, low in (
            ("--subsets", self.subsets, 1),
            ("--subset-size", self.subset_size, 1),
            ("--rollout-steps", self.rollout_steps, 1),
            ("--rollout-windows", self.rollout_windows, 1),
            ("--batch-size", self.batch_size, 1),
            ("num_workers", self.num_workers, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(option, f"must be an integer >= {low}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("--seed", f"must be an integer, got {self.seed!r}")
        if not isinstance(self.amp, bool):
            raise bad("amp", f"must be true or false, got {self.amp!r}")
        if not self.horizons:
            raise bad("horizons", "give at least one [first, last] step range")
        for first, last in self.horizons:
            if not 1 <= first <= last:
                raise bad(
                    "horizons",
                    f"range [{first}, {last}] must satisfy 1 <= first <= last (1-based "
                    "rollout steps, both ends included)",
                )
        device = str(self.device).strip().lower()
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise bad("--device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["horizons"] = [list(h) for h in self.horizons]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        if not isinstance(data, dict):
            raise EvalConfigError(f"eval config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EvalConfigError(f"eval config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def select_device(request: str) -> torch.device:
    """The torch device for `EvalConfig.device` (the training stages' rule: auto picks the GPU
    when there is one), with errors as EvalConfigError (bad input, exit 2)."""
    from physok.train.distributed import DistributedError
    from physok.train.distributed import select_device as select

    try:
        return select(request)
    except DistributedError as e:
        raise EvalConfigError(str(e)) from None


def autocast(cfg: EvalConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast of the model's forward, on CUDA only (metrics are taken in float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
