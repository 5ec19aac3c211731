"""Tracing: ``torch.onnx.export(dynamo=False)`` from a *padded* example (an unpadded trace can
bake in "no padding" and ignore ``attention_mask``), then the weights attached one at a time."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from squeeze.core.errors import ValidationError
from squeeze.core.types import Task
from squeeze.methods.export import storage
from squeeze.methods.export.config import ExportConfig
from squeeze.methods.export.validate import VALIDATION_TEXTS, tokenize
from squeeze.model.loaded import LoadedModel


def output_names(loaded: LoadedModel) -> list[str]:
    """The graph's outputs, the one every runtime reads first: ``logits``, or an embedder's
    ``sentence_embedding`` (pooled inside the graph) then its ``token_embeddings``."""
    if loaded.pooling is not None:
        return ["sentence_embedding", "token_embeddings"]
    return ["logits"]


def _outputs_only(loaded: LoadedModel) -> Any:
    """A module whose forward takes inputs positionally and returns only the outputs: the tracer
    needs positional tensors, causal LMs must not return a KV cache, and an embedder pools (and
    normalises) inside the graph, so the export returns what ``SentenceTransformer.encode``
    does."""
    import torch

    from squeeze.model.pooling import pool

    names = loaded.input_names
    extra = {"use_cache": False} if loaded.decoder else {}
    pooling = loaded.pooling

    class OutputsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = loaded.model

        def forward(self, *tensors: torch.Tensor) -> Any:
            inputs = dict(zip(names, tensors, strict=True))
            out = self.model(**inputs, **extra)
            if pooling is None:
                return out.logits
            hidden = out.last_hidden_state
            return pool(hidden, inputs["attention_mask"], pooling), hidden

    return OutputsOnly().eval()


def _transposed_weight(node: Any, tensor: Any) -> bool:
    """Whether ``node`` is a plain 2-D Transpose (what a Linear's weight goes through)."""
    perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
    return node.op_type == "Transpose" and tensor.dim() == 2 and perm in ([], [[1, 0]])


def _attach_weights(model: Any, module: Any, input_names: list[str], path: Path) -> None:
    """Turn the weight inputs of a graph traced with ``export_params=False`` into initializers
    written from ``module``'s own tensors, one at a time, and save the graph as ``path``.

    A weight whose only use is a Transpose (a Linear's, into MatMul) is stored transposed, as
    constant folding would have: the folding pass itself needs every value in memory at once.
    """
    import onnx

    tensors = {**dict(module.named_buffers()), **dict(module.named_parameters())}
    graph = model.graph
    weights = [value.name for value in graph.input if value.name not in input_names]
    unknown = [name for name in weights if name not in tensors]
    if unknown:
        raise ValidationError(
            f"the traced graph takes inputs that are neither the tokenizer's nor weights: "
            f"{', '.join(unknown[:3])}"
        )
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    nbytes = sum(tensors[name].nbytes for name in weights)
    data = storage.DataFile(path) if nbytes >= storage.EXTERNAL_DATA_MIN_BYTES else None
    folded = []
    try:
        for name in weights:
            tensor, used_by = tensors[name], users.get(name, [])
            if len(used_by) == 1 and _transposed_weight(used_by[0], tensor):
                folded.append(used_by[0])
                tensor, name = tensor.t(), used_by[0].output[0]
            graph.initializer.append(storage.initializer(tensor, name, data))
    finally:
        if data is not None:
            data.close()
    for node in folded:
        graph.node.remove(node)
    inputs = [value for value in graph.input if value.name in input_names]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.save(model, str(path))


def trace(loaded: LoadedModel, path: Path, config: ExportConfig) -> None:
    """Trace the graph without weights (``export_params=False``), then attach them.

    With weights, the TorchScript exporter holds them several times over in memory (folded
    copies, the proto, its serialization and a parsed copy; 4x a 350M model's weights) and
    past 2 GB writes one file per tensor; without, the graph takes the weights as inputs
    named like the module's parameters, and :func:`_attach_weights` writes them from there.
    Constant folding is off because it needs the weights' values; onnxruntime folds what is
    left (shape arithmetic) when it opens the graph.
    """
    import onnx
    import torch

    example = tokenize(loaded, list(VALIDATION_TEXTS[:2]), config)
    if config.dynamic and example["attention_mask"].all():
        raise ValidationError("the trace example has no padding; cannot export safely")
    names = list(loaded.input_names)
    outputs = output_names(loaded)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, *outputs]}
    if loaded.task is Task.SEQUENCE_CLASSIFICATION:
        axes["logits"] = {0: "batch"}
    if loaded.pooling is not None:
        axes["sentence_embedding"] = {0: "batch"}
    module = _outputs_only(loaded)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # TracerWarnings about Python control flow on shapes
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(example[name]) for name in names),
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes if config.dynamic else None,
            opset_version=config.opset,
            dynamo=False,
            export_params=False,
            do_constant_folding=False,
        )
    with torch.inference_mode():
        _attach_weights(onnx.load(str(path)), module, names, path)
