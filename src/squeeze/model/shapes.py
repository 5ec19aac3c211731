"""Module surgery and the shapes file: how squeeze slices heads, neurons and layers out of a
model, and how a checkpoint records shapes a stock config cannot state.

Below checkpoint loading (which rebuilds recorded shapes) and below pruning (which decides what
to cut). transformers 5 has no ``prune_heads``, so squeeze slices the modules itself, reading every
family-specific path from the model's :class:`~squeeze.model.arch.ArchSpec`. Heads are removed as
key/value groups (one query head per group for ordinary multi-head attention; under Llama's
grouped-query attention a key/value head goes with all the query heads that share it), so the
remaining attention is still well formed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from squeeze.core.errors import CheckpointError
from squeeze.model.arch import (
    ArchSpec,
    ffn_width,
    get_path,
    head_size,
    kv_heads,
    layer_list,
    set_path,
)

SHAPES_FILE = "squeeze.json"


@dataclass(frozen=True)
class LayerShape:
    """What one transformer block holds after pruning."""

    heads: int
    kv_heads: int
    ffn: int


def _slice(layer: Any, path: str, index: Any, side: str, conv1d: bool) -> None:
    """Replace the projection at ``path`` in ``layer`` by a new one keeping ``index`` of its
    outputs (``side="out"``) or inputs ("in")."""
    import torch
    from transformers.pytorch_utils import Conv1D

    module = get_path(layer, path)
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
    set_path(layer, path, new)


def _head_rows(units: Sequence[int], per_unit: int, size: int) -> list[int]:
    """Row indices of the heads in ``units`` (each unit = ``per_unit`` heads of ``size``)."""
    return [
        (unit * per_unit + r) * size + i
        for unit in units
        for r in range(per_unit)
        for i in range(size)
    ]


def qkv_widths(config: Any) -> tuple[int, int]:
    """Rows of the query and of each of key and value in a fused qkv projection."""
    size = head_size(config)
    return config.num_attention_heads * size, kv_heads(config) * size


def _present(layer: Any, path: str) -> bool:
    """Whether an optional projection exists in this block (DeBERTa's position projections)."""
    try:
        return get_path(layer, path) is not None
    except AttributeError:
        return False


def keep_heads(layer: Any, spec: ArchSpec, config: Any, units: Sequence[int]) -> None:
    """Keep only the key/value groups ``units`` of a block's attention (in place)."""
    import torch

    size = head_size(config)
    n_rep = config.num_attention_heads // kv_heads(config)
    q_index = torch.tensor(_head_rows(units, n_rep, size))
    kv_index = torch.tensor(_head_rows(units, 1, size))
    if spec.fused_qkv:
        q_width, kv_width = qkv_widths(config)  # q, k and v sit side by side
        index = torch.cat([q_index, kv_index + q_width, kv_index + q_width + kv_width])
        _slice(layer, spec.fused_qkv, index, "out", spec.conv1d)
    else:
        projections = [(spec.query, q_index), (spec.key, kv_index), (spec.value, kv_index)]
        projections += [(path, q_index) for path in spec.also_query if _present(layer, path)]
        projections += [(path, kv_index) for path in spec.also_key if _present(layer, path)]
        for path, index in projections:
            _slice(layer, path, index, "out", spec.conv1d)
    _slice(layer, spec.attn_out, q_index, "in", spec.conv1d)
    attention = get_path(layer, spec.attention)
    heads = len(units) * n_rep
    for attr in spec.head_attrs:
        setattr(attention, attr, heads)
    for attr in spec.kv_head_attrs:
        setattr(attention, attr, len(units))
    for attr in spec.width_attrs:
        setattr(attention, attr, heads * size)


def keep_bias_heads(model: Any, spec: ArchSpec, heads: Sequence[int]) -> None:
    """Keep the columns of the per-head table every layer shares (MPNet's relative position
    bias) for the query heads ``heads``, which every layer then keeps."""
    import torch

    table = get_path(model.base_model, spec.shared_head_bias)
    kept = torch.nn.Embedding(table.num_embeddings, len(heads)).to(table.weight.dtype)
    with torch.no_grad():
        kept.weight.copy_(table.weight.detach()[:, list(heads)])
    set_path(model.base_model, spec.shared_head_bias, kept)


def keep_neurons(layer: Any, spec: ArchSpec, neurons: Sequence[int], width: int) -> None:
    """Keep only the FFN neurons ``neurons`` of a block of FFN width ``width`` (in place).

    A fused gate-and-up projection (``ffn_chunks`` 2) holds each neuron's rows once per chunk.
    """
    import torch

    index = torch.tensor(list(neurons))
    index = torch.cat([index + chunk * width for chunk in range(spec.ffn_chunks)])
    for path in spec.ffn_in:
        _slice(layer, path, index, "out", spec.conv1d)
    _slice(layer, spec.ffn_out, index[: len(neurons)], "in", spec.conv1d)


def keep_layers(model: Any, spec: ArchSpec, keep: Sequence[int]) -> None:
    """Keep only the blocks ``keep`` (in order) and renumber them for the KV cache; per-layer
    config lists (Gemma-2's and Qwen2's ``layer_types``: sliding or full attention) follow."""
    import torch

    blocks = layer_list(model, spec)
    if list(keep) == list(range(len(blocks))):
        return  # nothing dropped (and a shared block's repeat count must stay as it is)
    per_layer = getattr(model.config, "layer_types", None)
    if isinstance(per_layer, list) and len(per_layer) == len(blocks):
        model.config.layer_types = [per_layer[i] for i in keep]
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


def describe_config(config: Any, spec: ArchSpec, shapes: list[LayerShape]) -> list[str]:
    """Write what the stock config can express into it; return what it cannot (empty: the
    config states every shape, so plain ``transformers`` loads the checkpoint).

    Uniform FFN widths and layer counts always fit. Head counts fit only families whose config
    states the head size apart from the hidden size (Llama's ``head_dim``): everywhere else
    the head size is ``hidden_size / heads`` and the output projection is
    ``hidden_size x hidden_size``, so a config with fewer heads builds other shapes. The reasons
    name what would have to be stated, so a user learns why ``squeeze.json`` is needed.
    """
    unstated = []
    ffn_widths = sorted({s.ffn for s in shapes})
    if len(ffn_widths) == 1:
        setattr(config, spec.intermediate_field, ffn_widths[0])
    else:
        unstated.append(f"FFN widths that differ by layer ({ffn_widths[0]}-{ffn_widths[-1]})")
    if not spec.shared_layers:  # a shared block's repeat count is not its block count
        config.num_hidden_layers = len(shapes)
    heads = {(s.heads, s.kv_heads) for s in shapes}
    if heads == {(config.num_attention_heads, kv_heads(config))}:
        return unstated
    counts = sorted(h for h, _ in heads)
    if not spec.heads_in_config:
        shown = counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        unstated.append(
            f"{shown} of {config.num_attention_heads} heads per layer ({spec.family} configs "
            "derive the head size from hidden_size / heads)"
        )
    elif len(heads) > 1:
        unstated.append(f"head counts that differ by layer ({counts[0]}-{counts[-1]})")
    else:
        size = head_size(config)
        before = (
            config.num_attention_heads,
            config.num_key_value_heads,
            getattr(config, "head_dim", None),
        )
        config.num_attention_heads, config.num_key_value_heads = heads.pop()
        config.head_dim = size
        if not _accepted(config):
            # transformers 5 refuses e.g. 24 heads beside hidden_size 2048 even with head_dim
            # stated: keep the stock counts; the shapes file records the rest.
            unstated.append(
                f"{config.num_attention_heads} heads beside hidden_size {config.hidden_size} "
                "(transformers refuses that config)"
            )
            config.num_attention_heads, config.num_key_value_heads, config.head_dim = before
    return unstated


def _accepted(config: Any) -> bool:
    """Whether transformers' own checks (run again by ``save_pretrained``) accept the config."""
    validate = getattr(config, "validate", None)
    if validate is None:
        return True
    try:
        validate()
    except Exception:  # huggingface_hub's StrictDataclassClassValidationError, a bare Exception
        return False
    return True


def apply_shapes(model: Any, spec: ArchSpec, config: Any, shapes: list[LayerShape]) -> None:
    """Resize a freshly built model to recorded shapes, so saved pruned weights fit it.

    The kept units are simply the first ones: the values come from the checkpoint afterwards.
    """
    blocks = layer_list(model, spec)
    if len(blocks) != len(shapes):
        keep_layers(model, spec, range(len(shapes)))
        blocks = layer_list(model, spec)
    n_rep = config.num_attention_heads // kv_heads(config)
    width = ffn_width(config, spec)
    for layer, shape in zip(blocks, shapes, strict=True):
        if shape.heads != config.num_attention_heads:
            keep_heads(layer, spec, config, range(shape.heads // n_rep))
        if shape.ffn != width:
            keep_neurons(layer, spec, range(shape.ffn), width)
    if spec.shared_head_bias and shapes[0].heads != config.num_attention_heads:
        keep_bias_heads(model, spec, range(shapes[0].heads))


def read_shapes(folder: Path) -> list[LayerShape] | None:
    """Per-layer shapes a structurally pruned checkpoint recorded, or None for stock shapes."""
    path = folder / SHAPES_FILE
    if not path.is_file():
        return None
    try:
        return [LayerShape(**layer) for layer in json.loads(path.read_text())["layers"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid squeeze shapes file ({e})") from e


def write_shapes(folder: Path, shapes: list[LayerShape]) -> None:
    record = {"version": 1, "layers": [asdict(shape) for shape in shapes]}
    (folder / SHAPES_FILE).write_text(json.dumps(record, indent=2))
