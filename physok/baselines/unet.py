"""The Well's U-Net (`UNetClassic`, the architecture of its benchmark tables) as a next-frame
forecaster with the evaluation's interface (`context_frames`, `predict_next`, `rollout`).

Loading. `the_well/benchmark/models/__init__.py` imports every benchmark model, and with them
timm and neuralop, which cannot be installed beside the CPU torch build (timm needs
torchvision, and PyPI's torchvision fails to import beside torch 2.13+cpu). `UNetClassic` itself
needs only torch and `huggingface_hub.PyTorchModelHubMixin` (via `models/common.py`), so
`load_unet_classic` imports its module without running that `__init__` (see there).

Data flow of `UNetForecaster` (context (B, T >= 9, C, X, Y), physical units):
- statistics from all `context_frames` (9) context frames, per sample and field: the z-score
  mean and std (`physok.ops.rms_normalise.zscore_normalise`), and the delta scale s_Δ, the RMS
  of frame-to-frame changes over the context in z-scored units, floored at
  `DELTA_SCALE_FLOOR` (the emulator's delta target's own function and floor, so a still field
  is treated alike by both; a field that does not move over the context would otherwise make any
  later change an arbitrarily large target);
- input: the last `n_input` (4, as The Well's benchmarks) z-scored frames stacked along
  channels, (B, n_input * C, X, Y); the earlier context frames enter only through the
  statistics;
- output: the change to the next frame in units of the context's typical change ("delta", as
  Walrus and The Well's delta option): next = f_T + std · s_Δ · output, so a zero output is
  persistence exactly. `training_pair` gives the training input and target on the same path.
The statistics are the emulator's (physok.models.rollout_model with z-score normalisation and
the delta target), so both are trained on the same kind of numbers. UNetClassic pools four
times: X and Y must be divisible by 16. It has BatchNorm: evaluate in `eval()` mode.
"""

from __future__ import annotations

import importlib
import importlib.util
import operator
import os
import sys
import threading
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from physok.baselines.extrapolation import (
    CONTEXT_FRAMES,
    FieldIndices,
    check_context,
    out_dtype,
    slide_rollout,
)
from physok.models.prediction_target import delta_scale
from physok.ops.rms_normalise import zscore_normalise

CHECKPOINT_KIND = "unet_baseline"
N_INPUT = 4  # context frames the U-Net sees, as in The Well's benchmarks
POOLING_FACTOR = 16  # UNetClassic's four 2x max-pools

_MODELS_PKG = "the_well.benchmark.models"
_MODULES = (f"{_MODELS_PKG}.common", f"{_MODELS_PKG}.unet_classic")
_IMPORT_LOCK = threading.Lock()
_HF_MISSING = (
    "the_well's UNetClassic needs the package huggingface-hub with PyTorchModelHubMixin (its "
    "models subclass it); install it with `pip install -U huggingface-hub` (a dependency of "
    "physok: `pip install -e .`)"
)


def load_unet_classic() -> type[nn.Module]:
    """the_well's `UNetClassic` class, without executing `the_well/benchmark/models/__init__.py`.

    The trick: a bare module object stands in for the package `the_well.benchmark.models` in
    `sys.modules` while its submodules are imported. Its `__path__` is the real folder, so
    `common` and `unet_classic` are found and loaded from the installed files under their real
    names (their own absolute imports resolve to the stand-in), but the package's `__init__`
    never runs. The stand-in is then removed, so a later plain `import the_well.benchmark.models`
    runs the real `__init__` (and succeeds or fails on its own terms, reusing these two
    submodules); the two submodules stay in `sys.modules`, so the class has one identity and
    instances pickle. When the real package is already imported, it is simply used.
    """
    with _IMPORT_LOCK:
        loaded = sys.modules.get(f"{_MODELS_PKG}.unet_classic")
        if loaded is not None:
            return loaded.UNetClassic
        if importlib.util.find_spec("huggingface_hub") is None:
            raise ImportError(_HF_MISSING)
        if _MODELS_PKG in sys.modules:
            return importlib.import_module(f"{_MODELS_PKG}.unet_classic").UNetClassic
        import the_well.benchmark

        stand_in = types.ModuleType(_MODELS_PKG, "stand-in: the real __init__ is not run")
        stand_in.__path__ = [str(Path(the_well.benchmark.__file__).parent / "models")]
        stand_in.__package__ = _MODELS_PKG
        sys.modules[_MODELS_PKG] = stand_in
        try:
            module = importlib.import_module(f"{_MODELS_PKG}.unet_classic")
        except BaseException as e:
            for name in _MODULES:  # leave no half-imported submodule behind
                sys.modules.pop(name, None)
            # missing, or too old to have PyTorchModelHubMixin (`e.name` is the module either way)
            if isinstance(e, ImportError) and (e.name or "").startswith("huggingface_hub"):
                raise ImportError(f"{_HF_MISSING} ({e})") from e
            raise
        finally:
            if sys.modules.get(_MODELS_PKG) is stand_in:
                del sys.modules[_MODELS_PKG]
        return module.UNetClassic


