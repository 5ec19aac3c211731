"""`squeeze distill` as a user calls it: students, summaries, the gate, resume guards."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _distill(teacher, order_csv, out, *extra):
    return invoke(
        "distill", teacher, "--data", order_csv, "-o", out, "--max-steps", "6",
        "--batch-size", "16", "--max-length", "32", "--max-samples", "400", "--quiet", *extra,
    )  # fmt: skip


def test_half_depth_student_end_to_end(trained_classifier, order_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "student"
    result = _distill(trained_classifier, order_csv, out, "--student-layers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] and summary["passed"]
    assert summary["after"]["params_total"] < summary["before"]["params_total"]
    assert summary["latency"]["before"]["p50_ms"] > 0 and summary["latency"]["speedup"] > 0
    assert 0 < summary["retained"] <= 1.5
    assert summary["train"]["steps"] == 6
    assert summary["metric_before"]["n_samples"] == summary["metric_after"]["n_samples"] > 20
    assert json.loads((out / "distill.json").read_text())["student"] == "1 of the teacher's layers"
    assert not (tmp_path / "student.checkpoint").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 1


def test_table_output_and_hidden_plus_attention_matching(trained_classifier, order_csv, tmp_path):
    result = _distill(
        trained_classifier, order_csv, tmp_path / "s", "--student-layers", "1",
        "--hidden-weight", "1", "--attention-weight", "1", "--no-bench",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "recovered" in result.stdout and "parameters" in result.stdout
    assert "latency" not in result.stdout  # --no-bench


def test_causal_lm_distils_on_next_token_logits(tiny_lms, order_csv, tmp_path):
    result = _distill(tiny_lms["gpt2"], order_csv, tmp_path / "s", "--student-layers", "1",
                      "--json", "--no-bench")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "perplexity" in summary["metric_after"]["metrics"]
    assert summary["train"]["final_loss"] > 0


def test_gate_failure_writes_nothing(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "s"
    # A negative allowance demands the student beat a perfect teacher: impossible.
    result = _distill(trained_classifier, order_csv, out, "--student-layers", "1",
                      "--max-accuracy-drop", "-1", "--no-bench")  # fmt: skip
    assert result.exit_code == 1
    assert "more than --max-accuracy-drop -1" in result.stderr and not out.exists()


def test_magnitude_pruned_student_keeps_its_zeros(trained_classifier, order_csv, tmp_path):
    pruned = tmp_path / "sparse"
    assert invoke("prune", trained_classifier, "-o", pruned, "--method", "magnitude",
                  "--sparsity", "0.5").exit_code == 0  # fmt: skip
    out = tmp_path / "recovered"
    result = _distill(trained_classifier, order_csv, out, "--from-pruned", pruned, "--json",
                      "--no-bench", "--lr", "1e-2")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    info = [json.loads(invoke("info", p, "--json").stdout) for p in (pruned, out)]
    assert info[0]["params_nonzero"] == info[1]["params_nonzero"]


def test_interrupted_run_guards(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "s"
    result = _distill(trained_classifier, order_csv, out, "--student-layers", "1", "--resume")
    assert result.exit_code == 2 and "no checkpoint" in result.stderr
    (tmp_path / "s.checkpoint" / "last").mkdir(parents=True)
    (tmp_path / "s.checkpoint" / "last" / "trainer_state.json").write_text("{}")
    result = _distill(trained_classifier, order_csv, out, "--student-layers", "1")
    assert result.exit_code == 2 and "--resume to continue it" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--student-layers", "1", "--student", "x"), "one of --student"),
        ((), "one of --student"),
        (("--student-layers", "5"), "below the teacher's 2 layers"),
        (("--student-layers", "1", "--temperature", "0"), "--temperature"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, trained_classifier, order_csv, tmp_path):
    result = _distill(trained_classifier, order_csv, tmp_path / "s", *args)
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
