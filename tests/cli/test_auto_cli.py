"""``--backend auto`` as a user runs it: every candidate built, timed, gated; the winner written."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from squeeze.artifact.read import read_manifest
from squeeze.cli.main import app
from squeeze.methods.quantize.openvino import bf16_problem

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def auto_candidates(model, out):
    """``quantize --backend auto`` without data: its candidates by label."""
    result = invoke("quantize", model, "-o", out, "--backend", "auto", "--json")
    assert result.exit_code == 0, result.stderr
    return {c["label"]: c for c in json.loads(result.stdout)["auto"]["candidates"]}


def test_auto_builds_every_candidate_and_keeps_the_fastest_within_the_gate(
    trained_classifier, order_csv, tmp_path
):
    out = tmp_path / "auto"
    result = invoke(
        "quantize", trained_classifier, "-o", out, "--backend", "auto", "-d", order_csv,
        "--max-length", "32", "--max-accuracy-drop", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    auto = summary["auto"]
    built = [c for c in auto["candidates"] if "skipped" not in c]
    labels = {c["label"] for c in built}
    assert {"onnxruntime dynamic", "onnxruntime static", "torch torchao"} <= labels
    assert {"openvino weight-only", "openvino static"} <= labels
    bf16 = next(c for c in auto["candidates"] if c["label"] == "openvino bf16")
    assert ("skipped" in bf16) == (bf16_problem() is not None)
    (winner,) = [c for c in built if c["chosen"]]
    passing = [c for c in built if c["passed"]]
    assert winner["p50_ms"] == min(c["p50_ms"] for c in passing)
    assert all(c["metric"]["n_samples"] == summary["metric_after"]["n_samples"] for c in built)
    assert summary["metric_after"]["metrics"] == winner["metric"]["metrics"]
    assert auto["machine"]["isa"] and auto["timing"]["seq_len"] == 32
    assert auto["reference"]["p50_ms"] > 0 and all(c["speedup"] > 0 for c in built)
    assert any(n.startswith("backend auto chose") for n in summary["notes"])
    # What was written is the winner, runnable as deployed.
    if winner["backend"] in ("onnxruntime", "openvino"):
        assert read_manifest(out)["quantization"]["backend"] == winner["backend"]
    else:
        assert (out / "config.json").is_file()
    scored = invoke("eval", out, "-d", order_csv, "--split", "test", "--max-length", "32", "--json")
    assert scored.exit_code == 0, scored.stderr
    assert json.loads(scored.stdout)["metrics"] == winner["metric"]["metrics"]


def test_auto_lists_what_it_could_not_build_and_why(monkeypatch, tiny_lms, tmp_path):
    """GPT-2 keeps its weights in Conv1D (torchao has nothing to quantize); without data the
    static candidates calibrate on squeeze's built-in text, and there is no gate."""
    from squeeze.methods.quantize import auto

    wanted = {"onnxruntime static", "openvino static", "torch torchao"}
    monkeypatch.setitem(
        auto.CANDIDATES, "int8", tuple(c for c in auto.CANDIDATES["int8"] if c[0] in wanted)
    )
    result = invoke(
        "quantize", tiny_lms["gpt2"], "-o", tmp_path / "q", "--backend", "auto", "--json"
    )
    assert result.exit_code == 0, result.stderr
    auto = json.loads(result.stdout)["auto"]
    skipped = {c["label"]: c["skipped"] for c in auto["candidates"] if "skipped" in c}
    assert "onnxruntime static" not in skipped and "openvino static" not in skipped
    assert "Conv1D" in skipped["torch torchao"]
    assert not auto["gated"]
    assert any("no accuracy gate" in n for n in json.loads(result.stdout)["notes"])


def test_auto_int4_candidates(tiny_lms, tmp_path):
    result = invoke(
        "quantize", tiny_lms["llama"], "-o", tmp_path / "q", "--dtype", "int4", "--backend",
        "auto", "--block-size", "16", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    auto = json.loads(result.stdout)["auto"]
    labels = {c["label"]: c for c in auto["candidates"]}
    assert "p50_ms" in labels["onnxruntime int4"]
    assert set(labels) == {"onnxruntime int4", "openvino int4", "bitsandbytes int4"}


def test_auto_refuses_static(trained_classifier, order_csv, tmp_path):
    result = invoke(
        "quantize", trained_classifier, "-o", tmp_path / "q", "--backend", "auto", "--static",
        "-d", order_csv,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--backend auto tries static and dynamic" in result.stderr
    assert not (tmp_path / "q").exists()


def test_auto_with_a_gate_nobody_passes_writes_nothing(
    two_candidates, trained_classifier, order_csv, tmp_path
):
    """A negative allowance cannot be met: the least-dropping candidate is refused by the gate."""
    out = tmp_path / "q"
    result = invoke(
        "quantize", trained_classifier, "-o", out, "--backend", "auto", "-d", order_csv,
        "--max-length", "32", "--max-accuracy-drop", "-50", "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    auto = json.loads(result.stdout)["auto"]
    assert not any(c.get("passed") for c in auto["candidates"])
    assert not out.exists()


def test_a_candidate_that_fails_or_lacks_its_cpu_is_skipped_with_its_reason(
    monkeypatch, tiny_classifiers, tmp_path
):
    """A third-party quantizer raising on this model costs one candidate, not the step; bf16
    stands in for int8 only on a CPU that computes bf16 (here: an AVX2-only one)."""
    import dataclasses

    from squeeze.engine import registry
    from squeeze.measure import machine
    from squeeze.methods.quantize import auto

    def boom(*args):
        raise RuntimeError("kernel not built for this CPU\nmore detail")

    failing = dataclasses.replace(registry.backends()["torch"], quantize=boom)
    monkeypatch.setitem(registry._BACKENDS, "torch", failing)
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})
    int8 = (
        ("onnxruntime dynamic", "onnxruntime", {}),
        ("torch torchao", "torch", {}),
        ("openvino static+bf16", "openvino", {"static": True, "compute": "bf16"}),
        ("openvino bf16", "openvino", {"dtype": "bf16"}),
    )
    monkeypatch.setitem(auto.CANDIDATES, "int8", int8)
    candidates = auto_candidates(tiny_classifiers["bert"], tmp_path / "q")
    assert candidates["torch torchao"]["skipped"] == (
        "failed here: RuntimeError: kernel not built for this CPU"
    )
    assert "no bf16 arithmetic" in candidates["openvino bf16"]["skipped"]
    assert "no bf16 arithmetic" in candidates["openvino static+bf16"]["skipped"]
    assert candidates["onnxruntime dynamic"]["chosen"]


def test_auto_is_a_recipe_step(two_candidates, trained_classifier, order_csv, tmp_path):
    """`quantize(int8, auto)` in a recipe: the chosen artifact is measured like any variant."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {trained_classifier}\ndata:\n  source: {order_csv}\n  max_samples: 300\n"
        "max_length: 32\nbench: {batch: 1, runs: 5, rounds: 1, warmup: 1}\n"
        "variants:\n  - quantize(int8, auto)\n"
    )
    out = tmp_path / "out"
    result = invoke("run", recipe, "-o", out, "--cache-dir", tmp_path / "cache", "--json",
                    "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    names = [v["name"] for v in results["variants"]]
    # The suite pins onnxruntime ($SQUEEZE_BACKEND), so naming auto is not naming the default.
    assert "quantize(dtype=int8, backend=auto)" in names
