"""`jupyter foundry hardware`: a generated table, and device claims only for devices that were found."""

from __future__ import annotations

import re
from pathlib import Path

from foundry_jupyter.cli import main
from foundry_jupyter.engine.hardware import format_table, hardware_report


def _fake_sysfs(root: Path, kind: str, node: str, vendor: str, device: str) -> None:
    folder = root / "class" / kind / node / "device"
    folder.mkdir(parents=True)
    (folder / "vendor").write_text(f"{vendor}\n")
    (folder / "device").write_text(f"{device}\n")


def _provider_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("provider"))
    return lines[start:]


def _column_starts(header: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", header)]


def test_every_device_claim_names_a_detected_device(tmp_path: Path) -> None:
    report = hardware_report(sys_root=tmp_path)  # an empty /sys: nothing beyond the CPU
    detected = [d.name for d in (*report.gpus, *report.npus)]
    for p in report.providers:
        if p.name == "cpu":
            assert p.device
        elif p.device:
            assert any(name in p.note for name in detected), p
        else:
            assert not p.usable
    # This machine has an Intel CPU but no Intel NPU or GPU: OpenVINO's device is not present.
    if not detected:
        assert [p.name for p in report.providers if p.device] == ["cpu"]


def test_an_intel_npu_and_gpu_in_sysfs_are_reported_and_named(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, "accel", "accel0", "0x8086", "0x7d1d")
    _fake_sysfs(tmp_path, "drm", "card1", "0x8086", "0x7d55")
    _fake_sysfs(tmp_path, "drm", "card1-HDMI-A-1", "0x8086", "0x7d55")  # a connector, not a GPU
    _fake_sysfs(tmp_path, "drm", "card0", "0x1af4", "0x1050")  # a virtual display: no vendor we know
    report = hardware_report(sys_root=tmp_path)
    assert [n.name for n in report.npus] == ["Intel NPU (PCI 0x8086:0x7d1d)"]
    assert [g.name for g in report.gpus if g.vendor == "Intel"] == ["Intel GPU (PCI 0x8086:0x7d55)"]
    providers = {p.name: p for p in report.providers}
    openvino = providers["openvino"]
    assert openvino.device and "Intel NPU" in openvino.note
    assert not openvino.usable  # the CPU wheel has no OpenVINO, whatever og says
    assert not providers["qnn"].device and not providers["vitisai"].device
    assert not providers["cuda"].device
    data = report.to_dict()
    assert data["npus"] == [{"name": "Intel NPU (PCI 0x8086:0x7d1d)", "vendor": "Intel"}]
    assert "NPU:     Intel NPU" in str(report)


def test_format_table_sizes_columns_by_their_cells() -> None:
    lines = format_table(["a", "bb"], [["a-long-name", "x"], ["c", "yes"]])
    assert lines == ["a            bb", "a-long-name  x", "c            yes"]


def test_the_provider_table_lines_up(capsys) -> None:
    assert main(["hardware"]) == 0
    lines = _provider_lines(capsys.readouterr().out)
    starts = _column_starts(lines[0])
    assert len(starts) == 6
    names = [line.split()[0] for line in lines[1:]]
    assert "nvtensorrtrtx" in names and "cpu" in names
    for line in lines[1:]:
        for start in starts[1:5]:  # type, build, device, usable: short words under their headers
            assert line[start - 2 : start] == "  " and line[start] != " ", line
