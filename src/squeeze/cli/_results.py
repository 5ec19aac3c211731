"""The sweep as a rich table in the terminal, frontier rows highlighted.

``squeeze run``, ``squeeze sweep``, ``squeeze tune`` and ``squeeze report`` all end with this
table, so it takes a Console rather than printing to a fixed stream.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from squeeze.cli._render import compact_table, emit, print_json, say, stdout
from squeeze.report import cells
from squeeze.report.results import SweepResults

PARETO_STYLE = "bold green"


def print_results(results: SweepResults, console: Console) -> None:
    """Print every variant, Pareto-optimal ones in bold green, then the chains the variant
    names stand for, the legend and the machine."""
    # No vertical rules and no chain column: 80-column terminals are common. Each figure's
    # meaning against the baseline goes under it, its interval on a line of its own.
    table = compact_table(f"squeeze: {results.title}")
    text = cells.text_columns(results, chain=False)
    for i, title in enumerate(cells.header(results, chain=False, sep="\n")):
        table.add_column(title, justify="left" if i < text else "right")
    for v in results.variants:
        # Text, not markup: a name with [..] is data.
        row = [_cell(value, note) for value, note in cells.row_cells(results, v, chain=False)]
        if v.name == results.baseline:
            row[1].stylize("italic")
        table.add_row(*row, style=PARETO_STYLE if v.pareto else None)
    emit(table, console)
    for line in cells.chains(results):
        say(line, console, indent=4)
    say(cells.legend(results), console, style="dim")
    if results.selected:
        say(f"selected: {results.selected}", console, style="bold")
    for name, why in results.passed_over.items():  # faster, so a reader asks why not
        say(f"not selected: {name}: {why}", console, style="yellow", indent=4)
    for note in results.gate_notes:
        say(f"gate: {note}", console, style="yellow")
    say(f"measured on {cells.machine_line(results.machine)}", console, style="dim")


def _cell(value: str, note: str) -> Text:
    """The figure, and under it what it means against the baseline ("not faster" in yellow),
    a 95% interval on a third line."""
    if not note:
        return Text(value)
    note = note.replace(" [", "\n[")
    return Text(value + "\n") + Text(note, style="yellow" if note == cells.NOT_FASTER else "")


def print_outcome(
    results: SweepResults,
    output: str,
    problems: list[str],
    json_output: bool,
    trials: list[Any] | None = None,
) -> None:
    """How a run, sweep or tune ended: JSON (with the gates' ``problems``), or the table and
    where everything went. ``trials``: tune's search trace, shown before the results."""
    if json_output:
        trace = {} if trials is None else {"trace": [t.to_dict() for t in trials]}
        print_json({**results.to_dict(), **trace, "gate_failures": problems, "out": output})
        return
    if trials is not None:
        _print_trace(trials)
    print_results(results, stdout)
    written = "results and report" if trials is None else "results, report and trace"
    selected = f"; {results.selected} copied to {output}/selected" if results.selected else ""
    # Markup off: [..] in a path or a variant name is data.
    stdout.print(f"{written} in {output}{selected}", markup=False)


def _print_trace(trials: list[Any]) -> None:
    table = compact_table("search trace (validation split)")
    workers = any(t.built_by for t in trials)  # built on a cluster: say where
    titles = ["#", "candidate", "latency", "drop before /\nafter recovery", "outcome"]
    for title in titles + (["built by"] if workers else []):
        table.add_column(title, justify="right" if title in titles[2:4] else "left")
    for t in trials:
        speed = "" if t.latency_ms is None else f"{t.latency_ms:.2f} ms"
        drops = " / ".join(
            "-" if d is None else f"{d:+.2f}" for d in (t.drop_before_recovery, t.drop)
        )
        outcome = t.outcome + (f": {t.reason}" if t.reason else "")
        where = [Text(t.built_by or "-")] if workers else []
        table.add_row(str(t.order), Text(t.chain), speed, drops, Text(outcome), *where)
    emit(table, stdout)
