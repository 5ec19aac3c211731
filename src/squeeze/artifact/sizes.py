"""Sizes of an export folder: parameters, non-zeros and bytes of an ONNX graph or OpenVINO IR.

A checkpoint's sizes come from its loaded model (``squeeze.model.sizes``) or its safetensors
headers (``squeeze.model.safetensors``); an export's from its graph, read here without a
runtime session.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.artifact.read import MODEL_FILE, OPENVINO_FILE, graph_file
from squeeze.core.errors import CheckpointError
from squeeze.core.types import SizeStats

# OpenVINO element types that pack several weights into a byte: counted per weight, all non-zero.
_PACKED = {"u4", "i4", "nf4", "f4e2m1", "u2", "u1"}


def export_size_stats(folder: Path) -> SizeStats:
    """Parameters and bytes of an export folder's graph, ONNX or OpenVINO IR."""
    if graph_file(folder).suffix == ".xml":
        return openvino_size_stats(folder)
    return onnx_size_stats(folder)


def onnx_size_stats(folder: Path) -> SizeStats:
    """Parameters (initializer elements, all and non-zero) and bytes of the ONNX file and its
    external data files, read one tensor at a time: a graph with its weights beside it is never
    loaded whole (a 1.1B model would take 4 GB more just to be counted).

    Raises:
        CheckpointError: an external data file the graph names is missing.
    """
    import onnx

    from squeeze.model.sizes import onnx_bytes, onnx_files

    path = folder / MODEL_FILE
    model = onnx.load(str(path), load_external_data=False)
    missing = [f.name for f in onnx_files(path, model) if not f.is_file()]
    if missing:
        raise CheckpointError(
            f"{path} keeps its weights in {', '.join(missing)}, which is missing; copy the whole "
            "export folder, or export again"
        )
    packed = _packed_weights(model)
    total = nonzero = 0
    for initializer in model.graph.initializer:
        if initializer.name in packed:
            count = math.prod(initializer.dims) * packed[initializer.name]
            total, nonzero = total + count, nonzero + count
            continue
        total += math.prod(initializer.dims)
        nonzero += _count_nonzero(initializer, folder)
    return SizeStats(
        params_total=total, params_nonzero=nonzero, bytes_on_disk=onnx_bytes(path, model)
    )


_CHUNK_BYTES = 1 << 24


def _packed_weights(model: Any) -> dict[str, int]:
    """Weights stored several to a byte (MatMulNBits' B, GatherBlockQuantized's uint8 data), by
    name, with how many weights each byte holds. They count as that many parameters, all
    non-zero: a quantized zero is a zero point's code, not a zero byte."""
    import onnx

    uint8 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.UINT8}
    packed = {}
    for node in model.graph.node:
        position = {"MatMulNBits": 1, "GatherBlockQuantized": 0}.get(node.op_type)
        if position is None or node.input[position] not in uint8:
            continue
        bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
        packed[node.input[position]] = 8 // bits
    return packed


def _count_nonzero(tensor: Any, folder: Path) -> int:
    """Non-zero elements of an initializer; external data is read in 16 MiB chunks."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import ExternalDataInfo

    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return int(np.count_nonzero(numpy_helper.to_array(tensor)))
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
    info = ExternalDataInfo(tensor)
    size = math.prod(tensor.dims) * dtype.itemsize
    if info.length is not None and info.length != size:  # packed (4-bit) types: onnx unpacks
        return int(np.count_nonzero(numpy_helper.to_array(tensor, str(folder))))
    count, chunk = 0, _CHUNK_BYTES - _CHUNK_BYTES % dtype.itemsize
    with (folder / info.location).open("rb") as f:
        f.seek(info.offset or 0)
        while size > 0:
            data = f.read(min(chunk, size))
            if not data:
                raise CheckpointError(f"{folder / info.location} is truncated; export again")
            count += int(np.count_nonzero(np.frombuffer(data, dtype=dtype)))
            size -= len(data)
    return count


def openvino_size_stats(folder: Path) -> SizeStats:
    """Parameters (Constant elements; packed 4-bit types counted per weight) and bytes of the
    IR's .xml and .bin; non-zeros counted for float and 8-bit constants."""
    import openvino as ov

    xml = folder / OPENVINO_FILE
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise CheckpointError(f"{xml} has no {weights.name} beside it; copy the whole folder")
    try:
        model = ov.Core().read_model(str(xml))
    except RuntimeError as e:
        raise CheckpointError(f"{xml} is not a readable OpenVINO model ({e})") from e
    total = nonzero = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        count = math.prod(op.get_output_shape(0))
        total += count
        if op.get_element_type().get_type_name() in _PACKED:
            nonzero += count
        else:
            nonzero += int(np.count_nonzero(op.get_data()))
    return SizeStats(
        params_total=total,
        params_nonzero=nonzero,
        bytes_on_disk=xml.stat().st_size + weights.stat().st_size,
    )
