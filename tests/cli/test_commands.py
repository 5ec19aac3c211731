"""The commands as a user calls them, through typer's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from squeeze import __version__
from squeeze.cli.main import app
from squeeze.core.types import Task
from squeeze.model.tiny import FAMILIES, LM_TASK

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    assert invoke("--version").stdout.strip() == f"squeeze {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("info", "eval", "finetune"):
        assert command in result.stdout


def test_help_does_not_import_heavy_libraries():
    """`squeeze --help` stays instant because torch and transformers load only inside commands."""
    code = (
        "import sys; from squeeze.cli.main import app; "
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", FAMILIES)
def test_info_json(family, tiny_classifiers):
    result = invoke("info", tiny_classifiers[family], "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["family"] == family and facts["task"] == "sequence-classification"
    assert (facts["layers"], facts["heads"], facts["hidden_size"]) == (2, 4, 32)
    assert facts["labels"] == ["b_first", "a_first"]
    assert 15_000 < facts["params_total"] < 30_000


def test_info_table(tiny_lms):
    result = invoke("info", tiny_lms["gpt2"])
    assert result.exit_code == 0
    for text in ("GPT2LMHeadModel", "causal-lm", "params total", "bytes on disk", "float32"):
        assert text in result.stdout


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_json_every_family(family, tiny_classifiers, order_csv):
    result = invoke(
        "eval", tiny_classifiers[family], "--data", order_csv, "--split", "test", "--json"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == "sequence-classification"
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    assert 250 < report["n_samples"] < 350 and report["samples_per_s"] > 0


@pytest.mark.parametrize("family", [f for f in FAMILIES if LM_TASK[f] is Task.CAUSAL_LM])
def test_eval_causal_lm_perplexity(family, tiny_lms, order_csv):
    result = invoke("eval", tiny_lms[family], "-d", order_csv, "--max-samples", "50", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # An untrained model over a 47-word vocabulary is near uniform: perplexity close to 47.
    assert 20 < report["metrics"]["perplexity"] < 80 and report["n_samples"] == 50


def test_eval_trained_classifier_table(trained_classifier, order_csv):
    result = invoke("eval", trained_classifier, "-d", order_csv, "--split", "test")
    assert result.exit_code == 0
    assert "accuracy" in result.stdout and "macro_f1" in result.stdout
    assert "order.csv[test]" in result.stdout
    accuracy = float(result.stdout.split("accuracy")[1].split()[0])
    assert accuracy >= 0.9


def test_finetune_cli_writes_a_loadable_checkpoint(tiny_lms, order_csv, tmp_path):
    out = tmp_path / "ft"
    args = ("finetune", tiny_lms["distilbert"], "-d", order_csv, "-o", out, "--max-steps", "5")
    result = invoke(*args, "--json", "--max-eval-samples", "40")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["train"]["steps"] == 5 and summary["n_validation"] == 40
    assert summary["labels"] == ["a_first", "b_first"]
    info = json.loads(invoke("info", out, "--json").stdout)
    assert info["task"] == "sequence-classification" and info["architecture"].startswith(
        "DistilBert"
    )

    suffixed = ("finetune", tiny_lms["bert"], "-d", f"{order_csv}:train", "-o", tmp_path / "sfx")
    assert invoke(*suffixed, "--max-steps", "1", "--quiet").exit_code == 0

    again = invoke(*args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert invoke(*args, "--overwrite", "--quiet").exit_code == 0


def test_finetune_plain_transformers_can_load_the_output(tiny_lms, order_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "ft"
    args = ("finetune", tiny_lms["gpt2"], "-d", order_csv, "-o", out, "--max-steps", "2")
    result = invoke(*args, "--task", "sequence-classification")
    assert result.exit_code == 0, result.stderr
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "a_first", 1: "b_first"}


def test_finetune_causal_lm_keeps_its_task(tiny_lms, order_csv, tmp_path):
    out = tmp_path / "lm"
    args = ("finetune", tiny_lms["llama"], "-d", order_csv, "-o", out, "--max-steps", "3")
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["task"] == "causal-lm" and summary["labels"] is None
    assert "perplexity" in summary["train"]["best_eval"]["metrics"]


def test_finetune_warns_about_one_sided_labels(tiny_lms, tmp_path):
    rows = [f"a w{i % 40} b,a_first" for i in range(190)] + [f"b w{i} a,b_first" for i in range(10)]
    data = tmp_path / "skewed.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    args = ("finetune", tiny_lms["bert"], "-d", data, "-o", tmp_path / "o", "--max-steps", "1")
    summary = json.loads(invoke(*args, "--json").stdout)
    assert any("imbalanced: 9" in n and "are 'a_first'" in n for n in summary["notes"])


def test_public_api_names_are_not_submodule_names():
    """Importing squeeze.<submodule> rebinds that attribute, so a re-exported function named
    like a submodule (squeeze.methods.finetune once) would turn into a module under the user's
    feet."""
    import pkgutil

    import squeeze

    submodules = {module.name for module in pkgutil.iter_modules(squeeze.__path__)}
    assert not submodules & set(squeeze._API)
    for name in squeeze._API:
        assert getattr(squeeze, name) is not None


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_early_bird_finetune_draws_a_ticket_and_trains_it(family, tiny_lms, order_csv, tmp_path):
    """The ticket is drawn before the budget ends, the model shrinks, and the smaller model
    reloads, scores and exports."""
    out = tmp_path / "bird"
    result = invoke("finetune", tiny_lms[family], "-d", order_csv, "-o", out, "--max-steps", "60",
                    "--lr", "3e-3", "--max-length", "32", "--early-bird",
                    "heads=0.5,ffn=0.5,every=5,threshold=0.2", "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    bird = summary["early_bird"]
    assert 0 < bird["drawn_at_step"] <= 30 and bird["total_steps"] == 60  # by max_search 50%
    assert summary["train"]["steps"] == 60 - bird["drawn_at_step"]
    assert all(c["step"] % 5 == 0 or c["step"] == 30 for c in bird["checks"])
    assert bird["search_s"] > 0 and bird["ticket_train_s"] > 0
    drawn = f"early-bird ticket drawn at step {bird['drawn_at_step']} of 60"
    assert any(note.startswith(drawn) for note in summary["notes"])
    info = json.loads(invoke("info", out, "--json").stdout)
    base = json.loads(invoke("info", tiny_lms[family], "--json").stdout)
    assert info["intermediate_size"] == base["intermediate_size"] // 2  # the ticket's FFN
    scored = invoke("eval", out, "-d", order_csv, "--max-length", "32", "--json")
    assert scored.exit_code == 0, scored.stderr
    exported = invoke("export", out, "-o", tmp_path / "onnx", "--json")
    assert exported.exit_code == 0, exported.stderr


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ("heads=0.5,speed=2", "unknown parameter 'speed'"),
        ("heads", "takes key=value pairs"),
        ("threshold=0.1", "--early-bird: an early-bird ticket needs heads or ffn"),
        ("heads=1.5", "--early-bird: heads must be in [0, 1)"),
    ],
)
def test_bad_early_bird_specs(spec, phrase, tiny_lms, order_csv, tmp_path):
    result = invoke("finetune", tiny_lms["bert"], "-d", order_csv, "-o", tmp_path / "x",
                    "--early-bird", spec)  # fmt: skip
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_early_bird_as_a_recipe_step(trained_classifier, order_csv, tmp_path):
    recipe = tmp_path / "bird.yaml"
    recipe.write_text(
        f"model: {trained_classifier}\ndata: {order_csv}\nmax_length: 32\nbench: {{runs: 3}}\n"
        "variants:\n  - early_bird(heads=0.5, ffn=0.5, finetune_steps=40, every=5, "
        "threshold=0.2) -> quantize(int8)\n"
    )
    result = invoke("run", recipe, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                    "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    variant = json.loads(result.stdout)["variants"][1]
    assert variant["params_total"] < json.loads(result.stdout)["variants"][0]["params_total"]
    assert any("early-bird ticket drawn at step" in note for note in variant["notes"])
    missing = recipe.with_name("bad.yaml")
    missing.write_text(f"model: {trained_classifier}\ndata: {order_csv}\n"
                       "variants: [early_bird(heads=0.5)]\n")  # fmt: skip
    bad = invoke("run", missing, "-o", tmp_path / "bad")
    assert bad.exit_code == 2 and "early_bird() needs finetune_steps" in bad.stderr
