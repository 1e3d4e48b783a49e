"""Evaluation metrics: VRMSE (`physok.metrics.vrmse`), NEPS and the_well's three-bin spectral
NMSE (`physok.metrics.neps`)."""

from physok.metrics.neps import (
    RANGES,
    SpectralErrors,
    neps_per_shell,
    neps_ranges,
    shell_centres,
    shell_edges,
    shell_ranges,
    spectral_errors,
    the_well_nmse_per_bin,
)
from physok.metrics.vrmse import vrmse

__all__ = [
    "RANGES",
    "SpectralErrors",
    "neps_per_shell",
    "neps_ranges",
    "shell_centres",
    "shell_edges",
    "shell_ranges",
    "spectral_errors",
    "the_well_nmse_per_bin",
    "vrmse",
]
