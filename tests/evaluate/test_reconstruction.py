"""A tokeniser's reconstruction VRMSE on a dataset split (what the experiment reports for the
out-of-domain tokeniser on the downstream data), against an independent computation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from physok.data.errors import DataError
from physok.data.reader import WellWindowDataset
from physok.data.registry import FieldRegistry
from physok.evaluate.reconstruction import evaluate_reconstruction
from physok.metrics.vrmse import vrmse
from physok.models.prediction_target import normalise_context
from physok.train.common import validation_indices

EULER = "euler_multi_quadrants_periodicBC"


def test_reconstruction_vrmse_equals_an_independent_computation(
    euler_base: Path, make_model: Callable
) -> None:
    tok = make_model(seed=3).tokeniser
    names = list(tok.config.field_names)
    ds = WellWindowDataset(euler_base / EULER, "valid", window=10, registry=FieldRegistry(names))
    out = evaluate_reconstruction(tok, ds, 5, batch_size=2)
    values = []
    for i in validation_indices(len(ds), 5):
        item = ds[i]
        x, _ = normalise_context(item["fields"][None, :9], tok.config.normalisation, "frame")
        with torch.no_grad():
            recon = tok(x, item["field_indices"], scales=tok.eval_scales)
        values.append(vrmse(recon, x, reduce="sample").item())
    assert (out["dataset"], out["split"], out["windows"]) == (EULER, "valid", 5)
    assert out["vrmse"]["mean"] == pytest.approx(np.mean(values), rel=1e-5)
    assert out["vrmse"]["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-4)
    assert out["vrmse"]["sem"] == pytest.approx(out["vrmse"]["std"] / np.sqrt(5))
    per_field = out["vrmse_per_field"]
    assert set(per_field) == set(ds.channel_names)
    assert np.mean(list(per_field.values())) == pytest.approx(out["vrmse"]["mean"], rel=1e-5)


def test_a_channel_without_a_head_is_named(euler_base: Path, make_model: Callable) -> None:
    tok = make_model(field_names=("density", "pressure", "momentum_x", "momentum_y")).tokeniser
    ds = WellWindowDataset(euler_base / EULER, "valid", window=10, registry=FieldRegistry())
    with pytest.raises(DataError, match=r"no heads for the channels \['energy'\]"):
        evaluate_reconstruction(tok, ds, 2)
