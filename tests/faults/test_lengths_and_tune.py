"""Lengths fitted to the model and checked before any work, and `squeeze tune` fitted to the
model and resumed only under the settings its journal was measured with (README,
"Guarantees"), through the real CLI (``python -m squeeze`` in a subprocess).

Every tiny model has a 64-position table (RoBERTa's holds 66, two of them taken by its position
offset), so squeeze's default length of 128 is too long for all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_faults import interrupt_search

FAST = ("--runs", "3", "--max-samples", "300", "--quiet")
# A small search: one amount, one layer, ten recovery steps, one int8 mode.
SMALL_SEARCH = ("--amounts", "0.5", "--recovery-steps", "10", "--quantize", "dynamic",
                "--max-accuracy-drop", "50")  # fmt: skip


def squeeze(*args: object, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "squeeze", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ),
    )  # fmt: skip


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line of a refusal with ``code``, with no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return errors[0]


def built_entries(cache: Path) -> list[Path]:
    """Artifacts a run built into its cache (entries are named KEY-STEP)."""
    return [p for p in cache.glob("*-*") if p.is_dir()] if cache.is_dir() else []


@pytest.mark.parametrize(("command", "family"), [("sweep", "bert"), ("run", "roberta")])
def test_run_and_sweep_fit_the_default_length_to_the_model(
    command, family, tiny_classifiers, order_csv, tmp_path
):
    model, out = tiny_classifiers[family], tmp_path / "out"
    if command == "sweep":
        args = ["sweep", model, "-d", order_csv, "--dtype", "int8"]
    else:  # a recipe that names no length
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model: {model}\ndata: {order_csv}\nvariants: [quantize(int8)]\n")
        args = ["run", recipe]
    result = squeeze(*args, *FAST, "-o", out, "--cache-dir", tmp_path / "cache", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["bench"]["seq_len"] == 64
    assert "note:" not in result.stderr  # nobody asked for more than the model holds


def test_a_max_length_beyond_the_model_is_cut_with_a_note(tiny_classifiers, order_csv, tmp_path):
    result = squeeze("sweep", tiny_classifiers["bert"], "-d", order_csv, "--dtype", "int8",
                     "--max-length", "5000", *FAST, "-o", tmp_path / "out", "--cache-dir",
                     tmp_path / "cache", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "max_length 5000 is longer than" in notes[0]
    assert "64 positions; inputs are cut to 64 tokens and timed at that length" in notes[0]
    assert json.loads(result.stdout)["bench"]["seq_len"] == 64


def test_a_timed_length_beyond_the_model_is_refused_before_any_work(
    tiny_classifiers, order_csv, tmp_path
):
    recipe, out, cache = tmp_path / "r.yaml", tmp_path / "out", tmp_path / "cache"
    recipe.write_text(f"model: {tiny_classifiers['roberta']}\ndata: {order_csv}\n"
                      "bench: {seq: 100, runs: 3}\nvariants: [quantize(int8)]\n")  # fmt: skip
    line = error_line(squeeze("run", recipe, "-o", out, "--cache-dir", cache), 2)
    assert "bench seq 100 is longer than this model's 64 positions; set bench seq to 64" in line
    assert not out.exists() and not built_entries(cache)

    # The bench refuses before exporting for ONNX Runtime, naming its own option and the model.
    model = tiny_classifiers["bert"]
    timed = squeeze("bench", model, "--runtime", "torch,onnxruntime", "--seq", "65", "--runs", "2")
    line = error_line(timed, 2)
    assert f"{model}: --seq 65 is longer than this model's 64 positions; use --seq 64" in line


def test_eval_and_bench_default_to_the_models_length(tiny_classifiers, order_csv):
    model = tiny_classifiers["roberta"]
    evaluated = squeeze("eval", model, "-d", order_csv, "--max-samples", "40", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert not any("longer than" in n for n in json.loads(evaluated.stdout)["notes"])
    timed = squeeze("bench", model, "--runs", "2", "--json")
    assert timed.returncode == 0, timed.stderr[-2000:]
    [result] = json.loads(timed.stdout)["results"]
    assert result["settings"]["seq_len"] == 64


def test_tune_with_default_options_fits_a_two_layer_model(tiny_classifiers, order_csv, tmp_path):
    """The default layers (1, 2) and length (128) are cut to the model: 1 layer, 64 tokens.
    The amounts, recovery and int8 modes are narrowed and the drop allowed wide, so the search
    reaches the layers quickly (unfitted, it would try to drop both and fail there)."""
    out = tmp_path / "out"
    result = squeeze("tune", tiny_classifiers["bert"], "--data", order_csv, "--budget", "5m",
                     "-o", out, *SMALL_SEARCH, *FAST, "--cache-dir", tmp_path / "cache",
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    layers = [t["layers"] for t in summary["trace"] if t["stage"] == "layers"]
    assert layers == [1], summary["trace"]
    assert summary["bench"]["seq_len"] == 64 and (out / "selected").is_dir()
    # Said before any work, --quiet or not.
    fitted = "note: search space fitted to the model: layers to drop: 1 (the model has 2 layers)"
    assert fitted in result.stderr.splitlines()


def _interrupted_search(model: Path, data: Path, out: Path, cache: Path) -> list[str]:
    """A search stopped (SIGINT) once its journal holds the baseline: the arguments it ran
    with, to resume it. Its --max-length is beyond the model's 64 positions: cut, with a note."""
    args = [sys.executable, "-m", "squeeze", "tune", str(model), "-d", str(data), "-o", str(out),
            *SMALL_SEARCH, *FAST, "--max-length", "5000", "--cache-dir", str(cache)]  # fmt: skip
    journal = out.with_name(f"{out.name}.tune") / "journal.jsonl"
    # The search's record, then the baseline's validation and latency.
    stderr = interrupt_search(args, journal, lines=3)
    assert "note: max_length 5000 is longer than" in stderr  # before any work, even --quiet
    return args[3:]


