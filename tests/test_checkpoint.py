"""Checkpoint directories: round trips, atomic writes under failure, clear errors on bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from physok import checkpoint as ck
from physok.checkpoint import CheckpointError


class Small(nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, hidden, 3)
        self.norm = nn.GroupNorm(2, hidden)
        self.head = nn.Linear(hidden, 3)
        self.register_buffer("counter", torch.zeros(()))


class CompiledLike(nn.Module):
    """Stands in for torch.compile's OptimizedModule (same `_orig_mod` attribute and keys);
    creating a real one imports inductor, which costs ~15 s on a 2-core machine."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner


def _model(seed: int = 0, hidden: int = 4) -> Small:
    torch.manual_seed(seed)
    return Small(hidden)


def _save(run_dir: Path, step: int, model: nn.Module, **kw) -> Path:
    return ck.save_checkpoint(
        run_dir,
        step,
        kind=kw.pop("kind", "tokeniser"),
        model=model,
        model_config=kw.pop("model_config", {"hidden": 4, "field_names": ["a", "b"]}),
        train_config=kw.pop("train_config", {"lr": 1e-3, "betas": (0.9, 0.95)}),
        train_state=kw.pop("train_state", {"step": step, "rng": torch.get_rng_state()}),
        metrics=kw.pop("metrics", {"loss": 0.5}),
        keep=kw.pop("keep", 3),
    )


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_metadata_weights_and_train_state(tmp_path: Path) -> None:
    model = _model(1)
    rng = torch.get_rng_state()
    path = _save(
        tmp_path,
        7,
        model,
        metrics={"loss": 0.25, "val": {"euler": 0.5}},
        train_state={"step": 7, "rng": rng, "nested": {"t": (1, 2.5, "x")}},
    )
    assert path == tmp_path / "checkpoints" / "step_00000007"
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "train_state.pt",
    ]
    ckpt = ck.load_checkpoint(tmp_path, kind="tokeniser")  # run dir -> latest
    assert ckpt.path == path and ckpt.step == 7 and ckpt.kind == "tokeniser"
    assert ckpt.model_config == {"hidden": 4, "field_names": ["a", "b"]}
    assert ckpt.train_config == {"lr": 1e-3, "betas": [0.9, 0.95]}
    assert ckpt.metrics == {"loss": 0.25, "val": {"euler": 0.5}}
    assert ckpt.field_names == ["a", "b"]
    assert ckpt.library_version
    fresh = _model(2)
    assert not _same_weights(fresh, model)
    ck.load_model_state(fresh, ckpt)
    assert _same_weights(fresh, model)
    state = ckpt.load_train_state()
    assert state["step"] == 7 and torch.equal(state["rng"], rng)
    assert state["nested"] == {"t": (1, 2.5, "x")}
    meta = json.loads((path / "config.json").read_text())
    assert meta["format_version"] == ck.FORMAT_VERSION
    assert set(meta["files"]) == {"model.safetensors", "train_state.pt"}


def test_wrapped_models_save_and_load_plain_keys(tmp_path: Path) -> None:
    model = _model(3)
    compiled = CompiledLike(model)
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    ck.save_model_dir(tmp_path / "m", kind="tokeniser", model=compiled, model_config={})
    ckpt = ck.load_checkpoint(tmp_path / "m")
    assert set(ckpt.state_dict) == set(model.state_dict())  # no `_orig_mod.`
    # A DDP-style state dict (`module.` prefix) saves under the same plain keys.
    ddp_state = {f"module.{k}": v for k, v in model.state_dict().items()}
    ck.save_model_dir(tmp_path / "d", kind="tokeniser", model=ddp_state, model_config={})
    assert set(ck.load_checkpoint(tmp_path / "d").state_dict) == set(model.state_dict())
    # ... and loads into a wrapped model.
    target = CompiledLike(_model(4))
    ck.load_model_state(target, ckpt)
    assert _same_weights(target._orig_mod, model)
    assert ck.clean_key("module._orig_mod.blocks.0._orig_mod.weight") == "blocks.0.weight"


def test_latest_pointer_and_pruning_keep_newest(tmp_path: Path) -> None:
    model = _model()
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, model, keep=2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [30, 40]
    assert ck.latest_checkpoint(tmp_path).name == "step_00000040"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000040"
    with pytest.raises(CheckpointError, match="keep must be >= 1"):
        _save(tmp_path, 50, model, keep=0)


