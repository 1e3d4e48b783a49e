"""Adaptive heads: one kernel for every registered field, sliced to a batch's active fields.

After MPP's field embedding: the encoder head holds input columns for all `max_fields`
registry channels and uses the columns of the active ones, rescaled by sqrt(max / active) to
compensate for the smaller fan-in; the decoder head holds output rows for all channels and
produces only the active ones. Unused columns/rows take no part in the forward pass, so they
receive exactly zero gradient. The indices are validated once per forward by the Tokeniser
(`check_field_indices`), on the host, so the heads add no device synchronisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physok.models.tokeniser.causal_conv import init_conv_
from physok.models.tokeniser.residual_block import FrameGroupNorm
from physok.ops.causal_conv3d import causal_conv3d


def check_field_indices(field_indices: torch.Tensor, n_active: int, max_fields: int) -> None:
    """One registry index per active channel, in range, no repeats (pass a CPU tensor)."""
    if field_indices.dim() != 1 or field_indices.numel() != n_active:
        raise ValueError(
            f"field_indices must be a 1-D tensor with one registry index per input channel "
            f"({n_active}), got shape {tuple(field_indices.shape)}"
        )
    if field_indices.numel() and (
        int(field_indices.min()) < 0 or int(field_indices.max()) >= max_fields
    ):
        raise ValueError(
            f"field_indices {field_indices.tolist()} out of range for a tokeniser built for "
            f"{max_fields} registry fields"
        )
    if torch.unique(field_indices).numel() != field_indices.numel():
        raise ValueError(f"field_indices {field_indices.tolist()} repeat a field")


class AdaptiveEncoderHead(nn.Module):
    """Causal 3x3x3 conv from the active fields to `out_channels`."""

    def __init__(
        self, max_fields: int, out_channels: int, kernel_size: int = 3, backend: str = "auto"
    ) -> None:
        super().__init__()
        k = kernel_size
        self.max_fields = max_fields
        self.weight = nn.Parameter(torch.empty(out_channels, max_fields, k, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.backend = backend
        init_conv_(self.weight, self.bias)

    def forward(self, x: torch.Tensor, field_indices: torch.Tensor) -> torch.Tensor:
        n_active = x.shape[1]
        weight = self.weight[:, field_indices] * math.sqrt(self.max_fields / n_active)
        return causal_conv3d(x, weight, self.bias, 1, "same", backend=self.backend)


class AdaptiveDecoderHead(nn.Module):
    """norm -> SiLU -> causal 3x3x3 conv to the active fields' channels."""

    def __init__(
        self,
        in_channels: int,
        max_fields: int,
        kernel_size: int = 3,
        groups: int = 8,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        k = kernel_size
        self.max_fields = max_fields
        self.norm = FrameGroupNorm(in_channels, groups)
        self.weight = nn.Parameter(torch.empty(max_fields, in_channels, k, k, k))
        self.bias = nn.Parameter(torch.empty(max_fields))
        self.backend = backend
        init_conv_(self.weight, self.bias)

    def forward(self, x: torch.Tensor, field_indices: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm(x))
        return causal_conv3d(
            x,
            self.weight[field_indices],
            self.bias[field_indices],
            1,
            "same",
            backend=self.backend,
        )
