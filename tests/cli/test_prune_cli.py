"""`squeeze prune` as CI uses it: summaries, reloadable outputs, the accuracy gate, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.model.tiny import FAMILIES

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("family", FAMILIES)
def test_magnitude_from_the_cli(family, tiny_classifiers, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "sparse"
    args = (
        "prune",
        tiny_classifiers[family],
        "-o",
        out,
        "--method",
        "magnitude",
        "--sparsity",
        "0.6",
    )
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert abs(summary["sparsity"] - 0.6) < 0.005
    assert summary["after"]["params_nonzero"] < summary["before"]["params_nonzero"]
    assert summary["after"]["bytes_compressed"] < summary["before"]["bytes_compressed"]
    assert json.loads((out / "prune.json").read_text())["sparsity"] == summary["sparsity"]
    info = json.loads(invoke("info", out, "--json").stdout)
    assert info["params_nonzero"] == summary["after"]["params_nonzero"]
    AutoModelForSequenceClassification.from_pretrained(out)  # plain transformers loads it


def test_structured_with_data_reports_accuracy(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "slim"
    result = invoke("prune", trained_classifier, "-o", out, "--method", "structured",
                    "--heads", "0.5", "--ffn", "0.5", "-d", order_csv, "--max-length", "32",
                    "--finetune-steps", "10")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for text in ("parameters", "accuracy", "pts", "plain transformers cannot load"):
        assert text in result.stdout
    assert "removed 2 of 4 heads" in result.stderr
    summary = json.loads((out / "prune.json").read_text())
    assert summary["importance"] == "taylor" and summary["config"]["finetune_steps"] == 10
    assert summary["metric_after"]["n_samples"] == summary["metric_before"]["n_samples"] > 200


@pytest.mark.parametrize(
    ("family", "plain"),
    [("bert", False), ("llama", True)],  # Llama's config states the head size (head_dim)
)
def test_structured_says_how_its_output_loads(family, plain, tiny_classifiers, tmp_path):
    out = tmp_path / "slim"
    result = invoke("prune", tiny_classifiers[family], "-o", out, "--method", "structured",
                    "--heads", "0.5")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    if plain:
        assert "output loads with plain transformers and squeeze" in text
        return
    assert "plain transformers cannot load the output: AutoModel*.from_pretrained fails" in text
    assert f"squeeze.load('{out}')" in text and f"`squeeze export {out} -o OUT`" in text
    assert "the stock config cannot state 2 of 4 heads per layer (bert configs" in result.stderr


def test_gate_failure_exits_1_and_writes_nothing(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "gated"
    result = invoke("prune", trained_classifier, "-o", out, "--method", "structured",
                    "--heads", "0.75", "--ffn", "0.75", "--importance", "magnitude",
                    "-d", order_csv, "--max-length", "32",
                    "--max-accuracy-drop", "0.5")  # fmt: skip
    assert result.exit_code == 1, result.stdout  # about 9 points (seeded)
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1].startswith("error: accuracy dropped")
        and "more than --max-accuracy-drop 0.5" in lines[-1]
    )
    assert "accuracy" in result.stdout  # the summary still shows what happened
    assert not out.exists()


def test_cubic_schedule_from_the_cli(trained_classifier, order_csv, tmp_path):
    result = invoke("prune", trained_classifier, "-o", tmp_path / "c", "--method", "magnitude",
                    "--sparsity", "0.5", "--schedule", "cubic", "-d", order_csv,
                    "--finetune-steps", "12", "--max-length", "32", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert abs(summary["sparsity"] - 0.5) < 0.005 and summary["metric_after"] is not None


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--method", "magnitude"), "--sparsity is required"),
        (
            ("--method", "magnitude", "--sparsity", "0.5", "--heads", "0.5"),
            "go with --method structured",
        ),
        (("--method", "structured", "--sparsity", "0.5"), "go with --method magnitude"),
        (("--method", "structured"), "needs --heads, --ffn, --layers, --target-speedup or"),
        (("--method", "structured", "--layers", "2"), "would remove all 2 layers"),
        (
            ("--method", "structured", "--ffn", "0.5", "--importance", "taylor"),
            "taylor needs --data",
        ),
        (
            ("--method", "magnitude", "--sparsity", "0.5", "--schedule", "cubic"),
            "--schedule cubic needs --finetune-steps",
        ),
        (
            ("--method", "magnitude", "--sparsity", "0.5", "--max-accuracy-drop", "1"),
            "--max-accuracy-drop needs --data",
        ),
    ],
)
def test_bad_prune_options(args, phrase, tiny_classifiers, tmp_path):
    result = invoke("prune", tiny_classifiers["bert"], "-o", tmp_path / "x", *args)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_upper_gate_fails_a_drop_the_point_estimate_passes(trained_classifier, order_csv, tmp_path):
    common = ("--method", "structured", "--heads", "0.5", "--ffn", "0.5",
              "--importance", "magnitude", "-d", order_csv, "--max-length", "32")  # fmt: skip
    first = invoke("prune", trained_classifier, "-o", tmp_path / "a", *common,
                   "--max-accuracy-drop", "100", "--gate-on", "upper", "--json")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    summary = json.loads(first.stdout)
    low, high = summary["drop_ci95"]
    drop = summary["drop_points"]
    assert low <= drop < high and summary["gate_on"] == "upper" and summary["passed"]
    allowance = f"{(drop + high) / 2:.4f}"
    failed = invoke("prune", trained_classifier, "-o", tmp_path / "b", *common,
                    "--max-accuracy-drop", allowance, "--gate-on", "upper")  # fmt: skip
    assert failed.exit_code == 1, failed.stderr
    assert "the upper end of its interval is" in failed.stderr and "95% interval [" in failed.stderr
    assert not (tmp_path / "b").exists()
    passed = invoke("prune", trained_classifier, "-o", tmp_path / "c", *common,
                    "--max-accuracy-drop", allowance)  # fmt: skip
    assert passed.exit_code == 0, passed.stderr
    assert "too small to decide" in passed.stderr  # said as a note


def test_slimming_importance_from_the_cli_and_a_recipe(trained_classifier, order_csv, tmp_path):
    result = invoke("prune", trained_classifier, "-o", tmp_path / "s", "--method", "structured",
                    "--heads", "0.5", "--ffn", "0.5", "--importance", "slimming",
                    "--slimming-steps", "10", "-d", order_csv, "--max-length", "32", "--json",
                    "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["importance"] == "slimming"
    assert any(n.startswith("slimming importance: trained 10 steps") for n in summary["notes"])
    assert summary["after"]["params_total"] < summary["before"]["params_total"]
    run = invoke("run", "--model", trained_classifier, "-d", order_csv, "--max-length", "32",
                 "--runs", "3", "--variant",
                 "structured(heads=0.5, importance=slimming, slimming_steps=10) -> quantize(int8)",
                 "-o", tmp_path / "r", "--cache-dir", tmp_path / "c", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    no_data = invoke("prune", trained_classifier, "-o", tmp_path / "x", "--method", "structured",
                     "--heads", "0.5", "--importance", "slimming")  # fmt: skip
    assert no_data.exit_code == 2 and "--importance slimming needs --data" in no_data.stderr
