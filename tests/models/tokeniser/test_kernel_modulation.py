"""Kernel modulation: base kernel unchanged at the base scale, documented resize otherwise."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from physok.models.tokeniser import Tokeniser
from physok.models.tokeniser.flexible_downsample import FlexibleDownsample
from physok.models.tokeniser.flexible_upsample import DepthToSpaceUpsample, TransposedUpsample
from physok.models.tokeniser.kernel_modulation import modulate_kernel
from physok.models.tokeniser.scales import all_scale_combinations
from physok.ops.causal_conv3d import causal_conv3d_reference


def test_base_scale_uses_the_base_kernel_unchanged():
    layer = FlexibleDownsample(3, 5, (1, 2), (2, 4))
    assert layer.kernel((2, 4)) is layer.weight


@pytest.mark.parametrize("target", [(1, 2, 2), (3, 2, 2), (1, 4, 4)])
def test_pinv_resize_sums_blocks_and_interpolate_averages_them(target):
    w = torch.randn(5, 3, 3, 4, 4, dtype=torch.float64)
    bt, bx = 3 // target[0], 4 // target[1]
    blocks = w.reshape(5, 3, target[0], bt, target[1], bx, target[2], bx)
    block_sum = blocks.sum(dim=(3, 5, 7))
    torch.testing.assert_close(modulate_kernel(w, target, "pinv"), block_sum)
    torch.testing.assert_close(
        modulate_kernel(w, target, "interpolate"), block_sum / (bt * bx * bx)
    )


def test_pinv_kernel_on_coarse_input_answers_like_base_kernel_on_fine_input():
    """The FlexiViT property: <x, w> == <R x, w'> for inputs constant on the resize blocks."""
    w = torch.randn(4, 2, 3, 4, 4, dtype=torch.float64)
    coarse = torch.randn(1, 2, 1, 2, 2, dtype=torch.float64)
    fine = coarse.repeat_interleave(3, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    small = modulate_kernel(w, (1, 2, 2), "pinv")
    torch.testing.assert_close(F.conv3d(fine, w), F.conv3d(coarse, small))


def test_gradients_reach_the_base_kernel_from_every_scale():
    down = FlexibleDownsample(3, 4, (1, 2), (2, 4)).double()
    up = DepthToSpaceUpsample(4, (1, 2), (2, 4)).double()
    tup = TransposedUpsample(4, (1, 2), (2, 4)).double()
    x = torch.randn(2, 3, 5, 8, 8, dtype=torch.float64)
    for scale in itertools.product((1, 2), (2, 4)):
        for layer in (down, up, tup):
            layer.zero_grad()
        z = down(x, scale)
        (up(z, scale).square().sum() + tup(z, scale).square().sum()).backward()
        for layer in (down, up, tup):
            assert layer.weight.grad is not None, (scale, layer)
            assert layer.weight.grad.abs().sum() > 0, (scale, layer)


def test_depth_to_space_subsampling_equals_subsampled_base_upsample():
    """Selecting base output channels == upsampling at the base scale and subsampling."""
    up = DepthToSpaceUpsample(3, (1, 2), (2, 4)).double()
    x = torch.randn(2, 3, 3, 4, 4, dtype=torch.float64)
    # The base upsample before its leading frame is dropped.
    base = rearrange(
        causal_conv3d_reference(x, up.weight, up.bias),
        "b (c pt px py) t x y -> b c (t pt) (x px) (y py)",
        pt=2,
        px=4,
        py=4,
    )
    for st, ss in itertools.product((1, 2), (2, 4)):
        expected = base[:, :, :: 2 // st, :: 4 // ss, :: 4 // ss][:, :, st - 1 :]
        torch.testing.assert_close(up(x, (st, ss)), expected)


def test_whole_tokeniser_trains_shared_parameters_at_every_scale(make_config):
    cfg = make_config()
    tok = Tokeniser(cfg).double()
    x = torch.randn(1, 9, 2, 32, 32, dtype=torch.float64)
    for scales in all_scale_combinations(cfg):
        tok.zero_grad()
        tok(x, [0, 1], scales).square().mean().backward()
        for name, p in tok.named_parameters():
            if "head" in name:
                continue  # heads: only active rows train (tested separately)
            assert p.grad is not None and p.grad.abs().sum() > 0, (scales, name)
