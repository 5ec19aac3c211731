"""`squeeze cache`: what a user sees of the artifact cache, and how it is checked and trimmed."""

from __future__ import annotations

import json
import os
import time

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.model.tiny import build_tiny
from squeeze.plan.cache import claim, damage, publish, staging_path

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


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return build_tiny("bert", tmp_path_factory.mktemp("model") / "bert")


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


KEY = "0123456789abcdef0123"  # the first 20 hex digits of a key, as run_chain names entries


def _snapshot(folder):
    """Every path under ``folder`` with its bytes (folders and links marked): equal snapshots
    mean nothing was added, removed or changed."""

    def state(p):
        if p.is_symlink():
            return f"-> {os.readlink(p)}"
        return p.read_bytes() if p.is_file() else "dir"

    return {str(p.relative_to(folder)): state(p) for p in sorted(folder.rglob("*"))}


def _bystanders(cache, tmp_path):
    """What a user keeps in or beside a cache that squeeze never wrote; returns their names."""
    (cache / "my_project").mkdir(parents=True)
    (cache / "my_project" / "thesis.tex").write_text("three years of work")
    (cache / "notes.txt").write_text("keep me")
    (cache / ".bashrc").write_text("export SQUEEZE_CACHE=$HOME")
    # An entry copied out of a cache under a name of one's own: its manifest is not for the name.
    copy = _entry(tmp_path / "other-cache", "f" * 20 + "-quantize", b"q" * 10)
    copy.rename(cache / "my-int8-model")
    # A link named like an entry, to a folder elsewhere: deleting through it would reach there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.bin").write_bytes(b"d" * 10)
    (cache / f"{'c' * 20}-quantize").symlink_to(elsewhere)
    return {"my_project", "notes.txt", ".bashrc", "my-int8-model", f"{'c' * 20}-quantize"}


@pytest.mark.parametrize(
    "command",
    [("verify", "--fix"), ("prune", "--max-size", "1B"), ("clear", "--yes")],
    ids=["verify-fix", "prune-max-size", "clear"],
)
def test_maintenance_removes_only_squeezes_entries(tmp_path, command):
    cache = tmp_path / "cache"
    claim(cache)  # what run, sweep and tune do before their first entry
    damaged = _entry(cache, f"{KEY}-quantize", b"x" * 100)
    (damaged / "model.onnx").write_bytes(b"x")
    # Squeeze's by its name under squeeze's tag, though its manifest is gone (a crash, a hand).
    unsealed = cache / f"{'b' * 20}-magnitude"
    unsealed.mkdir()
    (unsealed / "model.safetensors").write_bytes(b"m" * 100)
    alone = _bystanders(cache, tmp_path)
    kept = {name: _snapshot(cache / name) for name in alone if (cache / name).is_dir()}
    kept_files = {name: (cache / name).read_bytes() for name in alone if (cache / name).is_file()}
    elsewhere = _snapshot(tmp_path / "elsewhere")

    listed = json.loads(invoke("info", "--cache-dir", cache, "--json").stdout)
    assert {os.path.basename(p) for p in listed["not_squeeze_entries"]} == alone
    assert listed["entries"] == 2
    result = invoke(*command, "--cache-dir", cache, "--json")
    assert result.exit_code == 0, result.output
    assert {os.path.basename(p) for p in json.loads(result.stdout)["not_squeeze_entries"]} == alone

    assert not damaged.exists() and not unsealed.exists()
    assert {p.name for p in cache.iterdir()} == alone | {"CACHEDIR.TAG", ".locks"}
    assert {name: _snapshot(cache / name) for name in kept} == kept
    assert {name: (cache / name).read_bytes() for name in kept_files} == kept_files
    assert _snapshot(tmp_path / "elsewhere") == elsewhere
    again = invoke(*command, "--cache-dir", cache)
    assert again.exit_code == 0 and "left alone: my_project: not a squeeze entry" in again.stdout
    table = invoke("info", "--cache-dir", cache)
    rows = {" ".join(line.split()) for line in table.stdout.splitlines()}
    assert "not a squeeze entry notes.txt (left alone)" in rows


