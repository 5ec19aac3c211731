"""`squeeze tune` and recipes with a tune: section, as a user runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

runner = CliRunner()
SMALL = ("--max-length", "32", "--runs", "5", "--amounts", "0.25,0.5,0.75",
         "--recovery-steps", "20,40", "--layers", "1", "--quantize", "dynamic")  # fmt: skip


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tuned(trained_classifier, order_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    out = root / "out"
    result = invoke("tune", trained_classifier, "-d", order_csv, "-o", out, *SMALL,
                    "--max-accuracy-drop", "2", "--budget", "10m", "--cache-dir", root / "cache",
                    "--json", "--quiet")  # fmt: skip
    return root, out, result


def test_tune_selects_the_fastest_candidate_within_budget(tuned):
    _, out, result = tuned
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    trace = summary["trace"]
    assert trace[0]["stage"] == "quantize" and any(t["stage"] == "amount" for t in trace)
    finished = {t["chain"] for t in trace if t["outcome"] in ("within", "over")}
    names = {v["name"] for v in summary["variants"]}
    assert names == finished | {"baseline"}  # every finished candidate, measured again
    chosen = next(v for v in summary["variants"] if v["name"] == summary["selected"])
    assert chosen["drop_points"] <= 2.0 and chosen["drop_ci"] is not None
    within = [v for v in summary["variants"]
              if v["name"] in {t["chain"] for t in trace if t["outcome"] == "within"}
              and v["drop_points"] <= 2.0]  # fmt: skip
    fastest = min(within, key=lambda v: v["latency"]["cpu"]["p50_ms"])
    assert chosen["name"] == fastest["name"]
    marker = json.loads((out / "selected" / "squeeze-selected.json").read_text())
    assert marker["variant"] == summary["selected"]
    assert "validation and test" in marker["selection"]
    # Every faster row of the table says why it was not selected.
    p50 = chosen["latency"]["cpu"]["p50_ms"]
    faster = {v["name"] for v in summary["variants"]
              if v["name"] != "baseline" and v["latency"]["cpu"]["p50_ms"] < p50}  # fmt: skip
    assert faster <= set(summary["passed_over"]), summary["passed_over"]
    assert summary["selection_rule"].startswith(
        "the fastest variant on cpu whose accuracy drop is at most 2 points"
    )


def test_tune_writes_the_trace_beside_the_report(tuned):
    _, out, _ = tuned
    trace = json.loads((out / "trace.json").read_text())
    assert trace["trials"] and trace["tail"] == "quantize(dtype=int8)"
    markdown = (out / "report" / "trace.md").read_text()
    assert "| 1 | quantize |" in markdown and "why tried" in markdown
    assert (out / "report" / "trace.csv").read_text().startswith("order,")
    assert (out / "report" / "index.html").is_file()
    assert not (out.parent / "out.tune").exists()  # the journal goes once the search is done


def test_a_second_tune_reuses_the_cache(tuned, trained_classifier, order_csv):
    root, _, _ = tuned
    again = invoke("tune", trained_classifier, "-d", order_csv, "-o", root / "again", *SMALL,
                   "--max-accuracy-drop", "2", "--budget", "10m", "--cache-dir", root / "cache",
                   "--json", "--quiet")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    variants = json.loads(again.stdout)["variants"]
    assert all(v["cached"] for v in variants if v["name"] != "baseline")


def test_a_recipe_with_a_tune_section(trained_classifier, order_csv, tmp_path):
    recipe = tmp_path / "tune.yaml"
    recipe.write_text(
        f"model: {trained_classifier}\ndata: {order_csv}\nmax_length: 32\n"
        "bench: {runs: 5}\n"
        "tune:\n  max_accuracy_drop: 2\n  budget: 10m\n  amounts: [0.5]\n"
        "  recovery_steps: [20]\n  layers: []\n  quantize: [dynamic]\n"
    )
    result = invoke("run", recipe, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                    "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "search trace" in result.stdout and (tmp_path / "out" / "trace.json").is_file()


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--budget", "soon"), "--budget takes a duration like 20m"),
        (("--amounts", "0.5,2"), "--amounts: 2 is outside [0, 1)"),
        (("--quantize", "fast"), "--quantize: 'fast' is not one of"),
    ],
)
def test_bad_tune_options(args, phrase, trained_classifier, order_csv, tmp_path):
    result = invoke("tune", trained_classifier, "-d", order_csv, "-o", tmp_path / "o", *args)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_recipe_cannot_hold_variants_and_tune(trained_classifier, order_csv, tmp_path):
    recipe = tmp_path / "both.yaml"
    recipe.write_text(f"model: {trained_classifier}\ndata: {order_csv}\n"
                      "variants: [quantize(int8)]\ntune: {budget: 5m}\n")  # fmt: skip
    result = invoke("run", recipe, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "'variants' or a 'tune' section" in result.stderr


def test_an_interrupted_search_is_not_discarded_silently(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "o"
    journal = tmp_path / "o.tune"
    journal.mkdir()
    (journal / "journal.jsonl").write_text("")
    result = invoke("tune", trained_classifier, "-d", order_csv, "-o", out, *SMALL)
    assert result.exit_code != 0 and "--resume" in result.stderr and "--overwrite" in result.stderr
    missing = invoke("tune", trained_classifier, "-d", order_csv, "-o", tmp_path / "p", *SMALL,
                     "--resume")  # fmt: skip
    assert missing.exit_code == 2 and "no search journal" in missing.stderr
