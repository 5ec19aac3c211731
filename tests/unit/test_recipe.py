"""Recipes, step chains, sweep grids and gates: parsed whole, with errors that name the place."""

from __future__ import annotations

import math
import re

import pytest

from squeeze.cli.sweep import grid
from squeeze.core.errors import ConfigError, DataError
from squeeze.engine.gate import (
    FAILED,
    METRIC,
    NOT_JUDGED,
    PASSED,
    TIMING,
    Gated,
    unjudgeable,
    verdict,
)
from squeeze.engine.gates import Gates, Selection, choose, failures, judge, parse_size
from squeeze.model.tiny import latency_of
from squeeze.plan.pipeline import check_plan
from squeeze.plan.recipe import load_plan, plan_from, variants_from
from squeeze.plan.steps import parse_chain, parse_step
from squeeze.report.results import SweepResults, VariantResult, derive

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


def test_a_variant_string_may_name_its_chain():
    named, plain = variants_from(["int8=quantize(int8)", "quantize(dtype=int8, static=false)"])
    assert (named.name, named.chain) == ("int8", "quantize(dtype=int8)")
    assert plain.name == plain.chain == "quantize(dtype=int8)"  # "=" inside a step: a chain


def test_toml_recipes_too(tmp_path):
    (tmp_path / "r.toml").write_text('model = "m"\nvariants = ["export()"]\n')
    assert load_plan(tmp_path / "r.toml").variants[0].steps[0].kind == "export"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prune(0.5)", "unknown step 'prune'; steps are magnitude, structured"),
        (
            "structured(head=0.3)",
            "unknown parameter 'head' (did you mean 'heads'?); it takes heads",
        ),
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


BASE = {"model": "m", "variants": ["export()"]}


@pytest.mark.parametrize(
    ("raw", "messages"),
    [
        ({"max_length": "abc"}, ["max_length: expected an integer, got 'abc'"]),
        ({"max_length": 1}, ["max_length: must be at least 2, not 1"]),
        ({"bench": {"runs": "thirty"}}, ["bench.runs: expected an integer, got 'thirty'"]),
        ({"bench": {"batch": [1, "x"]}}, ["bench.batch: expected a list of integers"]),
        ({"bench": {"threads": 0}}, ["bench: threads must be >= 1"]),
        ({"bench": "fast"}, ["bench: expected a mapping of batch, seq, runs"]),
        ({"gates": {"max_accuracy_drop": "one"}}, ["gates.max_accuracy_drop: expected a number"]),
        ({"gates": {"gate_on": "maybe"}}, ["gates.gate_on: expected one of point, upper"]),
        ({"data": {"source": "d.csv", "split_ratios": 0.5}},
         ["data.split_ratios: expected a list of 3 numbers, got 0.5"]),
        ({"data": {"source": "d.csv", "split_ratios": [0.5, 0.5]}},
         ["data.split_ratios: expected a list of 3 numbers"]),
        ({"data": {"source": "d.csv", "max_samples": "ten"}},
         ["data.max_samples: expected an integer, got 'ten'"]),
        ({"data": {"source": "d.csv", "max_samples": 0}}, ["data: max_samples must be at least 1"]),
        ({"data": {"text_column": "t"}}, ["data: 'source' is required"]),
        ({"eval_data": 3.5}, ["eval_data: give a file or a mapping"]),
        ({"name": ["x"]}, ["name: expected text, got ['x']"]),
        ({"model": None}, ["model: expected text, got None"]),
        ({"select": {"best": 1}}, ["select: expected text"]),
        ({1: "x"}, ["recipe: unknown key '1'"]),
        ({"variants": None, "tune": {"budget": "5m"}, "gates": {"max_accuracy_drop": 1}},
         ["write it as tune.max_accuracy_drop"]),
        # Every problem of the file at once, the variants' too.
        ({"max_length": "abc", "bench": {"runs": "thirty"}, "gates": {"max_accuracy_drop": "one"},
          "data": {"source": "d.csv", "split_ratios": 0.5},
          "variants": ["magnitude(sparsity=2)"]},
         ["max_length: expected", "bench.runs: expected", "gates.max_accuracy_drop: expected",
          "data.split_ratios: expected", "variants[1] step 1 magnitude(): sparsity must be in"]),
    ],
)  # fmt: skip
def test_recipe_values_are_checked_against_their_schema(raw, messages):
    with pytest.raises(ConfigError) as error:
        plan_from({**BASE, **raw})
    assert error.value.exit_code == 2
    for message in messages:
        assert message in str(error.value)


