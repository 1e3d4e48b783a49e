"""The one dispatch point for attention: FlashAttention, PyTorch SDPA, or the explicit reference.

`attention(q, k, v, *, bias=None, causal=False, scale=None, backend=None)` with q, k, v of shape
(B, H, L, D) returns softmax(q kᵀ · scale + bias + causal mask) v, shape (B, H, Lq, D).

Backends:
    "flash"  FlashAttention. The `flash-attn` package when it is installed and the input is on
             CUDA (FA4 `flash_attn.cute` on Hopper/Blackwell, else FA2 `flash_attn_func`); else
             PyTorch SDPA restricted to its FLASH_ATTENTION / cuDNN backends. Needs CUDA and
             fp16/bf16 (the autocast dtype counts). Head dims that are not a multiple of 8 (the
             paper's 68) are zero-padded for the kernel and sliced back; the softmax scale stays
             1/sqrt(original D), passed explicitly. Zero columns add nothing to q·k and produce
             output columns that are dropped, so padding is exact.
    "sdpa"   plain `F.scaled_dot_product_attention`; torch picks its kernel.
    "math"   the reference, written out: fp32 (or fp64) accumulation of the scores, the softmax
             and the weighted sum, cast back to the input dtype. Used by the tests.

Selection: the `backend` argument > $PHYSOK_ATTENTION (auto|flash|sdpa|math) > "auto"; an
argument of "auto" (a config's way of saying "no preference") also defers to the variable.
"auto" is "flash" when the call can use it (CUDA, half precision, no bias), else "sdpa"
(on CUDA its memory-efficient kernel takes an additive bias exactly, with head dims padded to
a multiple of 8 in half precision as that kernel needs; on CPU torch's fused CPU kernel). The
reference is only used when asked for: it materialises the full score matrix.

Calls with an additive `bias` never run a flash kernel (they cannot take one): they go to SDPA
with `attn_mask`, which is exact, even when "flash" was forced — the temporal T5 bias is never
approximated. Forcing "flash" for a call it cannot serve otherwise (CPU, fp32) is an error
naming the reason, not a silent fallback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

ENV_VAR = "PHYSOK_ATTENTION"
BACKENDS: tuple[str, ...] = ("auto", "flash", "sdpa", "math")
# Flash kernels load head dims in 16-byte vectors: 8 half-precision elements.
HEAD_DIM_MULTIPLE = 8
FLASH_MAX_HEAD_DIM = 256
# FA4's Hopper kernels are instantiated for these head dims only; pad up to the next one.
_FA4_HEAD_DIMS = (64, 96, 128, 192, 256)
_HALF = (torch.float16, torch.bfloat16)


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument unless None or "auto", else $PHYSOK_ATTENTION, else
    "auto" (the same rule as physok.ops.backend)."""
    if backend is not None and backend.strip().lower() == "auto":
        backend = None
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    choice = choice.strip().lower()
    if choice not in BACKENDS:
        source = "attention backend argument" if backend is not None else f"${ENV_VAR}"
        raise ValueError(
            f"{source}={choice!r} is not one of {', '.join(BACKENDS)} "
            f"(set the argument or {ENV_VAR} to one of these)"
        )
    return choice


# -- what this machine can run ---------------------------------------------------------------


# Probed once per process (CUDA queries and the flash-attn import are not free, and a plain dict
# read keeps torch.compile tracing cheap). Keys: "package", "sdpa_flash".
_PROBE: dict[str, object] = {}


def _probe() -> dict[str, object]:
    if _PROBE:
        return _PROBE
    package: tuple[str, Callable[..., object]] | None = None
    sdpa_flash = False
    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        if major in (9, 10, 11):
            try:
                from flash_attn.cute import flash_attn_func as fa4
            except Exception:  # not installed, or its CUDA DSL cannot load here
                pass
            else:
                package = ("fa4", fa4)
        if package is None and major >= 8:
            try:
                from flash_attn import flash_attn_func as fa2
            except Exception:
                pass
            else:
                package = ("fa2", fa2)
        built = getattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)()
        sdpa_flash = bool(built) and major >= 8
    _PROBE.update(package=package, sdpa_flash=sdpa_flash)
    return _PROBE


