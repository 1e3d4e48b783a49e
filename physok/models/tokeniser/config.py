"""TokeniserConfig: every architectural choice of MAGVIT-Simple, with `fast` and `paper` presets.

Scales are given per downsampling depth as a set of temporal factors and a set of spatial
factors (DESIGN.md §3, the paper's Table 7); in training one pair is drawn uniformly per depth at
every forward, at evaluation `eval_scales` is used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from physok.data.registry import FieldRegistry

UPSAMPLING = ("depth_to_space", "transposed")
# How inputs are normalised per sample and field before the tokeniser (physok.data.normalise):
# part of what the weights mean, so it travels with them in the config.
NORMALISATIONS = ("rms", "zscore")
# Which (temporal, spatial) pair per depth a training forward uses (physok.models.tokeniser.scales)
SCALE_POLICIES = ("flexible", "fixed", "mixed")
KERNEL_RESIZE = ("pinv", "interpolate")
BACKENDS = ("auto", "triton", "reference")


def _default_fields() -> tuple[str, ...]:
    return tuple(FieldRegistry.default().names)


@dataclass(frozen=True)
class TokeniserConfig:
    """Architecture of the causal-convolution tokeniser (see physok.models.tokeniser)."""

    # Registry channel names the adaptive heads hold a kernel slice for (index = position).
    field_names: tuple[str, ...] = field(default_factory=_default_fields)
    # Channels after the head and at each downsampling depth (the paper: 16, 32, 64).
    channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 18
    res_blocks_per_depth: int = 1
    # Residual blocks at the latent resolution (after the last downsampling, before the first
    # upsampling). 0 keeps the paper preset at ~5.1M parameters (1 gives 5.54M).
    mid_res_blocks: int = 0
    # Table 7: per depth, the allowed temporal and spatial compression factors.
    temporal_scales: tuple[tuple[int, ...], ...] = ((1,), (1, 2), (1, 2))
    spatial_scales: tuple[tuple[int, ...], ...] = ((2,), (2, 4), (2, 4))
    # Scales used in eval mode; our choice (the paper's values are lost): the largest.
    eval_scales: tuple[tuple[int, int], ...] = ((1, 2), (2, 4), (2, 4))
    upsampling: str = "depth_to_space"
    # How smaller kernels come from the base kernel: FlexiViT's pseudo-inverse resize, or
    # plain (area) interpolation of the kernel.
    kernel_resize: str = "pinv"
    norm_groups: int = 8
    # Input normalisation: "rms" (the paper: divide by the RMS) or "zscore" (mean removed, divide
    # by the standard deviation). Old checkpoints without the key are "rms".
    normalisation: str = "rms"
    # Training scales: "flexible" (the paper: one pair per depth drawn uniformly at every forward),
    # "fixed" (always the eval scales) or "mixed" (the eval scales with probability
    # eval_scale_prob, else a uniform draw: flexible, but the evaluated combination is trained
    # often; uniform draws meet a given combination of the paper's sets in 1 of 16 forwards).
    scale_policy: str = "flexible"
    eval_scale_prob: float = 0.5
    # Which implementation the convolutions use (physok.ops.backend).
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
        # Normalise list inputs (from JSON) to tuples so configs compare and hash reliably.
        object.__setattr__(self, "field_names", tuple(self.field_names))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        for name in ("temporal_scales", "spatial_scales", "eval_scales"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(tuple(int(s) for s in v) for v in value))
        self.validate()

    @property
    def depths(self) -> int:
        return len(self.channels)

    @property
    def max_fields(self) -> int:
        return len(self.field_names)

    def validate(self) -> None:
        def bad(option: str, why: str) -> ValueError:
            return ValueError(f"TokeniserConfig.{option}: {why}")

        if not self.field_names or len(set(self.field_names)) != len(self.field_names):
            raise bad("field_names", "must be a non-empty list of unique channel names")
        if not self.channels or min(self.channels) < 1:
            raise bad("channels", f"must be positive channel counts, got {self.channels}")
        if self.latent_channels < 1:
            raise bad("latent_channels", "must be >= 1")
        if self.res_blocks_per_depth < 0 or self.mid_res_blocks < 0:
            raise bad("res_blocks_per_depth", "block counts must be >= 0")
        d = self.depths
        for name in ("temporal_scales", "spatial_scales", "eval_scales"):
            if len(getattr(self, name)) != d:
                raise bad(name, f"needs one entry per depth ({d} depths from `channels`)")
        for depth, (ts, ss) in enumerate(
            zip(self.temporal_scales, self.spatial_scales, strict=True)
        ):
            if not ts or not ss:
                raise bad("temporal_scales", f"depth {depth + 1} has an empty scale set")
            for s in ts:
                if s not in (1, 2):
                    raise bad("temporal_scales", f"temporal factors must be 1 or 2, got {s}")
            for s in ss:
                if s < 1 or s & (s - 1) or max(ss) % s:
                    raise bad("spatial_scales", f"spatial factors must be powers of two, got {ss}")
        for depth, pair in enumerate(self.eval_scales):
            if len(pair) != 2:
                raise bad("eval_scales", "each entry is a (temporal, spatial) pair")
            st, ss = pair
            if st not in self.temporal_scales[depth] or ss not in self.spatial_scales[depth]:
                raise bad(
                    "eval_scales",
                    f"depth {depth + 1} pair {pair} is not in its scale sets "
                    f"({self.temporal_scales[depth]}, {self.spatial_scales[depth]})",
                )
        if self.upsampling not in UPSAMPLING:
            raise bad("upsampling", f"must be one of {UPSAMPLING}, got {self.upsampling!r}")
        if self.kernel_resize not in KERNEL_RESIZE:
            raise bad("kernel_resize", f"must be one of {KERNEL_RESIZE}")
        if self.norm_groups < 1:
            raise bad("norm_groups", "must be >= 1")
        if self.normalisation not in NORMALISATIONS:
            raise bad(
                "normalisation", f"must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.scale_policy not in SCALE_POLICIES:
            raise bad(
                "scale_policy", f"must be one of {SCALE_POLICIES}, got {self.scale_policy!r}"
            )
        if not 0.0 <= self.eval_scale_prob <= 1.0:
            raise bad("eval_scale_prob", f"must be in [0, 1], got {self.eval_scale_prob}")
        if self.kernel_backend not in BACKENDS:
            raise bad("kernel_backend", f"must be one of {BACKENDS}")

    # -- presets -----------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides: Any) -> TokeniserConfig:
        """The paper's MAGVIT-Simple: 16/32/64 channels, 18 latent channels (~5M parameters)."""
        return cls(**overrides)

    @classmethod
    def fast(cls, **overrides: Any) -> TokeniserConfig:
        """Small enough to pretrain on a 2-core CPU in minutes (8/16/32 channels), with the
        choices the fast experiment measured to work (docs/design.md, "The fast preset"):
        z-score inputs, trained at its eval scales ("fixed"), and spatial compression 2 at
        evaluation (32² -> 16² latents, 9 frames -> 5) from the scale sets of Table 7 extended by
        a spatial factor 1 at depths 2 and 3.
        `literal_fast()` is the same size with the paper's choices."""
        base: dict[str, Any] = dict(
            channels=(8, 16, 32),
            norm_groups=4,
            spatial_scales=((2,), (1, 2, 4), (1, 2, 4)),
            eval_scales=((1, 2), (1, 1), (2, 1)),
            normalisation="zscore",
            scale_policy="fixed",
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def literal_fast(cls, **overrides: Any) -> TokeniserConfig:
        """The fast size with the paper's choices: RMS inputs, flexible training scales over
        Table 7's sets, evaluation at compression 2 in time and 8 in space (32² -> 4²)."""
        base: dict[str, Any] = dict(
            channels=(8, 16, 32), eval_scales=((1, 2), (1, 2), (2, 2)), norm_groups=4
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TokeniserConfig:
        presets = {"fast": cls.fast, "literal_fast": cls.literal_fast, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"unknown tokeniser preset {name!r}; choose one of {sorted(presets)}")
        return presets[name](**overrides)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: _listify(v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokeniserConfig:
        if not isinstance(data, dict):
            raise ValueError(f"tokeniser config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown tokeniser config key(s) {unknown}; valid keys: {sorted(known)}"
            )
        return cls(**data)


def _listify(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_listify(v) for v in value]
    return value
