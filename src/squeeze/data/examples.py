"""Columns and labels: a read table -> labelled text examples (``Dataset``), split and sampled.

Every command that scores or trains a model reads data through here, so a CSV, a GLUE TSV, a
JSON Lines dump and a hub dataset all end up as the same ``Example`` records. Labels compare as
strings until they are matched against a model's ``label2id``. Reading is ``squeeze.data.readers``;
encoding and batching ``squeeze.data.encoding``.

A single local file is split into train/validation/test by a hash of each example's text, so the
split never depends on row order and duplicate sentences never straddle two splits.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeeze.core.config import literal
from squeeze.core.errors import DataError, Problem, did_you_mean
from squeeze.data.readers import Table, read_file, read_hub
from squeeze.data.retrieval import is_retrieval_folder, read_retrieval
from squeeze.data.spec import (
    DataSpec,
    _looks_local,
    parse_source,
    score_to_label,
)

TEXT_NAMES = (
    "text",
    "sentence",
    "sentence1",
    "question",
    "question1",
    "premise",
    "anchor",
    "query",
    "review",
    "content",
    "document",
)
# A text column's partner; ``anchor``/``query`` and ``positive`` are sentence-transformers'
# names for retrieval pairs (a query and a text that answers it).
PAIR_PARTNERS = {
    "sentence1": "sentence2",
    "question1": "question2",
    "premise": "hypothesis",
    "anchor": "positive",
    "query": "positive",
}
LABEL_NAMES = ("label", "labels", "target", "class", "sentiment", "score")
_MAX_GUESSED_CLASSES = 20
# Unknown labels this much numeric are scores to map, not classes to rename (a stray "n/a" among
# a thousand scores does not change what the fix is).
_SCORES_SHARE = 0.9


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Loaded examples plus where they came from; ``notes`` go into reports unchanged."""

    examples: tuple[Example, ...]
    name: str
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    notes: tuple[str, ...] = ()
    # Retrieval folders: every document, the judged positives among them (an embedder's query
    # must find its positives among all of these).
    corpus: tuple[str, ...] = ()

    def labels(self) -> list[str]:
        """Distinct labels, numeric ones in numeric order so "2" comes before "10"."""
        return sorted({e.label for e in self.examples if e.label is not None}, key=_label_key)


def load_dataset(spec: DataSpec, *, need_labels: bool = True) -> Dataset:
    """Read ``spec`` into examples, inferring the columns it does not name.

    Args:
        spec: What to read.
        need_labels: Whether a label column must be found (classification); language-model
            evaluation reads text only, and then a missing label column is not an error.

    Raises:
        DataError: missing, empty or malformed data, or columns that cannot be found.
    """
    source, suffix_split = parse_source(spec.source)
    split = spec.split or suffix_split  # the spec checked that they agree, and local splits
    local = spec.format is not None or _looks_local(source)
    if local and is_retrieval_folder(Path(source).expanduser()):
        return _retrieval_dataset(Path(source).expanduser(), split or "test", spec)
    if local:
        path = Path(source).expanduser()
        table = read_file(path, spec)
        name = f"{path.name}[{split}]" if split else path.name
        source_name = path.name
    else:
        split = split or "train"
        table = read_hub(source, split)
        name = source_name = f"{source}[{split}]"

    need = need_labels or spec.label_map is not None
    text_col, pair_col, label_col, notes = _resolve_columns(table, spec, source_name, need)
    if label_col is not None and not any(v.strip() for v in table[label_col]):
        if need:
            raise DataError(
                Problem(
                    f"column '{label_col}' of {source_name} holds no labels (hub test "
                    "splits are often unlabelled: try {split} validation, or name another "
                    "{label_column})"
                )
            )
        label_col = None
    examples, drop_notes = _build_examples(
        table, text_col, pair_col, label_col, spec.label_map, source_name
    )
    notes += drop_notes
    if local and split is not None:
        examples = [e for e in examples if _split_of(e, spec) == split]
    if spec.max_samples is not None and spec.max_samples < len(examples):
        # A seeded random sample, not the first rows: files are often sorted by label (the
        # Pang & Lee reviews list every positive sentence first). File order is kept.
        keep = np.random.default_rng(spec.split_seed).choice(
            len(examples), spec.max_samples, replace=False
        )
        examples = [examples[i] for i in sorted(keep)]
    if not examples:
        raise DataError(
            Problem(
                f"{name} holds no examples; check {{split}} and {{split_ratios}} "
                f"{spec.split_ratios}"
            )
        )
    return Dataset(tuple(examples), name, text_col, pair_col, label_col, tuple(notes))


