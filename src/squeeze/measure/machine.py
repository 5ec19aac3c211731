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
# The flags with int8 dot products (VNNI, AMX) and with bf16 arithmetic.
VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
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


def read_fingerprint(path: str | Path) -> dict[str, Any]:
    """A fingerprint written by ``squeeze bench --fingerprint`` (on the deployment machine).

    Raises:
        ConfigError: a file that is missing or not such a fingerprint.
    """
    import json

    from squeeze.core.errors import ConfigError, Problem

    how = "write one with `squeeze bench --fingerprint FILE` on the deployment machine"
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not JSON"
        raise ConfigError(Problem(f"{{target}} {path} cannot be read ({reason}); {how}")) from None
    if not isinstance(found, dict) or not isinstance(found.get("isa"), list) or "cpu" not in found:
        raise ConfigError(Problem(f"{{target}} {path} is not a machine fingerprint; {how}"))
    return found


def same_isa(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two fingerprints have the same instruction-set flags (what decides which int8
    and bf16 kernels run)."""
    return set(one.get("isa", ())) == set(other.get("isa", ()))


def other_isa_note(chosen_for: dict[str, Any] | None, what: str) -> str | None:
    """A note when ``what`` (a model) had its runtime chosen for a machine whose instruction
    set differs from this one's; None when it did not, or nothing was recorded."""
    if not chosen_for or "isa" not in chosen_for:
        return None
    here = fingerprint()
    if same_isa(chosen_for, here):
        return None
    there = " ".join(chosen_for["isa"]) or "no AVX2"
    return (
        f"{what}'s runtime was chosen for {chosen_for.get('cpu', 'another CPU')} ({there}); this "
        f"machine has {' '.join(here['isa']) or 'no AVX2'}, where another may be faster: quantize "
        "it here, or pass --target a fingerprint of this machine (squeeze bench --fingerprint)"
    )


def write_fingerprint(path: str | Path) -> dict[str, Any]:
    """This machine's fingerprint as JSON at ``path`` (whole or not at all), for ``--target``
    on the machine that builds the model.

    Raises:
        ConfigError: ``path`` holds something else (it is never replaced).
    """
    import json

    from squeeze.core.errors import ConfigError, Problem

    path = Path(path)
    if path.exists():
        try:
            read_fingerprint(path)
        except ConfigError:
            raise ConfigError(
                Problem(f"{path} exists and is not a fingerprint; choose another {{fingerprint}}")
            ) from None
    found = fingerprint()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(found, indent=2))
    tmp.replace(path)
    return found
