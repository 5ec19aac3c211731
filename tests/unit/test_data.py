"""squeeze.data.examples: every file format, column inference, splits, labels, encoding and
batching."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from squeeze.core.errors import ConfigError, DataError
from squeeze.data.encoding import batches, encode
from squeeze.data.examples import Dataset, Example, label_ids, load_dataset
from squeeze.data.spec import SPLITS, DataSpec, is_local, parse_source

ROWS = [
    {"id": "1", "text": "good, really good", "label": "positive"},
    {"id": "2", "text": 'a "bad" film', "label": "negative"},
    {"id": "3", "text": "NA", "label": "negative"},
]
EXPECTED = [
    Example("good, really good", None, "positive"),
    Example('a "bad" film', None, "negative"),
    Example("NA", None, "negative"),
]


def _write_csv(path: Path) -> None:
    path.write_text(
        'id,text,label\n1,"good, really good",positive\n'
        '2,"a ""bad"" film",negative\n3,NA,negative\n',
        encoding="utf-8",
    )


def _write_tsv(path: Path) -> None:
    # BOM, CRLF and an unbalanced stray quote, as in GLUE and Pang & Lee files.
    body = 'id\ttext\tlabel\r\n1\tgood, really good\tpositive\r\n2\ta "bad" film\tnegative\r\n'
    path.write_bytes(("\ufeff" + body + "3\tNA\tnegative\r\n").encode())


def _write_jsonl(path: Path) -> None:
    records = [{**row, "id": int(row["id"])} for row in ROWS]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")


def _write_parquet(path: Path) -> None:
    columns = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    columns["id"] = [int(v) for v in columns["id"]]
    pq.write_table(pa.table(columns), path)


WRITERS: dict[str, Callable[[Path], None]] = {
    "csv": _write_csv,
    "tsv": _write_tsv,
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
}


@pytest.mark.parametrize(
    ("filename", "writer", "fmt"),
    [
        ("reviews.csv", "csv", None),
        ("reviews.tsv", "tsv", None),
        ("reviews.jsonl", "jsonl", None),
        ("reviews.json", "jsonl", None),
        ("reviews.parquet", "parquet", None),
        ("reviews.txt", "tsv", None),
        ("reviews.data", "csv", "csv"),
    ],
)
def test_every_format_reads_the_same_examples(
    tmp_path: Path, filename: str, writer: str, fmt: str | None
) -> None:
    path = tmp_path / filename
    WRITERS[writer](path)
    ds = load_dataset(DataSpec(str(path), format=fmt))
    assert list(ds.examples) == EXPECTED
    assert (ds.name, ds.text_column, ds.label_column) == (filename, "text", "label")
    assert ds.labels() == ["negative", "positive"]
    assert ds.notes == ()


def test_jsonl_and_parquet_ints_stay_ints(tmp_path: Path) -> None:
    for name in ("a.jsonl", "a.parquet"):
        WRITERS[name.split(".")[1]](tmp_path / name)
        ds = load_dataset(DataSpec(str(tmp_path / name), text_column="id"))
        assert [e.text for e in ds.examples] == ["1", "2", "3"]


def test_headerless_tsv_with_explicit_columns(tmp_path: Path) -> None:
    path = tmp_path / "snippets.txt"
    path.write_text(
        '1\t2.26\tThe Rock is destined to be great\n2\t-1.5\tA dull "mess\n3\t0\tIt is a film\n'
    )
    spec = DataSpec(str(path), header=False, text_column="2", label_column="1", label_map="sign")
    ds = load_dataset(spec)
    assert [(e.text, e.label) for e in ds.examples] == [
        ("The Rock is destined to be great", "positive"),
        ('A dull "mess', "negative"),
    ]
    assert ds.notes == ("dropped 1 rows of snippets.txt with score 0 (no sign)",)
    threshold = load_dataset(replace(spec, label_map="threshold:0"))
    assert [e.label for e in threshold.examples] == ["positive", "negative", "positive"]


@pytest.mark.parametrize(
    ("header", "rows", "expected", "need_labels"),
    [
        ("Sentence1,Sentence2,Label", "a b,c d,1", ("Sentence1", "Sentence2", "Label"), True),
        ("premise,hypothesis,gold", "a b,c d,x", ("premise", "hypothesis", None), False),
        ("question,idx", "what is it,7", ("question", None, None), False),
        # no known names: longest column is the text, fewest distinct values the label
        ("a,b,c", "short,c d but longer,1\nx,more text here,1", ("b", None, "c"), True),
    ],
)
def test_column_inference(
    tmp_path: Path,
    header: str,
    rows: str,
    expected: tuple[str, str | None, str | None],
    need_labels: bool,
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"{header}\n{rows}\n")
    ds = load_dataset(DataSpec(str(path)), need_labels=need_labels)
    assert (ds.text_column, ds.text_pair_column, ds.label_column) == expected
    if expected[1] is not None:
        assert ds.examples[0].text_pair == "c d"
    if expected[2] is None:
        assert ds.examples[0].label is None
        assert ds.labels() == []


def test_guessed_columns_are_noted(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "a,b,c\nshort,a much longer text here,1\nx,another long text,0\ny,more long text,1\n"
    )
    ds = load_dataset(DataSpec(str(path)))
    assert ds.notes == (
        "guessed text column 'b' (longest values); set --text-column",
        "guessed label column 'c' (2 distinct values); set --label-column",
    )


def test_no_label_column_found(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,id\n" + "".join(f"t{i},{i}\n" for i in range(30)))
    with pytest.raises(DataError, match=r"no label column found in data.csv.*label_column"):
        load_dataset(DataSpec(str(path)))
    assert load_dataset(DataSpec(str(path)), need_labels=False).label_column is None


@pytest.mark.parametrize(
    ("option", "flag"),
    [
        ("text_column", "text_column"),
        ("text_pair_column", "text_pair_column"),
        ("label_column", "label_column"),
    ],
)
def test_missing_named_column_lists_columns(tmp_path: Path, option: str, flag: str) -> None:
    _write_csv(tmp_path / "reviews.csv")
    spec = DataSpec(str(tmp_path / "reviews.csv"), **{option: "txt"})
    message = (
        "column 'txt' not in reviews.csv (did you mean 'text'?); its columns are: id, text, "
        f"label (choose one with {flag})"
    )
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.csv", ""), ("header.csv", "text,label\n"), ("blank.jsonl", "\n\n")],
)
def test_file_without_rows(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=rf"^{name} holds no rows$"):
        load_dataset(DataSpec(str(tmp_path / name)))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "a"}\n{oops\n', r"bad.jsonl line 2 is not valid JSON"),
        ("ragged.csv", "text,label\na,1\nb,1,extra\n", r"ragged.csv line 3 has 3 fields"),
        (
            "notes.txt",
            "just words\n",
            r"cannot tell the format of notes.txt.*choose one with format",
        ),
        ("score.csv", "text,score\na,1\nb,high\n", r"row 2 of score.csv has 'high' in 'score'"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(DataSpec(str(tmp_path / name), label_map="sign"))


def test_missing_file_and_empty_text(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^no such file: .*nope.csv$"):
        load_dataset(DataSpec(str(tmp_path / "nope.csv")))
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\na,1\n  ,0\n,1\n")
    ds = load_dataset(DataSpec(str(path)))
    assert [e.text for e in ds.examples] == ["a"]
    assert ds.notes == ("dropped 2 rows of gaps.csv with empty text in 'text'",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split_ratios": (0.5, 0.5, 0.5)},
        {"split_ratios": (1.2, -0.1, -0.1)},
        {"max_samples": 0},
        {"format": "xlsx"},
        {"label_map": "sign:2"},
        {"label_map": "threshold:abc"},
        {"source": ""},
    ],
)
def test_spec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DataSpec(**{"source": "x.csv", **kwargs})  # type: ignore[arg-type]


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.tsv"
    lines = [f"sentence number {i}\t{i % 3}" for i in range(2000)]
    # duplicates must land in the same split
    lines += [f"sentence number {i}\t{i % 3}" for i in range(0, 2000, 100)]
    path.write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    return path


def test_split_is_disjoint_covering_and_close_to_ratios(big_file: Path) -> None:
    parts = {s: load_dataset(DataSpec(str(big_file), split=s)).examples for s in SPLITS}
    texts = {s: [e.text for e in examples] for s, examples in parts.items()}
    sets = {s: set(t) for s, t in texts.items()}
    assert not (sets["train"] & sets["validation"] or sets["train"] & sets["test"])
    assert not sets["validation"] & sets["test"]
    assert sum(len(t) for t in texts.values()) == 2020
    assert len(sets["train"] | sets["validation"] | sets["test"]) == 2000
    for split, ratio in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(texts[split]) / 2020 - ratio) < 0.03
    assert load_dataset(DataSpec(str(big_file), split="test")).name == "big.tsv[test]"


def test_split_ignores_row_order_and_depends_on_seed(big_file: Path, tmp_path: Path) -> None:
    header, *lines = big_file.read_text().splitlines()
    shuffled = tmp_path / "shuffled.tsv"
    order = np.random.default_rng(1).permutation(len(lines))
    shuffled.write_text("\n".join([header, *(lines[i] for i in order)]) + "\n")

    def members(path: Path, seed: int = 0) -> set[str]:
        spec = DataSpec(str(path), split="validation", split_seed=seed)
        return {e.text for e in load_dataset(spec).examples}

    assert members(big_file) == members(shuffled)
    assert members(big_file) != members(big_file, seed=1)


def test_split_suffix_max_samples_and_errors(big_file: Path) -> None:
    train = load_dataset(DataSpec(str(big_file), split="train"))
    head = load_dataset(DataSpec(f"{big_file}:train", max_samples=5))
    assert set(head.examples) <= set(train.examples) and len(head.examples) == 5
    assert head.name == "big.tsv[train]"
    assert len(load_dataset(DataSpec(str(big_file), max_samples=7)).examples) == 7
    with pytest.raises(ConfigError, match="train, validation, test"):
        load_dataset(DataSpec(str(big_file), split="dev"))
    with pytest.raises(ConfigError, match="names split 'test' but split says 'train'"):
        load_dataset(DataSpec(f"{big_file}:test", split="train"))
    with pytest.raises(DataError, match=r"big.tsv\[validation\] holds no examples"):
        load_dataset(DataSpec(str(big_file), split="validation", split_ratios=(0.9, 0, 0.1)))


def test_max_samples_is_a_seeded_sample_not_the_first_rows(tmp_path: Path) -> None:
    """Files sorted by label (like the Pang & Lee reviews) must not give one-class samples."""
    path = tmp_path / "sorted.csv"
    rows = [f"good {i},positive" for i in range(500)] + [f"bad {i},negative" for i in range(500)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    sample = load_dataset(DataSpec(str(path), max_samples=100))
    labels = [e.label for e in sample.examples]
    assert 30 < labels.count("negative") < 70
    assert sample.examples == load_dataset(DataSpec(str(path), max_samples=100)).examples
    texts = [e.text for e in sample.examples]
    assert texts == sorted(texts, key=lambda t: (t.startswith("bad"), int(t.split()[1])))


def test_parse_source_and_is_local(tmp_path: Path) -> None:
    odd = tmp_path / "a:b.csv"
    odd.write_text("text\nx\n")
    (tmp_path / "reviews.tsv").write_text("text\nx\n")
    cases = {
        "glue/sst2:validation": ("glue/sst2", "validation"),
        "imdb": ("imdb", None),
        "imdb:train[:10%]": ("imdb", "train[:10%]"),
        f"{tmp_path}/reviews.tsv:test": (f"{tmp_path}/reviews.tsv", "test"),
        str(odd): (str(odd), None),
    }
    for source, expected in cases.items():
        assert parse_source(source) == expected
    assert is_local(DataSpec(f"{tmp_path}/reviews.tsv:test"))
    assert is_local(DataSpec("data/missing.parquet"))
    assert not is_local(DataSpec("glue/sst2:validation"))


def _labelled(*labels: str | None) -> Dataset:
    examples = tuple(Example(f"t{i}", None, label) for i, label in enumerate(labels))
    has_labels = all(label is not None for label in labels)
    return Dataset(examples, "toy", "text", None, "label" if has_labels else None)


@pytest.mark.parametrize(
    ("labels", "label2id", "expected"),
    [
        (("negative", "positive"), {"negative": 0, "positive": 1}, [0, 1]),
        (("Negative", "POSITIVE"), {"negative": 0, "positive": 1}, [0, 1]),
        (("1", "0", "1"), {"LABEL_0": 0, "LABEL_1": 1}, [1, 0, 1]),
        (("1", "0"), {"neg": 0, "pos": 1}, [1, 0]),
    ],
)
def test_label_ids_matching(
    labels: tuple[str, ...], label2id: dict[str, int], expected: list[int]
) -> None:
    ids = label_ids(_labelled(*labels), label2id)
    assert ids.dtype == np.int64
    assert ids.tolist() == expected


def test_label_ids_errors() -> None:
    with pytest.raises(DataError) as info:
        label_ids(_labelled("neutral", "positive"), {"positive": 1, "negative": 0})
    assert str(info.value) == (
        "labels not known to the model: 'neutral' (model labels: negative, positive); "
        "relabel the data or fine-tune on it"
    )
    with pytest.raises(DataError, match=r"no label column.*label_column"):
        label_ids(_labelled(None, None), {"a": 0})


def test_labels_sort_numerically() -> None:
    assert _labelled("10", "2", "-1", "2").labels() == ["-1", "2", "10"]


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "rock", "is", "good", "bad", "film"]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=8,
    )


def _toy(pairs: bool = False) -> Dataset:
    examples = (
        Example("the rock is good", "good film" if pairs else None, "positive"),
        Example("bad", "the film" if pairs else None, "negative"),
        Example("the film is good good good good good", "bad" if pairs else None, "positive"),
    )
    return Dataset(examples, "toy", "text", "pair" if pairs else None, "label")


@pytest.mark.parametrize(
    ("input_names", "pairs"),
    [
        (("input_ids", "attention_mask"), False),
        (("input_ids", "attention_mask", "token_type_ids"), True),
        (("input_ids",), False),
    ],
)
def test_encode(tokenizer: object, input_names: tuple[str, ...], pairs: bool) -> None:
    encoded = encode(
        _toy(pairs),
        tokenizer,
        input_names=input_names,
        max_length=6,
        label2id={"negative": 0, "positive": 1},
    )
    assert sorted(encoded.features) == sorted(input_names)
    assert len(encoded) == 3
    assert encoded.pad_token_id == 0
    assert encoded.labels is not None and encoded.labels.tolist() == [1, 0, 1]
    ids = encoded.features["input_ids"]
    if pairs:
        assert ids[1] == [2, 8, 3, 4, 9, 3]
        assert encoded.features["token_type_ids"][1] == [0, 0, 0, 1, 1, 1]
        assert encoded.n_truncated == 2
    else:
        assert ids[:2] == [[2, 4, 5, 6, 7, 3], [2, 8, 3]]
        assert ids[2] == [2, 4, 9, 6, 7, 3]
        assert encoded.n_truncated == 1
    assert all(len(seq) <= 6 for seq in ids)


def test_encode_pad_fallback_and_errors(tokenizer: object) -> None:
    assert encode(_toy(), tokenizer, input_names=("input_ids",)).labels is None
    no_pad = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="[SEP]")
    assert encode(_toy(), no_pad, input_names=("input_ids",)).pad_token_id == 3
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer)
    with pytest.raises(DataError, match="neither a pad nor an eos token"):
        encode(_toy(), bare, input_names=("input_ids",))
    with pytest.raises(DataError, match="no input_ids"):
        encode(_toy(), tokenizer, input_names=("attention_mask",))


def test_batches_pad_to_longest_in_batch(tokenizer: object) -> None:
    encoded = encode(
        _toy(),
        tokenizer,
        input_names=("input_ids", "attention_mask"),
        label2id={"negative": 0, "positive": 1},
    )
    first, second = list(batches(encoded, 2))
    assert first.size == 2 and second.size == 1
    assert first.inputs["input_ids"].dtype == np.int64
    np.testing.assert_array_equal(
        first.inputs["input_ids"], [[2, 4, 5, 6, 7, 3], [2, 8, 3, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        first.inputs["attention_mask"], [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    )
    assert first.labels is not None and first.labels.tolist() == [1, 0]
    assert second.inputs["input_ids"].shape == (1, 10)


def test_batches_pad_with_pad_id_and_shuffle_deterministically() -> None:
    from squeeze.data.encoding import Encoded

    features = {"input_ids": [[5] * (i + 1) for i in range(10)]}
    encoded = Encoded(features, np.arange(10, dtype=np.int64), pad_token_id=9, n_truncated=0)
    (whole,) = batches(encoded, 10)
    assert whole.inputs["input_ids"][0].tolist() == [5] + [9] * 9

    def order(seed: int) -> list[int]:
        return [int(x) for b in batches(encoded, 3, shuffle=True, seed=seed) for x in b.labels]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == list(range(10))
    first = next(batches(encoded, 3, shuffle=True, seed=0))
    lengths = (first.inputs["input_ids"] == 5).sum(axis=1)
    assert lengths.tolist() == [int(x) + 1 for x in first.labels]
    with pytest.raises(ConfigError):
        next(batches(encoded, 0))


def test_hub_offline_gives_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    # The environment is read at import; patch the parsed flags in case datasets came first.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = DataSpec("squeeze-no-such-owner/no-such-set:validation")
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert message.startswith(
        "hub dataset 'squeeze-no-such-owner/no-such-set' could not be loaded "
        "(not available offline?): "
    )
    assert "\n" not in message


def test_missing_datasets_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec("glue/sst2:validation"))
    assert str(info.value) == (
        "reading hub dataset 'glue/sst2' needs the optional 'datasets' package: "
        "pip install 'squeeze[datasets]'"
    )


@pytest.mark.parametrize(
    ("source", "expected_call"),
    [
        ("glue/sst2:validation", ("glue", "sst2", "validation")),
        ("imdb", ("imdb", None, "train")),
        ("nyu-mll/glue/sst2:test", ("nyu-mll/glue", "sst2", "test")),
    ],
)
def test_hub_class_labels_become_names(
    monkeypatch: pytest.MonkeyPatch, source: str, expected_call: tuple[str, str | None, str]
) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
            "idx": datasets.Value("int32"),
        }
    )
    table = {"sentence": ["fine", "awful", "unlabelled"], "label": [1, 0, -1], "idx": [0, 1, 2]}
    calls = []

    def fake_load(name: str, config: str | None, *, split: str) -> object:
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(table, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = load_dataset(DataSpec(source))
    assert calls == [expected_call]
    assert [(e.text, e.label) for e in ds.examples] == [("fine", "positive"), ("awful", "negative")]
    assert ds.name == f"{parse_source(source)[0]}[{expected_call[2]}]"
    assert ds.notes == (f"dropped 1 rows of {ds.name} with no label in 'label'",)


def test_hub_unknown_split_gives_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def fake_load(name: str, config: str | None, *, split: str) -> object:
        raise ValueError(f"Unknown split \"{split}\".\nShould be one of ['train', 'test'].")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(DataError) as info:
        load_dataset(DataSpec("imdb", split="validation"))
    assert str(info.value) == (
        "hub dataset 'imdb' could not be loaded: Unknown split \"validation\". "
        "(check the name, config and split)"
    )
