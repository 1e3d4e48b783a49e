"""Triton sample-wise, per-field RMS and z-score normalisation and their inverses, with autograd.

Semantics are those of the reference `physok.data.normalise`: fields (B, T, C, *spatial), one
scale per (sample, field) = sqrt(mean over the first `n_context` frames and all grid points of
f²), clamped below by eps; normalise divides every frame (context and target) by it, denormalise
multiplies. The z-score variant first subtracts the mean over the same points and divides by the
population standard deviation (clamped below by eps); its inverse is f * std + mean. Statistics
are fp32; outputs keep the input's dtype; every sum accumulates in fp32.

Layout. A contiguous (B, T, C, *spatial) tensor is (B, T, C, S) with S the flattened grid, so the
values of one (b, c) are T runs of S contiguous elements, C * S apart. Every kernel runs on the
grid (B * C, frames, S-chunks): a program owns one contiguous chunk of one frame of one field, so
its loads are contiguous and need no integer division per element.

Normalise = two launches:
1. partial sums: program (bc, t, k) writes sum(f²) over its chunk into partials[bc, t, k] (one
   fp32 each, no atomics, deterministic). Only the n_context context frames are read. A large
   field (512² frames) is thereby split over frames x chunks programs instead of one program per
   field, which would leave most of the GPU idle (B * C = 10 programs).
2. scale: every program first finishes the reduction of its own (b, c) (a few hundred partials,
   from L2), so no separate "finish" launch is needed; it divides its chunk by the scale, and the
   program of frame 0, chunk 0 also stores the scale.
Denormalise is one launch (multiply by the scale).

Z-score = the same two launches, the kernels' MOMENTS / ZSCORE variants. The variance is never
E[f²] - E[f]² (in fp32 that cancels to noise for a field with mean 100 and std 0.01):
1. moments: program (bc, t, k) stores, for its chunk, ref = the mean of its first block, the sum
   of d = f - ref and M2 = sum d² - (sum d)² / n (per-lane fp32 sums of d and d²). f - ref is
   exact for f near ref, and the first block (a fraction p = 1 / ITERS of the chunk) has its mean
   within sqrt((1 - p) / p) std of the chunk's, so sum d² <= ITERS * M2: little cancellation.
2. normalise: each program merges the partials of its (b, c) with the k-group form of Chan's
   parallel formula: a first estimate m0 = sum(n_i ref_i + s1_i) / N, then with
   d_i = (ref_i - m0) + s1_i / n_i, M2 = sum M2_i + sum n_i d_i² - (sum n_i d_i)² / N and
   mean = m0 + sum n_i d_i / N; then out = (f - mean) / std. The std keeps ~fp32 relative
   precision whatever the offset; the fp32 mean is exact to about an ulp of itself (an input
   offset by 100 is itself only resolved to ulp(100)). Deterministic: fixed partials, fixed order.

Backward. With y = f / s, s = max(sqrt(Q / N), eps), Q = sum_{t < n} f², N = n * S, and an
upstream gradient g for y and g_s for the returned scales:
    df = g / s + [t < n] [s > eps] f (g_s - D / s²) / (N s),   D = sum_{all t} g f.
D is the same partial-sum kernel (over all frames, on g and f), the per-(b, c) coefficients are
B x C torch ops, and df is one fused elementwise launch. A clamped scale (all-zero field) passes
no gradient through s; unlike the reference (whose sqrt backward gives NaN at 0) the gradient is
then just g / eps. A scale exactly equal to eps counts as clamped. Denormalise's backward is
dfields = g * s (elementwise) and dscales = sum g * fields (the partial-sum kernel + a sum over
the partials). Double backward is not supported.

Z-score backward. With y = (f - m) / s, m = sum_{t < n} f / N, s = max(sqrt(M2 / N), eps),
M2 = sum_{t < n} (f - m)², and upstream gradients g for y, g_m for the means, g_s for the stds:
    df = g / s + [t < n] (a + [s > eps] b (f - m)),   a = (g_m - G / s) / N,
    b = (g_s - E / s²) / (N s),   G = sum_{all t} g,   E = sum_{all t} g (f - m).
(M2's dependence on m drops out: dM2/dm = -2 sum (f - m) = 0.) G and E are one CENTRED
partial-sum pass, E taken about m rather than as sum g f - m G (which would cancel for a large
offset); df is one CENTRED affine launch that forms f - m before scaling it. A clamped std (a
constant field) passes no gradient through s (the reference's sqrt backward is NaN at 0), the
mean still does: df = g / eps + [t < n] a. Denormalise (out = y s + m): dy = g * s, and
dm = sum g, ds = sum g y from one CENTRED partial-sum pass with shift 0.

Registration: on GPU the ops are `torch.library.triton_op`s with `wrap_triton` launches, so
`torch.compile` traces into the kernels; under the interpreter (TRITON_INTERPRET=1, CPU)
`wrap_triton` cannot capture interpreted kernels, so the same functions are opaque
`torch.library.custom_op`s with shapes-only fake implementations. Eager calls that need no
autograd graph (no input requires grad, nothing is being traced) skip the op dispatcher and
launch the same kernels directly: the dispatcher's Python costs ~20 us, comparable to a whole
512² bf16 pass (~35 us at H200 bandwidth). Interpreter programs run one at a time, so a chunk is
the whole frame there (up to 64K elements), looped over in 4 blocks.

Debugging: with PHYSOK_KERNEL_POISON=1 every output and scratch buffer is allocated filled with
NaN, so an element a kernel forgets to write shows up in any comparison.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from physok_kernels._common import INTERPRET, define_op, empty

from physok.data.normalise import DEFAULT_EPS

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_INTERPRET = INTERPRET

# Elements per program along a frame. 16K elements (64 KB of fp32) keeps a 512² frame split over
# 16 programs: B=2, C=5, 9 context frames -> 1,440 programs, ~11 per SM on an H100/H200.
_GPU_CHUNK = 16384
_GPU_BLOCK = 4096
_GPU_WARPS = 8
_INTERP_MAX_CHUNK = 1 << 16
_PARTIALS_BLOCK = 256  # partials finished per step inside the scale kernel


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _partials_kernel(
    a_ptr,
    b_ptr,
    shift_ptr,
    part_ptr,
    T,
    C,
    S,
    n_frames,
    n_chunks,
    SQUARE: tl.constexpr,
    MOMENTS: tl.constexpr,
    CENTRED: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    """Per-chunk statistics of chunk k of frame t of field bc, one fp32 per slot, no atomics.

    Default: partials[bc, t, k] = sum of a * b (a * a when SQUARE). MOMENTS: a reference value
    `ref` near the chunk's mean into partials[bc, 0, t, k], sum (a - ref) into partials[bc, 1, t,
    k] and M2 = sum (a - chunk mean)² into partials[bc, 2, t, k]. CENTRED: sum a into slot 0 and
    sum a * (b - shift[bc]) into slot 1.
    """
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    bi = bc // C
    ci = bc % C
    base = ((bi.to(tl.int64) * T + t) * C + ci) * S
    start = k * (BLOCK * ITERS)
    n_slots = n_frames * n_chunks
    if MOMENTS:
        # Sums of d = a - ref about the first block's mean `ref`, per lane: a - ref is exact for
        # values near it, and M2 = sum d² - (sum d)² / n cancels little, since a block holding
        # a fraction p of the chunk has its mean within sqrt((1 - p) / p) standard deviations of
        # the chunk's: sum d² <= M2 / p = ITERS * M2 (no E[a²] - E[a]² about 0).
        acc1 = tl.zeros((BLOCK,), dtype=tl.float32)
        acc2 = tl.zeros((BLOCK,), dtype=tl.float32)
        for it in tl.static_range(ITERS):
            offs = start + it * BLOCK + tl.arange(0, BLOCK)
            mask = offs < S
            a = tl.load(a_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            if it == 0:
                # The first block is never empty.
                ref = tl.sum(a, axis=0) / tl.minimum(S - start, BLOCK).to(tl.float32)
            d = tl.where(mask, a - ref, 0.0)
            acc1 += d
            acc2 += d * d
        s1 = tl.sum(acc1, axis=0)
        n = tl.minimum(S - start, BLOCK * ITERS).to(tl.float32)
        m2 = tl.maximum(tl.sum(acc2, axis=0) - s1 * s1 / n, 0.0)
        slot = (bc * 3 * n_frames + t) * n_chunks + k
        tl.store(part_ptr + slot, ref)
        tl.store(part_ptr + slot + n_slots, s1)
        tl.store(part_ptr + slot + 2 * n_slots, m2)
    elif CENTRED:
        shift = tl.load(shift_ptr + bc)
        acc_a = tl.zeros((BLOCK,), dtype=tl.float32)
        acc_ab = tl.zeros((BLOCK,), dtype=tl.float32)
        for it in tl.static_range(ITERS):
            offs = start + it * BLOCK + tl.arange(0, BLOCK)
            mask = offs < S
            a = tl.load(a_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            acc_a += a
            acc_ab += a * (b - shift)  # a is 0 past S
        slot = (bc * 2 * n_frames + t) * n_chunks + k
        tl.store(part_ptr + slot, tl.sum(acc_a, axis=0))
        tl.store(part_ptr + slot + n_slots, tl.sum(acc_ab, axis=0))
    else:
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for it in tl.static_range(ITERS):
            offs = start + it * BLOCK + tl.arange(0, BLOCK)
            mask = offs < S
            a = tl.load(a_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            if SQUARE:
                acc += a * a
            else:
                b = tl.load(b_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
                acc += a * b
        tl.store(part_ptr + (bc * n_frames + t) * n_chunks + k, tl.sum(acc, axis=0))


@triton.jit
def _normalise_kernel(
    x_ptr,
    part_ptr,
    out_ptr,
    scale_ptr,
    mean_ptr,
    T,
    C,
    S,
    n_chunks,
    n_parts,
    count,
    eps,
    ZSCORE: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """RMS: out = x / max(sqrt(sum(partials[bc]) / count), eps). ZSCORE: out = (x - mean) / std
    from the per-chunk (ref, sum, M2) partials, std = max(sqrt(M2 / count), eps). Frame 0,
    chunk 0 stores the scale (and the mean)."""
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    # Finish the split reduction here: rereading n_parts floats is cheaper than another launch.
    if ZSCORE:
        chunk = BLOCK * ITERS
        p_ref = part_ptr + bc * 3 * n_parts
        p_s1 = p_ref + n_parts
        p_m2 = p_s1 + n_parts
        # Chunk i holds n_i values (only the last chunk of a frame is short) with mean
        # ref_i + s1_i / n_i. A first estimate m0 of the mean, then about it the k-group form of
        # Chan's formula: M2 = sum M2_i + sum n_i d_i² - (sum n_i d_i)² / N, d_i = mean_i - m0.
        # d_i = (ref_i - m0) + s1_i / n_i is exact to fp32 relative precision (ref_i - m0 is
        # exact near the mean), so a large offset costs the std no digits.
        macc = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for p0 in range(0, n_parts, BLOCK_P):
            po = p0 + tl.arange(0, BLOCK_P)
            pm = po < n_parts
            ni = tl.where(pm, tl.minimum(S - (po % n_chunks) * chunk, chunk), 0).to(tl.float32)
            ref = tl.load(p_ref + po, mask=pm, other=0.0)
            macc += ni * ref + tl.load(p_s1 + po, mask=pm, other=0.0)  # the chunk's sum
        m0 = tl.sum(macc, axis=0) / count
        cacc = tl.zeros((BLOCK_P,), dtype=tl.float32)
        qacc = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for p0 in range(0, n_parts, BLOCK_P):
            po = p0 + tl.arange(0, BLOCK_P)
            pm = po < n_parts
            ni = tl.where(pm, tl.minimum(S - (po % n_chunks) * chunk, chunk), 0).to(tl.float32)
            ref = tl.load(p_ref + po, mask=pm, other=0.0)
            s1 = tl.load(p_s1 + po, mask=pm, other=0.0)
            d = (ref - m0) + s1 / tl.maximum(ni, 1.0)
            cacc += ni * d
            qacc += tl.load(p_m2 + po, mask=pm, other=0.0) + ni * d * d
        cs = tl.sum(cacc, axis=0)
        shift = m0 + cs / count
        m2 = tl.maximum(tl.sum(qacc, axis=0) - cs * cs / count, 0.0)
        scale = tl.maximum(tl.sqrt_rn(m2 / count), eps)
        tl.store(mean_ptr + bc, shift, mask=(t == 0) & (k == 0))
    else:
        pacc = tl.zeros((BLOCK_P,), dtype=tl.float32)
        for p0 in range(0, n_parts, BLOCK_P):
            po = p0 + tl.arange(0, BLOCK_P)
            pacc += tl.load(part_ptr + bc * n_parts + po, mask=po < n_parts, other=0.0)
        rms = tl.sqrt_rn(tl.sum(pacc, axis=0) / count)
        scale = tl.maximum(rms, eps)
    tl.store(scale_ptr + bc, scale, mask=(t == 0) & (k == 0))

    bi = bc // C
    ci = bc % C
    base = ((bi.to(tl.int64) * T + t) * C + ci) * S
    start = k * (BLOCK * ITERS)
    for it in tl.static_range(ITERS):
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        mask = offs < S
        x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        if ZSCORE:
            x = x - shift
        tl.store(out_ptr + base + offs, (x / scale).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine_kernel(
    a_ptr,
    alpha_ptr,
    b_ptr,
    beta_ptr,
    shift_ptr,
    offset_ptr,
    out_ptr,
    T,
    C,
    S,
    t_lim,
    HAS_B: tl.constexpr,
    CENTRED: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    """out = a * alpha[bc], plus on frames t < t_lim: b * beta[bc] when HAS_B; with CENTRED,
    (b - shift[bc]) * beta[bc] + offset[bc] (offset[bc] alone without HAS_B)."""
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    alpha = tl.load(alpha_ptr + bc)
    if CENTRED:
        offset = tl.load(offset_ptr + bc) * (t < t_lim).to(tl.float32)
    if HAS_B:
        beta = tl.load(beta_ptr + bc)
        if CENTRED:
            shift = tl.load(shift_ptr + bc)
        # Frames past t_lim skip the b load entirely (an empty mask), not just multiply by 0.
        s_b = S * (t < t_lim).to(tl.int32)
    bi = bc // C
    ci = bc % C
    base = ((bi.to(tl.int64) * T + t) * C + ci) * S
    start = k * (BLOCK * ITERS)
    for it in tl.static_range(ITERS):
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        mask = offs < S
        out = tl.load(a_ptr + base + offs, mask=mask, other=0.0).to(tl.float32) * alpha
        if HAS_B:
            mask_b = offs < s_b
            b = tl.load(b_ptr + base + offs, mask=mask_b, other=0.0).to(tl.float32)
            if CENTRED:
                # (b - shift) first: b and shift are close for a large-offset field, and
                # b * beta - shift * beta would cancel.
                b = tl.where(mask_b, b - shift, 0.0)
            out += b * beta
        if CENTRED:
            out += offset
        tl.store(out_ptr + base + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


def _tiling(s: int, chunk: int) -> tuple[int, int, int]:
    """(BLOCK, ITERS, n_chunks) for frames of `s` elements; chunk=0 picks the default."""
    if chunk <= 0:
        cap = _INTERP_MAX_CHUNK if _INTERPRET else _GPU_CHUNK
        chunk = min(cap, triton.next_power_of_2(s))
    # The interpreter's programs are slow but its numpy blocks cheap; still, a chunk spans 4
    # blocks there (when it can) so the in-program loop and its ragged tail are exercised on CPU.
    block = max(16, chunk // 4) if _INTERPRET else min(chunk, _GPU_BLOCK)
    return block, chunk // block, triton.cdiv(s, chunk)


def _launch(kernel: object, wrap: bool) -> object:
    # wrap_triton makes the launch visible to torch.compile inside a triton_op; interpreted
    # kernels cannot be captured (the ops are opaque custom ops then), and eager calls outside
    # the ops (wrap=False) launch the kernel directly.
    return torch.library.wrap_triton(kernel) if wrap and not _INTERPRET else kernel


def _dims(x: torch.Tensor) -> tuple[int, int, int, int]:
    b, t, c = x.shape[:3]
    return b, t, c, math.prod(x.shape[3:])


def _warps() -> dict[str, int]:
    return {} if _INTERPRET else {"num_warps": _GPU_WARPS}


def _partials(
    a: torch.Tensor,
    b: torch.Tensor | None,
    n_frames: int,
    chunk: int,
    wrap: bool = True,
    moments: bool = False,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp32 per-chunk statistics over the first `n_frames` frames, (B * C, slots * n_frames *
    n_chunks): sums of a * b (a² when b is None); with `moments` each chunk's reference value,
    sum of a - reference and M2; with `shift` the sums of a, then of a * (b - shift)."""
    bsz, t, c, s = _dims(a)
    block, iters, n_chunks = _tiling(s, chunk)
    slots = 3 if moments else 2 if shift is not None else 1
    part = empty((bsz * c, slots * n_frames * n_chunks), torch.float32, a.device)
    _launch(_partials_kernel, wrap)[(bsz * c, n_frames, n_chunks)](
        a,
        a if b is None else b,
        part if shift is None else shift,
        part,
        t,
        c,
        s,
        n_frames,
        n_chunks,
        SQUARE=b is None and not moments,
        MOMENTS=moments,
        CENTRED=shift is not None,
        BLOCK=block,
        ITERS=iters,
        **_warps(),
    )
    return part


