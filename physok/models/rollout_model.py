"""RolloutModel: tokeniser encoder -> processor -> tokeniser decoder, a next-frame emulator.

Data flow (DESIGN.md §4). A context window of T frames (9 in the experiment; physical units,
(B, T, C, X, Y)) is RMS-normalised per (sample, field) over the window (`physok.ops.rms_normalise`),
encoded at the tokeniser's `eval_scales` to T' latent frames (fast eval scales: 9 -> 5; paper:
9 -> 3), transformed by the processor (its own 18 <-> dim projections, causal over T'), decoded
back to T frames, and multiplied by the same RMS scales: physical units out. Output frame j is the
prediction of input frame j + 1; the last output frame predicts the frame after the window
(frame 10 of a 10-frame sample). Losses are taken in normalised units (`normalised=True`), where
every field of every sample has unit RMS over its context, so no field or sample dominates.

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
depends on frames <= j for every j. These statements hold in normalised units
(`normalised=True`); in physical units the RMS scales are statistics of the whole window, so
every output also depends on every context frame through the scales (one scalar per field).

Rollout (`rollout`) slides a window of the last `context_frames` frames: each step predicts the
next frame from the window, appends it and drops the oldest frame. The RMS scales are recomputed
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

from physok.models.processor import Processor, ProcessorConfig
from physok.models.tokeniser import Tokeniser, TokeniserConfig
from physok.models.tokeniser.scales import check_input_shape, total_compression
from physok.ops.rms_normalise import rms_denormalise, rms_normalise

CHECKPOINT_KIND = "rollout"
CONTEXT_FRAMES = 9  # frames 1..9 of the experiment's 10-frame windows


@dataclass(frozen=True)
class RolloutModelConfig:
    """The two sub-model configs and the context length; what a rollout checkpoint stores."""

    tokeniser: TokeniserConfig = field(default_factory=TokeniserConfig.paper)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig.paper)
    context_frames: int = CONTEXT_FRAMES

    def __post_init__(self) -> None:
        self.validate()

    @property
    def temporal_compression(self) -> int:
        return total_compression(self.tokeniser.eval_scales)[0]

    def validate(self) -> None:
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"rollout model config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"tokeniser", "processor", "context_frames"})
        if unknown or "tokeniser" not in data or "processor" not in data:
            raise ValueError(
                "rollout model config needs the keys 'tokeniser' and 'processor' (and optionally "
                f"'context_frames'); got {sorted(data)}"
            )
        return cls(
            TokeniserConfig.from_dict(data["tokeniser"]),
            ProcessorConfig.from_dict(data["processor"]),
            int(data.get("context_frames", CONTEXT_FRAMES)),
        )


class RolloutModel(nn.Module):
    """Next-frame emulator; see the module docstring for units, causality and rollout."""

    def __init__(
        self, tokeniser: Tokeniser, processor: Processor, context_frames: int = CONTEXT_FRAMES
    ) -> None:
        super().__init__()
        # Validates latent channels and the context length against the eval scales.
        self._config = RolloutModelConfig(tokeniser.config, processor.config, context_frames)
        self.tokeniser = tokeniser
        self.processor = processor
        self.context_frames = context_frames

    @classmethod
    def from_config(cls, config: RolloutModelConfig) -> RolloutModel:
        return cls(Tokeniser(config.tokeniser), Processor(config.processor), config.context_frames)

    @property
    def config(self) -> RolloutModelConfig:
        return self._config

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
        `fields` are already RMS-normalised (`normalise`) and the output stays normalised (what
        the training loss uses; the scales are the caller's).
        """
        if fields.dim() != 5:
            raise ValueError(f"fields must be (B, T, C, X, Y), got shape {tuple(fields.shape)}")
        scales = self.tokeniser.eval_scales
        check_input_shape(fields.shape[1], tuple(fields.shape[3:]), scales)
        if normalised:
            x, rms = fields, None
        else:
            x, rms = rms_normalise(fields)
        z = self.tokeniser.encode(x, field_indices, scales)
        z = self.processor(z)
        y = self.tokeniser.decode(z, field_indices, scales)
        if rms is None:
            # decode returns a transposed view; a fresh tensor is safer as a module output
            # (FSDP2 warns that in-place ops on a returned view would skip its hooks).
            return y.contiguous()
        dtype = torch.promote_types(fields.dtype, torch.float32)
        return rms_denormalise(y.to(dtype), rms)

    @staticmethod
    def normalise(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context / rms, rms): rms (B, C) over all frames and points of the context."""
        return rms_normalise(context)

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
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"rollout steps must be a positive integer, got {steps!r}")
        if context.dim() != 5 or context.shape[1] < self.context_frames:
            raise ValueError(
                f"rollout context must be (B, T >= {self.context_frames}, C, X, Y), got shape "
                f"{tuple(context.shape)}"
            )
        window = context[:, -self.context_frames :]
        out = []
        for _ in range(steps):
            nxt = self.predict_next(window, field_indices)
            out.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None].to(window.dtype)], dim=1)
        return torch.stack(out, dim=1)

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
            config = RolloutModelConfig(
                dataclasses.replace(config.tokeniser, kernel_backend=kernel_backend),
                dataclasses.replace(config.processor, attention_backend=attention_backend),
                config.context_frames,
            )
        except (TypeError, ValueError) as e:
            raise CheckpointError(
                f"{ckpt.path}: config.json holds an invalid rollout model config: {e}"
            ) from None
        model = cls.from_config(config)
        load_model_state(model, ckpt)
        return model
