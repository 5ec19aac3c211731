"""The sweep as text files: a Markdown table to read, a flat CSV to load, the JSON to reload.

The CSV keeps raw numbers (no units, no rounding) so spreadsheets and pandas can sort and plot
it; the Markdown uses the same cells as the terminal table.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from squeeze.report import cells
from squeeze.report.results import SweepResults, VariantResult


def _md_escape(text: str) -> str:
    """A pipe would end the cell early; a newline would end the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(results: SweepResults, notes: Sequence[str] = ()) -> str:
    """``results.md``: a heading, the settings in one paragraph, the table and its legend."""
    metric = cells.metric_label(results.metric_name) if results.metric_name else "no metric"
    lines = [
        f"# squeeze report: {_md_escape(results.title)}",
        "",
        f"Metric: {_md_escape(metric)} on {results.n_samples} samples; baseline: "
        f"`{results.baseline}`" + (f"; selected: `{results.selected}`" if results.selected else ""),
        "",
        f"Machine: {_md_escape(cells.machine_line(results.machine))}",
        "",
    ]
    header = cells.header(results)
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    text = cells.text_columns(results)
    lines.append("|" + "|".join(["---"] * text + ["---:"] * (len(header) - text)) + "|")
    for v in results.variants:
        row = [_md_escape(c) for c in cells.row(results, v)]
        if v.name == results.baseline:
            row[1] = f"_{row[1]}_"
        if v.pareto:
            row[1] = f"**{row[1]}**"
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", cells.legend(results)]
    if notes:
        lines += ["", *(f"- Note: {_md_escape(note)}" for note in notes)]
    return "\n".join(lines) + "\n"


def _csv_row(results: SweepResults, v: VariantResult) -> dict[str, Any]:
    """Raw figures by flat column name, in column order; latency and speed-up columns repeat
    per device (``p50_ms_cpu``). An empty speed-up cell with ``faster`` 0 means "not faster"."""
    row: dict[str, Any] = {
        "name": v.name,
        "baseline": int(v.name == results.baseline),
        "chain": v.chain,
        "format": v.format,
        "artifact": v.artifact,
        "params_total": v.params_total,
        "params_nonzero": v.params_nonzero,
        "bytes_on_disk": v.bytes_on_disk,
        "size_ratio": v.size_ratio,
        "metric": v.metric,
        "drop_points": v.drop_points,
        "drop_ci_low": v.drop_ci[0] if v.drop_ci else None,
        "drop_ci_high": v.drop_ci[1] if v.drop_ci else None,
        "fidelity": v.fidelity,
    }
    for device in results.devices:
        latency = v.latency.get(device)
        speedup = v.speedup.get(device)
        row[f"p50_ms_{device}"] = latency.p50_ms if latency else None
        row[f"p90_ms_{device}"] = latency.p90_ms if latency else None
        row[f"speedup_{device}"] = speedup
        interval = v.speedup_ci.get(device)
        row[f"speedup_ci_low_{device}"] = interval[0] if interval else None
        row[f"speedup_ci_high_{device}"] = interval[1] if interval else None
        known = device in v.speedup
        row[f"faster_{device}"] = int(speedup is not None and speedup > 1) if known else None
    row.update(
        pareto=int(v.pareto), cached=int(v.cached), seconds=v.seconds, notes="; ".join(v.notes)
    )
    return row


def csv_columns(results: SweepResults) -> list[str]:
    """Flat column names: a row's keys, which depend on the devices alone (so a results file
    without variants still gets its header)."""
    return list(_csv_row(results, VariantResult("", "", "", "", 0, 0, 0)))


def write_csv(results: SweepResults, path: Path) -> None:
    """``results.csv``: one row per variant; None becomes an empty cell.

    Floats are rounded to 6 decimals: float noise like 6.6000000000000005 ms is not data.
    """
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=csv_columns(results))
        writer.writeheader()
        for v in results.variants:
            row = _csv_row(results, v)
            writer.writerow({k: round(x, 6) if isinstance(x, float) else x for k, x in row.items()})


def write_tables(results: SweepResults, folder: Path, notes: Sequence[str]) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and the ``results.json`` copy into ``folder``."""
    md, table, copy = folder / "results.md", folder / "results.csv", folder / "results.json"
    md.write_text(markdown(results, notes), encoding="utf-8")
    write_csv(results, table)
    results.save(copy)
    return [md, table, copy]