def test_tune_resumes_only_what_was_searched_alike(tiny_classifiers, order_csv, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = _interrupted_search(tiny_classifiers["bert"], order_csv, out, cache)
    journal = tmp_path / "out.tune" / "journal.jsonl"
    before = journal.read_bytes()

    # The search measured at 64 tokens, where --max-length 5000 was cut to.
    longer = error_line(squeeze(*args, "--resume", "--max-length", "32"), 2)
    assert "--resume: the journal was searched with max_length 64 (this run asks 32), " in longer
    assert (
        "bench seq_len 64 (this run asks 32); rerun with the same options, or with "
        "--overwrite instead of --resume to start over"
    ) in longer
    other = tmp_path / "other.csv"
    rows = order_csv.read_text().splitlines()
    other.write_text("\n".join([rows[0], *reversed(rows[1:])]) + "\n")  # same rows, reordered
    moved = error_line(squeeze(*[other if a == str(order_csv) else a for a in args], "--resume"),
                       2)  # fmt: skip
    assert "the journal was searched with other data" in moved
    assert journal.read_bytes() == before and not out.exists()  # nothing touched

    resumed = squeeze(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (out / "trace.json").is_file() and not journal.parent.exists()


@pytest.mark.parametrize("given", [None, 5000])
def test_a_distill_that_times_its_result_fits_the_model(given, tiny_classifiers, order_csv,
                                                        tmp_path):  # fmt: skip
    """A single step times at the length its examples are cut to: the default fits the model,
    and a too-long --max-length is cut with a note, never a timing failure after training."""
    length = () if given is None else ("--max-length", given)
    result = squeeze("distill", tiny_classifiers["bert"], "-d", order_csv, "--student-layers",
                     "1", "--max-steps", "2", "--max-samples", "200", *length, "-o",
                     tmp_path / "student", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["latency"]["settings"]["seq_len"] == 64
    cut = [note for note in summary["notes"] if "is longer than" in note]
    assert bool(cut) == (given is not None), summary["notes"]
