"""SOAP and AdamW builders: heavyball's compile switch, exact state round trips, bad options."""

from __future__ import annotations

import io

import heavyball
import heavyball.utils
import pytest
import torch
from torch import nn

from physok.train import optim


@pytest.fixture(autouse=True)
def _restore_heavyball_global():
    saved = heavyball.utils.compile_mode
    yield
    heavyball.utils.compile_mode = saved


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 6, 3), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 2, 6, 6, generator=g)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def test_soap_on_cpu_switches_heavyball_compile_off_and_cuda_default_on() -> None:
    heavyball.utils.compile_mode = "max-autotune-no-cudagraphs"
    opt = optim.build_soap(_net().parameters(), lr=1e-3)
    assert isinstance(opt, heavyball.SOAP)
    assert heavyball.utils.compile_mode is None and not optim.heavyball_compile_enabled()
    optim.build_soap(_net().parameters(), compile=True)  # explicit request wins
    assert heavyball.utils.compile_mode == "max-autotune-no-cudagraphs"
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and tuple(group["betas"]) == (0.95, 0.95)
    assert group["weight_decay"] == 0.01


def test_soap_state_round_trips_exactly_through_weights_only_load() -> None:
    a = _net(1)
    opt_a = optim.build_soap(a.parameters(), lr=3e-3, precondition_frequency=2)
    _steps(a, opt_a, 5, seed=0)
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b = _net(2)
    b.load_state_dict(saved["model"])
    opt_b = optim.build_soap(b.parameters(), lr=3e-3, precondition_frequency=2)
    opt_b.load_state_dict(saved["opt"])
    _steps(a, opt_a, 4, seed=1)  # crosses preconditioner refreshes
    _steps(b, opt_b, 4, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_adamw_defaults_and_round_trip() -> None:
    a = _net(3)
    opt = optim.build_adamw(a.parameters())
    group = opt.param_groups[0]
    assert group["lr"] == 2e-4 and group["eps"] == 1e-10 and group["weight_decay"] == 1e-4
    assert group["fused"]  # torch's fused kernel, on CPU too
    _steps(a, opt, 2, seed=0)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2 = optim.build_adamw(a.parameters())
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    assert opt2.state_dict()["state"][0]["step"] == 2


def _soap_preconditioners(opt: torch.optim.Optimizer) -> list:
    """The per-dimension preconditioner matrices (None: that dimension is not rotated) of the
    optimiser's only parameter, wherever heavyball nests them in its state."""
    found: list = []

    def walk(d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            elif "GG" in str(k):
                found.extend(v)

    walk(next(iter(opt.state.values())))
    return found


def test_soap_max_precond_dim_leaves_longer_dimensions_unrotated() -> None:
    """A dimension longer than max_precond_dim gets no preconditioner; shorter ones keep theirs
    (heavyball merges trailing dims while the product fits: 12 x 3 x 2 x 2 is preconditioned
    as 12 x 12 under a large limit, as 12, 3 and 4 under a limit of 8)."""
    torch.manual_seed(0)
    grad = torch.randn(12, 3, 2, 2)

    def shapes(max_dim: int) -> list:
        w = nn.Parameter(torch.randn(12, 3, 2, 2))
        opt = optim.build_optimizer(
            "soap", [w], lr=1e-3, betas=(0.95, 0.95), weight_decay=0.0, max_precond_dim=max_dim
        )
        assert opt.param_groups[0]["max_precond_dim"] == max_dim
        w.grad = grad.clone()
        opt.step()
        return [None if g is None else g.shape[-1] for g in _soap_preconditioners(opt)]

    assert None not in shapes(2048)  # every dimension rotated ([12, 12] with heavyball 3.2)
    limited = shapes(8)  # [None, 3, 4] with heavyball 3.2
    assert limited[0] is None and all(g is not None and g <= 8 for g in limited[1:])


def test_build_optimizer_by_name_and_bad_options() -> None:
    assert isinstance(
        optim.build_optimizer(
            "adamw", _net().parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0
        ),
        torch.optim.AdamW,
    )
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optim.build_optimizer("sgd", _net().parameters(), lr=1, betas=(0.9, 0.9), weight_decay=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        optim.build_soap(_net().parameters(), lr=0.0)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        optim.build_adamw(_net().parameters(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="no parameters"):
        optim.build_soap([])
