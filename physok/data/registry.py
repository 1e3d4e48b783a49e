"""Field registry: one stable index per physical channel name across all datasets.

The tokeniser's adaptive heads hold a kernel slice per registered channel and select the
slices of a batch's active fields by these indices, so the indices must never move once a
model is trained: new names are only ever appended, and the registry is saved with models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from physok.data.errors import DataError

# Flat channel names (The Well's flattening: t0, then t1 components, then t2 components) of the
# datasets the paper uses, in a fixed order. Shared names (pressure, velocity_x, ...) share a slot.
WELL_CHANNELS: dict[str, tuple[str, ...]] = {
    "euler_multi_quadrants_periodicBC": (
        "energy", "density", "pressure", "momentum_x", "momentum_y",
    ),
    "euler_multi_quadrants_openBC": (
        "energy", "density", "pressure", "momentum_x", "momentum_y",
    ),
    "rayleigh_benard": ("buoyancy", "pressure", "velocity_x", "velocity_y"),
    "shear_flow": ("tracer", "pressure", "velocity_x", "velocity_y"),
    "active_matter": (
        "concentration", "velocity_x", "velocity_y",
        "D_xx", "D_xy", "D_yx", "D_yy", "E_xx", "E_xy", "E_yx", "E_yy",
    ),
    "gray_scott_reaction_diffusion": ("A", "B"),
}  # fmt: skip


@dataclass
class FieldRegistry:
    """Ordered channel names; a name's index is its position."""

    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise DataError(f"field registry has duplicate names: {self.names}")
        self._index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def default(cls) -> FieldRegistry:
        """The union of the paper's datasets' channels, in first-seen order."""
        return cls.from_channel_lists(WELL_CHANNELS.values())

    @classmethod
    def from_channel_lists(cls, lists: Iterable[Sequence[str]]) -> FieldRegistry:
        reg = cls()
        for names in lists:
            reg.extend(names)
        return reg

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def extend(self, names: Iterable[str]) -> None:
        """Append names not yet registered (existing indices never change)."""
        for n in names:
            if n not in self._index:
                self._index[n] = len(self.names)
                self.names.append(n)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise DataError(
                f"field {name!r} is not in the field registry ({len(self)} names); "
                "build the registry from every dataset the model will see"
            ) from None

    def indices(self, names: Iterable[str]) -> list[int]:
        return [self.index(n) for n in names]

    def to_dict(self) -> dict[str, list[str]]:
        return {"names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict) -> FieldRegistry:
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            raise DataError("field registry must be a mapping with a 'names' list")
        return cls(list(data["names"]))