@dataclass(frozen=True)
class UNetConfig:
    """What a U-Net baseline checkpoint stores: the architecture and the input/target recipe."""

    n_fields: int
    spatial_resolution: tuple[int, int]
    n_input: int = N_INPUT
    init_features: int = 16
    context_frames: int = CONTEXT_FRAMES
    field_names: tuple[str, ...] | None = None  # the channel order it was trained on

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        try:  # numpy integers are fine, floats are not
            grid = tuple(operator.index(n) for n in self.spatial_resolution)
        except TypeError:
            grid = tuple(self.spatial_resolution)  # check_resolution names the problem
        object.__setattr__(self, "spatial_resolution", grid)
        if self.field_names is not None:
            object.__setattr__(self, "field_names", tuple(self.field_names))
        self.validate()

    def validate(self) -> None:
        def positive_int(name: str, value: Any, low: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"UNetConfig.{name}: must be an integer >= {low}, got {value!r}")

        positive_int("n_fields", self.n_fields)
        positive_int("init_features", self.init_features)
        positive_int("context_frames", self.context_frames, 2)  # s_Δ needs two frames
        positive_int("n_input", self.n_input)
        if self.n_input > self.context_frames:
            raise ValueError(
                f"UNetConfig.n_input: {self.n_input} input frames do not fit in "
                f"context_frames={self.context_frames}"
            )
        check_resolution(self.spatial_resolution, "UNetConfig.spatial_resolution")
        if self.field_names is not None and len(self.field_names) != self.n_fields:
            raise ValueError(
                f"UNetConfig.field_names: {len(self.field_names)} names for "
                f"n_fields={self.n_fields}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spatial_resolution"] = list(self.spatial_resolution)
        d["field_names"] = None if self.field_names is None else list(self.field_names)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        if not isinstance(data, dict):
            raise ValueError(f"U-Net config must be a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"U-Net config has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def check_resolution(shape: Any, where: str) -> None:
    """X and Y must be divisible by 16 (UNetClassic's four 2x poolings)."""
    shape = tuple(shape)
    if len(shape) != 2 or any(
        not isinstance(n, int) or n < POOLING_FACTOR or n % POOLING_FACTOR for n in shape
    ):
        raise ValueError(
            f"{where}: grid {shape} is not 2-D with sizes divisible by {POOLING_FACTOR}; "
            f"UNetClassic pools 4 times by 2, so X and Y must be multiples of {POOLING_FACTOR} "
            "(e.g. 32x32 or 64x64)"
        )


def _bc(stat: torch.Tensor) -> torch.Tensor:
    return stat[:, :, None, None]  # (B, C) -> (B, C, 1, 1), against one frame


@dataclass
class NetworkInputs:
    """One context's U-Net input and what turns the U-Net's output back into a frame."""

    x: torch.Tensor  # (B, n_input * C, X, Y), z-scored, in the network's dtype
    last: torch.Tensor  # (B, C, X, Y) the last context frame, physical units (float32 or wider)
    step_scale: torch.Tensor  # (B, C) std · s_Δ: one output unit in physical units

    def to_frame(self, output: torch.Tensor) -> torch.Tensor:
        """The predicted next frame (physical units) from the U-Net's output (B, C, X, Y)."""
        return self.last + _bc(self.step_scale) * output.to(self.last.dtype)

    def to_output_units(self, frame: torch.Tensor) -> torch.Tensor:
        """A true next frame (B, C, X, Y) as the output the U-Net should have produced."""
        return (frame.to(self.last.dtype) - self.last) / _bc(self.step_scale)


class UNetForecaster(nn.Module):
    """UNetClassic on the last `n_input` z-scored context frames, predicting the delta to the
    next frame; see the module docstring. The arguments are `UNetConfig`'s fields."""

    def __init__(
        self,
        n_fields: int,
        spatial_resolution: tuple[int, int],
        *,
        n_input: int = N_INPUT,
        init_features: int = 16,
        context_frames: int = CONTEXT_FRAMES,
        field_names: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        config = UNetConfig(
            n_fields, spatial_resolution, n_input, init_features, context_frames, field_names
        )
        self.config = config
        self.context_frames = config.context_frames
        self.n_input = config.n_input
        self.unet = load_unet_classic()(
            dim_in=config.n_input * config.n_fields,
            dim_out=config.n_fields,
            n_spatial_dims=2,
            spatial_resolution=config.spatial_resolution,
            init_features=config.init_features,
        )

    @classmethod
    def from_config(cls, config: UNetConfig) -> UNetForecaster:
        return cls(**{**asdict(config), "spatial_resolution": config.spatial_resolution})

    # -- the one input/target path of prediction and training ---------------------------------
    def network_inputs(self, context: torch.Tensor) -> NetworkInputs:
        """Statistics from the last `context_frames` frames of `context` (B, T, C, X, Y), the
        U-Net input from the last `n_input` of them."""
        who = type(self).__name__
        check_context(context, self.context_frames, who)
        c = context.shape[2]
        if c != self.config.n_fields:
            raise ValueError(
                f"{who}: context has {c} fields but the U-Net was built for "
                f"{self.config.n_fields} ({self.config.field_names or 'names not recorded'})"
            )
        check_resolution(context.shape[3:], f"{who} input")
        window = context[:, -self.context_frames :].to(out_dtype(context))
        z, _, std = zscore_normalise(window)  # statistics over all context frames
        s_delta = delta_scale(z)  # the emulator's delta units (physok.models.prediction_target)
        param = next(self.unet.parameters())
        x = z[:, -self.n_input :].flatten(1, 2).to(param.dtype)
        return NetworkInputs(x, window[:, -1], std * s_delta)

    def training_pair(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U-Net input, target in output units) for a window (B, context_frames + 1, C, X, Y):
        frames 1..context_frames are the context, the last frame the target. The loss is the
        MAE between `self.unet(input)` and the target."""
        if window.dim() != 5 or window.shape[1] != self.context_frames + 1:
            raise ValueError(
                f"training windows must be (B, {self.context_frames + 1}, C, X, Y) "
                f"(context + target), got shape {tuple(window.shape)}"
            )
        inputs = self.network_inputs(window[:, :-1])
        return inputs.x, inputs.to_output_units(window[:, -1])

    # -- forecaster interface -----------------------------------------------------------------
    def predict_next(
        self, context: torch.Tensor, field_indices: FieldIndices = None
    ) -> torch.Tensor:
        """The frame after `context` (B, T >= context_frames, C, X, Y): (B, C, X, Y), physical
        units. `field_indices` is ignored (the channel order is fixed at training)."""
        inputs = self.network_inputs(context)
        return inputs.to_frame(self.unet(inputs.x))

    def forward(self, context: torch.Tensor, field_indices: FieldIndices = None) -> torch.Tensor:
        return self.predict_next(context, field_indices)

    def rollout(
        self, context: torch.Tensor, steps: int, field_indices: FieldIndices = None
    ) -> torch.Tensor:
        """`steps` frames after `context`: (B, steps, C, X, Y); the window slides over the
        predictions and the statistics are recomputed per window, as `RolloutModel.rollout`."""
        check_context(context, self.context_frames, type(self).__name__)
        return slide_rollout(self.predict_next, context, steps, self.context_frames, field_indices)

    # -- persistence --------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Weights (safetensors) and the UNetConfig (config.json), written atomically."""
        from physok.checkpoint import save_model_dir

        return save_model_dir(
            path,
            kind=CHECKPOINT_KIND,
            model=self,
            model_config=self.config.to_dict(),
            field_names=self.config.field_names,
        )

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> UNetForecaster:
        """Load from a checkpoint directory, or a training run directory (its latest); the
        model comes back in eval mode (BatchNorm on its running statistics)."""
        from physok.checkpoint import CheckpointError, load_checkpoint, load_model_state

        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
        try:
            config = UNetConfig.from_dict(ckpt.model_config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"{ckpt.path}: config.json holds an invalid U-Net config: {e}"
            ) from None
        model = cls.from_config(config)
        load_model_state(model, ckpt)
        return model.to(map_location).eval()
