"""Find a model's structure by walking its modules: the block list, and a draft ArchSpec.

Steps that work on any architecture (magnitude pruning) need only the list of transformer blocks,
which is the ``ModuleList`` under the base model that holds the most parameters. Adding a family
to structured pruning needs a full :class:`~squeeze.model.arch.ArchSpec`; :func:`propose_spec`
drafts one from the module tree (projections recognised by their shapes against the config's
widths), so that adding a family is reviewing a proposal and writing a tiny-config test, not reading
the modelling code from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from squeeze.model.arch import (
    ArchSpec,
    ffn_width,
    get_path,
    head_size,
    is_decoder,
    kv_heads,
    max_tokens,
)


def block_list_path(base_model: Any) -> str | None:
    """Path from the base model to its transformer blocks: the ``ModuleList`` holding the most
    parameters (embeddings and heads are not in lists), or None when it has none. Of nested
    lists holding the same parameters (ALBERT's layer groups), the innermost."""
    import torch

    best, best_size = None, 0
    for name, module in base_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name:
            size = sum(p.numel() for p in module.parameters())
            if size >= best_size and size:
                best, best_size = name, size
    return best


def module_prefix(model: Any, path: str) -> str:
    """The parameter-name prefix of ``path`` (relative to the base model) inside ``model``, which
    may be the base model itself or a task model around it."""
    target = get_path(model.base_model, path)
    for name, module in model.named_modules():
        if module is target:
            return f"{name}." if name else ""
    raise ValueError(f"{path} is not inside the model")


@dataclass(frozen=True)
class _Linear:
    path: str
    inputs: int
    outputs: int
    conv1d: bool


def _linears(block: Any) -> list[_Linear]:
    """The block's projections in registration order (nn.Linear, and GPT-2's Conv1D)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    found = []
    for name, module in block.named_modules():
        if isinstance(module, torch.nn.Linear):
            found.append(_Linear(name, module.in_features, module.out_features, False))
        elif isinstance(module, Conv1D):
            found.append(_Linear(name, module.weight.shape[0], module.weight.shape[1], True))
    return found


def _pick(candidates: list[_Linear], hints: tuple[str, ...]) -> _Linear | None:
    """The candidate whose last name part matches a hint, else the first one."""
    for hint in hints:
        for linear in candidates:
            if linear.path.rpartition(".")[2].lower() in hint.split("|"):
                return linear
    return candidates[0] if candidates else None


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


@dataclass
class Proposal:
    """A drafted spec (the values found) and what a reviewer should check."""

    values: dict[str, Any]
    doubts: list[str] = field(default_factory=list)

    def as_code(self) -> str:
        """The proposal as the ``ArchSpec(...)`` entry to paste into ``squeeze/model/arch.py``."""
        defaults = {f.name: f.default for f in fields(ArchSpec)}
        lines = [f'ArchSpec(\n    "{self.values["family"]}",\n    {self.values["model_types"]!r},']
        for name, value in self.values.items():
            if name in ("family", "model_types") or defaults.get(name) == value:
                continue
            lines.append(f"    {name}={value!r},")
        lines.append(")")
        return "\n".join(lines)


def propose_spec(model: Any, config: Any) -> Proposal:
    """Draft an ArchSpec for ``model`` from its first block's projections and the config.

    Projections are recognised by shape: q (hidden -> heads x head size), k and v (hidden ->
    key/value heads x head size), fused qkv (the three side by side), the attention output (back
    to hidden), FFN inputs (hidden -> FFN width, or twice it when gate and up are fused) and the
    FFN output. Names break ties (q|query, k|key, v|value). Whatever is ambiguous is a doubt.
    """
    base = model.base_model
    model_type = str(getattr(config, "model_type", "unknown"))
    doubts: list[str] = []
    values: dict[str, Any] = {"family": model_type, "model_types": (model_type,)}
    layers = block_list_path(base)
    if layers is None:
        raise ValueError("found no list of transformer blocks in the model")
    values["layers"] = layers
    blocks = get_path(base, layers)
    block = blocks[0]
    hidden = config.hidden_size
    heads, groups, size = config.num_attention_heads, kv_heads(config), head_size(config)
    width = ffn_width(config, None)
    linears = _linears(block)
    values["conv1d"] = any(linear.conv1d for linear in linears)

    from_hidden = [lin for lin in linears if lin.inputs == hidden]
    fused = [lin for lin in from_hidden if lin.outputs == (heads + 2 * groups) * size]
    queries = [lin for lin in from_hidden if lin.outputs == heads * size]
    kv = [lin for lin in from_hidden if lin.outputs == groups * size]
    if fused and not (len(queries) and len(kv) >= 2):
        values.update(query="", key="", value="", fused_qkv=fused[0].path)
        attention = _parent(fused[0].path)
        doubts.append(
            f"{fused[0].path} holds q, k and v: check they sit side by side (all q rows, then "
            "k, then v) and are not interleaved per head (GPT-NeoX, Falcon)"
        )
    else:
        query = _pick(queries, ("q|query|q_proj|query_proj|q_lin",))
        rest = [lin for lin in (kv if groups != heads else queries) if lin is not query]
        key = _pick(rest, ("k|key|k_proj|key_proj|k_lin",))
        value = _pick([lin for lin in rest if lin is not key], ("v|value|v_proj|value_proj|v_lin",))
        if not (query and key and value):
            raise ValueError("found no query, key and value projections by shape")
        values.update(query=query.path, key=key.path, value=value.path)
        attention = _parent(query.path)
    values["attention"] = attention
    scope = _parent(attention)
    taken = {values[k] for k in ("query", "key", "value", "fused_qkv") if values.get(k)}
    outs = [
        lin
        for lin in linears
        if lin.inputs == heads * size
        and lin.outputs == hidden
        and lin.path.startswith(scope)
        and lin.path not in taken
    ]
    out = _pick(outs, ("o|out|o_proj|out_proj|out_lin|dense|wo|c_proj",))
    if out is None:
        raise ValueError("found no attention output projection by shape")
    values["attn_out"] = out.path
    taken.add(out.path)

    if width is None:
        doubts.append("the config states no FFN width; set ffn_in/ffn_out by hand")
    else:
        free = [lin for lin in from_hidden if lin.path not in taken]
        split = [lin for lin in free if lin.outputs == width]
        glu = [lin for lin in free if lin.outputs == 2 * width]
        if split:
            values["ffn_in"] = tuple(lin.path for lin in split)
        elif glu:
            values.update(ffn_in=(glu[0].path,), ffn_chunks=2)
            doubts.append(f"{glu[0].path} holds two FFN inputs side by side: check its chunk order")
        ffn_out = [
            lin
            for lin in linears
            if lin.inputs == width and lin.outputs == hidden and lin.path not in taken
        ]
        if ffn_out:
            values["ffn_out"] = ffn_out[0].path
        else:
            doubts.append("found no FFN output projection by shape")
        values["intermediate_field"] = next(
            (f for f in ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim", "d_ff")
             if getattr(config, f, None) == width),
            "intermediate_size",
        )  # fmt: skip

    module = get_path(block, attention) if attention else block
    ints = {k: v for k, v in vars(module).items() if isinstance(v, int) and not isinstance(v, bool)}
    values["head_attrs"] = tuple(k for k, v in ints.items() if v == heads and "head" in k)
    values["kv_head_attrs"] = tuple(
        k for k, v in ints.items() if v == groups and groups != heads and "head" in k
    )
    width_like = [k for k, v in ints.items() if v == heads * size != heads and k != "head_dim"]
    values["width_attrs"] = tuple(k for k in width_like if "all_head" in k or "split" in k)
    unsure = [k for k in width_like if k not in values["width_attrs"]]
    if unsure:
        doubts.append(
            f"{type(module).__name__} also holds {', '.join(unsure)} = heads x head size: add "
            "to width_attrs if it must shrink with the heads"
        )
    values["heads_in_config"] = _reads_head_dim(model, config, values)
    values["decoder"] = is_decoder(config, None)
    values["position_table"] = max_tokens(config, None) is not None
    if values["position_table"]:
        values["position_offset"] = _position_offset(base, layers)
    shared = _shared_head_tables(base, layers, heads)
    if shared:
        values["shared_head_bias"] = shared[0]
        doubts.append(f"{shared[0]} has one column per head and is shared by every layer")
    if len(blocks) < getattr(config, "num_hidden_layers", len(blocks)):
        values["shared_layers"] = True
        doubts.append("fewer blocks than layers: the blocks' weights are reused across layers")
    forward = type(module).forward
    if "config.num_attention_heads" in _source(forward):
        doubts.append(
            f"{type(module).__name__}.forward reads head counts from the config: pruned heads "
            "must be written there (heads_in_config)"
        )
    return Proposal(values, doubts)


def _reads_head_dim(model: Any, config: Any, values: dict[str, Any]) -> bool:
    """Whether the model sizes its heads by ``config.head_dim``, so a config can state pruned
    head counts. Asked of the model itself, not of its source text (transformers 5.25 wraps
    attention ``__init__`` in a kernel decorator, and source reading found nothing): a
    weightless copy is built on the meta device with ``head_dim`` doubled, and the query
    projection must widen with it. A config the family cannot build that way does not read it."""
    import copy

    import torch

    if getattr(config, "head_dim", None) is not None:
        return True
    probe = copy.deepcopy(config)
    try:
        probe.head_dim = 2 * head_size(config)
        with torch.device("meta"):
            skeleton = type(model)._from_config(probe)
    except Exception:  # any refusal to build this way means head_dim is not a config field
        return False
    block = get_path(skeleton.base_model, values["layers"])[0]
    found = _linears(get_path(block, values.get("query") or values["fused_qkv"]))
    if len(found) != 1:
        return False
    heads, groups = config.num_attention_heads, kv_heads(config)
    width = (heads + 2 * groups) if values.get("fused_qkv") else heads
    return found[0].outputs == width * probe.head_dim


def _position_offset(base: Any, layers: str) -> int:
    """Positions a family reserves before the first token: RoBERTa and MPNet number them from
    padding_idx + 1, OPT's learned table states its ``offset``; plain tables reserve none."""
    import torch

    for name, module in base.named_modules():
        if (
            isinstance(module, torch.nn.Embedding)
            and "position" in name
            and not name.startswith(layers)
        ):
            offset = getattr(module, "offset", None)
            if isinstance(offset, int):
                return offset
            return module.padding_idx + 1 if module.padding_idx is not None else 0
    return 0


def _shared_head_tables(base: Any, layers: str, heads: int) -> list[str]:
    import torch

    return [
        name
        for name, module in base.named_modules()
        if isinstance(module, torch.nn.Embedding)
        and module.embedding_dim == heads
        and not name.startswith(layers)
    ]


def _source(function: Any) -> str:
    import inspect

    try:
        return inspect.getsource(inspect.unwrap(function))
    except (OSError, TypeError):
        return ""


def check_proposal(proposal: Proposal, spec: ArchSpec) -> list[str]:
    """Where a proposal differs from an existing spec (empty when discovery finds the same)."""
    return [
        f"{name}: spec {getattr(spec, name)!r}, found {value!r}"
        for name, value in proposal.values.items()
        if name not in ("family", "model_types") and getattr(spec, name) != value
    ]
