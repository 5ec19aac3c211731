"""Reports of a sweep: Pareto marks, not-faster verdicts, and every file readable by its tools."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from squeeze.cli._results import print_results
from squeeze.core.errors import DataError, OutputExistsError
from squeeze.model.tiny import latency_of
from squeeze.report import cells
from squeeze.report.html import render_html
from squeeze.report.plots import plot_specs
from squeeze.report.results import SweepResults, VariantResult, derive
from squeeze.report.write import report_notes, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARETO = {"baseline", "int8", "pruned-int8"}


def _variant(
    name: str, chain: str, fmt: str, mb: float, params: tuple[int, int], metric: float | None, p50
) -> VariantResult:
    latency = {}
    if p50 is not None:
        latency["cpu"] = latency_of(p50, p50 * 0.9, p50 * 1.2)
    return VariantResult(
        name=name,
        chain=chain,
        format=fmt,
        artifact=f"variants/{name}",
        params_total=params[0],
        params_nonzero=params[1],
        bytes_on_disk=int(mb * 1_000_000),
        metric=metric,
        latency=latency,
    )


def sample_results(metric_name: str | None = "accuracy") -> SweepResults:
    """Five variants whose front is known: pruned50 is beaten by int8 on every axis, and
    magnitude is slower than the baseline within its spread (not faster) and no better."""
    variants = [
        _variant("baseline", "baseline", "torch", 4, (1_000_000, 1_000_000), 0.92, 10.0),
        _variant("int8", "quantize(dtype=int8)", "onnxruntime", 1, (1_000_000,) * 2, 0.915, 4.0),
        _variant(
            "pruned50",
            "structured(heads=0.5, ffn=0.5)",
            "torch",
            2,
            (500_000, 500_000),
            0.90,
            6.0,
        ),
        _variant(
            "magnitude", "magnitude(sparsity=0.5)", "torch", 4, (1_000_000, 500_000), 0.918, 10.5
        ),
        _variant(
            "pruned-int8",
            "structured(heads=0.5, ffn=0.5) -> quantize(dtype=int8)",
            "onnxruntime",
            0.5,
            (500_000, 500_000),
            0.88,
            2.0,
        ),
    ]
    if metric_name is None:
        for v in variants:
            v.metric = None
    results = SweepResults(
        model="tiny-bert",
        metric_name=metric_name,
        higher_is_better=True,
        n_samples=300,
        bench={"batch_sizes": [1], "seq_len": 128, "runs": 30, "device": "cpu"},
        machine={"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "isa": ["avx2"], "gpu": None},
        baseline="baseline",
        variants=variants,
        selected="int8",
    )
    derive(results)
    return results


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report") / "out"
    return out, write_report(sample_results(), out)


def _terminal(results: SweepResults) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    print_results(results, console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _terminal_rows(text: str, names: set[str]) -> dict[str, tuple[str, str]]:
    """Each variant's two table lines: its figures, and under them the changes."""
    lines = text.splitlines()
    rows = {}
    for i, line in enumerate(lines):
        tokens = line.replace("★", " ").split()
        if tokens and tokens[0] in names and tokens[1:2] != ["="]:  # not "name = chain" below
            rows[tokens[0]] = (line, lines[i + 1])
    assert set(rows) == names, text
    return rows


def test_pareto_marks_and_not_faster():
    results = sample_results()
    assert {v.name for v in results.variants if v.pareto} == PARETO
    magnitude = results.variant("magnitude")
    assert magnitude.speedup == {"cpu": None}
    assert results.variant("int8").speedup["cpu"] == pytest.approx(2.5)
    rows = _terminal_rows(_terminal(results), {v.name for v in results.variants})
    for name, (figures, _) in rows.items():
        assert ("★" in figures) == (name in PARETO), figures
    assert "500.00K / 1.00M" in rows["magnitude"][0]
    assert "not faster" in rows["magnitude"][1] and "drop +0.20 pts" in rows["magnitude"][1]
    assert "2.5x" in rows["int8"][1] and "4.0x smaller" in rows["int8"][1]


