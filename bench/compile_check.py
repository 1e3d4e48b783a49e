"""Compile every physok Triton kernel for a GPU target offline: no GPU needed, nothing launched.

How to run (from the repository root; the default 105 compiles take ~1-1.5 min on 2 cores):

    python bench/compile_check.py                      # all kernels, bf16 + fp32, sm_90
    python bench/compile_check.py --only conv --dtypes bf16
    python bench/compile_check.py --layouts both --ieee-too   # more conv variants (~4 min)

Another Triton version (e.g. the GPU image's 3.6) from a wheel, without touching the system:

    python -m venv --system-site-packages /tmp/tr36venv
    /tmp/tr36venv/bin/pip install --no-deps triton-3.6.0-*.whl
    /tmp/tr36venv/bin/python bench/compile_check.py

Prints one line per (kernel, problem, config, dtype): OK or FAIL (with the error), the dynamic
shared memory Triton allocates (`metadata.shared`) and, read from the cubin with the
`cuobjdump` that ships with Triton, registers per thread and local (spill/stack) bytes. Exits 1
when any compile fails, when a kernel would not launch on the target (shared memory or registers
over the per-block limit), or when a module launched no kernel at all; 0 otherwise.

What gets compiled. The launches are not re-derived here: the modules' own launch code
(`_fwd_impl`, `_dgrad_impl`, `_wgrad_impl`, `_normalise_run`, `binned_spectral_power`, ...) runs
on `meta` tensors of the real problem sizes with the kernel objects swapped for recorders, so each
recorded launch carries exactly the arguments, constexprs, autotuning configs (`_configs`,
`_flags`, split-K factors) and `num_warps` the module would use on the GPU. Each (launch, config)
is then specialised by Triton's own JIT binder (the same code path `kernel[grid](...)` takes, so
integer ==1 / divisible-by-16 specialisations and pointer alignment match a real launch) and
compiled with `triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`. The one
GPU-dependent input, the SM count behind the split-K factors, is `--sms` (132 = H100/H200 SXM).
`--manual-signature` builds the signature by hand instead (the documented format:
{"x_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"} with constexprs keyed by name), for Triton
versions whose private binder API differs.

Problems (DESIGN.md §3/§8): causal conv layers at batch 2, 9 frames, channels_last_3d
(16->16 3x3x3 at 512², 16->32 1x2x2 stride (1,2,2) at 512², 32->64 3x4x4 stride (2,4,4) at 256²,
64->2048 3x3x3 at 16²) forward, dgrad, wgrad; RMS and z-score normalise / denormalise and their
backward kernels on (2, 10, 5, 512, 512); spectral binning of (2, 10, 5, 512, 512) fields into
the_well's 3 bins (the spectra are fp32 for bf16 and fp32 inputs).

TRITON_INTERPRET is removed from the environment before Triton is imported (the kernel modules
then register their GPU variants, which import fine without CUDA). Compiles go to a fresh
temporary Triton cache unless `--cache-dir` is given, so every run really compiles.
"""

from __future__ import annotations

import os

# Before anything can import triton: the interpreter would replace compilation entirely.
os.environ.pop("TRITON_INTERPRET", None)

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# name: (x shape (B, Ci, T, X, Y), Co, kernel, stride, padding), as in bench/test_causal_conv3d.py
CONV_LAYERS: dict[str, tuple[tuple[int, ...], int, tuple[int, ...], tuple[int, ...], str]] = {
    "16-16_k333_512": ((2, 16, 9, 512, 512), 16, (3, 3, 3), (1, 1, 1), "same"),
    "16-32_k122_s122_512": ((2, 16, 9, 512, 512), 32, (1, 2, 2), (1, 2, 2), "valid"),
    "32-64_k344_s244_256": ((2, 32, 9, 256, 256), 64, (3, 4, 4), (2, 4, 4), "valid"),
    "64-2048_k333_16": ((2, 64, 9, 16, 16), 2048, (3, 3, 3), (1, 1, 1), "same"),
}
FIELDS_SHAPE = (2, 10, 5, 512, 512)  # (B, T, C, X, Y) for RMS normalisation and spectral binning
N_CONTEXT = 9  # context frames the RMS scale is computed over
SM90_MAX_SHARED = 227 * 1024  # opt-in dynamic shared memory per block on H100/H200
MAX_REGS_PER_BLOCK = 65536


