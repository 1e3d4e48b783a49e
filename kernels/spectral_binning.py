"""Triton radial binning of spectral powers: the fused half of NEPS after cuFFT.

`binned_spectral_power(pred, true, edges)` computes the rfft2 of both fields with torch (there is
no FFT in Triton) and hands the two complex spectra, as real (L, X, Yh, 2) views, to ONE Triton
kernel that per mode forms |P - T|² and |T|², derives the mode's bin from its integer wavenumbers
and reduces per (leading row, bin). Conventions (half-open bins, float32 |k| bit-identical to
`physok.ops.spectral_binning.wavenumber_magnitude` and to the_well, interior rfft columns
weighted 2) are documented in `physok.ops.spectral_binning`.

Kernel layout. Modes are the flattened (X, Yh) half-spectrum, m = i * Yh + j. Program
(block, row group) owns BLOCK consecutive modes and ROWS leading rows. It derives the modes' bins
once (i -> |signed frequency| = min(i, X - i), j; |k| = sqrt((2π·i/X)² + (2π·j/Y)²); bin = number
of edges <= |k|, minus 1, by a loop over the few edges held as scalars) and turns them into a
(BINS, BLOCK) one-hot weight tile (weight 2 for interior columns, 0 outside every bin). Then, per
row, it loads the (BLOCK, 2) re/im tiles of both spectra, and the per-bin partial sums are one
masked reduction of that tile: partials[row, block, bin]. No atomics, so results are
deterministic; torch sums the few partials per row (the "finish" is a (L, n_blocks, n_bins)
tensor, ~0.1% of the input). The bin loop costs O(n_bins) per mode: the kernel is built for the
handful of bins NEPS uses, not for fine spectra.

Exactness of |k|. Ties matter: e.g. on a 256² grid the_well's middle edge is π/4 up to rounding,
exactly the |k| of mode (32, 0), and user edges may sit on mode wavenumbers. The kernel therefore
repeats the reference's float32 operations, each IEEE-rounded: f = float(i) * float32(1 / X);
w = f * float32(2π); |k| = sqrt_rn(w_x·w_x + w_y·w_y), with the final add, on GPU, as inline
PTX `add.rn.f32`, which the compiler cannot contract with the multiplies into an FMA (that would
round differently from torch's separate ops). The interpreter (numpy) never fuses, so it uses a
plain add.

Registration as in `physok_kernels.rms_normalise`: a `torch.library.triton_op` on GPU (traceable
by torch.compile), an opaque `custom_op` under TRITON_INTERPRET=1; eager calls launch the kernel
directly (the op is only needed while tracing). Forward only: the inputs are detached.
PHYSOK_KERNEL_POISON=1 fills the scratch buffers with NaN.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from physok_kernels._common import INTERPRET, define_op, empty

from physok.ops.spectral_binning import check_edges

_INTERPRET = INTERPRET
_EXACT_ADD = not _INTERPRET and torch.version.hip is None  # inline PTX is NVIDIA-only

# GPU tiling: 1024 modes x 4 padded bins = a 4K-element one-hot tile (16 registers per thread at
# 8 warps); 8 rows per program amortise the bin computation (512² rfft: 129 blocks x 13 groups
# of the B·T·C = 100 rows -> 1,677 programs).
_GPU_BLOCK = 1024
_GPU_ROWS = 8
_GPU_WARPS = 8
_TILE = 4096  # cap on BINS * BLOCK
_INTERP_MAX_BLOCK = 4096


@triton.jit
def _add_rn(a, b):
    return tl.inline_asm_elementwise(
        "add.rn.f32 $0, $1, $2;", "=f,f,f", [a, b], dtype=tl.float32, is_pure=True, pack=1
    )


@triton.jit
def _binned_power_kernel(
    p_ptr,
    t_ptr,
    edges_ptr,
    err_ptr,
    true_ptr,
    n_rows,
    X,
    Y,
    YH,
    n_edges,
    n_blocks,
    inv_x,
    inv_y,
    two_pi,
    BLOCK: tl.constexpr,
    BINS: tl.constexpr,
    ROWS: tl.constexpr,
    EXACT_ADD: tl.constexpr,
):
    blk = tl.program_id(0)
    group = tl.program_id(1)
    n_modes = X * YH
    m = blk * BLOCK + tl.arange(0, BLOCK)
    valid = m < n_modes
    i = m // YH
    j = m % YH
    # |signed fftfreq index|: index i >= (X + 1) // 2 stands for i - X; squares only need min.
    ki = tl.minimum(i, X - i)
    wx = (ki.to(tl.float32) * inv_x) * two_pi
    wy = (j.to(tl.float32) * inv_y) * two_pi
    sx = wx * wx
    sy = wy * wy
    if EXACT_ADD:
        k2 = _add_rn(sx, sy)
    else:
        k2 = sx + sy
    k = tl.sqrt_rn(k2)
    n_bins = n_edges - 1
    # bucketize(right=True) - 1 on sorted edges = (number of edges <= k) - 1.
    bin_id = tl.full((BLOCK,), -1, dtype=tl.int32)
    for e in range(n_edges):
        bin_id += (k >= tl.load(edges_ptr + e)).to(tl.int32)
    # The dropped half-spectrum mirrors every column except 0 and, for even Y, Y / 2.
    weight = tl.where((j == 0) | (2 * j == Y), 1.0, 2.0)
    weight = tl.where(valid, weight, 0.0)
    bins = tl.arange(0, BINS)
    onehot = tl.where(bin_id[None, :] == bins[:, None], weight[None, :], 0.0)  # (BINS, BLOCK)

    comp = tl.arange(0, 2)
    offs = m[:, None] * 2 + comp[None, :]  # (BLOCK, 2): re, im
    lmask = valid[:, None] & (comp[None, :] < 2)
    row0 = group * ROWS
    row_end = tl.minimum(row0 + ROWS, n_rows)
    for row in range(row0, row_end):
        row64 = tl.cast(row, tl.int64)
        base = row64 * n_modes * 2
        p = tl.load(p_ptr + base + offs, mask=lmask, other=0.0).to(tl.float32)
        t = tl.load(t_ptr + base + offs, mask=lmask, other=0.0).to(tl.float32)
        d = p - t
        err = tl.sum(d * d, axis=1)
        tru = tl.sum(t * t, axis=1)
        out = (row64 * n_blocks + blk) * n_bins + bins
        tl.store(err_ptr + out, tl.sum(onehot * err[None, :], axis=1), mask=bins < n_bins)
        tl.store(true_ptr + out, tl.sum(onehot * tru[None, :], axis=1), mask=bins < n_bins)


def _tiling(n_modes: int, n_rows: int, n_bins: int, block: int, rows: int) -> tuple[int, ...]:
    bins = max(2, triton.next_power_of_2(n_bins))
    if block <= 0:
        cap = _INTERP_MAX_BLOCK if _INTERPRET else _GPU_BLOCK
        block = min(cap, max(16, _TILE // bins), triton.next_power_of_2(n_modes))
    if rows <= 0:
        # The interpreter runs programs one by one: one row group keeps the count minimal.
        rows = n_rows if _INTERPRET else _GPU_ROWS
    return block, rows, bins


def _binned_run(
    p_ri: torch.Tensor,
    t_ri: torch.Tensor,
    edges: torch.Tensor,
    y: int,
    block: int,
    rows: int,
    wrap: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    n_rows, x, yh = p_ri.shape[:3]
    n_bins = edges.shape[0] - 1
    block, rows, bins = _tiling(x * yh, n_rows, n_bins, block, rows)
    n_blocks = triton.cdiv(x * yh, block)
    err = empty((n_rows, n_blocks, n_bins), torch.float32, p_ri.device)
    tru = empty((n_rows, n_blocks, n_bins), torch.float32, p_ri.device)
    # wrap_triton makes the launch visible to torch.compile inside the triton_op; interpreted
    # kernels cannot be captured, and eager calls outside the op (wrap=False) launch directly.
    kernel = _binned_power_kernel
    if wrap and not _INTERPRET:
        kernel = torch.library.wrap_triton(_binned_power_kernel)
    extra = {} if _INTERPRET else {"num_warps": _GPU_WARPS}
    kernel[(n_blocks, triton.cdiv(n_rows, rows))](
        p_ri,
        t_ri,
        edges,
        err,
        tru,
        n_rows,
        x,
        y,
        yh,
        n_bins + 1,
        n_blocks,
        1.0 / x,
        1.0 / y,
        2 * math.pi,
        BLOCK=block,
        BINS=bins,
        ROWS=rows,
        EXACT_ADD=_EXACT_ADD,
        **extra,
    )
    return err.sum(dim=1), tru.sum(dim=1)


def _binned_impl(
    p_ri: torch.Tensor, t_ri: torch.Tensor, edges: torch.Tensor, y: int, block: int, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return _binned_run(p_ri, t_ri, edges, y, block, rows, wrap=True)


def _binned_fake(
    p_ri: torch.Tensor, t_ri: torch.Tensor, edges: torch.Tensor, y: int, block: int, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (p_ri.shape[0], edges.shape[0] - 1)
    return p_ri.new_empty(shape, dtype=torch.float32), p_ri.new_empty(shape, dtype=torch.float32)


_binned_op = define_op("physok::binned_spectral_power", _binned_impl, _binned_fake)


def binned_spectral_power(
    pred: torch.Tensor,
    true: torch.Tensor,
    edges: torch.Tensor,
    block: int | None = None,
    rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton `physok.ops.spectral_binning.binned_spectral_power` (forward only, detached).

    `block` (modes per program, a power of two >= 16) and `rows` (leading rows per program) are
    for tests that force several blocks and row groups; None picks the defaults.
    """
    if pred.shape != true.shape or pred.dim() < 2:
        raise ValueError(f"pred {tuple(pred.shape)} / true {tuple(true.shape)}: need (..., X, Y)")
    if block is not None and (block < 16 or block & (block - 1)):
        raise ValueError(f"block={block} must be a power of two >= 16 (or None)")
    if rows is not None and rows < 1:
        raise ValueError(f"rows={rows} must be >= 1 (or None)")
    e = check_edges(edges).to(pred.device)
    lead, (x, y) = pred.shape[:-2], pred.shape[-2:]
    if pred.numel() == 0:
        raise ValueError(f"pred/true {tuple(pred.shape)} are empty")
    ft = torch.float64 if torch.float64 in (pred.dtype, true.dtype) else torch.float32
    # Metric path: no graph through the FFTs or the kernel.
    p_ft = torch.fft.rfft2(pred.detach().reshape(-1, x, y).to(ft))
    t_ft = torch.fft.rfft2(true.detach().reshape(-1, x, y).to(ft))
    args = (
        torch.view_as_real(p_ft).contiguous(),
        torch.view_as_real(t_ft).contiguous(),
        e,
        int(y),
        int(block or 0),
        int(rows or 0),
    )
    # The op exists for torch.compile; eager calls skip its dispatcher (~20 us of Python).
    if torch.compiler.is_compiling():
        err, tru = _binned_op(*args)
    else:
        err, tru = _binned_run(*args, wrap=False)
    n_bins = e.numel() - 1
    return err.reshape(*lead, n_bins), tru.reshape(*lead, n_bins)
