"""Registry of embedded physics generators, keyed by The Well dataset name."""

from __future__ import annotations

from physok.data.errors import DataError
from physok.data.generators import (
    active_matter,
    euler,
    gray_scott,
    rayleigh_benard,
    shear_flow,
)
from physok.data.generators.base import DatasetGenerator, SimulationRequest

GENERATORS: dict[str, DatasetGenerator] = {
    g.name: g
    for module in (euler, shear_flow, rayleigh_benard, active_matter, gray_scott)
    for g in module.GENERATORS
}


def get_generator(name: str) -> DatasetGenerator:
    """Return the generator for dataset `name`, or a DataError listing the known names."""
    try:
        return GENERATORS[name]
    except KeyError:
        known = ", ".join(sorted(GENERATORS))
        raise DataError(f"unknown dataset {name!r}; embedded datasets are: {known}") from None


__all__ = ["GENERATORS", "DatasetGenerator", "SimulationRequest", "get_generator"]
