"""Structured pruning that physically removes heads, FFN neurons and layers.

transformers 5 has no ``prune_heads``, so squeeze slices the modules itself, reading every
family-specific path from the model's :class:`~squeeze.arch.ArchSpec`. Heads are removed as
key/value groups (one query head per group for ordinary multi-head attention; under Llama's
grouped-query attention a key/value head goes with all the query heads that share it), so the
remaining attention is still well formed. Sliced layers are smaller ``Linear``/``Conv1D``
modules: the model has fewer parameters and does less work in PyTorch and in ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.arch import ArchSpec, ffn_width, head_size, kv_heads
from squeeze.config import at_least, param, range_problem
from squeeze.errors import ConfigError, Problem
from squeeze.prune.magnitude import PRUNABLE_TASKS
from squeeze.prune.recovery import RecoveryConfig, recover, recovery_data_problem
from squeeze.registry import register
from squeeze.types import StepResult

if TYPE_CHECKING:
    from squeeze.runner import StepContext
    from squeeze.types import LoadedModel

SHAPES_FILE = "squeeze.json"


@dataclass(frozen=True)
class LayerShape:
    """What one transformer block holds after pruning."""

    heads: int
    kv_heads: int
    ffn: int


def get_path(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def set_path(root: Any, path: str, module: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_path(root, parent) if parent else root, name, module)


def layer_list(model: Any, spec: ArchSpec) -> Any:
    return get_path(model.base_model, spec.layers)


def _sliced(module: Any, index: Any, side: str, conv1d: bool) -> Any:
    """A new projection keeping ``index`` of its outputs (``side="out"``) or inputs ("in")."""
    import torch
    from transformers.pytorch_utils import Conv1D

    weight = module.weight.detach()
    # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
    out_dim, in_dim = (1, 0) if conv1d else (0, 1)
    new_weight = weight.index_select(out_dim if side == "out" else in_dim, index)
    bias = module.bias.detach() if module.bias is not None else None
    if bias is not None and side == "out":
        bias = bias.index_select(0, index)
    if conv1d:
        new = Conv1D(new_weight.shape[1], new_weight.shape[0])
    else:
        new = torch.nn.Linear(new_weight.shape[1], new_weight.shape[0], bias=bias is not None)
    new = new.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(new_weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _head_rows(units: Sequence[int], per_unit: int, size: int) -> list[int]:
    """Row indices of the heads in ``units`` (each unit = ``per_unit`` heads of ``size``)."""
    return [
        (unit * per_unit + r) * size + i
        for unit in units
        for r in range(per_unit)
        for i in range(size)
    ]


def keep_heads(layer: Any, spec: ArchSpec, config: Any, units: Sequence[int]) -> None:
    """Keep only the key/value groups ``units`` of a block's attention (in place)."""
    import torch

    size = head_size(config)
    n_rep = config.num_attention_heads // kv_heads(config)
    q_index = torch.tensor(_head_rows(units, n_rep, size))
    kv_index = torch.tensor(_head_rows(units, 1, size))
    if spec.fused_qkv:
        fused = get_path(layer, spec.fused_qkv)
        width = config.num_attention_heads * size  # q, k and v sit side by side
        index = torch.cat([q_index, kv_index + width, kv_index + 2 * width])
        set_path(layer, spec.fused_qkv, _sliced(fused, index, "out", spec.conv1d))
    else:
        for path, index in ((spec.query, q_index), (spec.key, kv_index), (spec.value, kv_index)):
            set_path(layer, path, _sliced(get_path(layer, path), index, "out", spec.conv1d))
    set_path(
        layer, spec.attn_out, _sliced(get_path(layer, spec.attn_out), q_index, "in", spec.conv1d)
    )
    attention = get_path(layer, spec.attention)
    heads = len(units) * n_rep
    for attr in spec.head_attrs:
        setattr(attention, attr, heads)
    for attr in spec.width_attrs:
        setattr(attention, attr, heads * size)


def keep_neurons(layer: Any, spec: ArchSpec, neurons: Sequence[int]) -> None:
    """Keep only the FFN neurons ``neurons`` of a block (in place)."""
    import torch

    index = torch.tensor(list(neurons))
    for path in spec.ffn_in:
        set_path(layer, path, _sliced(get_path(layer, path), index, "out", spec.conv1d))
    set_path(layer, spec.ffn_out, _sliced(get_path(layer, spec.ffn_out), index, "in", spec.conv1d))


