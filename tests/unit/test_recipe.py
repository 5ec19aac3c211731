"""Recipes, step chains, sweep grids and gates: parsed whole, with errors that name the place."""

from __future__ import annotations

import math

import pytest

from squeeze.cli.sweep import grid
from squeeze.errors import ConfigError, DataError
from squeeze.pipeline import check_plan
from squeeze.results import SweepResults, VariantResult, derive
from squeeze.sweep.gates import Gates, Selection, choose, failures, parse_size
from squeeze.sweep.recipe import load_plan, plan_from
from squeeze.sweep.steps import parse_chain, parse_step
from squeeze.tiny import latency_of

RECIPE = """
name: demo
model: model-dir
data:
  source: reviews.tsv
  text_column: text
  label_column: score
  label_map: sign
max_length: 64
variants:
  - quantize(int8)
  - name: slim
    steps: structured(heads=0.5, ffn=0.5, finetune_steps=100) -> quantize(int8, onnxruntime)
  - name: distilled
    steps:
      - distill(student_layers=3, max_steps=200)
bench: {batch: 1, runs: 20}
gates: {max_accuracy_drop: 1.0, min_speedup: 2, max_size: 50MB}
select: best-under-drop=1.0
"""


def test_a_full_recipe(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    (tmp_path / "reviews.tsv").write_text("text\tscore\n")
    plan = load_plan(tmp_path / "r.yaml")
    assert plan.name == "demo" and plan.model == "model-dir"
    assert plan.data.source == str(tmp_path / "reviews.tsv")  # relative to the recipe
    assert plan.data.label_map == "sign" and plan.max_length == 64
    assert [v.name for v in plan.variants] == ["quantize(dtype=int8)", "slim", "distilled"]
    assert plan.variants[1].chain == (
        "structured(heads=0.5, ffn=0.5, finetune_steps=100) -> quantize(dtype=int8)"
    )
    assert plan.bench.batch_sizes == (1,) and plan.bench.seq_len == 64 and plan.bench.runs == 20
    assert plan.gates == Gates(1.0, 2, 50_000_000)
    assert plan.select == Selection("best-under-drop", 1.0)


def test_toml_recipes_too(tmp_path):
    (tmp_path / "r.toml").write_text('model = "m"\nvariants = ["export()"]\n')
    assert load_plan(tmp_path / "r.toml").variants[0].steps[0].kind == "export"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prune(0.5)", "unknown step 'prune'; steps are magnitude, structured"),
        ("structured(head=0.3)", "unknown parameter 'head'; it takes heads, ffn"),
        ("structured(heads=lots)", "heads takes float, not 'lots'"),
        ("structured(heads=1.5)", "heads must be in [0, 1), not 1.5"),
        ("magnitude()", "magnitude(): sparsity is required"),
        ("quantize(int3)", "dtype must be one of"),
        ("quantize(int8) -> structured(heads=0.3)", "must be the last step"),
        ("distill(max_steps=10)", "a first distill() needs student_layers"),
        ("structured(heads=0.3) -> distill(student_layers=2)", "the student is that step's output"),
        ("structured(heads=0.3) ->", "empty step"),
        ("structured(heads=0.3, heads=0.4)", "got 'heads' twice"),
    ],
)
def test_bad_chains_name_the_problem(text, message):
    with pytest.raises(ConfigError) as error:
        parse_chain(text, "variants[2]")
    assert message in str(error.value) and str(error.value).startswith("variants[2]")


def test_every_problem_of_every_variant_in_one_error():
    raw = {
        "model": "m",
        "variants": [
            "magnitude(sparsity=1.5, scope=row)",
            "quantize(int8)",
            {"name": "b", "steps": "structured(heads=2) -> quantize(fp16, onnxruntime)"},
        ],
    }
    with pytest.raises(ConfigError) as error:
        check_plan(plan_from(raw))  # before any work: what run_plan does first
    message = str(error.value)
    for part in (
        "variants[1] step 1 magnitude(): sparsity must be in (0, 1), not 1.5",
        "variants[1] step 1 magnitude(): scope must be one of global, layer, not 'row'",
        "variants[3] step 1 structured(): heads must be in [0, 1), not 2",
        "variants[3] step 2 quantize(): backend onnxruntime has no fp16; use backend torch",
    ):
        assert part in message


