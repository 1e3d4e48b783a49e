"""FSDP2 acceptance: `torchrun --standalone --nproc_per_node=2` (gloo, CPU) runs the rollout stage.

One torchrun launch runs this file as a worker (`__main__` below) that (1) trains a few steps on
fixed global batches, each rank taking its half, saves a checkpoint, resumes from it (optimiser
state resharded) and trains one more step; (2) runs the stage's whole loop (`train`) with the
tokeniser mostly frozen and an odd number of validation windows, so ranks run unequal numbers of
real validation batches (the padding path). The test then repeats (1) in one process with the
whole global batch and compares per-step losses, final weights and optimiser state, and checks
(2)'s log, validation values and frozen weights.

About 30% of gloo runs abort with SIGABRT while the interpreter exits, after all work is done
(an upstream issue). Success is judged from what the run wrote; a non-zero exit is accepted only
when it is that abort.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from physok import checkpoint as ck

EULER = "euler_multi_quadrants_periodicBC"
_ABORT = re.compile(r"SIGABRT|Signal 6|exitcode\s*:\s*-6|signal 6", re.IGNORECASE)
STEPS, GLOBAL_BATCH = 3, 4
TINY = [
    *("model.channels=[4,8,8]", "model.norm_groups=2", "processor.dim=16", "processor.depth=2"),
    *("processor.heads=2", "processor.mlp_hidden=32", "processor.norm_groups=2"),
    "processor.drop_path=0.0",  # no per-rank randomness: the runs must agree exactly
]


def _config(data: Path, run_dir: Path, batch_size: int, **changes):
    from physok.train.rollout_stage import RolloutTrainConfig, apply_overrides

    cfg = RolloutTrainConfig.fast(
        data_dir=str(data),
        datasets=(EULER,),
        run_dir=str(run_dir),
        device="cpu",
        batch_size=batch_size,
        steps=STEPS + 1,
        epoch_steps=1,
        lr=1e-3,
        progress=False,
        **changes,
    )
    return apply_overrides(cfg, TINY)


def run_fixed_batches(data: Path, run_dir: Path, steps: range, resume: bool = False) -> list[float]:
    """Train `steps` on global batches [4s, 4s+4) of the training windows, this rank taking its
    contiguous share (`resume`: continue the run in `run_dir` first); checkpoint at the end.
    Returns the per-step mean losses."""
    from physok.train import rollout_stage as rs

    stage = rs.setup(_config(data, run_dir, GLOBAL_BATCH // _world()), resume=resume)
    assert stage.start_step == steps.start
    per_rank = GLOBAL_BATCH // stage.ctx.world_size
    losses = []
    data = stage.train_sets[0]
    for step in steps:
        first = step * GLOBAL_BATCH + stage.ctx.rank * per_rank
        batch = rs.collate_windows([data[i] for i in range(first, first + per_rank)])
        out = rs.train_step(stage, batch, step)
        assert out.finite
        losses.append(out.loss)
    rs.save_checkpoint(stage, steps.stop, 0.0, {})
    for ds in (*stage.train_sets, *stage.val_sets):
        ds.close()
    return losses


def _world() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _worker(data: Path, out: Path) -> None:
    from physok.train import distributed as dist_utils
    from physok.train import rollout_stage as rs

    losses = run_fixed_batches(data, out / "fixed", range(STEPS))
    # Resume under FSDP from the checkpoint just written (optimiser state resharded).
    losses += run_fixed_batches(data, out / "fixed", range(STEPS, STEPS + 1), resume=True)
    # The whole loop, mostly frozen: 3 validation windows over 2 ranks with batch 1 -> 2 and 1
    # real batches per rank.
    cfg = _config(
        data,
        out / "loop",
        2,
        val_windows=3,
        val_batch_size=1,
        val_every=STEPS + 1,
        tokeniser_strategy="mostly_frozen",
    )
    result = rs.train(cfg)
    if dist_utils.get_rank() == 0:
        summary = {"losses": losses, "val_vrmse": result.val_vrmse, "val_mae": result.val_mae}
        (out / "done.json").write_text(json.dumps(summary))
    dist_utils.teardown()


def test_fsdp_two_ranks_match_one_process(euler_base: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        str(euler_base),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert (tmp_path / "done.json").exists(), output  # the work completed on rank 0
    assert proc.returncode == 0 or _ABORT.search(output), output
    done = json.loads((tmp_path / "done.json").read_text())

    # (1) The same global batches in one process: same losses, weights and optimiser state.
    single_dir = tmp_path / "single"
    ref_losses = run_fixed_batches(euler_base, single_dir, range(STEPS))
    ref_losses += run_fixed_batches(euler_base, single_dir, range(STEPS, STEPS + 1), resume=True)
    assert len(done["losses"]) == STEPS + 1
    for a, b in zip(done["losses"], ref_losses, strict=True):
        assert abs(a - b) <= 1e-5 * abs(b), (done["losses"], ref_losses)
    assert ref_losses[-1] != ref_losses[0]  # the steps did change the model
    fsdp, single = ck.load_checkpoint(tmp_path / "fixed"), ck.load_checkpoint(tmp_path / "single")
    assert fsdp.state_dict.keys() == single.state_dict.keys()
    for k, v in single.state_dict.items():
        torch.testing.assert_close(fsdp.state_dict[k], v, rtol=1e-4, atol=1e-6, msg=k)
    fs, ss = fsdp.load_train_state(), single.load_train_state()
    assert fs["data"]["world_size"] == 2 and len(fs["rng"]) == 2
    assert fs["optimizer"]["names"] == ss["optimizer"]["names"]
    for name, state in ss["optimizer"]["state"].items():
        for key, value in state.items():
            got = fs["optimizer"]["state"][name][key]
            assert got.shape == value.shape, (name, key)  # gathered, not a shard
            # round-off of a sum split over two ranks scales with the tensor's magnitude
            scale = float(value.abs().max()) if value.numel() else 0.0
            torch.testing.assert_close(
                got, value, rtol=1e-3, atol=1e-4 * scale + 1e-12, msg=f"{name}.{key}"
            )

    # (2) The loop under FSDP: logs once per step, validates with padded batches, checkpoints.
    loop = tmp_path / "loop"
    final = ck.load_checkpoint(loop, kind="rollout")
    assert final.step == STEPS + 1
    records = [json.loads(line) for line in (loop / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [0, STEPS + 1]
    # Validation of the initial weights equals a single-process validation of them.
    from physok.train import rollout_stage as rs

    cfg = _config(
        euler_base,
        tmp_path / "single_val",
        2,
        val_windows=3,
        val_batch_size=1,
        tokeniser_strategy="mostly_frozen",
    )
    stage = rs.setup(cfg)
    val0 = rs.validate(stage)
    # Mostly frozen under FSDP: the frozen tokeniser weights are exactly the initial ones.
    initial = stage.model.state_dict()
    frozen = [k for k, p in stage.model.named_parameters() if not p.requires_grad]
    assert frozen and all(k.startswith("tokeniser.") for k in frozen)
    for k in frozen:
        assert torch.equal(final.state_dict[k], initial[k]), k
    moved = [k for k in initial if not torch.equal(final.state_dict[k], initial[k])]
    assert any(k.startswith("processor.") for k in moved) and any(
        k.startswith("tokeniser.encoder.head") for k in moved
    )
    for ds in (*stage.train_sets, *stage.val_sets):
        ds.close()
    assert abs(vals[0]["val_vrmse"][EULER] - val0["vrmse"][EULER]) < 1e-5
    assert abs(vals[0]["val_mae"][EULER] - val0["mae"][EULER]) < 1e-5


if __name__ == "__main__":  # the torchrun worker
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
