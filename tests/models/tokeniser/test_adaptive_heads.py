"""Adaptive heads: subsets of the registry's fields run; unused rows get no gradient."""

from __future__ import annotations

import math

import torch

from physok.models.tokeniser import Tokeniser
from physok.models.tokeniser.adaptive_heads import AdaptiveEncoderHead
from physok.ops.causal_conv3d import causal_conv3d_reference


def test_subset_of_fields_runs_and_unused_rows_get_zero_gradient(make_config):
    cfg = make_config()
    tok = Tokeniser(cfg)
    active = torch.tensor([2, 5, 11])
    x = torch.randn(2, 9, 3, 32, 32)
    y = tok(x, active, cfg.eval_scales)
    assert y.shape == x.shape
    y.square().mean().backward()
    unused = torch.ones(cfg.max_fields, dtype=torch.bool)
    unused[active] = False
    enc, dec = tok.encoder.head, tok.decoder.head
    assert enc.weight.grad[:, unused].abs().max() == 0
    assert dec.weight.grad[unused].abs().max() == 0
    assert dec.bias.grad[unused].abs().max() == 0
    assert (enc.weight.grad[:, active].abs().amax(dim=(0, 2, 3, 4)) > 0).all()
    assert (dec.weight.grad[active].abs().amax(dim=(1, 2, 3, 4)) > 0).all()


def test_encoder_head_equals_full_kernel_on_zero_padded_fields_rescaled():
    head = AdaptiveEncoderHead(max_fields=7, out_channels=4).double()
    active = torch.tensor([6, 0, 3])
    x = torch.randn(2, 3, 5, 8, 8, dtype=torch.float64)
    full = torch.zeros(2, 7, 5, 8, 8, dtype=torch.float64)
    full[:, active] = x
    expected = causal_conv3d_reference(full, head.weight * math.sqrt(7 / 3), head.bias)
    torch.testing.assert_close(head(x, active), expected)


def test_field_order_follows_the_indices(make_config):
    tok = Tokeniser(make_config()).double().eval()
    x = torch.randn(1, 9, 2, 32, 32, dtype=torch.float64)
    y = tok(x, [4, 9])
    y_swapped = tok(x.flip(2), [9, 4])
    torch.testing.assert_close(y_swapped, y.flip(2))