def _field_dot(
    a: torch.Tensor, b: torch.Tensor | None, n_frames: int, chunk: int, wrap: bool = True
) -> torch.Tensor:
    """(B * C, n_frames * n_chunks) fp32 partial sums of a * b (a² when b is None)."""
    return _partials(a, b, n_frames, chunk, wrap)


def _affine(
    a: torch.Tensor,
    alpha: torch.Tensor,
    b: torch.Tensor | None,
    beta: torch.Tensor | None,
    t_lim: int,
    chunk: int,
    wrap: bool = True,
    shift: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """a * alpha + [t < t_lim] (b * beta), per (b, c); with `offset` (the CENTRED kernel)
    a * alpha + [t < t_lim] ((b - shift) * beta + offset), shift None meaning 0."""
    bsz, t, c, s = _dims(a)
    block, iters, n_chunks = _tiling(s, chunk)
    centred = offset is not None
    if centred and b is not None and shift is None:
        shift = torch.zeros_like(alpha)
    out = empty(tuple(a.shape), a.dtype, a.device)
    _launch(_affine_kernel, wrap)[(bsz * c, t, n_chunks)](
        a,
        alpha,
        a if b is None else b,
        alpha if beta is None else beta,
        alpha if shift is None else shift,
        alpha if offset is None else offset,
        out,
        t,
        c,
        s,
        t_lim,
        HAS_B=b is not None,
        CENTRED=centred,
        BLOCK=block,
        ITERS=iters,
        **_warps(),
    )
    return out


# --------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------


def _normalise_run(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int, wrap: bool, zscore: bool = False
) -> tuple[torch.Tensor, ...]:
    """RMS: (out, scales); z-score: (out, mean, std)."""
    bsz, t, c, s = _dims(fields)
    block, iters, n_chunks = _tiling(s, chunk)
    part = _partials(fields, None, n_context, chunk, wrap, moments=zscore)
    out = empty(tuple(fields.shape), fields.dtype, fields.device)
    scales = empty((bsz, c), torch.float32, fields.device)
    mean = empty((bsz, c), torch.float32, fields.device) if zscore else scales
    _launch(_normalise_kernel, wrap)[(bsz * c, t, n_chunks)](
        fields,
        part,
        out,
        scales,
        mean,
        t,
        c,
        s,
        n_chunks,
        n_context * n_chunks,
        float(n_context * s),
        float(eps),
        ZSCORE=zscore,
        BLOCK=block,
        ITERS=iters,
        BLOCK_P=min(_PARTIALS_BLOCK, triton.next_power_of_2(n_context * n_chunks)),
        **_warps(),
    )
    return (out, mean, scales) if zscore else (out, scales)


def _normalise_impl(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return _normalise_run(fields, n_context, eps, chunk, wrap=True)


def _field_dot_impl(a: torch.Tensor, b: torch.Tensor, n_frames: int, chunk: int) -> torch.Tensor:
    bsz, _, c, _ = _dims(a)
    return _field_dot(a, b, n_frames, chunk).sum(dim=1).reshape(bsz, c)


def _affine_impl(
    a: torch.Tensor,
    alpha: torch.Tensor,
    b: torch.Tensor | None,
    beta: torch.Tensor | None,
    t_lim: int,
    chunk: int,
    shift: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    return _affine(a, alpha, b, beta, t_lim, chunk, shift=shift, offset=offset)


def _normalise_fake(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(fields), fields.new_empty(
        (fields.shape[0], fields.shape[2]), dtype=torch.float32
    )


def _field_dot_fake(a: torch.Tensor, b: torch.Tensor, n_frames: int, chunk: int) -> torch.Tensor:
    return a.new_empty((a.shape[0], a.shape[2]), dtype=torch.float32)


def _affine_fake(
    a: torch.Tensor,
    alpha: torch.Tensor,
    b: torch.Tensor | None,
    beta: torch.Tensor | None,
    t_lim: int,
    chunk: int,
    shift: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    return torch.empty_like(a)


_normalise_op = define_op("physok::rms_normalise", _normalise_impl, _normalise_fake)
_field_dot_op = define_op("physok::rms_field_dot", _field_dot_impl, _field_dot_fake)
_affine_op = define_op("physok::rms_affine", _affine_impl, _affine_fake)


def _normalise_setup(ctx: object, inputs: tuple[object, ...], output: tuple) -> None:
    fields, n_context, eps, chunk = inputs
    ctx.save_for_backward(fields, output[1])
    ctx.n_context, ctx.eps, ctx.chunk = n_context, eps, chunk


def _normalise_backward(
    ctx: object, grad_out: torch.Tensor | None, grad_scales: torch.Tensor | None
) -> tuple[torch.Tensor | None, None, None, None]:
    fields, scales = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    if grad_out is None:
        grad_out = torch.zeros_like(fields)
    grad_out = grad_out.contiguous()
    _, _, _, s = _dims(fields)
    dot = _field_dot_op(grad_out, fields, fields.shape[1], ctx.chunk)  # D, over every frame
    g_s = torch.zeros_like(scales) if grad_scales is None else grad_scales.float()
    coef = (g_s - dot / scales.square()) / (ctx.n_context * s * scales)
    coef = torch.where(scales > ctx.eps, coef, torch.zeros_like(coef))
    grad = _affine_op(grad_out, scales.reciprocal(), fields, coef, ctx.n_context, ctx.chunk)
    return grad, None, None, None


_normalise_op.register_autograd(_normalise_backward, setup_context=_normalise_setup)


def _denormalise_impl(fields: torch.Tensor, scales: torch.Tensor, chunk: int) -> torch.Tensor:
    return _affine(fields, scales, None, None, 0, chunk)


def _denormalise_fake(fields: torch.Tensor, scales: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.empty_like(fields)


_denormalise_op = define_op("physok::rms_denormalise", _denormalise_impl, _denormalise_fake)


def _denormalise_setup(ctx: object, inputs: tuple[object, ...], output: torch.Tensor) -> None:
    fields, scales, chunk = inputs
    ctx.save_for_backward(fields, scales)
    ctx.chunk = chunk


def _denormalise_backward(
    ctx: object, grad: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
    fields, scales = ctx.saved_tensors
    grad = grad.contiguous()
    gf = gs = None
    if ctx.needs_input_grad[0]:
        gf = _affine_op(grad, scales, None, None, 0, ctx.chunk)
    if ctx.needs_input_grad[1]:
        gs = _field_dot_op(grad, fields, fields.shape[1], ctx.chunk)
    return gf, gs, None


_denormalise_op.register_autograd(_denormalise_backward, setup_context=_denormalise_setup)


# z-score: the same kernels in their MOMENTS / CENTRED variants (see the module docstring).


def _zscore_impl(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _normalise_run(fields, n_context, eps, chunk, wrap=True, zscore=True)


def _zscore_fake(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stat = (fields.shape[0], fields.shape[2])
    return (
        torch.empty_like(fields),
        fields.new_empty(stat, dtype=torch.float32),
        fields.new_empty(stat, dtype=torch.float32),
    )


def _field_sums_impl(
    a: torch.Tensor, b: torch.Tensor, shift: torch.Tensor, n_frames: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum a, sum a * (b - shift)) per (b, c), over the first n_frames frames, fp32 (B, C)."""
    bsz, _, c, _ = _dims(a)
    sums = _partials(a, b, n_frames, chunk, shift=shift).view(bsz, c, 2, -1).sum(dim=3)
    # Two separate tensors: an op's outputs must not alias each other.
    return sums[..., 0].contiguous(), sums[..., 1].contiguous()


def _field_sums_fake(
    a: torch.Tensor, b: torch.Tensor, shift: torch.Tensor, n_frames: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    stat = (a.shape[0], a.shape[2])
    return a.new_empty(stat, dtype=torch.float32), a.new_empty(stat, dtype=torch.float32)


_zscore_op = define_op("physok::zscore_normalise", _zscore_impl, _zscore_fake)
_field_sums_op = define_op("physok::zscore_field_sums", _field_sums_impl, _field_sums_fake)


def _zscore_setup(ctx: object, inputs: tuple[object, ...], output: tuple) -> None:
    fields, n_context, eps, chunk = inputs
    ctx.save_for_backward(fields, output[1], output[2])
    ctx.n_context, ctx.eps, ctx.chunk = n_context, eps, chunk


def _zscore_backward(
    ctx: object,
    grad_out: torch.Tensor | None,
    grad_mean: torch.Tensor | None,
    grad_std: torch.Tensor | None,
) -> tuple[torch.Tensor | None, None, None, None]:
    fields, mean, std = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    if grad_out is None:
        grad_out = torch.zeros_like(fields)
    grad_out = grad_out.contiguous()
    _, _, _, s = _dims(fields)
    count = ctx.n_context * s
    # G = sum g and E = sum g (f - mean) over every frame, in one pass; E about the mean, not
    # sum g f - mean G, which cancels for a large offset.
    g_sum, g_dev = _field_sums_op(grad_out, fields, mean, fields.shape[1], ctx.chunk)
    d_mean = -g_sum / std if grad_mean is None else grad_mean.float() - g_sum / std
    d_std = -g_dev / std.square() if grad_std is None else grad_std.float() - g_dev / std.square()
    beta = torch.where(std > ctx.eps, d_std / (count * std), torch.zeros_like(std))
    grad = _affine_op(
        grad_out, std.reciprocal(), fields, beta, ctx.n_context, ctx.chunk, mean, d_mean / count
    )
    return grad, None, None, None


_zscore_op.register_autograd(_zscore_backward, setup_context=_zscore_setup)


def _zscore_denormalise_impl(
    fields: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, chunk: int
) -> torch.Tensor:
    return _affine(fields, std, None, None, fields.shape[1], chunk, offset=mean)


def _zscore_denormalise_fake(
    fields: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, chunk: int
) -> torch.Tensor:
    return torch.empty_like(fields)


_zscore_denormalise_op = define_op(
    "physok::zscore_denormalise", _zscore_denormalise_impl, _zscore_denormalise_fake
)


def _zscore_denormalise_setup(
    ctx: object, inputs: tuple[object, ...], output: torch.Tensor
) -> None:
    fields, _, std, chunk = inputs
    ctx.save_for_backward(fields, std)
    ctx.chunk = chunk


def _zscore_denormalise_backward(
    ctx: object, grad: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
    fields, std = ctx.saved_tensors
    grad = grad.contiguous()
    gf = gm = gs = None
    if ctx.needs_input_grad[0]:
        gf = _affine_op(grad, std, None, None, 0, ctx.chunk)
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        # dmean = sum g, dstd = sum g * fields: one pass (shift 0).
        gm, gs = _field_sums_op(grad, fields, torch.zeros_like(std), fields.shape[1], ctx.chunk)
        gm = gm if ctx.needs_input_grad[1] else None
        gs = gs if ctx.needs_input_grad[2] else None
    return gf, gm, gs, None


_zscore_denormalise_op.register_autograd(
    _zscore_denormalise_backward, setup_context=_zscore_denormalise_setup
)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _check_fields(fields: torch.Tensor, op: str) -> None:
    if fields.dim() < 4:
        raise ValueError(f"{op}: fields must be (B, T, C, *spatial), got {tuple(fields.shape)}")
    if fields.dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"{op}: the Triton kernel supports float32/bfloat16/float16, got {fields.dtype}; "
            "use backend='reference' for other dtypes"
        )
    if fields.numel() == 0:
        raise ValueError(f"{op}: fields {tuple(fields.shape)} are empty")


def _direct(*tensors: torch.Tensor) -> bool:
    """Whether an eager call may skip the custom-op dispatcher (~20 us of Python per call).

    Only when no autograd graph is needed and nothing is being traced: then the op's autograd
    and tracing machinery has nothing to do, and the same kernels launch directly.
    """
    if torch.compiler.is_compiling():
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _n_context(fields: torch.Tensor, n_context: int | None) -> int:
    n_frames = fields.shape[1]
    n = n_frames if n_context is None else int(n_context)
    if not 1 <= n <= n_frames:
        raise ValueError(f"n_context={n_context} outside 1..{n_frames} snapshots")
    return n


def _check_stat(stat: torch.Tensor, name: str, fields: torch.Tensor) -> torch.Tensor:
    """A (B, C) statistic as contiguous fp32, or a ValueError naming it."""
    if stat.shape != (fields.shape[0], fields.shape[2]):
        raise ValueError(
            f"{name} shape {tuple(stat.shape)} does not match fields (B={fields.shape[0]}, "
            f"C={fields.shape[2]})"
        )
    if stat.device != fields.device:
        raise ValueError(f"{name} are on {stat.device} but fields on {fields.device}")
    return stat.to(torch.float32).contiguous()


def _check_chunk(chunk: int | None) -> int:
    if chunk is None:
        return 0
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"chunk={chunk} must be a power of two >= 16 (or None for the default)")
    return int(chunk)


def rms_normalise(
    fields: torch.Tensor,
    n_context: int | None = None,
    eps: float = DEFAULT_EPS,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton `physok.data.normalise.rms_normalise`: (fields / scales, scales (B, C) fp32).

    `chunk` (elements of one frame per program, a power of two) is for tests that force the
    split reduction; None picks the default. Differentiable w.r.t. fields, through the scales.
    """
    _check_fields(fields, "rms_normalise")
    n = _n_context(fields, n_context)
    fields = fields.contiguous()
    if _direct(fields):
        return _normalise_run(fields, n, float(eps), _check_chunk(chunk), wrap=False)
    return _normalise_op(fields, n, float(eps), _check_chunk(chunk))


def rms_denormalise(
    fields: torch.Tensor, scales: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Triton `physok.data.normalise.rms_denormalise`: fields * scales, in fields' dtype.

    Differentiable w.r.t. fields and scales; the scales are used (and their gradient returned)
    in float32.
    """
    _check_fields(fields, "rms_denormalise")
    s = _check_stat(scales, "scales", fields)
    fields = fields.contiguous()
    if _direct(fields, s):
        return _affine(fields, s, None, None, 0, _check_chunk(chunk), wrap=False)
    return _denormalise_op(fields, s, _check_chunk(chunk))


def zscore_normalise(
    fields: torch.Tensor,
    n_context: int | None = None,
    eps: float = DEFAULT_EPS,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton `physok.data.normalise.zscore_normalise`: ((fields - mean) / std, mean, std).

    mean and std are (B, C) fp32, over the first `n_context` frames (all when None) and every
    grid point; std is the population standard deviation clamped >= eps. `chunk` as in
    `rms_normalise`. Differentiable w.r.t. fields, through mean and std too.
    """
    _check_fields(fields, "zscore_normalise")
    n = _n_context(fields, n_context)
    fields = fields.contiguous()
    if _direct(fields):
        return _normalise_run(fields, n, float(eps), _check_chunk(chunk), False, zscore=True)
    return _zscore_op(fields, n, float(eps), _check_chunk(chunk))


def zscore_denormalise(
    fields: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """Triton `physok.data.normalise.zscore_denormalise`: fields * std + mean, in fields' dtype.

    Differentiable w.r.t. fields, mean and std; the statistics are used (and their gradients
    returned) in float32.
    """
    _check_fields(fields, "zscore_denormalise")
    m = _check_stat(mean, "mean", fields)
    s = _check_stat(std, "std", fields)
    fields = fields.contiguous()
    if _direct(fields, m, s):
        t = fields.shape[1]
        return _affine(fields, s, None, None, t, _check_chunk(chunk), wrap=False, offset=m)
    return _zscore_denormalise_op(fields, m, s, _check_chunk(chunk))