def test_well_typed_recipe_values_become_the_plan():
    plan = plan_from(
        {**BASE, "data": {"source": "d.csv", "split_ratios": "0.6, 0.2, 0.2", "max_samples": 50},
         "bench": {"batch": [1, 8], "runs": 4}, "gates": {"max_size": 1000, "min_speedup": 2}},
    )  # fmt: skip
    assert plan.data.split_ratios == (0.6, 0.2, 0.2) and plan.data.max_samples == 50
    assert plan.bench.batch_sizes == (1, 8) and plan.bench.runs == 4
    assert plan.gates == Gates(min_speedup=2.0, max_size=1000)
    assert plan_from({**BASE, "bench": {"batch": 4}}).bench.batch_sizes == (4,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"model: m\nname: caf\xe9\n", "is not UTF-8 text (byte 18: 0xe9)"),
        (b"\x00\x01\x02model", "is not valid .yaml"),
        (b"- model: m\n", "the top level must be a mapping"),
    ],
)
def test_a_recipe_that_is_not_yaml_text(tmp_path, content, message):
    (tmp_path / "r.yaml").write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_plan(tmp_path / "r.yaml")


@pytest.mark.parametrize(
    ("measured", "limit", "at_least", "expected"),
    [
        (0.5, 1.0, False, PASSED),
        (1.5, 1.0, False, FAILED),
        (None, 1.0, False, NOT_JUDGED),  # nothing measured: never a pass
        (0.5, None, False, NOT_JUDGED),
        (2.5, 2.0, True, PASSED),
        (1.5, 2.0, True, FAILED),
    ],
)
def test_one_verdict_for_every_gate(measured, limit, at_least, expected):
    assert verdict(measured, limit, at_least=at_least) == expected


@pytest.mark.parametrize(
    ("limits", "measured", "phrase"),
    [
        ({"max_accuracy_drop": 1.0}, set(), "max_accuracy_drop needs data"),
        ({"max_accuracy_drop": 1.0}, {METRIC}, None),
        ({"min_speedup": 2.0}, {METRIC}, "min_speedup needs timings"),
        ({"min_speedup": 2.0}, {TIMING}, None),
        ({"max_size": 1000}, set(), None),  # sizes are always measured
        ({"max_accuracy_drop": None, "min_speedup": None}, set(), None),
    ],
)
def test_a_gate_whose_figure_is_not_measured_is_refused(limits, measured, phrase):
    problems = [p.render() for p in unjudgeable(limits, measured)]
    assert len(problems) == (phrase is not None)
    if phrase is not None:
        assert phrase in problems[0] and "leave" in problems[0]


class _Step(Gated):
    def __init__(self, before, after, max_drop):
        from squeeze.core.types import Evaluation, Metric

        self.metric_before, self.metric_after = (
            Evaluation((Metric("accuracy", v, 100),), 100, 1.0) if v is not None else None
            for v in (before, after)
        )
        self.max_accuracy_drop, self.gate_on = max_drop, "point"


