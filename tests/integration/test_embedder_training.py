"""Pruning, students, early-bird tickets and fine-tuning on sentence embedders, as a user runs
them: every method on every tiny embedder family keeps an embedder (its pooling and
sentence-transformers files) and reports its fidelity; recovery and distillation really pull the
embeddings back toward the original's on unlabelled text; contrastive fine-tuning on pairs
really teaches retrieval; and what cannot work is refused in one line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.types import Task
from squeeze.model.checkpoint import load
from squeeze.model.tiny import FAMILIES, FILLER_WORDS, order_task, write_order_task, write_rows

runner = CliRunner()
COMMON = ("--max-length", "32", "--quiet")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, (result.stderr, result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three small files: labelled sentences (kNN accuracy), the same kind of sentences with
    no label column (recovery and students need text alone), and pairs of a query and its
    positive (contrastive fine-tuning)."""
    root = tmp_path_factory.mktemp("embedder-data")
    texts = order_task(600, seed=2)
    return {
        "labelled": write_order_task(root / "labelled.csv", 600, seed=1),
        "texts": write_rows(root / "texts.csv", [(t,) for t, _ in texts], ("text",)),
        "pairs": write_pairs(root / "pairs.csv", 1500),
    }


def write_pairs(path, n: int):
    """A pair task an untrained model cannot do and a trained one can: the positive of a query
    is its words each replaced by a fixed partner word (a seeded permutation of the vocabulary),
    in another order, so it shares no word with its query."""
    partners = list(FILLER_WORDS)
    random.Random(1).shuffle(partners)
    partner = dict(zip(FILLER_WORDS, partners, strict=True))
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        words = rng.choices(FILLER_WORDS, k=rng.randint(5, 9))
        positive = [partner[w] for w in words]
        rng.shuffle(positive)
        rows.append((" ".join(words), " ".join(positive)))
    return write_rows(path, rows, ("query", "positive"))


PAIRS = ("--text-column", "query", "--text-pair-column", "positive")

# Each compressing command, as a user types it on an embedder and labelled text (few steps).
COMPRESS = {
    "magnitude": ("prune", "--method", "magnitude", "--sparsity", "0.5", "--finetune-steps", "3"),
    "structured": ("prune", "--method", "structured", "--heads", "0.5", "--ffn", "0.5",
                   "--finetune-steps", "3"),  # taylor importance: the data is given
    "student": ("distill", "--student-layers", "1", "--max-steps", "3", "--no-bench"),
}  # fmt: skip


def _assert_embedder_like(out, source):
    """``out`` is an embedder that pools as ``source`` does, with its sentence files."""
    original, written = load(source), load(out)
    assert written.task is Task.EMBEDDING
    assert written.pooling == original.pooling
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    return original, written


@pytest.mark.parametrize("method", COMPRESS)
@pytest.mark.parametrize("family", FAMILIES)
def test_compression_keeps_an_embedder_and_reports_fidelity(
    family, method, tiny_embedders, data, tmp_path
):
    command, *options = COMPRESS[method]
    out = tmp_path / "out"
    summary = run_json(command, tiny_embedders[family], *options, "-d", data["labelled"],
                       "-o", out, *COMMON)  # fmt: skip
    before, after = summary["metric_before"]["metrics"], summary["metric_after"]["metrics"]
    assert set(after) >= {"knn_accuracy", "fidelity", "sim_spearman", "top10_overlap"}
    assert "knn_accuracy" in before and 0.5 < after["fidelity"] <= 1.0 + 1e-5
    assert summary["written"]
    _assert_embedder_like(out, tiny_embedders[family])
    if method != "magnitude":
        assert summary["after"]["params_total"] < summary["before"]["params_total"]
    notes = " ".join(summary["notes"])
    if method != "student":
        assert "recovery by distillation from the unpruned embeddings (cosine): 3 steps" in notes


