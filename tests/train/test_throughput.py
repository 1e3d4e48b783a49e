"""FLOP counting, the peak table and the throughput meter (physok.train.throughput)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from physok.ops.causal_conv3d import causal_conv3d
from physok.ops.rms_normalise import rms_normalise
from physok.train import throughput as tp
from physok.train.throughput import (
    PEAK_ENV,
    ThroughputMeter,
    count_flops,
    count_step_flops,
    lookup_gpu,
    mfu,
    peak_flops,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# ---- FLOP counting ---------------------------------------------------------------------------
def test_linear_step_is_three_forwards() -> None:
    torch.manual_seed(0)
    b, d_in, d_hid, d_out = 4, 16, 32, 8
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, d_hid), torch.nn.ReLU(), torch.nn.Linear(d_hid, d_out)
    )
    fwd = [2 * b * d_in * d_hid, 2 * b * d_hid * d_out]  # 2*M*N*K per layer

    x = torch.randn(b, d_in, requires_grad=True)
    assert count_step_flops(lambda: model(x).sum().backward()) == 3 * sum(fwd)

    # An input without grad: the first layer skips its input gradient, so 2x for it, 3x after.
    x = torch.randn(b, d_in)
    assert count_step_flops(lambda: model(x).sum().backward()) == 2 * fwd[0] + 3 * fwd[1]

    # Forward only.
    with torch.no_grad():
        assert count_step_flops(lambda: model(x)) == sum(fwd)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_causal_conv_step_matches_analytic_count(backend: str) -> None:
    """Both backends count 3x the analytic forward: the Triton ops get their formulas."""
    torch.manual_seed(1)
    b, ci, c1, c2, t, s = 2, 3, 8, 4, 4, 8
    x = torch.randn(b, ci, t, s, s, device=DEVICE, requires_grad=True)
    w1 = torch.randn(c1, ci, 3, 3, 3, device=DEVICE, requires_grad=True)
    bias1 = torch.randn(c1, device=DEVICE, requires_grad=True)
    w2 = torch.randn(c2, c1, 2, 2, 2, device=DEVICE, requires_grad=True)

    def step() -> None:
        h = causal_conv3d(x, w1, bias1, 1, "same", backend=backend)
        y = causal_conv3d(h, w2, None, 2, "valid", backend=backend)
        y.square().mean().backward()

    # 'same' keeps (T, X, Y); the (2,2,2) stride-2 'valid' conv gives ((T-1)//2+1, X/2, Y/2).
    fwd1 = 2 * (b * c1 * t * s * s) * ci * 27
    fwd2 = 2 * (b * c2 * ((t - 1) // 2 + 1) * (s // 2) * (s // 2)) * c1 * 8
    count = count_flops(step)
    assert count.total == 3 * (fwd1 + fwd2)
    assert count.uncounted_ops == ()
    if backend == "triton":
        assert set(count.by_op) == {
            "physok.causal_conv3d",
            "physok.causal_conv3d_dgrad",
            "physok.causal_conv3d_wgrad",
        }


def test_attention_counted_on_cpu_too() -> None:
    """torch's table misses the CPU flash kernel; ours adds it (fwd 4*B*H*S^2*D, bwd 2x)."""
    torch.manual_seed(2)
    b, h, sq, sk, d = 2, 3, 16, 12, 8
    q = torch.randn(b, h, sq, d, requires_grad=True)
    k = torch.randn(b, h, sk, d, requires_grad=True)
    v = torch.randn(b, h, sk, d, requires_grad=True)
    fwd = 4 * b * h * sq * sk * d
    total = count_step_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    assert total == 3 * fwd


@torch.library.custom_op("physok_test::scaled_mm", mutates_args=())
def _opaque_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


@_opaque_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


