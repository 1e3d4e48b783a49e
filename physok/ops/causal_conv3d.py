"""Causal 3D convolution: the operation every tokeniser layer is built from.

Layout is (B, C, T, X, Y). Time is padded with `kt - 1` leading zero frames and none at the
end, so output frame t depends only on input frames <= t * stride. Space is padded
symmetrically ("same": (k - 1) // 2 per side, odd kernels) or not at all ("valid", used by the
strided downsampling layers whose kernel equals their stride). The reference is `F.pad` +
`F.conv3d`; `causal_conv3d` routes to the Triton implicit-GEMM kernel when the dispatch says so.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from physok.ops.backend import use_triton

SpatialPadding = Literal["same", "valid"]


def _as_triple(stride: int | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(stride, int):
        return (stride, stride, stride)
    st = tuple(int(s) for s in stride)
    if len(st) != 3:
        raise ValueError(f"stride must be an int or (t, x, y), got {stride!r}")
    return st  # type: ignore[return-value]


def check_conv_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int, int],
    padding: str,
) -> None:
    if x.dim() != 5 or weight.dim() != 5:
        raise ValueError(
            f"causal_conv3d expects x (B, C, T, X, Y) and weight (Co, Ci, kt, kx, ky); got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias shape {tuple(bias.shape)} != ({weight.shape[0]},)")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    if padding == "same" and (weight.shape[3] % 2 == 0 or weight.shape[4] % 2 == 0):
        raise ValueError(f"'same' padding needs odd spatial kernels, got {tuple(weight.shape[2:])}")
    if min(stride) < 1:
        raise ValueError(f"strides must be >= 1, got {stride}")


def spatial_pad(weight: torch.Tensor, padding: str) -> tuple[int, int]:
    """Per-side spatial padding (x, y) for a kernel under the given padding mode."""
    if padding == "valid":
        return (0, 0)
    return ((weight.shape[3] - 1) // 2, (weight.shape[4] - 1) // 2)


def causal_conv3d_output_shape(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: int | tuple[int, int, int] = 1,
    padding: str = "same",
) -> tuple[int, int, int, int, int]:
    st, sx, sy = _as_triple(stride)
    b, _, t, x, y = x_shape
    co, _, _, kx, ky = weight_shape
    px, py = (0, 0) if padding == "valid" else ((kx - 1) // 2, (ky - 1) // 2)
    return (
        b,
        co,
        (t - 1) // st + 1,
        (x + 2 * px - kx) // sx + 1,
        (y + 2 * py - ky) // sy + 1,
    )


def causal_conv3d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: SpatialPadding = "same",
) -> torch.Tensor:
    """`F.pad` (kt-1 leading frames, symmetric space) + `F.conv3d`."""
    stride = _as_triple(stride)
    check_conv_args(x, weight, bias, stride, padding)
    px, py = spatial_pad(weight, padding)
    kt = weight.shape[2]
    x = F.pad(x, (py, py, px, px, kt - 1, 0))
    return F.conv3d(x, weight, bias, stride=stride)


def _autocast_inputs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Cast like autocast casts F.conv3d: a custom op is not autocast-aware by itself."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device)
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def causal_conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: SpatialPadding = "same",
    backend: str | None = None,
) -> torch.Tensor:
    """Causal 3D convolution; see the module docstring. `backend`: auto | triton | reference."""
    if use_triton(x, backend, op="causal_conv3d"):
        from physok_kernels.causal_conv3d import causal_conv3d_triton

        stride = _as_triple(stride)
        check_conv_args(x, weight, bias, stride, padding)
        x, weight, bias = _autocast_inputs(x, weight, bias)
        return causal_conv3d_triton(x, weight, bias, stride, padding)
    return causal_conv3d_reference(x, weight, bias, stride, padding)
