"""MAGVIT-Simple tokeniser with flexible causal compression (DESIGN.md §3).

Modules (each one concept):
    config               TokeniserConfig and its `fast` / `paper` presets
    scales               per-depth compression scales: sampling, validation, latent shapes
    causal_conv          CausalConv3d layer (calls physok.ops.causal_conv3d)
    residual_block       per-frame group norm and the residual block
    adaptive_heads       encoder/decoder heads over the field registry
    kernel_modulation    smaller kernels from one base kernel (PI-resize)
    flexible_downsample  strided causal conv with a per-forward scale
    flexible_upsample    depth-to-space and causal transposed-conv upsampling
    encoder, decoder     the two halves
    tokeniser            Tokeniser: encode / decode / forward / save / load
    freezing             "trainable" and "mostly_frozen" strategies, parameter counts
"""

from physok.models.tokeniser.config import TokeniserConfig
from physok.models.tokeniser.freezing import (
    STRATEGIES,
    apply_training_strategy,
    count_parameters,
    parameter_summary,
)
from physok.models.tokeniser.scales import Scales
from physok.models.tokeniser.tokeniser import Tokeniser

__all__ = [
    "STRATEGIES",
    "Scales",
    "Tokeniser",
    "TokeniserConfig",
    "apply_training_strategy",
    "count_parameters",
    "parameter_summary",
]
