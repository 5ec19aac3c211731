"""How much each head group, FFN neuron and layer matters, by weights alone or by data.

- ``magnitude``: the L2 norm of the weights that a unit owns (its q/k/v rows and output
  columns; a neuron's input rows and output column). Needs no data.
- ``taylor``: the first-order Taylor estimate of the loss change when a unit is removed,
  |sum over its weights of w * dL/dw|, accumulated over batches of real data (Molchanov et al.
  2019; Michel et al. 2019 score heads the same way through a head mask). Layers are scored as a
  whole the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.core.types import Task
from squeeze.data.encoding import Encoded, batches
from squeeze.model.arch import ArchSpec, get_path, kv_heads, layer_list
from squeeze.model.shapes import qkv_widths

if TYPE_CHECKING:
    from squeeze.train.loop import Objective


@dataclass
class Importance:
    """Scores per original layer: one per key/value head group and one per FFN neuron.

    ``layers`` is None when the method has no per-layer signal (magnitude).
    """

    method: str
    heads: list[Any]
    ffn: list[Any]
    layers: list[float] | None = None


def _rows(layer: Any, path: str, side: str, spec: ArchSpec, values: Callable[[Any], Any]) -> Any:
    """``values(weight)`` laid out with one row per output ("out") or input ("in") unit."""
    table = values(get_path(layer, path).weight)
    if spec.conv1d:  # Conv1D stores [in, out]
        table = table.T
    return table if side == "out" else table.T


def _group_sums(
    layer: Any, spec: ArchSpec, config: Any, values: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """Sum ``values`` of every weight per key/value head group and per FFN neuron."""
    groups = kv_heads(config)
    if spec.fused_qkv:
        fused = _rows(layer, spec.fused_qkv, "out", spec, values)
        q_width, kv_width = qkv_widths(config)
        q, k, v = fused.split([q_width, kv_width, kv_width])
    else:
        q, k, v = (_rows(layer, p, "out", spec, values) for p in (spec.query, spec.key, spec.value))
    out = _rows(layer, spec.attn_out, "in", spec, values)
    heads = sum(t.reshape(groups, -1).sum(1) for t in (q, k, v, out))
    ffn = _rows(layer, spec.ffn_out, "in", spec, values).sum(1)
    for path in spec.ffn_in:  # a fused gate-and-up projection holds each neuron once per chunk
        rows = _rows(layer, path, "out", spec, values)
        ffn = ffn + rows.reshape(spec.ffn_chunks, ffn.shape[0], -1).sum((0, 2))
    return heads, ffn


def magnitude_importance(model: Any, spec: ArchSpec, config: Any) -> Importance:
    import torch

    heads, ffn = [], []
    with torch.no_grad():
        for layer in layer_list(model, spec):
            h, f = _group_sums(layer, spec, config, lambda w: w.float() ** 2)
            heads.append(h.sqrt())
            ffn.append(f.sqrt())
    return Importance("magnitude", heads, ffn)


def taylor_importance(
    model: Any,
    spec: ArchSpec,
    config: Any,
    task: Task,
    data: Encoded,
    *,
    max_batches: int = 16,
    batch_size: int = 16,
    objective: Objective | None = None,
    device: str = "cpu",
) -> Importance:
    """Accumulate |sum(w * grad)| per unit over up to ``max_batches`` batches of ``data``.

    The gradient is the task's loss's, or ``objective``'s (an embedder's
    :func:`~squeeze.train.embedding.sensitivity`: it has no task loss)."""
    import torch

    from squeeze.train.loop import task_loss

    blocks = list(layer_list(model, spec))
    heads = [0.0] * len(blocks)
    ffn = [0.0] * len(blocks)
    layers = [0.0] * len(blocks)
    was_training = model.training
    model.eval()  # no dropout: scores must be deterministic
    for i, batch in enumerate(batches(data, batch_size, shuffle=True, seed=0)):
        if i == max_batches:
            break
        model.zero_grad(set_to_none=True)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.inputs.items()}
        labels = torch.from_numpy(batch.labels).to(device) if batch.labels is not None else None
        if objective is None:
            loss, _ = task_loss(model, task, inputs, labels)
        else:
            loss, _ = objective(model, inputs, labels)
        loss.backward()
        with torch.no_grad():
            for j, layer in enumerate(blocks):
                h, f = _group_sums(layer, spec, config, lambda w: (w * w.grad).float())
                heads[j] = heads[j] + h.abs()
                ffn[j] = ffn[j] + f.abs()
                total = sum((p * p.grad).sum() for p in layer.parameters() if p.grad is not None)
                layers[j] += float(abs(total))
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return Importance("taylor", heads, ffn, layers)
