"""Triton implicit-GEMM causal strided 3D convolution: forward, input gradient, weight gradient.

Layout and semantics follow `physok.ops.causal_conv3d`: x is (B, Ci, T, X, Y), weight is
(Co, Ci, kt, kx, ky), time is padded by kt - 1 leading zero frames (none at the end), space by
(px, py) per side ("same": (k - 1) // 2, "valid": 0), and T_out = (T - 1) // st + 1.

GEMM mapping (forward). Output positions are the GEMM rows, output channels the columns:
    M = B * T_out * X_out * Y_out,  N = Co,  K = kt * kx * ky * Ci.
A row index m decodes to (b, to, xo, yo); the K loop runs over (tap, channel chunk) pairs, the
tap (dt, dx, dy) being decoded from the loop counter, so one runtime loop covers the whole
reduction and Triton can software-pipeline it. For a tap, row m reads input position
    ti = to * st - (kt - 1) + dt,  xi = xo * sx - px + dx,  yi = yo * sy - py + dy,
and the A tile is x[b, c0:c0+BLOCK_K, ti, xi, yi] (a gather along rows, contiguous along
channels when x is channels_last_3d). The B tile is weight[:, c0:c0+BLOCK_K, dt, dx, dy]^T, read
from a (kt, kx, ky, Ci, Co) copy of the (small) weight so it is contiguous along N.

Masking instead of padding. No padded copy of x is ever made: a row whose tap falls in the
causal zero frames (ti < 0) or in the spatial border (xi, yi outside [0, X), [0, Y)) is simply
masked out of the load (other=0), which is exactly what multiplying by the padded zeros would
give. ti <= T - 1 always holds (to * st <= T - 1 and dt <= kt - 1), so time needs one compare.
Rows past M, channels past Ci and columns past Co are masked too, so any channel count works
(blocks are at least 16 wide because `tl.dot` needs it; the extra lanes load zeros).

Input gradient (dgrad) is the transposed convolution: dx[b, ci, i] = sum over (co, tap) of
dy[b, co, o] * w[co, ci, tap] where i = o * s - p + d per axis, i.e. o = (i + p - d) / s, which
only exists when (i + p - d) is divisible by s. Instead of visiting every tap for every input
position and masking the off-grid ones (s_t * s_x * s_y times the work), the input positions are
split into stride phases (i mod s per axis, one program-grid slice per phase): within a phase
the valid taps are exactly d = (i + p) mod s + j * s, so only those are visited. Rows are then
M = B * ceil(T/st) * ceil(X/sx) * ceil(Y/sy) per phase, N = Ci, K = taps-in-phase * Co; a row
is masked when its (o) lands outside [0, T_out) x [0, X_out) x [0, Y_out) (this also masks the
causal frames and the spatial padding) or its input position is past the tensor's end. Every
input position belongs to exactly one phase and is written, with zeros where no tap reaches it
(e.g. the trailing columns of a "valid" strided conv).

Split-K (forward and dgrad, GPU only): when the M x N tile grid is too small to fill the GPU
(e.g. 64 -> 2048 channels at 16^2: a dgrad of ~12 row tiles and a 55k-long reduction), the K loop
is dealt round-robin to `K_SPLITS` programs per tile, each writing an fp32 partial that torch
sums into the output (the bias is added by slice 0 only).

Weight gradient (wgrad) is, per tap, dW[:, :, tap] = dy^T (Co x M) @ x_tap (M x Ci) with the
same row decode and masks as the forward. M is huge (B * T_out * X_out * Y_out) and the output
small, so the M reduction is split over a second grid axis; each split writes its own fp32
partial (no atomics, deterministic) and torch sums the partials. Bias gradient is a torch sum.

Numerics: fp32 accumulation always; the output has the input's dtype. On GPU, fp32 inputs use
TF32 `tl.dot` when `torch.backends.cudnn.allow_tf32` is set (cuDNN's default, so the fast path
matches the reference's precision) and IEEE fp32 otherwise.

Interpreter (TRITON_INTERPRET=1, CPU): programs run one at a time, so block sizes are chosen
large for small problems; bf16/fp16 `tl.dot` is wrong in the interpreter, so operands are cast
to fp32 there (flag `DOT_FP32`); multi-config autotuning needs a GPU driver, so each kernel's
autotuner gets exactly one config (it then never benchmarks). The ops are registered with
`torch.library.triton_op` (so `torch.compile` sees and can fuse the kernels) on GPU; under the
interpreter `wrap_triton` cannot capture interpreted kernels, so the same functions are
registered as opaque `torch.library.custom_op`s, which `torch.compile` calls as black boxes.

Debugging: with PHYSOK_KERNEL_POISON=1 every output buffer is allocated filled with NaN instead
of uninitialised, so an element a kernel forgets to write shows up in any comparison.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from physok_kernels._common import INTERPRET, define_op, empty

_INTERPRET = INTERPRET

# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _fwd_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    B,
    T,
    X,
    Y,
    CI,
    CO,
    TO,
    XO,
    YO,
    K_SPLITS,
    s_xb,
    s_xc,
    s_xt,
    s_xx,
    s_xy,
    s_wt,
    s_wx,
    s_wy,
    s_wi,
    s_wo,
    s_yb,
    s_yc,
    s_yt,
    s_yx,
    s_yy,
    s_ys,
    ST: tl.constexpr,
    SX: tl.constexpr,
    SY: tl.constexpr,
    KT: tl.constexpr,
    KX: tl.constexpr,
    KY: tl.constexpr,
    PX: tl.constexpr,
    PY: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    n_blocks = tl.cdiv(CO, BLOCK_N)
    pid_n = tl.program_id(1) % n_blocks
    split = tl.program_id(1) // n_blocks  # slice of the K loop (split-K)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    if INT64:
        offs_m = offs_m.to(tl.int64)
    m_ok = offs_m < B * TO * XO * YO
    oy = offs_m % YO
    rest = offs_m // YO
    ox = rest % XO
    rest = rest // XO
    ot = rest % TO
    ob = rest // TO
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < CO

    # Input position of tap (0, 0, 0); tap (dt, dx, dy) adds (dt, dx, dy).
    t0 = ot * ST - (KT - 1)
    x0 = ox * SX - PX
    y0 = oy * SY - PY
    x_row0 = x_ptr + ob * s_xb + t0 * s_xt + x0 * s_xx + y0 * s_xy

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    n_chunks = tl.cdiv(CI, BLOCK_K)
    for kk in range(split, KT * KX * KY * n_chunks, K_SPLITS):
        c0 = (kk % n_chunks) * BLOCK_K
        tap = kk // n_chunks
        dy = tap % KY
        dx = (tap // KY) % KX
        dt = tap // (KY * KX)
        ti = t0 + dt
        xi = x0 + dx
        yi = y0 + dy
        row_ok = m_ok & (ti >= 0) & (xi >= 0) & (xi < X) & (yi >= 0) & (yi < Y)
        offs_c = c0 + tl.arange(0, BLOCK_K)
        c_ok = offs_c < CI
        a = tl.load(
            x_row0[:, None] + (dt * s_xt + dx * s_xx + dy * s_xy) + offs_c[None, :] * s_xc,
            mask=row_ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        w_tap = w_ptr + dt * s_wt + dx * s_wx + dy * s_wy
        b = tl.load(
            w_tap + offs_c[:, None] * s_wi + offs_n[None, :] * s_wo,
            mask=c_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        if DOT_FP32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)

    if HAS_BIAS:  # added by the first K slice only
        bias = tl.load(b_ptr + offs_n, mask=offs_n < tl.where(split == 0, CO, 0), other=0.0)
        acc += bias.to(tl.float32)[None, :]
    y_row = split * s_ys + ob * s_yb + ot * s_yt + ox * s_yx + oy * s_yy
    tl.store(
        y_ptr + y_row[:, None] + offs_n[None, :] * s_yc,
        acc.to(y_ptr.dtype.element_ty),
        mask=m_ok[:, None] & n_ok[None, :],
    )


@triton.jit
def _dgrad_kernel(
    g_ptr,
    w_ptr,
    dx_ptr,
    B,
    T,
    X,
    Y,
    CI,
    CO,
    TO,
    XO,
    YO,
    NT,
    NX,
    NY,
    K_SPLITS,
    s_gb,
    s_gc,
    s_gt,
    s_gx,
    s_gy,
    s_wt,
    s_wx,
    s_wy,
    s_wo,
    s_wi,
    s_db,
    s_dc,
    s_dt,
    s_dx,
    s_dy,
    s_ds,
    ST: tl.constexpr,
    SX: tl.constexpr,
    SY: tl.constexpr,
    KT: tl.constexpr,
    KX: tl.constexpr,
    KY: tl.constexpr,
    PX: tl.constexpr,
    PY: tl.constexpr,
    DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    n_blocks = tl.cdiv(CI, BLOCK_N)
    pid_n = tl.program_id(1) % n_blocks
    split = tl.program_id(1) // n_blocks  # slice of the K loop (split-K)
    phase = tl.program_id(2)
    # Phase = input index residue modulo the stride, per axis.
    qy = phase % SY
    qx = (phase // SY) % SX
    qt = phase // (SY * SX)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    if INT64:
        offs_m = offs_m.to(tl.int64)
    jy = offs_m % NY
    rest = offs_m // NY
    jx = rest % NX
    rest = rest // NX
    jt = rest % NT
    ib = rest // NT
    ti = qt + ST * jt
    xi = qx + SX * jx
    yi = qy + SY * jy
    m_ok = (offs_m < B * NT * NX * NY) & (ti < T) & (xi < X) & (yi < Y)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < CI

    # Taps that reach this phase: d = (i + pad) mod s + j * s, j < ceil(k / s).
    rt = (qt + KT - 1) % ST
    rx = (qx + PX) % SX
    ry = (qy + PY) % SY
    JT: tl.constexpr = (KT + ST - 1) // ST
    JX: tl.constexpr = (KX + SX - 1) // SX
    JY: tl.constexpr = (KY + SY - 1) // SY
    g_b = g_ptr + ib * s_gb

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    n_chunks = tl.cdiv(CO, BLOCK_K)
    for kk in range(split, JT * JX * JY * n_chunks, K_SPLITS):
        c0 = (kk % n_chunks) * BLOCK_K
        tap = kk // n_chunks
        dt = rt + ST * (tap // (JY * JX))
        dx = rx + SX * ((tap // JY) % JX)
        dy = ry + SY * (tap % JY)
        # A tap index past the kernel (when s does not divide k) reads no channels at all.
        # (A channel limit rather than a scalar mask: the interpreter mis-types scalar & block.)
        co_lim = tl.where((dt < KT) & (dx < KX) & (dy < KY), CO, 0)
        # Numerators are multiples of the stride by construction, so the division is exact.
        nt = ti + (KT - 1) - dt
        nx = xi + PX - dx
        ny = yi + PY - dy
        ot = nt // ST
        ox = nx // SX
        oy = ny // SY
        row_ok = m_ok & (nt >= 0) & (ot < TO) & (nx >= 0) & (ox < XO)
        row_ok = row_ok & (ny >= 0) & (oy < YO)
        offs_c = c0 + tl.arange(0, BLOCK_K)
        c_ok = offs_c < co_lim
        g_row = g_b + ot * s_gt + ox * s_gx + oy * s_gy
        a = tl.load(
            g_row[:, None] + offs_c[None, :] * s_gc,
            mask=row_ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        w_tap = w_ptr + dt * s_wt + dx * s_wx + dy * s_wy
        b = tl.load(
            w_tap + offs_c[:, None] * s_wo + offs_n[None, :] * s_wi,
            mask=c_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        if DOT_FP32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)

    d_row = split * s_ds + ib * s_db + ti * s_dt + xi * s_dx + yi * s_dy
    tl.store(
        dx_ptr + d_row[:, None] + offs_n[None, :] * s_dc,
        acc.to(dx_ptr.dtype.element_ty),
        mask=m_ok[:, None] & n_ok[None, :],
    )


@triton.jit
def _wgrad_kernel(
    g_ptr,
    x_ptr,
    p_ptr,
    B,
    T,
    X,
    Y,
    CI,
    CO,
    TO,
    XO,
    YO,
    ROWS_PER_SPLIT,
    s_gb,
    s_gc,
    s_gt,
    s_gx,
    s_gy,
    s_xb,
    s_xc,
    s_xt,
    s_xx,
    s_xy,
    s_ps,
    s_pt,
    s_po,
    s_pi,
    ST: tl.constexpr,
    SX: tl.constexpr,
    SY: tl.constexpr,
    KT: tl.constexpr,
    KX: tl.constexpr,
    KY: tl.constexpr,
    PX: tl.constexpr,
    PY: tl.constexpr,
    DOT_FP32: tl.constexpr,
    PRECISION: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_CI: tl.constexpr,
):
    # Taps vary fastest across programs so concurrently running ones read the same rows of dy
    # and overlapping rows of x (L2 reuse).
    pid = tl.program_id(0)
    split = tl.program_id(1)
    tap = pid % (KT * KX * KY)
    rest = pid // (KT * KX * KY)
    n_co = tl.cdiv(CO, BLOCK_CO)
    pco = rest % n_co
    pci = rest // n_co
    dy = tap % KY
    dx = (tap // KY) % KX
    dt = tap // (KY * KX)
    offs_co = pco * BLOCK_CO + tl.arange(0, BLOCK_CO)
    offs_ci = pci * BLOCK_CI + tl.arange(0, BLOCK_CI)
    co_ok = offs_co < CO
    ci_ok = offs_ci < CI

    m_begin = split * ROWS_PER_SPLIT
    m_end = tl.minimum(m_begin + ROWS_PER_SPLIT, B * TO * XO * YO)
    acc = tl.zeros((BLOCK_CO, BLOCK_CI), dtype=tl.float32)
    for m0 in range(m_begin, m_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        if INT64:
            offs_m = offs_m.to(tl.int64)
        m_ok = offs_m < m_end
        oy = offs_m % YO
        rest_m = offs_m // YO
        ox = rest_m % XO
        rest_m = rest_m // XO
        ot = rest_m % TO
        ob = rest_m // TO
        ti = ot * ST - (KT - 1) + dt
        xi = ox * SX - PX + dx
        yi = oy * SY - PY + dy
        row_ok = m_ok & (ti >= 0) & (xi >= 0) & (xi < X) & (yi >= 0) & (yi < Y)
        g_row = ob * s_gb + ot * s_gt + ox * s_gx + oy * s_gy
        g = tl.load(
            g_ptr + g_row[:, None] + offs_co[None, :] * s_gc,
            mask=m_ok[:, None] & co_ok[None, :],
            other=0.0,
        )
        x_row = ob * s_xb + ti * s_xt + xi * s_xx + yi * s_xy
        a = tl.load(
            x_ptr + x_row[:, None] + offs_ci[None, :] * s_xc,
            mask=row_ok[:, None] & ci_ok[None, :],
            other=0.0,
        )
        if DOT_FP32:
            g = g.to(tl.float32)
            a = a.to(tl.float32)
        acc = tl.dot(tl.trans(g), a, acc, input_precision=PRECISION)

    p_tile = p_ptr + split * s_ps + tap * s_pt
    tl.store(
        p_tile + offs_co[:, None] * s_po + offs_ci[None, :] * s_pi,
        acc,
        mask=co_ok[:, None] & ci_ok[None, :],
    )


# --------------------------------------------------------------------------------------------
# Launch configuration
# --------------------------------------------------------------------------------------------

# GPU autotuning candidates as (rows, cols, reduction, num_warps, num_stages); the column and
# reduction blocks are clamped to the problem's channel counts and duplicates dropped, so a
# 16-channel layer is not tuned over 128-wide tiles that would be 7/8 masked. Few candidates:
# each costs a compile per layer shape and dtype. The first one is the untuned default.
_GEMM_CONFIGS = (
    (128, 64, 32, 4, 3),
    (128, 128, 64, 8, 3),  # wide layers (64 -> 2048)
    (256, 32, 32, 8, 3),  # narrow layers at 512^2: long M, N = 16/32
    (64, 64, 64, 4, 4),
)
# wgrad: (rows reduced per step, Co block, Ci block, num_warps, num_stages).
_WGRAD_CONFIGS = (
    (64, 64, 64, 4, 3),
    (128, 128, 64, 8, 3),
    (128, 32, 32, 4, 4),
    (256, 16, 16, 4, 4),
)
# Problems below this many multiply-adds per tap run the default config without autotuning:
# benchmarking them costs far more than it could save.
_AUTOTUNE_MIN_MACS = 1 << 24
_SMEM_LIMIT = 200 * 1024  # H100/H200 allow 227 KiB per block; keep room for the epilogue
_GEMM_BLOCKS = ("BLOCK_M", "BLOCK_N", "BLOCK_K")
_WGRAD_BLOCKS = ("BLOCK_M", "BLOCK_CO", "BLOCK_CI")
_SHAPE_KEY = ["B", "T", "X", "Y", "CI", "CO", "ST", "SX", "SY", "KT", "KX", "KY", "PX", "PY"]
_KERNELS = {
    "fwd": (_fwd_kernel, _GEMM_BLOCKS, [*_SHAPE_KEY, "K_SPLITS"]),
    "dgrad": (_dgrad_kernel, _GEMM_BLOCKS, [*_SHAPE_KEY, "K_SPLITS"]),
    "wgrad": (_wgrad_kernel, _WGRAD_BLOCKS, [*_SHAPE_KEY, "ROWS_PER_SPLIT"]),
}
# Interpreter: every program and every tl op costs Python time whatever the tile size, so tiles
# are as large as the (tiny) test problems.
_INTERP_MAX_ROWS = 1024


def _block(n: int, lo: int, hi: int) -> int:
    """Power-of-two block covering n, within [lo, hi] (`tl.dot` needs every dim >= 16)."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _smem_bytes(kind: str, blocks: tuple[int, int, int], stages: int, elsize: int) -> int:
    """Shared memory of the pipelined operand tiles (what Triton allocates for them)."""
    bm, bn, bk = blocks
    per_stage = bm * bn + bm * bk if kind == "wgrad" else bm * bk + bk * bn
    return per_stage * elsize * stages


