"""The one output guard, as a user meets it (``python -m squeeze`` in a subprocess).

An output may not be, hold, sit inside or resolve to an input: the model, a teacher, the data,
the recipe or the artifact cache. ``--overwrite`` replaces only a folder squeeze wrote (its
``.squeeze-output`` mark) or an empty one. Every refusal is one line, exit 2, before any work:
each case checks the folder that holds the inputs is byte-identical afterwards and that no
artifact was built.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_faults import assert_clean_failure, digest, squeeze

QUICK = ("--max-length", "16", "--max-samples", "40", "--runs", "2", "--quiet")


@pytest.fixture
def project(tiny_classifiers, order_csv, tmp_path) -> Path:
    """A user's project folder: a model, its data and a recipe side by side."""
    folder = tmp_path / "project"
    shutil.copytree(tiny_classifiers["bert"], folder / "model")
    (folder / "data.csv").write_text("\n".join(order_csv.read_text().splitlines()[:200]) + "\n")
    (folder / "recipe.yaml").write_text(
        f"model: {folder / 'model'}\ndata: {folder / 'data.csv'}\nmax_length: 16\n"
        "bench: {runs: 2}\nvariants:\n  - quantize(int8)\n"
    )
    return folder


def _cases(p: Path, cache: Path) -> dict[str, tuple[list[str], str]]:
    """Command line -> the phrase its one-line refusal must hold."""
    model, data, recipe = p / "model", p / "data.csv", p / "recipe.yaml"
    run = ["run", "--model", model, "-d", data, "--variant", "quantize(int8)", *QUICK]
    return {
        "run -o the folder holding model and data": (
            [*run, "--cache-dir", cache, "-o", p, "--overwrite"],
            f"output {p} overlaps the input {model} (the output holds it)",
        ),
        "sweep -o the folder holding its inputs": (
            [
                "sweep",
                model,
                "-d",
                data,
                "--dtype",
                "int8",
                "--cache-dir",
                cache,
                "-o",
                p,
                "--overwrite",
                *QUICK,
            ],
            f"output {p} overlaps the input {model} (the output holds it)",
        ),
        "tune -o the folder holding its inputs": (
            [
                "tune",
                model,
                "-d",
                data,
                "--max-accuracy-drop",
                "5",
                "--budget",
                "1m",
                "--cache-dir",
                cache,
                "-o",
                p,
                "--overwrite",
                "--quiet",
            ],
            f"output {p} overlaps the input {model} (the output holds it)",
        ),
        "run -o its own cache": (
            [*run, "--cache-dir", cache, "-o", cache, "--overwrite"],
            f"output {cache} overlaps the input {cache} (they are the same path)",
        ),
        "run -o inside its cache": (
            [*run, "--cache-dir", cache, "-o", cache / "results"],
            f"overlaps the input {cache} (the output sits inside it)",
        ),
        "run -o its recipe": (
            ["run", recipe, "--cache-dir", cache, "-o", recipe, "--overwrite", "--quiet"],
            f"output {recipe} overlaps the input {recipe} (they",
        ),
        "quantize -o its data file": (
            ["quantize", model, "-d", data, "-o", data, "--overwrite", "--max-length", "16"],
            f"output {data} overlaps the input {data} (they",
        ),
        "finetune -o its data file": (
            ["finetune", model, "-d", data, "-o", data, "--overwrite", "--max-steps", "1"],
            f"output {data} overlaps the input {data} (they",
        ),
        "export -o inside the model": (
            ["export", model, "-o", model / "onnx"],
            f"overlaps the input {model} (the output sits inside it)",
        ),
        "distill -o the teacher": (
            ["distill", model, "-d", data, "--student-layers", "1", "-o", model, "--overwrite"],
            f"output {model} overlaps the input {model} (they",
        ),
    }


CASES = list(_cases(Path("p"), Path("c")))


@pytest.mark.parametrize("case", CASES)
def test_an_output_over_an_input_is_refused_before_any_work(project, tmp_path, case):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("the cache's own file")
    args, phrase = _cases(project, cache)[case]
    before, cache_before = digest(project), digest(cache)
    result = squeeze(*args)
    assert_clean_failure(result, 2, phrase)
    assert "inputs are never modified" in result.stderr
    assert digest(project) == before and digest(cache) == cache_before


def test_an_output_that_links_to_an_input_is_refused(project, tmp_path):
    link = tmp_path / "looks-new"
    link.symlink_to(project / "model", target_is_directory=True)
    before = digest(project)
    result = squeeze("quantize", project / "model", "-o", link, "--overwrite")
    phrase = f"output {link} overlaps the input {project / 'model'} (they are the same path)"
    assert_clean_failure(result, 2, phrase)
    assert digest(project) == before and link.is_symlink()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_overwrite_never_replaces_what_squeeze_did_not_write(project, tmp_path, kind):
    mine = tmp_path / "my-notes"
    if kind == "folder":
        mine.mkdir()
        (mine / "thesis.txt").write_text("years of work")
    else:
        mine.write_text("years of work")
    before = digest(mine) if kind == "folder" else mine.read_text()
    result = squeeze("quantize", project / "model", "-o", mine, "--overwrite")
    assert_clean_failure(result, 2, "--overwrite replaces only a folder squeeze wrote")
    assert (digest(mine) if kind == "folder" else mine.read_text()) == before


def test_overwrite_replaces_squeeze_outputs_and_empty_folders(project, tmp_path):
    out = tmp_path / "int8"
    out.mkdir()  # an empty folder: nothing to lose
    first = squeeze("quantize", project / "model", "-o", out, "--overwrite")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (out / ".squeeze-output").is_file()
    again = squeeze("quantize", project / "model", "-o", out, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    refused = squeeze("quantize", project / "model", "-o", out)
    assert_clean_failure(refused, 2, "already exists; pass --overwrite")


def test_overwrite_replaces_a_run_folder_from_before_the_mark(project, tmp_path):
    """`make demo` overwrites its results folder on every run: one an older squeeze wrote
    (results.json beside report/, no mark) is still squeeze's to replace."""
    out, cache = tmp_path / "results", tmp_path / "cache"
    run = ["run", project / "recipe.yaml", "--cache-dir", cache, "-o", out, "--overwrite"]
    first = squeeze(*run)
    assert first.returncode == 0, first.stderr[-2000:]
    (out / ".squeeze-output").unlink()
    again = squeeze(*run)
    assert again.returncode == 0, again.stderr[-2000:]
    (out / ".squeeze-output").unlink()
    (out / "report" / "index.html").unlink()  # no longer what a run writes: not replaced
    refused = squeeze(*run)
    assert_clean_failure(refused, 2, "is a folder squeeze did not write")
