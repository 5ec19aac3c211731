"""The export's manifest: what the graph takes and returns, how it was validated, with what."""

from __future__ import annotations

from typing import Any

from squeeze.artifact.read import MODEL_FILE
from squeeze.core import __version__
from squeeze.core.types import Task
from squeeze.methods.export.config import ExportConfig
from squeeze.model.checkpoint import embedding_dimension
from squeeze.model.loaded import LoadedModel


def dtype(loaded: LoadedModel) -> str:
    """The PyTorch model's parameter dtype, as ``float32``."""
    return str(next(loaded.model.parameters()).dtype).removeprefix("torch.")


def manifest(
    loaded: LoadedModel,
    config: ExportConfig,
    validation: dict[str, Any],
    fused: dict[str, int] | None,
) -> dict[str, Any]:
    """``manifest.json`` of ``loaded`` exported with ``config``: inputs, outputs and shapes,
    labels, fused operators, ``validation`` (what the export's validation returned), versions."""
    import onnxruntime
    import torch
    import transformers

    batch: int | str = "batch" if config.dynamic else config.batch
    seq: int | str = "sequence" if config.dynamic else config.seq_len
    token_level = loaded.task is not Task.SEQUENCE_CLASSIFICATION
    width = loaded.config.num_labels if not token_level else loaded.config.vocab_size
    labels = [loaded.config.id2label[i] for i in range(width)] if not token_level else None
    outputs = [{"name": "logits", "dtype": "float32", "shape": [batch, seq, width]}]
    if not token_level:
        outputs[0]["shape"] = [batch, width]
    if loaded.pooling is not None:
        dim = embedding_dimension(loaded.config)
        outputs = [
            {"name": "sentence_embedding", "dtype": "float32", "shape": [batch, dim]},
            {"name": "token_embeddings", "dtype": "float32", "shape": [batch, seq, dim]},
        ]
    return {
        "format": "onnx",
        "file": MODEL_FILE,
        "opset": config.opset,
        "source": loaded.source,
        "family": loaded.family,
        "model_type": loaded.config.model_type,
        "architecture": type(loaded.model).__name__,
        "task": loaded.task.value,
        "dtype": dtype(loaded),
        "inputs": [
            {"name": n, "dtype": "int64", "shape": [batch, seq]} for n in loaded.input_names
        ],
        "outputs": outputs,
        "labels": labels,
        "pooling": loaded.pooling.to_dict() if loaded.pooling is not None else None,
        "dynamic_shapes": config.dynamic,
        "optimized": fused is not None,
        "fused_ops": fused,
        "validation": validation,
        "versions": {
            "squeeze": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
