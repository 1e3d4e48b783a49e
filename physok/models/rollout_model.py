"""RolloutModel: tokeniser encoder -> processor -> tokeniser decoder, a next-frame emulator.

Data flow (docs/design.md, "Prediction target"). A context window of T frames (9 in the experiment;
physical units, (B, T, C, X, Y)) is normalised per (sample, field) by its own statistics (the
tokeniser's `normalisation`: "rms" or "zscore"; physok.models.prediction_target), encoded at the
tokeniser's `eval_scales` to T' latent frames, transformed by the processor (its own 18 <-> dim
projections, causal over T'), and decoded back to T frames of raw outputs. Output j is the
model's prediction of input frame j + 1 in output units, set by the config's `target`: the frame
itself ("frame", the paper's reading) or the change from frame j in units of the context's
typical change ("delta", Walrus's default). Undoing the target and the normalisation gives
physical units. The last output frame predicts the frame after the window (frame 10 of a
10-frame sample). Losses are taken in output units (`normalised=True`, `training_pair`), where
every field of every sample has unit scale, so no field or sample dominates.

What "output frame j predicts frame j + 1" means under chunked decoding. With temporal
compression S (product of the eval scales' temporal factors), latent i summarises the chunk of
frames (i-1)*S+1 .. i*S (frame 0 alone is chunk 0) and depends on frames <= i*S only. The
processor is causal over latents. The depth-to-space decoder turns latent i back into its whole
chunk at once (flexible_upsample.py), so:

    output frame j depends only on input frames <= S * ceil(j / S)  (the end of j's chunk).

For a chunk's last frame (j a multiple of S) that is frames <= j: a strict next-frame prediction.
For the other frames of a chunk (only when S > 1) the output also sees later frames of the same
chunk, including its own target j + 1: those outputs are not honest forecasts and must not be
trained on as such. The experiment's loss uses only the last output frame, j = T - 1, which is a
multiple of S for every valid T (T - 1 is a multiple of S), so it sees exactly the T context frames
and never its target. With `upsampling="transposed"` decoding is strictly causal: output j
depends on frames <= j for every j. These statements hold for the raw outputs
(`normalised=True`). In physical units the statistics (scale, shift, and for "delta" the change
scale) are statistics of the whole context window, so every output also depends on every context
frame through them (a few scalars per field); the "delta" output j adds frame j itself, which the
chunk-end output already sees.

Rollout (`rollout`) slides a window of the last `context_frames` frames: each step predicts the
next frame from the window, appends it and drops the oldest frame. The statistics are recomputed
from each step's window (which then holds predictions), not kept from the true context: the model
was trained on windows normalised by their own RMS, so this keeps every step's input in the
training distribution (a field that decays or grows over the rollout would otherwise drift away
from unit RMS), and it makes step k exactly `predict_next` of the window it sees, so a rollout
can be resumed or checked from any window. Nothing of the truth beyond the initial context is
used either way.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from physok.models.forecaster import CONTEXT_FRAMES, slide_rollout
from physok.models.prediction_target import (
    TARGETS,
    ContextStats,
    denormalise,
    normalise_context,
    outputs_to_frames,
    target_in_output_units,
)
from physok.models.processor import Processor, ProcessorConfig
from physok.models.tokeniser import Tokeniser, TokeniserConfig
from physok.models.tokeniser.scales import check_input_shape, total_compression

CHECKPOINT_KIND = "rollout"


@dataclass(frozen=True)
class RolloutModelConfig:
    """The two sub-model configs, the context length and the prediction target; what a
    rollout checkpoint stores (the normalisation is the tokeniser's)."""

    tokeniser: TokeniserConfig = field(default_factory=TokeniserConfig.paper)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig.paper)
    context_frames: int = CONTEXT_FRAMES
    # "frame" | "delta" (physok.models.prediction_target); checkpoints without it are "frame"
    target: str = "frame"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def temporal_compression(self) -> int:
        return total_compression(self.tokeniser.eval_scales)[0]

    @property
    def normalisation(self) -> str:
        return self.tokeniser.normalisation

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(
                f"RolloutModelConfig.target: must be one of {TARGETS}, got {self.target!r}"
            )
        if self.tokeniser.latent_channels != self.processor.latent_channels:
            raise ValueError(
                f"RolloutModelConfig: the tokeniser's latent_channels "
                f"({self.tokeniser.latent_channels}) must equal the processor's latent_channels "
                f"({self.processor.latent_channels}); set processor.latent_channels to match"
            )
        s = self.temporal_compression
        if (
            not isinstance(self.context_frames, int)
            or self.context_frames < 2
            or (self.context_frames - 1) % s
        ):
            raise ValueError(
                f"RolloutModelConfig.context_frames: {self.context_frames!r} must be >= 2 and 1 + "
                f"a multiple of the tokeniser's temporal compression {s} at its eval_scales "
                "(e.g. 9)"
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RolloutModelConfig:
        """Both sub-models from the same preset ("fast" or "paper")."""
        return cls(TokeniserConfig.preset(name), ProcessorConfig.preset_named(name), **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokeniser": self.tokeniser.to_dict(),
            "processor": self.processor.to_dict(),
            "context_frames": self.context_frames,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"rollout model config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"tokeniser", "processor", "context_frames", "target"})
        if unknown or "tokeniser" not in data or "processor" not in data:
            raise ValueError(
                "rollout model config needs the keys 'tokeniser' and 'processor' (and optionally "
                f"'context_frames', 'target'); got {sorted(data)}"
            )
        return cls(
            TokeniserConfig.from_dict(data["tokeniser"]),
            ProcessorConfig.from_dict(data["processor"]),
            int(data.get("context_frames", CONTEXT_FRAMES)),
            str(data.get("target", "frame")),
        )


class RolloutModel(nn.Module):
    """Next-frame emulator; see the module docstring for units, causality and rollout."""

    def __init__(
        self,
        tokeniser: Tokeniser,
        processor: Processor,
        context_frames: int = CONTEXT_FRAMES,
        target: str = "frame",
    ) -> None:
        super().__init__()
        # Validates latent channels, the target and the context length against the eval scales.
        self._config = RolloutModelConfig(
            tokeniser.config, processor.config, context_frames, target
        )
        self.tokeniser = tokeniser
        self.processor = processor
        self.context_frames = context_frames
        self.target = target

    @classmethod
    def from_config(cls, config: RolloutModelConfig) -> RolloutModel:
        return cls(
            Tokeniser(config.tokeniser),
            Processor(config.processor),
            config.context_frames,
            config.target,
        )

    @property
    def config(self) -> RolloutModelConfig:
        return self._config

    @property
    def normalisation(self) -> str:
        return self.tokeniser.config.normalisation

    # -- model ---------------------------------------------------------------------------------
    def forward(
        self,
        fields: torch.Tensor,
        field_indices: torch.Tensor | list[int],
        *,
        normalised: bool = False,
    ) -> torch.Tensor:
        """All next-frame predictions: output frame j predicts input frame j + 1.

        fields (B, T, C, X, Y) -> (B, T, C, X, Y); T must be 1 + a multiple of the temporal
        compression. Physical units in and out (float32 or wider out), unless `normalised`: then
        `fields` are already normalised (`normalise`) and the raw outputs come back in output
        units (normalised frames for "frame", scaled changes for "delta"): what the training
        loss uses; the statistics are the caller's (`frames_from_outputs` maps them back).
        """
        if fields.dim() != 5:
            raise ValueError(f"fields must be (B, T, C, X, Y), got shape {tuple(fields.shape)}")
        scales = self.tokeniser.eval_scales
        check_input_shape(fields.shape[1], tuple(fields.shape[3:]), scales)
        if normalised:
            return self._raw(fields, field_indices)
        x, stats = self.normalise(fields)
        frames = self.frames_from_outputs(self._raw(x, field_indices), x, stats)
        dtype = torch.promote_types(fields.dtype, torch.float32)
        return denormalise(frames.to(dtype), stats)

    def _raw(self, x: torch.Tensor, field_indices: torch.Tensor | list[int]) -> torch.Tensor:
        scales = self.tokeniser.eval_scales
        z = self.tokeniser.encode(x, field_indices, scales)
        z = self.processor(z)
        # decode returns a transposed view; a fresh tensor is safer as a module output
        # (FSDP2 warns that in-place ops on a returned view would skip its hooks).
        return self.tokeniser.decode(z, field_indices, scales).contiguous()

    def normalise(
        self, context: torch.Tensor, n_context: int | None = None
    ) -> tuple[torch.Tensor, ContextStats]:
        """(every frame in normalised units, the first `n_context` frames' statistics)."""
        return normalise_context(context, self.normalisation, self.target, n_context)

    def frames_from_outputs(
        self, outputs: torch.Tensor, context: torch.Tensor, stats: ContextStats
    ) -> torch.Tensor:
        """Raw outputs (`normalised=True`) of normalised `context` -> the predicted frames in
        normalised units (float32)."""
        return outputs_to_frames(outputs, context, stats, self.target)

    def training_pair(
        self, window: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, ContextStats]:
        """(normalised context (B, T, C, X, Y), target of the last output in output units
        (B, 1, C, X, Y), the context's statistics) for a window of >= T + 1 frames: the frame
        after the context is the target, mapped by the context's statistics only."""
        t = self.context_frames
        if window.dim() != 5 or window.shape[1] < t + 1:
            raise ValueError(
                f"a training window must be (B, T >= {t + 1}, C, X, Y), got "
                f"{tuple(window.shape)}"
            )
        x, stats = self.normalise(window[:, : t + 1], n_context=t)
        context, nxt = x[:, :t], x[:, t : t + 1]
        return context, target_in_output_units(nxt, context[:, -1:], stats, self.target), stats

    def predict_next(
        self, context: torch.Tensor, field_indices: torch.Tensor | list[int]
    ) -> torch.Tensor:
        """The frame after `context` (B, T, C, X, Y): (B, C, X, Y) in physical units."""
        return self(context, field_indices)[:, -1]

    def rollout(
        self, context: torch.Tensor, steps: int, field_indices: torch.Tensor | list[int]
    ) -> torch.Tensor:
        """Autoregressive prediction of `steps` frames after `context`: (B, steps, C, X, Y).

        Uses the last `context_frames` frames of `context`; each prediction is appended to the
        window and the oldest frame dropped; the RMS scales are recomputed per window (module
        docstring). Call under `torch.no_grad()` and in eval mode for evaluation.
        """
        if context.dim() != 5 or context.shape[1] < self.context_frames:
            raise ValueError(
                f"rollout context must be (B, T >= {self.context_frames}, C, X, Y), got shape "
                f"{tuple(context.shape)}"
            )
        return slide_rollout(self.predict_next, context, steps, self.context_frames, field_indices)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write weights (safetensors) and the RolloutModelConfig atomically to `path`."""
        from physok.checkpoint import save_model_dir

        return save_model_dir(
            path,
            kind=CHECKPOINT_KIND,
            model=self,
            model_config=self.config.to_dict(),
            field_names=self.config.tokeniser.field_names,
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        *,
        kernel_backend: str = "auto",
        attention_backend: str | None = None,
    ) -> RolloutModel:
        """Load a rollout model from a checkpoint directory (or a run directory: its latest).

        The backends are runtime choices, not architecture: the ones the run was trained with
        (e.g. "flash" on a GPU) may not exist where the model is loaded, so they are set here
        (default: the dispatch's own choice, `$PHYSOK_KERNELS` / `$PHYSOK_ATTENTION`).
        """
        from physok.checkpoint import CheckpointError, load_checkpoint, load_model_state

        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
        try:
            config = RolloutModelConfig.from_dict(ckpt.model_config)
            config = dataclasses.replace(
                config,
                tokeniser=dataclasses.replace(config.tokeniser, kernel_backend=kernel_backend),
                processor=dataclasses.replace(
                    config.processor, attention_backend=attention_backend
                ),
            )
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"{ckpt.path}: config.json holds an invalid rollout model config: {e}"
            ) from None
        model = cls.from_config(config)
        load_model_state(model, ckpt)
        return model