@pytest.mark.parametrize("family", FAMILIES)
def test_contrastive_finetune_and_its_early_bird_keep_an_embedder(
    family, tiny_embedders, data, tmp_path
):
    tune = ("finetune", tiny_embedders[family], "-d", data["pairs"], *PAIRS, "--batch-size", "8")
    plain = run_json(*tune, "--max-steps", "3", "-o", tmp_path / "ft", *COMMON)
    assert plain["task"] == "embedding" and plain["labels"] is None
    assert plain["train"]["best_eval"]["metrics"]["ndcg@10"] > 0  # validated by retrieval
    _assert_embedder_like(tmp_path / "ft", tiny_embedders[family])

    ticket = ("--early-bird", "heads=0.5,ffn=0.5,every=2,threshold=0.5")
    bird = run_json(*tune, "--max-steps", "6", *ticket, "-o", tmp_path / "bird", *COMMON)
    assert bird["task"] == "embedding" and bird["early_bird"]["drawn_at_step"] > 0
    original, written = _assert_embedder_like(tmp_path / "bird", tiny_embedders[family])
    size = sum(p.numel() for p in written.model.parameters())
    assert size < sum(p.numel() for p in original.model.parameters())


def test_early_bird_recipe_step_on_an_embedder(tiny_embedders, data, tmp_path):
    """The recipe step trains toward the input's own embeddings (text alone, no labels read)
    and the run scores the ticket by fidelity."""
    recipe = tmp_path / "bird.yaml"
    recipe.write_text(
        f"model: {tiny_embedders['gpt2']}\ndata: {data['texts']}\nmax_length: 32\n"
        "bench: {runs: 3}\nvariants:\n  - early_bird(heads=0.5, ffn=0.5, finetune_steps=8, "
        "every=2, threshold=0.5)\n"
    )
    results = run_json("run", recipe, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                       "--quiet")  # fmt: skip
    baseline, ticket = results["variants"]
    assert results["metric_name"] == "fidelity"
    assert 0.5 < ticket["fidelity"] <= 1.0 + 1e-5
    assert ticket["params_total"] < baseline["params_total"]
    assert any("early-bird ticket drawn at step" in note for note in ticket["notes"])
    _assert_embedder_like(Path(ticket["artifact"]), tiny_embedders["gpt2"])


def _fidelity(model, data, out, *options):
    summary = run_json("prune", model, "--method", "structured", "--heads", "0.75", "--ffn",
                       "0.75", "--importance", "magnitude", "-d", data["texts"], "-o", out,
                       *options, *COMMON)  # fmt: skip
    assert summary["metric_after"]["metrics"].keys() == {"fidelity", "sim_spearman",
                                                         "top10_overlap"}  # fmt: skip
    return summary["metric_after"]["metrics"]["fidelity"]


@pytest.mark.parametrize(("loss", "normalize"), [("cosine", True), ("mse", False)])
def test_recovery_pulls_a_pruned_embedder_back_toward_the_original(
    loss, normalize, tiny_embedders, data, tmp_path
):
    """On unlabelled text (no label column at all), recovery makes the pruned model's
    embeddings of held-out text closer to the original's than pruning alone left them: a loss
    that pushed the other way or compared the wrong vectors fails this. (On unit vectors MSE is
    cosine's distance times 2/dim, the same training under Adam; it is tried where it differs,
    on an embedder that does not normalise.)"""
    model = tiny_embedders["gpt2"]
    if not normalize:
        from squeeze.model.pooling import Pooling
        from squeeze.model.tiny import build_tiny

        pooling = Pooling(mode="lasttoken", normalize=False)
        model = build_tiny("gpt2", tmp_path / "raw", task=Task.EMBEDDING, pooling=pooling)
        assert load(model).pooling == pooling
    pruned = _fidelity(model, data, tmp_path / "pruned")
    recovered = _fidelity(model, data, tmp_path / "recovered", "--finetune-steps", "40",
                          "--lr", "1e-3", "--embedding-loss", loss)  # fmt: skip
    assert pruned < 0.99 and recovered > pruned + 0.01, (pruned, recovered)


