"""One Artifact for whatever squeeze reads or writes: a Hugging Face checkpoint (plain, pruned,
or quantized inside transformers), an ONNX export or an OpenVINO IR.

Runner, pipeline, bench, evaluation and ``squeeze info`` each used to decide "checkpoint or
export folder?" for themselves; an Artifact decides once, from the files, and answers what they
all ask: which runtime runs it, its config and position table, its sizes and non-zeros, its
fact sheet, and a :class:`Runnable` to score and time it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from squeeze.artifact.read import (
    ExportedModel,
    export_config,
    export_folder,
    load_export,
    positions_in,
    read_manifest,
    runtime_of,
)
from squeeze.core.errors import ConfigError
from squeeze.core.types import SizeStats, Task
from squeeze.model.loaded import LoadedModel
from squeeze.model.pooling import Pooling


@dataclass
class Runnable:
    """An artifact opened to run: a forward from numpy inputs to numpy outputs, plus what is
    needed to feed it. ``loaded`` is set for PyTorch, ``exported`` for an export's session."""

    task: Task
    tokenizer: Any
    input_names: tuple[str, ...]
    label2id: dict[str, int] | None
    forward: Any
    runtime: str
    notes: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # the position table's length, where the model has one
    loaded: LoadedModel | None = None
    exported: ExportedModel | None = None
    pooling: Pooling | None = None  # an embedder's (its forward returns pooled embeddings)

    @classmethod
    def of_loaded(cls, loaded: LoadedModel, device: str = "cpu") -> Runnable:
        """A loaded PyTorch model, run as it is (no second load)."""
        from squeeze.model.runtime import torch_forward

        return cls(
            loaded.task, loaded.tokenizer, loaded.input_names, loaded.label2id,
            torch_forward(loaded.model, device, loaded.pooling), "torch", list(loaded.notes),
            loaded.max_tokens, loaded=loaded, pooling=loaded.pooling,
        )  # fmt: skip

    @classmethod
    def of_export(cls, exported: ExportedModel) -> Runnable:
        from squeeze.model.runtime import ort_forward

        return cls(
            exported.task, exported.tokenizer, exported.input_names, exported.label2id,
            ort_forward(exported.session), exported.runtime, max_tokens=exported.max_tokens,
            exported=exported, pooling=exported.pooling,
        )  # fmt: skip


@dataclass(frozen=True)
class Artifact:
    """A checkpoint (a local folder or a hub id) or an export folder, by its files.

    Attributes:
        source: The path or hub id as given.
        export: The export folder; None for a checkpoint.
    """

    source: str
    export: Path | None = None

    @classmethod
    def of(cls, source: str | os.PathLike[str]) -> Artifact:
        """Raises: CheckpointError: an ``.onnx``/``.xml`` file without its manifest."""
        return cls(str(source), export_folder(source))

    @cached_property
    def manifest(self) -> dict[str, Any] | None:
        """An export's manifest (what ``squeeze export`` wrote); None for a checkpoint."""
        return None if self.export is None else read_manifest(self.export)

    def chosen_for(self) -> dict[str, Any] | None:
        """The machine its quantizer was chosen for (CPU, ISA flags; the default backend
        records it in an export's manifest, a checkpoint's quantize.json); None: not recorded."""
        if self.manifest is not None:
            return self.manifest.get("chosen_for")
        try:
            summary = json.loads((Path(self.source) / "quantize.json").read_text())
            return summary["auto"]["chosen_for"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def runtime(self) -> str:
        """What runs it: ``torch`` for a checkpoint, else ``onnxruntime`` or ``openvino``."""
        return "torch" if self.manifest is None else runtime_of(self.manifest)

    def config(self, *, trust_remote_code: bool = False) -> Any:
        """Its config, read alone (no weights: cheap enough to check lengths before any work);
        None for an export saved without one.

        Raises:
            CheckpointError, UnsupportedError: a checkpoint whose config does not read.
        """
        from squeeze.model.checkpoint import read_config

        if self.export is None:
            return read_config(self.source, trust_remote_code=trust_remote_code)
        return export_config(self.export)

    def positions(self, *, trust_remote_code: bool = False) -> int | None:
        """The longest input its position table holds (None: no table, or no config)."""
        return positions_in(self.config(trust_remote_code=trust_remote_code))

    def sizes(self, loaded: LoadedModel | None = None, *, zipped: bool = False) -> dict[str, int]:
        """Parameters, non-zeros and bytes of what it ships: an export's graph, or a
        checkpoint's weights counted on ``loaded`` (its model, loaded from this folder or
        written into it); ``zipped`` adds the deflated weight bytes of a checkpoint.
        """
        from squeeze.model.sizes import compressed_bytes, size_stats

        if self.export is not None:
            from squeeze.artifact.sizes import export_size_stats

            return asdict(export_size_stats(self.export))
        assert loaded is not None, "a checkpoint is sized on its loaded model"
        # The folder as it is (one being written need not read as a checkpoint yet); a hub id's
        # weights are where loading put them.
        folder = Path(self.source) if Path(self.source).is_dir() else loaded.path
        sizes = asdict(size_stats(loaded, folder))
        if zipped:
            sizes["bytes_compressed"] = compressed_bytes(folder)
        return sizes

    def size_stats(self, loaded: LoadedModel | None = None) -> SizeStats:
        """:meth:`sizes` as a SizeStats (no deflated bytes)."""
        return SizeStats(**self.sizes(loaded))

    def facts(
        self, *, task: Task | None = None, trust_remote_code: bool = False
    ) -> dict[str, Any] | None:
        """What ``squeeze info`` prints, from the files alone, or None where only loading can
        tell (a hub id, or a folder with pickled weights only).

        Raises:
            CheckpointError: missing, not a checkpoint, or damaged, worded as loading words it.
            UnsupportedError: a model type transformers does not know.
        """
        from squeeze.model.checkpoint import resolve_local
        from squeeze.model.info import inspect_folder
        from squeeze.model.safetensors import safetensors_files

        if self.export is not None:
            from squeeze.artifact.info import inspect_export

            return inspect_export(self.export, source=self.source)
        folder = resolve_local(self.source)
        if folder is None or not safetensors_files(folder):
            return None
        return inspect_folder(
            folder, source=self.source, task=task, trust_remote_code=trust_remote_code
        )

    def open(
        self,
        *,
        task: Task | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
        threads: int | None = None,
        tensorrt: bool = False,
        pooling: dict[str, Any] | None = None,
    ) -> Runnable:
        """Open it to run: a checkpoint in PyTorch on ``device``, an export in its runtime
        (an ONNX graph on TensorRT with ``tensorrt``). ``pooling`` sets a checkpoint's
        embedding pooling (``mode``, ``normalize``); an export pools as it was exported.

        Raises:
            ConfigError: ``task`` contradicts the task an export was made for.
        """
        if self.export is None:
            from squeeze.model.checkpoint import load

            loaded = load(
                self.source,
                task=task,
                trust_remote_code=trust_remote_code,
                device=device,
                pooling=pooling,
            )
            return Runnable.of_loaded(loaded, device)
        exported = load_export(self.export, device=device, threads=threads, tensorrt=tensorrt)
        if task is not None and task is not exported.task:
            raise ConfigError(
                f"{self.source} was exported as {exported.task.value}, not {task.value}"
            )
        return Runnable.of_export(exported)
