"""State each layer's head count in its attention reshapes, so uneven layers fuse too.

transformers 5 splits heads with ``view(batch, seq, -1, head_size)``, so the exported Reshape
says -1 heads. onnxruntime's attention fusion (1.32) reads the head count from that shape, falling
back to the single ``num_heads`` it was given: after a global structured prune the layers hold
different head counts, no one number fits, and attention stayed unfused (slower, and in int8 no
QAttention). Here each such Reshape gets its layer's real count, read from the width of the
projection bias feeding it (heads = width / head size), before the fusion runs.
"""

from __future__ import annotations

from typing import Any


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
    with the projection's own count (in place); return how many reshapes were changed."""
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
