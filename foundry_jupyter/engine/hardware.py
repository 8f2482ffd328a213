"""What this machine and this onnxruntime-genai build can run on: CPU, memory, GPUs, execution providers.

An execution provider is usable when the installed build supports it and a device for it is present.
"Supported" comes from `onnxruntime.get_available_providers()` (and og's own CUDA/DirectML checks,
which are real); og's `is_openvino/qnn/webgpu_available()` answer True even on the CPU-only wheel, so
they are never trusted here.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundry_jupyter.errors import InvalidRequest


@dataclass(frozen=True)
class _Provider:
    short: str  # ONNX Runtime's name, lower case, without "ExecutionProvider" (as models.providers has it)
    ort_name: str  # onnxruntime's name
    og_name: str | None  # the name og.Config.append_provider takes; None for CPU (no provider)
    kind: str  # "NPU", "GPU" or "CPU": Foundry's device type


# Priority order: NPU before GPU (CUDA first) before CPU.
PROVIDERS: tuple[_Provider, ...] = (
    _Provider("qnn", "QNNExecutionProvider", "QNN", "NPU"),
    _Provider("vitisai", "VitisAIExecutionProvider", "VitisAI", "NPU"),
    _Provider("openvino", "OpenVINOExecutionProvider", "OpenVINO", "NPU"),
    _Provider("cuda", "CUDAExecutionProvider", "cuda", "GPU"),
    _Provider("nvtensorrtrtx", "NvTensorRTRTXExecutionProvider", "NvTensorRtRtx", "GPU"),
    _Provider("dml", "DmlExecutionProvider", "dml", "GPU"),
    _Provider("migraphx", "MIGraphXExecutionProvider", "MIGraphX", "GPU"),
    _Provider("webgpu", "WebGpuExecutionProvider", "WebGPU", "GPU"),
    _Provider("cpu", "CPUExecutionProvider", None, "CPU"),
)
_BY_SHORT = {p.short: p for p in PROVIDERS}
_ALIASES = {
    **{p.ort_name.lower(): p.short for p in PROVIDERS},
    **{p.ort_name.lower().removesuffix("executionprovider"): p.short for p in PROVIDERS},
    **{(p.og_name or "cpu").lower(): p.short for p in PROVIDERS},
    "directml": "dml",
    "tensorrt-rtx": "nvtensorrtrtx",
    "trt-rtx": "nvtensorrtrtx",
    "gpu": "cuda",
}


def normalize_provider(name: str, *, strict: bool = True) -> str:
    """`CUDAExecutionProvider`, `cuda`, `CUDA` -> `"cuda"`: the one place provider names are compared.

    An unknown name raises InvalidRequest, or with `strict=False` comes back lower case without the
    `ExecutionProvider` suffix: a catalog may name a provider this build has never heard of.
    """
    key = str(name).strip().lower().replace("_", "-")
    short = key if key in _BY_SHORT else _ALIASES.get(key) or _ALIASES.get(key.replace("-", ""))
    if short is None and not strict:
        return str(name).strip().lower().removesuffix("executionprovider")
    if short is None:
        known = ", ".join(p.short for p in PROVIDERS)
        raise InvalidRequest(f"Unknown execution provider {name!r}; known providers: {known}.", param="ep")
    return short


def provider_info(short: str) -> _Provider:
    return _BY_SHORT[normalize_provider(short)]


@dataclass(frozen=True)
class CpuInfo:
    model: str
    architecture: str
    physical_cores: int | None
    logical_cores: int | None


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vendor: str
    memory_bytes: int | None = None
    driver: str | None = None


@dataclass(frozen=True)
class ProviderStatus:
    name: str  # short name
    ort_name: str
    device_type: str  # NPU / GPU / CPU
    supported: bool  # by the installed onnxruntime(-genai) build
    device: bool  # a device for it was detected
    usable: bool
    note: str = ""


@dataclass(frozen=True)
class HardwareReport:
    os: str
    python: str
    cpu: CpuInfo
    memory_total_bytes: int
    memory_available_bytes: int
    gpus: tuple[GpuInfo, ...]
    providers: tuple[ProviderStatus, ...]
    onnxruntime_genai_version: str | None = None
    onnxruntime_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    npus: tuple[GpuInfo, ...] = ()

    def usable_providers(self) -> list[str]:
        return [p.name for p in self.providers if p.usable]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the camelCase keys the REST API and the sidebar use."""
        return {
            "os": self.os,
            "python": self.python,
            "onnxruntimeGenaiVersion": self.onnxruntime_genai_version,
            "onnxruntimeVersion": self.onnxruntime_version,
            "cpu": {
                "model": self.cpu.model,
                "architecture": self.cpu.architecture,
                "physicalCores": self.cpu.physical_cores,
                "logicalCores": self.cpu.logical_cores,
            },
            "memory": {"totalBytes": self.memory_total_bytes, "availableBytes": self.memory_available_bytes},
            "gpus": [
                {"name": g.name, "vendor": g.vendor, "memoryBytes": g.memory_bytes, "driver": g.driver}
                for g in self.gpus
            ],
            "npus": [{"name": n.name, "vendor": n.vendor} for n in self.npus],
            "executionProviders": [
                {
                    "name": p.name,
                    "ortName": p.ort_name,
                    "deviceType": p.device_type,
                    "supported": p.supported,
                    "device": p.device,
                    "usable": p.usable,
                    "note": p.note,
                }
                for p in self.providers
            ],
            "usableProviders": self.usable_providers(),
        }

    def __str__(self) -> str:
        gib = 1024**3
        cores = f"{self.cpu.physical_cores or '?'} cores / {self.cpu.logical_cores or '?'} threads"
        lines = [
            f"OS:      {self.os}",
            f"CPU:     {self.cpu.model} ({self.cpu.architecture}, {cores})",
            f"Memory:  {self.memory_total_bytes / gib:.1f} GiB total, "
            f"{self.memory_available_bytes / gib:.1f} GiB free",
        ]
        if self.gpus:
            for gpu in self.gpus:
                mem = f", {gpu.memory_bytes / gib:.1f} GiB" if gpu.memory_bytes else ""
                lines.append(f"GPU:     {gpu.name} ({gpu.vendor}{mem})")
        else:
            lines.append("GPU:     none detected")
        lines += [f"NPU:     {npu.name}" for npu in self.npus]
        lines.append(f"onnxruntime-genai {self.onnxruntime_genai_version or '?'}")
        lines.append("")
        yes = {True: "yes", False: "no"}
        rows = [
            [p.name, p.device_type, yes[p.supported], yes[p.device], yes[p.usable], p.note]
            for p in self.providers
        ]
        lines += format_table(["provider", "type", "build", "device", "usable", "note"], rows)
        return "\n".join(lines)