def _configs(
    kind: str, rows: int, cols: int, red: int, elsize: int = 2
) -> tuple[tuple[int, ...], ...]:
    """Candidate configs for a problem with `rows` GEMM rows, `cols` columns, `red` channels
    and `elsize`-byte operands."""
    if _INTERPRET:
        # One config: the autotuner then launches it without benchmarking (needs no driver).
        red_cap = 128 if kind == "wgrad" else 64
        blocks = (
            _block(rows, 16, _INTERP_MAX_ROWS),
            _block(cols, 16, 128),
            _block(red, 16, red_cap),
        )
        return ((*blocks, 4, 1),)
    table = _WGRAD_CONFIGS if kind == "wgrad" else _GEMM_CONFIGS
    if rows * cols * red < _AUTOTUNE_MIN_MACS:
        table = table[:1]
    cap_m, cap_n, cap_k = _block(rows, 16, 256), _block(cols, 16, 128), _block(red, 16, 128)
    seen: dict[tuple[int, ...], None] = {}
    for i, (bm, bn, bk, warps, stages) in enumerate(table):
        blocks = (min(bm, cap_m), min(bn, cap_n), min(bk, cap_k))
        # Drop candidates that cannot fit in shared memory (fp32 doubles the tiles); the
        # default (first) one always fits.
        if i == 0 or _smem_bytes(kind, blocks, stages, elsize) <= _SMEM_LIMIT:
            seen[(*blocks, warps, stages)] = None
    return tuple(seen)


