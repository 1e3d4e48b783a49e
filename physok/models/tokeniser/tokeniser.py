"""Tokeniser: MAGVIT-Simple, a causal 3D-convolution autoencoder with run-time compression.

Public layout follows the data: fields are (B, T, C, X, Y) with C the batch's active fields
(their registry indices in `field_indices`), latents are (B, T', latent_channels, X', Y').
Internally the convolutions run on (B, C, T, X, Y).

Causality: changing input frame t changes no latent frame i with i * S < t (S the total
temporal compression), and no reconstructed frame in an earlier compression chunk than t's
(chunk = frames (i-1)*S+1 .. i*S, frame 0 alone). With S = 1 that is strict frame causality.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from physok.models.tokeniser.adaptive_heads import check_field_indices
from physok.models.tokeniser.config import TokeniserConfig
from physok.models.tokeniser.decoder import Decoder
from physok.models.tokeniser.encoder import Encoder
from physok.models.tokeniser.scales import (
    Scales,
    check_input_shape,
    check_scales,
    latent_shape,
    sample_scales,
)

CHECKPOINT_KIND = "tokeniser"


def _as_index_tensor(
    field_indices: torch.Tensor | list[int],
    n_active: int | None,
    max_fields: int,
    device: torch.device,
) -> torch.Tensor:
    """Validated (C,) long indices on `device`; checked on the host (a CPU input costs no sync)."""
    idx = torch.as_tensor(field_indices).detach().to("cpu", torch.long)
    if idx.dim() == 2:
        # A collated batch: every sample of a batch comes from one dataset.
        if not bool((idx == idx[:1]).all()):
            raise ValueError("all samples of a batch must share field_indices (one dataset)")
        idx = idx[0]
    check_field_indices(idx, idx.numel() if n_active is None else n_active, max_fields)
    return idx.to(device)


class Tokeniser(nn.Module):
    def __init__(self, config: TokeniserConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else TokeniserConfig.paper()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    # -- scales --------------------------------------------------------------------------------
    @property
    def eval_scales(self) -> Scales:
        return self.config.eval_scales

    def sample_scales(self, generator: torch.Generator | None = None) -> Scales:
        """One (temporal, spatial) pair per depth, drawn uniformly from the config's sets."""
        return sample_scales(self.config, generator)

    def resolve_scales(self, scales: Scales | None) -> Scales:
        """Given scales (validated), else random in training mode, else the eval scales."""
        if scales is not None:
            return check_scales(self.config, scales)
        return self.sample_scales() if self.training else self.eval_scales

    def latent_shape(
        self, frames: int, grid: tuple[int, int], scales: Scales | None = None
    ) -> tuple[int, int, int, int]:
        """(T', latent_channels, X', Y') for an input of `frames` x `grid`."""
        t, (x, y) = latent_shape(frames, grid, scales or self.eval_scales)
        return t, self.config.latent_channels, x, y

    # -- model ---------------------------------------------------------------------------------
    def encode(
        self,
        fields: torch.Tensor,
        field_indices: torch.Tensor | list[int],
        scales: Scales | None = None,
    ) -> torch.Tensor:
        """fields (B, T, C, X, Y) -> latents (B, T', latent_channels, X', Y')."""
        if fields.dim() != 5:
            raise ValueError(f"fields must be (B, T, C, X, Y), got shape {tuple(fields.shape)}")
        scales = self.resolve_scales(scales)
        check_input_shape(fields.shape[1], tuple(fields.shape[3:]), scales)
        idx = _as_index_tensor(
            field_indices, fields.shape[2], self.config.max_fields, fields.device
        )
        z = self.encoder(fields.transpose(1, 2), idx, scales)
        return z.transpose(1, 2)

    def decode(
        self,
        latents: torch.Tensor,
        field_indices: torch.Tensor | list[int],
        scales: Scales | None = None,
    ) -> torch.Tensor:
        """latents (B, T', latent_channels, X', Y') -> fields (B, T, C, X, Y)."""
        if latents.dim() != 5 or latents.shape[2] != self.config.latent_channels:
            raise ValueError(
                f"latents must be (B, T', {self.config.latent_channels}, X', Y'), got shape "
                f"{tuple(latents.shape)}"
            )
        scales = self.resolve_scales(scales)
        idx = _as_index_tensor(field_indices, None, self.config.max_fields, latents.device)
        return self.decoder(latents.transpose(1, 2), idx, scales).transpose(1, 2)

    def forward(
        self,
        fields: torch.Tensor,
        field_indices: torch.Tensor | list[int],
        scales: Scales | None = None,
    ) -> torch.Tensor:
        """Reconstruct `fields` through the latent bottleneck (one scale choice for both)."""
        scales = self.resolve_scales(scales)
        return self.decode(self.encode(fields, field_indices, scales), field_indices, scales)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write weights (safetensors) and config (JSON) atomically to directory `path`."""
        from physok.checkpoint import save_model_dir

        return save_model_dir(
            path, kind=CHECKPOINT_KIND, model=self, model_config=self.config.to_dict()
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        *,
        kernel_backend: str = "auto",
    ) -> Tokeniser:
        """Load a tokeniser from a checkpoint directory (or a run directory: its latest).

        `kernel_backend` is a runtime choice, not architecture (the run's may not exist here):
        default "auto", i.e. the dispatch's rule with `$PHYSOK_KERNELS`.
        """
        from physok.checkpoint import load_checkpoint, load_model_state

        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
        try:
            config = TokeniserConfig.from_dict(
                {**ckpt.model_config, "kernel_backend": kernel_backend}
            )
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{ckpt.path}: config.json holds an invalid tokeniser config: {e}"
            ) from e
        model = cls(config)
        load_model_state(model, ckpt)
        return model
