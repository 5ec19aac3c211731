"""What a checkpoint holds and costs to ship: parameters (all and non-zero) and bytes, plain and
deflated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeeze.types import LoadedModel, SizeStats

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def _nonzero(param: Any) -> int:
    """Non-zero elements, also for quantized tensor subclasses (torchao's Int8Tensor has no
    count_nonzero): those are counted on their dequantized values."""
    import torch

    quantized = type(param.data) is not torch.Tensor and hasattr(param.data, "dequantize")
    return int(torch.count_nonzero(param.data.dequantize() if quantized else param))


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in weight_files(folder))


def size_stats(loaded: LoadedModel, folder: Path | None = None) -> SizeStats:
    """Parameters (all and non-zero, tied weights counted once) and weight bytes on disk.

    ``folder`` is where the weights were written, when not where they were loaded from.
    """
    import torch

    with torch.no_grad():
        params = list(loaded.model.parameters())
        total = sum(p.numel() for p in params)
        nonzero = sum(_nonzero(p) for p in params)
    folder = folder or loaded.path
    on_disk = weight_bytes(folder) if folder else 0
    return SizeStats(params_total=total, params_nonzero=nonzero, bytes_on_disk=on_disk)


def compressed_bytes(folder: Path) -> int:
    """Weight bytes after deflate (zlib level 1), streamed: what zeros save when shipped zipped.

    Dense zeros from unstructured pruning do not shrink a safetensors file, but they compress.
    """
    import zlib

    total = 0
    for file in weight_files(folder):
        packer = zlib.compressobj(1)
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                total += len(packer.compress(chunk))
        total += len(packer.flush())
    return total
