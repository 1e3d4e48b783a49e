"""Training strategies for a pretrained tokeniser during rollout training.

"trainable": every parameter trains. "mostly_frozen": only the layers that touch pixel space
and latent space train (encoder head, decoder head, both bottlenecks), about 2% of the
tokeniser in the paper.
"""

from __future__ import annotations

from torch import nn

STRATEGIES = ("trainable", "mostly_frozen")
# Submodules that stay trainable when mostly frozen.
INTERFACE_MODULES = ("encoder.head", "encoder.bottleneck", "decoder.bottleneck", "decoder.head")


def apply_training_strategy(tokeniser: nn.Module, strategy: str) -> None:
    """Set `requires_grad` on the tokeniser's parameters for `strategy`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"tokeniser strategy {strategy!r} is not one of {STRATEGIES}")
    for p in tokeniser.parameters():
        p.requires_grad_(strategy == "trainable")
    if strategy == "mostly_frozen":
        for name in INTERFACE_MODULES:
            for p in tokeniser.get_submodule(name).parameters():
                p.requires_grad_(True)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_summary(tokeniser: nn.Module) -> dict[str, int]:
    """Total parameters, and trainable parameters under each strategy."""
    saved = {id(p): p.requires_grad for p in tokeniser.parameters()}
    out = {"total": count_parameters(tokeniser)}
    for strategy in STRATEGIES:
        apply_training_strategy(tokeniser, strategy)
        out[f"trainable[{strategy}]"] = count_parameters(tokeniser, trainable_only=True)
    for p in tokeniser.parameters():
        p.requires_grad_(saved[id(p)])
    return out
