"""Wall-clock throughput and model-FLOPs utilisation (MFU) of training steps.

Three pieces, used together by the training stages and the benchmarks:

- `count_step_flops(fn)`: the model FLOPs of one training step, counted by running `fn` once
  under `torch.utils.flop_counter.FlopCounterMode`. What it counts: convolutions (forward,
  input gradient and weight gradient), matmuls (`mm`/`addmm`/`bmm`/`baddbmm`) and attention
  (the SDPA flash / memory-efficient / cuDNN kernels, plus the CPU flash kernel, which torch's
  table leaves out and this module adds). One multiply-add is 2 FLOPs; padding zeros count
  (torch's convention: a padded conv costs what its output shape says); causal attention is
  counted as full attention, as torch does. Elementwise ops, normalisations, reductions and
  FFTs count 0, as usual for MFU.

  Custom ops are invisible to FlopCounterMode: it only knows aten ops, so our Triton kernels
  (`torch.ops.physok.causal_conv3d` and its `_dgrad` / `_wgrad` ops, registered through
  `physok_kernels._common.define_op`) would count 0 FLOPs. This module therefore registers
  their formulas with the counter (`extra_flop_formulas()`); they are defined to agree exactly
  with what the reference (`F.pad` + `F.conv3d`) path counts, so a step counts the same on
  either backend; our elementwise / reduction ops (`ZERO_FLOP_OPS`) count 0 like their
  references. Any other torch op from outside aten that runs in the step has no formula;
  `count_step_flops` warns and names it. The `flash-attn` package's kernels (FA4 CuTe, FA2)
  may not be torch ops at all, and then they are not even seen: attention through
  `physok.ops.attention` with the "flash" backend can count 0. So count a step with the
  reference implementations, which compute the same model FLOPs: attention backend "sdpa"
  (argument, or `PHYSOK_ATTENTION=sdpa` where the model leaves the choice to the environment;
  this also counts the true head dim, not the flash path's padded one) and, if some other op
  is reported, its reference (model configs take `kernel_backend="reference"`), or pass a
  formula via `extra_formulas`.

  `fn` runs once for real: pass a closure that does forward and backward only. An optimiser
  step would add its own matmuls (SOAP's preconditioner) to the count, which are not model
  FLOPs. Count on the eager (uncompiled) model; the FLOPs of a compiled step are the same.
  In data-parallel training count one rank's step: FLOPs and peak are both per device.

- `peak_flops(device, dtype)`: the dense (no sparsity) tensor-core peak of known NVIDIA GPUs,
  from their datasheets; `$PHYSOK_PEAK_TFLOPS` overrides it (e.g. with a measured ceiling);
  None on CPU or an unknown GPU, and then MFU is not reported.

- `ThroughputMeter`: fed each step's wall-clock seconds and sample count; gives steps/s,
  samples/s and MFU = flops_per_step * steps/s / peak. The first `warmup_steps` steps (1 by
  default: the step where torch.compile compiles and Triton autotunes, often seconds) are kept
  out of the rates and reported separately as `warmup_s`.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from physok.ops.backend import interpreting, triton_available

PEAK_ENV = "PHYSOK_PEAK_TFLOPS"
Shape = Sequence[int]

# Namespaces whose ops FlopCounterMode either has formulas for or rightly counts as 0 FLOPs
# (core ops, and the collectives DDP/FSDP run in the backward).
_KNOWN_NAMESPACES = frozenset({"aten", "prims", "prim", "c10d", "_c10d_functional", "profiler"})
# Our custom ops that are elementwise or reductions: 0 model FLOPs, like their aten references.
ZERO_FLOP_OPS = frozenset(
    {
        "physok::rms_normalise",
        "physok::rms_field_dot",
        "physok::rms_affine",
        "physok::rms_denormalise",
        "physok::zscore_normalise",
        "physok::zscore_field_sums",
        "physok::zscore_denormalise",
        "physok::binned_spectral_power",
        "physok_native::binned_spectral_power",
    }
)


# ---- FLOP formulas ---------------------------------------------------------------------------
def conv_flops(out_shape: tuple[int, ...], in_channels: int, kernel: tuple[int, ...]) -> int:
    """2 * (output elements) * (input channels) * (kernel taps): one conv pass, ungrouped."""
    return 2 * math.prod(out_shape) * in_channels * math.prod(kernel)


def attention_flops(
    q_shape: tuple[int, ...], k_shape: tuple[int, ...], v_shape: tuple[int, ...]
) -> int:
    """Forward attention FLOPs of (B, H, S, D) tensors: QK^T and PV, as torch counts them."""
    b, h, sq, dq = q_shape
    sk, dv = k_shape[-2], v_shape[-1]
    return 2 * b * h * sq * sk * dq + 2 * b * h * sq * sk * dv


# Signatures follow the ops' schemas with tensors replaced by their shapes (FlopCounterMode's
# shape wrapper does that) and the output shape passed as `out_shape`.
def _physok_conv_fwd(
    x: Shape, weight: Shape, bias: Any, *conv: Any, out_shape: Shape, **kw: Any
) -> int:
    return conv_flops(tuple(out_shape), weight[1], tuple(weight[2:]))


def _physok_conv_dgrad(grad: Shape, weight: Shape, *rest: Any, out_shape: Shape, **kw: Any) -> int:
    # The transposed conv: every (output position, tap, channel pair) once, like the forward.
    return conv_flops(tuple(grad), weight[1], tuple(weight[2:]))


def _physok_conv_wgrad(
    grad: Shape, x: Shape, weight: Shape, *conv: Any, out_shape: Shape, **kw: Any
) -> int:
    return conv_flops(tuple(grad), x[1], tuple(weight[2:]))


def _sdpa_cpu_fwd(
    q: Shape, k: Shape, v: Shape, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    return attention_flops(tuple(q), tuple(k), tuple(v))


def _sdpa_cpu_bwd(
    grad_out: Shape, q: Shape, k: Shape, v: Shape, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    # dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: four matmuls, twice the forward.
    return 2 * attention_flops(tuple(q), tuple(k), tuple(v))


def _ensure_physok_ops_registered() -> None:
    """Import the kernel module whose import registers `torch.ops.physok.*`.

    Only where a step could run the kernels (CUDA, or the CPU interpreter): elsewhere they never
    run, and importing triton there would fix its interpreter mode too early.
    """
    if "physok_kernels.causal_conv3d" in sys.modules or not triton_available():
        return
    if torch.cuda.is_available() or interpreting():
        try:
            importlib.import_module("physok_kernels.causal_conv3d")
        except ImportError:  # a broken triton install: the reference path runs instead
            pass


def _op_packet(namespace: str, name: str) -> Any | None:
    try:
        return getattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):
        return None


def extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas FlopCounterMode lacks: our Triton conv ops and the CPU flash-attention kernel.

    Keys are op packets (`torch.ops.physok.causal_conv3d`, ...); ops not registered in this
    process are left out.
    """
    _ensure_physok_ops_registered()
    wanted = {
        ("physok", "causal_conv3d"): _physok_conv_fwd,
        ("physok", "causal_conv3d_dgrad"): _physok_conv_dgrad,
        ("physok", "causal_conv3d_wgrad"): _physok_conv_wgrad,
        ("aten", "_scaled_dot_product_flash_attention_for_cpu"): _sdpa_cpu_fwd,
        ("aten", "_scaled_dot_product_flash_attention_for_cpu_backward"): _sdpa_cpu_bwd,
    }
    formulas = {}
    for (namespace, name), formula in wanted.items():
        packet = _op_packet(namespace, name)
        if packet is not None:
            formulas[packet] = formula
    return formulas


