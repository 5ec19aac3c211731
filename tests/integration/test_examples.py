"""Every example in examples/ runs on the tiny models and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_quickstart(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+) on (\d+)", done.stdout).group(1))
    assert accuracy >= 0.9
    assert (tmp_path / "tiny-bert-order" / "model.safetensors").is_file()


def test_demo_tune_recipe_runs_on_a_tiny_model(trained_classifier, order_csv, tmp_path):
    """The demo's tune recipe as written, on the tiny classifier instead of MiniLM."""
    import json

    from typer.testing import CliRunner

    from squeeze.cli.main import app

    result = CliRunner().invoke(app, [
        "run", str(EXAMPLES / "demo-tune.yaml"), "--model", str(trained_classifier),
        "--data", str(order_csv), "--max-length", "32", "--runs", "5",
        "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--json", "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    stages = {t["stage"] for t in summary["trace"]}
    assert {"quantize", "amount"} <= stages and summary["selected"]
