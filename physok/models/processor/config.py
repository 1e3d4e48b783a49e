"""ProcessorConfig: the Walrus-style space-time transformer's choices, with `fast`/`paper` presets.

The paper's processor (DESIGN.md §4): projection 18 -> 1088, six blocks of spatial attention then
causal temporal attention, 16 heads (head dim 68), MLP hidden 4352, drop path 0 -> 0.05, and a
projection back to 18 latent channels: about 100M parameters with the projections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from physok.ops.attention import BACKENDS

ATTENTION_BACKENDS = BACKENDS  # physok.ops.attention's names


@dataclass(frozen=True)
class ProcessorConfig:
    """Architecture of the processor (see physok.models.processor)."""

    # Channels of the tokeniser's latents (the processor's input and output).
    latent_channels: int = 18
    # Transformer width, number of blocks, attention heads (head dim = dim // heads).
    dim: int = 1088
    depth: int = 6
    heads: int = 16
    # Width of the MLP half of the spatial block's fused projection; SwiGLU halves it.
    mlp_hidden: int = 4352
    # RMSGroupNorm groups (Walrus: one per head).
    norm_groups: int = 16
    # Largest stochastic-depth rate; block i of n uses drop_path * i / (n - 1).
    drop_path: float = 0.05
    # T5-style temporal bias: buckets per head, and the distance from which all share a bucket.
    bias_buckets: int = 32
    bias_max_distance: int = 128
    # Axial RoPE on positions in [-1, 1]: angular frequencies pi * linspace(1, max_freq / 2)
    # per axis (Walrus' "pixel" frequencies; our choice of the Walrus value 256).
    rope_max_freq: float = 256.0
    # Initial value of a learned per-channel scale on each residual branch (Walrus' layer
    # scale, 1e-6 there). 0 disables it; DESIGN.md §4's blocks have none, so that is the default.
    layer_scale_init: float = 0.0
    # physok.ops.attention backend; None defers to $PHYSOK_ATTENTION / "auto" at each call.
    attention_backend: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def drop_path_rates(self) -> tuple[float, ...]:
        """Per-block drop path rates, linear from 0 to `drop_path`."""
        if self.depth == 1:
            return (0.0,)
        return tuple(self.drop_path * i / (self.depth - 1) for i in range(self.depth))

    def validate(self) -> None:
        def bad(option: str, why: str) -> ValueError:
            return ValueError(f"ProcessorConfig.{option}: {why}")

        for name in ("latent_channels", "dim", "depth", "heads", "mlp_hidden", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, f"must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise bad("heads", f"must divide dim={self.dim}, got {self.heads}")
        if self.head_dim < 4:
            raise bad("heads", f"head dim dim/heads={self.head_dim} must be >= 4 (2D RoPE)")
        if self.dim % self.norm_groups:
            raise bad("norm_groups", f"must divide dim={self.dim}, got {self.norm_groups}")
        if self.mlp_hidden % 2:
            raise bad("mlp_hidden", f"must be even (SwiGLU halves it), got {self.mlp_hidden}")
        if not 0.0 <= self.drop_path < 1.0:
            raise bad("drop_path", f"must be in [0, 1), got {self.drop_path}")
        if not isinstance(self.bias_buckets, int) or self.bias_buckets < 2:
            raise bad("bias_buckets", f"must be an integer >= 2, got {self.bias_buckets!r}")
        # Causal buckets: the first half are exact distances 0 .. buckets/2 - 1, the rest are
        # logarithmic up to max_distance, which must therefore lie beyond the exact range.
        if not isinstance(self.bias_max_distance, int) or (
            self.bias_max_distance <= self.bias_buckets // 2
        ):
            raise bad(
                "bias_max_distance",
                f"must be an integer > bias_buckets // 2 = {self.bias_buckets // 2}, "
                f"got {self.bias_max_distance!r}",
            )
        if not self.rope_max_freq >= 2.0:
            raise bad("rope_max_freq", f"must be >= 2 (lowest frequency is pi), got "
                      f"{self.rope_max_freq}")  # fmt: skip
        if self.layer_scale_init < 0:
            raise bad("layer_scale_init", f"must be >= 0 (0 disables), got {self.layer_scale_init}")
        if self.attention_backend is not None and self.attention_backend not in ATTENTION_BACKENDS:
            raise bad(
                "attention_backend",
                f"must be None or one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}",
            )

    # -- presets -------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides: Any) -> ProcessorConfig:
        """The paper's processor: 1088 wide, 6 blocks, 16 heads of 68 (~100M with projections)."""
        return cls(**overrides)

    @classmethod
    def fast(cls, **overrides: Any) -> ProcessorConfig:
        """Same structure, small enough for rollout training steps on a 2-core CPU (64 wide:
        at 16² latents it predicts as well as 128 wide in 0.7x the step time, docs/design.md)."""
        base: dict[str, Any] = dict(dim=64, depth=2, heads=4, mlp_hidden=256, norm_groups=4)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset_named(cls, name: str, **overrides: Any) -> ProcessorConfig:
        presets = {"fast": cls.fast, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"unknown processor preset {name!r}; choose one of {sorted(presets)}")
        return presets[name](**overrides)

    # Same spelling as TokeniserConfig.preset.
    preset = preset_named

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessorConfig:
        if not isinstance(data, dict):
            raise ValueError(f"processor config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown processor config key(s) {unknown}; valid keys: {sorted(known)}"
            )
        return cls(**data)
