"""On-demand build of the native ops in `csrc/` (package `physok_csrc`), with a clean fallback.

Nothing is compiled at import of physok: the first call of `load_native()` (made by an op's
"native" backend) builds the sources with `torch.utils.cpp_extension.load` (ninja, -O3 -fopenmp)
into a cache folder and loads the library, which registers the `torch.ops.physok_native` ops.
The folder is `<root>/<torch version>-<hash>`, root `$PHYSOK_NATIVE_BUILD_DIR` if set, else
`~/.cache/physok/native`; the hash covers the sources, the flags, whether the CUDA source is
included and the GPU targets, so a changed source or machine never loads a stale library. A finished
build leaves a marker file: later processes load the library straight away (no ninja run).
Concurrent first builds are serialised by cpp_extension's lock file in the build folder.

When there is no C++ compiler or ninja, or the build fails, `native_available()` is False and
`native_unavailable_reason()` says why; callers fall back to their reference and warn once
(`warn_fallback`). The CUDA source is compiled only when torch is a CUDA build and nvcc exists
(`cpp_extension.CUDA_HOME`); otherwise, or when that build fails, the library has the CPU
implementation only and `native_available(cuda_tensor)` is False.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import warnings
from pathlib import Path

import torch

BUILD_DIR_ENV = "PHYSOK_NATIVE_BUILD_DIR"
LIBRARY_NAME = "physok_native"
_MARKER = "physok_native.ok"
CPU_SOURCES = ("spectral_binning.cpp",)
CUDA_SOURCES = ("spectral_binning_cuda.cu",)
HEADERS = ("spectral_binning.h", "spectral_binning_op.h")
# -ffp-contract=off: no FMA contraction anywhere (the bin recipe needs IEEE-rounded float ops).
CFLAGS = ("-O3", "-fopenmp", "-ffp-contract=off")
LDFLAGS = ("-fopenmp",)
CUDA_CFLAGS = ("-O3",)

_lock = threading.Lock()
_state: dict[str, object] = {
    "tried": False,
    "ok": False,
    "cuda": False,
    "reason": None,
    "cuda_reason": None,  # why CUDA tensors are not served although the CPU op is
}
_warned: set[tuple[str, str]] = set()


def source_dir() -> Path:
    """Where the C++/CUDA sources are (the installed `physok_csrc` package)."""
    import physok_csrc

    return Path(physok_csrc.SOURCE_DIR)


def _cuda_toolchain() -> bool:
    if torch.version.cuda is None:  # CPU torch: skip importing cpp_extension (setuptools)
        return False
    from torch.utils import cpp_extension

    return cpp_extension.CUDA_HOME is not None


def _sources(with_cuda: bool) -> list[Path]:
    names = CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())
    return [source_dir() / n for n in names]


def _cuda_arch_key(with_cuda: bool) -> tuple[object, ...]:
    """What the CUDA code is compiled for: cpp_extension targets $TORCH_CUDA_ARCH_LIST, else
    the visible GPUs, so a cache shared between machines must not mix them."""
    if not with_cuda:
        return ()
    caps: list[tuple[int, int]] = []
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(n)})
    return (os.environ.get("TORCH_CUDA_ARCH_LIST"), tuple(caps))


def build_dir(with_cuda: bool | None = None) -> Path:
    """The cache folder for this torch version, these sources, flags and GPU targets.

    Under `$PHYSOK_NATIVE_BUILD_DIR` when set (else `~/.cache/physok/native`); the hashed tag is
    always part of the path, so a changed source or target never loads a stale library.
    """
    if with_cuda is None:
        with_cuda = _cuda_toolchain()
    h = hashlib.sha256()
    for path in _sources(with_cuda) + [source_dir() / n for n in HEADERS]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    key = (CFLAGS, LDFLAGS, CUDA_CFLAGS, with_cuda, torch.version.cuda, _cuda_arch_key(with_cuda))
    h.update(repr(key).encode())
    tag = f"{torch.__version__}-{h.hexdigest()[:16]}".replace("+", "_")
    root = os.environ.get(BUILD_DIR_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "physok" / "native"
    return base / tag


def _compiler_problem() -> str | None:
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler: {cxx!r} is not on PATH (install g++ or set $CXX)"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def _op_registered() -> bool:
    return hasattr(torch.ops, LIBRARY_NAME) and hasattr(
        getattr(torch.ops, LIBRARY_NAME), "binned_spectral_power"
    )


def _build_and_load() -> tuple[bool, bool, str | None]:
    """(ok, has_cuda, reason). Never raises. A failed CUDA build (e.g. nvcc's CUDA version not
    matching torch's) still leaves the CPU op: the CPU-only library is built then, and the
    CUDA failure is kept as the reason CUDA tensors fall back."""
    with_cuda = _cuda_toolchain()
    ok, reason = _build_and_load_variant(with_cuda)
    if ok or not with_cuda:
        return ok, with_cuda and ok, reason
    ok_cpu, reason_cpu = _build_and_load_variant(False)
    if ok_cpu:
        _state["cuda_reason"] = reason
        return True, False, None
    return False, False, reason_cpu


def _build_and_load_variant(with_cuda: bool) -> tuple[bool, str | None]:
    """Build (or load the cached) library with or without the CUDA source: (ok, reason)."""
    try:
        out = build_dir(with_cuda)
        marker = out / _MARKER
        if marker.is_file():
            lib = Path(marker.read_text().strip())
            if lib.is_file():
                torch.ops.load_library(str(lib))
                return True, None
        problem = _compiler_problem()
        if problem is not None:
            return False, problem
        from torch.utils import cpp_extension

        out.mkdir(parents=True, exist_ok=True)
        lib = cpp_extension.load(
            name=LIBRARY_NAME,
            sources=[str(s) for s in _sources(with_cuda)],
            extra_cflags=list(CFLAGS),
            extra_ldflags=list(LDFLAGS),
            extra_cuda_cflags=list(CUDA_CFLAGS),
            extra_include_paths=[str(source_dir())],
            build_directory=str(out),
            is_python_module=False,
            verbose=False,
        )
        tmp = marker.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(str(lib))
        tmp.replace(marker)  # atomic: another process sees no marker or a complete one
        return True, None
    except Exception as exc:  # a failed build must never crash the caller
        text = str(exc).strip().splitlines()
        detail = " | ".join(text[-6:]) if text else type(exc).__name__
        what = "with the CUDA source " if with_cuda else ""
        return False, f"building the native ops {what}failed ({type(exc).__name__}): {detail}"


def load_native() -> bool:
    """Build (first call only) and load the native library; True when its ops are usable."""
    # Lock-free once known: also what lets torch.compile trace the dispatch (a dict read); a
    # first call while tracing graph-breaks at the lock and builds eagerly.
    if _state["tried"]:
        return bool(_state["ok"])
    with _lock:
        if not _state["tried"]:
            if _op_registered():  # loaded by someone else in this process
                ok, cuda, reason = True, _cuda_toolchain(), None
            else:
                ok, cuda, reason = _build_and_load()
            _state.update(tried=True, ok=ok, cuda=cuda, reason=reason)
        return bool(_state["ok"])


def native_available(tensor: torch.Tensor | None = None) -> bool:
    """Whether the native ops are built and loaded (for `tensor`'s device when given).

    Builds on first call. A CUDA tensor needs the CUDA source to have been compiled.
    """
    if not load_native():
        return False
    if tensor is None or tensor.is_cpu:
        return True
    return bool(tensor.is_cuda and _state["cuda"])


def native_unavailable_reason(tensor: torch.Tensor | None = None) -> str | None:
    """Why `native_available(tensor)` is False (None when it is True)."""
    if native_available(tensor):
        return None
    if _state["ok"]:
        if _state["cuda_reason"]:
            return f"the CPU op is built, the CUDA one is not: {_state['cuda_reason']}"
        return (
            f"the native library has no {tensor.device.type} implementation (the CUDA source "
            "is compiled only with a CUDA build of torch and nvcc on PATH / $CUDA_HOME)"
        )
    return str(_state["reason"])


def warn_fallback(op: str, tensor: torch.Tensor | None = None) -> None:
    """Warn, once per (op, reason), that `op` falls back to the default backend."""
    reason = native_unavailable_reason(tensor) or "unknown"
    if (op, reason) in _warned:
        return
    _warned.add((op, reason))
    warnings.warn(
        f"{op}: native backend unavailable, using the default backend instead (Triton on "
        f"CUDA, else the reference): {reason}",
        RuntimeWarning,
        stacklevel=3,
    )


def _reset_for_tests() -> None:
    """Forget the build outcome and the warnings given (tests simulate failures with it)."""
    with _lock:
        _state.update(tried=False, ok=False, cuda=False, reason=None, cuda_reason=None)
        _warned.clear()
