"""The environment record of results.json names the CPU a run was timed on."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from physok.experiment.runner import cpu_model_name, environment


def test_cpu_model_name_is_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model_name(info) == "AMD EPYC 7B13"


def test_cpu_model_name_falls_back_to_the_architecture(tmp_path: Path) -> None:
    assert cpu_model_name(tmp_path / "missing") == (platform.processor() or platform.machine())
    (tmp_path / "empty").write_text("processor\t: 0\n")
    assert cpu_model_name(tmp_path / "empty") == (platform.processor() or platform.machine())


def test_cpu_environment_names_the_model_and_the_thread_count() -> None:
    env = environment(torch.device("cpu"), 1)
    assert env["device_name"] == f"{cpu_model_name()} ({torch.get_num_threads()} threads)"
    assert env["device"] == "cpu" and env["cuda"] is None and env["world_size"] == 1
