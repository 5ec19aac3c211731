"""Tiny, seeded models of every supported family and a small learnable task, built offline.

Tests, examples and benchmarks need real transformers checkpoints without the hub. These are real
architectures at toy width (a few tens of thousands of parameters), saved as ordinary HF folders,
so every code path that handles BERT-base handles them too.

The task ("order"): every sentence holds the words ``a`` and ``b`` once among filler words, and
the label says which comes first. Bag-of-words cannot solve it, so a model that scores well on
held-out sentences has really used attention and positions. Distillation needs tasks where a
teacher knows more than the labels say: a weighted word vote (whose labels can be made noisy) and
sentences from a Markov chain (whose next-word distribution a teacher learns and labels only
sample).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from squeeze.core.types import Latency, Task

FAMILIES = ("bert", "roberta", "distilbert", "gpt2", "llama")
# Other model types that share the Llama spec; tested to load, prune and export like it.
LLAMA_LIKE = ("mistral", "qwen2")
# Families with a spec beyond the core five, each with a tiny config below; one table-driven
# test (tests/integration/test_families.py) runs every command on each.
MORE_FAMILIES = (
    "mpnet", "deberta-v2", "electra", "albert", "modernbert", "phi3", "gemma", "gemma2",
    *LLAMA_LIKE,
)  # fmt: skip
# Families squeeze has no spec for: every command but structured pruning and layer-copy
# students must still work on them.
NO_SPEC_FAMILIES = ("gpt_neox", "opt")
# Each family's own language-model head: masked for encoders, causal for decoders.
LM_TASK = {
    "bert": Task.MASKED_LM,
    "roberta": Task.MASKED_LM,
    "distilbert": Task.MASKED_LM,
    "gpt2": Task.CAUSAL_LM,
    "llama": Task.CAUSAL_LM,
}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FILLER_WORDS = tuple(f"w{i}" for i in range(40))
ORDER_LABELS = ("b_first", "a_first")

_PAD, _UNK, _CLS, _SEP, _MASK = range(len(SPECIAL_TOKENS))
_VOCAB = (*SPECIAL_TOKENS, "a", "b", *FILLER_WORDS)


def tiny_tokenizer(family: str) -> Any:
    """A word-level fast tokenizer over the task's vocabulary, shaped like the family's own.

    Only BERT feeds ``token_type_ids``; GPT-2 would accept them but its real tokenizer never
    produces them, so the tiny one does not either.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(_VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", _CLS), ("[SEP]", _SEP)],
    )
    input_names = ["input_ids", "attention_mask"]
    if family == "bert":
        input_names.insert(1, "token_type_ids")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_input_names=input_names,
        model_max_length=64,
    )


