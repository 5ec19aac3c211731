"""`squeeze export` and `squeeze bench` as a user calls them."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import squeeze.methods.export.validate as onnx_export
from squeeze.cli.main import app

runner = CliRunner()
FAST = ("--seq", "16", "--runs", "4", "--warmup", "1", "--rounds", "2")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_export_json_then_refuse_then_overwrite(tiny_classifiers, tmp_path):
    out = tmp_path / "onnx"
    result = invoke("export", tiny_classifiers["gpt2"], "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == "sequence-classification" and report["size"]["bytes_on_disk"] > 0
    before = (out / "model.onnx").read_bytes()

    again = invoke("export", tiny_classifiers["llama"], "-o", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert (out / "model.onnx").read_bytes() == before

    replaced = invoke("export", tiny_classifiers["llama"], "-o", out, "--overwrite", "--optimize")
    assert replaced.exit_code == 0 and "validation" in replaced.stdout
    assert json.loads((out / "manifest.json").read_text())["family"] == "llama"


def test_export_tolerance_breach_exits_5(tiny_classifiers, tmp_path, monkeypatch):
    real = onnx_export.torch_forward
    monkeypatch.setattr(
        onnx_export, "torch_forward", lambda model, **kw: lambda x: real(model, **kw)(x) - 1
    )
    result = invoke("export", tiny_classifiers["bert"], "-o", tmp_path / "bad")
    assert result.exit_code == 5
    assert result.stderr.startswith("error: ONNX export disagrees with PyTorch")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_export_is_scored_like_the_checkpoint(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "onnx"
    assert invoke("export", trained_classifier, "-o", out, "--optimize").exit_code == 0
    scores = {}
    for model in (trained_classifier, out):
        result = invoke("eval", model, "-d", order_csv, "--split", "test", "--json")
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        scores[report["runtime"]] = report["metrics"]["accuracy"]
    assert scores["onnxruntime"] == scores["torch"] >= 0.9


def test_bench_json_is_sane(tiny_classifiers):
    result = invoke("bench", tiny_classifiers["distilbert"], "--batch", "1,2", *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    (bench,) = json.loads(result.stdout)["results"]
    assert [lat["batch"] for lat in bench["latency"]] == [1, 2]
    for lat in bench["latency"]:
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] and lat["throughput_per_s"] > 0
        assert lat["runs"] == 4 and lat["seq_len"] == 16 and lat["threads"] >= 1
    assert bench["size"]["params_total"] > 0 and bench["peak_memory_bytes"] > 0
    assert bench["machine"]["cpu"] and bench["settings"]["runs"] == 4


def test_bench_compares_backends_in_one_run(tiny_classifiers):
    result = invoke("bench", tiny_classifiers["bert"], "--runtime", "torch,onnxruntime", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "torch" in result.stdout and "onnxruntime" in result.stdout and "vs 1st" in result.stdout
    assert "exported" in result.stderr


def test_bench_static_export_needs_its_shape(tiny_classifiers, tmp_path):
    out = tmp_path / "static"
    args = ("export", tiny_classifiers["bert"], "-o", out, "--static-shapes", "--batch", "2")
    assert invoke(*args, "--seq", "16").exit_code == 0
    wrong = invoke("bench", out, *FAST)
    assert wrong.exit_code == 2 and "--batch 2 --seq 16" in wrong.stderr
    assert invoke("bench", out, "--batch", "2", *FAST).exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (("--runtime", "torch"), 2, "runs on --runtime onnxruntime"),
        (("--runtime", "tflite"), 2, "unknown --runtime tflite"),
        (("--batch", "1,x"), 2, "comma-separated integers"),
    ],
)
def test_bench_bad_options(args, code, phrase, tiny_classifiers, tmp_path):
    out = tmp_path / "onnx"
    invoke("export", tiny_classifiers["bert"], "-o", out)
    result = invoke("bench", out, *args, *FAST)
    assert result.exit_code == code and phrase in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
@pytest.mark.parametrize("command", ["bench", "export-then-bench"])
def test_cuda_without_gpu_is_a_clear_error(command, tiny_classifiers, tmp_path):
    model = tiny_classifiers["bert"]
    if command == "export-then-bench":
        model = tmp_path / "onnx"
        invoke("export", tiny_classifiers["bert"], "-o", model)
    result = invoke("bench", model, "--device", "cuda", *FAST)
    assert result.exit_code == 4 and "no CUDA device on this machine" in result.stderr
