"""The sweep as a rich table in the terminal, frontier rows highlighted.

``squeeze run``, ``squeeze sweep``, ``squeeze tune`` and ``squeeze report`` all end with this
table, so it takes a Console rather than printing to a fixed stream.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from squeeze.cli._render import print_json, stdout
from squeeze.report import cells
from squeeze.report.results import SweepResults

PARETO_STYLE = "bold green"
LOG_WIDTH = 200  # the widest a table gets where output is not a terminal


def print_results(results: SweepResults, console: Console) -> None:
    """Print every variant, Pareto-optimal ones in bold green, then the legend and machine."""
    # No vertical rules: a sweep table has many columns and 80-column terminals are common.
    table = Table(title=f"squeeze: {results.model}", title_justify="left", box=box.SIMPLE_HEAD)
    text = cells.text_columns(results)
    for i, title in enumerate(cells.header(results)):
        # Fold rather than cut with an ellipsis where space runs out: every figure matters.
        justify = "left" if i < text else "right"
        table.add_column(title, justify=justify, overflow="fold")
    for v in results.variants:
        # Text, not markup: a chain like "quantize(dtype=int8)" or a name with [..] is data.
        row = [_cell(value, note) for value, note in cells.row_cells(results, v)]
        if v.name == results.baseline:
            row[1].stylize("italic")
        table.add_row(*row, style=PARETO_STYLE if v.pareto else None)
    print_table(table, console)
    console.print(Text(cells.legend(results), style="dim"))
    if results.selected:
        console.print(Text("selected: ") + Text(results.selected, style="bold"))
    for name, why in results.passed_over.items():  # faster, so a reader asks why not
        console.print(Text("not selected: ", style="yellow") + Text(f"{name}: {why}"))
    for note in results.gate_notes:
        console.print(Text("gate: ", style="yellow") + Text(note))
    console.print(Text(f"measured on {cells.machine_line(results.machine)}", style="dim"))


def print_table(table: Table, console: Console) -> None:
    """Print ``table``; where output is a log, at its natural width rather than folded.

    A log (CI, a pipe) has no width of its own and rich assumes 80 columns, which folds every
    chain and figure over several lines; a log can take the table's natural width instead.
    (Console.print caps its width argument at the console's own, hence the swap.)
    """
    width = console.width
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(LOG_WIDTH))
        console.width = max(width, natural.maximum)
    try:
        console.print(table)
    finally:
        console.width = width


def _cell(value: str, note: str) -> Text:
    """The figure, and under it what it means against the baseline ("not faster" in yellow)."""
    if not note:
        return Text(value)
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
    table = Table(title="search trace (validation split)", title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    for title in ("#", "candidate", "latency", "drop before / after recovery", "outcome"):
        table.add_column(title, overflow="fold")
    for t in trials:
        speed = "" if t.latency_ms is None else f"{t.latency_ms:.2f} ms"
        drops = " / ".join(
            "-" if d is None else f"{d:+.2f}" for d in (t.drop_before_recovery, t.drop)
        )
        outcome = t.outcome + (f": {t.reason}" if t.reason else "")
        table.add_row(str(t.order), Text(t.chain), speed, drops, Text(outcome))
    print_table(table, stdout)
