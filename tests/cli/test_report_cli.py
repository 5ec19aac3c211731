"""``squeeze report`` as a user calls it: the table, the files, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squeeze.cli.main import app
from squeeze.model.tiny import latency_of
from squeeze.report.results import SweepResults, VariantResult, derive

runner = CliRunner()


def _variant(name: str, chain: str, mb: float, accuracy: float, p50: float) -> VariantResult:
    return VariantResult(
        name=name,
        chain=chain,
        format="torch",
        artifact=f"variants/{name}",
        params_total=1_000_000,
        params_nonzero=1_000_000,
        bytes_on_disk=int(mb * 1_000_000),
        metric=accuracy,
        latency={"cpu": latency_of(p50, p50 * 0.9, p50 * 1.2)},
    )


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    """A sweep where 'slow' is dominated by the baseline and 'fast' is faster but worse."""
    results = SweepResults(
        model="tiny-bert",
        metric_name="accuracy",
        higher_is_better=True,
        n_samples=100,
        bench={"batch_sizes": [1], "seq_len": 32},
        machine={"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "isa": [], "gpu": None},
        baseline="base",
        variants=[
            _variant("base", "baseline", 4, 0.9, 10.0),
            _variant("fast", "quantize(dtype=int8)", 1, 0.85, 3.0),
            _variant("slow", "magnitude(sparsity=0.3)", 4, 0.88, 10.5),
        ],
    )
    derive(results)
    run = tmp_path / "run"
    run.mkdir()
    results.save(run / "results.json")
    return run / "results.json"


def invoke(*args: object):
    # A wide terminal, so table cells such as "(not faster)" are not wrapped across lines.
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def assert_one_line_error(result, code: int, phrase: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.output


def test_report_prints_the_table_and_writes_the_folder(results_file, tmp_path):
    out = tmp_path / "report"
    result = invoke("report", results_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert "not faster" in result.stdout and "★" in result.stdout
    for name in ("base", "fast", "slow", "index.html", "metric_vs_latency.png"):
        assert name in result.stdout
    assert (out / "index.html").is_file() and (out / "metric_vs_size.svg").is_file()


def test_json_lists_the_files_and_the_front(results_file, tmp_path):
    result = invoke("report", results_file.parent, "-o", tmp_path / "report", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["pareto"] == ["base", "fast"]
    assert len(summary["files"]) == 8 and all(Path(f).is_file() for f in summary["files"])


def test_existing_output_needs_overwrite(results_file, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    assert_one_line_error(invoke("report", results_file, "-o", out), 2, "--overwrite")
    result = invoke("report", results_file, "-o", out, "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines()]  # --quiet: only the paths
    assert len(paths) == 8 and all(p.is_file() and p.parent == out for p in paths)


def test_report_never_replaces_the_run_it_reads(results_file):
    result = invoke("report", results_file, "-o", results_file.parent, "--overwrite")
    assert_one_line_error(result, 2, "overlaps the input")
    assert results_file.is_file()


@pytest.mark.parametrize(
    "content", ['{"rows": []}', "not json", '{"version": 1, "model": "m"}', None]
)
def test_not_a_results_file(content, tmp_path):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    result = invoke("report", path, "-o", tmp_path / "report")
    assert_one_line_error(result, 3, "results file")
    assert not (tmp_path / "report").exists()


def test_help_does_not_import_matplotlib():
    code = "import sys; import squeeze.cli.main; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_log_gets_100_columns_and_no_padding(results_file, tmp_path, monkeypatch):
    """Output to a pipe or CI log: rich would assume 80 columns; a log gets 100, each line
    without trailing padding, each chain whole."""
    from squeeze.cli import _render
    from squeeze.cli import report as report_command

    monkeypatch.delenv("COLUMNS", raising=False)
    console = _render._LazyConsole()
    monkeypatch.setattr(report_command, "console", console)
    monkeypatch.setattr(_render, "stdout", console)
    result = runner.invoke(app, ["report", str(results_file), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("slow = magnitude(sparsity=0.3)" in line for line in lines)
    assert max(len(line) for line in lines) <= 100
    assert all(line == line.rstrip() for line in lines)


def test_a_runs_closing_line_shows_paths_as_typed(results_file, monkeypatch, capsys):
    """run, sweep and tune end saying where everything went: [..] in the output folder or the
    selected variant's name is data, not rich markup (`squeeze sweep` once dropped "[b]")."""
    from rich.console import Console

    from squeeze.cli import _results

    monkeypatch.setattr(_results, "stdout", Console(width=200, highlight=False))
    results = SweepResults.load(results_file)
    results.selected = "fast[v2]"
    _results.print_outcome(results, "out[b]", [], json_output=False)
    closing = capsys.readouterr().out.splitlines()[-1]
    assert closing == "results and report in out[b]; fast[v2] copied to out[b]/selected"


def test_report_without_output_shows_the_table_and_writes_nothing(results_file, tmp_path):
    before = sorted(p.name for p in results_file.parent.iterdir())
    result = invoke("report", results_file)
    assert result.exit_code == 0, result.output
    assert "★" in result.stdout and "fast" in result.stdout and "wrote" not in result.stdout
    assert sorted(p.name for p in results_file.parent.iterdir()) == before
    titled = SweepResults.load(results_file)
    titled.name = "nightly"
    titled.save(results_file)
    assert "squeeze: nightly: tiny-bert" in invoke("report", results_file).stdout
