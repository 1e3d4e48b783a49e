"""Atomic, validated checkpoint directories for models and training runs.

A checkpoint is a directory:

    model.safetensors   the model's weights (plain keys: no DDP `module.` / compile `_orig_mod.`)
    config.json         format version, `kind`, model config, training config, step, metrics,
                        library version, field registry names, file sizes and SHA-256 sums
    train_state.pt      optional: optimiser state, RNG states, data position (torch.save of
                        tensors and plain containers only, so it loads with weights_only=True)

Writes are atomic: everything goes to a hidden temporary directory next to the target, every
file and the directory are fsync'd, then the directory is renamed into place. A crash at any
point leaves either the old checkpoint or the new one, never a half-written one under the real
name. Training runs keep their checkpoints in `<run_dir>/checkpoints/step_XXXXXXXX/` with a
`latest` pointer file (replaced atomically after the directory is in place) and prune old steps.

A failed write (a full disk, an unwritable folder) removes what it wrote and raises
`physok.write_errors.WriteError` naming the checkpoint and the cause.

Loading validates everything it can and raises `CheckpointError` (a ValueError) naming the file
and the fix: missing files, truncated or corrupt safetensors/JSON, wrong kind, unsupported format
version, and state-dict key/shape mismatches against a model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from physok.write_errors import writing

FORMAT_NAME = "physok-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_STATE_FILE = "train_state.pt"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
STEP_PREFIX = "step_"
_STEP_RE = re.compile(rf"^{STEP_PREFIX}(\d+)$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
DAMAGED_PREFIX = "damaged-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or loaded; the message names the file and the fix."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are missing, truncated or corrupt (not merely of another kind or
    format version): a re-run sets it aside and retrains (physok.experiment)."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: its metadata and weights; the training state is loaded on demand."""

    path: Path
    kind: str
    step: int
    model_config: dict[str, Any]
    train_config: dict[str, Any] | None
    metrics: dict[str, Any]
    field_names: list[str] | None
    library_version: str
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    has_train_state: bool = False

    def load_train_state(self) -> dict[str, Any]:
        """The `train_state.pt` contents (CheckpointError when absent or unreadable)."""
        return load_train_state(self.path)


# ---- state-dict keys ---------------------------------------------------------------------------
def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_key(key: str) -> str:
    """A parameter name without wrapper segments: leading `module.`, any `_orig_mod.`.

    `_orig_mod` appears mid-name when submodules are compiled one by one (torchtitan style).
    """
    while key.startswith("module."):
        key = key[len("module.") :]
    return ".".join(part for part in key.split(".") if part != "_orig_mod")


