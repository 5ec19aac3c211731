"""The fingerprint of the machine a figure was measured on.

int8 speed-ups depend on the CPU's instruction set (AVX2 only vs AVX-512 with VNNI) and the
development machines change CPU between sessions, so every reported figure carries this record.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

# Instruction-set flags that decide int8 and fp16 speed on x86 CPUs.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
_PACKAGES = ("squeeze", "torch", "transformers", "onnxruntime", "onnx")


def package_version(package: str) -> str | None:
    """An installed package's version; None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``avx512_vnni``, ...); empty where the OS does not say."""
    return _cpuinfo()[1]


def fingerprint() -> dict[str, Any]:
    """CPU model, cores, torch threads, ISA flags, GPU name and library versions."""
    import torch

    cpu, flags = _cpuinfo()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {package: package_version(package) for package in _PACKAGES},
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line for tables and notes, e.g. 'AMD EPYC, 2 cores, 2 threads, avx2 avx512_vnni'."""
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ""
    isa = " ".join(info["isa"]) or "no AVX2"
    return f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} threads, {isa}{gpu}"
