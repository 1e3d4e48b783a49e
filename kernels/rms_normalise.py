"""Triton sample-wise, per-field RMS normalisation and its inverse, with autograd.

Semantics are those of the reference `physok.data.normalise`: fields (B, T, C, *spatial), one
scale per (sample, field) = sqrt(mean over the first `n_context` frames and all grid points of
f²), clamped below by eps; normalise divides every frame (context and target) by it, denormalise
multiplies. Scales are fp32; outputs keep the input's dtype; every sum accumulates in fp32.

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

Backward. With y = f / s, s = max(sqrt(Q / N), eps), Q = sum_{t < n} f², N = n * S, and an
upstream gradient g for y and g_s for the returned scales:
    df = g / s + [t < n] [s > eps] f (g_s - D / s²) / (N s),   D = sum_{all t} g f.
D is the same partial-sum kernel (over all frames, on g and f), the per-(b, c) coefficients are
B x C torch ops, and df is one fused elementwise launch. A clamped scale (all-zero field) passes
no gradient through s; unlike the reference (whose sqrt backward gives NaN at 0) the gradient is
then just g / eps. A scale exactly equal to eps counts as clamped. Denormalise's backward is
dfields = g * s (elementwise) and dscales = sum g * fields (the partial-sum kernel + a sum over
the partials). Double backward is not supported.

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
    part_ptr,
    T,
    C,
    S,
    n_frames,
    n_chunks,
    SQUARE: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    """partials[bc, t, k] = sum over chunk k of frame t of a * b (a * a when SQUARE)."""
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    bi = bc // C
    ci = bc % C
    base = ((bi.to(tl.int64) * T + t) * C + ci) * S
    start = k * (BLOCK * ITERS)
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
    T,
    C,
    S,
    n_parts,
    count,
    eps,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """out = x / max(sqrt(sum(partials[bc]) / count), eps); frame 0, chunk 0 stores the scale."""
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    # Finish the split reduction here: rereading n_parts floats is cheaper than another launch.
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
        tl.store(out_ptr + base + offs, (x / scale).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine_kernel(
    a_ptr,
    alpha_ptr,
    b_ptr,
    beta_ptr,
    out_ptr,
    T,
    C,
    S,
    t_lim,
    HAS_B: tl.constexpr,
    BLOCK: tl.constexpr,
    ITERS: tl.constexpr,
):
    """out = a * alpha[bc] (+ b * beta[bc] on frames t < t_lim when HAS_B)."""
    bc = tl.program_id(0)
    t = tl.program_id(1)
    k = tl.program_id(2)
    alpha = tl.load(alpha_ptr + bc)
    if HAS_B:
        beta = tl.load(beta_ptr + bc)
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
            b = tl.load(b_ptr + base + offs, mask=offs < s_b, other=0.0).to(tl.float32)
            out += b * beta
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


def _field_dot(
    a: torch.Tensor, b: torch.Tensor | None, n_frames: int, chunk: int, wrap: bool = True
) -> torch.Tensor:
    """(B * C, n_frames * n_chunks) fp32 partial sums of a * b (a² when b is None)."""
    bsz, t, c, s = _dims(a)
    block, iters, n_chunks = _tiling(s, chunk)
    part = empty((bsz * c, n_frames * n_chunks), torch.float32, a.device)
    _launch(_partials_kernel, wrap)[(bsz * c, n_frames, n_chunks)](
        a,
        a if b is None else b,
        part,
        t,
        c,
        s,
        n_frames,
        n_chunks,
        SQUARE=b is None,
        BLOCK=block,
        ITERS=iters,
        **_warps(),
    )
    return part


def _affine(
    a: torch.Tensor,
    alpha: torch.Tensor,
    b: torch.Tensor | None,
    beta: torch.Tensor | None,
    t_lim: int,
    chunk: int,
    wrap: bool = True,
) -> torch.Tensor:
    bsz, t, c, s = _dims(a)
    block, iters, n_chunks = _tiling(s, chunk)
    out = empty(tuple(a.shape), a.dtype, a.device)
    _launch(_affine_kernel, wrap)[(bsz * c, t, n_chunks)](
        a,
        alpha,
        a if b is None else b,
        alpha if beta is None else beta,
        out,
        t,
        c,
        s,
        t_lim,
        HAS_B=b is not None,
        BLOCK=block,
        ITERS=iters,
        **_warps(),
    )
    return out


# --------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------


def _normalise_run(
    fields: torch.Tensor, n_context: int, eps: float, chunk: int, wrap: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, t, c, s = _dims(fields)
    block, iters, n_chunks = _tiling(s, chunk)
    part = _field_dot(fields, None, n_context, chunk, wrap)
    out = empty(tuple(fields.shape), fields.dtype, fields.device)
    scales = empty((bsz, c), torch.float32, fields.device)
    _launch(_normalise_kernel, wrap)[(bsz * c, t, n_chunks)](
        fields,
        part,
        out,
        scales,
        t,
        c,
        s,
        n_context * n_chunks,
        float(n_context * s),
        float(eps),
        BLOCK=block,
        ITERS=iters,
        BLOCK_P=min(_PARTIALS_BLOCK, triton.next_power_of_2(n_context * n_chunks)),
        **_warps(),
    )
    return out, scales


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
) -> torch.Tensor:
    return _affine(a, alpha, b, beta, t_lim, chunk)


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
    n_frames = fields.shape[1]
    n = n_frames if n_context is None else int(n_context)
    if not 1 <= n <= n_frames:
        raise ValueError(f"n_context={n_context} outside 1..{n_frames} snapshots")
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
    if scales.shape != (fields.shape[0], fields.shape[2]):
        raise ValueError(
            f"scales shape {tuple(scales.shape)} does not match fields (B={fields.shape[0]}, "
            f"C={fields.shape[2]})"
        )
    if scales.device != fields.device:
        raise ValueError(f"scales are on {scales.device} but fields on {fields.device}")
    s = scales.to(torch.float32).contiguous()
    fields = fields.contiguous()
    if _direct(fields, s):
        return _affine(fields, s, None, None, 0, _check_chunk(chunk), wrap=False)
    return _denormalise_op(fields, s, _check_chunk(chunk))
