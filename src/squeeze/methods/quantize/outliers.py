"""Which MatMuls int8 would ruin: those whose input carries outlier features.

Dynamic int8 gives each MatMul input one scale per tensor. Some checkpoints carry a few hidden
channels tens of times larger than the rest (LLM.int8's outlier features; all-mpnet-base-v2's
FFN outputs peak at 45x their 99.9th percentile): one scale then leaves the ordinary values a
handful of levels, and those layers dominate the int8 error (on all-mpnet-base-v2: 5.4 points
lost with every MatMul quantized; 0.1 to 0.6 with the six to nine worst kept fp32). The scan runs
the fp32 ONNX graph on real text once, reading every such input as an extra output, so it
works for any architecture, without knowing module names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Outlier:
    """A MatMul whose input peaks at ``ratio`` times its 99.9th percentile of |x|."""

    node: str
    ratio: float


# The percentile the peak is compared with: high enough to ignore ordinary tails, low enough
# that a few outlier channels (a fraction of a percent of the values) lie above it.
PERCENTILE = 99.9
# At most this many values per tensor and batch go into the percentile (a random sample).
_SAMPLE = 1 << 20
# Operators int8 quantizes with a weight as their second input (Attention: fused QKV; Gemm:
# GPT-2's Conv1D layers in the unfused graph static int8 quantizes).
_WEIGHTED = ("MatMul", "Gemm", "Attention")


def outlier_matmuls(
    model_file: Path, feeds: Iterable[Mapping[str, np.ndarray]], ratio: float
) -> list[Outlier]:
    """The MatMuls int8 quantizes (Gemm and fused Attention too: a weight as second input) whose
    input peaks above ``ratio`` times its 99.9th percentile over ``feeds``, worst first; none when
    ``ratio`` is 0. That ratio is how much one per-tensor scale, set by the peak, coarsens the
    ordinary values (below 10 is usual; at 12 the 99.9th percentile gets ten of 127 levels).

    The graph is copied (without its weights, which stay in their data file beside it) with
    those inputs as extra outputs, and run once per feed in onnxruntime.
    """
    import numpy as np
    import onnx

    from squeeze.model.runtime import ort_session

    if ratio <= 0:
        return []
    model = onnx.load(str(model_file), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    matmuls = {
        node.name: node.input[0]
        for node in model.graph.node
        if node.op_type in _WEIGHTED and node.input[1] in weights and node.input[0] not in weights
    }
    tensors = sorted(set(matmuls.values()))
    if not tensors:  # asked for no outputs, onnxruntime would return them all
        return []
    outputs = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in outputs:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    probe = model_file.with_name(".outlier-probe.onnx")
    onnx.save(model, str(probe))
    try:
        session = ort_session(probe)
        inputs = {i.name for i in session.get_inputs()}
        peaks = dict.fromkeys(tensors, 0.0)
        tails: dict[str, list[float]] = {name: [] for name in tensors}
        rng = np.random.default_rng(0)
        for feed in feeds:
            values = session.run(tensors, {k: v for k, v in feed.items() if k in inputs})
            for name, value in zip(tensors, values, strict=True):
                magnitude = np.abs(value.reshape(-1))
                peaks[name] = max(peaks[name], float(magnitude.max(initial=0.0)))
                if magnitude.size > _SAMPLE:
                    magnitude = rng.choice(magnitude, _SAMPLE, replace=False)
                tails[name].append(float(np.percentile(magnitude, PERCENTILE)))
    finally:
        probe.unlink(missing_ok=True)
    by_tensor = {
        name: peaks[name] / max(float(np.mean(tails[name])), 1e-12) if tails[name] else 0.0
        for name in tensors
    }
    found = [Outlier(node, by_tensor[t]) for node, t in matmuls.items() if by_tensor[t] > ratio]
    return sorted(found, key=lambda o: -o.ratio)
