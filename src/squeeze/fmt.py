"""Numbers people compare at a glance: parameter counts and byte sizes, for tables everywhere
(terminal, Markdown, HTML)."""

from __future__ import annotations


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