def test_the_table_is_followed_by_why_faster_variants_were_not_selected():
    results = sample_results()
    results.passed_over = {"pruned-int8": "test drop 4.00 points > the 1-point budget"}
    text = _terminal(results)
    assert "selected: int8\nnot selected: pruned-int8: test drop 4.00 points > the 1-point " \
           "budget\n" in text  # fmt: skip


def test_frontier_of_each_plot_is_two_dimensional():
    specs, notes = plot_specs(sample_results())
    by_stem = {s.stem: s for s in specs}
    assert set(by_stem) == {"metric_vs_latency", "metric_vs_size"}
    assert notes == []
    latency_front = [p.name for p in by_stem["metric_vs_latency"].frontier]
    assert latency_front == ["pruned-int8", "int8", "baseline"]  # sorted by latency
    assert [p.name for p in by_stem["metric_vs_size"].frontier] == latency_front


def test_plots_ring_the_selected_variant_and_name_no_point_over_another():
    from matplotlib.figure import Figure

    from squeeze.report.plots import Point, _label

    specs, _ = plot_specs(sample_results())
    assert all([p.name for p in s.points if p.selected] == ["int8"] for s in specs)
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    crowd = [Point(f"variant-{i}", 1.0, 0.9, False, False) for i in range(3)]
    crowd.insert(2, Point("chosen", 1.0, 0.9, False, False, selected=True))
    crowd.append(Point("far", 9.0, 0.1, False, False))
    ax.scatter([p.x for p in crowd], [p.y for p in crowd])
    _label(fig, ax, crowd)
    assert sorted(t.get_text() for t in ax.texts) == ["chosen", "far"]


def test_lower_is_better_metric():
    """Perplexity: the front mirrors accuracy's, and the change reads as the rise in perplexity."""
    results = sample_results(metric_name="perplexity")
    results.higher_is_better = False
    perplexity = {"baseline": 20.0, "int8": 20.5, "pruned50": 22, "magnitude": 20.2}
    for v in results.variants:
        v.metric = perplexity.get(v.name, 24.0)
    derive(results)
    assert {v.name for v in results.variants if v.pareto} == PARETO
    assert cells.metric_cell(results, results.variant("int8")) == ("20.5000", "drop +0.50")
    specs, _ = plot_specs(results)
    assert [p.name for p in specs[0].frontier] == ["pruned-int8", "int8", "baseline"]


def test_report_files_exist_and_open(report_dir):
    import matplotlib.image

    out, files = report_dir
    names = {"results.md", "results.csv", "results.json", "index.html"}
    names |= {f"metric_vs_{x}.{ext}" for x in ("latency", "size") for ext in ("png", "svg")}
    assert {f.name for f in files} == names
    # and the mark that lets --overwrite replace this folder (squeeze wrote it)
    assert sorted(p.name for p in out.iterdir()) == sorted(names | {".squeeze-output"})
    assert all(f.parent == out.resolve() for f in files)
    for png in out.glob("*.png"):
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        height, width, _ = matplotlib.image.imread(png).shape
        assert width > 500 and height > 300
    for svg in out.glob("*.svg"):
        assert ET.parse(svg).getroot().tag.endswith("svg")


def test_html_references_its_plots_and_every_variant(report_dir):
    out, _ = report_dir
    page = (out / "index.html").read_text()
    for stem in ("metric_vs_latency", "metric_vs_size"):
        assert f'src="{stem}.png"' in page and f'href="{stem}.svg"' in page
    for name in ("baseline", "int8", "pruned50", "magnitude", "pruned-int8"):
        assert f">{name}" in page
    assert page.count('<tr class="pareto') == len(PARETO)
    assert "not faster" in page and "Test CPU" in page


