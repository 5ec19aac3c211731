"""Encoding and batching: examples -> token ids -> padded numpy batches, length-grouped.

Kept apart from reading (``squeeze.data.readers``) and from columns and labels
(``squeeze.data.examples``): training, evaluation and calibration all batch through here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from squeeze.core.errors import ConfigError, DataError, Problem
from squeeze.data.examples import Dataset, Example, label_ids, load_dataset
from squeeze.data.spec import DataSpec


@dataclass(frozen=True)
class Encoded:
    """Token ids of every example, unpadded: batches pad each to its own longest sequence."""

    features: dict[str, list[list[int]]]
    labels: np.ndarray | None
    pad_token_id: int
    n_truncated: int
    # Embedders only: the second text of each pair, encoded on its own (each side is embedded
    # alone), and the pairs' gold similarity scores (STS data).
    pairs: Encoded | None = None
    targets: np.ndarray | None = None
    corpus: Encoded | None = None  # a retrieval folder's documents (besides the positives)

    def __len__(self) -> int:
        return len(self.features["input_ids"])


@dataclass(frozen=True)
class Batch:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    index: np.ndarray | None = None  # each row's position in the encoded set

    @property
    def size(self) -> int:
        return int(self.inputs["input_ids"].shape[0])


def encode(
    dataset: Dataset,
    tokenizer: Any,
    *,
    input_names: Sequence[str],
    max_length: int = 128,
    label2id: Mapping[str, int] | None = None,
) -> Encoded:
    """Tokenize every example once, keeping only the inputs the model's forward accepts.

    Raises:
        DataError: no examples, no ``input_ids``, a tokenizer without pad or eos token, or labels
            the model does not know.
    """
    if not dataset.examples:
        raise DataError(f"{dataset.name} holds no examples to encode")
    if max_length < 2:
        raise ConfigError(Problem(f"{{max_length}} must be at least 2, not {max_length}"))
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = tokenizer.eos_token_id
    if pad_token_id is None:
        raise DataError(
            "the tokenizer has neither a pad nor an eos token, so batches cannot be padded"
        )
    texts = [e.text for e in dataset.examples]
    pairs = [e.text_pair or "" for e in dataset.examples] if dataset.text_pair_column else None
    options = {
        "return_token_type_ids": "token_type_ids" in input_names,
        "return_attention_mask": "attention_mask" in input_names,
    }
    # One untruncated pass gives the true lengths; only the few long examples are tokenized again
    # with truncation, which keeps the special tokens and the pair strategy the tokenizer's own.
    full = tokenizer(texts, pairs, truncation=False, verbose=False, **options)
    features = {k: [list(ids) for ids in full[k]] for k in input_names if k in full}
    if "input_ids" not in features:
        raise DataError(
            f"the tokenizer gave no input_ids for inputs {', '.join(input_names)}; "
            "squeeze needs a text tokenizer"
        )
    long = [i for i, ids in enumerate(features["input_ids"]) if len(ids) > max_length]
    if long:
        cut = tokenizer(
            [texts[i] for i in long],
            [pairs[i] for i in long] if pairs is not None else None,
            truncation=True,
            max_length=max_length,
            **options,
        )
        for key, sequences in features.items():
            for j, i in enumerate(long):
                sequences[i] = list(cut[key][j])
    labels = label_ids(dataset, label2id) if label2id is not None else None
    return Encoded(features, labels, int(pad_token_id), len(long))


def encode_sentences(
    dataset: Dataset, model: Any, *, max_length: int, labels: bool = True
) -> Encoded:
    """Encode for an embedder: each text alone (with the model's default prompt), the second
    text of a pair alone too, since each side is embedded on its own.

    What the data holds decides what is scored (:mod:`squeeze.measure.embedding`): pairs with
    numeric scores are STS targets, pairs without them are queries and their positives, and
    single texts with labels are classes for k-nearest-neighbour accuracy. ``labels`` False
    (calibration, distillation text) reads none of them.
    """
    prompt = model.pooling.prompt
    names = model.input_names

    def alone(texts: list[str], name: str) -> Encoded:
        examples = tuple(Example(prompt + text) for text in texts)
        single = replace(dataset, examples=examples, name=name, text_pair_column=None)
        return encode(single, model.tokenizer, input_names=names, max_length=max_length)

    first = alone([e.text for e in dataset.examples], dataset.name)
    pairs = targets = ids = corpus = None
    if dataset.text_pair_column is not None:
        pairs = alone([e.text_pair or "" for e in dataset.examples], f"{dataset.name} pairs")
    if dataset.corpus and labels:
        corpus = alone(list(dataset.corpus), f"{dataset.name} corpus")
    if labels and dataset.label_column is not None:
        if pairs is not None:
            targets = _numbers(dataset)
        else:
            ids = label_ids(dataset, {name: i for i, name in enumerate(dataset.labels())})
    if not labels:
        pairs = None
    return replace(first, labels=ids, pairs=pairs, targets=targets, corpus=corpus)


def _numbers(dataset: Dataset) -> np.ndarray:
    """Pairs' gold scores as numbers (STS: 0-5 similarity).

    Raises:
        DataError: a score that is not a number.
    """
    try:
        return np.array([float(e.label or "") for e in dataset.examples], dtype=np.float64)
    except ValueError:
        raise DataError(
            Problem(
                f"{dataset.name}: column '{dataset.label_column}' holds labels, not similarity "
                "scores; embedder pairs take numbers (STS), or no {label_column} (retrieval: "
                "each text and its positive)"
            )
        ) from None


# Tokens per example when the user names no length and the model holds more (or has no table).
DEFAULT_MAX_LENGTH = 128


def default_length(limit: int | None) -> int:
    """The length used when none is given: :data:`DEFAULT_MAX_LENGTH`, or the model's position
    table where that is shorter, so a default never asks more than the model holds."""
    return DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)


def fit_length(model: Any, max_length: int) -> tuple[int, str | None]:
    """``max_length`` cut to the model's position table (``model.max_tokens``), with the note
    that says so: a longer text would crash inside the model with a tensor-size error.

    A max length is an upper bound on every example, so cutting it to the table keeps its
    meaning; a timed sequence length is an exact shape, and a too-long one is refused instead
    (:func:`plan_length_problems`, ``squeeze.measure.bench``).
    """
    limit = model.max_tokens
    if limit is None or max_length <= limit:
        return max_length, None
    note = (
        f"max_length {max_length} is longer than the model's {limit} positions; inputs were "
        f"truncated to {limit} tokens"
    )
    return limit, note


def encode_for(
    model: Any, spec: DataSpec, *, max_length: int, labels: bool = True
) -> tuple[Encoded, Dataset]:
    """Load ``spec`` and encode it for a model (a ``LoadedModel`` or an export's ``Scorable``:
    anything with ``task``, ``tokenizer``, ``input_names`` and ``label2id``).

    Labels are required and mapped for classifiers only, and not read at all with ``labels``
    False (calibration text: a score column need not match the model's labels). Returns the
    encoded examples and the dataset they came from (its name and notes go into reports).

    A ``max_length`` beyond the model's position table (``model.max_tokens``) would crash inside
    the model on a long text; inputs are truncated to the table instead, with a note.
    """
    dataset = load_dataset(spec, need_labels=labels and model.label2id is not None)
    return encode_dataset(model, dataset, max_length=max_length, labels=labels)


def encode_dataset(
    model: Any, dataset: Dataset, *, max_length: int, labels: bool = True
) -> tuple[Encoded, Dataset]:
    """Encode loaded examples for a model, as :func:`encode_for` does a data spec (squeeze's
    built-in calibration text is examples, not a file a user names)."""
    label2id = model.label2id if labels else None
    max_length, note = fit_length(model, max_length)
    if note:
        dataset = replace(dataset, notes=(*dataset.notes, note))
    if getattr(model, "pooling", None) is not None:
        return encode_sentences(dataset, model, max_length=max_length, labels=labels), dataset
    encoded = encode(
        dataset,
        model.tokenizer,
        input_names=model.input_names,
        max_length=max_length,
        label2id=label2id,
    )
    return encoded, dataset


# Length grouping sorts within pools of this many batches (the Hugging Face Trainer's
# ``group_by_length`` uses 50): batches stay random, but padding mostly disappears.
LENGTH_POOL = 50


def batches(
    encoded: Encoded,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    pad_to: int | None = None,
    start: int = 0,
    step: int = 1,
    by_length: bool = False,
) -> Iterator[Batch]:
    """Yield right-padded batches, each only as long as its own longest sequence.

    ``by_length`` puts sequences of similar length together, so less of every batch is padding:
    real text varies from a few tokens to the maximum, and a random batch pads all of it to its
    longest (the demo data: median 26 tokens, batches padded to about 50). Shuffled, it sorts
    within random pools of :data:`LENGTH_POOL` batches and then shuffles the batches; unshuffled
    (evaluation), it sorts everything, longest first, so memory runs out at once if it will.
    ``pad_to`` pads every batch to at least that length (calibration needs equal shapes).
    ``start`` and ``step`` pick batches ``start, start + step, ...`` of the epoch without padding
    the others: a resumed run skips what it has done, and each of several processes takes its
    share.

    Raises:
        ConfigError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    for index in _batch_indices(encoded, batch_size, shuffle, seed, by_length)[start::step]:
        inputs = {
            key: _pad(
                [sequences[i] for i in index],
                encoded.pad_token_id if key == "input_ids" else 0,
                pad_to,
            )
            for key, sequences in encoded.features.items()
        }
        labels = encoded.labels[index] if encoded.labels is not None else None
        yield Batch(inputs, labels, index)


def _batch_indices(
    encoded: Encoded, batch_size: int, shuffle: bool, seed: int, by_length: bool
) -> list[np.ndarray]:
    n = len(encoded)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if by_length:
        lengths = np.fromiter(map(len, encoded.features["input_ids"]), dtype=np.int64, count=n)
        # Longest first within each pool (one pool when not shuffling); lexsort is stable.
        pools = np.arange(n) // (batch_size * LENGTH_POOL) if shuffle else np.zeros(n, np.int64)
        order = order[np.lexsort((-lengths[order], pools))]
    groups = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if by_length and shuffle:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    return groups


def _pad(sequences: list[list[int]], value: int, pad_to: int | None = None) -> np.ndarray:
    length = max(max(map(len, sequences)), pad_to or 0)
    out = np.full((len(sequences), length), value, dtype=np.int64)
    for row, ids in enumerate(sequences):
        out[row, : len(ids)] = ids
    return out
