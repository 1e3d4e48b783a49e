"""One full rollout training step (forward, MAE of frame 10, backward, clip, AdamW): eager vs
torch.compile per processor block (what `--compile` does in the rollout stage).

Run: pytest bench/ --benchmark-only -k train_step. On CUDA: the paper preset (5M tokeniser,
100M processor), bf16 autocast, batch 2 of 10-frame windows of a 4-field 256x256 simulation
(eval scales: 9 frames -> 3x8x8 latents). On CPU: the fast preset on 64x64 (-> 5x32x32 latents),
fp32, which is what a laptop run of the fast experiment does. `extra_info`: samples_per_s,
model TFLOP_per_s (FLOPs counted once with `physok.train.throughput.count_step_flops` on the
eager step, forward + backward) and, on a GPU with a known peak, MFU (bf16 dense peak).
The compiled entry is warmed up (compiled) outside the timing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from physok.models.rollout_model import RolloutModelConfig
from physok.train.optim import build_adamw
from physok.train.rollout_stage import (
    build_model,
    compile_blocks,
    context_and_target,
    prediction_loss,
)
from physok.train.throughput import count_step_flops, peak_flops

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
PRESET = "paper" if CUDA else "fast"
BATCH, FRAMES, FIELDS = 2, 10, 4
GRID = 256 if CUDA else 64


def _model_config() -> RolloutModelConfig:
    # Field indices 0..3 of the tokeniser's default registry stand in for a 4-field simulation.
    return RolloutModelConfig.preset(PRESET)


def _make_step(compiled: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    model = build_model(_model_config(), seed=0).to(DEVICE)
    if compiled:
        compile_blocks(model)
    optimizer = build_adamw(model.parameters(), lr=2e-4)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    fields = torch.randn(BATCH, FRAMES, FIELDS, GRID, GRID, device=DEVICE, generator=g) + 2.0
    idx = torch.arange(FIELDS)

    def forward_backward() -> torch.Tensor:
        x, target = context_and_target(model, fields)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=CUDA):
            pred = model(x, idx, normalised=True)[:, -1:]
        loss = prediction_loss(pred, target)
        loss.backward()
        return loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if CUDA:
            torch.cuda.synchronize()

    def count() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward()

    return step, count


def _bench(benchmark, compiled: bool) -> None:
    step, count = _make_step(compiled)
    for _ in range(3):  # compile (per block, then their backward graphs), autotune, lazy init
        step()
    benchmark.group = f"train_step-{PRESET}-{GRID}x{GRID}"
    benchmark.pedantic(step, rounds=5 if CUDA else 3, iterations=1, warmup_rounds=0)
    mean = benchmark.stats["mean"]
    flops = count_step_flops(count)
    peak = peak_flops(DEVICE, torch.bfloat16 if CUDA else torch.float32)
    benchmark.extra_info["samples_per_s"] = BATCH / mean
    benchmark.extra_info["TFLOP_per_s"] = flops / mean / 1e12
    benchmark.extra_info["GFLOP_per_step"] = flops / 1e9
    if peak:
        benchmark.extra_info["MFU"] = flops / mean / peak


def test_train_step_eager(benchmark) -> None:
    _bench(benchmark, compiled=False)


def test_train_step_compiled(benchmark) -> None:
    _bench(benchmark, compiled=True)
