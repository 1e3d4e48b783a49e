"""DDP acceptance: `torchrun --standalone --nproc_per_node=2` runs the stage on CPU (gloo).

About 30% of gloo runs abort with SIGABRT while the interpreter exits, after all work is done
(an upstream issue). Success is therefore judged from what the run wrote (final checkpoint,
per-step log, summary line); a non-zero exit is accepted only when it is that abort.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from physok import checkpoint as ck

_ABORT = re.compile(r"SIGABRT|Signal 6|exitcode\s*:\s*-6|signal 6", re.IGNORECASE)


def test_torchrun_two_ranks_cpu(cli_args, euler_base: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "physok.train",
        *cli_args(euler_base, run, "--steps", "3", "--ckpt-every", "3", "--val-every", "3"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    # The work must be complete whatever the exit status.
    ckpt = ck.load_checkpoint(run, kind="tokeniser")
    assert ckpt.step == 3, output
    assert all(v.isfinite().all() for v in ckpt.state_dict.values())
    state = ckpt.load_train_state()
    assert state["data"]["world_size"] == 2 and len(state["rng"]) == 2  # both ranks reported
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]  # rank 0 logs once per step, not per rank
    assert all(
        abs(r["samples_per_s"] - 4 * r["steps_per_s"]) < 1e-6 * r["samples_per_s"] for r in train
    )  # global batch: 2 per rank x 2 ranks
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 3]
    assert "steps:       3" in proc.stdout, output
    assert proc.returncode == 0 or _ABORT.search(output), output
