"""Choosing the variant to deploy and the gates CI checks it against.

``--select best-under-drop=1.0`` picks the fastest variant (then the smallest) whose metric is at
most 1.0 points worse than the baseline's; ``smallest-under-drop=X`` prefers size; a variant's
name picks it directly. The gates then judge that one variant: metric drop, speed-up (a variant
that is "not faster" has none) and size on disk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from squeeze.errors import ConfigError, Problem
from squeeze.results import SweepResults, VariantResult

_SIZE = re.compile(r"^\s*([\d.]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
POLICIES = ("best-under-drop", "smallest-under-drop")


def parse_size(text: str) -> int:
    """``50MB``, ``1.5GiB``, ``200k`` or a plain byte count.

    Raises:
        ConfigError: not a size.
    """
    match = _SIZE.match(text)
    if not match:
        raise ConfigError([Problem(f"{{max_size}} takes a size like 50MB or 1.5GiB, not '{text}'")])
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    factor = _BINARY.get(unit) or _UNITS.get(unit)
    if factor is None:
        raise ConfigError([Problem(f"{{max_size}}: unknown unit in '{text}'")])
    return int(number * factor)


@dataclass(frozen=True)
class Gates:
    """What the selected variant must meet; ``gate_on`` says what the drop allowance judges
    (the drop, or the upper end of its 95% interval)."""

    max_accuracy_drop: float | None = None
    min_speedup: float | None = None
    max_size: int | None = None  # bytes on disk
    gate_on: str = "point"

    @property
    def any(self) -> bool:
        return any(g is not None for g in (self.max_accuracy_drop, self.min_speedup, self.max_size))


@dataclass(frozen=True)
class Selection:
    """A policy with its drop allowance, or a variant's name. ``on`` says what the allowance
    judges, as :attr:`Gates.gate_on` does."""

    policy: str | None = None
    max_drop: float = math.inf
    name: str | None = None
    on: str = "point"

    @classmethod
    def parse(cls, text: str) -> Selection:
        policy, eq, value = text.partition("=")
        if policy in POLICIES:
            try:
                return cls(policy=policy, max_drop=float(value) if eq else math.inf)
            except ValueError:
                raise ConfigError(
                    [Problem(f"{{select}} {policy}=X takes a number of points, not '{value}'")]
                ) from None
        if eq and "(" not in text:  # a variant named by its chain holds "=" inside parentheses
            raise ConfigError(
                [
                    Problem(
                        f"{{select}} takes {' or '.join(p + '=X' for p in POLICIES)}, or a "
                        "variant's name"
                    )
                ]
            )
        return cls(name=text)

    def describe(self) -> str:
        return self.name or f"{self.policy}={self.max_drop:g}"


def judged(v: VariantResult, on: str) -> float | None:
    """The drop a gate or a selection compares with its allowance (see :mod:`squeeze.gate`)."""
    from squeeze.gate import judged_drop

    return judged_drop(v.drop_points, v.drop_ci, on)


def _latency(results: SweepResults, v: VariantResult) -> float:
    devices = results.devices
    return v.latency[devices[0]].p50_ms if devices and devices[0] in v.latency else math.inf


def choose(results: SweepResults, selection: Selection) -> VariantResult | None:
    """The variant the selection names, or None when no variant qualifies.

    Raises:
        ConfigError: a name that is not one of the variants.
    """
    if selection.name is not None:
        try:
            return results.variant(selection.name)
        except KeyError:
            names = ", ".join(v.name for v in results.variants)
            raise ConfigError(
                [Problem(f"{{select}} {selection.name}: no such variant; variants: {names}")]
            ) from None
    candidates = [
        v
        for v in results.variants
        if v.name != results.baseline
        and (judged(v, selection.on) is None or judged(v, selection.on) <= selection.max_drop)
    ]
    if not candidates:
        return None
    if selection.policy == "smallest-under-drop":
        return min(candidates, key=lambda v: (v.bytes_on_disk, _latency(results, v)))
    return min(candidates, key=lambda v: (_latency(results, v), v.bytes_on_disk))


def gate_notes(results: SweepResults, chosen: VariantResult | None, gates: Gates) -> list[str]:
    """What the report must say about the gate beside pass or fail: that the test set is too
    small to decide it, when the chosen variant's interval holds the allowance."""
    from squeeze.gate import undecided_note

    if chosen is None:
        return []
    note = undecided_note(
        chosen.drop_points, chosen.drop_ci, gates.max_accuracy_drop, results.n_samples
    )
    return [f"{chosen.name}: {note}"] if note else []


def failures(results: SweepResults, chosen: VariantResult | None, gates: Gates) -> list[str]:
    """Why the chosen variant misses the gates (empty when it passes)."""
    if chosen is None:
        return ["no variant qualifies for the selection"]
    problems = []
    drop = judged(chosen, gates.gate_on)
    if gates.max_accuracy_drop is not None and (drop or 0.0) > gates.max_accuracy_drop:
        what = (
            "the upper end of its drop's 95% interval is"
            if drop != chosen.drop_points
            else ("drops")
        )
        problems.append(f"{chosen.name}: {what} {drop:.2f} points (> {gates.max_accuracy_drop:g})")
    if gates.min_speedup is not None:
        device = results.devices[0] if results.devices else None
        speedup = chosen.speedup.get(device) if device else None
        if speedup is None:
            problems.append(f"{chosen.name} is not measurably faster than the baseline")
        elif speedup < gates.min_speedup:
            problems.append(f"{chosen.name} is {speedup:.2f}x faster (< {gates.min_speedup:g}x)")
    if gates.max_size is not None and chosen.bytes_on_disk > gates.max_size:
        problems.append(
            f"{chosen.name} is {chosen.bytes_on_disk / 1e6:.1f} MB (> {gates.max_size / 1e6:g} MB)"
        )
    return problems