def probe_kernels() -> None:
    """Detect the flash kernels now (GPU capability, flash-attn import). Attention layers call
    it at construction so the detection never runs inside a torch.compile trace."""
    _probe()


def _flash_attn_package() -> tuple[str, Callable[..., object]] | None:
    """("fa4" | "fa2", flash_attn_func) from the `flash-attn` package, or None if absent."""
    return _probe()["package"]  # type: ignore[return-value]


def _sdpa_flash_available() -> bool:
    """Whether SDPA has a flash attention kernel built in and a GPU (sm80+) to run it."""
    return bool(_probe()["sdpa_flash"])


def available_backends(device: torch.device | str = "cpu") -> tuple[str, ...]:
    """The concrete backends ("flash", "sdpa", "math") that can run on `device`."""
    device = torch.device(device)
    names = ["math", "sdpa"]
    if device.type == "cuda" and (_flash_attn_package() is not None or _sdpa_flash_available()):
        names.append("flash")
    return tuple(names)


def flash_kernel_name() -> str:
    """Which kernel "flash" runs on this machine: "fa4", "fa2", "sdpa-flash" or "none"."""
    package = _flash_attn_package()
    if package is not None:
        return package[0]
    return "sdpa-flash" if _sdpa_flash_available() else "none"


# -- the dispatch ----------------------------------------------------------------------------


def _compute_dtype(q: torch.Tensor) -> torch.dtype:
    """The dtype a kernel will see: the autocast dtype when autocast is on for q's device."""
    if q.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return q.dtype


def _flash_refusal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    """Why the flash path cannot serve this (bias-free) call, or None when it can."""
    if not q.is_cuda:
        return f"the input is on {q.device} (flash kernels need CUDA)"
    if "flash" not in available_backends(q.device):
        return "neither flash-attn nor SDPA's flash/cuDNN kernels are available on this GPU"
    dtype = _compute_dtype(q)
    if dtype not in _HALF:
        return f"the dtype is {dtype} (flash kernels need float16/bfloat16; use autocast)"
    if q.shape[-1] > FLASH_MAX_HEAD_DIM or v.shape[-1] > FLASH_MAX_HEAD_DIM:
        return f"head dim > {FLASH_MAX_HEAD_DIM}"
    if k.shape[1] != q.shape[1]:
        return "q and k/v have different head counts"
    return None