def format_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a plain-text table, each column as wide as its widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _command_output(args: list[str]) -> str | None:
    """A probing command's standard output, or None when it is missing, fails or hangs."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_gpus() -> list[GpuInfo]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = "--query-gpu=name,memory.total,driver_version"
    out = _command_output([exe, query, "--format=csv,noheader,nounits"])
    if out is None:
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0]:
            mem = int(float(parts[1]) * 1024 * 1024) if parts[1].replace(".", "").isdigit() else None
            gpus.append(GpuInfo(name=parts[0], vendor="NVIDIA", memory_bytes=mem, driver=parts[2]))
    return gpus


# PCI vendor ids as Linux shows them under /sys.
_PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x1022": "AMD", "0x8086": "Intel", "0x17cb": "Qualcomm"}


def _sysfs_devices(sys_root: Path, kind: str, pattern: str) -> list[GpuInfo]:
    """Devices of a /sys class (`drm` cards, `accel` NPUs) by PCI vendor."""
    found = []
    for node in sorted((sys_root / "class" / kind).glob(pattern)):
        if not node.name.removeprefix(kind if kind == "accel" else "card").isdigit():
            continue  # a display connector such as card0-HDMI-A-1
        try:
            vendor_id = (node / "device" / "vendor").read_text().strip().lower()
            device_id = (node / "device" / "device").read_text().strip().lower()
        except OSError:
            continue
        vendor = _PCI_VENDORS.get(vendor_id)
        if vendor is not None:
            label = "NPU" if kind == "accel" else "GPU"
            found.append(GpuInfo(name=f"{vendor} {label} (PCI {vendor_id}:{device_id})", vendor=vendor))
    return found


def _windows_gpus() -> list[GpuInfo]:
    if sys.platform != "win32":
        return []
    command = "Get-CimInstance Win32_VideoController | Select-Object -ExpandProperty Name"
    out = _command_output(["powershell", "-NoProfile", "-Command", command])
    if out is None:
        return []
    gpus = []
    for name in (line.strip() for line in out.splitlines()):
        vendor = next((v for v in ("NVIDIA", "AMD", "Intel", "Qualcomm") if v.lower() in name.lower()), "")
        if name and vendor and "basic" not in name.lower():  # "Microsoft Basic Display Adapter" is no GPU
            gpus.append(GpuInfo(name=name, vendor=vendor))
    return gpus


def detect_devices(sys_root: Path = Path("/sys")) -> tuple[list[GpuInfo], list[GpuInfo]]:
    """GPUs and NPUs this machine shows: nvidia-smi, /sys (Linux), the video controllers (Windows)."""
    gpus = _nvidia_gpus()
    named_by_smi = bool(gpus)
    for gpu in _sysfs_devices(sys_root, "drm", "card[0-9]*") + _windows_gpus():
        if not (gpu.vendor == "NVIDIA" and named_by_smi):  # nvidia-smi named it already, with its memory
            gpus.append(gpu)
    if os.path.exists("/dev/kfd") and not _detected(gpus, "AMD"):  # ROCm without a /sys entry we read
        gpus.append(GpuInfo(name="AMD GPU (ROCm)", vendor="AMD"))
    npus = _sysfs_devices(sys_root, "accel", "accel[0-9]*")
    return gpus, npus


@functools.lru_cache(maxsize=1)
def _build_support() -> tuple[frozenset[str], str | None, str | None]:
    """Provider names this build supports, with the og and onnxruntime versions."""
    supported: set[str] = {"CPUExecutionProvider"}
    og_version = ort_version = None
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
        supported.update(ort.get_available_providers())
    except Exception:  # the og wheel carries its own runtime; the Python package is optional here
        pass
    try:
        import onnxruntime_genai as og

        og_version = getattr(og, "__version__", None)
        # og's CUDA and DirectML checks look at its own bundled runtime: trustworthy.
        if og.is_cuda_available():
            supported.add("CUDAExecutionProvider")
        if og.is_dml_available():
            supported.add("DmlExecutionProvider")
    except Exception:
        pass
    return frozenset(supported), og_version, ort_version


def _detected(devices: list[GpuInfo], vendor: str) -> GpuInfo | None:
    return next((d for d in devices if d.vendor == vendor), None)


def _device_present(p: _Provider, gpus: list[GpuInfo], npus: list[GpuInfo]) -> tuple[bool, str]:
    """Whether a device for `p` was detected, and a note naming it (or saying what was looked for).

    Only devices the report found count: a CPU's brand alone is no NPU or GPU.
    """
    windows = sys.platform == "win32"
    if p.short == "cpu":
        return True, ""
    found: GpuInfo | None = None
    missing = ""
    if p.short in ("cuda", "nvtensorrtrtx"):
        found, missing = _detected(gpus, "NVIDIA"), "no NVIDIA GPU detected (nvidia-smi)"
    elif p.short == "migraphx":
        found, missing = _detected(gpus, "AMD"), "no AMD GPU detected"
    elif p.short == "dml":
        found = gpus[0] if windows and gpus else None
        missing = "no GPU detected" if windows else "DirectML needs Windows"
    elif p.short == "webgpu":
        found, missing = (gpus[0] if gpus else None), "no GPU detected"
    elif p.short == "openvino":
        found = _detected(npus, "Intel") or _detected(gpus, "Intel")
        missing = "no Intel NPU or GPU detected"
    elif p.short == "qnn":
        found, missing = _detected(npus, "Qualcomm"), "no Snapdragon NPU detected"
    elif p.short == "vitisai":
        found, missing = _detected(npus, "AMD"), "no AMD Ryzen AI NPU detected"
    if found is None:
        return False, missing
    return True, f"device: {found.name}"


def provider_statuses(
    gpus: list[GpuInfo] | None = None, npus: list[GpuInfo] | None = None
) -> tuple[ProviderStatus, ...]:
    supported_names, _, _ = _build_support()
    if gpus is None or npus is None:
        found_gpus, found_npus = detect_devices()
        gpus = found_gpus if gpus is None else gpus
        npus = found_npus if npus is None else npus
    statuses = []
    for p in PROVIDERS:
        supported = p.ort_name in supported_names
        device, device_note = _device_present(p, gpus, npus)
        note = ""
        if not supported:
            note = "not in this onnxruntime-genai build" + (
                " (install onnxruntime-genai-cuda)" if p.short == "cuda" else ""
            )
            if device:
                note += f"; {device_note}"
        else:
            note = device_note
        statuses.append(
            ProviderStatus(
                name=p.short,
                ort_name=p.ort_name,
                device_type=p.kind,
                supported=supported,
                device=device,
                usable=supported and device,
                note=note,
            )
        )
    return tuple(statuses)


def provider_status(name: str) -> ProviderStatus:
    short = normalize_provider(name)
    return next(s for s in provider_statuses() if s.name == short)


def usable_providers() -> list[str]:
    """Short names of the usable providers, best first (NPU > GPU > CPU)."""
    return [s.name for s in provider_statuses() if s.usable]


def cpu_threads() -> int:
    """Threads for a CPU model's operators: the physical cores this process may run on.

    Set explicitly because onnxruntime's own default can be lower than the machine offers: on the
    2-core test machine it ran SmolLM2 on one thread (fp32 29 tokens/s against 47 with two).
    """
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or usable
    return max(1, min(usable, physical))


def hardware_report(sys_root: Path = Path("/sys")) -> HardwareReport:
    import psutil

    gpus, npus = detect_devices(sys_root)
    memory = psutil.virtual_memory()
    _, og_version, ort_version = _build_support()
    return HardwareReport(
        os=f"{platform.system()} {platform.release()}".strip(),
        python=platform.python_version(),
        cpu=CpuInfo(
            model=_cpu_model(),
            architecture=platform.machine(),
            physical_cores=psutil.cpu_count(logical=False),
            logical_cores=psutil.cpu_count(logical=True),
        ),
        memory_total_bytes=int(memory.total),
        memory_available_bytes=int(memory.available),
        gpus=tuple(gpus),
        npus=tuple(npus),
        providers=provider_statuses(gpus, npus),
        onnxruntime_genai_version=og_version,
        onnxruntime_version=ort_version,
    )
