"""The Train-Large-Then-Compress example and the CI snippets run and say what exists.

The CI workflow cannot run here, so its squeeze command lines are checked against the real
commands' options (a renamed option would otherwise break users' pipelines silently), and
gate.sh, which runs the same commands, runs for real on a tiny trained classifier.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
CI = EXAMPLES / "ci"
SQUEEZE = Path(sys.executable).parent / "squeeze"


def _env() -> dict[str, str]:
    """Offline, and one thread per process: tiny models gain nothing from more, and spinning
    threads on a busy 2-core machine multiply the run time."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_train_large_then_compress_quick(tmp_path):
    out = tmp_path / "tltc"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_large_then_compress.py"), "--quick", "--seeds",
         "0,1", "--out", str(out)],
        capture_output=True, text=True, env=_env(), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {"baseline", "int8", "slim30-int8", "slim50-int8", "slim70-int8", "half-depth-int8"}
    for seed in (0, 1):
        run = out / f"seed-{seed}"
        table = (run / "comparison.md").read_text()
        assert "| model | variant | accuracy | vs own baseline (points) |" in table
        assert (run / "comparison.png").stat().st_size > 10_000
        summary = json.loads((run / "comparison.json").read_text())
        assert summary["seed"] == seed
        variants = {(p["model"], p["variant"]) for p in summary["points"]}
        assert variants == {(m, v) for m in ("small", "large") for v in expected}
        for model in ("small", "large"):
            results = json.loads((run / "sweeps" / model / "results.json").read_text())
            assert {v["name"] for v in results["variants"]} == expected
            assert summary["models"][model]["steps"] >= 2
        assert all(0 <= p["accuracy"] <= 1 and p["latency_ms"] > 0 for p in summary["points"])
        # Every budget's difference carries its paired interval; a tie is an interval with 0.
        assert "large - small (points, 95%)" in table
        for row in summary["budgets"]["latency_ms"] + summary["budgets"]["bytes"]:
            low, high = row["interval_points"]
            assert low <= 100 * row["delta"] + 1e-9 and 100 * row["delta"] - 1e-9 <= high
            assert (row["winner"] == "tie") == (low <= 0 <= high)
        # Half depth means half the layers: the tiny models have 2 and 4.
        half = {
            p["model"]: p["params"] for p in summary["points"] if p["variant"] == "half-depth-int8"
        }
        base = {p["model"]: p["params"] for p in summary["points"] if p["variant"] == "baseline"}
        assert all(half[m] < base[m] for m in base)
    # The verdict is printed whichever model wins, and the seeds are put side by side.
    assert "At equal latency:" in done.stdout and "At equal size:" in done.stdout
    overview = (out / "summary.md").read_text()
    assert "over 2 seed(s)" in overview
    assert [s["seed"] for s in json.loads((out / "summary.json").read_text())["seeds"]] == [0, 1]
    assert (out / "summary.png").stat().st_size > 10_000


def test_train_large_then_compress_rejects_bad_options(tmp_path):
    script = str(EXAMPLES / "train_large_then_compress.py")
    for args in (["--seeds", "0,x"], ["--small", "x"], ["--real", "--quick"]):
        done = subprocess.run(
            [sys.executable, script, *args, "--out", str(tmp_path)],
            capture_output=True, text=True, env=_env(), check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, args
        assert "error:" in done.stderr and "Traceback" not in done.stderr


def _squeeze_lines(workflow: dict) -> list[list[str]]:
    """Every squeeze invocation in the workflow's run steps, as argument lists."""
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                words = shlex.split(line)
                if words and words[0] == "squeeze":
                    commands.append(words)
    return commands


def _options(subcommand: str) -> set[str]:
    """The option names the real command accepts, from its click definition."""
    import typer

    from squeeze.cli.main import app

    command = typer.main.get_command(app).commands[subcommand]
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts)}


def test_workflow_parses_and_uses_real_options():
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    assert set(workflow["jobs"]) == {"prune-and-quantize", "recipe"}
    commands = _squeeze_lines(workflow)
    used = {words[1] for words in commands}
    assert {"prune", "quantize", "run", "finetune"} <= used
    for words in commands:
        known = _options(words[1])
        flags = {w.split("=", 1)[0] for w in words[2:] if w.startswith("-")}
        assert flags <= known, f"squeeze {words[1]}: unknown {sorted(flags - known)}"
    recipe = next(w for w in commands if w[1] == "run")
    assert (ROOT / recipe[2]).is_file()  # the recipe the job runs exists
    # The gates and uploads that make it a CI gate are there.
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    uploads = "\n".join(s["with"]["path"] for s in steps if "upload-artifact" in s.get("uses", ""))
    for path in ("prune.json", "quantize.json", "results/report", "results/selected"):
        assert path in uploads


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory, order_csv):
    """A tiny BERT trained on the order task for a few seconds, on one thread."""
    import torch

    from squeeze.data.spec import DataSpec
    from squeeze.methods.finetune import finetune
    from squeeze.model.tiny import build_tiny
    from squeeze.train.loop import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_tiny("bert", tmp_path_factory.mktemp("gate") / "base")
        out = tmp_path_factory.mktemp("gate") / "order"
        config = TrainConfig(epochs=6, lr=3e-3, warmup_ratio=0.05)
        finetune(str(base), DataSpec(str(order_csv)), out, config=config, max_length=32)
    finally:
        torch.set_num_threads(threads)
    return out


def _gate(model: Path, data: Path, out: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {**_env(), "SQUEEZE": str(SQUEEZE), "MAX_LENGTH": "32", "FINETUNE_STEPS": "20",
           **settings}  # fmt: skip
    return subprocess.run(
        ["bash", str(CI / "gate.sh"), str(model), str(data), str(out)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def test_gate_script_passes(small_classifier, order_csv, tmp_path):
    # Pruning cost this model 0.3 points here; 5 leaves room for other machines' arithmetic.
    done = _gate(small_classifier, order_csv, tmp_path, MAX_DROP="5")
    assert done.returncode == 0, done.stderr[-3000:]
    prune = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    quantize = json.loads((tmp_path / "int8" / "quantize.json").read_text())
    assert prune["passed"] and quantize["passed"]
    assert (tmp_path / "int8" / "model.onnx").is_file()


def test_gate_script_fails_the_job_when_a_gate_fails(small_classifier, order_csv, tmp_path):
    # Demanding a 50-point improvement cannot pass: exit 1 and nothing written.
    done = _gate(small_classifier, order_csv, tmp_path, MAX_DROP="-50", FINETUNE_STEPS="0")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "prune exited 1 (a gate failed)" in done.stderr
    assert not (tmp_path / "pruned").exists() and not (tmp_path / "int8").exists()
