"""Measured choices, remembered: which quantizer was fastest for a model shape on this machine.

The default int8 and int4 backend is measured (``squeeze.methods.quantize.auto``): every
candidate is built and timed. Building five candidates of a model takes minutes, and the answer
depends only on what decides speed, never on the weights: the machine (CPU model, instruction
set, threads, the runtimes' versions), the model's shape (family, layers, widths, vocabulary,
task), the dtype, the device and the sequence length timed. So the ranking is kept under that
key, in squeeze's cache, and the next quantization of the same shape on the same machine builds
the fastest candidate alone (the next one when the fastest misses the accuracy gate: accuracy
does depend on the weights, and is measured every time).

A decision is a small JSON file written whole (beside, then renamed), so a crash or a second
job never leaves half a file; one that cannot be read is measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Fields of the machine fingerprint that decide which quantizer is fastest: not the Python
# version, nor squeeze's (a new squeeze with the same runtimes times the same kernels).
_SPEED_PACKAGES = ("torch", "onnxruntime", "openvino", "nncf", "torchao", "bitsandbytes")


@dataclass(frozen=True)
class Timing:
    """One candidate's measured latency (batch 1, the key's sequence length)."""

    label: str
    p50_ms: float
    p90_ms: float
    stdev_ms: float


@dataclass
class Decision:
    """The candidates as measured, fastest first, with what and where they were measured."""

    ranking: list[Timing]
    reference: Timing
    measured_at: str
    machine: dict[str, Any]
    key_facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            ranking=[Timing(**t) for t in data["ranking"]],
            reference=Timing(**data["reference"]),
            measured_at=data["measured_at"],
            machine=data["machine"],
            key_facts=data.get("key_facts", {}),
        )

    def timing(self, label: str) -> Timing | None:
        return next((t for t in self.ranking if t.label == label), None)


def speed_facts(machine: dict[str, Any], shape: dict[str, Any], **step: Any) -> dict[str, Any]:
    """What a decision's key hashes: the machine's speed-deciding facts, the model's shape and
    the step's (dtype, device, sequence length, the candidates that could run)."""
    versions = {
        name: version
        for name, version in machine.get("versions", {}).items()
        if name in _SPEED_PACKAGES
    }
    return {
        "cpu": machine["cpu"],
        "isa": machine["isa"],
        "cores": machine["cores"],
        "threads": machine["torch_threads"],
        "gpu": machine["gpu"],
        "versions": versions,
        "shape": shape,
        **step,
    }


def decision_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


class DecisionStore:
    """Decisions as ``<folder>/<key>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, key: str) -> Decision | None:
        """The decision under ``key``; None when there is none or it cannot be read."""
        try:
            return Decision.from_dict(json.loads((self.folder / f"{key}.json").read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, decision: Decision) -> None:
        """Write whole or not at all: beside, then renamed over any older decision."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{key}.json"
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(decision.to_dict(), indent=1))
        tmp.replace(final)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
