"""Causal conv forward + backward on the tokeniser's real layer shapes: Triton vs cuDNN.

Run: pytest bench/ --benchmark-only -k causal_conv3d (needs a CUDA GPU; skipped otherwise).
One benchmark group per layer (batch 2, 9 frames, 512^2 first level, bf16). Contenders: the
Triton implicit GEMM on channels_last_3d input (what the model passes), and the reference
(`F.pad` + cuDNN `conv3d`) on channels_last_3d and on contiguous NCDHW input, so the Triton path
is compared with cuDNN's better layout. Each round is forward + input/weight/bias gradients,
synchronised inside the timed callable; `extra_info["tflops"]` counts 3 GEMMs of
2 * B*T_out*X_out*Y_out * Co * Ci*kt*kx*ky FLOPs each (padding taps included).
"""

from __future__ import annotations

import pytest
import torch

from physok.ops.causal_conv3d import causal_conv3d, causal_conv3d_output_shape

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="causal conv benchmarks need a CUDA GPU"
)

# name: (x shape (B, Ci, T, X, Y), Co, kernel, stride, padding)
LAYERS = {
    "16-16_k333_512": ((2, 16, 9, 512, 512), 16, (3, 3, 3), (1, 1, 1), "same"),
    "16-32_k122_s122_512": ((2, 16, 9, 512, 512), 32, (1, 2, 2), (1, 2, 2), "valid"),
    "32-64_k344_s244_256": ((2, 32, 9, 256, 256), 64, (3, 4, 4), (2, 4, 4), "valid"),
    "64-2048_k333_16": ((2, 64, 3, 16, 16), 2048, (3, 3, 3), (1, 1, 1), "same"),
}
CONTENDERS = {
    "triton": ("triton", torch.channels_last_3d),
    "cudnn_channels_last": ("reference", torch.channels_last_3d),
    "cudnn_ncdhw": ("reference", torch.contiguous_format),
}


def _flops(shape: tuple[int, ...], co: int, kernel: tuple[int, ...], stride, padding) -> float:
    b, _, to, xo, yo = causal_conv3d_output_shape(shape, (co, shape[1], *kernel), stride, padding)
    return 3 * 2.0 * b * to * xo * yo * co * shape[1] * kernel[0] * kernel[1] * kernel[2]


@pytest.mark.parametrize("contender", list(CONTENDERS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_causal_conv3d_fwd_bwd(benchmark, layer: str, contender: str) -> None:
    shape, co, kernel, stride, padding = LAYERS[layer]
    backend, fmt = CONTENDERS[contender]
    benchmark.group = f"causal_conv3d {layer}"
    gen = torch.Generator(device="cuda").manual_seed(0)
    dtype = torch.bfloat16
    x = torch.randn(shape, device="cuda", generator=gen).to(dtype)
    x = x.contiguous(memory_format=fmt).requires_grad_()
    fan_in = shape[1] * kernel[0] * kernel[1] * kernel[2]
    w = (torch.randn(co, shape[1], *kernel, device="cuda", generator=gen) / fan_in**0.5).to(dtype)
    w.requires_grad_()
    b = torch.zeros(co, device="cuda", dtype=dtype, requires_grad=True)
    out_shape = causal_conv3d_output_shape(shape, w.shape, stride, padding)
    g = torch.randn(out_shape, device="cuda", generator=gen).to(dtype)
    g = g.contiguous(memory_format=fmt)

    def step() -> None:
        y = causal_conv3d(x, w, b, stride, padding, backend=backend)
        torch.autograd.grad(y, (x, w, b), g)
        torch.cuda.synchronize()

    # Warm-up rounds include Triton's autotuning and cuDNN's algorithm selection.
    benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    benchmark.extra_info["tflops"] = _flops(shape, co, kernel, stride, padding) / (
        benchmark.stats["mean"] * 1e12
    )
    benchmark.extra_info["layer"] = layer
    benchmark.extra_info["dtype"] = "bf16"
