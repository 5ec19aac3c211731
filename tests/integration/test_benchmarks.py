"""The benchmark scripts stay runnable (their figures are taken by hand, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[2] / "benchmarks").glob("*.py"))


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
