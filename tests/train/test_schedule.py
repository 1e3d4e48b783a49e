"""Inverse-sqrt schedule: hand-computed factors at warmup, decay and cooldown epochs; stepping
per epoch; argument errors."""

from __future__ import annotations

import math

import pytest
import torch

from physok.train.schedule import InverseSqrtSchedule, epoch_lambda_lr, lr_factor

R2, R3 = math.sqrt(2.0), math.sqrt(3.0)


def test_paper_defaults_by_hand() -> None:
    """E=14, W=1, C=2, f=0.1, o=1: decay is 1/(1 + sqrt(s+1) - 1) = 1/sqrt(s+1)."""
    expected = {
        0: 0.1,  # first epoch: the start factor
        1: 1.0,  # end of warmup: the peak
        2: 1 / R2,  # s = 1
        3: 1 / R3,  # s = 2
        4: 0.5,  # s = 3
        11: 1 / math.sqrt(11),  # s = 10, last decay epoch
        12: 1 / math.sqrt(12),  # cooldown r = 0: decay value at E - C = 12 (s = 11)
        13: (1 / math.sqrt(12)) * (1 - math.sqrt(0.5)),  # r = 1
    }
    for epoch, value in expected.items():
        assert lr_factor(epoch, 14) == pytest.approx(value, rel=1e-12), epoch


def test_other_parameters_by_hand() -> None:
    """E=10, W=3, C=3, f=0.25, o=4."""
    kw = dict(total_epochs=10, warmup_epochs=3, cooldown_epochs=3, start_factor=0.25, offset=4.0)
    d = 1 / (1 + math.sqrt(8) - 2)  # decay at e = 7: s = 4
    expected = {
        0: 0.25,
        1: 0.5,
        2: 0.75,
        3: 1.0,
        4: 1 / (1 + math.sqrt(5) - 2),  # s = 1
        6: 1 / (1 + math.sqrt(7) - 2),  # s = 3
        7: d,  # cooldown start, r = 0
        8: d * (1 - math.sqrt(1 / 3)),
        9: d * (1 - math.sqrt(2 / 3)),
    }
    for epoch, value in expected.items():
        assert lr_factor(epoch, **kw) == pytest.approx(value, rel=1e-12), epoch
    # No warmup and offset 0: decay 1/(1 + sqrt(s)) from s = 0.
    assert lr_factor(0, 5, 0, 0, offset=0.0) == 1.0
    assert lr_factor(4, 5, 0, 0, offset=0.0) == pytest.approx(1 / 3)
    # Warmup and cooldown filling the run: the cooldown starts at the peak.
    assert [lr_factor(e, 3, 1, 2) for e in range(3)] == pytest.approx(
        [0.1, 1.0, 1 - math.sqrt(0.5)]
    )


def test_schedule_sets_lr_per_epoch_of_steps() -> None:
    sched = InverseSqrtSchedule(base_lr=2e-4, total_steps=29_400, epoch_steps=2_100)
    assert sched.total_epochs == 14
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=1.0)
    seen = {}
    for step in (0, 2_099, 2_100, 4_199, 4_200, 25_199, 25_200, 27_300, 29_399):
        seen[step] = sched.apply(opt, step)
        assert opt.param_groups[0]["lr"] == seen[step]
    assert seen[0] == seen[2_099] == pytest.approx(2e-5)  # constant within an epoch
    assert seen[2_100] == seen[4_199] == pytest.approx(2e-4)
    assert seen[4_200] == pytest.approx(2e-4 / R2)
    assert seen[25_199] == pytest.approx(2e-4 / math.sqrt(11))  # last decay epoch
    assert seen[25_200] == pytest.approx(2e-4 / math.sqrt(12))  # first cooldown epoch
    assert seen[27_300] == seen[29_399] == pytest.approx(2e-4 / math.sqrt(12) * (1 - R2 / 2))
    # A partial last epoch still counts: 25 steps of 10 are 3 epochs.
    short = InverseSqrtSchedule(1.0, total_steps=25, epoch_steps=10)
    assert short.total_epochs == 3 and short.epoch_of_step(24) == 2
    assert short.state_dict()["epoch_steps"] == 10


def test_lambda_lr_wrapper_steps_per_epoch() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=0.5)
    sched = epoch_lambda_lr(opt, total_epochs=5, warmup_epochs=1, cooldown_epochs=2)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5 * lr_factor(e, 5) for e in range(5)])
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(epoch=0, total_epochs=2, warmup_epochs=1, cooldown_epochs=2), r"1 \+ 2 exceeds"),
        (dict(epoch=0, total_epochs=0), r"total_epochs must be an integer >= 1"),
        (dict(epoch=0, total_epochs=5, warmup_epochs=-1), r"warmup_epochs must be"),
        (dict(epoch=0, total_epochs=5, start_factor=0.0), r"start_factor must be in \(0, 1\]"),
        (dict(epoch=0, total_epochs=5, offset=-1.0), r"offset must be a finite number >= 0"),
        (dict(epoch=5, total_epochs=5), r"epoch 5 is past the schedule's last epoch 4"),
        (dict(epoch=-1, total_epochs=5), r"epoch must be an integer >= 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lr_factor(**kwargs)


def test_bad_schedule_objects() -> None:
    with pytest.raises(ValueError, match="epoch_steps must be an integer >= 1"):
        InverseSqrtSchedule(1e-3, total_steps=10, epoch_steps=0)
    with pytest.raises(ValueError, match=r"1 \+ 2 exceeds total_epochs = 2"):
        InverseSqrtSchedule(1e-3, total_steps=20, epoch_steps=10)
    with pytest.raises(ValueError, match="base_lr must be > 0"):
        InverseSqrtSchedule(0.0, total_steps=20, epoch_steps=1)