def test_custom_op_without_formula_is_named_and_formula_fixes_it() -> None:
    a, b = torch.randn(5, 6), torch.randn(6, 7)
    with pytest.warns(UserWarning, match=r"physok_test\.scaled_mm"):
        assert count_step_flops(lambda: _opaque_mm(a, b)) == 0

    def formula(a_shape, b_shape, *, out_shape, **kw) -> int:  # type: ignore[no-untyped-def]
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total = count_step_flops(
            lambda: _opaque_mm(a, b), extra_formulas={torch.ops.physok_test.scaled_mm: formula}
        )
    assert total == 2 * 5 * 6 * 7


# ---- peak FLOP/s -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device_name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GeForce RTX 4090", None),
        ("Tesla V100-SXM2-16GB", None),
    ],
)
def test_peak_table_lookup(device_name: str, entry: str | None) -> None:
    found = lookup_gpu(device_name)
    assert (found.name if found else None) == entry


def test_peak_flops_by_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PEAK_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    cuda = torch.device("cuda", 0)
    assert peak_flops(cuda, torch.bfloat16) == pytest.approx(756.5e12)
    assert peak_flops(cuda, torch.float16) == pytest.approx(756.5e12)
    assert peak_flops(cuda, torch.float32) == pytest.approx(378e12)
    assert peak_flops(cuda, torch.float32, tf32=False) == pytest.approx(51e12)
    assert peak_flops("cuda", torch.int8) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some New GPU")
    assert peak_flops(cuda, torch.bfloat16) is None


def test_peak_flops_cpu_is_none_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setenv(PEAK_ENV, "790")
    assert peak_flops("cuda", torch.bfloat16) == pytest.approx(790e12)
    assert peak_flops("cpu", torch.float32) == pytest.approx(790e12)
    for bad in ("fast", "0", "-3", "nan"):
        monkeypatch.setenv(PEAK_ENV, bad)
        with pytest.raises(ValueError, match=PEAK_ENV):
            peak_flops("cuda", torch.bfloat16)


# ---- MFU and the meter -----------------------------------------------------------------------
def test_mfu_arithmetic() -> None:
    assert mfu(2e12, 3.0, 12e12) == pytest.approx(0.5)
    assert mfu(None, 3.0, 12e12) is None
    assert mfu(2e12, None, 12e12) is None
    assert mfu(2e12, 3.0, None) is None


def test_meter_excludes_warmup_and_reports_it() -> None:
    meter = ThroughputMeter(flops_per_step=10**12, peak_flops=4e12, warmup_steps=1)
    assert meter.as_dict()["steps_per_s"] is None
    meter.update(5.0, 8)  # the compile step
    assert meter.steps_per_s is None and meter.mfu is None
    for dt in (0.5, 0.25, 0.25):
        meter.update(dt, 8)
    record = meter.as_dict()
    assert record["steps_per_s"] == pytest.approx(3 / 1.0)
    assert record["samples_per_s"] == pytest.approx(24 / 1.0)
    assert record["mfu"] == pytest.approx(1e12 * 3.0 / 4e12)
    assert record["flops_per_step"] == 10**12
    assert record["warmup_s"] == pytest.approx(5.0)
    assert record["steps_measured"] == 3
    assert {"steps_per_s", "samples_per_s", "mfu", "flops_per_step"} <= set(record)


def test_meter_window_and_unknown_mfu() -> None:
    meter = ThroughputMeter(warmup_steps=0, window=2)
    for dt, n in ((1.0, 1), (0.5, 2), (0.25, 4)):
        meter.update(dt, n)
    # Only the last two steps: 2 steps in 0.75 s, 6 samples.
    assert meter.steps_per_s == pytest.approx(2 / 0.75)
    assert meter.samples_per_s == pytest.approx(6 / 0.75)
    assert meter.steps_measured == 2
    assert meter.mfu is None  # no FLOPs or peak known
    assert meter.as_dict()["warmup_s"] is None
    meter.flops_per_step, meter.peak_flops = 100, 1000.0
    assert meter.mfu == pytest.approx(100 * (2 / 0.75) / 1000)

    everything = ThroughputMeter(warmup_steps=0)
    for dt in (1.0, 0.5, 0.25):
        everything.update(dt, 1)
    assert everything.steps_per_s == pytest.approx(3 / 1.75)


