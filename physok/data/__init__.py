"""Data layer: The Well's HDF5 format, embedded physics generators, windowed reading, mixing.

Modules:
    well_format  in-memory trajectories and the exact Well writer
    generators/  embedded numerical solvers (Euler, shear flow, Rayleigh-Benard, active matter,
                 Gray-Scott)
    generate     write a dataset folder (splits, files per parameter set, stats.yaml)
    stats        stats.yaml computation and I/O
    reader       WellWindowDataset: fast windows of consecutive snapshots
    registry     FieldRegistry: stable channel indices across datasets
    normalise    sample-wise per-field RMS normalisation (reference)
    mixing       one-dataset-per-batch sampling with per-rank shards
    check        format / value validation
"""

import importlib
from typing import Any

# Resolved on first use, so `python -m physok.data check` and generator worker processes do not
# pay for importing torch.
_EXPORTS: dict[str, str] = {
    "DataError": "physok.data.errors",
    "WellFormatError": "physok.data.errors",
    "FieldRegistry": "physok.data.registry",
    "MixedBatchSampler": "physok.data.mixing",
    "WellWindowDataset": "physok.data.reader",
    "field_rms": "physok.data.normalise",
    "rms_denormalise": "physok.data.normalise",
    "rms_normalise": "physok.data.normalise",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'physok.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