def test_csv_has_flat_columns_and_raw_figures(report_dir):
    out, _ = report_dir
    with (out / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = {row["name"]: row for row in reader}
        columns = reader.fieldnames
    for column in ("chain", "bytes_on_disk", "metric", "drop_points", "p50_ms_cpu", "p90_ms_cpu"):
        assert column in columns
    assert {"speedup_cpu", "faster_cpu", "pareto", "size_ratio"} <= set(columns)
    assert {name for name, row in rows.items() if row["pareto"] == "1"} == PARETO
    assert rows["magnitude"]["speedup_cpu"] == "" and rows["magnitude"]["faster_cpu"] == "0"
    assert float(rows["int8"]["speedup_cpu"]) == pytest.approx(2.5)
    assert rows["int8"]["faster_cpu"] == "1"
    assert float(rows["pruned-int8"]["size_ratio"]) == pytest.approx(8.0)
    assert float(rows["pruned50"]["drop_points"]) == pytest.approx(2.0)


def test_json_copy_round_trips_and_markdown_marks_the_front(report_dir):
    out, _ = report_dir
    assert SweepResults.load(out).to_dict() == sample_results().to_dict()
    assert json.loads((out / "results.json").read_text())["model"] == "tiny-bert"
    lines = (out / "results.md").read_text().splitlines()
    rows = {line.split(" | ")[1].strip("*_"): line for line in lines if line.startswith("| ")}
    assert set(rows) == {"variant", "baseline", "int8", "pruned50", "magnitude", "pruned-int8"}
    assert {name for name, line in rows.items() if line.startswith("| ★ | **")} == PARETO
    assert "(not faster)" in rows["magnitude"]


def test_without_a_metric_plots_parameters_and_says_so(tmp_path):
    results = sample_results(metric_name=None)
    notes = report_notes(results)
    assert any("no metric" in note for note in notes)
    files = {f.name for f in write_report(results, tmp_path / "out")}
    assert {"params_vs_latency.png", "params_vs_size.svg"} <= files
    assert "no metric" in (tmp_path / "out" / "results.md").read_text()


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        write_report(sample_results(), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_html_says_what_was_selected_and_by_which_rule_in_words():
    from squeeze.engine.gates import Selection

    results = sample_results()
    results.gates = {"max_accuracy_drop": 1.0, "min_speedup": 3.0, "gate_on": "upper"}
    results.selection_rule = Selection("best-under-drop", 1.0, on="upper").rule(results)
    results.passed_over = {"pruned-int8": "drops 4.00 points > the 1-point budget"}
    page = render_html(results, [], [])
    assert (
        "<strong>Selected: int8</strong> (highlighted below), as the fastest variant on cpu whose "
        "accuracy drop is at most 1 point (the upper end of its 95% interval)." in page
    )
    assert page.count('<tr class="pareto selected">') == 1 and page.count('"badge"') == 1
    assert '<li class="passed">accuracy drop is at most 1 point (the upper end' in page
    assert '<li class="failed">speed-up on cpu is at least 3x: failed</li>' in page
    assert "<li><code>pruned-int8</code>: drops 4.00 points &gt; the 1-point budget</li>" in page
    assert "gate_on" not in page and "seq_len" not in page and "versions." not in page


def test_html_says_when_no_variant_meets_the_rule():
    results = sample_results()
    results.selected, results.selection_rule = None, "the fastest variant on cpu whose x"
    page = render_html(results, [], [])
    assert "<strong>No variant selected</strong>: the rule was the fastest variant on cpu " in page
    assert 'class="selected"' not in page


def test_names_are_escaped_in_html(tmp_path):
    results = sample_results()
    results.variants[1].name = "int8<script>"
    write_report(results, tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "int8&lt;script&gt;" in page and "<script>" not in page


def test_untimed_or_unevaluated_variant_is_never_best_by_default():
    """A missing figure counts as the worst, not as 0 (which would win latency or perplexity)."""
    results = sample_results()
    results.variants.append(_variant("untimed", "x()", "torch", 4, (1, 1), 0.90, None))
    results.variants.append(_variant("unevaluated", "y()", "torch", 4, (1, 1), None, 11.0))
    derive(results)
    assert {v.name for v in results.variants if v.pareto} == PARETO
    specs, notes = plot_specs(results)
    assert len(specs) == 2
    assert any("untimed" in note for note in notes) and any("unevaluated" in n for n in notes)


def test_malformed_results_file_is_a_data_error(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"version": 1, "model": "m"}))
    with pytest.raises(DataError, match="malformed"):
        SweepResults.load(path)


def test_chain_column_only_when_names_differ_from_chains():
    results = sample_results()
    assert "chain" in cells.header(results) and cells.text_columns(results) == 4
    for v in results.variants:  # the grid form: every variant named by its chain
        v.name = v.chain
    results.baseline = results.variants[0].name
    header = cells.header(results)
    assert "chain" not in header and cells.text_columns(results) == 3
    assert all(len(cells.row(results, v)) == len(header) for v in results.variants)
    assert header[3].startswith("accuracy")  # the first figure column is right after format


def test_log_output_is_not_folded_to_80_columns():
    """A pipe or CI log has no width; each variant still gets one line of figures."""
    console = Console(file=io.StringIO(), width=80, color_system=None)
    assert not console.is_terminal
    print_results(sample_results(), console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "structured(heads=0.5, ffn=0.5) -> quantize(dtype=int8)" in text
    assert console.width == 80  # restored afterwards


def test_intervals_reach_every_view(tmp_path):
    """Per-sample scores give each drop a paired interval and timings each speed-up one; the
    terminal, Markdown, CSV, JSON and the plots' error bars all carry them."""
    results = sample_results()
    n = 300
    base = [1.0] * 276 + [0.0] * 24  # 0.92
    int8 = [1.0] * 274 + [0.0] * 26  # loses 2 samples: -0.67 points
    results.n_samples = n
    results.variant("baseline").scores = {"metric": "accuracy", "values": base, "weights": None}
    results.variant("int8").scores = {"metric": "accuracy", "values": int8, "weights": None}
    results.variant("int8").metric = sum(int8) / n
    derive(results)
    int8_v = results.variant("int8")
    assert int8_v.drop_ci is not None and int8_v.drop_ci[0] == 0.0 and int8_v.drop_ci[1] > 0.66
    low, high = int8_v.speedup_ci["cpu"]
    assert low <= int8_v.speedup["cpu"] <= high
    assert results.variant("pruned50").drop_ci is None  # no scores: no interval, no guess
    _value, change = cells.metric_cell(results, int8_v)
    assert change.startswith("drop +0.67 pts [+0.00, +") and change.endswith("]")
    assert "[" in cells.speedup_text(int8_v, "cpu")
    assert "95% interval" in cells.legend(results)
    assert "drop +0.67 pts" in _terminal(results)
    write_report(results, tmp_path / "r")
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "r" / "results.csv").open())}
    assert float(rows["int8"]["drop_ci_high"]) == pytest.approx(int8_v.drop_ci[1])
    assert rows["pruned50"]["drop_ci_low"] == ""
    assert float(rows["int8"]["speedup_ci_low_cpu"]) == pytest.approx(low)
    assert SweepResults.load(tmp_path / "r" / "results.json").variant("int8").drop_ci == (
        int8_v.drop_ci
    )
    specs, _ = plot_specs(results)
    point = next(p for p in specs[0].points if p.name == "int8")
    assert point.y_interval is not None and point.y_interval[1] == pytest.approx(0.92, abs=1e-9)
    assert point.x_interval is not None


def test_upper_gate_uses_the_interval_and_says_when_undecided():
    from squeeze.engine.gates import Gates, Selection, choose, failures, gate_notes

    results = sample_results()
    results.variant("int8").drop_ci = [-0.2, 1.8]
    results.variant("int8").drop_points = 0.5
    point, upper = Gates(1.0), Gates(1.0, gate_on="upper")
    chosen = results.variant("int8")
    assert failures(results, chosen, point) == []
    assert "upper end of its drop's 95% interval is 1.80" in failures(results, chosen, upper)[0]
    assert "too small to decide" in gate_notes(results, chosen, upper)[0]
    picked = choose(results, Selection("best-under-drop", 1.0, on="upper"))
    assert picked is not None and picked.name != "int8"
