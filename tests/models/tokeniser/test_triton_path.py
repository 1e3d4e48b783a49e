"""The tokeniser on the Triton conv path equals the reference path (outputs and gradients).

On CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so
the model is tiny; the GPU variant checks bf16 at a realistic size.
"""

from __future__ import annotations

import copy

import pytest
import torch

from physok.models.tokeniser import Tokeniser
from physok.models.tokeniser.residual_block import ResidualBlock

pytest.importorskip("triton")

# Interpreted kernels are slow (~1 s per conv fwd+bwd at this size): one combination per
# upsampling strategy, each using temporal compression and a modulated 4x4 kernel.
CASES = [("depth_to_space", ((1, 2), (2, 2), (1, 4))), ("transposed", ((1, 2), (1, 4), (2, 2)))]


def _with_backend(tok: Tokeniser, backend: str) -> Tokeniser:
    out = copy.deepcopy(tok)
    for m in out.modules():
        if hasattr(m, "backend"):
            m.backend = backend
    return out


def _run(tok, x, idx, scales):
    tok.zero_grad()
    x = x.clone().requires_grad_(True)
    y = tok(x, idx, scales)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    grads = {n: p.grad.clone() for n, p in tok.named_parameters() if p.grad is not None}
    return y.detach(), x.grad, grads


@pytest.mark.parametrize("upsampling,scales", CASES)
def test_triton_path_matches_reference_outputs_and_gradients(upsampling, scales, make_config):
    torch.manual_seed(0)
    ref = Tokeniser(make_config(upsampling=upsampling, mid_res_blocks=0))
    fast = _with_backend(ref, "triton")
    x = torch.randn(1, 5, 3, 16, 16)
    idx = torch.tensor([4, 0, 9])
    y_ref, gx_ref, g_ref = _run(ref, x, idx, scales)
    y, gx, g = _run(fast, x, idx, scales)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)
    assert g.keys() == g_ref.keys()
    # fp32 sums in a different order through ~20 layers: compare relative to each tensor's
    # scale (a wrong kernel is off by O(1), not 1e-4).
    for name in g_ref:
        scale = float(g_ref[name].abs().max())
        torch.testing.assert_close(
            g[name],
            g_ref[name],
            rtol=1e-3,
            atol=1e-4 * scale,
            msg=lambda m, n=name: f"{n}: {m}",
        )


def test_config_backend_option_reaches_every_conv(make_config):
    tok = Tokeniser(make_config(kernel_backend="triton"))
    backends = {m.backend for m in tok.modules() if hasattr(m, "backend")}
    assert backends == {"triton"}


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compiled_block_on_triton_path_matches_eager(compile_backend):
    torch.manual_seed(0)
    block = ResidualBlock(3, 5, groups=1, backend="triton")
    x = torch.randn(2, 3, 5, 8, 8, requires_grad=True)
    y = block(x)
    y.square().sum().backward()
    eager = (y.detach(), x.grad.clone(), block.conv1.weight.grad.clone())
    block.zero_grad()
    x.grad = None
    compiled = torch.compile(block, backend=compile_backend, fullgraph=True)
    y = compiled(x)
    y.square().sum().backward()
    torch.testing.assert_close(y.detach(), eager[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, eager[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.conv1.weight.grad, eager[2], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_triton_path_matches_reference_on_gpu_in_bf16_autocast():
    torch.manual_seed(0)
    from physok.models.tokeniser import TokeniserConfig

    ref = Tokeniser(TokeniserConfig.paper(kernel_backend="reference")).cuda()
    fast = _with_backend(ref, "triton")
    x = torch.randn(2, 9, 5, 128, 128, device="cuda")
    idx = torch.arange(5, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_ref = ref(x, idx, ref.eval_scales).float()
        y = fast(x, idx, ref.eval_scales).float()
    rel = (y - y_ref).norm() / y_ref.norm()
    assert rel < 3e-2, float(rel)
