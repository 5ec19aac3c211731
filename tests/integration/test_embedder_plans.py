"""Embedders through run, sweep, tune, report and bench, as a user calls them.

A tiny seeded BERT embedder (mean pooling, normalised) stands in for all-MiniLM-L6-v2: every
variant is scored in its deployed format on held-out text, with its fidelity (mean cosine) to the
baseline's embeddings of the same texts; labelled text adds kNN accuracy. The fidelities of a
random tiny model are all close to 1, so the gate tests set their floors between the figures a
first run measured rather than at fixed numbers.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

ROOT = Path(__file__).parents[2]
INT8 = "quantize(int8)"
SLIM = "structured(heads=0.5, ffn=0.5, importance=magnitude) -> quantize(int8)"
INT8_NAME = "quantize(dtype=int8)"  # the variant named by its canonical chain


def _cli(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _run(model: Path, data: Path, out: Path, cache: Path, *extra: Any) -> Any:
    return _cli(
        "run", "--model", model, "--data", data, "--variant", INT8, "--variant", SLIM,
        "--max-length", 32, "--runs", 3, "-o", out, "--cache-dir", cache, "--json", "--quiet",
        *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def embedder(tiny_embedders: dict[str, Path]) -> Path:
    return tiny_embedders["bert"]


@pytest.fixture(scope="module")
def labelled(order_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 sentences of the order task with their labels (80 or so in the test part)."""
    rows = list(csv.DictReader(order_csv.open()))[:800]
    out = tmp_path_factory.mktemp("labelled") / "labelled.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture(scope="module")
def texts(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same sentences without labels: fidelity is all there is to score."""
    out = tmp_path_factory.mktemp("texts") / "texts.csv"
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([r["text"]] for r in csv.DictReader(labelled.open()))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the module: later runs re-measure what earlier ones built."""
    return tmp_path_factory.mktemp("cache") / "artifacts"


@pytest.fixture(scope="module")
def unlabelled_run(embedder: Path, texts: Path, cache: Path, tmp_path_factory) -> dict[str, Any]:
    """A run on unlabelled text, no gate: each variant's fidelity, by name."""
    out = tmp_path_factory.mktemp("unlabelled") / "run"
    result = _run(embedder, texts, out, cache)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_run_scores_every_variant_against_the_baselines_embeddings(
    embedder, labelled, cache, tmp_path
):
    """Labelled text: kNN accuracy is the metric, fidelity a column of its own, in results.json,
    the tables, the CSV, the page and a report rendered again from the file."""
    result = _run(embedder, labelled, tmp_path / "run", cache)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["metric_name"] == "knn_accuracy"
    fidelity = {v["name"]: v["fidelity"] for v in summary["variants"]}
    assert fidelity.pop("baseline") == 1.0
    # Measured against the baseline's embeddings (without that reference a labelled run has
    # no fidelity at all): close to, but not exactly, the baseline's own.
    assert len(fidelity) == 2 and all(0.5 < f < 1.0 for f in fidelity.values()), fidelity
    report = tmp_path / "run" / "report"
    table = (report / "results.md").read_text()
    assert "kNN accuracy ↑" in table and "fidelity ↑" in table
    assert "Metric: kNN accuracy" in table
    with (report / "results.csv").open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert float(rows[INT8_NAME]["fidelity"]) == pytest.approx(fidelity[INT8_NAME], abs=1e-6)
    assert "kNN accuracy" in (report / "index.html").read_text()
    assert (report / "metric_vs_latency.png").is_file()

    again = _cli("report", tmp_path / "run" / "results.json", "-o", tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    assert "fidelity ↑" in (tmp_path / "again" / "results.md").read_text()


def test_unlabelled_text_makes_fidelity_the_metric(unlabelled_run):
    """Text alone is enough to score an embedder (the data check does not ask for labels)."""
    assert unlabelled_run["metric_name"] == "fidelity"
    variants = {v["name"]: v for v in unlabelled_run["variants"]}
    assert variants["baseline"]["metric"] == 1.0
    for v in variants.values():
        assert v["metric"] == v["fidelity"]


def test_min_fidelity_selects_among_the_variants_that_keep_it(
    embedder, texts, cache, unlabelled_run, tmp_path
):
    """A floor between the two variants' fidelities: the smaller, pruned variant falls under it,
    so the selection takes the int8 one, and the gate passes (without the floor in the
    selection, smallest-under-drop would pick the pruned one and fail)."""
    fidelity = {v["name"]: v["fidelity"] for v in unlabelled_run["variants"]}
    slim = next(name for name in fidelity if name.startswith("structured"))
    assert fidelity[slim] < fidelity[INT8_NAME], fidelity
    floor = (fidelity[slim] + fidelity[INT8_NAME]) / 2
    result = _run(embedder, texts, tmp_path / "run", cache, "--min-fidelity", f"{floor:.9f}",
                  "--select", "smallest-under-drop")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["selected"] == INT8_NAME
    assert summary["gate_verdicts"]["min_fidelity"] == "passed"


def test_a_recipe_fidelity_floor_no_variant_keeps_fails_with_the_closest(
    embedder, texts, cache, unlabelled_run, tmp_path
):
    """gates: {min_fidelity} above every variant: exit 1 after writing the results, naming the
    floor and the closest variant."""
    best = max(v["fidelity"] for v in unlabelled_run["variants"] if v["name"] != "baseline")
    assert best < 1.0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {embedder}\ndata: {texts}\nmax_length: 32\nbench: {{runs: 3}}\n"
        f"variants: ['{INT8}', '{SLIM}']\ngates: {{min_fidelity: {(best + 1) / 2:.9f}}}\n"
    )
    result = _cli("run", recipe, "-o", tmp_path / "run", "--cache-dir", cache, "--quiet")
    assert result.exit_code == 1, result.stderr
    assert "fidelity >=" in result.stderr and f"the closest, {INT8_NAME}" in result.stderr
    assert (tmp_path / "run" / "results.json").is_file()


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("classifier", 4, "is not an embedder"),
        ("out of range", 2, "mean cosine, from -1 to 1"),
        ("tune", 2, "is not judged by a tune: search"),
    ],
)
def test_a_fidelity_gate_that_cannot_work_is_refused_before_any_work(
    case, code, says, embedder, texts, labelled, tiny_classifiers, tmp_path
):
    model, gate, body = embedder, 0.99, f"variants: ['{INT8}']"
    if case == "classifier":
        model, texts = tiny_classifiers["bert"], labelled
    elif case == "out of range":
        gate = 1.5
    else:
        body = "tune: {max_accuracy_drop: 1.0, budget: 5m}"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {model}\ndata: {texts}\n{body}\ngates: {{min_fidelity: {gate}}}\n")
    cache = tmp_path / "cache"
    result = _cli("run", recipe, "-o", tmp_path / "out", "--cache-dir", cache, "--quiet")
    assert result.exit_code == code, result.stderr
    assert says in result.stderr
    assert not cache.exists() or not any(p.name.endswith("-quantize") for p in cache.iterdir())