def _encoder(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": 2 * hidden, "max_position_embeddings": 64}  # fmt: skip


# The tiny tokenizer's [CLS] and [SEP] begin and end every text.
_ENDS = {"bos_token_id": _CLS, "eos_token_id": _SEP}


def _decoder(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {**_encoder(hidden, layers, heads), "num_key_value_heads": heads // 2, **_ENDS}


def _from_padding(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    """RoBERTa and MPNet number positions from pad_token_id + 1: two spare positions."""
    return {**_encoder(hidden, layers, heads), "max_position_embeddings": 66, **_ENDS}


# family -> (transformers config class, its arguments at a hidden size, layer and head count).
_TINY: dict[str, tuple[str, Any]] = {
    "bert": ("BertConfig", _encoder),
    "roberta": ("RobertaConfig", _from_padding),
    "distilbert": (
        "DistilBertConfig",
        lambda h, n, a: {
            "dim": h,
            "n_layers": n,
            "n_heads": a,
            "hidden_dim": 2 * h,
            "max_position_embeddings": 64,
        },
    ),
    "gpt2": (
        "GPT2Config",
        lambda h, n, a: {
            "n_embd": h,
            "n_layer": n,
            "n_head": a,
            "n_inner": 2 * h,
            "n_positions": 64,
            **_ENDS,
        },
    ),
    "llama": ("LlamaConfig", _decoder),
    "mistral": ("MistralConfig", _decoder),
    "qwen2": ("Qwen2Config", _decoder),
    "mpnet": ("MPNetConfig", _from_padding),
    # DeBERTa-v3's settings: relative attention with shared position keys, no absolute table.
    "deberta-v2": (
        "DebertaV2Config",
        lambda h, n, a: {
            **_encoder(h, n, a),
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "share_att_key": True,
            "position_buckets": 16,
            "max_relative_positions": -1,
            "norm_rel_ebd": "layer_norm",
            "type_vocab_size": 0,
        },
    ),
    "electra": ("ElectraConfig", lambda h, n, a: {**_encoder(h, n, a), "embedding_size": h // 2}),
    "albert": (
        "AlbertConfig",
        lambda h, n, a: {**_encoder(h, n, a), "embedding_size": h // 2, **_ENDS},
    ),
    "modernbert": (
        "ModernBertConfig",
        lambda h, n, a: {
            **_encoder(h, n, a),
            **_ENDS,
            "cls_token_id": _CLS,
            "sep_token_id": _SEP,
            "global_attn_every_n_layers": 2,
            "local_attention": 16,
        },
    ),
    "phi3": ("Phi3Config", _decoder),
    "gemma": ("GemmaConfig", lambda h, n, a: {**_decoder(h, n, a), "head_dim": h // a}),
    "gemma2": (
        "Gemma2Config",
        lambda h, n, a: {**_decoder(h, n, a), "head_dim": h // a, "sliding_window": 16},
    ),
    # Families without a spec: GPT-NeoX interleaves q, k and v per head; OPT is a plain decoder.
    "gpt_neox": ("GPTNeoXConfig", lambda h, n, a: {**_encoder(h, n, a), **_ENDS}),
    "opt": (
        "OPTConfig",
        lambda h, n, a: {
            "hidden_size": h,
            "num_hidden_layers": n,
            "num_attention_heads": a,
            "ffn_dim": 2 * h,
            "word_embed_proj_dim": h,
            "max_position_embeddings": 64,
            **_ENDS,
        },
    ),
}


def tiny_config(family: str, *, hidden: int = 32, layers: int = 2, heads: int = 4) -> Any:
    """A config of the family at toy size, with special-token ids matching the tiny tokenizer."""
    import transformers

    if family not in _TINY:
        raise ValueError(f"no tiny config for family {family!r}; known: {', '.join(_TINY)}")
    class_name, arguments = _TINY[family]
    config_class = getattr(transformers, class_name)
    return config_class(
        vocab_size=len(_VOCAB), pad_token_id=_PAD, **arguments(hidden, layers, heads)
    )


def build_tiny(
    family: str,
    out: str | Path,
    *,
    task: Task = Task.SEQUENCE_CLASSIFICATION,
    seed: int = 0,
    label_names: tuple[str, ...] = ORDER_LABELS,
    config: Any = None,
    pooling: Any = None,
) -> Path:
    """Build a randomly initialised (seeded) model and save it as a normal HF folder.

    ``config`` overrides the tiny config, e.g. ``transformers.BertConfig()`` for a BERT-base
    shape with random weights (benchmarks need the shape, not trained weights). The tokenizer is
    the tiny one either way; it only has to produce valid ids. An embedder (``Task.EMBEDDING``)
    gets the sentence-transformers files of ``pooling`` (default: mean for encoders, last
    token for decoders), as a sentence-transformers folder has them.
    """
    import torch

    from squeeze.model.checkpoint import (
        auto_class,
        quiet_quantizer_imports,
        quiet_transformers,
        set_labels,
    )

    quiet_transformers()
    config = config if config is not None else tiny_config(family)
    if task is Task.SEQUENCE_CLASSIFICATION:
        set_labels(config, label_names)
    torch.manual_seed(seed)
    with quiet_quantizer_imports():  # transformers may import torchao, which logs warnings
        model = auto_class(task).from_config(config)
    out = Path(out)
    model.save_pretrained(out)
    tiny_tokenizer(family).save_pretrained(out)
    if task is Task.EMBEDDING:
        from squeeze.model.arch import find_spec, is_decoder
        from squeeze.model.checkpoint import embedding_dimension
        from squeeze.model.pooling import default_pooling, write_sentence_files

        if pooling is None:
            pooling = default_pooling(is_decoder(config, find_spec(config)))
        write_sentence_files(out, pooling, embedding_dimension(config))
    return out


# Random-weight BERT shapes for speed benchmarks: the shape decides the speed, not the values.
BERT_SHAPES = {
    "bert-base": {},  # BertConfig's defaults: 12 layers, hidden 768, 12 heads, FFN 3072
    "minilm": {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536},
    # For benchmark scripts' quick mode: their code paths in seconds, figures meaningless.
    "tiny": {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "intermediate_size": 128,
    },
}


def build_bert_shaped(shape: str, out: str | Path) -> Path:
    """A two-label BERT classifier of a named shape with random (seeded) weights, built once."""
    import transformers

    out = Path(out)
    if not (out / "config.json").exists():
        config = transformers.BertConfig(num_labels=2, **BERT_SHAPES[shape])
        build_tiny("bert", out, config=config)
    return out


def order_task(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (sentence, label) pairs of the order task, balanced in expectation."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices(FILLER_WORDS, k=rng.randint(6, 14))
        i, j = sorted(rng.sample(range(len(words) + 2), 2))
        first, second = ("a", "b") if rng.random() < 0.5 else ("b", "a")
        words.insert(i, first)
        words.insert(j, second)
        rows.append((" ".join(words), ORDER_LABELS[first == "a"]))
    return rows


def vote_task(n: int, *, seed: int = 0, task_seed: int = 0) -> list[tuple[str, str]]:
    """``n`` sentences labelled "1" when their words' fixed weights (drawn from ``task_seed``)
    sum above zero, else "0"; about balanced."""
    weights_rng = random.Random(task_seed)
    raw = [weights_rng.uniform(-1, 1) for _ in FILLER_WORDS]
    mean = sum(raw) / len(raw)
    weight = {word: w - mean for word, w in zip(FILLER_WORDS, raw, strict=True)}
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    while len(rows) < n:
        words = rng.choices(FILLER_WORDS, k=rng.randint(7, 13))
        score = sum(weight[word] for word in words)
        if score != 0:
            rows.append((" ".join(words), str(int(score > 0))))
    return rows


def flip_labels(
    rows: list[tuple[str, str]], share: float, *, seed: int = 0
) -> list[tuple[str, str]]:
    """Flip that share of binary ("0"/"1") labels at random: noisy supervision."""
    rng = random.Random(seed)
    return [(text, str(1 - int(label)) if rng.random() < share else label) for text, label in rows]


def markov_sentences(n: int, *, seed: int = 0, chain_seed: int = 0) -> list[str]:
    """``n`` sentences of 8-16 words from a first-order Markov chain (drawn from ``chain_seed``)
    in which every word has four possible successors with unequal weights."""
    chain_rng = random.Random(chain_seed)
    chain = {
        word: (chain_rng.sample(FILLER_WORDS, 4), [chain_rng.random() + 0.1 for _ in range(4)])
        for word in FILLER_WORDS
    }
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        word = rng.choice(FILLER_WORDS)
        words = [word]
        for _ in range(rng.randint(8, 16) - 1):
            successors, weights = chain[word]
            word = rng.choices(successors, weights)[0]
            words.append(word)
        sentences.append(" ".join(words))
    return sentences


def write_rows(path: str | Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    """Write rows as a CSV with a header."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_order_task(path: str | Path, n: int, *, seed: int = 0) -> Path:
    """Write the order task as a CSV with ``text`` and ``label`` columns."""
    return write_rows(path, order_task(n, seed=seed), ("text", "label"))


def latency_of(p50_ms: float, min_ms: float, max_ms: float) -> Latency:
    """A made-up CPU latency record with this median and spread (report and gate tests)."""
    return Latency.from_samples(
        [min_ms, p50_ms, p50_ms, p50_ms, max_ms], batch=1, seq_len=16, threads=1, device="cpu",
        runtime="torch",
    )  # fmt: skip
