"""Embedders from the command line, as a user calls them: info, eval (task metric and fidelity),
the fidelity gate, and each refusal with its exit code before any work."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.core.types import Task
from squeeze.model.tiny import build_tiny

runner = CliRunner()
WORDS = ["a b", "b a", "a a b", "b b a", "a b b", "b a a", "a a a b", "b b b a"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("embed-data") / "texts.tsv"
    rows = [f"{w} {i}\t{w[0]}" for i in range(40) for w in WORDS]
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    return path


def test_info_names_the_task_and_pooling(tiny_embedders):
    for family, mode in (("bert", "mean"), ("gpt2", "lasttoken")):
        facts = json.loads(invoke("info", tiny_embedders[family], "--json").stdout)
        assert facts["task"] == "embedding" and facts["pooling"].startswith(f"{mode} pooling")
        assert facts["architecture"].endswith("Model")


def test_eval_reports_knn_accuracy_and_fidelity_to_a_reference(tiny_embedders, labelled, tmp_path):
    other = build_tiny("bert", tmp_path / "other", task=Task.EMBEDDING, seed=3)
    result = invoke(
        "eval", other, "--data", labelled, "--reference", tiny_embedders["bert"], "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert 0 <= metrics["knn_accuracy"] <= 1 and metrics["fidelity"] < 0.99
    assert set(metrics) >= {"sim_spearman", "top10_overlap"}


def test_task_embedding_pools_a_plain_checkpoint_as_asked(tiny_lms, labelled):
    mean = invoke("eval", tiny_lms["bert"], "--data", labelled, "--task", "embedding", "--json")
    cls = invoke(
        "eval", tiny_lms["bert"], "--data", labelled, "--task", "embedding",
        "--pooling", "cls", "--json",
    )  # fmt: skip
    assert mean.exit_code == cls.exit_code == 0, mean.output + cls.output
    pooling = [json.loads(r.stdout)["pooling"] for r in (mean, cls)]
    assert pooling == ["mean pooling, normalised", "cls pooling, normalised"]


@pytest.mark.parametrize(("floor", "code"), [(1.0, 1), (0.5, 0)])
def test_the_fidelity_gate_decides_what_is_written(tiny_embedders, labelled, tmp_path, floor, code):
    out = tmp_path / "pruned"
    result = invoke(
        "prune", tiny_embedders["bert"], "--method", "magnitude", "--sparsity", "0.9",
        "--data", labelled, "-o", out, "--min-fidelity", floor, "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == code, result.output
    summary = json.loads(result.stdout)
    assert summary["gate_verdicts"]["min_fidelity"] == ("failed" if code else "passed")
    assert summary["metric_after"]["metrics"]["fidelity"] < 1.0
    assert out.exists() is (code == 0)
    if code:
        assert "below --min-fidelity 1" in result.output


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--min-fidelity", "0.9"), 2, "--min-fidelity needs --data"),
        (("--data", "DATA", "--min-fidelity", "0.9", "-m", "CLASSIFIER"), 4, "judges an embedder"),
    ],
)
def test_a_fidelity_gate_that_cannot_be_judged_is_refused(
    tiny_embedders, tiny_classifiers, labelled, tmp_path, args, code, words
):
    model = tiny_embedders["bert"]
    args = [str(labelled) if a == "DATA" else a for a in args]
    if "-m" in args:
        model = tiny_classifiers["bert"]
        args = args[:-2]
    out = tmp_path / "out"
    result = invoke("quantize", model, "-o", out, *args)
    assert result.exit_code == code, result.output
    assert words in result.output and not out.exists()


def test_a_reference_for_a_classifier_is_refused(tiny_classifiers, labelled):
    result = invoke(
        "eval", tiny_classifiers["bert"], "--data", labelled, "--reference",
        tiny_classifiers["bert"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--reference is for embedders" in result.output


def test_a_missing_reference_is_refused_before_loading(tiny_embedders, labelled, tmp_path):
    result = invoke(
        "eval", tiny_embedders["bert"], "--data", labelled, "--reference", tmp_path / "nope"
    )
    assert result.exit_code == 3 and "no such checkpoint folder" in result.output


def test_a_dense_module_is_refused_with_what_squeeze_runs(tiny_embedders, tmp_path):
    folder = tmp_path / "dense"
    shutil.copytree(tiny_embedders["bert"], folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    result = invoke("quantize", folder, "-o", tmp_path / "out")
    assert result.exit_code == 4 and "Dense" in result.output
