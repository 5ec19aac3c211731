"""Numbers people compare at a glance: parameter counts, byte sizes and metric changes, for
tables everywhere (terminal, Markdown, HTML)."""

from __future__ import annotations

from collections.abc import Sequence


def fmt_count(n: int | None) -> str:
    """1234567 -> '1.23M': parameter counts people can compare at a glance."""
    if n is None:
        return "n/a"
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}"
    return str(n)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for factor, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.1f} {suffix}"
    return f"{n} B"


def fmt_drop(drop_points: float, interval: Sequence[float] | None, *, points: bool) -> str:
    """A drop as every table, note and file states it: positive when the metric got worse,
    whichever way the metric reads, with its 95% interval: '+0.87 pts [-0.19, +1.93]' for
    accuracy (``points``: a fraction's change in percentage points), '+0.42 [+0.10, +0.80]'
    for perplexity. ``+ 0.0`` keeps "-0.00" out of the tables."""
    text = f"{drop_points + 0.0:+.2f}" + (" pts" if points else "")
    if interval:
        low, high = sorted(x + 0.0 for x in interval)
        text += f" [{low:+.2f}, {high:+.2f}]"
    return text
