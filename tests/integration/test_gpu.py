"""CUDA paths, run where a GPU is present (skipped elsewhere by the `gpu` marker)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

pytestmark = pytest.mark.gpu
runner = CliRunner()


def test_bench_on_cuda(tiny_classifiers):
    args = ["bench", str(tiny_classifiers["bert"]), "--device", "cuda", "--runs", "4", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    (bench,) = json.loads(result.stdout)["results"]
    assert bench["machine"]["gpu"] and bench["latency"][0]["device"] == "cuda"
    assert 0 < bench["peak_memory_bytes"] < 2**30


def test_finetune_with_mixed_precision_on_cuda(tiny_lms, order_csv, tmp_path):
    out = str(tmp_path / "o")
    args = ["finetune", str(tiny_lms["bert"]), "-d", str(order_csv), "-o", out, "--max-steps", "5",
            "--device", "cuda", "--mixed-precision", "auto", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["train"]["steps"] == 5


def test_eval_on_cuda_matches_cpu(trained_classifier, order_csv):
    scores = []
    for device in ("cpu", "cuda"):
        args = ["eval", str(trained_classifier), "-d", str(order_csv), "--split", "test",
                "--device", device, "--json"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        scores.append(json.loads(result.stdout)["metrics"]["accuracy"])
    assert scores[0] == pytest.approx(scores[1], abs=0.01)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_bench_precisions_on_cuda(precision, tiny_classifiers):
    args = ["bench", str(tiny_classifiers["bert"]), "--device", "cuda", "--precision", precision,
            "--runs", "4", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    (bench,) = json.loads(result.stdout)["results"]
    assert bench["runtime"] == f"torch {precision}" and bench["peak_memory_bytes"] > 0


def test_gpu_benchmark_on_cuda(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "benchmarks" / "gpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", "--work", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    timed = {row["variant"] for row in json.loads(done.stdout)["rows"]}
    assert {"torch fp32", "torch tf32", "torch fp16", "torch fp16 compiled"} <= timed
