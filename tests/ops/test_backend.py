"""The dispatch rule: argument > $PHYSOK_KERNELS > auto; forcing an impossible backend errors."""

from __future__ import annotations

import pytest
import torch

from physok.ops import backend
from physok.ops.causal_conv3d import (
    causal_conv3d,
    causal_conv3d_output_shape,
    causal_conv3d_reference,
)


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "triton")
    assert backend.requested_backend("reference") == "reference"
    assert backend.requested_backend() == "triton"
    # "auto" (every config's default) is no preference: the environment still decides.
    assert backend.requested_backend("auto") == "triton"
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert backend.requested_backend("auto") == "reference"
    monkeypatch.delenv(backend.ENV_VAR)
    assert backend.requested_backend() == "auto"


def test_unknown_backend_names_its_source(monkeypatch):
    with pytest.raises(ValueError, match="backend argument='fast'"):
        backend.requested_backend("fast")
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="PHYSOK_KERNELS"):
        backend.requested_backend()


def test_auto_uses_reference_on_cpu_and_forcing_triton_without_a_way_to_run_it_fails(monkeypatch):
    x = torch.zeros(1)
    assert not backend.use_triton(x, "auto")
    assert not backend.use_triton(x, "reference")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="'triton' was forced"):
        backend.use_triton(x, "triton", op="causal_conv3d")


@pytest.mark.parametrize(
    "stride,kernel,padding", [(1, (3, 3, 3), "same"), ((2, 4, 4), (3, 4, 4), "valid"),
                              ((1, 2, 2), (1, 2, 2), "valid"), (1, (1, 1, 1), "same")],
)  # fmt: skip
def test_reference_is_causal_and_shapes_match(stride, kernel, padding):
    x = torch.randn(2, 3, 9, 8, 16, dtype=torch.float64)
    w = torch.randn(5, 3, *kernel, dtype=torch.float64)
    y = causal_conv3d(x, w, None, stride, padding, backend="reference")
    assert y.shape == causal_conv3d_output_shape(x.shape, w.shape, stride, padding)
    st = stride if isinstance(stride, int) else stride[0]
    x2 = x.clone()
    x2[:, :, 4] += 1
    y2 = causal_conv3d_reference(x2, w, None, stride, padding)
    changed = (y2 - y).abs().amax(dim=(0, 1, 3, 4)) > 0
    # Output frame i sees input frames <= i * st only.
    assert not changed[: (4 + st - 1) // st].any()
    assert changed[(4 + st - 1) // st]


def test_bad_arguments_are_clear():
    x = torch.randn(1, 3, 5, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        causal_conv3d(x, torch.randn(4, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="odd spatial kernels"):
        causal_conv3d(x, torch.randn(4, 3, 3, 2, 2), padding="same")
    with pytest.raises(ValueError, match="padding"):
        causal_conv3d(x, torch.randn(4, 3, 3, 3, 3), padding="full")