@pytest.mark.parametrize(
    "command",
    [("info",), ("verify", "--fix"), ("prune", "--max-size", "1B"), ("prune", "--older-than", "0"),
     ("clear", "--yes")],
    ids=["info", "verify-fix", "prune-max-size", "prune-older-than", "clear"],
)  # fmt: skip
@pytest.mark.parametrize("how", ["--cache-dir", "SQUEEZE_CACHE"])
def test_a_folder_that_is_not_a_squeeze_cache_is_refused_untouched(tmp_path, command, how):
    home = tmp_path / "home"
    _bystanders(home, tmp_path)
    # Even an entry of squeeze's does not make a home a cache: only squeeze's tag would.
    _entry(home, f"{KEY}-quantize", b"x" * 100)
    before = _snapshot(home)
    if how == "--cache-dir":
        result = invoke(*command, "--cache-dir", home)
    else:
        result = runner.invoke(app, ["cache", *command], env={"SQUEEZE_CACHE": str(home)})
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --cache-dir {home} is not a squeeze cache: it has no squeeze")
    assert "'.bashrc'" in line and "and 2 more" in line and "at squeeze's cache or at a new" in line
    assert result.stdout == "" and _snapshot(home) == before


def test_a_file_is_refused_as_a_cache(tmp_path):
    file = tmp_path / "cache"
    file.write_text("not a folder")
    result = invoke("clear", "--yes", "--cache-dir", file)
    assert result.exit_code == 2 and "is a file, not a squeeze cache" in result.stderr
    assert file.read_text() == "not a folder"


def test_an_untagged_cache_is_used_only_while_all_of_it_is_squeezes(tmp_path):
    """A cache written before squeeze tagged its caches holds nothing but squeeze's entries,
    staging and locks: it is adopted. One file of someone else's and it is refused."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("prune", "--max-size", "1B", "--cache-dir", empty).exit_code == 0
    assert invoke("clear", "--yes", "--cache-dir", tmp_path / "missing").exit_code == 0
    assert not (tmp_path / "missing").exists() and not (empty / "CACHEDIR.TAG").exists()

    old = tmp_path / "old"
    _entry(old, f"{KEY}-quantize", b"x" * 100)
    staging = staging_path(old / f"{'a' * 20}-distill")
    (staging.with_name(staging.name + ".checkpoint") / "last").mkdir(parents=True)
    staging.mkdir()
    (old / f".{staging.name}.tmp-k2j3").mkdir()
    (old / ".locks").mkdir()
    (old / "stray.txt").write_text("mine")
    refused = invoke("clear", "--yes", "--cache-dir", old)
    assert refused.exit_code == 2 and "'stray.txt'" in refused.stderr
    assert (old / f"{KEY}-quantize").exists()

    (old / "stray.txt").unlink()
    cleared = invoke("clear", "--yes", "--cache-dir", old, "--json")
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout)["not_squeeze_entries"] == []
    assert {p.name for p in old.iterdir()} == {".locks"}


def test_run_tags_its_cache_and_refuses_someone_elses(tiny_bert, order_csv, tmp_path):
    home = tmp_path / "home"
    _bystanders(home, tmp_path)
    before = _snapshot(home)
    args = ["run", "--model", tiny_bert, "-d", order_csv, "--max-length", "16", "--max-samples",
            "40", "--runs", "2", "--variant", "magnitude(0.5)", "--quiet"]  # fmt: skip
    refused = runner.invoke(app, [*map(str, args), "-o", str(tmp_path / "a")],
                            env={"SQUEEZE_CACHE": str(home)})  # fmt: skip
    assert refused.exit_code == 2, refused.output
    assert f"error: --cache-dir {home} is not a squeeze cache" in refused.stderr
    assert _snapshot(home) == before and not (tmp_path / "a").exists()

    cache = tmp_path / "cache"
    built = runner.invoke(app, [*map(str, args), "--cache-dir", str(cache), "-o",
                                str(tmp_path / "b")])  # fmt: skip
    assert built.exit_code == 0, built.output
    tag = (cache / "CACHEDIR.TAG").read_text().splitlines()
    assert tag[0] == "Signature: 8a477f597d28d172789f06886806bc55"  # what backup tools look for
    assert tag[1].startswith("# This file is a cache directory tag created by squeeze")
    (cache / "notes.txt").write_text("keep me")
    cleared = invoke("clear", "--yes", "--cache-dir", cache)
    assert cleared.exit_code == 0 and "removed 1 artifacts" in cleared.stdout
    assert (cache / "notes.txt").read_text() == "keep me"
