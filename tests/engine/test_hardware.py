"""The hardware and execution-provider report, on this CPU-only machine with the CPU wheel."""

from __future__ import annotations

import json
import os

import pytest

from foundry_jupyter.engine.hardware import hardware_report, normalize_provider, usable_providers
from foundry_jupyter.errors import InvalidRequest


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("CUDAExecutionProvider", "cuda"),
        ("cuda", "cuda"),
        ("CUDA", "cuda"),
        ("DmlExecutionProvider", "dml"),
        ("DirectML", "dml"),
        ("CPU", "cpu"),
        ("CPUExecutionProvider", "cpu"),
        ("OpenVINO", "openvino"),
    ],
)
def test_normalize_provider(name: str, short: str) -> None:
    assert normalize_provider(name) == short


def test_unknown_provider_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="Unknown execution provider 'tpu'"):
        normalize_provider("tpu")


def test_report_on_a_cpu_only_machine() -> None:
    report = hardware_report()
    providers = {p.name: p for p in report.providers}
    assert providers["cpu"].usable and providers["cpu"].supported and providers["cpu"].device
    # The CPU wheel has no CUDA, and this machine has no NVIDIA GPU.
    assert not providers["cuda"].usable
    assert providers["cuda"].note
    # og says OpenVINO/QNN/WebGPU are available even on the CPU wheel: the report must not believe it.
    for name in ("openvino", "qnn", "webgpu"):
        assert not providers[name].usable
    assert usable_providers() == ["cpu"]
    assert report.cpu.logical_cores and report.cpu.logical_cores >= 1
    assert report.memory_total_bytes > report.memory_available_bytes > 0


def test_report_is_json_and_readable() -> None:
    report = hardware_report()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["usableProviders"] == ["cpu"]
    assert {"name", "supported", "device", "usable"} <= set(data["executionProviders"][0])
    assert data["memory"]["totalBytes"] > 0
    text = str(report)
    assert "CPU:" in text and "cuda" in text and "usable" in text


def test_an_nvidia_gpu_without_the_cuda_build_is_reported_but_not_usable(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, 550.54.15'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    report = hardware_report()
    assert [(g.name, g.vendor, g.driver) for g in report.gpus] == [
        ("NVIDIA H100 80GB HBM3", "NVIDIA", "550.54.15")
    ]
    assert report.gpus[0].memory_bytes == 81559 * 1024 * 1024
    cuda = next(p for p in report.providers if p.name == "cuda")
    # The device is there; the CPU wheel cannot drive it, and the report says what to install.
    assert cuda.device and not cuda.supported and not cuda.usable
    assert "onnxruntime-genai-cuda" in cuda.note
    assert "H100" in str(report)


def test_short_names_are_onnxruntime_names_shortened() -> None:
    # models.providers shortens catalog names the same way: the two layers must agree.
    from foundry_jupyter.engine.hardware import PROVIDERS

    for p in PROVIDERS:
        assert p.short == p.ort_name.lower().removesuffix("executionprovider")
        assert normalize_provider(p.ort_name) == p.short
