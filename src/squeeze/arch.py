"""Per-family facts about where a transformer keeps its structure, declared as data.

Every family squeeze supports has one :class:`ArchSpec`. Code that needs a family-specific fact
(how wide the FFN is, whether the model is a decoder) reads it from the spec instead of branching
on ``model_type``; adding a family means adding a spec and a tiny-model fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squeeze.errors import ConfigError, Problem, UnsupportedError


@dataclass(frozen=True)
class ArchSpec:
    """What squeeze needs to know about one model family.

    Attributes:
        family: Short name shown to users ("bert", "gpt2", ...).
        model_types: ``config.model_type`` values that belong to the family.
        intermediate_field: Config field holding the FFN width. GPT-2 leaves ``n_inner`` unset,
            meaning ``intermediate_default_ratio`` times the hidden size.
        intermediate_default_ratio: FFN width / hidden size when the field is ``None``.
        decoder: Causal (left-to-right) family: needs a pad token chosen for batching, and
            classifies from the last non-pad token.
        ort_model_type: The ``model_type`` onnxruntime's transformer optimizer fuses it as.
            It has no Llama type; its BERT passes still fuse Llama's RMSNorm + residual adds.
        layers: Path from ``model.base_model`` to the list of transformer blocks.
        attention: Path from a block to the module that keeps head-count attributes.
        query, key, value: Paths from a block to the projections (empty when fused).
        fused_qkv: Path to one projection holding q, k and v side by side (GPT-2's c_attn).
        attn_out: Path to the attention output projection.
        ffn_in: Paths to the FFN input projections (Llama: gate and up).
        ffn_out: Path to the FFN output projection.
        conv1d: Weights stored ``[in, out]`` (GPT-2's Conv1D) instead of ``[out, in]``.
        head_attrs: Attention attributes holding the head count, updated when heads go.
        width_attrs: Attention attributes holding heads x head size (GPT-2's split_size).
        heads_in_config: Whether a config can state pruned head counts (Llama has head_dim).
    """

    family: str
    model_types: tuple[str, ...]
    intermediate_field: str = "intermediate_size"
    intermediate_default_ratio: int = 4
    decoder: bool = False
    ort_model_type: str = "bert"
    layers: str = "encoder.layer"
    attention: str = "attention.self"
    query: str = "attention.self.query"
    key: str = "attention.self.key"
    value: str = "attention.self.value"
    fused_qkv: str = ""
    attn_out: str = "attention.output.dense"
    ffn_in: tuple[str, ...] = ("intermediate.dense",)
    ffn_out: str = "output.dense"
    conv1d: bool = False
    head_attrs: tuple[str, ...] = ("num_attention_heads",)
    width_attrs: tuple[str, ...] = ("all_head_size",)
    heads_in_config: bool = False
    # Learned absolute positions (a table that caps the length); rotary ones have none.
    position_table: bool = True
    # Position ids a family reserves before the first token (RoBERTa counts from padding_idx+1).
    position_offset: int = 0


SPECS: tuple[ArchSpec, ...] = (
    ArchSpec("bert", ("bert",)),
    ArchSpec("roberta", ("roberta", "xlm-roberta"), position_offset=2),
    ArchSpec(
        "distilbert",
        ("distilbert",),
        intermediate_field="hidden_dim",
        layers="transformer.layer",
        attention="attention",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attn_out="attention.out_lin",
        ffn_in=("ffn.lin1",),
        ffn_out="ffn.lin2",
        head_attrs=("n_heads",),
        width_attrs=(),
    ),
    ArchSpec(
        "gpt2",
        ("gpt2",),
        intermediate_field="n_inner",
        decoder=True,
        ort_model_type="gpt2",
        layers="h",
        attention="attn",
        query="",
        key="",
        value="",
        fused_qkv="attn.c_attn",
        attn_out="attn.c_proj",
        ffn_in=("mlp.c_fc",),
        ffn_out="mlp.c_proj",
        conv1d=True,
        head_attrs=("num_heads",),
        width_attrs=("split_size",),
    ),
    ArchSpec(
        "llama",
        ("llama", "mistral", "qwen2"),
        decoder=True,
        layers="layers",
        attention="self_attn",
        query="self_attn.q_proj",
        key="self_attn.k_proj",
        value="self_attn.v_proj",
        attn_out="self_attn.o_proj",
        ffn_in=("mlp.gate_proj", "mlp.up_proj"),
        ffn_out="mlp.down_proj",
        head_attrs=(),
        width_attrs=(),
        heads_in_config=True,
        position_table=False,
    ),
)

_BY_MODEL_TYPE = {model_type: spec for spec in SPECS for model_type in spec.model_types}


def supported_model_types() -> list[str]:
    return sorted(_BY_MODEL_TYPE)


def spec_for(config: Any) -> ArchSpec:
    """The family spec for a transformers config, or a clear error naming what is supported."""
    model_type = getattr(config, "model_type", None)
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise UnsupportedError(
            f"architecture '{model_type}' is not supported; squeeze handles "
            f"{', '.join(supported_model_types())}"
        ) from None


def shape_summary(config: Any, spec: ArchSpec) -> dict[str, int | None]:
    """Layers, heads and widths of a model, under one set of names for every family.

    transformers' ``attribute_map`` already aliases ``num_hidden_layers`` and friends for GPT-2 and
    DistilBERT; only the FFN width and key/value heads differ by family.
    """
    hidden = config.hidden_size
    heads = config.num_attention_heads
    return {
        "layers": config.num_hidden_layers,
        "heads": heads,
        "kv_heads": kv_heads(config),
        "head_size": head_size(config),
        "hidden_size": hidden,
        "intermediate_size": ffn_width(config, spec),
        "vocab_size": config.vocab_size,
        "max_positions": getattr(config, "max_position_embeddings", None),
    }


def max_tokens(config: Any, spec: ArchSpec) -> int | None:
    """The longest sequence the model's position table holds, or None when it has no table
    (rotary positions, as in Llama, extend past the trained length at a cost in quality)."""
    table = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if table is None or not spec.position_table:
        return None
    return int(table) - spec.position_offset


def check_length(config: Any, spec: ArchSpec, length: int, field: str = "max_length") -> None:
    """Refuse a length the model cannot take, instead of a tensor-size traceback inside it.

    Raises:
        ConfigError: ``length`` exceeds the position table; names the field and the limit.
    """
    limit = max_tokens(config, spec)
    if limit is not None and length > limit:
        raise ConfigError(
            [
                Problem(
                    f"{{{field}}} {length} is longer than this model's {limit} positions; use "
                    f"{{{field}}} {limit} or less"
                )
            ]
        )


def kv_heads(config: Any) -> int:
    """Key/value heads: fewer than query heads under grouped-query attention (Llama)."""
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def head_size(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def ffn_width(config: Any, spec: ArchSpec) -> int:
    width = getattr(config, spec.intermediate_field, None)
    return width if width is not None else spec.intermediate_default_ratio * config.hidden_size


def get_path(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def set_path(root: Any, path: str, module: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_path(root, parent) if parent else root, name, module)


def layer_list(model: Any, spec: ArchSpec) -> Any:
    return get_path(model.base_model, spec.layers)
