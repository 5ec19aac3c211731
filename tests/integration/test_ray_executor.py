"""``--executor ray``: variants and search candidates built as Ray tasks, alike.

On this machine: a local Ray instance with two workers builds a run's variants and a tune's
candidates; the results equal those of the local executor (same cache keys, bytes, metrics,
selection), each one names the worker that built it, and a worker killed mid-candidate is
retried. A head started with ``ray start --head`` on 127.0.0.1 is joined by address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

pytest.importorskip("ray")

VARIANTS = ["q=quantize(int8, onnxruntime)", "s=magnitude(sparsity=0.5)", "h=structured(heads=0.5)",
            "m=structured(heads=0.5) -> quantize(int8)"]  # fmt: skip
SEARCH = ("--max-length", "32", "--runs", "5", "--amounts", "0.25,0.5,0.75",
          "--recovery-steps", "30", "--layers", "1", "--quantize", "dynamic",
          "--max-accuracy-drop", "2", "--budget", "10m", "--json", "--quiet")  # fmt: skip


@pytest.fixture
def measured(monkeypatch):
    """The measured int8 default (no $SQUEEZE_BACKEND) with one candidate: it times the
    machine in its build, as a user's does, and chooses alike every time."""
    from squeeze.methods.quantize import auto

    monkeypatch.delenv("SQUEEZE_BACKEND")
    monkeypatch.setitem(auto.CANDIDATES, "int8", (("onnxruntime dynamic", "onnxruntime", {}),))


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _run(model, data, tmp_path, *extra):
    result = _invoke("run", "--model", model, "-d", data, "--runs", "3", "--json",
                     "--cache-dir", tmp_path / f"cache{len(extra)}",
                     "-o", tmp_path / f"out{len(extra)}",
                     *[a for v in VARIANTS for a in ("--variant", v)], *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    return {v["name"]: v for v in summary["variants"]}, summary["machine"]


def test_ray_builds_what_local_builds_on_two_workers(
    measured, tiny_classifiers, order_csv, tmp_path
):
    """And times on the node holding --timing-resource (here, a Ray worker process); a step
    that times the machine (the measured int8 default) is built there too, after a worker built
    the steps before it."""
    model = tiny_classifiers["bert"]
    local, here = _run(model, order_csv, tmp_path)
    ray, there = _run(model, order_csv, tmp_path, "--executor", "ray", "--workers", "2",
                      "--timing-resource", "timing")  # fmt: skip
    assert "timed_on" not in here
    assert there["timed_on"].startswith(socket.gethostname())
    assert int(there["timed_on"].rsplit(" ", 1)[1]) != os.getpid()
    assert all(v["latency"]["cpu"]["p50_ms"] > 0 for v in ray.values())
    assert set(ray) == set(local)
    for name, v in ray.items():
        same = ("metric", "params_total", "params_nonzero", "bytes_on_disk", "chain", "format")
        assert {k: v[k] for k in same} == {k: local[name][k] for k in same}, name
    workers = {n for v in ray.values() for n in v["notes"] if n.startswith("built by Ray worker")}
    assert len([v for v in ray.values() if v["name"] != "baseline"]) == 4 and workers
    assert not any("Ray" in n for v in local.values() for n in v["notes"])
    where = [n for n in ray["m"]["notes"] if n.startswith("built ")]
    assert where[0].startswith("built by Ray worker")
    assert where[1].startswith("built where latency is measured")
    assert not where[1].endswith(f" {os.getpid()})")  # on the timing node, not here


def _ray_builders() -> list[int]:
    """Ray worker processes running a build task now (Ray names them ``ray::_build``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_build"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Killer(threading.Thread):
    """Kills the first worker caught running a build task, as a node lost mid-candidate."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            for pid in _ray_builders():
                os.kill(pid, signal.SIGKILL)
                self.killed = pid
                break
            time.sleep(0.01)


def test_a_search_on_two_ray_workers_agrees_with_this_one_despite_a_killed_worker(
    measured, trained_classifier, order_csv, tmp_path
):
    """On either executor the measured int8 default chooses once, for the unpruned model (on
    Ray where latency is measured, here the driver), and names every pruned candidate's tail."""
    local = _invoke("tune", trained_classifier, "-d", order_csv, "-o", tmp_path / "local",
                    "--cache-dir", tmp_path / "cache-local", *SEARCH)  # fmt: skip
    assert local.exit_code == 0, local.output
    killer = Killer()
    killer.start()
    try:
        ray = _invoke("tune", trained_classifier, "-d", order_csv, "-o", tmp_path / "ray",
                      "--cache-dir", tmp_path / "cache-ray", *SEARCH,
                      "--executor", "ray", "--workers", "2")  # fmt: skip
    finally:
        killer.stop.set()
    assert ray.exit_code == 0, ray.output
    assert killer.killed, "no worker was caught training"
    here, there = json.loads(local.stdout), json.loads(ray.stdout)
    # Built on a worker or here, a candidate is the same model: the same validation verdict
    # for every candidate both searches tried (the wider search tries more). The choice among
    # those within budget is by latency, which on a model this tiny is noise (on a real model,
    # benchmarks/distributed.py checks that the two select the same).
    verdicts = [{t["chain"]: (t["outcome"], t["drop"]) for t in r["trace"] if t["drop"] is not None}
                for r in (here, there)]  # fmt: skip
    shared = verdicts[0].keys() & verdicts[1].keys()
    assert shared and all(verdicts[0][c] == verdicts[1][c] for c in shared)
    assert verdicts[1][there["selected"]][0] == "within"
    trace = there["trace"]
    assert not [t for t in trace if t["outcome"] == "failed"]  # the killed build was retried
    built = [t for t in trace if t["outcome"] in ("within", "over")]
    assert built and all(t["built_by"].startswith(socket.gethostname()) for t in built)
    assert not any(t["built_by"] for t in here["trace"])
    assert "built by" in (tmp_path / "ray" / "report" / "trace.md").read_text()
    assert trace[0]["built_by"] == f"{socket.gethostname()} pid {os.getpid()}"
    tail = "quantize(dtype=int8, backend=onnxruntime)"
    for name in ("local", "ray"):
        record = json.loads((tmp_path / name / "trace.json").read_text())
        pruned = [t["chain"] for t in record["trials"] if t["stage"] != "quantize"]
        assert record["tail"] == tail and all(c.endswith(f" -> {tail}") for c in pruned)
        # Only the unpruned model's quantization timed the backends.
        summaries = (tmp_path / f"cache-{name}").glob("*-quantize/quantize.json")
        assert sum("auto" in json.loads(f.read_text()) for f in summaries) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_head_started_with_ray_start_is_joined_by_address(tiny_classifiers, order_csv, tmp_path):
    """As a user joins a cluster: ``ray start --head`` (token authentication on, Ray's default,
    its token in ~/.ray/auth_token), then squeeze in a shell told to send the token."""
    ray_cli = Path(sys.executable).with_name("ray")
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1",
                    "--port", address.split(":")[1], "--num-cpus", "2",
                    "--include-dashboard", "false", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=120)  # fmt: skip
    try:
        args = ["run", "--model", tiny_classifiers["bert"], "-d", order_csv, "--runs", "3",
                "--json", "--cache-dir", tmp_path / "cache", "-o", tmp_path / "out",
                "--variant", VARIANTS[0], "--executor", "ray",
                "--ray-address", address]  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "squeeze", *map(str, args)], env=env,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        (variant,) = [v for v in json.loads(result.stdout)["variants"] if v["name"] == "q"]
        (note,) = [n for n in variant["notes"] if n.startswith("built by Ray worker")]
        assert int(note.rstrip(")").rsplit(" ", 1)[1]) != os.getpid()
        # A measurement no node can take would wait for ever: refused before any work.
        args[args.index("-o") + 1] = tmp_path / "timed"
        refused = subprocess.run([sys.executable, "-m", "squeeze", *map(str, args),
                                  "--timing-resource", "deploy"], env=env,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "no node of the Ray cluster has the resource 'deploy'" in refused.stderr
        assert not (tmp_path / "timed").exists()
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_task_lost_twice_is_a_failed_build():
    """A worker that dies on each of its two tries: a validation failure naming Ray (the
    search records the candidate as failed and goes on; a run fails with exit 5)."""
    import ray

    from squeeze.core.errors import ValidationError
    from squeeze.plan.ray_executor import _get, _outcome

    def dies() -> None:
        os._exit(1)

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ref = ray.remote(dies).options(max_retries=1).remote()
        outcome = _outcome(ray, lambda: _get(ray, ref), "by Ray worker")
    finally:
        ray.shutdown()
    assert isinstance(outcome, ValidationError) and "lost twice" in str(outcome)


def test_a_cluster_that_cannot_be_joined_is_refused_in_one_line(
    monkeypatch, tiny_classifiers, order_csv, tmp_path
):
    """What Ray says after its retries (a wrong address, or a token it was not given)."""
    import ray

    def refuse(**kwargs: object) -> None:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(ray, "init", refuse)
    result = _invoke("run", "--model", tiny_classifiers["bert"], "-d", order_csv,
                     "-o", tmp_path / "o", "--variant", VARIANTS[0],
                     "--executor", "ray", "--ray-address", "10.0.0.9:6379")  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "could not join the Ray cluster at 10.0.0.9:6379" in line
    assert "RAY_AUTH_MODE=token" in line and not (tmp_path / "o").exists()


def test_without_ray_installed_the_fix_is_named_before_any_work(
    monkeypatch, tiny_classifiers, order_csv, tmp_path
):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = _invoke("tune", tiny_classifiers["bert"], "-d", order_csv, "-o", tmp_path / "o",
                     "--executor", "ray")  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "pip install 'squeeze[ray]'" in result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.tune").exists()


@pytest.mark.parametrize("command", ["run", "tune"])
def test_ray_options_without_the_ray_executor_are_refused(
    command, tiny_classifiers, order_csv, tmp_path
):
    """Silently ignored, they would build one at a time on this machine when a cluster was
    meant: refused in one line before any work, naming the option to add."""
    model = tiny_classifiers["bert"]
    where = ["--model", model, "--variant", "quantize(int8)"] if command == "run" else [model]
    result = _invoke(command, *where, "-d", order_csv, "-o", tmp_path / "o",
                     "--workers", "8", "--ray-address", "head:6379")  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "--ray-address, --workers apply to Ray's builds: add --executor ray" in line
