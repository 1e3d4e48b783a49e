"""The one place that decides, per op call, between a fast path and its reference.

Resolution order: an explicit `backend=` argument other than "auto" (configs pass theirs
through), else the `PHYSOK_KERNELS` environment variable, else "auto". An argument of "auto"
(every model config's default) means "no preference", so the variable still applies to models
built with default configs. "auto" picks the Triton kernel when the
input lives on a CUDA device and Triton imports, and the reference otherwise. Forcing "triton"
on a CPU tensor is allowed only under `TRITON_INTERPRET=1` (that is how the kernels are tested
without a GPU); anything else is a clear error rather than a silent fallback.

"native" selects the compiled C++/CUDA implementation (`csrc/`, built on first use by
`physok.ops.native_build`) of the ops in NATIVE_OPS; every other op treats "native" as "auto", so
`PHYSOK_KERNELS=native` can be set globally.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "triton", "reference", "native"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "reference", "native")
# Ops with a native implementation in csrc/.
NATIVE_OPS: frozenset[str] = frozenset({"binned_spectral_power"})
ENV_VAR = "PHYSOK_KERNELS"


def requested_backend(backend: str | None = None) -> str:
    """The backend asked for: the argument unless it is None or "auto", else $PHYSOK_KERNELS,
    else "auto"."""
    if backend is not None and backend.strip().lower() == "auto":
        backend = None
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    choice = choice.strip().lower()
    if choice not in BACKENDS:
        source = "backend argument" if backend is not None else f"${ENV_VAR}"
        raise ValueError(f"{source}={choice!r} is not one of {', '.join(BACKENDS)}")
    return choice


def interpreting() -> bool:
    """True when Triton kernels run on the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Resolved once at import: a constant is free to read and lets torch.compile trace the dispatch
# without a graph break.
_TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    return _TRITON_AVAILABLE


def use_triton(tensor: torch.Tensor, backend: str | None = None, op: str = "op") -> bool:
    """Whether `op` on `tensor` should run its Triton kernel."""
    choice = requested_backend(backend)
    if choice == "native":  # callers check use_native first; ops without one behave as auto
        choice = "auto"
    if choice == "reference":
        return False
    runnable = triton_available() and (tensor.is_cuda or (interpreting() and tensor.is_cpu))
    if choice == "triton" and not runnable:
        why = (
            "triton is not installed"
            if not triton_available()
            else f"the input is on {tensor.device} (Triton needs CUDA, or TRITON_INTERPRET=1 "
            "set before start-up for CPU)"
        )
        raise RuntimeError(f"{op}: backend 'triton' was forced but {why}; use 'auto' instead")
    if choice == "auto":
        return triton_available() and tensor.is_cuda
    return runnable


def use_native(backend: str | None = None, op: str = "op") -> bool:
    """Whether `op` should run its native (csrc/) implementation: "native" was asked for and
    `op` has one. Whether the library builds is the caller's check (`physok.ops.native_build`).
    """
    return requested_backend(backend) == "native" and op in NATIVE_OPS