def _tune_recipe(tmp_path: Path, embedder: Path, data: Path) -> Path:
    """examples/embedder-tune.yaml with its search cut to tiny-model size (one amount, short
    recovery, dynamic int8) and pointed at the tiny embedder."""
    text = (ROOT / "examples" / "embedder-tune.yaml").read_text()
    cuts = {"[0.25, 0.5, 0.75]": "[0.5]", "[100, 300]": "[2, 4]", "[1, 2]": "[1]",
            "[dynamic, static]": "[dynamic]", "budget: 20m": "budget: 10m"}  # fmt: skip
    for old, new in cuts.items():
        assert old in text, old
        text = text.replace(old, new)
    recipe = tmp_path / "embedder-tune.yaml"
    recipe.write_text(text)
    return recipe


def test_tune_searches_an_embedder_on_fidelity(embedder, texts, cache, tmp_path):
    """The example's tune section on unlabelled text: the allowance judges fidelity, decided on
    the validation split, every candidate against the model's own embeddings."""
    recipe = _tune_recipe(tmp_path, embedder, texts)
    result = _cli("run", recipe, "--model", embedder, "--data", texts, "--max-length", 32,
                  "--runs", 3, "-o", tmp_path / "out", "--cache-dir", cache, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "no validation split" not in result.stderr  # unlabelled validation text is read
    summary = json.loads(result.stdout)
    assert summary["metric_name"] == "fidelity"
    drops = [t["drop"] for t in summary["trace"] if t["drop"] is not None]
    # Against the model's embeddings, not each candidate's own (which would drop nothing).
    assert drops and all(d > 0 for d in drops), drops
    assert summary["selected"]
    assert all(v["fidelity"] is not None for v in summary["variants"])
    assert (tmp_path / "out" / "report" / "trace.md").is_file()


def test_a_resumed_search_scores_candidates_against_the_model(embedder, texts, cache, tmp_path):
    """A resumed search replays the model's own score from its journal, without embeddings; the
    first candidate it scores still gets the model's embeddings as its reference."""
    from squeeze.core.types import no_progress
    from squeeze.data.spec import DataSpec
    from squeeze.plan.cache import content_key
    from squeeze.plan.execute import LOCAL
    from squeeze.plan.recipe import Plan
    from squeeze.plan.tune.run import _context

    plan = Plan(model=str(embedder), variants=(), data=DataSpec(str(texts)), max_length=32)
    root = content_key(embedder)
    ctx = _context(plan, cache, LOCAL, False, no_progress, lambda message: None, root)
    (built,) = ctx.build([INT8])
    candidate = built.path
    measured = ctx.validate(candidate)  # the model was never validated in this process
    assert 0.5 < measured.metric < 1.0
    assert ctx.validate(str(embedder)).metric == 1.0


def test_bench_times_an_embedder_up_to_its_pooled_embedding(embedder, monkeypatch):
    """PyTorch is timed to the embedding its exports return (they pool inside the graph)."""
    import squeeze.model.pooling as pooling
    from squeeze.measure.bench import bench_models
    from squeeze.measure.latency import BenchSettings

    calls = []
    real = pooling.pool
    monkeypatch.setattr(pooling, "pool", lambda *a, **k: calls.append(1) or real(*a, **k))
    results, _ = bench_models([str(embedder)], BenchSettings(seq_len=16, runs=3, warmup=1,
                                                            rounds=1))  # fmt: skip
    assert results[0].latencies[0].p50_ms > 0
    assert len(calls) >= 4  # every warm-up and timed run


def test_the_example_recipe_via_the_benchmarks_quick_mode(tmp_path):
    """benchmarks/embedders.py --quick runs examples/embedder.yaml as written (training steps
    cut) on a tiny 4-layer embedder through the CLI: every variant built, scored and timed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "embedders.py"), "--quick", "--json",
         "--work", str(tmp_path)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"baseline", "int8", "int8-openvino", "slim-int8", "half-depth-int8"}
    assert rows["int8-openvino"]["format"] == "openvino"
    assert rows["baseline"]["fidelity"] == 1.0
    for row in rows.values():
        assert 0.5 < row["fidelity"] <= 1.0 and row["knn_accuracy"] is not None
        assert row["batch1_ms"] > 0 and row["batch32_ms_per_text"] > 0
    assert "skipped" in report["peer"]  # quick mode never runs the peer
    assert "| variant |" in report["markdown"]