@dataclass
class Launch:
    """One recorded kernel launch: the JIT function, its arguments and the configs to compile."""

    module: str
    kernel: str
    problem: str
    dtype: str
    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    configs: list[dict[str, Any]] = field(default_factory=list)


class Recorder:
    """Stands in for a kernel object: `rec[grid](*args, **kwargs)` records instead of launching.

    Accepts what the modules launch: a `JITFunction`, a `triton.autotune` Autotuner (its configs
    are recorded) or the `torch.library.wrap_triton` wrapper around either.
    """

    def __init__(self, target: Any, sink: list[Launch], module: str, problem: str, dtype: str):
        from triton.runtime.jit import JITFunction

        if not isinstance(target, JITFunction) and hasattr(target, "kernel"):
            target = target.kernel  # torch's TraceableTritonKernelWrapper
        configs = getattr(target, "configs", None)
        self.configs = [c.all_kwargs() for c in configs] if configs else [{}]
        fn = target
        while not isinstance(fn, JITFunction):  # Autotuner / Heuristics chains end in a JIT fn
            fn = fn.fn
        self.fn, self.sink = fn, sink
        self.module, self.problem, self.dtype = module, problem, dtype

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, **kwargs: Any) -> None:
            self.sink.append(
                Launch(
                    self.module,
                    self.fn.fn.__name__,
                    self.problem,
                    self.dtype,
                    self.fn,
                    args,
                    kwargs,
                    list(self.configs),
                )
            )

        return launch


