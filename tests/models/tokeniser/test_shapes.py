"""Every scale combination maps 1 + 2^n frames and power-of-two grids to the expected shapes."""

from __future__ import annotations

import pytest
import torch

from physok.models.tokeniser import Tokeniser, TokeniserConfig
from physok.models.tokeniser.scales import all_scale_combinations, latent_shape


@pytest.mark.parametrize("frames,grid", [(9, (32, 32)), (5, (64, 32)), (17, (32, 64))])
def test_every_scale_combination_round_trips_shapes(tiny, frames, grid):
    tok = Tokeniser(tiny).eval()
    idx = torch.tensor([1, 4])
    x = torch.randn(2, frames, 2, *grid)
    for scales in all_scale_combinations(tiny):
        st = 1
        t, xs, ys = frames, *grid
        for s_t, s_s in scales:
            st *= s_t
            t, xs, ys = (t - 1) // s_t + 1, xs // s_s, ys // s_s
        with torch.no_grad():
            z = tok.encode(x, idx, scales)
            y = tok.decode(z, idx, scales)
        assert z.shape == (2, t, tiny.latent_channels, xs, ys), scales
        assert (t - 1) * st + 1 == frames
        assert tok.latent_shape(frames, grid, scales) == z.shape[1:]
        assert y.shape == x.shape, scales


def test_rayleigh_benard_like_512x128_grid(make_config):
    tok = Tokeniser(make_config()).eval()
    x = torch.randn(1, 9, 4, 512, 128)
    with torch.no_grad():
        z = tok.encode(x, [0, 1, 2, 3])
        y = tok.decode(z, [0, 1, 2, 3])
    assert z.shape == (1, 3, 6, 16, 4)  # eval scales (1,2),(2,4),(2,4): 9 -> 3, /32 in space
    assert y.shape == x.shape


def test_paper_preset_eval_compression_matches_the_paper():
    cfg = TokeniserConfig.paper()
    assert latent_shape(9, (512, 512), cfg.eval_scales) == (3, (16, 16))
    assert cfg.latent_channels == 18 and cfg.channels == (16, 32, 64)


def test_bad_shapes_name_the_problem(make_config):
    tok = Tokeniser(make_config()).eval()
    with pytest.raises(ValueError, match="1 \\+ a multiple of 4"):
        tok.encode(torch.randn(1, 8, 2, 32, 32), [0, 1])
    with pytest.raises(ValueError, match="not divisible by the spatial compression 32"):
        tok.encode(torch.randn(1, 9, 2, 48, 32), [0, 1])
    with pytest.raises(ValueError, match="field_indices"):
        tok.encode(torch.randn(1, 9, 2, 32, 32), [0, 1, 2])
    with pytest.raises(ValueError, match="not allowed"):
        tok.encode(torch.randn(1, 9, 2, 32, 32), [0, 1], scales=((2, 2), (1, 2), (1, 2)))
    with pytest.raises(ValueError, match="repeat"):
        tok.encode(torch.randn(1, 9, 2, 32, 32), [1, 1])


def test_scales_are_sampled_in_training_and_fixed_in_eval(make_config):
    cfg = make_config()
    tok = Tokeniser(cfg)
    g = torch.Generator().manual_seed(0)
    drawn = {tok.sample_scales(g) for _ in range(200)}
    assert len(drawn) == 16  # 1 x 4 x 4 combinations, all reachable
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [tok.sample_scales(g1) for _ in range(5)] == [tok.sample_scales(g2) for _ in range(5)]
    tok.eval()
    assert tok.resolve_scales(None) == cfg.eval_scales
