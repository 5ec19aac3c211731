"""The human-readable cells every view of a sweep shares (terminal, Markdown, HTML).

Written once so the terminal table, ``results.md`` and ``index.html`` can never disagree about
what "not faster" or a drop in points means.
"""

from __future__ import annotations

from typing import Any

from squeeze.core.fmt import fmt_bytes, fmt_count, fmt_drop
from squeeze.measure.machine import describe_machine
from squeeze.report.results import SweepResults, VariantResult

PARETO_MARK = "★"
NOT_FASTER = "not faster"

_MACHINE_KEYS = {"cpu", "cores", "torch_threads", "isa", "gpu"}

# A figure and what it means against the baseline ("4.0x smaller"; "" where nothing to say):
# one line in files, two in the terminal where columns are scarce.
Cell = tuple[str, str]


# Metric names as a reader knows them; the others read as they are (accuracy, spearman,
# ndcg@10, fidelity).
_LABELS = {"knn_accuracy": "kNN accuracy"}


def metric_label(name: str) -> str:
    """A metric's name for tables and plots, e.g. 'kNN accuracy' for ``knn_accuracy``."""
    return _LABELS.get(name, name)


def metric_header(results: SweepResults) -> str:
    """Column title that says which way is better, e.g. 'accuracy ↑'."""
    if results.metric_name is None:
        return "metric"
    return f"{metric_label(results.metric_name)} {'↑' if results.higher_is_better else '↓'}"


def shows_fidelity(results: SweepResults) -> bool:
    """Whether the table needs a fidelity column: an embedder's run whose metric is another
    (with labels, scores or pairs); where fidelity is the metric its column already shows it."""
    return results.metric_name != "fidelity" and any(
        v.fidelity is not None for v in results.variants
    )


def fidelity_cell(v: VariantResult) -> Cell:
    """The mean cosine of the variant's embeddings to the baseline's, e.g. ('0.9987', '')."""
    return ("n/a" if v.fidelity is None else f"{v.fidelity:.4f}"), ""


def metric_cell(results: SweepResults, v: VariantResult) -> Cell:
    """The metric and its drop from the baseline, e.g. ('0.9120', 'drop +1.30 pts').

    The drop is positive when the metric got worse, whichever way the metric reads (as in the
    JSON, the CSV, the notes and the gates), in percentage points for a higher-is-better
    fraction such as accuracy and in the metric's own units otherwise.
    """
    if v.metric is None:
        return "n/a", ""
    value = f"{v.metric:.4f}"
    if v.name == results.baseline or v.drop_points is None:
        return value, ""
    return value, "drop " + fmt_drop(v.drop_points, v.drop_ci, points=results.higher_is_better)


def params_cell(v: VariantResult) -> Cell:
    """Non-zero / total parameters; one figure when they print the same (a few stray zeros)."""
    nonzero, total = fmt_count(v.params_nonzero), fmt_count(v.params_total)
    return (total if nonzero == total else f"{nonzero} / {total}"), ""


def size_cell(results: SweepResults, v: VariantResult) -> Cell:
    """Bytes on disk and the ratio against the baseline, e.g. ('4.2 MiB', '4.0x smaller')."""
    size = fmt_bytes(v.bytes_on_disk)
    ratio = v.size_ratio
    if v.name == results.baseline or ratio is None or round(ratio, 2) == 1.0:
        return size, ""
    if ratio > 1:
        return size, f"{ratio:.1f}x smaller"
    return size, f"{1 / ratio:.1f}x larger"


def speedup_text(v: VariantResult, device: str) -> str:
    """'5.6x', 'not faster' (inside the baseline's spread), '1.3x slower', or '' if unknown."""
    if device not in v.speedup:
        return ""
    speedup = v.speedup[device]
    if speedup is None:
        return NOT_FASTER
    interval = v.speedup_ci.get(device)
    if speedup >= 1:
        return f"{speedup:.1f}x" + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")
    slower = f" [{1 / interval[1]:.1f}, {1 / interval[0]:.1f}]" if interval else ""
    return f"{1 / speedup:.1f}x slower{slower}"


def latency_cell(results: SweepResults, v: VariantResult, device: str) -> Cell:
    """p50 / p90 in ms on one device and the speed-up, e.g. ('2.10 / 2.40 ms', '5.6x')."""
    latency = v.latency.get(device)
    if latency is None:
        return "n/a", ""
    text = f"{latency.p50_ms:.2f} / {latency.p90_ms:.2f} ms"
    return text, "" if v.name == results.baseline else speedup_text(v, device)


