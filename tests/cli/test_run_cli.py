"""`squeeze run` and `squeeze sweep` as CI uses them: recipes, the cache, gates, selection."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

runner = CliRunner()
PRUNED = "structured(heads=0.5, ffn=0.5)"
GATES = ("max_accuracy_drop", "min_speedup", "max_size")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _recipe(path, model, data, variants, extra=""):
    lines = "\n".join(f"  - {v}" for v in variants)
    path.write_text(
        f"model: {model}\ndata:\n  source: {data}\n  max_samples: 300\nmax_length: 32\n"
        f"bench: {{batch: 1, runs: 5, rounds: 1, warmup: 1}}\nvariants:\n{lines}\n{extra}"
    )
    return path


@pytest.fixture(scope="module")
def first_run(trained_classifier, order_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    recipe = _recipe(
        root / "recipe.yaml", trained_classifier, order_csv,
        ["quantize(int8)", "structured(heads=0.5, ffn=0.5)",
         "structured(heads=0.5, ffn=0.5) -> quantize(int8)"],
        "select: best-under-drop=100\n",
    )  # fmt: skip
    out = root / "out"
    result = invoke("run", recipe, "-o", out, "--cache-dir", root / "cache", "--json", "--quiet")
    return root, recipe, out, result


def test_recipe_run_writes_results_report_and_selection(first_run):
    _, _, out, result = first_run
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    names = [v["name"] for v in summary["variants"]]
    assert names[0] == "baseline" and len(names) == 4
    formats = {v["name"]: v["format"] for v in summary["variants"]}
    assert formats["quantize(dtype=int8)"] == "onnxruntime" and formats["baseline"] == "torch"
    for v in summary["variants"]:
        assert v["metric"] is not None and v["latency"]["cpu"]["p50_ms"] > 0
        assert v["bytes_on_disk"] > 0 and not v["cached"]
    pruned = summary["variants"][2]
    assert pruned["params_total"] < summary["variants"][0]["params_total"]
    assert summary["metric_name"] == "accuracy" and summary["n_samples"] > 0
    assert any(v["pareto"] for v in summary["variants"])
    assert summary["selected"] in names[1:]
    # No gate was set: none was judged, and none claims to have passed.
    assert summary["gate_verdicts"] == dict.fromkeys(GATES, "not judged")
    for v in summary["variants"][1:]:  # every difference carries its 95% interval
        low, high = v["drop_ci"]
        assert low <= v["drop_points"] <= high
        assert len(v["scores"]["values"]) == summary["n_samples"]
        if v["speedup"]["cpu"] is not None:
            assert v["speedup_ci"]["cpu"][0] <= v["speedup"]["cpu"] <= v["speedup_ci"]["cpu"][1]
    assert (out / "results.json").is_file() and (out / "report" / "index.html").is_file()
    assert (out / "selected" / "squeeze-selected.json").is_file()


def test_second_run_reuses_the_cache_and_adds_a_variant(first_run):
    root, recipe, _, _ = first_run
    out = root / "again"
    result = invoke(
        "run", recipe, "-o", out, "--cache-dir", root / "cache", "--json", "--quiet",
        "--variant", "magnitude(sparsity=0.5)",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    cached = {v["name"]: v["cached"] for v in json.loads(result.stdout)["variants"]}
    assert cached["quantize(dtype=int8)"] and cached["structured(heads=0.5, ffn=0.5)"]
    assert cached["structured(heads=0.5, ffn=0.5) -> quantize(dtype=int8)"]
    assert not cached["magnitude(sparsity=0.5)"]


def test_gates_fail_with_exit_1_and_still_write_the_report(first_run):
    root, recipe, _, _ = first_run
    out = root / "gated"
    result = invoke(
        "run", recipe, "-o", out, "--cache-dir", root / "cache", "--quiet",
        "--max-size", "1kB", "--max-accuracy-drop", "100",
    )  # fmt: skip
    # A size gate, not a speed-up one: timings on a shared CI machine can make any ratio happen.
    assert result.exit_code == 1
    assert "MB (> 0.001 MB)" in result.stderr and "selected variant" in result.stderr
    assert (out / "report" / "results.md").is_file()
    verdicts = json.loads((out / "results.json").read_text())["gate_verdicts"]
    assert verdicts == {"max_accuracy_drop": "passed", "min_speedup": "not judged",
                        "max_size": "failed"}  # fmt: skip


def test_upper_gate_judges_the_interval(first_run):
    """An allowance just above the selected variant's drop passes on the point estimate and
    fails on the upper end of its interval, which the report calls undecided."""
    root, recipe, _out, result = first_run
    summary = json.loads(result.stdout)
    chosen = next(v for v in summary["variants"] if v["name"] == PRUNED)
    _low, high = chosen["drop_ci"]
    assert high > chosen["drop_points"]  # about 110 test samples: the interval is wide
    allowance = f"{(chosen['drop_points'] + high) / 2:.4f}"
    common = ("--cache-dir", root / "cache", "--quiet", "--select", PRUNED,
              "--max-accuracy-drop", allowance)  # fmt: skip
    passed = invoke("run", recipe, "-o", root / "point", *common)
    assert passed.exit_code == 0, passed.stderr
    failed = invoke("run", recipe, "-o", root / "upper", *common, "--gate-on", "upper")
    assert failed.exit_code == 1, failed.stderr
    assert "upper end of its drop's 95% interval" in failed.stderr
    for out, verdict in (("point", "passed"), ("upper", "failed")):
        results = json.loads((root / out / "results.json").read_text())
        assert results["gate_verdicts"]["max_accuracy_drop"] == verdict
    assert "too small to decide" in (root / "upper" / "report" / "results.md").read_text()


def test_existing_output_needs_overwrite(first_run):
    root, recipe, out, _ = first_run
    result = invoke("run", recipe, "-o", out, "--cache-dir", root / "cache", "--quiet")
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_bad_recipes_fail_before_any_work(trained_classifier, order_csv, tmp_path):
    bad_step = _recipe(tmp_path / "a.yaml", trained_classifier, order_csv, ["prune(0.5)"])
    result = invoke("run", bad_step, "-o", tmp_path / "a")
    assert result.exit_code == 2 and "unknown step 'prune'" in result.stderr
    column = _recipe(tmp_path / "b.yaml", trained_classifier, order_csv, ["quantize(int8)"])
    column.write_text(column.read_text().replace("max_samples: 300", "label_column: stars"))
    result = invoke("run", column, "-o", tmp_path / "b", "--cache-dir", tmp_path / "c")
    assert result.exit_code == 3 and "stars" in result.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    result = invoke("run", "-o", tmp_path / "d")
    assert result.exit_code == 2 and "--model and at least one --variant" in result.stderr


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        # An accuracy gate without data measured nothing: it used to pass (exit 0, selected/).
        (("--max-accuracy-drop", "1"), "gates: --max-accuracy-drop needs --data"),
        (("--select", "best-under-drop=0.5"), "without --data no variant's drop can be judged"),
        (("--select", "int8"), "select int8: no such variant"),
    ],
)
def test_a_gate_without_data_is_refused_before_any_work(trained_classifier, tmp_path, args,
                                                        phrase):  # fmt: skip
    result = invoke(
        "run", "--model", trained_classifier, "--variant", "quantize(int8)", *args,
        "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.exit_code == 2 and phrase in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_sweep_grid_from_the_command_line(tiny_classifiers, order_csv, tmp_path):
    result = invoke(
        "sweep", tiny_classifiers["gpt2"], "--data", order_csv, "--max-samples", "100",
        "--sparsity", "0.5", "--dtype", "int8", "--max-length", "32", "--runs", "5",
        "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "baseline" in result.stdout and "pareto" in result.stdout.lower()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == [
        "baseline", "quantize(dtype=int8)", "magnitude(sparsity=0.5)",
        "magnitude(sparsity=0.5) -> quantize(dtype=int8)",
    ]  # fmt: skip
