"""Data layer: The Well's HDF5 format, embedded physics generators, windowed reading, mixing.

Modules:
    well_format  in-memory trajectories and the exact Well writer
    generators/  embedded numerical solvers (Euler, shear flow, Rayleigh-Benard, Gray-Scott)
    generate     write a dataset folder (splits, files per parameter set, stats.yaml)
    stats        stats.yaml computation and I/O
    reader       WellWindowDataset: fast windows of consecutive snapshots
    registry     FieldRegistry: stable channel indices across datasets
    normalise    sample-wise per-field RMS normalisation (reference)
    mixing       one-dataset-per-batch sampling with per-rank shards
    check        format / value validation
"""

from physok.data.errors import DataError, WellFormatError
from physok.data.mixing import MixedBatchSampler
from physok.data.normalise import field_rms, rms_denormalise, rms_normalise
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry

__all__ = [
    "DataError",
    "FieldRegistry",
    "MixedBatchSampler",
    "WellFormatError",
    "WellWindowDataset",
    "field_rms",
    "rms_denormalise",
    "rms_normalise",
]
