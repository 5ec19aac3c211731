"""Embedders: the sentence-transformers files read and written, pooling, encoding by what the data
holds, and each metric right to the digit on data built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from squeeze.core.errors import DataError, UnsupportedError
from squeeze.core.stats import Scores, paired_drop_interval, spearman
from squeeze.core.types import Task
from squeeze.data.encoding import encode_for
from squeeze.data.spec import DataSpec
from squeeze.measure.embedding import (
    evaluate_embedder,
    fidelity,
    knn_correct,
    retrieval,
    unit,
)
from squeeze.measure.evaluate import evaluate
from squeeze.model.checkpoint import load
from squeeze.model.pooling import Pooling, folder_files, pool, read_pooling, write_sentence_files
from squeeze.model.runtime import torch_forward
from squeeze.model.tiny import build_tiny

ST = "sentence_transformers.models."


def _st_folder(tmp_path, modules, pooling=None, st_config=None, model_config=None):
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    if st_config is not None:
        (tmp_path / "sentence_bert_config.json").write_text(json.dumps(st_config))
    if model_config is not None:
        (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(model_config))
    return folder_files(tmp_path)


def _modules(*kinds):
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2"}
    return [{"idx": i, "path": paths[k], "type": ST + k} for i, k in enumerate(kinds)]


@pytest.mark.parametrize(
    ("key", "mode"),
    [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_lasttoken", "lasttoken"),
    ],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_pooling_is_read_from_the_sentence_transformers_files(tmp_path, key, mode, normalize):
    kinds = ("Transformer", "Pooling", *(("Normalize",) if normalize else ()))
    fetch = _st_folder(
        tmp_path,
        _modules(*kinds),
        pooling={"word_embedding_dimension": 8, key: True},
        st_config={"max_seq_length": 77},
        model_config={"prompts": {"query": "query: "}, "default_prompt_name": "query"},
    )
    pooling = read_pooling(fetch)
    assert pooling is not None and (pooling.mode, pooling.normalize) == (mode, normalize)
    assert pooling.max_seq_length == 77 and pooling.prompt == "query: "


def test_a_plain_checkpoint_has_no_pooling(tmp_path):
    assert read_pooling(folder_files(tmp_path)) is None


@pytest.mark.parametrize(
    ("modules", "pooling", "words"),
    [
        (_modules("Transformer", "Pooling", "Dense"), {"pooling_mode_mean_tokens": True}, "Dense"),
        (
            _modules("Transformer", "Pooling"),
            {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
            "exactly one",
        ),
        (
            _modules("Transformer", "Pooling"),
            {"pooling_mode_weightedmean_tokens": True},
            "exactly one",
        ),
    ],
)
def test_modules_squeeze_cannot_run_are_refused(tmp_path, modules, pooling, words):
    with pytest.raises(UnsupportedError, match=words):
        read_pooling(_st_folder(tmp_path, modules, pooling=pooling))


def test_written_files_read_back_the_same(tmp_path):
    pooling = Pooling(
        mode="cls",
        normalize=False,
        max_seq_length=64,
        prompts={"q": "q: "},
        default_prompt_name="q",
        version={"sentence_transformers": "2.0.0"},
    )
    write_sentence_files(tmp_path, pooling, dimension=16)
    assert read_pooling(folder_files(tmp_path)) == pooling
    config = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert config["word_embedding_dimension"] == 16 and config["pooling_mode_cls_token"]


def test_pooling_reads_real_tokens_only():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    plain = {"normalize": False}
    assert pool(hidden, mask, Pooling("mean", **plain)).tolist() == [[2.0, 1.0]]
    assert pool(hidden, mask, Pooling("max", **plain)).tolist() == [[3.0, 2.0]]
    assert pool(hidden, mask, Pooling("cls", **plain)).tolist() == [[1.0, 0.0]]
    assert pool(hidden, mask, Pooling("lasttoken", **plain)).tolist() == [[3.0, 2.0]]
    normalised = pool(hidden, mask, Pooling("mean"))
    assert torch.linalg.norm(normalised).item() == pytest.approx(1.0)


def test_an_unknown_pooling_is_refused():
    with pytest.raises(UnsupportedError, match="unknown pooling 'sum'"):
        Pooling("sum")


def test_knn_votes_by_the_nearest_other_texts():
    vectors = unit(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]]))
    labels = np.array([0, 0, 1, 1, 1])
    # With k=2 the last text's two nearest others are both class 0: it is wrong.
    assert knn_correct(vectors, labels, k=2).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_retrieval_metrics_by_hand():
    queries = unit(np.array([[1.0, 0.0], [1.0, -0.2]]))
    positives = unit(np.array([[0.5, 1.0], [1.0, 0.1]]))  # query 0's positive ranks second
    found = retrieval(queries, positives, ["q0", "q1"], ["d0", "d1"])
    assert found["mrr@10"].tolist() == [0.5, 1.0]
    assert found["ndcg@10"][0] == pytest.approx(1 / np.log2(3))
    assert found["recall@10"].tolist() == [1.0, 1.0]


def test_spearman_with_ties_matches_its_definition():
    a, b = np.array([1.0, 2.0, 2.0, 4.0]), np.array([10.0, 30.0, 20.0, 40.0])
    # Average ranks: a -> 1, 2.5, 2.5, 4; b -> 1, 3, 2, 4.
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(a, np.ones(4)) == 0.0


def test_a_spearman_drop_has_a_paired_interval():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=200)
    good = Scores("spearman", tuple(gold + rng.normal(scale=0.1, size=200)), tuple(gold))
    worse = Scores("spearman", tuple(gold + rng.normal(scale=1.0, size=200)), tuple(gold))
    low, high = paired_drop_interval(good, worse)
    assert 0 < low < high  # clearly worse: the whole interval is a drop


def test_fidelity_of_a_model_to_itself_is_one_and_falls_with_noise():
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(50, 8)))
    same = {m.name: m.value for m in fidelity(vectors, vectors)}
    assert same == pytest.approx({"fidelity": 1.0, "sim_spearman": 1.0, "top10_overlap": 1.0})
    noisy = unit(vectors + rng.normal(scale=0.3, size=vectors.shape))
    worse = {m.name: m.value for m in fidelity(noisy, vectors)}
    assert all(worse[name] < 0.99 for name in same)


def _write(path, header, rows):
    path.write_text("\n".join(["\t".join(header), *("\t".join(r) for r in rows)]) + "\n")
    return path


@pytest.fixture(scope="module")
def embedder(tiny_embedders):
    return load(tiny_embedders["bert"])


def test_the_data_decides_what_an_embedder_is_scored_on(tmp_path, embedder):
    words = ["a b", "b a", "a a b", "b b a", "a b b", "b a a"] * 4
    labelled = _write(tmp_path / "l.tsv", ["text", "label"], [(w, w[0]) for w in words])
    scored = _write(
        tmp_path / "s.tsv",
        ["sentence1", "sentence2", "score"],
        [(w, w[::-1], str(i % 5)) for i, w in enumerate(words)],
    )
    pairs = _write(tmp_path / "p.tsv", ["sentence1", "sentence2"], [(w, w[::-1]) for w in words])
    names = {}
    for path in (labelled, scored, pairs):
        encoded, _ = encode_for(embedder, DataSpec(str(path)), max_length=16)
        names[path.stem] = [m.name for m in evaluate(embedder, encoded).metrics]
    assert names["l"][0] == "knn_accuracy" and "fidelity" not in names["l"]
    assert names["s"][0] == "spearman"
    assert names["p"][:3] == ["ndcg@10", "mrr@10", "recall@10"]
    unlabelled, _ = encode_for(embedder, DataSpec(str(labelled)), max_length=16, labels=False)
    alone = evaluate(embedder, unlabelled)
    assert alone.primary.name == "fidelity" and alone.primary.value == pytest.approx(1.0)


def test_pairs_labelled_with_classes_are_refused(tmp_path, embedder):
    path = _write(tmp_path / "nli.tsv", ["sentence1", "sentence2", "label"], [("a", "b", "yes")])
    with pytest.raises(DataError, match="not similarity scores"):
        encode_for(embedder, DataSpec(str(path)), max_length=16)


def test_fidelity_is_measured_against_the_reference(tmp_path, embedder, tiny_embedders):
    words = ["a b", "b a", "a a b", "b b a", "a b b", "b a a"] * 4
    path = _write(tmp_path / "u.tsv", ["text"], [(w,) for w in words])
    encoded, _ = encode_for(embedder, DataSpec(str(path)), max_length=16, labels=False)
    reference = evaluate(embedder, encoded)
    other = load(build_tiny("bert", tmp_path / "other", task=Task.EMBEDDING, seed=1))
    forward = torch_forward(other.model, pooling=other.pooling)
    found = evaluate_embedder(forward, encoded, reference=reference)
    assert found.primary.name == "fidelity" and found.primary.value < 0.99
    assert found.scores is not None and found.scores.metric == "fidelity"


def _beir(folder, qrels):
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "t" if i == 0 else "", "text": f"a b {i}"} for i in range(6)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": f"q{i}", "text": f"b a {i}"} for i in range(3)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *("\t".join(map(str, r)) for r in qrels)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_a_beir_folder_reads_its_judged_pairs_and_whole_corpus(tmp_path, embedder):
    from squeeze.data.examples import load_dataset

    folder = _beir(tmp_path / "set", [("q0", "d0", 1), ("q1", "d3", 2), ("q2", "d4", 0)])
    dataset = load_dataset(DataSpec(str(folder), split="test"), need_labels=False)
    assert [(e.text, e.text_pair) for e in dataset.examples] == [
        ("b a 0", "t a b 0"),
        ("b a 1", "a b 3"),
    ]  # the score-0 judgement is not a positive
    assert len(dataset.corpus) == 6
    encoded, _ = encode_for(embedder, DataSpec(str(folder)), max_length=16)
    assert encoded.corpus is not None and len(encoded.corpus) == 6
    assert evaluate(embedder, encoded).primary.name == "ndcg@10"
    with pytest.raises(DataError, match=r"no qrels/dev.tsv for split 'validation'"):
        load_dataset(DataSpec(str(folder), split="validation"), need_labels=False)


def test_a_beir_judgement_of_an_unknown_id_is_refused(tmp_path):
    from squeeze.data.examples import load_dataset

    folder = _beir(tmp_path / "set", [("q0", "d9", 1)])
    with pytest.raises(DataError, match="document 'd9'"):
        load_dataset(DataSpec(str(folder)), need_labels=False)


def test_corpus_documents_compete_with_the_positives():
    queries = unit(np.array([[1.0, 0.0]]))
    positive = unit(np.array([[0.8, 0.6]]))
    distractor = unit(np.array([[1.0, 0.1]]))
    alone = retrieval(queries, positive, ["q"], ["p"])
    crowded = retrieval(queries, positive, ["q"], ["p"], (distractor, ["x"]))
    assert alone["mrr@10"].tolist() == [1.0] and crowded["mrr@10"].tolist() == [0.5]


def test_a_prompt_left_out_of_the_pooling_is_refused(tmp_path):
    fetch = _st_folder(
        tmp_path,
        _modules("Transformer", "Pooling"),
        pooling={"pooling_mode_mean_tokens": True, "include_prompt": False},
        model_config={"prompts": {"q": "q: "}, "default_prompt_name": "q"},
    )
    with pytest.raises(UnsupportedError, match="include_prompt false"):
        read_pooling(fetch)


def test_the_default_prompt_is_prepended_to_every_text(tmp_path, tiny_embedders):
    from dataclasses import replace

    loaded = load(tiny_embedders["bert"])
    path = _write(tmp_path / "t.tsv", ["text"], [("a b",)])
    plain, _ = encode_for(loaded, DataSpec(str(path)), max_length=16)
    loaded.pooling = replace(loaded.pooling, prompts={"q": "b b "}, default_prompt_name="q")
    prompted, _ = encode_for(loaded, DataSpec(str(path)), max_length=16)
    assert len(prompted.features["input_ids"][0]) == len(plain.features["input_ids"][0]) + 2