def _short(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    return _TORCH_TO_TRITON.get(name, name)


@contextlib.contextmanager
def patched(obj: Any, **attrs: Any) -> Iterator[None]:
    """Temporarily replace attributes of a module."""
    old = {name: getattr(obj, name) for name in attrs}
    for name, value in attrs.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(obj, name, value)


# --------------------------------------------------------------------------------------------
# Recording the modules' launches on meta tensors
# --------------------------------------------------------------------------------------------


def conv_launches(dtypes: list[Any], layouts: list[str], sms: int, ieee_too: bool) -> list[Launch]:
    import physok_kernels.causal_conv3d as mod
    import torch

    from physok.ops.causal_conv3d import spatial_pad

    sink: list[Launch] = []
    formats = {"cl": torch.channels_last_3d, "ncdhw": torch.contiguous_format}
    original = mod._kernel
    tf32_settings = [True, False] if ieee_too else [torch.backends.cudnn.allow_tf32]
    for name, (shape, co, kernel, stride, padding) in CONV_LAYERS.items():
        for dtype in dtypes:
            for layout in layouts:
                for tf32 in tf32_settings if dtype == torch.float32 else [None]:
                    label = name if len(layouts) == 1 else f"{name}/{layout}"
                    if tf32 is not None and ieee_too:
                        label += "/tf32" if tf32 else "/ieee"
                    dname = _short(dtype)

                    def kernel_fn(kind, rows, cols, red, dt, _label=label, _d=dname):
                        tuned = original(kind, rows, cols, red, dt)
                        return Recorder(tuned, sink, mod.__name__, _label, _d)

                    x = torch.empty(shape, dtype=dtype, device="meta")
                    x = x.contiguous(memory_format=formats[layout])
                    w = torch.empty((co, shape[1], *kernel), dtype=dtype, device="meta")
                    b = torch.empty((co,), dtype=dtype, device="meta")
                    px, py = spatial_pad(w, padding)
                    old_tf32 = torch.backends.cudnn.allow_tf32
                    if tf32 is not None:
                        torch.backends.cudnn.allow_tf32 = tf32
                    try:
                        with patched(mod, _kernel=kernel_fn, _sm_count=lambda device: sms):
                            y = mod._fwd_impl(x, w, b, *stride, px, py)
                            g = torch.empty_like(y)  # same layout as the output
                            t, xs, ys = shape[2:]
                            cl = mod._is_channels_last(x)
                            mod._dgrad_impl(g, w, t, xs, ys, cl, *stride, px, py)
                            mod._wgrad_impl(g, x, w, *stride, px, py)
                    finally:
                        torch.backends.cudnn.allow_tf32 = old_tf32
    return sink


def rms_launches(dtypes: list[Any]) -> list[Launch]:
    import physok_kernels.rms_normalise as mod
    import torch

    sink: list[Launch] = []
    original = mod._launch
    b, t, c = FIELDS_SHAPE[:3]
    for dtype in dtypes:
        dname = _short(dtype)
        fields = torch.empty(FIELDS_SHAPE, dtype=dtype, device="meta")
        scales = torch.empty((b, c), dtype=torch.float32, device="meta")
        steps = [
            # What the public entry points and the ops' backward functions run.
            ("normalise", mod.rms_normalise, (fields, N_CONTEXT)),
            ("denormalise", mod.rms_denormalise, (fields, scales)),
            ("backward.field_dot", mod._field_dot_impl, (fields, fields, t, 0)),
            (
                "backward.normalise",
                mod._affine_impl,
                (fields, scales, fields, scales, N_CONTEXT, 0),
            ),
            # z-score: the same kernels' MOMENTS / ZSCORE / CENTRED variants.
            ("zscore.normalise", mod.zscore_normalise, (fields, N_CONTEXT)),
            ("zscore.denormalise", mod.zscore_denormalise, (fields, scales, scales)),
            ("zscore.backward.field_sums", mod._field_sums_impl, (fields, fields, scales, t, 0)),
            (
                "zscore.backward.normalise",
                mod._affine_impl,
                (fields, scales, fields, scales, N_CONTEXT, 0, scales, scales),
            ),
        ]
        for step, run, run_args in steps:
            problem = f"{step}{tuple(FIELDS_SHAPE)}"

            def launch_fn(kernel, wrap, _p=problem, _d=dname):
                return Recorder(original(kernel, False), sink, mod.__name__, _p, _d)

            with patched(mod, _launch=launch_fn):
                run(*run_args)
    return sink


def spectral_launches(dtypes: list[Any]) -> list[Launch]:
    import physok_kernels.spectral_binning as mod
    import torch

    from physok.ops.spectral_binning import the_well_bin_edges

    sink: list[Launch] = []
    original = mod._binned_power_kernel
    edges = the_well_bin_edges(FIELDS_SHAPE[-2:])  # 4 edges = 3 bins
    for dtype in dtypes:
        dname = _short(dtype)
        # bf16/fp32 fields give fp32 spectra (the module's own rule), so both compile the same.
        problem = f"{tuple(FIELDS_SHAPE)}/{edges.numel() - 1}bins"
        pred = torch.empty(FIELDS_SHAPE, dtype=dtype, device="meta")
        rec = Recorder(original, sink, mod.__name__, problem, dname)
        with patched(mod, _binned_power_kernel=rec):
            mod.binned_spectral_power(pred, pred, edges)
    return sink


# --------------------------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------------------------

_TORCH_TO_TRITON = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "int32": "i32",
    "int64": "i64",
    "int8": "i8",
    "uint8": "u8",
    "bool": "i1",
}


def _manual_specialisation(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], backend: Any
) -> tuple[Any, dict[str, str], dict[Any, Any], dict[Any, Any]]:
    """Signature, constexprs and attributes by hand, with the JIT's specialisation rules."""
    values = dict(zip(fn.arg_names, args, strict=False))
    values.update({k: v for k, v in kwargs.items() if k in fn.arg_names})
    signature: dict[str, str] = {}
    constexprs: dict[Any, Any] = {}
    attrs: dict[Any, Any] = {}
    divisible = backend.parse_attr("D")
    for i, param in enumerate(fn.params):
        name = param.name
        value = values.get(name, param.default)
        if param.is_constexpr:
            signature[name] = "constexpr"
            constexprs[name] = value
        elif hasattr(value, "data_ptr"):
            signature[name] = "*" + _TORCH_TO_TRITON[str(value.dtype).removeprefix("torch.")]
            if value.data_ptr() % 16 == 0:
                attrs[(i,)] = divisible
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            if value == 1 and not param.do_not_specialize:
                signature[name] = "constexpr"  # the JIT turns an int argument == 1 into a constant
                constexprs[name] = 1
                continue
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            if value % 16 == 0 and not param.do_not_specialize:
                attrs[(i,)] = divisible
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"argument {name}={value!r}: no Triton type for {type(value)}")
    options = backend.parse_options({k: v for k, v in kwargs.items() if k not in fn.arg_names})
    # ASTSource wants index paths or names for constexprs; attrs must be index paths.
    return options, signature, constexprs, attrs


