"""``--executor ray``: the variants of a run built as Ray tasks on this machine, alike.

A local Ray instance with two workers builds three variants of a tiny BERT; the results equal
those of the local executor (same cache keys, same bytes, same metrics), and each variant says
which worker built it.
"""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app

pytest.importorskip("ray")

VARIANTS = ["q=quantize(int8, onnxruntime)", "s=magnitude(sparsity=0.5)", "h=structured(heads=0.5)"]


def _run(model, data, tmp_path, *extra):
    args = ["run", "--model", model, "-d", data, "--runs", "3", "--json",
            "--cache-dir", tmp_path / f"cache{len(extra)}", "-o", tmp_path / f"out{len(extra)}",
            *[a for v in VARIANTS for a in ("--variant", v)], *extra]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return {v["name"]: v for v in json.loads(result.stdout)["variants"]}


def test_ray_builds_what_local_builds_on_two_workers(tiny_classifiers, order_csv, tmp_path):
    model = tiny_classifiers["bert"]
    local = _run(model, order_csv, tmp_path)
    ray = _run(model, order_csv, tmp_path, "--executor", "ray", "--workers", "2")
    assert set(ray) == set(local)
    for name, v in ray.items():
        same = ("metric", "params_total", "params_nonzero", "bytes_on_disk", "chain", "format")
        assert {k: v[k] for k in same} == {k: local[name][k] for k in same}, name
    workers = {n for v in ray.values() for n in v["notes"] if n.startswith("built by Ray worker")}
    assert len([v for v in ray.values() if v["name"] != "baseline"]) == 3 and workers
    assert not any("Ray" in n for v in local.values() for n in v["notes"])


def test_a_tune_recipe_refuses_the_ray_executor(tmp_path, tiny_classifiers, order_csv):
    recipe = tmp_path / "tune.yaml"
    recipe.write_text(f"model: {tiny_classifiers['bert']}\ndata: {order_csv}\n"
                      "tune: {max_accuracy_drop: 1.0}\n")  # fmt: skip
    result = CliRunner().invoke(app, ["run", str(recipe), "-o", str(tmp_path / "o"),
                                      "--executor", "ray"])  # fmt: skip
    assert result.exit_code == 2 and "--executor ray builds run and sweep" in result.stderr


def test_without_ray_installed_the_fix_is_named(monkeypatch):
    from squeeze.core.errors import UnsupportedError
    from squeeze.plan import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UnsupportedError, match=r"pip install 'squeeze\[ray\]'"):
        ray_executor._import_ray()