def test_positional_and_typed_arguments():
    call = parse_step("quantize(int8, torch)")
    assert call.config.dtype == "int8" and call.config.backend == "torch"
    assert call.final and parse_step("quantize(int8)").method.produces(call.config) == "checkpoint"
    assert parse_step("quantize(int8)").method.produces(parse_step("quantize(int8)").config) == (
        "onnx"
    )
    assert parse_step("magnitude(0.5, scope=layer)").canonical() == (
        "magnitude(sparsity=0.5, scope=layer)"
    )
    assert parse_step("export(optimize=false)").config.optimize is False
    assert parse_step("magnitude(0.5, include=[classifier.*, pooler.*])").config.include == (
        "classifier.*",
        "pooler.*",
    )
    # A first distillation may name any student checkpoint, as the command does.
    assert parse_chain("distill(student=students/small, max_steps=2)")[0].config.student == (
        "students/small"
    )
    # Naming the default backend is the same request as naming none: one name, one cache key.
    assert parse_step("quantize(int8, onnxruntime)").canonical() == "quantize(dtype=int8)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"variants": ["export()"]}, "'model' is required"),
        ({"model": "m", "variants": []}, "list at least one variant"),
        ({"model": "m", "variants": ["export()"], "colour": 1}, "unknown key 'colour'"),
        ({"model": "m", "variants": ["export()"], "gates": {"min_speed": 2}}, "unknown key"),
        ({"model": "m", "variants": ["export()"], "data": {"source": "x", "txt": "t"}}, "'txt'"),
        ({"model": "m", "variants": ["export()", "export()"]}, "must be unique"),
        ({"model": "m", "variants": ["export()"], "gates": {"max_size": "big"}}, "size like 50MB"),
        ({"model": "m", "variants": ["export()"], "select": "best-under-drop=x"}, "number of"),
    ],
)
def test_bad_recipes(raw, message):
    with pytest.raises(ConfigError, match=message):
        check_plan(plan_from(raw))


def test_unreadable_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid \.yaml"):
        load_plan(tmp_path / "bad.yaml")


def test_sizes():
    assert parse_size("50MB") == 50_000_000 and parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("200k") == 200_000 and parse_size("1234") == 1234


def test_sweep_grid():
    chains = grid([0.5], [0.3], [0.5], ["int8"], finetune_steps=0, distill_steps=0)
    assert chains == [
        "quantize(int8)",
        "magnitude(sparsity=0.5)",
        "magnitude(sparsity=0.5) -> quantize(int8)",
        "structured(heads=0.3, ffn=0.5)",
        "structured(heads=0.3, ffn=0.5) -> quantize(int8)",
    ]
    distilled = grid([], [0.5], [], [], finetune_steps=10, distill_steps=50)
    assert distilled == [
        "structured(heads=0.5, ffn=0.0, finetune_steps=10) -> distill(max_steps=50)"
    ]
    for chain in chains + distilled:
        parse_chain(chain)


def _variant(name, metric, p50, size, spread=0.5):
    latency = {"cpu": latency_of(p50, p50 - spread, p50 + spread)}
    return VariantResult(name, name, "torch", name, 100, 100, size, metric=metric, latency=latency)


def _results():
    results = SweepResults(
        model="m", metric_name="accuracy", higher_is_better=True, n_samples=100, bench={},
        machine={}, baseline="baseline",
        variants=[
            _variant("baseline", 0.90, 10.0, 400),
            _variant("fast", 0.895, 4.0, 100),  # 0.5 points worse, 2.5x faster
            _variant("faster", 0.85, 2.0, 100),  # 5 points worse
            _variant("noise", 0.90, 10.2, 400),  # within the baseline's spread
            _variant("dominated", 0.80, 5.0, 200),  # worse than "fast" on everything
        ],
    )  # fmt: skip
    derive(results)
    return results


def test_derive_ratios_verdicts_and_pareto():
    results = _results()
    fast, noise = results.variant("fast"), results.variant("noise")
    assert fast.speedup["cpu"] == pytest.approx(2.5) and fast.size_ratio == 4.0
    assert fast.drop_points == pytest.approx(0.5)
    assert noise.speedup["cpu"] is None  # "not faster", not 1.0x
    assert {v.name for v in results.variants if v.pareto} == {"baseline", "fast", "faster"}


def test_selection_and_gates():
    results = _results()
    assert choose(results, Selection("best-under-drop", 1.0)).name == "fast"
    assert choose(results, Selection("best-under-drop", math.inf)).name == "faster"
    assert choose(results, Selection("best-under-drop", -5)) is None
    assert choose(results, Selection.parse("noise")).name == "noise"
    with pytest.raises(ConfigError, match="no such variant"):
        choose(results, Selection.parse("nope"))
    fast = results.variant("fast")
    assert failures(results, fast, Gates(1.0, 2.0, 200)) == []
    assert "2.50x faster (< 3x)" in failures(results, fast, Gates(min_speedup=3))[0]
    assert (
        "not measurably faster"
        in failures(results, results.variant("noise"), Gates(min_speedup=1))[0]
    )
    assert "drops 5.00 points" in failures(results, results.variant("faster"), Gates(1.0))[0]
    assert failures(results, None, Gates(1.0)) == ["no variant qualifies for the selection"]


def test_results_round_trip_and_bad_files(tmp_path):
    results = _results()
    results.save(tmp_path / "results.json")
    again = SweepResults.load(tmp_path)
    assert again.to_dict() == results.to_dict()
    (tmp_path / "x.json").write_text('{"version": 99}')
    with pytest.raises(DataError, match="not a squeeze results file"):
        SweepResults.load(tmp_path / "x.json")