class Compiler:
    def __init__(self, arch: int, manual: bool) -> None:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource, make_backend

        self.triton = triton
        self.ASTSource = ASTSource
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.manual = manual
        self.binders: dict[int, Any] = {}
        self.cuobjdump = _find_cuobjdump()

    def specialise(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple:
        if self.manual:
            return _manual_specialisation(fn, args, kwargs, self.backend)
        from triton.runtime.jit import create_function_from_signature

        if id(fn) not in self.binders:
            self.binders[id(fn)] = create_function_from_signature(
                fn.signature, fn.params, self.backend
            )
        bound, specialisation, options = self.binders[id(fn)](*args, **kwargs)
        return fn._pack_args(self.backend, kwargs, bound, specialisation, options)

    def compile(self, launch: Launch, config: dict[str, Any]) -> Any:
        kwargs = {**launch.kwargs, **config}
        knobs = getattr(self.triton, "knobs", None)
        debug = bool(getattr(getattr(knobs, "runtime", None), "debug", False))
        kwargs["debug"] = kwargs.get("debug", launch.fn.debug) or debug  # as JITFunction.run
        options, signature, constexprs, attrs = self.specialise(launch.fn, launch.args, kwargs)
        src = self.ASTSource(launch.fn, signature, constexprs, attrs)
        return self.triton.compile(src, target=self.target, options=options.__dict__)

    def resources(self, compiled: Any, num_warps: int) -> tuple[str, str | None]:
        """(description, why it cannot launch or None) from the compiled object and its cubin."""
        shared = int(getattr(compiled.metadata, "shared", -1))
        parts = [f"smem={shared}B"]
        ptx = compiled.asm.get("ptx", "") if hasattr(compiled, "asm") else ""
        if "wgmma" in ptx:
            parts.append("mma=wgmma")
        elif "mma.sync" in ptx:
            parts.append("mma=mma.sync")
        problem = None
        if shared > SM90_MAX_SHARED:
            problem = f"shared memory {shared} B > {SM90_MAX_SHARED} B per block"
        usage = self._cubin_usage(compiled)
        if usage:
            regs = usage.get("REG", -1)
            parts.append(f"regs={regs}")
            parts.append(f"local={usage.get('LOCAL', -1)}B")
            if regs * 32 * num_warps > MAX_REGS_PER_BLOCK:
                problem = f"{regs} registers x {32 * num_warps} threads > {MAX_REGS_PER_BLOCK}"
        else:
            parts.append("regs=? (no cuobjdump)")
        return " ".join(parts), problem

    def _cubin_usage(self, compiled: Any) -> dict[str, int]:
        cubin = compiled.asm.get("cubin") if hasattr(compiled, "asm") else None
        if not self.cuobjdump or not cubin:
            return {}
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            proc = subprocess.run(
                [self.cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=False
            )
        return {k: int(v) for k, v in re.findall(r"\b([A-Z]+):(\d+)", proc.stdout)}


def _find_cuobjdump() -> str | None:
    import triton

    with contextlib.suppress(Exception):
        path = triton.knobs.nvidia.cuobjdump.path
        if path and os.path.exists(path):
            return path
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else shutil.which("cuobjdump")


def _describe_config(launch: Launch, config: dict[str, Any]) -> str:
    from triton.runtime.jit import JITFunction

    const_names = [p.name for p in launch.fn.params if p.is_constexpr]
    merged = {**launch.kwargs, **config}
    # Block sizes and flags the config or launch sets (not the per-layer conv geometry).
    skip = {"ST", "SX", "SY", "KT", "KX", "KY", "PX", "PY"}
    shown = [
        f"{k}={merged[k]}"
        for k in const_names
        if k in merged and k not in skip and not isinstance(merged[k], JITFunction)
    ]
    warps = merged.get("num_warps", 4)
    stages = merged.get("num_stages", 3)
    return " ".join([*shown, f"w{warps}", f"s{stages}"])


def _error_text(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = " | ".join(lines[-6:]) if lines else ""
    return f"{type(exc).__name__}: {text}"[:1200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("conv", "rms", "spectral"), action="append")
    parser.add_argument("--dtypes", default="bf16,fp32", help="comma list of bf16, fp32, fp16")
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10")
    parser.add_argument("--sms", type=int, default=132, help="SM count for split-K choices")
    parser.add_argument(
        "--layouts", default="cl", help="conv input layouts: cl, ncdhw or both (default: cl)"
    )
    parser.add_argument(
        "--ieee-too", action="store_true", help="conv fp32 with both TF32 and IEEE dots"
    )
    parser.add_argument("--manual-signature", action="store_true")
    parser.add_argument("--cache-dir", help="Triton cache to use (default: a fresh temp dir)")
    args = parser.parse_args(argv)

    tmp_cache = None
    if args.cache_dir:
        os.environ["TRITON_CACHE_DIR"] = args.cache_dir
    else:
        tmp_cache = tempfile.mkdtemp(prefix="physok_compile_check_")
        os.environ["TRITON_CACHE_DIR"] = tmp_cache
    try:
        return _run(args)
    finally:
        if tmp_cache:
            shutil.rmtree(tmp_cache, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    import torch
    import triton

    names = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    try:
        dtypes = [names[d.strip()] for d in args.dtypes.split(",") if d.strip()]
    except KeyError as exc:
        raise SystemExit(f"--dtypes: unknown dtype {exc}; use bf16, fp32, fp16") from None
    layouts = ["cl", "ncdhw"] if args.layouts == "both" else [args.layouts]
    if any(lay not in ("cl", "ncdhw") for lay in layouts):
        raise SystemExit(f"--layouts={args.layouts!r}: use cl, ncdhw or both")
    only = set(args.only or ("conv", "rms", "spectral"))

    print(
        f"triton {triton.__version__}, torch {torch.__version__}, target sm_{args.arch}, "
        f"signature via {'hand-built dict' if args.manual_signature else 'the JIT binder'}, "
        f"{args.sms} SMs assumed",
        flush=True,
    )
    compiler = Compiler(args.arch, args.manual_signature)
    failures = 0
    total = 0
    collectors = {
        "conv": lambda: conv_launches(dtypes, layouts, args.sms, args.ieee_too),
        "rms": lambda: rms_launches(dtypes),
        "spectral": lambda: spectral_launches(dtypes),
    }
    for group in ("conv", "rms", "spectral"):
        if group not in only:
            continue
        try:
            launches = collectors[group]()
        except Exception as exc:  # a module failing to import or to launch is a failure too
            print(f"FAIL {group}: recording launches: {_error_text(exc)}", flush=True)
            failures += 1
            total += 1
            continue
        if not launches:
            print(f"FAIL {group}: the module launched no kernel", flush=True)
            failures += 1
            total += 1
            continue
        for launch in launches:
            for config in launch.configs:
                total += 1
                name = f"{launch.module.split('.')[-1]}.{launch.kernel}"
                desc = _describe_config(launch, config)
                head = f"{name:<38} {launch.problem:<40} {launch.dtype:<5} {desc}"
                start = time.perf_counter()
                try:
                    compiled = compiler.compile(launch, config)
                except Exception as exc:
                    failures += 1
                    print(f"FAIL {head}\n     {_error_text(exc)}", flush=True)
                    continue
                seconds = time.perf_counter() - start
                warps = int({**launch.kwargs, **config}.get("num_warps", 4))
                usage, problem = compiler.resources(compiled, warps)
                if problem:
                    failures += 1
                    print(f"FAIL {head}  {usage}\n     cannot launch: {problem}", flush=True)
                else:
                    print(f"OK   {head}  {usage} ({seconds:.1f}s)", flush=True)
    print(f"== {total - failures}/{total} compiled and launchable, {failures} failure(s) ==")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