def _retrieval_dataset(folder: Path, split: str, spec: DataSpec) -> Dataset:
    """A BEIR-style folder's judged pairs of ``split`` as query/positive examples, with its
    corpus (the folder's qrels files are its splits: no hash split)."""
    pairs, corpus = read_retrieval(folder, split)
    examples = [Example(query, positive) for query, positive in pairs]
    if spec.max_samples is not None and spec.max_samples < len(examples):
        keep = np.random.default_rng(spec.split_seed).choice(
            len(examples), spec.max_samples, replace=False
        )
        examples = [examples[i] for i in sorted(keep)]
    name = f"{folder.name}[{split}]"
    return Dataset(tuple(examples), name, "query", "positive", None, corpus=corpus)


def _resolve_columns(
    table: Table, spec: DataSpec, source_name: str, need_labels: bool
) -> tuple[str, str | None, str | None, list[str]]:
    columns = list(table)
    notes: list[str] = []

    def named(column: str | None, field: str) -> str | None:
        if column is not None and column not in table:
            hint = did_you_mean(column, columns)
            listing = literal(f"column '{column}' not in {source_name}{hint}; its columns are: ")
            raise DataError(
                Problem(f"{listing}{literal(', '.join(columns))} (choose one with {{{field}}})")
            )
        return column

    text = named(spec.text_column, "text_column")
    pair = named(spec.text_pair_column, "text_pair_column")
    label = named(spec.label_column, "label_column")
    if text is None:
        candidates = [c for c in columns if c not in (pair, label)]
        text = _first_named(candidates, TEXT_NAMES)
        if text is None:
            if not candidates:
                raise DataError(
                    Problem(f"{source_name} has no column left for text; set {{text_column}}")
                )
            text = max(candidates, key=lambda c: sum(map(len, table[c])) / len(table[c]))
            notes.append(f"guessed text column '{text}' (longest values); set --text-column")
    if pair is None and text.lower() in PAIR_PARTNERS:
        pair = _first_named([c for c in columns if c != label], (PAIR_PARTNERS[text.lower()],))
    if label is None:
        others = [c for c in columns if c not in (text, pair)]
        label = _first_named(others, LABEL_NAMES)
        if label is None and need_labels:
            counts = {c: len(set(table[c])) for c in others}
            fewest = min(others, key=counts.__getitem__, default=None)
            if fewest is None or counts[fewest] > _MAX_GUESSED_CLASSES:
                raise DataError(
                    Problem(
                        f"no label column found in {source_name} (columns: "
                        f"{', '.join(columns)}); choose one with {{label_column}}"
                    )
                )
            label = fewest
            notes.append(
                f"guessed label column '{label}' ({counts[label]} distinct values); "
                "set --label-column"
            )
    return text, pair, label, notes


def _first_named(columns: Sequence[str], names: Sequence[str]) -> str | None:
    by_lower = {c.lower(): c for c in reversed(columns)}
    return next((by_lower[n] for n in names if n in by_lower), None)