def test_student_learns_the_teachers_embeddings(tiny_embedders, data, tmp_path):
    summary = run_json("distill", tiny_embedders["gpt2"], "--student-layers", "1", "-d",
                       data["texts"], "--max-steps", "40", "--lr", "1e-3", "--no-bench",
                       "-o", tmp_path / "student", *COMMON)  # fmt: skip
    initial = summary["student_initial"]["metrics"]["fidelity"]
    final = summary["metric_after"]["metrics"]["fidelity"]
    assert final > initial + 0.005, (initial, final)
    # The best step is chosen by fidelity to the teacher on the validation split.
    assert summary["train"]["best_eval"]["metrics"].keys() == {"fidelity", "sim_spearman",
                                                               "top10_overlap"}  # fmt: skip


def test_contrastive_finetune_teaches_retrieval(tiny_embedders, data, tmp_path):
    """Queries find their positives (which share no word with them) far better after
    fine-tuning with in-batch negatives."""
    scored = ("-d", data["pairs"], *PAIRS, "--split", "test", *COMMON)
    before = run_json("eval", tiny_embedders["bert"], *scored)["metrics"]["ndcg@10"]
    out = tmp_path / "tuned"
    run_json("finetune", tiny_embedders["bert"], "-d", data["pairs"], *PAIRS, "--max-steps",
             "60", "--lr", "1e-3", "-o", out, *COMMON)  # fmt: skip
    after = run_json("eval", out, *scored)["metrics"]["ndcg@10"]
    assert before < 0.2 and after > before + 0.4, (before, after)


def test_an_embedder_on_labelled_texts_becomes_a_classifier_and_says_so(
    tiny_embedders, data, tmp_path
):
    """Without pairs and without --task, fine-tuning keeps doing what the demo relies on: a
    classifier on the embedder's encoder, with a note on how to tune the embedder instead."""
    summary = run_json("finetune", tiny_embedders["bert"], "-d", data["labelled"],
                       "--max-steps", "2", "-o", tmp_path / "clf", *COMMON)  # fmt: skip
    assert summary["task"] == "sequence-classification"
    assert any("sentence embedder" in n and "--text-pair-column" in n for n in summary["notes"])


def _scored_pairs(tmp_path):
    rows = [(t, t[::-1], str(i % 5)) for i, (t, _) in enumerate(order_task(60))]
    return write_rows(tmp_path / "sts.csv", rows, ("sentence1", "sentence2", "score"))


def _wide_student(tmp_path):
    from transformers import BertConfig

    from squeeze.model.tiny import build_tiny, tiny_config

    config = tiny_config("bert").to_dict()
    config.update(hidden_size=48, intermediate_size=96)
    return build_tiny("bert", tmp_path / "wide", task=Task.EMBEDDING,
                      config=BertConfig(**config))  # fmt: skip


@pytest.mark.parametrize(
    ("case", "code", "phrase"),
    [
        ("single texts", 3, "an embedder fine-tunes on pairs of a text and its positive: name "
                            "the second column with --text-pair-column"),
        ("scored pairs", 3, "an embedder fine-tunes on pairs of a text and its positive "
                            "without them"),
        ("batch of one", 2, "--batch-size must be at least 2"),
        ("nothing to distil", 2, "an embedder learns from the teacher's embeddings "
                                 "(--kd-weight)"),
        ("other width", 2, "embeds in 48 dimensions, the teacher in 32"),
    ],
)  # fmt: skip
def test_what_cannot_work_is_refused_in_one_line(
    case, code, phrase, tiny_embedders, data, tmp_path
):
    bert = tiny_embedders["bert"]
    out = tmp_path / "out"
    args = {
        "single texts": ("finetune", bert, "-d", data["labelled"], "--task", "embedding"),
        "scored pairs": ("finetune", bert, "-d", _scored_pairs(tmp_path), "--task", "embedding"),
        "batch of one": ("finetune", bert, "-d", data["pairs"], *PAIRS, "--batch-size", "1"),
        "nothing to distil": ("distill", bert, "-d", data["texts"], "--student-layers", "1",
                              "--kd-weight", "0", "--task-weight", "1"),
        "other width": ("distill", bert, "-d", data["texts"], "--student",
                        _wide_student(tmp_path)),
    }[case]  # fmt: skip
    result = invoke(*args, "-o", out, *COMMON)
    assert result.exit_code == code, (result.stderr, result.exception)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and phrase in last, result.stderr
    assert not out.exists()
