"""``index.html``: one page to share a sweep: settings, the table, the plots and the data files.

The page has no scripts and no external assets; the plots are the PNGs beside it (each linked to
its SVG), so the folder can be zipped, attached or served as it is. It is read by people who did
not write the recipe, so the selection and the gates are said in words (the rule, each gate and
its verdict, why faster variants were not selected), never as option names.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from squeeze.engine.gates import Gates, gate_words
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
.change { font-size: 0.8rem; color: #555; font-weight: normal; }
tr.selected td { background: #fff4d6; border-top: 2px solid #e0a800;
                 border-bottom: 2px solid #e0a800; }
.badge { display: inline-block; margin-left: 0.4rem; padding: 0 0.35rem; border-radius: 0.25rem;
         background: #e0a800; color: #fff; font-size: 0.75rem; font-weight: 600; }
.selection { border-left: 4px solid #e0a800; padding: 0.4rem 0.8rem; background: #fffaf0; }
.selection p { margin: 0.3rem 0; }
.selection ul { margin: 0.2rem 0 0.4rem; padding-left: 1.4rem; }
.passed { color: #1b5e20; } .failed { color: #b71c1c; } .not-judged { color: #666; }
tr.baseline td:nth-child(2) { font-style: italic; }
.settings { display: flex; gap: 3rem; flex-wrap: wrap; }
.settings table { font-size: 0.8rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.legend, .notes { font-size: 0.85rem; color: #555; }
"""


# Settings as a reader knows them (results.json keeps the field names); other keys read with
# their underscores as spaces, and ``versions.torch`` as "torch version".
_NAMES = {
    "batch_sizes": "batch sizes",
    "seq_len": "sequence length (tokens)",
    "runs": "timed runs per round",
    "warmup": "warm-up runs",
    "rounds": "rounds (variants in rotating order)",
    "precision": "PyTorch precision",
    "compile": "torch.compile",
    "cpu": "CPU",
    "torch_threads": "PyTorch threads",
    "isa": "instruction sets",
    "gpu": "GPU",
}
_UNSET = {"threads": "PyTorch's default"}  # what an empty value means, where not "none"
_BOOLEANS = {"True": "yes", "False": "no"}


def _readable(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Settings pairs named and valued in words."""
    named = []
    for key, value in pairs:
        if key.startswith("versions."):
            name = f"{key.removeprefix('versions.')} version"
        else:
            name = _NAMES.get(key, key.replace("_", " "))
        named.append((name, _BOOLEANS.get(value, value) or _UNSET.get(key, "none")))
    return named


def _key_values(title: str, pairs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in pairs)
    return f"<div><h3>{escape(title)}</h3><table>{rows}</table></div>"


def _variants_table(results: SweepResults) -> str:
    """The variants, each figure over what it means against the baseline (as in the terminal:
    on one line, a tune's chains and intervals make the table wider than the page)."""
    n_text = cells.text_columns(results)

    def cell(tag: str, i: int, text: str, note: str = "") -> str:
        css = ' class="num"' if i >= n_text else ""
        under = f'<br><span class="change">{escape(note)}</span>' if note else ""
        return f"<{tag}{css}>{escape(text)}{under}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(cells.header(results)))
    body = []
    for v in results.variants:
        selected = v.name == results.selected
        flags = (("pareto", v.pareto), ("baseline", v.name == results.baseline),
                 ("selected", selected))  # fmt: skip
        classes = [name for name, on in flags if on]
        css = f' class="{" ".join(classes)}"' if classes else ""
        row = [cell("td", i, *c) for i, c in enumerate(cells.row_cells(results, v))]
        if selected:  # the variant's name is the second cell
            row[1] = row[1].replace("</td>", '<span class="badge">selected</span></td>')
        body.append(f"<tr{css}>{''.join(row)}</tr>")
    rows = "".join(body)
    return f'<table class="variants"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _summary(results: SweepResults) -> list[tuple[str, str]]:
    return [
        ("model", results.model),
        ("metric", cells.metric_label(results.metric_name) if results.metric_name else "none"),
        ("test samples", str(results.n_samples)),
        ("baseline", results.baseline),
    ]


def _selection(results: SweepResults) -> str:
    """What was selected and by which rule, each gate and its verdict, and why faster variants
    were not selected; empty when the run was asked to select nothing."""
    gates = Gates.from_dict(results.gates)
    if not (results.selected or results.selection_rule or gates.any):
        return ""
    rule = results.selection_rule
    if results.selected:
        name = f"<strong>Selected: {escape(results.selected)}</strong> (highlighted below)"
        lines = [f"<p>{name}, as {escape(rule)}.</p>" if rule else f"<p>{name}.</p>"]
    else:
        why = f": the rule was {escape(rule)}, and no variant meets it" if rule else ""
        lines = [f"<p><strong>No variant selected</strong>{why}.</p>"]
    verdicts = results.gate_verdicts
    words = gate_words(results, gates)
    if words:
        items = "".join(
            f'<li class="{verdicts[gate].replace(" ", "-")}">{escape(text)}: '
            f"{escape(verdicts[gate])}</li>"
            for gate, text in words.items()
        )
        lines.append(f"<p>Gates on the selected variant:</p><ul>{items}</ul>")
    if results.passed_over:
        items = "".join(
            f"<li><code>{escape(name)}</code>: {escape(why)}</li>"
            for name, why in results.passed_over.items()
        )
        lines.append(f"<p>Faster, but not selected:</p><ul>{items}</ul>")
    return f'<div class="selection">{"".join(lines)}</div>'


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
        f"<title>squeeze report: {escape(results.title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>squeeze report: {escape(results.title)}</h1>",
        f"<p>Measured on {escape(cells.machine_line(results.machine))}</p>",
        _selection(results),
        _variants_table(results),
        f'<p class="legend">{escape(cells.legend(results))}</p>',
        f'<ul class="notes">{notes_html}</ul>' if notes else "",
        f"<h2>Trade-offs</h2>{figures}" if plots else "",
        '<div class="settings">',
        _key_values("Run", _summary(results)),
        _key_values("Benchmark", _readable(cells.flatten(results.bench))),
        _key_values("Machine", _readable(cells.flatten(results.machine))),
        "</div>",
        '<p>Data: <a href="results.csv">results.csv</a> · <a href="results.json">results.json</a>'
        ' · <a href="results.md">results.md</a></p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
