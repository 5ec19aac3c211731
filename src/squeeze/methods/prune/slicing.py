"""Structured pruning's mechanism: which heads, FFN neurons and layers to cut, by importance,
and cutting them.

The least important units go, the same share in every layer (uniform) or wherever they matter
least across layers (global); ``squeeze.model.shapes`` does the slicing, so the pruned layers are
smaller ``Linear``/``Conv1D`` modules (fewer parameters, less work in PyTorch and in ONNX). Used
by the ``structured`` step, its latency target and early-bird tickets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from squeeze.core.errors import ConfigError, Problem, UnsupportedError
from squeeze.model.arch import ArchSpec, ffn_width, kv_heads, layer_list
from squeeze.model.shapes import (
    LayerShape,
    current_shapes,
    describe_config,
    keep_bias_heads,
    keep_heads,
    keep_layers,
    keep_neurons,
)

if TYPE_CHECKING:
    from squeeze.methods.prune.structured import StructuredPruneConfig


def kept(units: int, fraction: float) -> int:
    """How many of ``units`` a ``fraction`` prune keeps: one at least, so no block is cut."""
    return units - min(round(fraction * units), units - 1)


def top_units(scores: Any, keep: int) -> list[int]:
    """Indices of the ``keep`` highest scores, in their original order."""
    import torch

    return sorted(torch.topk(torch.as_tensor(scores).float(), keep).indices.tolist())


def max_amount(model_config: Any, spec: ArchSpec) -> float:
    """The largest fraction of heads and FFN neurons that can go (one of each stays)."""
    groups, width = kv_heads(model_config), ffn_width(model_config, spec)
    return min((groups - 1) / groups, (width - 1) / width)


def _allocate(
    scores: list[Any], layers: list[int], keep: int, allocation: str
) -> dict[int, list[int]]:
    """Which units each of ``layers`` keeps: ``keep`` per layer (uniform), or ``keep`` times the
    layer count in all, the most important across layers (global), each layer keeping one at
    least so that no block is cut in two.

    Global ranking compares each layer's scores divided by their L2 norm: raw magnitudes and
    gradients differ in scale from layer to layer (Michel et al. 2019 normalise head importance
    per layer the same way before comparing across layers).
    """
    import torch

    if allocation == "uniform":
        return {i: top_units(scores[i], keep) for i in layers}
    normalised = {i: torch.as_tensor(scores[i]).float() for i in layers}
    normalised = {i: t / t.norm().clamp_min(1e-12) for i, t in normalised.items()}
    chosen = {i: [int(torch.argmax(t))] for i, t in normalised.items()}
    rest = sorted(
        (
            (value, i, unit)
            for i, t in normalised.items()
            for unit, value in enumerate(t.tolist())
            if unit != chosen[i][0]
        ),
        reverse=True,
    )
    for _, i, unit in rest[: keep * len(layers) - len(layers)]:
        chosen[i].append(unit)
    return {i: sorted(units) for i, units in chosen.items()}


def _spread(allocation: str, units: dict[int, list[int]], per_unit: int) -> str:
    """' on average (layers keep 2-10)' for a global allocation; '' for a uniform one."""
    if allocation == "uniform":
        return ""
    counts = [len(u) * per_unit for u in units.values()]
    return f" on average (layers keep {min(counts)}-{max(counts)})"


def prune_structured(
    model: Any, spec: ArchSpec, config: StructuredPruneConfig, importance: Any
) -> tuple[list[LayerShape], bool, list[str]]:
    """Remove the least important layers, head groups and neurons from ``model`` in place.

    With ``allocation`` uniform, every kept layer loses the same number of heads and neurons, so
    the model stays balanced and FFN widths stay expressible in a stock config. With global, the
    same totals are removed where they matter least across layers (the same parameter count),
    so layers keep different widths, recorded in ``squeeze.json``.

    Returns:
        The new per-layer shapes, whether the stock config now describes them (plain
        transformers loads the output; where not, a note says what the config cannot state),
        and notes.
    """
    model_config = model.config
    blocks = list(layer_list(model, spec))
    n_layers = len(blocks)
    if spec.shared_layers and config.layers:
        raise UnsupportedError(
            Problem(
                f"{spec.family} reuses one block's weights for all "
                f"{model_config.num_hidden_layers} layers, so there is no layer to drop; "
                "prune {heads} or {ffn} (that prunes the shared block in every pass)"
            )
        )
    if config.layers >= n_layers:
        raise ConfigError(Problem(f"{{layers}} {config.layers} would remove all {n_layers} layers"))
    notes = []
    if importance.layers is None:
        # Without data, drop the top layers: Sajjad et al. (2020) found that costs least.
        keep = list(range(n_layers - config.layers))
    else:
        keep = top_units(importance.layers, n_layers - config.layers)
    if config.layers:
        dropped = sorted(set(range(n_layers)) - set(keep))
        notes.append(f"dropped layers {dropped} of {n_layers} ({importance.method} importance)")

    groups = kv_heads(model_config)
    width = ffn_width(model_config, spec)
    drop_groups = groups - kept(groups, config.heads)
    drop_neurons = width - kept(width, config.ffn)
    n_rep = model_config.num_attention_heads // groups
    allocation = config.allocation
    if allocation == "global" and drop_groups and spec.shared_head_bias:
        allocation = "uniform"
        notes.append(
            "heads allocated uniformly: every layer must keep the same heads (they share one "
            "position bias); FFN neurons allocated globally"
        )
    head_units = _allocate(importance.heads, keep, groups - drop_groups, allocation)
    neuron_units = _allocate(importance.ffn, keep, width - drop_neurons, config.allocation)
    if drop_groups and spec.shared_head_bias:
        # One bias table serves every layer's heads, so every layer keeps the same heads: the
        # ones most important summed over the kept layers.
        shared = top_units(sum(importance.heads[i] / importance.heads[i].sum() for i in keep),
                      groups - drop_groups)  # fmt: skip
        head_units = dict.fromkeys(keep, shared)
        keep_bias_heads(model, spec, [u * n_rep + r for u in shared for r in range(n_rep)])
        notes.append(f"kept the same heads {shared} in every layer (they share one position bias)")
    for index in keep:
        if drop_groups:
            keep_heads(blocks[index], spec, model_config, head_units[index])
        if drop_neurons:
            keep_neurons(blocks[index], spec, neuron_units[index], width)
    if config.heads:
        notes.append(
            f"removed {drop_groups * n_rep} of {model_config.num_attention_heads} heads per layer"
            f"{_spread(allocation, head_units, n_rep)} ({drop_groups / groups:.0%}; asked "
            f"{config.heads:.0%})"
        )
    if config.ffn:
        notes.append(
            f"removed {drop_neurons} of {width} FFN neurons per layer"
            f"{_spread(config.allocation, neuron_units, 1)} ({drop_neurons / width:.0%})"
        )
    keep_layers(model, spec, keep)
    shapes = current_shapes(model, spec, model_config)
    unstated = describe_config(model_config, spec, shapes)
    if unstated:
        notes.append(
            f"the stock config cannot state {'; '.join(unstated)}: squeeze.json records the "
            "shapes, and plain transformers cannot load the output"
        )
    return shapes, not unstated, notes
