"""Inverse-sqrt learning-rate schedule with linear warmup and sqrt cooldown, stepped per epoch.

The rollout stage's schedule (DESIGN.md §5, after Walrus' `InverseSqrtLinearWarmupSqrtCooldown`).
With E total epochs, W warmup epochs, C cooldown epochs, start factor f and offset o, the factor
applied to the base learning rate at epoch e is

    warmup    e <= W:          f + (1 - f) * e / W
    decay     W < e < E - C:   1 / (1 + sqrt(s + o) - sqrt(o)),  s = e - W
    cooldown  e >= E - C:      d * (1 - sqrt(r / C)),  r = e - (E - C),  d = decay at e = E - C

Which epoch is `e`: the number of epochs completed when the learning rate is set, as in Walrus
(its scheduler steps at each epoch boundary; `last_epoch` is 0 during the first epoch). So the
k-th epoch of training (k = 1..E) runs at the factor of e = k - 1: the first epoch at f (the
warmup really starts low, also with W = 1), the peak 1.0 at e = W, and the last epoch at
d * (1 - sqrt((C - 1) / C)), never 0 (a whole epoch at lr 0 would be wasted). The phases join
continuously: decay at e = W is 1, and the cooldown starts from the decay's value at E - C.
The cooldown takes precedence where phases overlap (W + C = E).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_schedule(
    total_epochs: int,
    warmup_epochs: int = 1,
    cooldown_epochs: int = 2,
    start_factor: float = 0.1,
    offset: float = 1.0,
) -> None:
    """Raise ValueError naming the argument when the schedule is ill-defined."""
    _check_int("total_epochs", total_epochs, 1)
    _check_int("warmup_epochs", warmup_epochs, 0)
    _check_int("cooldown_epochs", cooldown_epochs, 0)
    if warmup_epochs + cooldown_epochs > total_epochs:
        raise ValueError(
            f"warmup_epochs + cooldown_epochs = {warmup_epochs} + {cooldown_epochs} exceeds "
            f"total_epochs = {total_epochs}; train for more epochs (more steps or fewer steps per "
            "epoch) or shorten warmup/cooldown"
        )
    if not (isinstance(start_factor, int | float) and 0.0 < start_factor <= 1.0):
        raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
    if not (isinstance(offset, int | float) and math.isfinite(offset) and offset >= 0.0):
        raise ValueError(f"offset must be a finite number >= 0, got {offset!r}")


def _decay(s: float, offset: float) -> float:
    return 1.0 / (1.0 + math.sqrt(s + offset) - math.sqrt(offset))


def lr_factor(
    epoch: int,
    total_epochs: int,
    warmup_epochs: int = 1,
    cooldown_epochs: int = 2,
    start_factor: float = 0.1,
    offset: float = 1.0,
) -> float:
    """The factor on the base lr at epoch `epoch` (epochs completed, 0 .. total_epochs - 1)."""
    check_schedule(total_epochs, warmup_epochs, cooldown_epochs, start_factor, offset)
    _check_int("epoch", epoch, 0)
    if epoch >= total_epochs:
        raise ValueError(
            f"epoch {epoch} is past the schedule's last epoch {total_epochs - 1} "
            f"(total_epochs={total_epochs}, epochs counted from 0)"
        )
    cooldown_start = total_epochs - cooldown_epochs
    if cooldown_epochs > 0 and epoch >= cooldown_start:
        end_of_decay = _decay(cooldown_start - warmup_epochs, offset)  # >= 0: W + C <= E
        r = epoch - cooldown_start
        return end_of_decay * (1.0 - math.sqrt(r / cooldown_epochs))
    if warmup_epochs > 0 and epoch <= warmup_epochs:
        return start_factor + (1.0 - start_factor) * epoch / warmup_epochs
    return _decay(epoch - warmup_epochs, offset)


@dataclass(frozen=True)
class InverseSqrtSchedule:
    """The schedule's parameters, with the epoch of a step and the lr to apply.

    `epoch_steps` optimiser steps make one epoch; `total_epochs` is ceil(total_steps /
    epoch_steps) so a last, partial epoch still gets its cooldown factor.
    """

    base_lr: float
    total_steps: int
    epoch_steps: int
    warmup_epochs: int = 1
    cooldown_epochs: int = 2
    start_factor: float = 0.1
    offset: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.base_lr, int | float) and self.base_lr > 0):
            raise ValueError(f"base_lr must be > 0, got {self.base_lr!r}")
        _check_int("total_steps", self.total_steps, 1)
        _check_int("epoch_steps", self.epoch_steps, 1)
        check_schedule(
            self.total_epochs,
            self.warmup_epochs,
            self.cooldown_epochs,
            self.start_factor,
            self.offset,
        )

    @property
    def total_epochs(self) -> int:
        return -(-self.total_steps // self.epoch_steps)

    def epoch_of_step(self, step: int) -> int:
        """The epoch (completed epochs) in which optimiser step `step` (0-based) runs."""
        _check_int("step", step, 0)
        return min(step // self.epoch_steps, self.total_epochs - 1)

    def factor(self, epoch: int) -> float:
        return lr_factor(
            epoch,
            self.total_epochs,
            self.warmup_epochs,
            self.cooldown_epochs,
            self.start_factor,
            self.offset,
        )

    def lr_at_step(self, step: int) -> float:
        return self.base_lr * self.factor(self.epoch_of_step(step))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every param group's lr for step `step` (0-based); returns it.

        A pure function of the step, so a resumed run needs no scheduler state to continue.
        """
        lr = self.lr_at_step(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)


def epoch_lambda_lr(
    optimizer: torch.optim.Optimizer,
    total_epochs: int,
    warmup_epochs: int = 1,
    cooldown_epochs: int = 2,
    start_factor: float = 0.1,
    offset: float = 1.0,
) -> LambdaLR:
    """A LambdaLR over the optimiser's current lrs; call `.step()` once per epoch boundary."""
    check_schedule(total_epochs, warmup_epochs, cooldown_epochs, start_factor, offset)

    def factor(epoch: int) -> float:
        # LambdaLR evaluates one epoch past the end after the final .step(): hold the last value.
        e = min(epoch, total_epochs - 1)
        return lr_factor(e, total_epochs, warmup_epochs, cooldown_epochs, start_factor, offset)

    return LambdaLR(optimizer, factor)
