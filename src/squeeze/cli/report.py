"""``squeeze report``: turn a sweep's results.json into tables, plots and a page to share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from squeeze.cli._options import JsonOpt, OverwriteOpt
from squeeze.cli._render import print_json, print_notes
from squeeze.cli._render import stdout as console


def report(
    results: Annotated[
        str,
        typer.Argument(
            help="results.json written by `squeeze run`/`squeeze sweep`, or its folder."
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report folder here (must not exist); without it, "
            "only the table is shown.",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    json_output: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the paths written, no table.")
    ] = False,
) -> None:
    """Show the variants of RESULTS, frontier highlighted, and with -o write a report folder.

    The folder holds results.md, results.csv, a copy of results.json, metric-vs-latency and
    metric-vs-size plots (PNG and SVG) with the Pareto frontier, and index.html with all of it.
    """
    from squeeze.cli._results import print_results
    from squeeze.report.results import SweepResults
    from squeeze.report.write import report_notes, write_report

    source = Path(results)
    loaded = SweepResults.load(source)
    if output is None:
        if json_output:
            print_json(loaded.to_dict())
        else:
            print_results(loaded, console)
            print_notes([n for n in report_notes(loaded) if n not in loaded.gate_notes])
        return
    source_file = source / "results.json" if source.is_dir() else source
    files = write_report(loaded, output, overwrite, inputs=[source_file.resolve()])
    notes = report_notes(loaded)
    if json_output:
        print_json(
            {
                "output": str(files[0].parent),
                "files": [str(f) for f in files],
                "pareto": [v.name for v in loaded.variants if v.pareto],
                "notes": notes,
            }
        )
        return
    if quiet:
        for path in files:
            print(path)
    else:
        print_results(loaded, console)
        console.print(f"\nwrote {len(files)} files to {files[0].parent}:", markup=False)
        for path in files:
            console.print(f"  {path.name}", markup=False)
    # The table already showed the gate's notes.
    print_notes(notes if quiet else [n for n in notes if n not in loaded.gate_notes])
