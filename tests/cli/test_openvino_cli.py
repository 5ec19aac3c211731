"""OpenVINO as a user reaches it: IR exports, the openvino quantize backend, eval, bench, run
(OpenVINO and NNCF are in squeeze's base install)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.artifact.read import load_export
from squeeze.cli.main import app
from squeeze.model.tiny import FAMILIES

runner = CliRunner()
FAST = ("--seq", "16", "--runs", "3", "--warmup", "1", "--rounds", "1")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("family", FAMILIES)
def test_ir_export_is_validated_and_runs_everywhere(family, tiny_classifiers, order_csv, tmp_path):
    out = tmp_path / "ir"
    result = invoke("export", tiny_classifiers[family], "-o", out, "--format", "openvino", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "openvino" and report["file"] == "openvino_model.xml"
    assert report["validation"]["max_abs_diff"] <= report["validation"]["tolerance"] == 1e-4
    assert (out / "openvino_model.bin").is_file() and not (out / "model.onnx").exists()
    scores = {}
    for model in (tiny_classifiers[family], out):
        scored = invoke("eval", model, "-d", order_csv, "--max-samples", "40", "--json")
        assert scored.exit_code == 0, scored.stderr
        report = json.loads(scored.stdout)
        scores[report["runtime"]] = report["metrics"]["accuracy"]
    assert scores["openvino"] == scores["torch"]
    info = json.loads(invoke("info", out, "--json").stdout)
    assert info["format"] == "openvino" and info["params_total"] > 10_000


@pytest.mark.parametrize(
    ("dtype", "extra", "mode"),
    [
        ("int8", (), "weight-only int8_asym"),
        ("int8", ("--static",), "static int8 (NNCF, transformer)"),
        ("int4", ("--block-size", "16"), "weight-only int4_asym"),
        ("bf16", (), "bf16 compute, fp16 weights"),
        ("int8", ("--static", "--compute", "bf16"), "static int8 (NNCF, transformer)"),
    ],
)
def test_openvino_backend(dtype, extra, mode, trained_classifier, order_csv, tmp_path):
    out = tmp_path / "ov"
    result = invoke(
        "quantize", trained_classifier, "-o", out, "--backend", "openvino", "--dtype", dtype,
        *extra, "-d", order_csv, "--max-length", "32", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "openvino" and summary["drop_points"] < 5
    assert summary["agreement"]["top1_agreement"] >= 0.9
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "openvino" and manifest["dtype"] == dtype
    assert manifest["quantization"]["mode"] == mode
    # An IR computes in f32 wherever it runs unless bf16 was asked for (OpenVINO's own default
    # on CPUs with bf16 is bf16, whatever the IR holds).
    precision = "bf16" if dtype == "bf16" or "--compute" in extra else "f32"
    assert manifest.get("inference_precision", "f32") == precision
    assert load_export(out).session.precision == precision
    bench = invoke("bench", out, *FAST, "--json")
    assert bench.exit_code == 0, bench.stderr
    assert json.loads(bench.stdout)["results"][0]["runtime"] == "openvino"


def test_bench_a_checkpoint_on_every_runtime(tiny_classifiers, tmp_path):
    model = tiny_classifiers["bert"]
    result = invoke("bench", model, "--runtime", "torch,onnxruntime,openvino", *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    runtimes = [r["runtime"] for r in json.loads(result.stdout)["results"]]
    assert runtimes == ["torch", "onnxruntime", "openvino"]


def test_recipe_with_an_openvino_variant(trained_classifier, order_csv, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {trained_classifier}\ndata:\n  source: {order_csv}\n  max_samples: 200\n"
        "max_length: 32\nbench: {batch: 1, runs: 3, rounds: 1, warmup: 1}\nvariants:\n"
        "  - quantize(int8)\n  - quantize(int8, openvino)\n"
    )
    out = tmp_path / "out"
    result = invoke("run", recipe, "-o", out, "--cache-dir", tmp_path / "cache", "--quiet")
    assert result.exit_code == 0, result.stderr
    variants = json.loads((out / "results.json").read_text())["variants"]
    assert [v["format"] for v in variants] == ["torch", "onnxruntime", "openvino"]


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (("export", "--format", "openvino", "--optimize"), 2, "--optimize fuses into ONNX"),
        (("quantize", "--backend", "openvino", "--dtype", "int4", "--static"), 2, "--static"),
        (("quantize", "--backend", "openvino", "--dtype", "bf16", "--static"), 2, "bf16 needs"),
        (("quantize", "--backend", "onnxruntime", "--compute", "bf16"), 2, "--backend openvino"),
        (("export", "--format", "tflite"), 2, "--format"),
    ],
)
def test_bad_openvino_requests(args, code, phrase, tiny_classifiers, tmp_path):
    command, *rest = args
    result = invoke(command, tiny_classifiers["bert"], "-o", tmp_path / "x", *rest)
    assert result.exit_code == code, (result.stderr, result.exception)
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1
