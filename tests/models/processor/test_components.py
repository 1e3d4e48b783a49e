"""RMSGroupNorm, axial RoPE, the T5 relative position bias and drop path, each on its own."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from physok.models.processor import (
    AxialRotary,
    DropPath,
    RelativePositionBias,
    RMSGroupNorm,
    normalised_positions,
    relative_position_bucket,
)

# -- RMSGroupNorm ------------------------------------------------------------------------------


def test_rms_group_norm_matches_walrus_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, 12, generator=g, dtype=torch.float64) * 3 + 1
    norm = RMSGroupNorm(4, 12, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(12, generator=g))
    out = norm(x)
    # Walrus: channels-first (N, C, X, Y), F.rms_norm over (C/G, X, Y) per group, times weight.
    cf = x.reshape(6, 5, 6, 12).permute(0, 3, 1, 2).reshape(6, 4, 3, 5, 6)
    ref = F.rms_norm(cf, (3, 5, 6), eps=1e-6).reshape(6, 12, 5, 6) * norm.weight[:, None, None]
    ref = ref.permute(0, 2, 3, 1).reshape(x.shape)
    torch.testing.assert_close(out, ref)


def test_rms_group_norm_statistics_stay_within_frame_and_group():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 3, 8, generator=g, dtype=torch.float64)
    norm = RMSGroupNorm(2, 8, eps=1e-12).double()  # tiny eps: scale invariance is exact
    out = norm(x)
    # Unit mean square per (sample, frame, group) with weight 1.
    ms = out.unflatten(-1, (2, 4)).square().mean(dim=(2, 3, 5))
    torch.testing.assert_close(ms, torch.ones_like(ms), rtol=1e-5, atol=1e-5)
    # Scaling one frame's second group changes nothing; perturbing frame 2 touches frame 2 only.
    y = x.clone()
    y[:, 1, ..., 4:] *= 7.0
    torch.testing.assert_close(norm(y), out)
    y = x.clone()
    y[:, 2] += torch.randn(y[:, 2].shape, generator=g, dtype=torch.float64)
    changed = (norm(y) - out).abs().amax(dim=(0, 2, 3, 4)) > 0
    assert changed.tolist() == [False, False, True, False]
    assert norm(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="num_groups=3 must divide num_channels=8"):
        RMSGroupNorm(3, 8)


# -- axial RoPE --------------------------------------------------------------------------------


def test_positions_are_normalised_to_minus_one_one():
    p = normalised_positions(5, dtype=torch.float64)
    torch.testing.assert_close(p, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64))
    assert normalised_positions(1).tolist() == [0.0]


def test_rotation_angles_use_normalised_positions_per_axis():
    rot = AxialRotary(20, max_freq=8.0).double()
    p = rot.pairs
    assert p == 5
    e = torch.zeros(3 * 4, 20, dtype=torch.float64)
    e[:, 0] = 1.0  # first x pair
    e[:, 2 * p] = 1.0  # first y pair
    out = rot(e, 3, 4).reshape(3, 4, 20)
    # Lowest frequency is pi: the corners p = -1 and p = +1 both rotate (1, 0) to (-1, 0).
    px, py = (
        normalised_positions(3, dtype=torch.float64),
        normalised_positions(4, dtype=torch.float64),
    )
    torch.testing.assert_close(out[:, :, 0], torch.cos(math.pi * px)[:, None].expand(3, 4))
    torch.testing.assert_close(out[:, :, p], torch.sin(math.pi * px)[:, None].expand(3, 4))
    torch.testing.assert_close(out[:, :, 2 * p], torch.cos(math.pi * py)[None, :].expand(3, 4))
    torch.testing.assert_close(out[:, :, 3 * p], torch.sin(math.pi * py)[None, :].expand(3, 4))
    # Highest frequency is pi * max_freq / 2.
    torch.testing.assert_close(rot.freqs[-1], torch.tensor(4 * math.pi, dtype=torch.float64))


@pytest.mark.parametrize("head_dim", [20, 18])
def test_rope_scores_depend_only_on_relative_position(head_dim):
    nx, ny = 5, 6
    rot = AxialRotary(head_dim, max_freq=16.0).double()
    g = torch.Generator().manual_seed(head_dim)
    q = torch.randn(head_dim, generator=g, dtype=torch.float64).expand(nx * ny, head_dim)
    k = torch.randn(head_dim, generator=g, dtype=torch.float64).expand(nx * ny, head_dim)
    qr, kr = rot(q, nx, ny), rot(k, nx, ny)
    # Norm preserving; dims beyond 4 * pairs are not rotated.
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(qr[:, 4 * rot.pairs :], q[:, 4 * rot.pairs :])
    s = (qr @ kr.T).reshape(nx, ny, nx, ny)
    for shift in (1, 2):
        # Shift query and key together along x, then along y: identical scores.
        torch.testing.assert_close(s[shift:, :, shift:, :], s[:-shift, :, :-shift, :])
        torch.testing.assert_close(s[:, shift:, :, shift:], s[:, :-shift, :, :-shift])
    # ...while the relative position itself matters on both axes (so this test can fail).
    assert (s[0, 0, 1, 0] - s[0, 0, 0, 0]).abs() > 1e-3
    assert (s[0, 0, 0, 1] - s[0, 0, 0, 0]).abs() > 1e-3


def test_rope_axes_are_separate():
    rot = AxialRotary(16, max_freq=16.0).double()
    g = torch.Generator().manual_seed(3)
    q = torch.randn(16, generator=g, dtype=torch.float64)
    q[8:] = 0  # only the x-axis block
    qs = q.expand(4 * 5, 16)
    s = (rot(qs, 4, 5) @ rot(qs, 4, 5).T).reshape(4, 5, 4, 5)
    # With only x dims populated the score ignores y positions entirely.
    torch.testing.assert_close(s, s[:, :1, :, :1].expand(4, 5, 4, 5))


# -- T5 relative position bias -----------------------------------------------------------------


def _causal_buckets(distances, num_buckets=32, max_distance=128):
    return relative_position_bucket(
        -torch.as_tensor(distances), bidirectional=False, num_buckets=num_buckets,
        max_distance=max_distance,
    )  # fmt: skip


def test_causal_buckets_exact_then_logarithmic_and_monotone():
    d = torch.arange(0, 600)
    b = _causal_buckets(d)
    assert b[:16].tolist() == list(range(16))  # one bucket per small distance
    assert (b.diff() >= 0).all() and b.max() == 31 and b.min() == 0
    # Logarithmic: bucket 16 + k starts at distance ~16 * (128 / 16) ** (k / 16).
    starts = torch.tensor([d[b == k].min().item() for k in range(16, 32)], dtype=torch.float64)
    expected = 16 * 8 ** (torch.arange(16, dtype=torch.float64) / 16)
    assert ((starts - expected).abs() <= 1).all(), starts.tolist()
    # Future keys (positive relative position) share bucket 0 in causal mode.
    assert _causal_buckets([-1, -5]).tolist() == [0, 0]


@pytest.mark.parametrize("max_distance", [20, 32, 64, 128, 300])
def test_max_distance_is_honoured(max_distance):
    d = torch.arange(0, 2 * max_distance)
    b = _causal_buckets(d, max_distance=max_distance)
    assert (b[max_distance:] == 31).all()
    # Every bucket below the last is reached before max_distance is.
    assert set(b[:max_distance].tolist()) | {31} >= set(range(16)) | {31}


def test_max_distance_changes_the_buckets():
    # Walrus' call drops max_distance (its default 32 wins): with 128 distance 40 is not capped.
    assert _causal_buckets([40], max_distance=32).item() == 31
    assert _causal_buckets([40], max_distance=128).item() < 31
    assert RelativePositionBias(2, max_distance=32).buckets(41)[40, 0].item() == 31
    assert RelativePositionBias(2, max_distance=128).buckets(41)[40, 0].item() < 31


def test_bidirectional_buckets_split_by_sign():
    r = torch.tensor([-3, 0, 3])
    b = relative_position_bucket(r, bidirectional=True, num_buckets=32, max_distance=128)
    assert b.tolist() == [3, 0, 16 + 3]


def test_bias_is_learned_per_head_and_masks_the_future():
    bias_mod = RelativePositionBias(3, num_buckets=32, max_distance=128)
    bias = bias_mod(6)
    assert bias.shape == (1, 3, 6, 6)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert torch.isinf(bias[0][:, future]).all() and (bias[0][:, future] < 0).all()
    i, j = torch.tril_indices(6, 6)
    expected = bias_mod.embedding.weight[(i - j)].T  # distance i - j < 16: bucket = distance
    torch.testing.assert_close(bias[0][:, i, j], expected)
    with pytest.raises(ValueError, match="max_distance=16 must exceed"):
        RelativePositionBias(2, num_buckets=32, max_distance=16)


# -- drop path ---------------------------------------------------------------------------------


def test_drop_path_is_identity_in_eval_and_per_sample_in_training():
    x = torch.ones(4000, 3, 2)
    dp = DropPath(0.5)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y.reshape(4000, -1)
    assert (per_sample == per_sample[:, :1]).all()  # whole samples kept or dropped
    assert set(per_sample[:, 0].unique().tolist()) == {0.0, 2.0}  # kept ones rescaled
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert abs(kept - 0.5) < 5 * math.sqrt(0.25 / 4000)
    assert torch.equal(DropPath(0.0).train()(x), x)
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.0)
