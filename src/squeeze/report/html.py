"""``index.html``: one page to share a sweep: settings, the table, the plots and the data files.

The page has no scripts and no external assets; the plots are the PNGs beside it (each linked to
its SVG), so the folder can be zipped, attached or served as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from squeeze.report import cells
from squeeze.report.results import SweepResults

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left;
         vertical-align: top; }
table.variants td.num, table.variants th.num { text-align: right; white-space: nowrap; }
tr.pareto { background: #e8f5e9; font-weight: 600; }
tr.baseline td:nth-child(2) { font-style: italic; }
.settings { display: flex; gap: 3rem; flex-wrap: wrap; }
.settings table { font-size: 0.8rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.legend, .notes { font-size: 0.85rem; color: #555; }
"""


def _key_values(title: str, pairs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in pairs)
    return f"<div><h3>{escape(title)}</h3><table>{rows}</table></div>"


def _variants_table(results: SweepResults) -> str:
    n_text = cells.text_columns(results)

    def cell(tag: str, i: int, text: str) -> str:
        css = ' class="num"' if i >= n_text else ""
        return f"<{tag}{css}>{escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(cells.header(results)))
    body = []
    for v in results.variants:
        flags = (("pareto", v.pareto), ("baseline", v.name == results.baseline))
        classes = [name for name, on in flags if on]
        css = f' class="{" ".join(classes)}"' if classes else ""
        row = "".join(cell("td", i, c) for i, c in enumerate(cells.row(results, v)))
        body.append(f"<tr{css}>{row}</tr>")
    rows = "".join(body)
    return f'<table class="variants"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _summary(results: SweepResults) -> list[tuple[str, str]]:
    pairs = [
        ("model", results.model),
        ("metric", cells.metric_label(results.metric_name) if results.metric_name else "none"),
        ("samples", str(results.n_samples)),
        ("baseline", results.baseline),
    ]
    if results.selected:
        pairs.append(("selected", results.selected))
    return pairs + [(f"gate {k}", v) for k, v in cells.flatten(results.gates)]


def render_html(results: SweepResults, plots: Sequence[str], notes: Sequence[str]) -> str:
    """The page; ``plots`` are the stems of the PNG/SVG pairs written beside it."""
    figures = "".join(
        f'<figure><a href="{escape(stem)}.svg"><img src="{escape(stem)}.png" '
        f'alt="{escape(stem.replace("_", " "))}"></a></figure>'
        for stem in plots
    )
    notes_html = "".join(f"<li>{escape(n)}</li>" for n in notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>squeeze report: {escape(results.model)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>squeeze report: {escape(results.model)}</h1>",
        f"<p>Measured on {escape(cells.machine_line(results.machine))}</p>",
        _variants_table(results),
        f'<p class="legend">{escape(cells.legend(results))}</p>',
        f'<ul class="notes">{notes_html}</ul>' if notes else "",
        f"<h2>Trade-offs</h2>{figures}" if plots else "",
        '<div class="settings">',
        _key_values("Run", _summary(results)),
        _key_values("Benchmark", cells.flatten(results.bench)),
        _key_values("Machine", cells.flatten(results.machine)),
        "</div>",
        '<p>Data: <a href="results.csv">results.csv</a> · <a href="results.json">results.json</a>'
        ' · <a href="results.md">results.md</a></p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