def keep_layers(model: Any, spec: ArchSpec, keep: Sequence[int]) -> None:
    """Keep only the blocks ``keep`` (in order) and renumber them for the KV cache."""
    import torch

    blocks = layer_list(model, spec)
    kept = torch.nn.ModuleList(blocks[i] for i in keep)
    set_path(model.base_model, spec.layers, kept)
    for new_index, block in enumerate(kept):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    model.config.num_hidden_layers = len(keep)


def current_shapes(model: Any, spec: ArchSpec, config: Any) -> list[LayerShape]:
    """Each block's head, key/value-head and FFN counts, read from the modules themselves."""
    size = head_size(config)
    shapes = []
    for layer in layer_list(model, spec):
        out = get_path(layer, spec.attn_out).weight
        q_width = out.shape[0] if spec.conv1d else out.shape[1]
        ffn_out = get_path(layer, spec.ffn_out).weight
        ffn = ffn_out.shape[0] if spec.conv1d else ffn_out.shape[1]
        heads = q_width // size
        n_rep = config.num_attention_heads // kv_heads(config)
        shapes.append(LayerShape(heads=heads, kv_heads=heads // n_rep, ffn=ffn))
    return shapes


def describe_config(config: Any, spec: ArchSpec, shapes: list[LayerShape]) -> bool:
    """Write what the stock config can express into it; True if that is everything.

    Uniform FFN widths and layer counts always fit; per-layer head counts fit only families
    whose config states the head size separately (Llama's ``head_dim``).
    """
    ffn_widths = {s.ffn for s in shapes}
    heads = {(s.heads, s.kv_heads) for s in shapes}
    expressible = len(ffn_widths) == 1
    if expressible:
        setattr(config, spec.intermediate_field, ffn_widths.pop())
    config.num_hidden_layers = len(shapes)
    head_change = heads != {(config.num_attention_heads, kv_heads(config))}
    if head_change:
        if spec.heads_in_config and len(heads) == 1:
            size = head_size(config)
            config.num_attention_heads, config.num_key_value_heads = heads.pop()
            config.head_dim = size
        else:
            expressible = False
    return expressible


def apply_shapes(model: Any, spec: ArchSpec, config: Any, shapes: list[LayerShape]) -> None:
    """Resize a freshly built model to recorded shapes, so saved pruned weights fit it.

    The kept units are simply the first ones: the values come from the checkpoint afterwards.
    """
    blocks = layer_list(model, spec)
    if len(blocks) != len(shapes):
        keep_layers(model, spec, range(len(shapes)))
        blocks = layer_list(model, spec)
    n_rep = config.num_attention_heads // kv_heads(config)
    for layer, shape in zip(blocks, shapes, strict=True):
        if shape.heads != config.num_attention_heads:
            keep_heads(layer, spec, config, range(shape.heads // n_rep))
        if shape.ffn != ffn_width(config, spec):
            keep_neurons(layer, spec, range(shape.ffn))


IMPORTANCE_METHODS = ("magnitude", "taylor")


@dataclass(frozen=True, kw_only=True)
class StructuredPruneConfig(RecoveryConfig):
    """How much structure to remove, and how to rank it.

    ``importance`` None means taylor when there is data and magnitude otherwise: data-driven
    scores are better (Michel et al. 2019), weights alone need nothing.
    """

    heads: float = param(0.0, help="Fraction of attention heads to remove.")
    ffn: float = param(0.0, help="Fraction of FFN neurons to remove.")
    layers: int = param(0, help="Whole layers to drop.")
    importance: str | None = param(
        None,
        help="magnitude, or taylor (data-driven; the default with data).",
        choices=IMPORTANCE_METHODS,
    )
    importance_batches: int = param(16, help="Batches of training data for taylor importance.")

    def problems(self) -> list[Problem]:
        found = range_problem("heads", self.heads, 0, 1, closed="low")
        found += range_problem("ffn", self.ffn, 0, 1, closed="low")
        found += at_least("layers", self.layers, 0)
        found += at_least("importance_batches", self.importance_batches, 1)
        if not (self.heads or self.ffn or self.layers):
            found.append(Problem("structured pruning needs {heads}, {ffn} or {layers}"))
        return found + super().problems()

    def importance_for(self, has_data: bool) -> str:
        return self.importance or ("taylor" if has_data else "magnitude")


def _top(scores: Any, keep: int) -> list[int]:
    """Indices of the ``keep`` highest scores, in their original order."""
    import torch

    return sorted(torch.topk(torch.as_tensor(scores).float(), keep).indices.tolist())


def prune_structured(
    model: Any, spec: ArchSpec, config: StructuredPruneConfig, importance: Any
) -> tuple[list[LayerShape], bool, list[str]]:
    """Remove the least important layers, head groups and neurons from ``model`` in place.

    Every kept layer loses the same number of heads and neurons, so the model stays balanced
    (no layer becomes the bottleneck) and FFN widths stay expressible in a stock config.

    Returns:
        The new per-layer shapes, whether the stock config now describes them, and notes.
    """
    model_config = model.config
    blocks = list(layer_list(model, spec))
    n_layers = len(blocks)
    if config.layers >= n_layers:
        raise ConfigError(
            [Problem(f"{{layers}} {config.layers} would remove all {n_layers} layers")]
        )
    notes = []
    if importance.layers is None:
        # Without data, drop the top layers: Sajjad et al. (2020) found that costs least.
        keep = list(range(n_layers - config.layers))
    else:
        keep = _top(importance.layers, n_layers - config.layers)
    if config.layers:
        dropped = sorted(set(range(n_layers)) - set(keep))
        notes.append(f"dropped layers {dropped} of {n_layers} ({importance.method} importance)")

    groups = kv_heads(model_config)
    width = ffn_width(model_config, spec)
    drop_groups = min(round(config.heads * groups), groups - 1)
    drop_neurons = min(round(config.ffn * width), width - 1)
    for index in keep:
        if drop_groups:
            keep_heads(
                blocks[index],
                spec,
                model_config,
                _top(importance.heads[index], groups - drop_groups),
            )
        if drop_neurons:
            keep_neurons(blocks[index], spec, _top(importance.ffn[index], width - drop_neurons))
    n_rep = model_config.num_attention_heads // groups
    if config.heads:
        notes.append(
            f"removed {drop_groups * n_rep} of {model_config.num_attention_heads} heads per layer "
            f"({drop_groups / groups:.0%}; asked {config.heads:.0%})"
        )
    if config.ffn:
        notes.append(
            f"removed {drop_neurons} of {width} FFN neurons per layer ({drop_neurons / width:.0%})"
        )
    keep_layers(model, spec, keep)
    shapes = current_shapes(model, spec, model_config)
    expressible = describe_config(model_config, spec, shapes)
    return shapes, expressible, notes


def _data_problem(config: StructuredPruneConfig, given: Any) -> str | None:
    if config.importance == "taylor" and "data" not in given:
        return "{importance} taylor needs {data} (it scores units by gradients on it)"
    return recovery_data_problem(config, given)


@register(
    StructuredPruneConfig,
    name="structured",
    help="remove heads, FFN neurons and layers (fewer parameters, faster)",
    summary="prune.json",
    tasks=PRUNABLE_TASKS,
    data_problem=_data_problem,
    zipped_size=True,
)
def structured(loaded: LoadedModel, config: StructuredPruneConfig, ctx: StepContext) -> StepResult:
    """Rank units, slice the least important away, then recover."""
    from squeeze.prune.importance import magnitude_importance, taylor_importance

    method = config.importance_for(ctx.data.given)
    if method == "taylor":
        importance = taylor_importance(
            loaded.model, loaded.family, loaded.config, loaded.task, ctx.data.training(loaded),
            max_batches=config.importance_batches, device=ctx.device,
        )  # fmt: skip
    else:
        importance = magnitude_importance(loaded.model, loaded.family, loaded.config)
    shapes, plain, notes = prune_structured(loaded.model, loaded.family, config, importance)
    loaded.shapes = shapes
    notes += [n for n in (recover(loaded, config, ctx),) if n]
    return StepResult(
        model=loaded,
        details={"importance": method, "loads_with_plain_transformers": plain},
        notes=notes,
    )
