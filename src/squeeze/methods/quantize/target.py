"""Choosing a quantizer for a machine squeeze cannot time on: rules drawn from measurements.

The default int8/int4 backend times every candidate here (``squeeze.methods.quantize.auto``),
but a model is often built on one machine (a CI runner) and deployed on another. Given that
machine's fingerprint (``squeeze bench --fingerprint FILE`` there, ``--target FILE`` here), the
choice follows what this project measured per instruction set:

- VNNI or AMX (``avx512_vnni``, ``avx_vnni``, ``amx_int8``): OpenVINO's static int8 (NNCF) first,
  its int8 kernels are strongest there (AMX Xeon, MiniLM seq 128: 4.93 ms against ONNX Runtime
  dynamic 7.59 ms and the input's 16.36 ms), with its float layers in bf16 where the CPU computes
  bf16 (BERT-base: 14.2 against 15.4 ms), then the bf16 IR; int4: OpenVINO's.
- AVX2 without VNNI (older Xeons, AMD EPYC before Zen 4): ONNX Runtime's dynamic int8 first
  (EPYC: 1.22x faster than every peer; OpenVINO's static int8 2x slower than it); int4: ONNX
  Runtime's MatMulNBits.
- Neither (ARM, older x86): ONNX Runtime's dynamic int8, its kernels are the most portable.

Accuracy does not depend on the machine, so the candidates are built in the rule's order here
and the first within the gate (or the agreement floor) is kept, as with a remembered ranking.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from squeeze.measure.machine import BF16_FLAGS, VNNI_FLAGS


@dataclass(frozen=True)
class Rule:
    """Candidate labels in the order the rule prefers them, and why."""

    order: tuple[str, ...]
    why: str


def rule_for(isa: Collection[str], dtype: str) -> Rule:
    """The rule for a machine with instruction-set flags ``isa`` and a dtype."""
    flags = set(isa)
    vnni, bf16, avx2 = bool(flags & set(VNNI_FLAGS)), bool(flags & set(BF16_FLAGS)), "avx2" in flags
    if dtype == "bf16":
        order = ("openvino bf16", "torch bf16") if bf16 else ("torch bf16", "openvino bf16")
        why = "OpenVINO's bf16 kernels use AMX and AVX512-BF16" if bf16 else "no bf16 arithmetic"
        return Rule(order, why)
    if dtype == "int4":
        if vnni:
            return Rule(
                ("openvino int4", "onnxruntime int4", "bitsandbytes int4"),
                "VNNI/AMX: OpenVINO's int4 weights with int8 compute",
            )
        return Rule(
            ("onnxruntime int4", "openvino int4", "bitsandbytes int4"),
            "no VNNI: ONNX Runtime's MatMulNBits",
        )
    if vnni:
        if bf16:
            order = ("openvino static+bf16", "openvino static", "openvino bf16",
                     "onnxruntime dynamic", "openvino weight-only", "onnxruntime static",
                     "torch torchao")  # fmt: skip
            return Rule(order, "VNNI/AMX with bf16: OpenVINO's static int8, float layers in bf16")
        order = ("openvino static", "onnxruntime dynamic", "openvino weight-only",
                 "onnxruntime static", "torch torchao")  # fmt: skip
        return Rule(order, "VNNI/AMX: OpenVINO's static int8 kernels are fastest there")
    order = ("onnxruntime dynamic", "onnxruntime static", "openvino weight-only",
             "openvino static", "torch torchao")  # fmt: skip
    if avx2:
        return Rule(order, "AVX2 without VNNI: ONNX Runtime's dynamic int8 is fastest there")
    return Rule(order, "no AVX2: ONNX Runtime's dynamic int8, the most portable kernels")
