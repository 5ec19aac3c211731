"""Reading exports back: an export folder opened for inference, and its sizes.

Kept apart from exporting (``squeeze.export.onnx``) so that evaluation and benchmarking can open
exports without the tracing machinery.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.errors import CheckpointError
from squeeze.runtime import export_session
from squeeze.types import SizeStats, Task

MODEL_FILE = "model.onnx"
# optimum-intel's name for the IR, so its OVModel classes open squeeze's folders too.
OPENVINO_FILE = "openvino_model.xml"
MANIFEST_FILE = "manifest.json"
# The manifest's "format" -> the runtime that runs it.
_RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}


def runtime_of(manifest: dict[str, Any]) -> str:
    """``onnxruntime`` or ``openvino``: what runs an export, by its manifest (older manifests
    have no ``format``: ONNX)."""
    return _RUNTIMES[manifest.get("format", "onnx")]


@dataclass
class ExportedModel:
    """An export folder opened for inference: the session plus what the manifest says."""

    folder: Path
    manifest: dict[str, Any]
    tokenizer: Any
    session: Any

    @property
    def task(self) -> Task:
        return Task(self.manifest["task"])

    @property
    def runtime(self) -> str:
        """``onnxruntime`` or ``openvino``: what runs the graph."""
        return runtime_of(self.manifest)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec["name"] for spec in self.manifest["inputs"])

    @property
    def max_tokens(self) -> int | None:
        """The position table's length, from the config saved beside the graph."""
        from types import SimpleNamespace

        from squeeze.arch import find_spec, max_tokens

        path = self.folder / "config.json"
        if not path.is_file():
            return None
        config = SimpleNamespace(**json.loads(path.read_text()))
        return max_tokens(config, find_spec(config))

    @property
    def label2id(self) -> dict[str, int] | None:
        labels = self.manifest["labels"]
        return {name: i for i, name in enumerate(labels)} if labels else None


def export_folder(path: str | Path) -> Path | None:
    """The export folder ``path`` names (the folder or its model.onnx), or None if not ONNX.

    Raises:
        CheckpointError: an ``.onnx`` file without the manifest ``squeeze export`` writes.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.suffix in (".onnx", ".xml") else path
    if (folder / MANIFEST_FILE).is_file() and (
        (folder / MODEL_FILE).is_file() or (folder / OPENVINO_FILE).is_file()
    ):
        return folder
    if path.suffix in (".onnx", ".xml"):
        raise CheckpointError(
            f"{path} has no {MANIFEST_FILE} beside it; squeeze needs the folder written by "
            "`squeeze export` (it names the inputs, task and tokenizer)"
        )
    return None


def graph_file(folder: Path, manifest: dict[str, Any] | None = None) -> Path:
    """The graph an export folder runs: its manifest's ``file``."""
    if manifest is None:
        manifest = read_manifest(folder)
    return folder / manifest.get("file", MODEL_FILE)


def read_manifest(folder: Path) -> dict[str, Any]:
    """Raises: CheckpointError for a manifest that is not JSON."""
    try:
        return json.loads((folder / MANIFEST_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{folder / MANIFEST_FILE} is not valid JSON ({e.msg})") from e


def export_size_stats(folder: Path) -> SizeStats:
    """Parameters and bytes of an export folder's graph, ONNX or OpenVINO IR."""
    if graph_file(folder).suffix == ".xml":
        from squeeze.export.openvino import openvino_size_stats

        return openvino_size_stats(folder)
    return onnx_size_stats(folder)


def load_export(
    folder: Path, *, device: str = "cpu", threads: int | None = None, tensorrt: bool = False
) -> ExportedModel:
    """Open an export folder: its session (on ``device``; an ONNX graph on TensorRT with
    ``tensorrt``), tokenizer and manifest."""
    from transformers import AutoTokenizer

    from squeeze.checkpoint import quiet_transformers

    quiet_transformers()
    manifest = read_manifest(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder} has no usable tokenizer ({e})") from e
    session = export_session(
        graph_file(folder, manifest), device=device, threads=threads, tensorrt=tensorrt
    )
    return ExportedModel(folder=folder, manifest=manifest, tokenizer=tokenizer, session=session)


def onnx_size_stats(folder: Path) -> SizeStats:
    """Parameters (initializer elements, all and non-zero) and bytes of the ONNX file and its
    external data files, read one tensor at a time: a graph with its weights beside it is never
    loaded whole (a 1.1B model would take 4 GB more just to be counted).

    Raises:
        CheckpointError: an external data file the graph names is missing.
    """
    import onnx

    from squeeze.sizes import onnx_bytes, onnx_files

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