@functools.cache
def _autotuned(kind: str, configs: tuple[tuple[int, ...], ...]) -> triton.runtime.Autotuner:
    kernel, block_names, key = _KERNELS[kind]
    cfgs = [
        triton.Config(dict(zip(block_names, c[:3], strict=True)), num_warps=c[3], num_stages=c[4])
        for c in configs
    ]
    return triton.autotune(configs=cfgs, key=key)(kernel)


def _kernel(kind: str, rows: int, cols: int, red: int, dtype: torch.dtype) -> object:
    tuned = _autotuned(kind, _configs(kind, rows, cols, red, dtype.itemsize))
    # wrap_triton makes the launch visible to torch.compile inside a triton_op; interpreted
    # kernels cannot be captured (the ops are opaque custom ops then), so launch directly.
    return tuned if _INTERPRET else torch.library.wrap_triton(tuned)


def _flags(dtype: torch.dtype, numel: int) -> dict[str, object]:
    if _INTERPRET:
        precision = "ieee"
    elif dtype == torch.float32:
        precision = "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    else:
        precision = "tf32"  # ignored for 16-bit operands; the default dot path
    return {"DOT_FP32": _INTERPRET, "PRECISION": precision, "INT64": numel >= 2**31 - 1}


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _out_sizes(
    t: int, x: int, y: int, k: tuple[int, int, int], s: tuple[int, int, int], px: int, py: int
) -> tuple[int, int, int]:
    return ((t - 1) // s[0] + 1, (x + 2 * px - k[1]) // s[1] + 1, (y + 2 * py - k[2]) // s[2] + 1)


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _k_splits(programs: int, k_iters: int, device: torch.device) -> int:
    """Split-K factor for forward/dgrad: cut the K loop into slices (summed in fp32 afterwards)
    when the M x N grid alone cannot fill the GPU, e.g. 64 -> 2048 channels at 16^2, whose
    dgrad has ~12 row tiles and a 55k-long reduction."""
    if _INTERPRET:
        return 1
    sms = _sm_count(device)
    if programs >= sms:
        return 1
    return max(1, min(triton.cdiv(2 * sms, programs), k_iters // 8))


def _wgrad_splits(rows: int, programs: int, device: torch.device) -> int:
    """How many slices the M reduction of the weight gradient is cut into."""
    if _INTERPRET:
        # Every program costs milliseconds of Python here: split only larger problems (tests
        # still reach the split path with > 1024 rows).
        return triton.cdiv(rows, 1024)
    sms = _sm_count(device)
    # Enough programs for ~4 waves, but never slices shorter than 1024 rows.
    return max(1, min(triton.cdiv(4 * sms, programs), triton.cdiv(rows, 1024)))


# --------------------------------------------------------------------------------------------
# Ops (output allocation is shared by the real and the fake implementations)
# --------------------------------------------------------------------------------------------


def _fwd_out(
    x: torch.Tensor, weight: torch.Tensor, st: int, sx: int, sy: int, px: int, py: int
) -> torch.Tensor:
    b, _, t, xs, ys = x.shape
    k = tuple(weight.shape[2:])
    to, xo, yo = _out_sizes(t, xs, ys, k, (st, sx, sy), px, py)
    return empty((b, weight.shape[0], to, xo, yo), x.dtype, x.device, _is_channels_last(x))


def _fwd_impl(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    out = _fwd_out(x, weight, st, sx, sy, px, py)
    b, ci, t, xs, ys = x.shape
    co, _, kt, kx, ky = weight.shape
    _, _, to, xo, yo = out.shape
    rows = b * to * xo * yo
    if rows == 0 or co == 0:
        return out
    # (kt, kx, ky, Ci, Co): the B tile is then contiguous along N. The weight is tiny.
    w = weight.to(x.dtype).permute(2, 3, 4, 1, 0).contiguous()
    has_bias = bias is not None
    bias_arg = bias if has_bias else w  # any pointer; never read without HAS_BIAS
    kernel = _kernel("fwd", rows, co, ci, x.dtype)
    splits = _k_splits(
        triton.cdiv(rows, 128) * triton.cdiv(co, 64), kt * kx * ky * triton.cdiv(ci, 32), x.device
    )
    # With split-K every slice writes an fp32 partial; otherwise the kernel writes `out`.
    target = out if splits == 1 else empty((splits, *out.shape), torch.float32, x.device)
    split_stride = 0 if splits == 1 else target.stride(0)

    def grid(meta: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(rows, meta["BLOCK_M"]), triton.cdiv(co, meta["BLOCK_N"]) * splits)

    kernel[grid](
        x, w, bias_arg, target,
        b, t, xs, ys, ci, co, to, xo, yo, splits,
        *x.stride(), *w.stride(), *target.stride()[-5:], split_stride,
        ST=st, SX=sx, SY=sy, KT=kt, KX=kx, KY=ky, PX=px, PY=py, HAS_BIAS=has_bias,
        **_flags(x.dtype, max(x.numel(), target.numel())),
    )  # fmt: skip
    if splits > 1:
        out.copy_(target.sum(dim=0))
    return out


def _fwd_fake(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    return _fwd_out(x, weight, st, sx, sy, px, py)


def _dgrad_impl(
    grad: torch.Tensor,
    weight: torch.Tensor,
    t: int,
    xs: int,
    ys: int,
    channels_last: bool,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    b, co, to, xo, yo = grad.shape
    _, ci, kt, kx, ky = weight.shape
    dx = empty((b, ci, t, xs, ys), grad.dtype, grad.device, channels_last)
    nt, nx, ny = triton.cdiv(t, st), triton.cdiv(xs, sx), triton.cdiv(ys, sy)
    rows = b * nt * nx * ny
    if dx.numel() == 0:
        return dx
    # (kt, kx, ky, Co, Ci): contiguous along N = Ci.
    w = weight.to(grad.dtype).permute(2, 3, 4, 0, 1).contiguous()
    kernel = _kernel("dgrad", rows, ci, co, grad.dtype)
    phases = st * sx * sy
    taps = triton.cdiv(kt, st) * triton.cdiv(kx, sx) * triton.cdiv(ky, sy)
    splits = _k_splits(
        triton.cdiv(rows, 128) * triton.cdiv(ci, 64) * phases,
        taps * triton.cdiv(co, 32),
        grad.device,
    )
    target = dx if splits == 1 else empty((splits, *dx.shape), torch.float32, grad.device)
    split_stride = 0 if splits == 1 else target.stride(0)

    def grid(meta: dict[str, int]) -> tuple[int, int, int]:
        n_blocks = triton.cdiv(ci, meta["BLOCK_N"])
        return (triton.cdiv(rows, meta["BLOCK_M"]), n_blocks * splits, phases)

    kernel[grid](
        grad, w, target,
        b, t, xs, ys, ci, co, to, xo, yo, nt, nx, ny, splits,
        *grad.stride(), *w.stride(), *target.stride()[-5:], split_stride,
        ST=st, SX=sx, SY=sy, KT=kt, KX=kx, KY=ky, PX=px, PY=py,
        **_flags(grad.dtype, max(target.numel(), grad.numel())),
    )  # fmt: skip
    if splits > 1:
        dx.copy_(target.sum(dim=0))
    return dx


def _dgrad_fake(
    grad: torch.Tensor,
    weight: torch.Tensor,
    t: int,
    xs: int,
    ys: int,
    channels_last: bool,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    b, ci = grad.shape[0], weight.shape[1]
    return empty((b, ci, t, xs, ys), grad.dtype, grad.device, channels_last)


def _wgrad_impl(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    """Weight gradient in weight's shape and dtype (`weight` only supplies those)."""
    b, co, to, xo, yo = grad.shape
    _, ci, t, xs, ys = x.shape
    kt, kx, ky = weight.shape[2:]
    taps = kt * kx * ky
    rows = b * to * xo * yo
    if rows == 0 or weight.numel() == 0:
        return torch.zeros_like(weight, memory_format=torch.contiguous_format)
    programs = taps * triton.cdiv(co, 64) * triton.cdiv(ci, 64)
    splits = _wgrad_splits(rows, programs, grad.device)
    rows_per_split = triton.cdiv(triton.cdiv(rows, splits), 256) * 256
    splits = triton.cdiv(rows, rows_per_split)
    partial = empty((splits, taps, co, ci), torch.float32, grad.device)
    kernel = _kernel("wgrad", rows_per_split, co, ci, x.dtype)

    def grid(meta: dict[str, int]) -> tuple[int, int]:
        blocks = triton.cdiv(co, meta["BLOCK_CO"]) * triton.cdiv(ci, meta["BLOCK_CI"])
        return (taps * blocks, splits)

    kernel[grid](
        grad, x, partial,
        b, t, xs, ys, ci, co, to, xo, yo, rows_per_split,
        *grad.stride(), *x.stride(), *partial.stride(),
        ST=st, SX=sx, SY=sy, KT=kt, KX=kx, KY=ky, PX=px, PY=py,
        **_flags(x.dtype, max(x.numel(), grad.numel())),
    )  # fmt: skip
    total = partial[0] if splits == 1 else partial.sum(dim=0)
    # (kt*kx*ky, Co, Ci) -> (Co, Ci, kt, kx, ky)
    dw = total.reshape(kt, kx, ky, co, ci).permute(3, 4, 0, 1, 2)
    return dw.to(weight.dtype).contiguous()


def _wgrad_fake(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    st: int,
    sx: int,
    sy: int,
    px: int,
    py: int,
) -> torch.Tensor:
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


_fwd_op = define_op("physok::causal_conv3d", _fwd_impl, _fwd_fake)
_dgrad_op = define_op("physok::causal_conv3d_dgrad", _dgrad_impl, _dgrad_fake)
_wgrad_op = define_op("physok::causal_conv3d_wgrad", _wgrad_impl, _wgrad_fake)


def _setup_context(ctx: object, inputs: tuple[object, ...], output: torch.Tensor) -> None:
    x, weight, bias, st, sx, sy, px, py = inputs
    ctx.save_for_backward(x, weight)
    ctx.conv = (st, sx, sy, px, py)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    x, weight = ctx.saved_tensors
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        t, xs, ys = x.shape[2:]
        gx = _dgrad_op(grad, weight, t, xs, ys, _is_channels_last(x), *ctx.conv)
    if ctx.needs_input_grad[1]:
        gw = _wgrad_op(grad, x, weight, *ctx.conv)
    if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
        gb = grad.sum(dim=(0, 2, 3, 4), dtype=torch.float32).to(ctx.bias_dtype)
    return gx, gw, gb, None, None, None, None, None


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def causal_conv3d_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int, int],
    padding: str,
) -> torch.Tensor:
    """Causal 3D convolution via the Triton kernels; differentiable and `torch.compile`-able.

    Arguments are those of `physok.ops.causal_conv3d.causal_conv3d` after its validation:
    x (B, Ci, T, X, Y) in any memory layout, weight (Co, Ci, kt, kx, ky), optional bias (Co,),
    stride (st, sx, sy), padding "same" | "valid". The weight and bias are used in x's dtype
    (what autocast would do); the result has x's dtype and x's memory format (channels_last_3d
    in, channels_last_3d out), and gradients come back in each input's own dtype.
    """
    st, sx, sy = (int(s) for s in stride)
    kx, ky = weight.shape[3], weight.shape[4]
    px, py = (0, 0) if padding == "valid" else ((kx - 1) // 2, (ky - 1) // 2)
    _, xo, yo = _out_sizes(x.shape[2], x.shape[3], x.shape[4], weight.shape[2:], stride, px, py)
    if xo < 1 or yo < 1:
        raise ValueError(
            f"causal_conv3d: the spatial grid {tuple(x.shape[3:])} is smaller than the kernel "
            f"{tuple(weight.shape[3:])} under padding={padding!r}; use a larger input or 'same'"
        )
    return _fwd_op(x, weight, bias, st, sx, sy, px, py)