def resolve_backend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    backend: str | None = None,
) -> str:
    """The concrete backend ("flash", "sdpa" or "math") that `attention` runs for this call."""
    choice = requested_backend(backend)
    if choice == "math":
        return "math"
    if choice == "sdpa" or bias is not None:
        # A bias needs an exact path: SDPA with attn_mask (never a flash kernel).
        return "sdpa"
    refusal = _flash_refusal(q, k, v)
    if choice == "flash":
        if refusal is not None:
            raise RuntimeError(
                f"attention: backend 'flash' was forced but {refusal}; use 'auto' or 'sdpa' "
                f"(argument or ${ENV_VAR})"
            )
        return "flash"
    return "flash" if refusal is None else "sdpa"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + bias + causal mask) v over (B, H, L, D) inputs.

    Args:
        q: (B, H, Lq, D); k: (B, H, Lk, D); v: (B, H, Lk, Dv).
        bias: additive float bias broadcastable to (B, H, Lq, Lk); -inf entries mask.
        causal: query i attends to keys j <= i (requires Lq == Lk).
        scale: softmax scale; default 1/sqrt(D).
        backend: "auto" | "flash" | "sdpa" | "math"; None reads $PHYSOK_ATTENTION.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"attention: q, k, v must be (B, H, L, D), got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"attention: causal=True needs equal query and key lengths, got {q.shape[-2]} and "
            f"{k.shape[-2]}"
        )
    if bias is not None and not bias.is_floating_point():
        raise TypeError(f"attention: bias must be an additive float tensor, got {bias.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    chosen = resolve_backend(q, k, v, bias=bias, backend=backend)
    if chosen == "math":
        return attention_math(q, k, v, bias=bias, causal=causal, scale=scale)
    if chosen == "flash":
        return _attention_flash(q, k, v, causal=causal, scale=scale)
    return _attention_sdpa(q, k, v, bias=bias, causal=causal, scale=scale)


def _causal_keep(lq: int, lk: int, device: torch.device) -> torch.Tensor:
    """(Lq, Lk) bool: True where key j <= query i."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril()


def attention_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """The reference: explicit scores, softmax and weighted sum, accumulated in >= fp32."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    acc = torch.promote_types(q.dtype, torch.float32)
    # Autocast would run the matmuls in bf16 and undo the accumulation dtype: a reference
    # must not depend on the caller's autocast state.
    with torch.autocast(q.device.type, enabled=False):
        scores = torch.matmul(q.to(acc), k.to(acc).transpose(-2, -1)) * scale
        if bias is not None:
            scores = scores + bias.to(acc)
        if causal:
            keep = _causal_keep(q.shape[-2], k.shape[-2], q.device)
            scores = scores.masked_fill(~keep, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v.to(acc))
    return out.to(q.dtype)


def _attention_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None,
    causal: bool,
    scale: float,
) -> torch.Tensor:
    dtype = _compute_dtype(q)
    if not q.dtype == k.dtype == v.dtype == dtype:
        # E.g. fp32 q/k out of LayerNorm next to a bf16 v under autocast: one dtype for all.
        q, k, v = (t.to(dtype) for t in (q, k, v))
    if bias is not None:
        # SDPA refuses attn_mask together with is_causal: fold the mask into the bias.
        if causal:
            keep = _causal_keep(q.shape[-2], k.shape[-2], q.device)
            bias = bias.masked_fill(~keep, float("-inf"))
        # SDPA wants the mask in the query dtype.
        bias = bias.to(dtype)
        dv = v.shape[-1]
        unaligned = q.shape[-1] % HEAD_DIM_MULTIPLE or dv % HEAD_DIM_MULTIPLE
        if q.is_cuda and dtype in _HALF and unaligned:
            d = -(-max(q.shape[-1], dv) // HEAD_DIM_MULTIPLE) * HEAD_DIM_MULTIPLE
            # The memory-efficient kernel (the one that takes a bias) needs head dims that are
            # multiples of 8 in half precision; otherwise SDPA silently drops to its math
            # kernel. Zero columns change neither q.k nor the kept output columns: exact.
            q, k, v = (F.pad(t, (0, d - t.shape[-1])) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
            return out[..., :dv]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def _padded_head_dim(d: int, kernel: str) -> int:
    if kernel == "fa4":
        return next(h for h in _FA4_HEAD_DIMS if h >= d)
    return -(-d // HEAD_DIM_MULTIPLE) * HEAD_DIM_MULTIPLE


def _attention_flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float
) -> torch.Tensor:
    dtype = _compute_dtype(q)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    package = _flash_attn_package()
    kernel = package[0] if package is not None else "sdpa-flash"
    dv = v.shape[-1]
    # One padded width for q, k and v (SDPA's flash kernel needs equal qk and v head dims).
    d = max(_padded_head_dim(q.shape[-1], kernel), _padded_head_dim(dv, kernel))
    q, k, v = (F.pad(t, (0, d - t.shape[-1])) if t.shape[-1] != d else t for t in (q, k, v))
    if package is not None:
        # flash-attn takes (B, L, H, D).
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        out = package[1](q, k, v, softmax_scale=scale, causal=causal)
        if isinstance(out, tuple):  # FA4 returns (out, lse)
            out = out[0]
        out = out.transpose(1, 2)
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    return out[..., :dv]