def _build_examples(
    table: Table,
    text_col: str,
    pair_col: str | None,
    label_col: str | None,
    label_map: str | None,
    source_name: str,
) -> tuple[list[Example], list[str]]:
    to_label = score_to_label(label_map) if label_map is not None else None
    examples: list[Example] = []
    no_text = no_label = no_sign = 0
    for i, text in enumerate(table[text_col]):
        if not text.strip():
            no_text += 1
            continue
        label = None
        if label_col is not None:
            raw = table[label_col][i]
            if not raw.strip():
                no_label += 1
                continue
            label = raw
            if to_label is not None:
                label = to_label(_score(raw, i, label_col, source_name))
                if label is None:
                    no_sign += 1
                    continue
        pair = table[pair_col][i] if pair_col is not None else None
        examples.append(Example(text, pair, label))
    notes = [
        f"dropped {count} rows of {source_name} {why}"
        for count, why in (
            (no_text, f"with empty text in '{text_col}'"),
            (no_label, f"with no label in '{label_col}'"),
            (no_sign, "with score 0 (no sign)"),
        )
        if count
    ]
    return examples, notes


def _score(raw: str, row: int, column: str, source_name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise DataError(
            Problem(
                f"row {row + 1} of {source_name} has '{raw}' in '{column}', not a number; "
                "{label_map} needs numeric scores"
            )
        )
    return value


def _split_of(example: Example, spec: DataSpec) -> str:
    key = f"{spec.split_seed}\x1f{example.text}\x1f{example.text_pair or ''}"
    u = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64
    r_train, r_val, _ = spec.split_ratios
    if u < r_train:
        return "train"
    return "validation" if u < r_train + r_val else "test"


def _label_key(label: str) -> tuple[int, float, str]:
    try:
        value = float(label)
    except ValueError:
        return (1, 0.0, label)
    return (0, value, label) if math.isfinite(value) else (1, 0.0, label)


def label_ids(dataset: Dataset, label2id: Mapping[str, int]) -> np.ndarray:
    """Map each example's label to a model's class id.

    Names match exactly, then case-insensitively, then an integer label ``i`` matches id ``i``,
    so data labelled 0/1 works with a model whose labels are LABEL_0/LABEL_1 or named ones.

    Raises:
        DataError: the dataset has no labels, or labels the model does not know (all listed).
    """
    if dataset.label_column is None or any(e.label is None for e in dataset.examples):
        raise DataError(
            Problem(f"{dataset.name} has no label column; name one with {{label_column}}")
        )
    mapping: dict[str, int] = {}
    unknown: list[str] = []
    for label in dataset.labels():
        index = _match_label(label, label2id)
        if index is None:
            unknown.append(label)
        else:
            mapping[label] = index
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        model_labels = ", ".join(sorted(label2id, key=label2id.__getitem__))
        listed = literal(
            f"labels not known to the model: {', '.join(map(repr, unknown[:5]))}{more} "
            f"(model labels: {model_labels})"
        )
        if _numbers_share(unknown) >= _SCORES_SHARE:
            # Scores (sentiment in [-4, 4], star ratings) rather than class names.
            fix = "; they are numeric scores: map them to labels with {label_map=sign} (or "
            raise DataError(Problem(listed + fix + "threshold:X)"))
        raise DataError(Problem(listed + "; relabel the data or fine-tune on it"))
    return np.array([mapping[e.label] for e in dataset.examples], dtype=np.int64)


def _numbers_share(labels: Sequence[str]) -> float:
    """The share of ``labels`` that read as finite numbers."""
    return sum(_label_key(label)[0] == 0 for label in labels) / max(len(labels), 1)


def _match_label(label: str, label2id: Mapping[str, int]) -> int | None:
    if label in label2id:
        return int(label2id[label])
    folded = {int(i) for name, i in label2id.items() if name.lower() == label.lower()}
    if len(folded) == 1:
        return folded.pop()
    if re.fullmatch(r"-?\d+", label) and int(label) in {int(i) for i in label2id.values()}:
        return int(label)
    return None
