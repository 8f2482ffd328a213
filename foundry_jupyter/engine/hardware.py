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
        lines.append(f"onnxruntime-genai {self.onnxruntime_genai_version or '?'}")
        lines.append("")
        lines.append(f"{'provider':<10} {'type':<4} {'build':<6} {'device':<7} {'usable':<7} note")
        for p in self.providers:
            yes = {True: "yes", False: "no"}
            lines.append(
                f"{p.name:<10} {p.device_type:<4} {yes[p.supported]:<6} {yes[p.device]:<7} "
                f"{yes[p.usable]:<7} {p.note}".rstrip()
            )
        return "\n".join(lines)


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


def _nvidia_gpus() -> list[GpuInfo]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0]:
            mem = int(float(parts[1]) * 1024 * 1024) if parts[1].replace(".", "").isdigit() else None
            gpus.append(GpuInfo(name=parts[0], vendor="NVIDIA", memory_bytes=mem, driver=parts[2]))
    return gpus


def _amd_gpus() -> list[GpuInfo]:
    # ROCm exposes /dev/kfd; names need rocm-smi, which is optional.
    return [GpuInfo(name="AMD GPU (ROCm)", vendor="AMD")] if os.path.exists("/dev/kfd") else []


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


def _device_present(p: _Provider, gpus: list[GpuInfo]) -> tuple[bool, str]:
    vendors = {g.vendor for g in gpus}
    windows = sys.platform == "win32"
    if p.short == "cpu":
        return True, ""
    if p.short in ("cuda", "nvtensorrtrtx"):
        return "NVIDIA" in vendors, "" if "NVIDIA" in vendors else "no NVIDIA GPU detected (nvidia-smi)"
    if p.short == "migraphx":
        return "AMD" in vendors, "" if "AMD" in vendors else "no AMD GPU detected"
    if p.short == "dml":
        return windows, "" if windows else "DirectML needs Windows"
    if p.short == "webgpu":
        return bool(gpus), "" if gpus else "no GPU detected"
    if p.short == "openvino":
        intel = "intel" in _cpu_model().lower()
        return intel, "" if intel else "no Intel CPU/GPU/NPU detected"
    if p.short == "qnn":
        arm = platform.machine().lower() in ("arm64", "aarch64")
        return arm and windows, "" if arm and windows else "needs a Snapdragon (Windows on ARM) NPU"
    if p.short == "vitisai":
        return windows, "" if windows else "needs an AMD Ryzen AI NPU (Windows)"
    return False, ""


def provider_statuses(gpus: list[GpuInfo] | None = None) -> tuple[ProviderStatus, ...]:
    supported_names, _, _ = _build_support()
    gpus = _nvidia_gpus() + _amd_gpus() if gpus is None else gpus
    statuses = []
    for p in PROVIDERS:
        supported = p.ort_name in supported_names
        device, device_note = _device_present(p, gpus)
        note = ""
        if not supported:
            note = "not in this onnxruntime-genai build" + (
                " (install onnxruntime-genai-cuda)" if p.short == "cuda" else ""
            )
        elif not device:
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


def hardware_report() -> HardwareReport:
    import psutil

    gpus = _nvidia_gpus() + _amd_gpus()
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
        providers=provider_statuses(gpus),
        onnxruntime_genai_version=og_version,
        onnxruntime_version=ort_version,
    )
