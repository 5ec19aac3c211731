"""Write a whole report folder at once: tables, plots and the HTML page, or nothing.

The folder is built in a temporary sibling and moved into place at the end, so a crash while
plotting never leaves a half-written report behind (or destroys the previous one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from squeeze.core.output import atomic_output, check_output
from squeeze.report.html import render_html
from squeeze.report.plots import draw, plot_specs
from squeeze.report.results import SweepResults
from squeeze.report.tables import write_tables


def report_notes(results: SweepResults) -> list[str]:
    """What the gate could not decide and what the plots leave out or substitute, for callers
    that show notes themselves."""
    return [*results.gate_notes, *plot_specs(results)[1]]


def write_report(
    results: SweepResults,
    out: str | os.PathLike[str],
    overwrite: bool = False,
    *,
    inputs: Iterable[Path] = (),
) -> list[Path]:
    """Write results.md/.csv/.json, the plots (PNG and SVG) and index.html into ``out``.

    ``inputs`` are files the report must not clobber (the results file it was read from), so
    ``-o`` pointing at a run's own folder is refused instead of replacing it.

    Returns:
        The files written, at their final paths.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        ConfigError: ``out`` is, holds or sits inside one of ``inputs``.
    """
    inputs = list(inputs)
    target = check_output(out, overwrite=overwrite, inputs=inputs)
    specs, plot_notes = plot_specs(results)
    notes = [*results.gate_notes, *plot_notes]
    with atomic_output(out, overwrite=overwrite, inputs=inputs) as folder:
        written = write_tables(results, folder, notes)
        for spec in specs:
            written += draw(spec, folder)
        page = folder / "index.html"
        page.write_text(render_html(results, [s.stem for s in specs], notes), encoding="utf-8")
        written.append(page)
    return [target / path.name for path in written]