def test_meter_step_timer_and_bad_inputs() -> None:
    meter = ThroughputMeter(warmup_steps=0)
    with meter.step(samples=3):
        sum(range(1000))
    assert meter.steps_measured == 1
    assert meter.steps_per_s is not None and math.isfinite(meter.steps_per_s)
    assert meter.samples_per_s == pytest.approx(3 * meter.steps_per_s)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_seconds"):
            meter.update(bad, 1)
    with pytest.raises(ValueError, match="samples"):
        meter.update(1.0, -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        ThroughputMeter(warmup_steps=-1)
    with pytest.raises(ValueError, match="window"):
        ThroughputMeter(window=0)


def test_formulas_cover_the_registered_kernel_ops() -> None:
    """The kernel ops, once registered (conftest sets the interpreter on CPU), have formulas."""
    formulas = tp.extra_flop_formulas()
    names = {str(k) for k in formulas}
    if tp.triton_available():
        assert {
            "physok.causal_conv3d",
            "physok.causal_conv3d_dgrad",
            "physok.causal_conv3d_wgrad",
        } <= names
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in names


def test_zero_flop_kernel_ops_do_not_warn() -> None:
    """The Triton RMS normalisation is a known 0-FLOP op: no 'uncounted' warning for it."""
    fields = torch.randn(2, 3, 2, 8, 8, device=DEVICE, requires_grad=True)
    w = torch.randn(4, 2, 1, 3, 3, device=DEVICE, requires_grad=True)

    def step() -> None:
        x, _ = rms_normalise(fields, backend="triton")
        y = causal_conv3d(x.transpose(1, 2), w, None, 1, "same", backend="triton")
        y.square().mean().backward()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count = count_flops(step)
    assert "physok.rms_normalise" not in count.by_op
    assert count.uncounted_ops == ()
    assert count.total == 3 * 2 * (2 * 4 * 3 * 8 * 8) * 2 * 9


@pytest.mark.slow
def test_tokeniser_step_counts_the_same_on_both_backends() -> None:
    """A whole (small) tokeniser step: the Triton path counts what the reference counts.
    Slow on CPU (the interpreter runs every conv program one by one: ~2.5 minutes)."""
    from physok.models.tokeniser.config import TokeniserConfig
    from physok.models.tokeniser.tokeniser import Tokeniser

    totals = {}
    fields = torch.randn(1, 9, 2, 32, 32, device=DEVICE)
    for backend in ("reference", "triton"):
        torch.manual_seed(0)
        config = TokeniserConfig.fast(channels=(4, 8, 8), norm_groups=2, kernel_backend=backend)
        tok = Tokeniser(config).to(DEVICE)

        def step(tok: Tokeniser = tok, backend: str = backend) -> None:
            x, _ = rms_normalise(fields, backend=backend)
            tok(x, [0, 1], scales=tok.eval_scales).square().mean().backward()

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            totals[backend] = count_flops(step).total
    assert totals["reference"] > 0
    assert totals["triton"] == totals["reference"]


def test_counting_leaves_compile_and_rng_untouched() -> None:
    """Counting a module's first call must not stop torch.compile from compiling it later
    (dynamo cannot trace under a dispatch mode and would mark the code "skip"), nor move the
    RNG streams (drop path draws from them; exact resume depends on them)."""
    graphs = []

    def recording_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(gm)
        return gm.forward

    class Block(torch.nn.Module):  # user code: dynamo skips torch.nn's own frames
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(self.linear(x), 0.5, self.training)

    torch._dynamo.reset()
    model = Block()
    model.compile(backend=recording_backend)
    x = torch.randn(2, 4)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    flops = count_step_flops(lambda: model(x).sum().backward())
    assert flops == 2 * (2 * 2 * 4 * 4)  # forward + weight gradient (x needs no gradient)
    assert torch.equal(torch.get_rng_state(), before)
    assert not graphs  # counted eagerly
    model(x)
    assert len(graphs) == 1  # and compiled on the next ordinary call
    torch._dynamo.reset()
