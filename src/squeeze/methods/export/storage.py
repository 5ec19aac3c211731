"""Where an export's weights are stored: inline in the graph, or in one external data file
(``model.onnx.data``, ONNX's external data) written tensor by tensor at aligned offsets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from squeeze.core.errors import ValidationError
from squeeze.model.sizes import onnx_files, onnx_tensors

# From this many bytes of weights the export keeps them in one external data file beside the
# graph (model.onnx.data), not inline: protobuf stops at 2 GB, and onnxruntime parsing an inline
# graph holds its weights about three times over (a 110M Llama's took 3.6x its fp32 bytes to
# open; with external data, about one copy). Smaller exports stay one self-contained file.
EXTERNAL_DATA_MIN_BYTES = 256 << 20
# Tensor offsets in the data file are multiples of this (onnxruntime can map aligned data).
DATA_ALIGNMENT = 1 << 16
# Tensors this small stay inline in the graph even where the weights are external.
_INLINE_MAX_BYTES = 1024
_COPY_CHUNK = 1 << 24


class DataFile:
    """One external data file, written tensor by tensor at aligned offsets.

    It is written under a temporary name and renamed on :meth:`close`, so a graph may be
    re-saved over its own folder while its old data file is still being read.
    """

    def __init__(self, model_file: Path) -> None:
        self.location = model_file.name + ".data"
        self._final = model_file.with_name(self.location)
        self._partial = model_file.with_name(self.location + ".partial")
        self._file = self._partial.open("wb")

    def _start(self) -> int:
        self._file.write(b"\0" * (-self._file.tell() % DATA_ALIGNMENT))
        return self._file.tell()

    def write(self, tensor: Any, data: Any) -> None:
        """Append ``data`` (bytes-like) as ``tensor``'s data and point the tensor at it."""
        offset = self._start()
        self._file.write(data)
        self._point(tensor, offset)

    def copy(self, tensor: Any, source: Path) -> None:
        """Append ``tensor``'s external data, read in chunks from ``source``'s folder."""
        from onnx.external_data_helper import ExternalDataInfo

        info = ExternalDataInfo(tensor)
        offset = self._start()
        with (source / info.location).open("rb") as f:
            f.seek(info.offset or 0)
            left = info.length if info.length is not None else -1
            while left and (chunk := f.read(_COPY_CHUNK if left < 0 else min(_COPY_CHUNK, left))):
                self._file.write(chunk)
                left -= len(chunk) if left > 0 else 0
        self._point(tensor, offset)

    def _point(self, tensor: Any, offset: int) -> None:
        import onnx

        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", offset),
                           ("length", self._file.tell() - offset)):  # fmt: skip
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)

    def close(self) -> None:
        self._file.close()
        os.replace(self._partial, self._final)


def save_model(model: Any, path: Path, *, external: bool, source: Path | None = None) -> None:
    """Save ``model`` as ``path``; with ``external``, every tensor above 1 KiB goes to one data
    file beside it (``model.onnx.data``), tensors held in memory as well as those already stored
    externally (relative to ``source``), copied in chunks: memory stays at one tensor's bytes.
    """
    import onnx

    if external:
        data = DataFile(path)
        try:
            for tensor in onnx_tensors(model.graph):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    data.copy(tensor, source or path.parent)
                elif len(tensor.raw_data) > _INLINE_MAX_BYTES:
                    data.write(tensor, tensor.raw_data)
        finally:
            data.close()
    onnx.save(model, str(path))


_ONNX_TYPES = {
    "float32": 1, "uint8": 2, "int8": 3, "int16": 5, "int32": 6, "int64": 7, "bool": 9,
    "float16": 10, "float64": 11, "bfloat16": 16,
}  # fmt: skip


def initializer(tensor: Any, name: str, data: DataFile | None) -> Any:
    """An initializer holding ``tensor``'s values, inline or appended to ``data``."""
    import onnx
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in _ONNX_TYPES:
        raise ValidationError(f"cannot export the {dtype} weight {name} to ONNX")
    proto = onnx.TensorProto(name=name, data_type=_ONNX_TYPES[dtype], dims=list(tensor.shape))
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    if data is None or raw.nbytes <= _INLINE_MAX_BYTES:
        proto.raw_data = raw.tobytes()
    else:
        data.write(proto, memoryview(raw))
    return proto


def has_external_data(path: Path) -> bool:
    """Whether the ONNX file at ``path`` keeps tensors in external data files."""
    return len(onnx_files(path)) > 1
