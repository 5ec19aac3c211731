"""What a checkpoint holds and costs to ship: parameters (all and non-zero) and bytes, plain and
deflated; for ONNX graphs, the files they ship in (the graph and its external data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from squeeze.core.types import SizeStats
from squeeze.model.loaded import LoadedModel

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


def onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor an ONNX graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from onnx_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from onnx_tensors(subgraph)


def external_location(tensor: Any) -> str | None:
    """The file (relative to the graph's folder) holding an ONNX tensor's data, if not inline."""
    from onnx import TensorProto
    from onnx.external_data_helper import ExternalDataInfo

    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    return ExternalDataInfo(tensor).location or None


def onnx_files(model_file: Path, model: Any = None) -> list[Path]:
    """An ONNX file and the external data files its tensors name (read from the graph, without
    loading any weights): everything the model needs beside it, whatever the files are called.

    ``model`` is the graph when already loaded (``onnx.load(..., load_external_data=False)``).
    """
    import onnx

    if model is None:
        model = onnx.load(str(model_file), load_external_data=False)
    locations = {external_location(t) for t in onnx_tensors(model.graph)} - {None}
    return [model_file, *(model_file.parent / location for location in sorted(locations))]


def onnx_bytes(model_file: Path, model: Any = None) -> int:
    """Bytes on disk of an ONNX model: the graph file plus its external data files."""
    return sum(f.stat().st_size for f in onnx_files(model_file, model) if f.is_file())
