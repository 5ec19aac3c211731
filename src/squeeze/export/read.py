"""Reading exports back: an export folder opened for inference, and its sizes.

Kept apart from exporting (``squeeze.export.onnx``) so that evaluation and benchmarking can open
exports without the tracing machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.errors import CheckpointError
from squeeze.runtime import ort_session
from squeeze.types import SizeStats, Task

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


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
    folder = path.parent if path.suffix == ".onnx" else path
    if (folder / MANIFEST_FILE).is_file() and (folder / MODEL_FILE).is_file():
        return folder
    if path.suffix == ".onnx":
        raise CheckpointError(
            f"{path} has no {MANIFEST_FILE} beside it; squeeze needs the folder written by "
            "`squeeze export` (it names the inputs, task and tokenizer)"
        )
    return None


def load_export(folder: Path, *, device: str = "cpu", threads: int | None = None) -> ExportedModel:
    """Open an export folder: its session (on ``device``), tokenizer and manifest."""
    from transformers import AutoTokenizer

    from squeeze.checkpoint import quiet_transformers

    quiet_transformers()
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{folder / MANIFEST_FILE} is not valid JSON ({e.msg})") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder} has no usable tokenizer ({e})") from e
    session = ort_session(folder / MODEL_FILE, device=device, threads=threads)
    return ExportedModel(folder=folder, manifest=manifest, tokenizer=tokenizer, session=session)


def onnx_size_stats(folder: Path) -> SizeStats:
    """Parameters (initializer elements, all and non-zero) and bytes of the ONNX file(s)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / MODEL_FILE))
    total = nonzero = 0
    for initializer in model.graph.initializer:
        values = numpy_helper.to_array(initializer)
        total += values.size
        nonzero += int(np.count_nonzero(values))
    # External-data exports keep weights beside the graph; count every file of the model.
    files = [folder / MODEL_FILE, *folder.glob("*.onnx.data"), *folder.glob("*.onnx_data")]
    on_disk = sum(f.stat().st_size for f in files if f.is_file())
    return SizeStats(params_total=total, params_nonzero=nonzero, bytes_on_disk=on_disk)