# ---- counting --------------------------------------------------------------------------------
class _OpRecorder(TorchDispatchMode):
    """Records the ops a step runs, so ops without a FLOP formula can be named."""

    supports_higher_order_operators = True

    def __init__(self) -> None:
        super().__init__()
        self.packets: set[Any] = set()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        # Operator overloads only: higher-order ops (cond, flex attention) are FlopCounterMode's.
        if isinstance(func, torch._ops.OpOverload):
            self.packets.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call: the total, per op, and the non-aten ops that had no formula."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted_ops: tuple[str, ...] = ()


def _uncounted(packet: Any, registry: Mapping[Any, Any]) -> bool:
    """An op that ran without a FLOP formula and is not known to be free of model FLOPs."""
    qualified = packet._qualified_op_name  # "namespace::name"
    namespace = qualified.split("::", 1)[0]
    return (
        packet not in registry
        and namespace not in _KNOWN_NAMESPACES
        and qualified not in ZERO_FLOP_OPS
    )


def _eager_stance() -> Any:
    """torch.compiler.set_stance("force_eager") (torch >= 2.6); a no-op where absent."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else nullcontext()


def count_flops(
    fn: Callable[[], Any], extra_formulas: Mapping[Any, Callable[..., int]] | None = None
) -> FlopCount:
    """Run `fn()` once under FlopCounterMode (display off) and return the detailed count.

    Counting leaves no trace on the run: the RNG streams are restored afterwards (a training
    forward draws drop-path masks; an exact resume depends on them), and compiled modules run
    eagerly while counting. Dynamo cannot trace under a dispatch mode and would otherwise mark
    their code "skip" for good, so a first call made while counting would disable
    torch.compile for the rest of the run.
    """
    formulas = {**extra_flop_formulas(), **(extra_formulas or {})}
    counter = FlopCounterMode(display=False, custom_mapping=formulas)
    recorder = _OpRecorder()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    # The recorder is entered last, so it sees each op first, before the counter decomposes it.
    with torch.random.fork_rng(devices=devices), _eager_stance(), counter, recorder:
        fn()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    uncounted = sorted(str(p) for p in recorder.packets if _uncounted(p, counter.flop_registry))
    return FlopCount(int(counter.get_total_flops()), by_op, tuple(uncounted))


def count_step_flops(
    fn: Callable[[], Any], extra_formulas: Mapping[Any, Callable[..., int]] | None = None
) -> int:
    """Model FLOPs of one training step: `fn()` runs forward + backward once, counted.

    See the module docstring for what is counted. Warns (and names them) when ops from outside
    aten ran without a FLOP formula, since the total then undercounts.
    """
    count = count_flops(fn, extra_formulas)
    if count.uncounted_ops:
        warnings.warn(
            f"count_step_flops: no FLOP formula for {', '.join(count.uncounted_ops)}; their "
            "FLOPs are not in the total. Count the step with the reference implementations "
            "(kernel_backend='reference', SDPA attention) or pass extra_formulas",
            stacklevel=2,
        )
    return count.total


# ---- peak FLOP/s -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuPeak:
    """Dense peak TFLOP/s of one GPU model: 16-bit tensor cores, TF32 tensor cores, FP32."""

    name: str
    half: float
    tf32: float
    fp32: float


# NVIDIA datasheets, dense figures (the datasheets print bf16/fp16/tf32 "with sparsity",
# twice these). Matched against torch.cuda.get_device_name in order; first match wins, so
# variants come before their base name.
#   H100 SXM5: BF16/FP16 1979*, TF32 989*, FP32 67     H100 PCIe: 1513*, 756*, 51
#   H100 NVL:  1671*, 835*, 60                        H200 (SXM): as H100 SXM; H200 NVL: as H100 NVL
#   GH200 (Hopper part): as H100 SXM                   A100 (SXM4 / PCIe): 312, 156, 19.5 (dense)
#   L4: 242*, 120*, 30.3    L40S: 733*, 366*, 91.6    L40: 362*, 181*, 90.5    A10: 250*, 125*, 31.2
#   B200 (HGX B200, per GPU): BF16 4.5 PF*, TF32 2.25 PF*, FP32 75
PEAK_TABLE: tuple[tuple[str, GpuPeak], ...] = (
    (r"GH200", GpuPeak("GH200", 989.5, 494.5, 67.0)),
    (r"H200 NVL", GpuPeak("H200 NVL", 835.5, 417.5, 60.0)),
    (r"H200", GpuPeak("H200", 989.5, 494.5, 67.0)),
    (r"H100 NVL", GpuPeak("H100 NVL", 835.5, 417.5, 60.0)),
    (r"H100 PCIe", GpuPeak("H100 PCIe", 756.5, 378.0, 51.0)),
    # The SXM part reports e.g. "NVIDIA H100 80GB HBM3".
    (r"H100", GpuPeak("H100 SXM", 989.5, 494.5, 67.0)),
    (r"A100", GpuPeak("A100", 312.0, 156.0, 19.5)),
    (r"B200", GpuPeak("B200", 2250.0, 1125.0, 75.0)),
    (r"L40S", GpuPeak("L40S", 366.5, 183.0, 91.6)),
    (r"L40\b", GpuPeak("L40", 181.0, 90.5, 90.5)),
    (r"L4\b", GpuPeak("L4", 121.0, 60.0, 30.3)),
    (r"A10\b", GpuPeak("A10", 125.0, 62.5, 31.2)),
)


def lookup_gpu(device_name: str) -> GpuPeak | None:
    """The table entry for a `torch.cuda.get_device_name` string, or None if unknown."""
    for pattern, peak in PEAK_TABLE:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


def _env_peak() -> float | None:
    raw = os.environ.get(PEAK_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"${PEAK_ENV}={raw!r} is not a positive number of TFLOP/s (e.g. 790); "
            "unset it to use the datasheet table"
        )
    return value * 1e12


def peak_flops(
    device: torch.device | str, dtype: torch.dtype, *, tf32: bool = True
) -> float | None:
    """Dense peak FLOP/s of `device` for work in `dtype`, or None when unknown.

    `$PHYSOK_PEAK_TFLOPS` (TFLOP/s) wins for any device, CPU included, so a measured ceiling
    can replace the datasheet. Otherwise: None on non-CUDA devices, unknown GPUs and dtypes other
    than bf16/fp16/fp32. fp32 maps to the TF32 tensor-core peak (`tf32=True`: the convs run
    that way under cuDNN's default `allow_tf32`) or to the plain FP32 peak (`tf32=False`).
    """
    override = _env_peak()
    if override is not None:
        return override
    device = torch.device(device)
    if device.type != "cuda":
        return None
    gpu = lookup_gpu(torch.cuda.get_device_name(device))
    if gpu is None:
        return None
    if dtype in (torch.bfloat16, torch.float16):
        tflops = gpu.half
    elif dtype == torch.float32:
        tflops = gpu.tf32 if tf32 else gpu.fp32
    else:
        return None
    return tflops * 1e12


def mfu(
    flops_per_step: float | None, steps_per_s: float | None, peak: float | None
) -> float | None:
    """Model-FLOPs utilisation: achieved FLOP/s over peak FLOP/s; None if any input is unknown."""
    if flops_per_step is None or steps_per_s is None or peak is None or peak <= 0:
        return None
    return flops_per_step * steps_per_s / peak


# ---- the meter -------------------------------------------------------------------------------
class ThroughputMeter:
    """Steps/s, samples/s and MFU of a training loop, fed one step at a time.

    `warmup_steps` first steps are excluded from the rates (their total time is `warmup_s`).
    `window`: rates over the last `window` measured steps (a moving window, for progress
    logs); None averages over every measured step since the warm-up. Rates are None until a
    step has been measured. `flops_per_step` and `peak_flops` may be set after construction
    (e.g. once the first step has been counted); MFU is None while either is unknown.
    """

    def __init__(
        self,
        *,
        flops_per_step: int | None = None,
        peak_flops: float | None = None,
        warmup_steps: int = 1,
        window: int | None = None,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.flops_per_step = flops_per_step
        self.peak_flops = peak_flops
        self.warmup_steps = warmup_steps
        self.window = window
        self.steps_seen = 0
        self.warmup_s = 0.0
        # (seconds, samples) of the measured steps; maxlen drops the oldest beyond the window.
        self._steps: deque[tuple[float, int]] = deque(maxlen=window)

    def update(self, step_seconds: float, samples: int) -> None:
        """Record one step that took `step_seconds` of wall clock and processed `samples`."""
        if not (step_seconds > 0 and math.isfinite(step_seconds)):
            raise ValueError(f"step_seconds must be a positive number, got {step_seconds}")
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        self.steps_seen += 1
        if self.steps_seen <= self.warmup_steps:
            self.warmup_s += step_seconds
            return
        self._steps.append((step_seconds, samples))

    @contextmanager
    def step(self, samples: int, sync: torch.device | None = None) -> Iterator[None]:
        """Time the enclosed block as one step. `sync`: a CUDA device to synchronise before
        reading the clock (otherwise queued kernels are timed by whichever later step waits)."""
        start = time.perf_counter()
        yield
        if sync is not None and torch.device(sync).type == "cuda":
            torch.cuda.synchronize(sync)
        self.update(time.perf_counter() - start, samples)

    @property
    def steps_measured(self) -> int:
        """Steps currently in the rates (after the warm-up, within the window)."""
        return len(self._steps)

    @property
    def steps_per_s(self) -> float | None:
        if not self._steps:
            return None
        return len(self._steps) / math.fsum(s for s, _ in self._steps)

    @property
    def samples_per_s(self) -> float | None:
        if not self._steps:
            return None
        return sum(n for _, n in self._steps) / math.fsum(s for s, _ in self._steps)

    @property
    def mfu(self) -> float | None:
        return mfu(self.flops_per_step, self.steps_per_s, self.peak_flops)

    def as_dict(self) -> dict[str, float | int | None]:
        """The record for metrics.jsonl."""
        return {
            "steps_per_s": self.steps_per_s,
            "samples_per_s": self.samples_per_s,
            "mfu": self.mfu,
            "flops_per_step": self.flops_per_step,
            "steps_measured": self.steps_measured,
            "warmup_s": self.warmup_s if self.warmup_steps else None,
        }


# ---- FLOPs per step, counted once per step shape ---------------------------------------------
class StepFlops:
    """Model FLOPs of a training step, counted once per distinct `key` and cached.

    A step's FLOPs depend on its shapes: the tokeniser stage draws new compression scales every
    step (16 combinations), so the key is the scales. Counting runs one extra forward + backward
    under FlopCounterMode (no optimiser step), so it is done only when MFU can be reported
    (`enabled`: a known peak, i.e. a known GPU); otherwise `get` returns None without running.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._cache: dict[Any, int] = {}

    def get(self, key: Any, forward_backward: Callable[[], Any]) -> int | None:
        if not self.enabled:
            return None
        if key not in self._cache:
            self._cache[key] = count_step_flops(forward_backward)
        return self._cache[key]