def plain_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict:
    """Detached CPU copies of a model's (or state dict's) tensors under clean keys."""
    if isinstance(model_or_state, nn.Module):
        state = unwrap_model(model_or_state).state_dict()
    else:
        state = dict(model_or_state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state entry {key!r} is a {type(value).__name__}, not a tensor")
        k = clean_key(key)
        if k in out:
            raise CheckpointError(f"two state entries map to the same clean key {k!r}")
        # Own copies: safetensors refuses tensors that share storage (tied or viewed weights).
        out[k] = value.detach().to("cpu", copy=True).contiguous()
    return out


# ---- small file-system helpers ----------------------------------------------------------------
def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on directories
        if not directory:
            raise
    finally:
        os.close(fd)


def _write_bytes_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON values from configs: dataclasses, paths, tuples, numpy and torch scalars."""
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value), where)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # strict JSON has no NaN/Inf
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _jsonable(value.item(), where)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item(), where)
    raise CheckpointError(
        f"{where}: value of type {type(value).__name__} cannot be stored in {CONFIG_FILE}; "
        "use numbers, strings, lists and dicts"
    )


def _library_version() -> str:
    from physok import __version__

    return __version__


# ---- writing ------------------------------------------------------------------------------------
def save_model_dir(
    path: str | os.PathLike,
    *,
    kind: str,
    model: nn.Module | Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
    step: int = 0,
    metrics: Mapping[str, Any] | None = None,
    field_names: Iterable[str] | None = None,
    allow_nonfinite: bool = False,
) -> Path:
    """Atomically write one checkpoint directory at exactly `path` (replacing one there).

    This is what `save_pretrained` uses; training runs call `save_checkpoint`. `field_names`
    defaults to `model_config["field_names"]` when present. Weights holding NaN or Inf are
    refused unless `allow_nonfinite` (a diverged model must never replace a good checkpoint).
    """
    path = Path(path)
    if not kind or not isinstance(kind, str):
        raise CheckpointError("checkpoint kind must be a non-empty string, e.g. 'tokeniser'")
    state = plain_state_dict(model)
    if not allow_nonfinite:
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise CheckpointError(
                f"refusing to write {path}: weights hold NaN/Inf ({', '.join(bad[:5])}"
                f"{', ...' if len(bad) > 5 else ''}); the previous checkpoint is kept"
            )
    model_config_json = _jsonable(dict(model_config), "model_config")
    if field_names is None and "field_names" in model_config_json:
        field_names = model_config_json["field_names"]
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "step": int(step),
        "library_version": _library_version(),
        "torch_version": torch.__version__,
        "field_names": None if field_names is None else [str(n) for n in field_names],
        "model_config": model_config_json,
        "train_config": None
        if train_config is None
        else _jsonable(dict(train_config), "train_config"),
        "metrics": _jsonable(dict(metrics or {}), "metrics"),
    }

    # A full disk or an unwritable folder: one WriteError naming the checkpoint, the temporary
    # directory removed (torch.save's file errors come as RuntimeError, translated too).
    with writing(path, f"the {kind} checkpoint"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{_TMP_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            # One metadata key: safetensors writes its metadata map in a random order per save
            # (safetensors issue #584), so two keys made identical weights hash differently in
            # about half of the saves, and reuse compares these hashes.
            save_file(state, str(tmp / MODEL_FILE), metadata={"format": "pt"})
            _fsync_path(tmp / MODEL_FILE)
            files = [MODEL_FILE]
            if train_state is not None:
                _write_train_state(tmp / TRAIN_STATE_FILE, train_state)
                files.append(TRAIN_STATE_FILE)
            # Sizes and hashes let a loader tell a truncated or bit-flipped file from a good one.
            meta["files"] = {
                name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
                for name in files
            }
            # config.json last: a directory with a complete config.json is complete.
            text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
            _write_bytes_durably(tmp / CONFIG_FILE, text.encode())
            _fsync_path(tmp, directory=True)
            _move_into_place(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


def _write_train_state(path: Path, train_state: Mapping[str, Any]) -> None:
    with open(path, "wb") as f:
        torch.save(dict(train_state), f)
        f.flush()
        os.fsync(f.fileno())


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`; an existing `path` is moved aside first, then deleted.

    rename(2) cannot replace a non-empty directory, so overwriting has a short window in which
    `path` is absent; the old copy survives under a `.trash-` name until the new one is in place.
    """
    trash = None
    if path.exists():
        trash = path.parent / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
    try:
        os.replace(tmp, path)
    except BaseException:
        if trash is not None:
            os.replace(trash, path)
        raise
    _fsync_path(path.parent, directory=True)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{int(step):08d}"


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    kind: str,
    model: nn.Module | Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    field_names: Iterable[str] | None = None,
    keep: int | None = 3,
) -> Path:
    """Write `<run_dir>/checkpoints/step_XXXXXXXX`, point `latest` at it, prune to `keep`.

    `keep=None` keeps every checkpoint; otherwise the newest `keep` (>= 1) steps stay. Call from
    one process only (rank 0). Returns the checkpoint directory.
    """
    if keep is not None and keep < 1:
        raise CheckpointError(f"keep must be >= 1 (or None to keep all), got {keep}")
    root = checkpoints_dir(run_dir)
    with writing(root, f"the {kind} checkpoint"):
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
    target = save_model_dir(
        root / step_dir_name(step),
        kind=kind,
        model=model,
        model_config=model_config,
        train_config=train_config,
        train_state=train_state,
        step=step,
        metrics=metrics,
        field_names=field_names,
    )
    with writing(root / LATEST_FILE, f"the pointer to {target.name}"):
        _write_latest(root, target.name)
    if keep is not None:
        prune_checkpoints(run_dir, keep)
    return target


