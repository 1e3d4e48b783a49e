"""Field registry: stable indices, union across datasets, round trip."""

from __future__ import annotations

import pytest

from physok.data.errors import DataError
from physok.data.registry import WELL_CHANNELS, FieldRegistry


def test_default_registry_is_the_union_with_shared_names() -> None:
    reg = FieldRegistry.default()
    all_names = {n for names in WELL_CHANNELS.values() for n in names}
    assert set(reg.names) == all_names and len(reg) == len(all_names)
    # Shared physical quantities share one slot across datasets.
    rb = reg.indices(WELL_CHANNELS["rayleigh_benard"])
    sf = reg.indices(WELL_CHANNELS["shear_flow"])
    assert rb[1:] == sf[1:]  # pressure, velocity_x, velocity_y
    assert reg.index("energy") == 0  # first-seen order: Euler first


def test_extend_never_moves_existing_indices() -> None:
    reg = FieldRegistry(["a", "b"])
    reg.extend(["c", "a", "d"])
    assert reg.names == ["a", "b", "c", "d"]
    assert FieldRegistry.from_dict(reg.to_dict()).names == reg.names


def test_errors_name_the_field() -> None:
    with pytest.raises(DataError, match="'zeta' is not in the field registry"):
        FieldRegistry(["a"]).index("zeta")
    with pytest.raises(DataError, match="duplicate"):
        FieldRegistry(["a", "a"])
    with pytest.raises(DataError, match="'names' list"):
        FieldRegistry.from_dict({"fields": []})
