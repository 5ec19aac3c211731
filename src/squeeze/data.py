"""Dataset specs -> labelled text examples -> tokenized, padded numpy batches.

Every command that scores or trains a model reads data through here, so a CSV, a GLUE TSV, a
JSON Lines dump and a hub dataset all end up as the same ``Example`` records. Every cell is read
as a string: a review that says "NA" is text, not a missing value, and labels compare as strings
until they are matched against a model's ``label2id``.

A single local file is split into train/validation/test by a hash of each example's text, so the
split never depends on row order and duplicate sentences never straddle two splits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from squeeze.dataspec import (
    _EXTENSIONS,
    FORMATS,
    SPLITS,
    DataSpec,
    _looks_local,
    parse_source,
    score_to_label,
)
from squeeze.errors import ConfigError, DataError

TEXT_NAMES = (
    "text",
    "sentence",
    "sentence1",
    "question",
    "question1",
    "premise",
    "review",
    "content",
    "document",
)
PAIR_PARTNERS = {"sentence1": "sentence2", "question1": "question2", "premise": "hypothesis"}
LABEL_NAMES = ("label", "labels", "target", "class", "sentiment", "score")
_MAX_GUESSED_CLASSES = 20
_Table = dict[str, list[str]]


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

    def labels(self) -> list[str]:
        """Distinct labels, numeric ones in numeric order so "2" comes before "10"."""
        return sorted({e.label for e in self.examples if e.label is not None}, key=_label_key)


@dataclass(frozen=True)
class Encoded:
    """Token ids of every example, unpadded: batches pad each to its own longest sequence."""

    features: dict[str, list[list[int]]]
    labels: np.ndarray | None
    pad_token_id: int
    n_truncated: int

    def __len__(self) -> int:
        return len(self.features["input_ids"])


@dataclass(frozen=True)
class Batch:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None

    @property
    def size(self) -> int:
        return int(self.inputs["input_ids"].shape[0])


def load_dataset(spec: DataSpec, *, need_labels: bool = True) -> Dataset:
    """Read ``spec`` into examples, inferring the columns it does not name.

    Args:
        spec: What to read.
        need_labels: Whether a label column must be found (classification); language-model
            evaluation reads text only, and then a missing label column is not an error.

    Raises:
        DataError: missing, empty or malformed data, or columns that cannot be found.
        ConfigError: a split given twice with different values, or an unknown local split.
    """
    source, suffix_split = parse_source(spec.source)
    if suffix_split is not None and spec.split is not None and suffix_split != spec.split:
        raise ConfigError(
            f"--data '{spec.source}' names split '{suffix_split}' but --split says "
            f"'{spec.split}'; give one of them"
        )
    split = spec.split or suffix_split
    local = spec.format is not None or _looks_local(source)
    if local:
        if split is not None and split not in SPLITS:
            raise ConfigError(
                f"unknown split '{split}' for a local file; choose {', '.join(SPLITS)}"
            )
        path = Path(source).expanduser()
        table = _read_file(path, spec)
        name = f"{path.name}[{split}]" if split else path.name
        source_name = path.name
    else:
        split = split or "train"
        table = _read_hub(source, split)
        name = source_name = f"{source}[{split}]"

    need = need_labels or spec.label_map is not None
    text_col, pair_col, label_col, notes = _resolve_columns(table, spec, source_name, need)
    if label_col is not None and not any(v.strip() for v in table[label_col]):
        if need:
            raise DataError(
                f"column '{label_col}' of {source_name} holds no labels (hub test splits are "
                "often unlabelled: try --split validation, or name another --label-column)"
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
            f"{name} holds no examples; check --split and --split-ratios {spec.split_ratios}"
        )
    return Dataset(tuple(examples), name, text_col, pair_col, label_col, tuple(notes))


def _read_file(path: Path, spec: DataSpec) -> _Table:
    if path.is_dir():
        raise DataError(f"{path} is a folder; give one CSV, TSV, JSON Lines or Parquet file")
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    fmt = spec.format or _format_of(path)
    if fmt == "jsonl":
        table = _read_jsonl(path)
    elif fmt == "parquet":
        table = _read_parquet(path)
    else:
        table = _read_delimited(path, fmt, spec.header)
    if not table or not next(iter(table.values())):
        raise DataError(f"{path.name} holds no rows")
    return table


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".txt":
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            if "\t" in f.readline():
                return "tsv"
    raise DataError(
        f"cannot tell the format of {path.name} from its name; choose one with --format "
        f"({', '.join(FORMATS)})"
    )


def _read_delimited(path: Path, fmt: str, header: bool) -> _Table:
    # GLUE and the Pang & Lee files hold stray quote characters, so TSV never treats quotes as
    # special; CSV keeps standard quoting for commas inside fields.
    options: dict[str, Any] = (
        {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"delimiter": ","}
    )
    rows: list[tuple[int, list[str]]]
    try:
        # utf-8-sig drops a BOM; newline="" lets the csv module handle CRLF and quoted newlines.
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, **options)
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name} is not UTF-8 text ({e.reason}); convert it first") from e
    except csv.Error as e:
        raise DataError(f"{path.name} is not valid {fmt.upper()}: {e}") from e
    if not rows:
        return {}
    if header:
        names, body, what = rows[0][1], rows[1:], "the header has"
        if len(set(names)) != len(names):
            raise DataError(f"{path.name} has repeated column names: {', '.join(names)}")
    else:
        names, body, what = [str(i) for i in range(len(rows[0][1]))], rows, "the first row has"
    for line, row in body:
        if len(row) != len(names):
            raise DataError(
                f"{path.name} line {line} has {len(row)} fields but {what} {len(names)}; "
                "check --format and --no-header"
            )
    return {name: [row[i] for _, row in body] for i, name in enumerate(names)}


def _read_jsonl(path: Path) -> _Table:
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name} is not UTF-8 text ({e.reason}); convert it first") from e
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path.name} line {lineno} is not valid JSON ({e.msg}); JSON Lines files "
                "hold one object per line"
            ) from e
        if not isinstance(record, dict):
            raise DataError(f"{path.name} line {lineno} is not a JSON object")
        records.append(record)
    names = list(dict.fromkeys(key for record in records for key in record))
    return {name: [_cell(record.get(name)) for record in records] for name in names}


def _read_parquet(path: Path) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path.name} is not a readable Parquet file: {_first_line(e)}") from e
    return {name: [_cell(v) for v in table.column(name).to_pylist()] for name in table.column_names}


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _read_hub(source: str, split: str) -> _Table:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"reading hub dataset '{source}' needs the optional 'datasets' package: "
            "pip install 'squeeze[datasets]'"
        ) from e
    parts = source.split("/")
    # "glue/sst2" is a dataset and its config; "owner/name/config" keeps the owner.
    name, config = ("/".join(parts[:-1]), parts[-1]) if len(parts) > 1 else (source, None)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (OSError, datasets.exceptions.DatasetsError) as e:
        raise DataError(
            f"hub dataset '{source}' could not be loaded (not available offline?): {_first_line(e)}"
        ) from e
    except ValueError as e:
        raise DataError(
            f"hub dataset '{source}' could not be loaded: {_first_line(e)} (check the name, "
            "config and --split)"
        ) from e
    table: _Table = {}
    for column in ds.column_names:
        feature = ds.features[column]
        values = list(ds[column])
        if isinstance(feature, datasets.ClassLabel):
            # -1 marks an unlabelled row (GLUE test splits); it must not wrap to the last name.
            table[column] = [feature.names[v] if v is not None and v >= 0 else "" for v in values]
        else:
            table[column] = [_cell(v) for v in values]
    return table


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _resolve_columns(
    table: _Table, spec: DataSpec, source_name: str, need_labels: bool
) -> tuple[str, str | None, str | None, list[str]]:
    columns = list(table)
    notes: list[str] = []

    def named(column: str | None, flag: str) -> str | None:
        if column is not None and column not in table:
            raise DataError(
                f"column '{column}' not in {source_name}; its columns are: "
                f"{', '.join(columns)} (choose one with {flag})"
            )
        return column

    text = named(spec.text_column, "--text-column")
    pair = named(spec.text_pair_column, "--text-pair-column")
    label = named(spec.label_column, "--label-column")
    if text is None:
        candidates = [c for c in columns if c not in (pair, label)]
        text = _first_named(candidates, TEXT_NAMES)
        if text is None:
            if not candidates:
                raise DataError(f"{source_name} has no column left for text; set --text-column")
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
                    f"no label column found in {source_name} (columns: {', '.join(columns)}); "
                    "choose one with --label-column"
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
    table: _Table,
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
            f"row {row + 1} of {source_name} has '{raw}' in '{column}', not a number; "
            "--label-map needs numeric scores"
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
        raise DataError(f"{dataset.name} has no label column; name one with --label-column")
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
        raise DataError(
            f"labels not known to the model: {', '.join(map(repr, unknown[:5]))}{more} "
            f"(model labels: {model_labels}); relabel the data or fine-tune on it"
        )
    return np.array([mapping[e.label] for e in dataset.examples], dtype=np.int64)


def _match_label(label: str, label2id: Mapping[str, int]) -> int | None:
    if label in label2id:
        return int(label2id[label])
    folded = {int(i) for name, i in label2id.items() if name.lower() == label.lower()}
    if len(folded) == 1:
        return folded.pop()
    if re.fullmatch(r"-?\d+", label) and int(label) in {int(i) for i in label2id.values()}:
        return int(label)
    return None


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
        raise ConfigError(f"--max-length must be at least 2, not {max_length}")
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


def encode_for(model: Any, spec: DataSpec, *, max_length: int) -> tuple[Encoded, Dataset]:
    """Load ``spec`` and encode it for a model (a ``LoadedModel`` or an export's ``Scorable``:
    anything with ``task``, ``tokenizer``, ``input_names`` and ``label2id``).

    Labels are required and mapped for classifiers only. Returns the encoded examples and the
    dataset they came from (its name and notes go into reports).
    """
    dataset = load_dataset(spec, need_labels=model.label2id is not None)
    encoded = encode(
        dataset,
        model.tokenizer,
        input_names=model.input_names,
        max_length=max_length,
        label2id=model.label2id,
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
        yield Batch(inputs, labels)


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
