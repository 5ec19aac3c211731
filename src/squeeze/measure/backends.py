"""What this machine can run, and why not the rest: ``squeeze bench --backends``.

Each line is one way to run or quantize a model (a runtime on a device, an execution provider, a
quantize backend) with a yes/no and the reason: no GPU, an extra not installed, a CPU without
the instruction set a kernel needs. The checks only look (imports, provider lists, CPU flags);
nothing is built or timed.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass

from squeeze.measure.machine import cpu_flags, package_version


@dataclass(frozen=True)
class Availability:
    """One way to run a model: can this machine do it, and what to know either way."""

    name: str
    available: bool
    why: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _torch_cpu() -> Availability:
    flags = cpu_flags()
    bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    return Availability(
        "torch cpu",
        True,
        f"torch {package_version('torch')}; bf16 "
        + ("in hardware (AVX-512 BF16/AMX)" if bf16 else "emulated: this CPU lacks AVX-512 BF16"),
    )


def _torch_cuda() -> Availability:
    gpu = _gpu()
    if gpu is None:
        return Availability("torch cuda", False, "no CUDA device on this machine")
    return Availability("torch cuda", True, gpu)


def _torch_compile() -> Availability:
    if _gpu() is None and shutil.which("g++") is None and shutil.which("c++") is None:
        return Availability("torch.compile", False, "no C++ compiler for inductor's CPU kernels")
    return Availability("torch.compile", True, "inductor (bench --compile)")


def _ort_cpu() -> Availability:
    vnni = "avx512_vnni" in cpu_flags() or "avx_vnni" in cpu_flags()
    return Availability(
        "onnxruntime cpu",
        True,
        f"onnxruntime {package_version('onnxruntime')}; int8 "
        + ("with VNNI dot products" if vnni else "on AVX2 (7-bit weights: --reduce-range)"),
    )


def _ort_provider(label: str, provider: str) -> Callable[[], Availability]:
    def check() -> Availability:
        if provider not in _providers():
            build = "onnxruntime-gpu" if package_version("onnxruntime-gpu") else "onnxruntime"
            return Availability(
                label, False, f"{build} here has no {provider}: pip install 'squeeze[gpu]'"
            )
        if _gpu() is None:
            return Availability(label, False, "no CUDA device on this machine")
        return Availability(label, True, f"{provider} on {_gpu()}")

    return check


def _openvino() -> Availability:
    flags = cpu_flags()
    speed = "AMX int8" if "amx_int8" in flags else "VNNI int8" if "avx512_vnni" in flags else None
    why = (
        f"openvino {package_version('openvino')}, nncf {package_version('nncf')}; static int8 "
        + (f"on {speed}" if speed else "runs, but this CPU lacks VNNI: expect it slower than ORT")
    )
    return Availability("openvino cpu", True, why)


def _torchao() -> Availability:
    if importlib.util.find_spec("torchao") is None:
        return Availability("torchao int8", False,
                            "torchao is not installed: pip install torchao")  # fmt: skip
    return Availability("torchao int8", True, f"torchao {package_version('torchao')}")


def _bitsandbytes() -> Availability:
    if importlib.util.find_spec("bitsandbytes") is None:
        return Availability("bitsandbytes int8/int4", False, "pip install bitsandbytes")
    where = "CUDA" if _gpu() else "CPU kernels (slow; built for GPUs)"
    return Availability(
        "bitsandbytes int8/int4", True, f"bitsandbytes {package_version('bitsandbytes')} on {where}"
    )


CHECKS: tuple[Callable[[], Availability], ...] = (
    _torch_cpu,
    _torch_cuda,
    _torch_compile,
    _ort_cpu,
    _ort_provider("onnxruntime cuda", "CUDAExecutionProvider"),
    _ort_provider("onnxruntime tensorrt", "TensorrtExecutionProvider"),
    _openvino,
    _torchao,
    _bitsandbytes,
)


def available_backends() -> list[Availability]:
    """Every runtime, provider and quantizer squeeze knows, checked on this machine."""
    return [check() for check in CHECKS]