def _remove_leftovers(root: Path) -> None:
    """Delete temporary/trash directories a crashed writer left behind (single writer)."""
    for p in root.iterdir():
        if p.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{LATEST_FILE}.") and p.is_file():
            p.unlink(missing_ok=True)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST_FILE}.{os.getpid()}.tmp"
    try:
        _write_bytes_durably(tmp, (name + "\n").encode())
        os.replace(tmp, root / LATEST_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(root, directory=True)


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, directory) of every complete step checkpoint of a run, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` step checkpoints; never the one `latest` names."""
    latest = latest_checkpoint(run_dir)
    ckpts = list_checkpoints(run_dir)
    removed = []
    for _, p in ckpts[: max(0, len(ckpts) - keep)]:
        if latest is not None and p.resolve() == latest.resolve():
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's newest checkpoint: the step the `latest` pointer names, else the highest step.

    Step directories only ever appear complete (renamed into place), so one that lacks its
    config.json or weights is damaged: it is returned as it is, and reading it fails naming the
    missing file, instead of a silent fall back to an earlier step.
    """
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        candidate = root / name
        if _STEP_RE.match(name) and candidate.is_dir():
            return candidate
    if not root.is_dir():
        return None
    steps = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir()
    )
    return steps[-1][1] if steps else None


# ---- loading ------------------------------------------------------------------------------------
def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a checkpoint dir, a run dir or its `checkpoints/` dir."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist; check the path or run name")
    if p.is_file():
        raise CheckpointError(
            f"{p} is a file; pass the checkpoint directory (holding {CONFIG_FILE} and "
            f"{MODEL_FILE}) or a run directory"
        )
    if (p / CONFIG_FILE).exists() or (p / MODEL_FILE).exists():
        return p
    run_dir = p.parent if p.name == CHECKPOINTS_DIR else p
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(
            f"{p} holds no checkpoint: expected {CONFIG_FILE} + {MODEL_FILE} there or a run "
            f"directory with {CHECKPOINTS_DIR}/{STEP_PREFIX}*/ inside"
        )
    return latest


def read_checkpoint_config(path: str | os.PathLike, *, kind: str | None = None) -> dict:
    """Read and validate `config.json` of a checkpoint directory (no weights loaded)."""
    ckpt = resolve_checkpoint_path(path)
    cfg_path = ckpt / CONFIG_FILE
    if not cfg_path.is_file():
        raise DamagedCheckpointError(
            f"{cfg_path} is missing: {ckpt} is not a complete checkpoint (an interrupted copy?); "
            "use another checkpoint of the run or re-save the model"
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedCheckpointError(
            f"{cfg_path} is not valid JSON ({e}); the file is truncated or corrupt: restore it "
            "from a copy or load an earlier checkpoint of the run"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f'{cfg_path} is not a physok checkpoint config (expected "format": '
            f'"{FORMAT_NAME}"); point to a directory written by physok'
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: checkpoint format version {version!r} is not supported by this physok "
            f"(reads version {FORMAT_VERSION}); use the physok version that wrote it "
            f"({meta.get('library_version', 'unknown')}) or re-save the model"
        )
    missing = [
        k for k in ("kind", "step", "model_config", "files", "library_version") if k not in meta
    ]
    if missing:
        raise CheckpointError(f"{cfg_path} lacks the entries {missing}; the file was edited?")
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(
            f"{ckpt} is a {meta['kind']!r} checkpoint, but a {kind!r} checkpoint was expected; "
            f"pass a {kind} checkpoint"
        )
    for name, info in meta["files"].items():
        fp = ckpt / name
        if not fp.is_file():
            raise DamagedCheckpointError(
                f"{fp} is missing (listed in {CONFIG_FILE}); the checkpoint is incomplete: "
                "copy the whole directory or load an earlier checkpoint"
            )
        size = fp.stat().st_size
        if size != info["bytes"]:
            raise DamagedCheckpointError(
                f"{fp} has {size} bytes but {info['bytes']} were written: the file is truncated "
                "or was replaced; restore it or load an earlier checkpoint"
            )
    meta["_path"] = ckpt
    return meta


def _verify_hash(ckpt: Path, meta: dict, name: str) -> None:
    expected = meta["files"].get(name, {}).get("sha256")
    if expected is not None and _sha256(ckpt / name) != expected:
        raise DamagedCheckpointError(
            f"{ckpt / name} does not match the SHA-256 recorded in {CONFIG_FILE}: the file is "
            "corrupt; restore it from a copy or load an earlier checkpoint"
        )


def verify_checkpoint(
    path: str | os.PathLike, *, kind: str | None = None, files: Iterable[str] | None = None
) -> dict:
    """`read_checkpoint_config` plus the SHA-256 of `files` (default: every file it lists)
    against config.json: DamagedCheckpointError naming the first file that does not match."""
    meta = read_checkpoint_config(path, kind=kind)
    ckpt: Path = meta["_path"]
    if MODEL_FILE not in meta["files"]:
        raise DamagedCheckpointError(
            f"{ckpt / CONFIG_FILE} lists no {MODEL_FILE}; the file was edited?"
        )
    for name in meta["files"] if files is None else files:
        _verify_hash(ckpt, meta, name)
    return meta


def set_aside(ckpt: str | os.PathLike) -> Path:
    """Rename a damaged step directory to `damaged-step_XXXXXXXX` beside it (kept for a look,
    ignored by `latest_checkpoint` and pruning); returns the new path."""
    ckpt = Path(ckpt)
    target = ckpt.with_name(f"{DAMAGED_PREFIX}{ckpt.name}")
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"{DAMAGED_PREFIX}{ckpt.name}-{n}")
    os.replace(ckpt, target)
    return target


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    map_location: str | torch.device = "cpu",
    verify: bool = True,
) -> Checkpoint:
    """Load a checkpoint (a step directory, or a run directory meaning its latest checkpoint).

    Validates config.json, file sizes, SHA-256 (`verify`) and the safetensors file; `kind`
    (e.g. "tokeniser") rejects checkpoints of another kind.
    """
    meta = read_checkpoint_config(path, kind=kind)
    ckpt: Path = meta["_path"]
    model_path = ckpt / MODEL_FILE
    if MODEL_FILE not in meta["files"] or not model_path.is_file():
        raise DamagedCheckpointError(f"{model_path} is missing; the checkpoint has no weights")
    if verify:
        _verify_hash(ckpt, meta, MODEL_FILE)
    try:
        state = load_file(str(model_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DamagedCheckpointError(
            f"{model_path} cannot be read as safetensors ({e}); the file is truncated or "
            "corrupt: restore it or load an earlier checkpoint"
        ) from None
    return Checkpoint(
        path=ckpt,
        kind=meta["kind"],
        step=int(meta["step"]),
        model_config=meta["model_config"],
        train_config=meta.get("train_config"),
        metrics=meta.get("metrics") or {},
        field_names=meta.get("field_names"),
        library_version=meta["library_version"],
        state_dict=state,
        has_train_state=TRAIN_STATE_FILE in meta["files"],
    )


def load_train_state(path: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """Load `train_state.pt` of a checkpoint with `torch.load(weights_only=True)`."""
    meta = read_checkpoint_config(path)
    ckpt: Path = meta["_path"]
    fp = ckpt / TRAIN_STATE_FILE
    if TRAIN_STATE_FILE not in meta["files"]:
        raise CheckpointError(
            f"{ckpt} holds no {TRAIN_STATE_FILE} (weights only, e.g. from save_pretrained); "
            "training cannot resume from it: start a new run initialised from these weights"
        )
    if verify:
        _verify_hash(ckpt, meta, TRAIN_STATE_FILE)
    try:
        state = torch.load(fp, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise DamagedCheckpointError(
            f"{fp} cannot be loaded ({type(e).__name__}: {e}); the file is corrupt: load an "
            "earlier checkpoint of the run"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{fp} holds a {type(state).__name__}, expected a dict")
    return state


def load_model_state(
    model: nn.Module, ckpt: Checkpoint | Mapping[str, torch.Tensor], *, strict: bool = True
) -> nn.Module:
    """Copy checkpoint weights into `model` (which may be DDP/compile-wrapped); return it.

    Keys and shapes are checked first; a mismatch raises CheckpointError listing the
    differences. `strict=False` tolerates missing/unexpected keys, never shape mismatches.
    """
    state = ckpt.state_dict if isinstance(ckpt, Checkpoint) else dict(ckpt)
    where = str(ckpt.path / MODEL_FILE) if isinstance(ckpt, Checkpoint) else "state dict"
    state = {clean_key(k): v for k, v in state.items()}
    target = unwrap_model(model)
    own = target.state_dict()
    name_of = {clean_key(k): k for k in own}  # clean name -> the module's own name
    missing = sorted(set(name_of) - set(state))
    unexpected = sorted(set(state) - set(name_of))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[name_of[k]].shape)}"
        for k in sorted(set(state) & set(name_of))
        if state[k].shape != own[name_of[k]].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"missing in checkpoint: {_clip(missing)}")
        if unexpected:
            parts.append(f"not in model: {_clip(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {_clip(shapes)}")
        raise CheckpointError(
            f"{where} does not fit the model ({'; '.join(parts)}). The checkpoint was written "
            "for another model configuration: build the model from the checkpoint's "
            "model_config (e.g. Tokeniser.from_pretrained) or load into a matching model"
        )
    remapped = {name_of[k]: v for k, v in state.items() if k in name_of}
    target.load_state_dict(remapped, strict=strict)
    return model


def _clip(items: list[str], n: int = 6) -> str:
    head = ", ".join(items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")
