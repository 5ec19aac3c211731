"""Reading exports back: an export folder opened for inference, and its sizes.

Kept apart from exporting (``squeeze.methods.export.onnx``) so that evaluation and benchmarking can
open exports without the tracing machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from squeeze.core.errors import CheckpointError
from squeeze.core.types import Task
from squeeze.model.arch import find_spec, max_tokens
from squeeze.model.loaded import cut_to
from squeeze.model.pooling import Pooling
from squeeze.model.runtime import export_session

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
    def pooling(self) -> Pooling | None:
        """An embedder's pooling (computed inside the graph; the prompt and length still apply
        to its inputs); None for other tasks."""
        found = self.manifest.get("pooling")
        return Pooling(**found) if found else None

    @property
    def max_tokens(self) -> int | None:
        """The position table's length, from the config saved beside the graph (an embedder's
        ``max_seq_length`` where shorter)."""
        return cut_to(positions_in(export_config(self.folder)), self.pooling)

    @property
    def label2id(self) -> dict[str, int] | None:
        labels = self.manifest["labels"]
        return {name: i for i, name in enumerate(labels)} if labels else None


def export_config(folder: Path) -> Any:
    """The model config saved beside an export's graph, as attributes; None without one."""
    path = folder / "config.json"
    return SimpleNamespace(**json.loads(path.read_text())) if path.is_file() else None


def positions_in(config: Any) -> int | None:
    """The longest input a config's position table holds; None: no table, or no config."""
    return None if config is None else max_tokens(config, find_spec(config))


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


def load_export(
    folder: Path, *, device: str = "cpu", threads: int | None = None, tensorrt: bool = False
) -> ExportedModel:
    """Open an export folder: its session (on ``device``; an ONNX graph on TensorRT with
    ``tensorrt``), tokenizer and manifest."""
    from transformers import AutoTokenizer

    from squeeze.model.checkpoint import quiet_transformers

    quiet_transformers()
    manifest = read_manifest(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder} has no usable tokenizer ({e})") from e
    session = export_session(
        graph_file(folder, manifest),
        device=device,
        threads=threads,
        tensorrt=tensorrt,
        precision=manifest.get("inference_precision", "f32"),
    )
    return ExportedModel(folder=folder, manifest=manifest, tokenizer=tokenizer, session=session)
