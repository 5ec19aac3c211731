"""Training under a multi-process launcher (what `accelerate launch --multi_gpu` runs: torch's
elastic launcher), here over gloo on two CPU processes: same command line, no code changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_distill_on_two_processes(trained_classifier, order_csv, tmp_path):
    out = tmp_path / "student"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29533", "-m", "squeeze",
        "distill", str(trained_classifier), "--data", str(order_csv), "-o", str(out),
        "--student-layers", "1", "--max-steps", "6", "--batch-size", "16", "--max-length", "32",
        "--max-samples", "400", "--no-bench", "--quiet", "--json",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # only the main process prints
    assert summary["train"]["processes"] == 2 and summary["written"]
    assert "trained on 2 processes" in " ".join(summary["notes"])
    assert (out / "model.safetensors").is_file() and not (tmp_path / "student.checkpoint").exists()
