"""Per-family facts about where a transformer keeps its structure, declared as data.

Every family squeeze supports has one :class:`ArchSpec`. Code that needs a family-specific fact
(how wide the FFN is, whether the model is a decoder) reads it from the spec instead of branching
on ``model_type``; adding a family means adding a spec and a tiny-model fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squeeze.errors import UnsupportedError


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
    """

    family: str
    model_types: tuple[str, ...]
    intermediate_field: str = "intermediate_size"
    intermediate_default_ratio: int = 4
    decoder: bool = False
    ort_model_type: str = "bert"


SPECS: tuple[ArchSpec, ...] = (
    ArchSpec("bert", ("bert",)),
    ArchSpec("roberta", ("roberta", "xlm-roberta")),
    ArchSpec("distilbert", ("distilbert",), intermediate_field="hidden_dim"),
    ArchSpec("gpt2", ("gpt2",), intermediate_field="n_inner", decoder=True, ort_model_type="gpt2"),
    ArchSpec("llama", ("llama", "mistral", "qwen2"), decoder=True),
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
    intermediate = getattr(config, spec.intermediate_field, None)
    if intermediate is None:
        intermediate = spec.intermediate_default_ratio * hidden
    heads = config.num_attention_heads
    return {
        "layers": config.num_hidden_layers,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "vocab_size": config.vocab_size,
        "max_positions": getattr(config, "max_position_embeddings", None),
    }
