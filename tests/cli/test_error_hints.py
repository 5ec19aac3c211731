"""Errors that name the fix (issue 30): one line, the documented exit code, and the setting or
the nearest valid value to use, in the syntax the user wrote (a flag, a recipe key, a step
parameter). Each case fails before any model loads, so it costs no model and no time."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

runner = CliRunner()
# Never opened: every case below must be refused before the model is touched (else the error
# would be about this path, not the mistake).
NO_MODEL = "/nonexistent/squeeze-model"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _scores(folder: Path) -> Path:
    """Movie-review style data: sentiment scores in [-4, 4], not class names."""
    path = folder / "scores.tsv"
    rows = [f"{i}\t{(i % 17 - 8) / 2.13:.6g}\tthe film was {'good' if i % 2 else 'bad'} {i}"
            for i in range(60)]  # fmt: skip
    path.write_text("id\tlabel\ttext\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", NO_MODEL, "-o", "{out}", "--method", "magnitud"],
         "--method must be one of magnitude, structured, not 'magnitud' (did you mean "
         "'magnitude'?)"),
        (["quantize", NO_MODEL, "-o", "{out}", "--backend", "onnx"],
         "--backend must be one of onnxruntime, torch, bitsandbytes, openvino, auto, not 'onnx' "
         "(did you mean 'onnxruntime'?)"),
        (["quantize", NO_MODEL, "-o", "{out}", "--dtype", "int9"], "(did you mean 'int8'?)"),
        (["quantize", NO_MODEL, "-o", "{out}", "--gate-on", "uper"], "(did you mean 'upper'?)"),
        (["prune", NO_MODEL, "-o", "{out}", "--method", "magnitude", "--sparsity", "0.5",
          "--scope", "globl"], "--scope must be one of global, layer, not 'globl' (did you "
         "mean 'global'?)"),
        (["eval", NO_MODEL, "-d", "{data}", "--task", "Causal-LM"],
         "--task must be one of sequence-classification, causal-lm, masked-lm, base, "
         "embedding, not 'Causal-LM' (did you mean 'causal-lm'?)"),
        (["eval", NO_MODEL, "-d", "{data}", "--format", "jsonn"],
         "--format must be one of csv, tsv, jsonl, parquet, not 'jsonn' (did you mean 'jsonl'?)"),
        (["eval", NO_MODEL, "-d", "{data}", "--pooling", "means"], "(did you mean 'mean'?)"),
    ],
)  # fmt: skip
def test_a_mistyped_choice_names_the_nearest_valid_value(args, message, tmp_path):
    """squeeze's own message for every closed set of values: no pydantic "Value error," from
    typer's check, and the value the user most likely meant."""
    data = _scores(tmp_path)
    filled = [a.format(out=tmp_path / "out", data=data) for a in args]
    line = one_line(invoke(*filled), 2)
    assert message in line and "Value error" not in line


def test_numeric_labels_name_the_label_map(tiny_classifiers, tmp_path):
    """Scores where the model has classes: the fix is --label-map, not relabelling by hand."""
    line = one_line(invoke("eval", tiny_classifiers["bert"], "-d", _scores(tmp_path)), 3)
    assert line.startswith("error: labels not known to the model: '-3.75587', ")
    assert line.endswith("they are numeric scores: map them to labels with --label-map sign "
                         "(or threshold:X)")  # fmt: skip


def test_a_recipe_names_its_own_keys_and_parameters(tiny_classifiers, tmp_path):
    """In a recipe, a problem names what the recipe writes: a step's parameter (never the
    command's --sparsity), the data section's label_map key, the nearest step and parameter."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {tiny_classifiers['bert']}\ndata: {{source: {_scores(tmp_path)}}}\n"
        "variants:\n  - magnitude(sparsity=1.5)\n  - structured(fnn=0.5)\n  - quantise(int8)\n"
    )
    line = one_line(invoke("run", recipe, "-o", tmp_path / "out"), 2)
    for part in (
        "variants[1] step 1 magnitude(): sparsity must be in (0, 1), not 1.5",
        "variants[2] step 1 structured(): unknown parameter 'fnn' (did you mean 'ffn'?)",
        "structured pruning needs heads, ffn, layers, target_speedup or target_latency_ms",
        "variants[3] step 1: unknown step 'quantise' (did you mean 'quantize'?)",
        "data (test part): labels not known to the model",
        "they are numeric scores: map them to labels with label_map: sign (or threshold:X)",
    ):
        assert part in line
    assert " --" not in line, "a recipe's problem named a flag"


def test_a_variant_chain_names_step_parameters(tmp_path):
    result = invoke("run", "--model", NO_MODEL, "--variant", "quantize(int8, onnx)",
                    "-o", tmp_path / "out")  # fmt: skip
    line = one_line(result, 2)
    assert "--variant[1] step 1 quantize(): backend must be one of onnxruntime" in line
    assert "(did you mean 'onnxruntime'?)" in line and "--backend" not in line


UNREADABLE = [
    (["-d", "{folder}/scores.tvs"], 3,
     "no such file: {folder}/scores.tvs (did you mean 'scores.tsv'?)"),
    (["-d", "{folder}/scores.tsv", "--split", "testing"], 2,
     "--split must be one of train, validation, test, not 'testing' (did you mean 'test'?)"),
    (["-d", "{folder}/scores.tsv:valid"], 2, "(did you mean 'validation'?)"),
]  # fmt: skip
HELD_OUT = (["-d", "{folder}/scores.tsv", "--eval-data", "{folder}/held-out.csv"], 3,
            "no such file: {folder}/held-out.csv")  # fmt: skip


@pytest.mark.parametrize(
    ("command", "args", "code", "message"),
    [(command, *case) for command in ("eval", "prune", "finetune") for case in UNREADABLE]
    + [(command, *HELD_OUT) for command in ("prune", "finetune")],  # eval scores its --data
)
def test_data_that_cannot_be_read_is_refused_before_the_model(command, args, code, message,
                                                              tmp_path):  # fmt: skip
    """A missing file or a split a file does not have is known from the data options alone:
    refused before the (here absent) model is looked at, by every command."""
    _scores(tmp_path)
    own = {
        "eval": [],
        "prune": ["-o", tmp_path / "out", "--method", "magnitude", "--sparsity", "0.5"],
        "finetune": ["-o", tmp_path / "out"],
    }
    filled = [a.format(folder=tmp_path) for a in args]
    line = one_line(invoke(command, NO_MODEL, *own[command], *filled), code)
    assert message.format(folder=tmp_path) in line


@pytest.mark.parametrize(
    ("alias", "task"),
    [("text-classification", "sequence-classification"), ("feature-extraction", "embedding")],
)
def test_transformers_task_names_are_understood(alias, task, tiny_classifiers):
    """--task takes the names transformers and optimum use; the help lists squeeze's own."""
    import json

    result = invoke("info", tiny_classifiers["bert"], "--task", alias, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["task"] == task
    help_text = invoke("info", "--help").stdout
    assert "sequence-classification" in help_text and alias not in help_text
