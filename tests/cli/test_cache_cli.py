"""`squeeze cache`: what a user sees of the artifact cache, and how it is checked and trimmed."""

from __future__ import annotations

import json
import os
import time

from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.sweep.cache import damage, publish, staging_path

runner = CliRunner()


def _entry(cache, name, payload: bytes, age_days: float = 0.0):
    entry = cache / name
    staging = staging_path(entry)
    staging.mkdir(parents=True)
    (staging / "model.onnx").write_bytes(payload)
    publish(staging, entry, key=name)
    stamp = time.time() - age_days * 86400
    os.utime(entry, (stamp, stamp))
    return entry


def invoke(*args):
    return runner.invoke(app, ["cache", *map(str, args)])


def test_info_verify_prune_and_clear(tmp_path):
    cache = tmp_path / "cache"
    old = _entry(cache, "aaaa-quantize", b"x" * 1000, age_days=10)
    new = _entry(cache, "bbbb-magnitude", b"y" * 3000)
    info = json.loads(invoke("info", "--cache-dir", cache, "--json").stdout)
    assert info["entries"] == 2 and info["bytes"] > 4000 and info["cache_dir"] == str(cache)

    (new / "model.onnx").write_bytes(b"y" * 10)  # damaged after it was published
    assert "has 10 bytes, not 3000" in damage(new)
    checked = invoke("verify", "--cache-dir", cache)
    assert checked.exit_code == 1 and "1 of 2 artifacts" in checked.stdout
    assert "squeeze cache verify --fix" in checked.stderr
    fixed = invoke("verify", "--cache-dir", cache, "--fix")
    assert fixed.exit_code == 0 and not new.exists() and old.exists()

    _entry(cache, "cccc-structured", b"z" * 2000)
    pruned = json.loads(invoke("prune", "--cache-dir", cache, "--older-than", "5", "--json").stdout)
    assert pruned["removed"] == [str(old)] and not old.exists()
    assert invoke("prune", "--cache-dir", cache).exit_code == 2  # says what to remove

    refused = invoke("clear", "--cache-dir", cache)
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    cleared = invoke("clear", "--cache-dir", cache, "--yes")
    assert cleared.exit_code == 0 and "removed 1 artifacts" in cleared.stdout
    assert json.loads(invoke("info", "--cache-dir", cache, "--json").stdout)["entries"] == 0


def test_prune_by_size_keeps_the_newest(tmp_path):
    cache = tmp_path / "cache"
    oldest = _entry(cache, "a-quantize", b"x" * 5000, age_days=3)
    middle = _entry(cache, "b-quantize", b"x" * 5000, age_days=2)
    newest = _entry(cache, "c-quantize", b"x" * 5000, age_days=1)
    result = invoke("prune", "--cache-dir", cache, "--max-size", "12000")
    assert result.exit_code == 0, result.output
    assert not oldest.exists() and middle.exists() and newest.exists()
