"""The optional fusion pass: attention/LayerNorm/GELU fused by onnxruntime's transformer optimizer
into operators of its own domain (com.microsoft), on a graph whose weights stay on disk."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from squeeze.methods.export.storage import has_external_data, save_model
from squeeze.model.arch import head_size
from squeeze.model.loaded import LoadedModel

_ORT_DOMAIN = "com.microsoft"


def _small_constant(name: str, initializers: dict[str, Any], producers: dict[str, Any]) -> Any:
    """The value of a small constant input (an initializer or a Constant node), or None."""
    from onnx import numpy_helper

    if name in initializers:
        tensor = initializers[name]
        if tensor.data_location == tensor.EXTERNAL:
            return None
        return numpy_helper.to_array(tensor).tolist()
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute:
        return numpy_helper.to_array(node.attribute[0].t).tolist()
    return None


def state_head_counts(model: Any, head_size: int) -> int:
    """Replace the -1 head count in ``[batch, seq, -1, head_size]`` reshapes of projections
    with the projection's own count (in place), so uneven layers fuse too; return how many
    reshapes were changed.

    transformers 5 splits heads with ``view(batch, seq, -1, head_size)``, so the exported Reshape
    says -1 heads. onnxruntime's attention fusion (1.32) reads the head count from that shape,
    falling back to the single ``num_heads`` it was given: after a global structured prune the
    layers hold different head counts, no one number fits, and attention stayed unfused (slower,
    and in int8 no QAttention). Each such Reshape gets its layer's real count, read from the
    width of the projection bias feeding it (heads = width / head size).
    """
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape = producers.get(node.input[1])
        if shape is None or shape.op_type != "Concat" or len(shape.input) != 4:
            continue
        heads = _small_constant(shape.input[2], initializers, producers)
        size = _small_constant(shape.input[3], initializers, producers)
        if heads != [-1] or size != [head_size]:
            continue
        projection = producers.get(node.input[0])
        if projection is None or projection.op_type != "Add":
            continue
        widths = [
            initializers[name].dims[-1]
            for name in projection.input
            if name in initializers and len(initializers[name].dims) == 1
        ]
        if not widths or widths[0] % head_size:
            continue
        name = f"{node.name}/squeeze_heads"
        graph.initializer.append(
            numpy_helper.from_array(np.array([widths[0] // head_size], dtype=np.int64), name)
        )
        shape.input[2] = name
        changed += 1
    return changed


def _ort_model_type(loaded: LoadedModel) -> str:
    """The model type onnxruntime's optimizer fuses this model as: the spec's, the config's own
    when the optimizer knows it, else BERT's passes (which match no pattern they do not find)."""
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    if loaded.spec is not None:
        return loaded.spec.ort_model_type
    model_type = loaded.config.model_type
    return model_type if model_type in MODEL_TYPES else "bert"


def optimize(loaded: LoadedModel, path: Path) -> dict[str, int]:
    """Fuse the graph in place with onnxruntime's transformer optimizer; return fused op counts.

    What ``optimize_model(path, opt_level=1)`` does, in its two halves, so the fusions never hold
    the weights: onnxruntime's basic optimizations write their result with the weights beside it
    (external data when the export has it), and the fusions run on that graph loaded without
    them, reading the few values they need from disk (relative to the scratch directory, which
    is the working directory meanwhile). Loaded whole, the fused graph and the copies symbolic
    shape inference makes of it took over 20 GB for a 1.1B Llama.
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_by_onnxruntime, optimize_model

    path = path.resolve()
    external = has_external_data(path)
    config = loaded.config
    heads, width = config.num_attention_heads, config.hidden_size
    if loaded.shapes is not None:
        # Pruned attention is narrower than the hidden size; 0 lets the optimizer read each
        # layer's own shape where layers differ.
        per_layer = {shape.heads for shape in loaded.shapes}
        heads = per_layer.pop() if len(per_layer) == 1 else 0  # 0: stated per layer below
        width = heads * head_size(config)
    # Its fusion modules log remarks through top-level loggers and print to stdout, and a failed
    # symbolic shape inference inside them saves "sym_shape_infer_temp.onnx" (plus external data)
    # into the working directory: run it from a scratch one so the user's folder stays clean.
    logging.disable(logging.WARNING)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            tempfile.TemporaryDirectory(dir=path.parent, prefix=".optimize-") as scratch,
            contextlib.chdir(scratch),
        ):
            basic = optimize_by_onnxruntime(
                str(path),
                optimized_model_path=str(Path(scratch, "basic.onnx")),
                opt_level=1,
                disabled_optimizers=["ConstantSharing"],  # as optimize_model disables it
                save_as_external_data=external,
            )
            graph = onnx.load(basic, load_external_data=False)
            if heads == 0:
                state_head_counts(graph, head_size(config))
            optimized = optimize_model(
                graph,
                model_type=_ort_model_type(loaded),
                num_heads=heads,
                hidden_size=width,
                opt_level=0,  # the basic optimizations ran above
            )
            optimized.topological_sort()
            model = optimized.model
            # As OnnxModel.save does: the fused operators live in onnxruntime's domain.
            if any(n.domain == _ORT_DOMAIN for n in model.graph.node) and not any(
                o.domain == _ORT_DOMAIN for o in model.opset_import
            ):
                model.opset_import.add(domain=_ORT_DOMAIN, version=1)
            save_model(model, path, external=external, source=Path(scratch))
    finally:
        logging.disable(logging.NOTSET)
    fused = Counter(node.op_type for node in model.graph.node if node.domain == _ORT_DOMAIN)
    return dict(sorted(fused.items()))
