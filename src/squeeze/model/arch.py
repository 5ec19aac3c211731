"""Per-family facts about where a transformer keeps its structure, declared as data.

Most of squeeze needs no family knowledge: loading, evaluation, fine-tuning, export, quantization,
benchmarks and magnitude pruning work on any architecture transformers loads with an Auto class,
reading what they need (decoder or encoder, position limit, widths) from the config. Only the
steps that cut structure (structured pruning, layer-copy students) need to know where heads,
FFN neurons and layers live; a family gets that through one :class:`ArchSpec`, and
:func:`squeeze.model.discover.propose_spec` drafts one for a family that has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squeeze.core.errors import ConfigError, Problem, UnsupportedError


@dataclass(frozen=True)
class ArchSpec:
    """What squeeze needs to know to cut structure out of one model family.

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
        also_query, also_key: Projections sliced like the query or key when the block has them
            (DeBERTa's separate position projections when ``share_att_key`` is off).
        fused_qkv: Path to one projection holding q, k and v side by side (GPT-2's c_attn,
            ModernBERT's Wqkv, Phi-3's qkv_proj; k and v are narrower under grouped attention).
        attn_out: Path to the attention output projection.
        ffn_in: Paths to the FFN input projections (Llama: gate and up).
        ffn_chunks: How many FFN inputs one ``ffn_in`` projection holds side by side (2 for a
            fused gate-and-up projection: ModernBERT's Wi, Phi-3's gate_up_proj).
        ffn_out: Path to the FFN output projection.
        conv1d: Weights stored ``[in, out]`` (GPT-2's Conv1D) instead of ``[out, in]``.
        head_attrs: Attention attributes holding the head count, updated when heads go.
        kv_head_attrs: Attention attributes holding the key/value head count.
        width_attrs: Attention attributes holding heads x head size (GPT-2's split_size).
        heads_in_config: Whether a config can state pruned head counts (Llama has head_dim).
        shared_head_bias: Path from ``model.base_model`` to an embedding with one column per
            head that every layer shares (MPNet's relative position bias): heads are then
            chosen once for all layers, and the bias keeps their columns.
        shared_layers: One block's weights are reused for every layer (ALBERT): pruning heads
            or neurons prunes them in every pass, and layers cannot be dropped.
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
    also_query: tuple[str, ...] = ()
    also_key: tuple[str, ...] = ()
    fused_qkv: str = ""
    attn_out: str = "attention.output.dense"
    ffn_in: tuple[str, ...] = ("intermediate.dense",)
    ffn_chunks: int = 1
    ffn_out: str = "output.dense"
    conv1d: bool = False
    head_attrs: tuple[str, ...] = ("num_attention_heads",)
    kv_head_attrs: tuple[str, ...] = ()
    width_attrs: tuple[str, ...] = ("all_head_size",)
    heads_in_config: bool = False
    shared_head_bias: str = ""
    shared_layers: bool = False
    # Learned absolute positions (a table that caps the length); rotary ones have none.
    position_table: bool = True
    # Position ids a family reserves before the first token (RoBERTa counts from padding_idx+1).
    position_offset: int = 0


_LLAMA_LAYOUT: dict[str, Any] = {
    "decoder": True,
    "layers": "layers",
    "attention": "self_attn",
    "query": "self_attn.q_proj",
    "key": "self_attn.k_proj",
    "value": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ffn_in": ("mlp.gate_proj", "mlp.up_proj"),
    "ffn_out": "mlp.down_proj",
    "head_attrs": (),
    "width_attrs": (),
    "heads_in_config": True,
    "position_table": False,
}

SPECS: tuple[ArchSpec, ...] = (
    ArchSpec("bert", ("bert", "electra")),
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
        "mpnet",
        ("mpnet",),
        attention="attention.attn",
        query="attention.attn.q",
        key="attention.attn.k",
        value="attention.attn.v",
        attn_out="attention.attn.o",
        shared_head_bias="encoder.relative_attention_bias",
        position_offset=2,
    ),
    ArchSpec(
        "deberta-v2",
        ("deberta-v2",),
        query="attention.self.query_proj",
        key="attention.self.key_proj",
        value="attention.self.value_proj",
        also_query=("attention.self.pos_query_proj",),
        also_key=("attention.self.pos_key_proj",),
    ),
    ArchSpec(
        "albert",
        ("albert",),
        layers="encoder.albert_layer_groups.0.albert_layers",
        attention="attention",
        query="attention.query",
        key="attention.key",
        value="attention.value",
        attn_out="attention.dense",
        ffn_in=("ffn",),
        ffn_out="ffn_output",
        shared_layers=True,
    ),
    ArchSpec(
        "modernbert",
        ("modernbert",),
        layers="layers",
        attention="attn",
        query="",
        key="",
        value="",
        fused_qkv="attn.Wqkv",
        attn_out="attn.Wo",
        ffn_in=("mlp.Wi",),
        ffn_chunks=2,
        ffn_out="mlp.Wo",
        head_attrs=(),
        width_attrs=(),
        position_table=False,
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
    ArchSpec("llama", ("llama", "mistral", "qwen2", "gemma", "gemma2"), **_LLAMA_LAYOUT),
    ArchSpec(
        "phi3",
        ("phi3",),
        **{
            **_LLAMA_LAYOUT,
            "query": "",
            "key": "",
            "value": "",
            "fused_qkv": "self_attn.qkv_proj",
            "ffn_in": ("mlp.gate_up_proj",),
            "ffn_chunks": 2,
            "kv_head_attrs": ("num_key_value_heads",),
        },
    ),
)

_BY_MODEL_TYPE = {model_type: spec for spec in SPECS for model_type in spec.model_types}


def supported_model_types() -> list[str]:
    """Model types with a spec: the ones structured pruning and layer-copy students handle."""
    return sorted(_BY_MODEL_TYPE)


def find_spec(config: Any) -> ArchSpec | None:
    """The family spec for a transformers config, or None for a family squeeze has none for."""
    return _BY_MODEL_TYPE.get(getattr(config, "model_type", None))


def spec_for(config: Any, needed_for: str = "this step") -> ArchSpec:
    """The family spec, for a step that cuts structure and cannot work without one.

    Raises:
        UnsupportedError: no spec; names what is supported and how to propose one.
    """
    spec = find_spec(config)
    if spec is None:
        model_type = getattr(config, "model_type", None)
        raise UnsupportedError(
            Problem(
                f"{needed_for} needs to know where '{model_type}' keeps its heads, FFN and "
                f"layers, and squeeze has no spec for it (it has: "
                f"{', '.join(supported_model_types())}); `squeeze info MODEL --spec` "
                "proposes one, and every other command works as is"
            )
        )
    return spec


def family_name(config: Any, spec: ArchSpec | None) -> str:
    """The family shown to users: the spec's name, or the config's model_type."""
    return spec.family if spec is not None else str(getattr(config, "model_type", "unknown"))


def is_decoder(config: Any, spec: ArchSpec | None) -> bool:
    """Whether a model reads left to right: the spec says so, or else transformers' own mappings
    do (a model type with a causal-LM class and no masked-LM class is a decoder)."""
    if spec is not None:
        return spec.decoder
    if getattr(config, "is_decoder", False):
        return True
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    return (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


# Where configs of families without a spec keep their FFN width, most common first.
_FFN_FIELDS = ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim", "d_ff", "ffn_hidden_size")
# Config fields that mean rotary (or otherwise relative) positions: no table caps the length.
_ROTARY_FIELDS = ("rope_theta", "rope_scaling", "rope_parameters", "rotary_pct", "rotary_dim")


def shape_summary(config: Any, spec: ArchSpec | None) -> dict[str, int | None]:
    """Layers, heads and widths of a model, under one set of names for every family.

    transformers' ``attribute_map`` already aliases ``num_hidden_layers`` and friends for GPT-2 and
    DistilBERT; only the FFN width and key/value heads differ by family. A field a config does
    not have is None (shown as absent), never a guess.
    """
    heads = getattr(config, "num_attention_heads", None)
    return {
        "layers": getattr(config, "num_hidden_layers", None),
        "heads": heads,
        "kv_heads": kv_heads(config) if heads else None,
        "head_size": head_size(config) if heads and _has(config, "hidden_size") else None,
        "hidden_size": getattr(config, "hidden_size", None),
        "intermediate_size": ffn_width(config, spec),
        "vocab_size": getattr(config, "vocab_size", None),
        "max_positions": getattr(config, "max_position_embeddings", None),
    }


def _has(config: Any, name: str) -> bool:
    return getattr(config, name, None) is not None


def max_tokens(config: Any, spec: ArchSpec | None) -> int | None:
    """The longest sequence the model's position table holds, or None when it has no table
    (rotary positions, as in Llama, extend past the trained length at a cost in quality).

    Without a spec, a config that names rotary positions has no table, and one that states a
    table length is taken at its word (offset 0).
    """
    table = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if table is None:
        return None
    if spec is None:
        rotary = any(_has(config, f) for f in _ROTARY_FIELDS)
        if rotary or getattr(config, "position_embedding_type", "absolute") != "absolute":
            return None
        return int(table)
    if not spec.position_table:
        return None
    return int(table) - spec.position_offset


def check_length(
    config: Any, spec: ArchSpec | None, length: int, field: str = "max_length"
) -> None:
    """Refuse a length the model cannot take, instead of a tensor-size traceback inside it.

    Raises:
        ConfigError: ``length`` exceeds the position table; names the field and the limit.
    """
    limit = max_tokens(config, spec)
    if limit is not None and length > limit:
        raise ConfigError(
            Problem(
                f"{{{field}}} {length} is longer than this model's {limit} positions; use "
                f"{{{field}}} {limit} or less"
            )
        )


def kv_heads(config: Any) -> int:
    """Key/value heads: fewer than query heads under grouped-query attention (Llama)."""
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def head_size(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def ffn_width(config: Any, spec: ArchSpec | None) -> int | None:
    """The FFN width: from the spec's field, or for a family without one from the usual field
    names (None when the config states none)."""
    if spec is None:
        return next((int(getattr(config, f)) for f in _FFN_FIELDS if _has(config, f)), None)
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
