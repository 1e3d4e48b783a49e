"""Causality by perturbation: input frame t never influences earlier latents/reconstructions."""

from __future__ import annotations

import math

import pytest
import torch

from physok.models.tokeniser import Tokeniser
from physok.models.tokeniser.scales import all_scale_combinations

T, GRID, N_FIELDS = 9, (32, 32), 3


def _chunk(frame: int, s: int) -> int:
    """Compression chunk of a frame: frame 0 alone, then (i-1)*s+1 .. i*s is chunk i."""
    return math.ceil(frame / s)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, T, N_FIELDS, *GRID, generator=g, dtype=torch.float64)


def test_encoder_and_decoder_are_causal_for_every_scale_combination(tiny, inputs):
    torch.manual_seed(1)
    tok = Tokeniser(tiny).double().eval()
    idx = torch.tensor([0, 3, 7])
    for scales in all_scale_combinations(tiny):
        s = math.prod(st for st, _ in scales)
        with torch.no_grad():
            z0 = tok.encode(inputs, idx, scales)
            y0 = tok.decode(z0, idx, scales)
        for t in range(1, T):
            x = inputs.clone()
            x[:, t] += torch.randn_like(x[:, t])
            with torch.no_grad():
                z = tok.encode(x, idx, scales)
                y = tok.decode(z, idx, scales)
            dz = (z - z0).abs().amax(dim=(0, 2, 3, 4))
            dy = (y - y0).abs().amax(dim=(0, 2, 3, 4))
            # Latent i summarises frames <= i * s: those with i * s < t must not move ...
            for i in range(z.shape[1]):
                if i * s < t:
                    assert dz[i] <= 1e-12, (scales, t, i, float(dz[i]))
            # ... and the latent holding frame t must (else the test could not fail).
            assert dz[_chunk(t, s)] > 1e-6, (scales, t)
            if tiny.upsampling == "transposed":
                # Strictly causal: no reconstructed frame before t moves. (Frames between
                # latent positions are extrapolated from the past, so frame t itself may
                # not move either; some later frame must.)
                untouched = [j for j in range(T) if j < t]
                assert dy[t:].max() > 1e-6, (scales, t)
            else:
                # Depth-to-space decodes latent i into its whole chunk: causal per chunk.
                untouched = [j for j in range(T) if _chunk(j, s) < _chunk(t, s)]
                assert dy[t] > 1e-6, (scales, t)
            for j in untouched:
                assert dy[j] <= 1e-12, (scales, t, j, float(dy[j]))


def test_depth_to_space_with_temporal_compression_is_chunk_causal_not_frame_causal(
    inputs, make_config
):
    """Documented limit: within a chunk a frame is decoded from the latent that saw the chunk."""
    tok = Tokeniser(make_config()).double().eval()
    idx = torch.tensor([0, 1, 2])
    scales = ((1, 2), (2, 2), (1, 2))  # temporal compression 2: chunks {0}, {1,2}, {3,4}, ...
    x = inputs.clone()
    x[:, 2] += 1.0
    with torch.no_grad():
        dy = (tok(x, idx, scales) - tok(inputs, idx, scales)).abs().amax(dim=(0, 2, 3, 4))
    assert dy[0] == 0
    assert dy[1] > 0  # frame 1 shares chunk 1 with frame 2