def test_failure_inside_write_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _model(5)
    _save(tmp_path, 1, good)

    def crash(path: Path, state: dict) -> None:
        Path(path).write_bytes(b"partial")  # half a file, then the "crash"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck, "_write_train_state", crash)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, 2, _model(6))
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001"]
    ckpt = ck.load_checkpoint(tmp_path)
    assert ckpt.step == 1
    restored = _model(7)
    ck.load_model_state(restored, ckpt)
    assert _same_weights(restored, good)


def test_hard_crash_leftovers_are_ignored_then_cleaned(tmp_path: Path) -> None:
    _save(tmp_path, 1, _model())
    root = tmp_path / "checkpoints"
    # What SIGKILL during a write leaves: a temporary directory with partial files.
    leftover = root / ".tmp-step_00000002-999-abcd"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\x00" * 10)
    assert ck.latest_checkpoint(tmp_path).name == "step_00000001"
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [1]
    _save(tmp_path, 2, _model())
    assert not leftover.exists()
    assert ck.load_checkpoint(tmp_path).step == 2


def test_crash_before_pointer_update_resumes_from_pointer_and_rewrites(tmp_path: Path) -> None:
    _save(tmp_path, 1, _model(1))
    _save(tmp_path, 2, _model(2))
    # Simulate: step 2's directory landed but the pointer update did not.
    (tmp_path / "checkpoints" / "latest").write_text("step_00000001\n")
    assert ck.latest_checkpoint(tmp_path).name == "step_00000001"
    # The resumed run writes step 2 again: the existing directory is replaced atomically.
    replacement = _model(9)
    _save(tmp_path, 2, replacement)
    restored = _model(0)
    ck.load_model_state(restored, ck.load_checkpoint(tmp_path))
    assert _same_weights(restored, replacement)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_missing_pointer_falls_back_to_highest_complete_step(tmp_path: Path) -> None:
    _save(tmp_path, 3, _model())
    _save(tmp_path, 4, _model())
    (tmp_path / "checkpoints" / "latest").unlink()
    assert ck.latest_checkpoint(tmp_path).name == "step_00000004"


def test_nonfinite_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path, 1, _model())
    bad = _model()
    with torch.no_grad():
        bad.head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN/Inf \(head.weight\)"):
        _save(tmp_path, 2, bad)
    assert ck.load_checkpoint(tmp_path).step == 1


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return _save(tmp_path, 5, _model())


def test_truncated_safetensors_is_reported(saved: Path) -> None:
    f = saved / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors has \d+ bytes.*truncated"):
        ck.load_checkpoint(saved)


def test_corrupt_bytes_are_detected_by_hash(saved: Path) -> None:
    f = saved / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the SHA-256"):
        ck.load_checkpoint(saved)


def test_corrupt_safetensors_header_without_hash_check(saved: Path) -> None:
    f = saved / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:16] = b"garbage!"  # the JSON header
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"cannot be read as safetensors"):
        ck.load_checkpoint(saved, verify=False)


def test_truncated_config_json_is_reported(saved: Path) -> None:
    f = saved / "config.json"
    f.write_text(f.read_text()[:50])
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON.*truncated"):
        ck.load_checkpoint(saved)