def shows_chain(results: SweepResults) -> bool:
    """Whether the table needs a chain column: not when every variant is named by its chain.

    ``squeeze sweep`` names grid variants that way; a second copy of each chain only widens the
    table (results.json and results.csv keep both).
    """
    return any(v.chain and v.chain != v.name for v in results.variants)


def text_columns(results: SweepResults, chain: bool = True) -> int:
    """How many leading columns are text (mark, name, chain, format); every view right-aligns
    the figures after them."""
    return 4 if chain and shows_chain(results) else 3


def header(results: SweepResults, chain: bool = True, sep: str = " ") -> list[str]:
    """Column titles of the variant table, one latency column per device. ``chain`` False
    leaves the chains to :func:`chains` (the terminal, where columns are scarce); ``sep``
    joins a title's two parts ("\n": two lines)."""
    text = [PARETO_MARK, "variant", *(["chain"] if chain and shows_chain(results) else []),
            "format"]  # fmt: skip
    figures = [metric_header(results), *(["fidelity ↑"] if shows_fidelity(results) else []),
               f"params{sep}non-zero / total", "size"]  # fmt: skip
    return text + figures + [f"{d}{sep}p50 / p90" for d in results.devices]


def chains(results: SweepResults) -> list[str]:
    """'name = chain' for each variant not named by its chain, for a table without them."""
    return [f"{v.name} = {v.chain}" for v in results.variants if v.chain and v.chain != v.name]


def row_cells(results: SweepResults, v: VariantResult, chain: bool = True) -> list[Cell]:
    """One variant's cells, in the order of :func:`header`."""
    return [
        (PARETO_MARK if v.pareto else "", ""),
        (v.name, ""),
        *([(v.chain, "")] if chain and shows_chain(results) else []),
        (v.format, ""),
        metric_cell(results, v),
        *([fidelity_cell(v)] if shows_fidelity(results) else []),
        params_cell(v),
        size_cell(results, v),
        *(latency_cell(results, v, d) for d in results.devices),
    ]


def row(results: SweepResults, v: VariantResult) -> list[str]:
    """One variant's cells as single lines, e.g. '976.6 KiB (4.0x smaller)'."""
    return [f"{value} ({note})" if note else value for value, note in row_cells(results, v)]


def legend(results: SweepResults) -> str:
    """What the marks mean, in one sentence per mark."""
    device = results.devices[0] if results.devices else None
    axes = [metric_label(results.metric_name)] if results.metric_name is not None else []
    axes += [f"latency on {device}"] if device else []
    on = f"{', '.join(axes)} and size" if axes else "size"
    sentences = [
        f"Drops (positive: worse) and ratios are against the baseline ({results.baseline}).",
        f"{PARETO_MARK} Pareto-optimal: no other variant is as good on {on}, and better on one.",
        f"'{NOT_FASTER}': the p50 lies within the baseline's own run-to-run spread (min to max).",
    ]
    if any(v.fidelity is not None for v in results.variants):
        sentences.insert(1, "fidelity: the mean cosine of each variant's embeddings of the test "
                            "texts to the baseline's (1: the same embeddings; a point of change "
                            "is 0.01).")  # fmt: skip
    base = next((v for v in results.variants if v.name == results.baseline), None)
    if base is not None and any(v.params_total > base.params_total for v in results.variants):
        sentences.append(
            "params: an export also counts the constants it adds (a quantized one's scales and "
            "zero points, one per output channel or block), so its total can exceed the "
            "baseline's."
        )
    if any(v.drop_ci or v.speedup_ci for v in results.variants):
        sentences.append(
            "[low, high]: 95% interval (drops: paired bootstrap over the same "
            f"{results.n_samples} test samples; speed-ups: bootstrap of the timed runs)."
        )
    return " ".join(sentences)


def machine_line(machine: dict[str, Any]) -> str:
    """The machine in one line; figures only compare on the same CPU and libraries."""
    if machine.keys() >= _MACHINE_KEYS:
        return describe_machine(machine)
    return ", ".join(f"{k} {v}" for k, v in machine.items() if not isinstance(v, dict))


def flatten(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as ('versions.torch', '2.13.0') pairs for key/value tables."""
    pairs: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            pairs.append((name, ", ".join(str(x) for x in value)))
        else:
            pairs.append((name, "" if value is None else str(value)))
    return pairs
