"""Optimisers of the two training stages: SOAP (tokeniser pretraining) and AdamW (rollout).

heavyball and torch.compile: heavyball wraps its update kernels in `torch.compile`, controlled
by the module-global `heavyball.utils.compile_mode` (read at each call until the first compiled
call is cached). On CPU compiling costs ~43 s cold and the optimiser's own `compile_step=False`
does not turn it off (measured: 3 SOAP steps took 107 s with only compile_step=False and 0.04 s
with compile_mode=None, with identical results). `set_heavyball_compile` is therefore the one
place that flips that global, explicitly and process-wide; `build_soap` calls it with
`compile=None` meaning "compile on CUDA, not on CPU".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import heavyball
import heavyball.utils
import torch

# heavyball's own default, restored when compilation is switched back on.
_HEAVYBALL_DEFAULT_COMPILE_MODE = heavyball.utils.compile_mode or "max-autotune-no-cudagraphs"

ParamsT = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]

# heavyball's own default limit for SOAP's per-dimension eigenbases (the paper preset keeps it).
SOAP_MAX_PRECOND_DIM = 2048


def set_heavyball_compile(enabled: bool) -> None:
    """Process-wide switch for heavyball's torch.compile of optimiser kernels.

    Affects every heavyball optimiser in the process that has not compiled yet (the global
    is read when a kernel first runs). Off on CPU (compile time dwarfs the step), on for CUDA.
    """
    heavyball.utils.compile_mode = _HEAVYBALL_DEFAULT_COMPILE_MODE if enabled else None


def heavyball_compile_enabled() -> bool:
    return heavyball.utils.compile_mode is not None


def _params_device(params: list) -> torch.device:
    for p in params:
        tensors = p["params"] if isinstance(p, dict) else [p]
        for t in tensors:
            return t.device
    raise ValueError("the optimiser got no parameters (is every parameter frozen?)")


def _check_common(lr: float, betas: tuple[float, float], weight_decay: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


def build_soap(
    params: ParamsT,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.95, 0.95),
    weight_decay: float = 0.01,
    *,
    eps: float = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = SOAP_MAX_PRECOND_DIM,
    compile: bool | None = None,
) -> heavyball.SOAP:
    """heavyball's SOAP (Vyas et al. 2024) with the tokeniser-pretraining defaults.

    `compile=None` compiles heavyball's kernels only when the parameters live on CUDA (see the
    module docstring: this sets a process-wide heavyball global). `precondition_frequency` 10 is
    the SOAP reference's default: eigenbases are refreshed every 10 steps. A weight dimension
    longer than `max_precond_dim` gets no eigenbasis (heavyball leaves it unrotated: Adam's
    diagonal scaling along it), which bounds the cost of the largest weights.
    """
    params = list(params)
    _check_common(lr, tuple(betas), weight_decay)
    if compile is None:
        compile = _params_device(params).type == "cuda"
    set_heavyball_compile(compile)
    return heavyball.SOAP(
        params,
        lr=lr,
        betas=tuple(betas),
        weight_decay=weight_decay,
        eps=eps,
        precondition_frequency=precondition_frequency,
        max_precond_dim=max_precond_dim,
        compile_step=False,
    )


def build_adamw(
    params: ParamsT,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 1e-4,
    *,
    eps: float = 1e-10,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """torch AdamW with the rollout defaults (Walrus: wd 1e-4, eps 1e-10), fused by default.

    torch's fused kernel runs on CPU and CUDA. On the fast experiment's rollout model (2-core CPU)
    the optimiser step fell from ~10 ms to ~1 ms, about 5% of a training step.
    """
    params = list(params)
    _check_common(lr, tuple(betas), weight_decay)
    if fused is None:
        fused = _params_device(params).type in ("cpu", "cuda")
    return torch.optim.AdamW(
        params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, eps=eps, fused=fused
    )


OPTIMISERS = ("soap", "adamw")


def build_optimizer(
    name: str,
    params: ParamsT,
    *,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    compile: bool | None = None,
    max_precond_dim: int = SOAP_MAX_PRECOND_DIM,
) -> torch.optim.Optimizer:
    """`build_soap` or `build_adamw` by name (the config option `optimizer`);
    `max_precond_dim` is SOAP's (AdamW has no preconditioner)."""
    if name == "soap":
        return build_soap(
            params, lr, betas, weight_decay, max_precond_dim=max_precond_dim, compile=compile
        )
    if name == "adamw":
        return build_adamw(params, lr, betas, weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMISERS}, got {name!r}")
