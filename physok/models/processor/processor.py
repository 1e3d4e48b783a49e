"""Processor: latent projection -> space-time blocks -> projection back (DESIGN.md §4).

Input and output use the tokeniser's latent layout (B, T, C, X, Y) with C = latent_channels.
Inside, activations are channels-last (B, T, X, Y, dim) so every projection is a plain matmul.
Output frame t depends only on input frames <= t.
"""

from __future__ import annotations

import torch
from torch import nn

from physok.models.processor.block import ProcessorBlock
from physok.models.processor.config import ProcessorConfig


class Processor(nn.Module):
    def __init__(self, config: ProcessorConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ProcessorConfig()
        c = self.config
        self.in_proj = nn.Linear(c.latent_channels, c.dim)
        # A ModuleList so FSDP2 / torch.compile can wrap each block.
        self.blocks = nn.ModuleList(ProcessorBlock(c, rate) for rate in c.drop_path_rates())
        self.out_proj = nn.Linear(c.dim, c.latent_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, T, latent_channels, X, Y) -> same shape."""
        if z.dim() != 5 or z.shape[2] != self.config.latent_channels:
            raise ValueError(
                f"Processor: expected latents (B, T, {self.config.latent_channels}, X, Y), got "
                f"{tuple(z.shape)}"
            )
        h = self.in_proj(z.permute(0, 1, 3, 4, 2))
        for block in self.blocks:
            h = block(h)
        return self.out_proj(h).permute(0, 1, 4, 2, 3).contiguous()

    def parameter_count(self, trainable_only: bool = False) -> int:
        """Parameters of the processor including both projections."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def parameter_summary(self) -> dict[str, int]:
        """{"blocks", "projections", "total"} parameter counts."""
        projections = sum(p.numel() for m in (self.in_proj, self.out_proj) for p in m.parameters())
        total = self.parameter_count()
        return {"blocks": total - projections, "projections": projections, "total": total}
