"""Every family through the commands a user runs, table-driven: the families with a spec beyond
the core five (whose own tests are parametrized elsewhere) and families squeeze has no spec for.

With a spec, structured pruning and layer-copy students work and their results reload, export to
ONNX and run in ONNX Runtime. Without one, every other command works from the config alone, and
those two refuse in one line naming what is supported.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.model.tiny import MORE_FAMILIES, NO_SPEC_FAMILIES

runner = CliRunner()
FAST = ("--seq", "16", "--runs", "3", "--warmup", "1", "--rounds", "1")
DATA = ("--max-length", "24", "--max-samples", "120")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args) -> dict:
    """Run a command with --json; its parsed output (the test fails with stderr otherwise)."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, (args[:2], result.stderr[-1500:])
    return json.loads(result.stdout)


def runs_in_onnxruntime(folder) -> None:
    (bench,) = ok("bench", folder, *FAST)["results"]
    assert bench["latency"][0]["p50_ms"] > 0 and bench["latency"][0]["runtime"] == "onnxruntime"


@pytest.mark.parametrize("family", (*MORE_FAMILIES, *NO_SPEC_FAMILIES))
def test_family_agnostic_commands(family, tiny_classifiers, order_csv, tmp_path):
    model = tiny_classifiers[family]
    facts = ok("info", model)
    assert facts["model_type"].replace("_", "-") == family.replace("_", "-")
    assert facts["params_total"] > 0 and facts["layers"] == 2
    metric = ok("eval", model, "-d", order_csv, *DATA)
    assert 0 <= metric["metrics"]["accuracy"] <= 1 and metric["n_samples"] == 120
    ok("quantize", model, "-o", tmp_path / "int8", "--dtype", "int8")
    runs_in_onnxruntime(tmp_path / "int8")
    exported = ok("export", model, "-o", tmp_path / "onnx")
    assert exported["validation"]["max_abs_diff"] < 1e-4
    sparse = ok("prune", model, "-o", tmp_path / "sparse", "--method", "magnitude",
                "--sparsity", "0.5")  # fmt: skip
    assert abs(sparse["sparsity"] - 0.5) < 0.01


@pytest.mark.parametrize("family", MORE_FAMILIES)
def test_structure_cutting_steps_with_a_spec(family, tiny_classifiers, order_csv, tmp_path):
    model = tiny_classifiers[family]
    shared = family == "albert"  # one block for all layers: heads and FFN only
    layers = () if shared else ("--layers", "1")
    ok("prune", model, "-o", tmp_path / "slim", "--method", "structured", "--heads", "0.5",
       "--ffn", "0.5", *layers)  # fmt: skip
    facts = ok("info", tmp_path / "slim")
    assert (facts["heads"], facts["intermediate_size"]) == (2, 32)
    assert facts["layers"] == (2 if shared else 1)
    ok("export", tmp_path / "slim", "-o", tmp_path / "slim-onnx")
    runs_in_onnxruntime(tmp_path / "slim-onnx")
    if shared:
        result = invoke("distill", model, "-o", tmp_path / "student", "-d", order_csv,
                        "--student-layers", "1", "--max-steps", "2", *DATA)  # fmt: skip
        assert result.exit_code == 4 and "no layers to copy" in result.stderr
        return
    ok("distill", model, "-o", tmp_path / "student", "-d", order_csv, "--student-layers", "1",
       "--max-steps", "2", *DATA)  # fmt: skip
    assert ok("info", tmp_path / "student")["layers"] == 1


@pytest.mark.parametrize("family", NO_SPEC_FAMILIES)
def test_structure_cutting_steps_without_a_spec_refuse_in_one_line(
    family, tiny_classifiers, order_csv, tmp_path
):
    model = tiny_classifiers[family]
    for args in (
        ("prune", model, "-o", tmp_path / "slim", "--method", "structured", "--heads", "0.5"),
        ("distill", model, "-o", tmp_path / "student", "-d", order_csv, "--student-layers", "1",
         "--max-steps", "2", *DATA),
    ):  # fmt: skip
        result = invoke(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 4 and len(lines) == 1, result.stderr
        assert "no spec for it (it has: albert, bert," in lines[0] and "--spec" in lines[0]
    assert not (tmp_path / "slim").exists() and not (tmp_path / "student").exists()


def _recipe(path, model, data, steps: list[str]):
    variants = "\n".join(f"  - {s}" for s in steps)
    path.write_text(
        f"model: {model}\ndata:\n  source: {data}\n  max_samples: 200\nmax_length: 24\n"
        f"bench: {{batch: 1, runs: 3, rounds: 1, warmup: 1, seq: 16}}\nvariants:\n{variants}\n"
    )
    return path


def test_a_family_without_a_spec_finetunes_quantizes_every_way_and_sweeps(
    tiny_classifiers, order_csv, tmp_path
):
    model = tiny_classifiers["opt"]
    tuned = ok("finetune", model, "-o", tmp_path / "tuned", "-d", order_csv, "--max-steps", "4",
               "--batch-size", "16", *DATA)  # fmt: skip
    assert tuned["train"]["steps"] == 4
    for backend in ("torch", "bitsandbytes"):
        summary = ok("quantize", tmp_path / "tuned", "-o", tmp_path / backend, "--dtype", "int8",
                     "--backend", backend)  # fmt: skip
        assert summary["backend"] == backend
    good = _recipe(tmp_path / "good.yaml", tmp_path / "tuned", order_csv,
                   ["quantize(int8)", "magnitude(sparsity=0.5) -> export()"])  # fmt: skip
    results = ok("run", good, "-o", tmp_path / "sweep", "--quiet")
    names = [v["name"] for v in results["variants"]]
    assert names[-2:] == ["quantize(dtype=int8)", "magnitude(sparsity=0.5) -> export()"]
    assert all(v["metric"] is not None for v in results["variants"])
    bad = _recipe(tmp_path / "bad.yaml", tmp_path / "tuned", order_csv,
                  ["quantize(int8)", "structured(heads=0.5)"])  # fmt: skip
    result = invoke("run", bad, "-o", tmp_path / "refused")
    assert result.exit_code == 4 and "variants[2] step 1" in result.stderr
    assert "no spec for it" in result.stderr and not (tmp_path / "refused").exists()
