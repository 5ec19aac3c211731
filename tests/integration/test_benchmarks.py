"""The benchmark scripts stay runnable (their figures are taken by hand, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Every script; helpers the scripts share are named with a leading underscore.
SCRIPTS = sorted(
    p for p in (Path(__file__).parents[2] / "benchmarks").glob("*.py") if not p.name.startswith("_")
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_imports_and_parses(script):
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_gpu_benchmark_runs_its_code_paths_on_the_cpu(tmp_path):
    """benchmarks/gpu.py's rows, on the CPU at a tiny shape: every row it can run here is timed,
    every other names its reason."""
    import json

    script = Path(__file__).parents[2] / "benchmarks" / "gpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--quick", "--json", "--work",
         str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    timed = {row["variant"] for row in report["rows"]}
    assert {"torch fp32", "torch fp16", "torch bf16", "torch fp16 compiled"} <= timed
    assert "onnxruntime fp16" in timed
    assert set(report["skipped"]) | timed >= {"torch tf32", "tensorrt fp16", "tensorrt int8"}
    assert all(row["p50_ms"] > 0 for row in report["rows"])


def test_int4_decoder_benchmark_quick(tmp_path):
    """benchmarks/int4_decoder.py on a tiny Llama: every variant built, timed and sized."""
    import json

    script = Path(__file__).parents[2] / "benchmarks" / "int4_decoder.py"
    done = subprocess.run(
        [sys.executable, str(script), "--shape", "quick", "--seq", "16", "--runs", "2", "--json",
         "--work", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["variant"]: row for row in json.loads(done.stdout)["rows"]}
    assert set(rows) == {"torch fp32", "onnx fp32", "onnx int8 dynamic", "onnx int4 (level 4)",
                         "onnx int4 (level 0)"}  # fmt: skip
    assert rows["onnx int4 (level 4)"]["bytes_on_disk"] < rows["onnx fp32"]["bytes_on_disk"]


def test_embedder_prune_benchmark_quick(tmp_path):
    """benchmarks/embedder_prune.py on a tiny embedder: each setting pruned through the CLI,
    scored by kNN accuracy and fidelity, and the best one timed beside the original."""
    import json

    script = Path(__file__).parents[2] / "benchmarks" / "embedder_prune.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--settings", "none,cosine:4:1e-3",
         "--max-length", "32", "--seq", "16", "--json", "--work", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = report["rows"]
    assert [r["setting"] for r in rows] == ["pruning alone", "cosine, 4 steps, lr 0.001"]
    assert all(r["params_after"] < r["params_before"] and 0 < r["fidelity"] <= 1 for r in rows)
    assert "recovery by distillation" in " ".join(rows[1]["notes"])
    assert set(report["latency_p50_ms"]["pruned"]) == {"1", "32"}