def test_missing_files_are_reported(saved: Path) -> None:
    (saved / "train_state.pt").unlink()
    with pytest.raises(CheckpointError, match=r"train_state\.pt is missing"):
        ck.load_checkpoint(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        ck.load_checkpoint(saved)


def test_corrupt_train_state_is_reported(saved: Path) -> None:
    f = saved / "train_state.pt"
    size = f.stat().st_size
    f.write_bytes(b"\x00" * size)  # same size, wrong bytes
    ckpt = ck.load_checkpoint(saved)
    with pytest.raises(CheckpointError, match=r"train_state\.pt does not match the SHA-256"):
        ckpt.load_train_state()
    with pytest.raises(CheckpointError, match=r"train_state\.pt cannot be loaded"):
        ck.load_train_state(saved, verify=False)


def test_wrong_kind_and_format_version(saved: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a 'tokeniser' checkpoint, but a 'rollout'"):
        ck.load_checkpoint(saved, kind="rollout")
    f = saved / "config.json"
    meta = json.loads(f.read_text())
    meta["format_version"] = 99
    f.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"format version 99 is not supported"):
        ck.load_checkpoint(saved)
    f.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a physok checkpoint config"):
        ck.load_checkpoint(saved)


def test_key_and_shape_mismatch_against_model(saved: Path) -> None:
    ckpt = ck.load_checkpoint(saved)
    with pytest.raises(
        CheckpointError, match=r"conv\.weight: checkpoint \(4, 2, 3, 3, 3\) vs model \(6, 2"
    ):
        ck.load_model_state(_model(hidden=6), ckpt)

    class Extra(Small):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing in checkpoint: extra\.bias, extra\.weight"):
        ck.load_model_state(Extra(), ckpt)
    ck.load_model_state(Extra(), ckpt, strict=False)  # tolerated when asked
    del ckpt.state_dict["head.bias"]
    with pytest.raises(CheckpointError, match=r"missing in checkpoint: head\.bias"):
        ck.load_model_state(_model(), ckpt)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        ck.load_checkpoint(tmp_path)
    assert ck.latest_checkpoint(tmp_path) is None


def test_weights_only_checkpoint_cannot_resume(tmp_path: Path) -> None:
    ck.save_model_dir(tmp_path / "w", kind="tokeniser", model=_model(), model_config={})
    ckpt = ck.load_checkpoint(tmp_path / "w")
    assert not ckpt.has_train_state
    with pytest.raises(CheckpointError, match="holds no train_state.pt"):
        ckpt.load_train_state()


def test_save_model_dir_replaces_existing_directory(tmp_path: Path) -> None:
    target = tmp_path / "pretrained"
    ck.save_model_dir(target, kind="tokeniser", model=_model(1), model_config={"v": 1})
    (target / "stale.txt").write_text("old")
    ck.save_model_dir(target, kind="tokeniser", model=_model(2), model_config={"v": 2})
    assert not (target / "stale.txt").exists()
    assert ck.load_checkpoint(target).model_config == {"v": 2}
    assert sorted(os.listdir(tmp_path)) == ["pretrained"]


def test_unserialisable_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model_config.bad: value of type object"):
        ck.save_model_dir(tmp_path / "x", kind="k", model=_model(), model_config={"bad": object()})
    assert not (tmp_path / "x").exists()


def test_a_damaged_latest_checkpoint_is_an_error_not_a_fall_back(tmp_path: Path) -> None:
    """The step `latest` names lost its config.json: loading the run names that file instead
    of silently returning the earlier step."""
    _save(tmp_path, 1, _model(1))
    last = _save(tmp_path, 2, _model(2))
    (last / ck.CONFIG_FILE).unlink()
    assert ck.latest_checkpoint(tmp_path) == last
    with pytest.raises(ck.DamagedCheckpointError, match=r"step_00000002/config\.json is missing"):
        ck.load_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest").unlink()  # no pointer: still the highest step
    assert ck.latest_checkpoint(tmp_path) == last


def test_verify_checkpoint_catches_a_flipped_byte_and_set_aside_moves_it(tmp_path: Path) -> None:
    _save(tmp_path, 1, _model(1))
    last = _save(tmp_path, 2, _model(2))
    assert ck.verify_checkpoint(last)["step"] == 2
    weights = last / ck.MODEL_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash tells
    weights.write_bytes(bytes(data))
    assert ck.read_checkpoint_config(last)["step"] == 2  # sizes alone do not see it
    with pytest.raises(ck.DamagedCheckpointError, match=r"model\.safetensors does not match"):
        ck.verify_checkpoint(last, files=(ck.MODEL_FILE,))
    moved = ck.set_aside(last)
    assert moved.name == "damaged-step_00000002" and moved.is_dir()
    assert ck.latest_checkpoint(tmp_path).name == "step_00000001"  # the last intact one
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [1]
    # a wrong kind is not damage
    with pytest.raises(CheckpointError) as e:
        ck.verify_checkpoint(tmp_path, kind="rollout")
    assert not isinstance(e.value, ck.DamagedCheckpointError)


def test_identical_weights_give_identical_files_and_hashes(tmp_path: Path) -> None:
    """Reuse decides "retrained to the same weights" by the recorded SHA-256, so the model file
    must be a function of the weights alone. With two safetensors metadata keys the map's random
    write order made half of the saves differ; 16 saves would all agree only by 1-in-30,000 luck."""
    model = _model()
    hashes = set()
    for i in range(16):
        path = _save(tmp_path / f"run{i}", 1, model)
        meta = json.loads((path / ck.CONFIG_FILE).read_text())
        hashes.add(meta["files"][ck.MODEL_FILE]["sha256"])
    assert len(hashes) == 1