@pytest.mark.parametrize(
    ("before", "after", "max_drop", "verdict_", "passed"),
    [
        (0.9, 0.895, 1.0, PASSED, True),
        (0.9, 0.8, 1.0, FAILED, False),
        (None, None, 1.0, NOT_JUDGED, False),  # a set gate with no metric does not pass
        (None, None, None, NOT_JUDGED, True),  # no gate: nothing to fail
    ],
)
def test_a_steps_summary_states_its_gate_verdict(before, after, max_drop, verdict_, passed):
    step = _Step(before, after, max_drop)
    fields = step.gate_fields()
    assert fields["gate_verdicts"] == {"max_accuracy_drop": verdict_}
    assert fields["passed"] is passed and step.passed is passed


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


def _unscored_results():
    """A sweep whose variants were never scored (no data), one of them never timed."""
    results = SweepResults(
        model="m", metric_name=None, higher_is_better=True, n_samples=0, bench={}, machine={},
        baseline="baseline",
        variants=[_variant("baseline", None, 10.0, 400), _variant("fast", None, 2.0, 100)],
    )  # fmt: skip
    results.variants.append(VariantResult("untimed", "untimed", "torch", "untimed", 1, 1, 50))
    derive(results)
    return results


def test_a_gate_without_its_figure_never_passes_a_sweep():
    results = _unscored_results()
    fast, untimed = results.variant("fast"), results.variant("untimed")
    # No drop measured: not judged, so a failure, whatever the allowance's sign (gate.passes
    # used to let a missing drop through, failures() only a non-negative allowance).
    for allowance in (1.0, -1.0):
        assert failures(results, fast, Gates(allowance)) == [
            "fast: max_accuracy_drop could not be judged (no metric was measured)"
        ]
    assert failures(results, untimed, Gates(min_speedup=1.5)) == [
        "untimed: min_speedup could not be judged (no timing was measured)"
    ]
    # A drop allowance selects nothing it cannot judge; no allowance selects the fastest.
    assert choose(results, Selection("best-under-drop", 1.0)) is None
    assert choose(results, Selection("best-under-drop", math.inf)).name == "fast"


def test_each_gates_verdict_in_results(tmp_path):
    results = _results()
    fast = results.variant("fast")
    verdicts = judge(results, fast, Gates(1.0, 3.0))
    assert {gate: v for gate, (v, _) in verdicts.items()} == {
        "max_accuracy_drop": PASSED, "min_speedup": FAILED, "max_size": NOT_JUDGED,
    }  # fmt: skip
    results.selected, results.gates = "fast", {"max_accuracy_drop": 1.0, "min_speedup": 3.0}
    assert results.to_dict()["gate_verdicts"] == {
        "max_accuracy_drop": "passed", "min_speedup": "failed", "max_size": "not judged",
    }  # fmt: skip
    results.save(tmp_path / "results.json")
    assert SweepResults.load(tmp_path).gate_verdicts == results.gate_verdicts
    results.selected = None  # nothing qualified: nothing was judged
    assert set(results.gate_verdicts.values()) == {"not judged"}


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ({"gates": {"max_accuracy_drop": 1.0}}, "gates: max_accuracy_drop needs data"),
        ({"select": "best-under-drop=1"}, "select best-under-drop=1: without data no variant's"),
        ({"select": "quantize(int8)"}, "select quantize(int8): no such variant; variants: "
                                       "baseline, export()"),
        ({"eval_data": "held-out.csv"}, "eval_data: the variants are scored only in a run with"),
        ({"variants": None, "tune": {"budget": "5m"}, "gates": {"min_speedup": 2}},
         "gates: min_speedup is not judged by a tune: search"),
        ({"variants": None, "tune": {"budget": "5m"}, "select": "best-under-drop=1"},
         "select best-under-drop=1: a tune: search selects by itself"),
    ],
)  # fmt: skip
def test_gates_and_selections_a_run_could_not_judge_fail_before_any_work(raw, phrase):
    with pytest.raises(ConfigError) as error:
        check_plan(plan_from({**BASE, **raw}))
    assert phrase in str(error.value) and error.value.exit_code == 2
