"""Honest gates and checked recipes, through the real CLI (``python -m squeeze``).

A gate the run could not judge (an accuracy gate or a drop allowance without data, what a tune
search does not judge, a selection naming no variant) and a recipe value of the wrong type are
usage errors: exit 2, one line naming the place and the fix, before any work (no output, no
cache entry, in seconds). Every judged gate states its verdict: ``passed``, ``failed`` or
``not judged``, never a pass for what was not measured.
"""

from __future__ import annotations

import json
import time

import pytest
from test_faults import assert_clean_failure, squeeze

from squeeze.model.tiny import build_tiny, write_order_task

# Seconds a refusal may take: start-up and reading the model's config, far less than building
# and timing a variant on these machines.
QUICK_S = 30


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build_tiny("bert", tmp_path_factory.mktemp("bert") / "bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_order_task(tmp_path_factory.mktemp("data") / "order.csv", 400, seed=0)


def _refused_before_any_work(args, phrase, tmp_path, code=2):
    """Run ``args`` (``{out}`` and ``{cache}`` filled in); assert one line, ``code``, nothing
    written or built, quickly."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    filled = [str(a).format(out=out, cache=cache) for a in args]
    start = time.monotonic()
    result = squeeze(*filled)
    elapsed = time.monotonic() - start
    assert_clean_failure(result, code, phrase, out)
    assert not cache.exists(), "a variant was built"
    assert elapsed < QUICK_S, f"refused after {elapsed:.0f} s: after the work, not before"


TUNE = "tune: {budget: 5m, amounts: [0.5]}\n"


@pytest.mark.parametrize(
    ("args", "recipe", "phrase"),
    [
        # The case: an accuracy gate with nothing to measure it on.
        (["--max-accuracy-drop", "1"], None,
         "gates: --max-accuracy-drop needs --data: without a metric measured before and after"),
        (["--select", "best-under-drop=1"], None,
         "select best-under-drop=1: without --data no variant's drop can be judged"),
        (["--select", "quantize(int8)"], None,
         "select quantize(int8): no such variant; variants: baseline, quantize(dtype=int8)"),
        ([], "eval_data: {data}\n", "eval_data: the variants are scored only in a run with --data"),
        # --eval-data on the command line was dropped when the data came from nowhere.
        (["--eval-data", "held-out.csv"], None, "--eval-data goes with --data"),
        # A tune search keeps the fastest variant within its own allowance: it judges no
        # speed-up, size or selection, so those are refused rather than ignored.
        (["--min-speedup", "2"], "data: {data}\n" + TUNE,
         "gates: --min-speedup is not judged by a tune: search"),
        (["--max-size", "50MB"], "data: {data}\n" + TUNE,
         "gates: --max-size is not judged by a tune: search"),
        (["--select", "best-under-drop=1"], "data: {data}\n" + TUNE,
         "select best-under-drop=1: a tune: search selects by itself"),
    ],
)  # fmt: skip
def test_a_run_refuses_what_it_could_not_judge(bert, data, tmp_path, args, recipe, phrase):
    if recipe is None:
        source = ["--model", bert, "--variant", "quantize(int8)"]
    else:
        path = tmp_path / "recipe.yaml"
        body = recipe.replace("{data}", str(data))
        variants = "" if "tune" in body else "variants: [quantize(int8)]\n"
        path.write_text(f"model: {bert}\nmax_length: 32\n{variants}{body}")
        source = [path]
    _refused_before_any_work(
        ["run", *source, "-o", "{out}", "--cache-dir", "{cache}", *args], phrase, tmp_path
    )


@pytest.mark.parametrize(
    "command",
    [
        ["quantize", "--dtype", "int8"],
        ["prune", "--method", "magnitude", "--sparsity", "0.5"],
    ],
)
def test_a_step_refuses_a_gate_without_data(bert, tmp_path, command):
    name, *options = command
    _refused_before_any_work(
        [name, bert, "-o", "{out}", *options, "--max-accuracy-drop", "1"],
        "--max-accuracy-drop needs --data: without a metric measured before and after",
        tmp_path,
    )


def test_a_library_step_that_is_not_scored_refuses_a_gate(bert, data, tmp_path):
    """``StepOptions(measure=False)`` (how a sweep builds) scores nothing: a gate is refused."""
    from squeeze.core.errors import ConfigError
    from squeeze.data.spec import DataSpec
    from squeeze.engine.runner import run_step
    from squeeze.engine.step import StepOptions
    from squeeze.methods.prune.magnitude import MagnitudePruneConfig

    options = StepOptions(data=DataSpec(str(data)), measure=False, max_accuracy_drop=1.0)
    with pytest.raises(ConfigError, match="cannot be judged with measure=False"):
        run_step(bert, MagnitudePruneConfig(sparsity=0.5), tmp_path / "out", options)
    assert not (tmp_path / "out").exists()


BASE = "model: {model}\ndata: {{source: {data}, max_samples: 200}}\nmax_length: 32\n"


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        # The cases: each was a traceback with exit 1, the last after all the work.
        ("max_length: abc\n", "max_length: expected an integer, got 'abc'"),
        ("bench: {runs: thirty}\n", "bench.runs: expected an integer, got 'thirty'"),
        ("data: {source: {data}, split_ratios: 0.5}\n",
         "data.split_ratios: expected a list of 3 numbers, got 0.5"),
        ("gates: {max_accuracy_drop: one}\n",
         "gates.max_accuracy_drop: expected a number, got 'one'"),
        ("bench: {threads: 0}\n", "bench: threads must be >= 1"),
        ("gates: {gate_on: maybe}\n", "gates.gate_on: expected one of point, upper, got 'maybe'"),
        ("tune: {budget: 5m}\ngates: {max_accuracy_drop: 1}\n",
         "gates.max_accuracy_drop: a tune: search keeps the fastest variant within its own"),
        # All at once, in one line.
        ("max_length: abc\nbench: {runs: thirty}\ngates: {max_accuracy_drop: one}\n",
         "max_length: expected an integer, got 'abc'; gates.max_accuracy_drop: expected a "
         "number, got 'one'; bench.runs: expected an integer, got 'thirty'"),
    ],
)  # fmt: skip
def test_a_recipe_value_of_the_wrong_type(bert, data, tmp_path, content, phrase):
    base = BASE.format(model=bert, data=data)
    if content.startswith("data:"):
        base = base.replace(base.splitlines()[1] + "\n", "")
    variants = "" if "tune" in content else "variants: [quantize(int8)]\n"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(base + variants + content.replace("{data}", str(data)))
    _refused_before_any_work(
        ["run", recipe, "-o", "{out}", "--cache-dir", "{cache}"], phrase, tmp_path
    )


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("recipe.yaml", b"model: m\nname: caf\xe9\n", "is not UTF-8 text (byte 18: 0xe9)"),
        ("recipe.yaml", bytes(range(256)), "is not UTF-8 text"),
        ("recipe.yaml", b"\x00\x01\x02 binary", "is not valid .yaml"),
        ("recipe.toml", b"model = [\n", "is not valid .toml"),
        ("recipe.yaml", b"- a list\n", "the top level must be a mapping"),
    ],
)
def test_a_recipe_that_is_not_yaml_or_toml_text(tmp_path, name, content, phrase):
    (tmp_path / name).write_bytes(content)
    _refused_before_any_work(
        ["run", tmp_path / name, "-o", "{out}", "--cache-dir", "{cache}"], phrase, tmp_path
    )


@pytest.mark.parametrize(
    ("gate", "code", "verdict"),
    [
        ([], 0, "not judged"),
        (["--max-accuracy-drop", "100"], 0, "passed"),
        (["--max-accuracy-drop", "-100"], 1, "failed"),  # a 100-point gain cannot happen
    ],
)
def test_a_steps_summary_states_its_gate_verdict(bert, data, tmp_path, gate, code, verdict):
    out = tmp_path / "pruned"
    result = squeeze(
        "prune", bert, "-o", out, "--method", "magnitude", "--sparsity", "0.3", "-d", data,
        "--max-samples", "200", "--max-length", "32", "--json", "--quiet", *gate,
    )  # fmt: skip
    assert result.returncode == code, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["gate_verdicts"] == {"max_accuracy_drop": verdict}
    assert summary["passed"] is (verdict != "failed")
    assert out.exists() is (code == 0)
    if code == 0:
        assert json.loads((out / "prune.json").read_text())["gate_verdicts"] == {
            "max_accuracy_drop": verdict
        }
