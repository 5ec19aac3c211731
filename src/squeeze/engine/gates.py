"""Choosing the variant to deploy and the gates CI checks it against.

``--select best-under-drop=1.0`` picks the fastest variant (then the smallest) whose metric is at
most 1.0 points worse than the baseline's; ``smallest-under-drop=X`` prefers size; a variant's
name picks it directly. The gates then judge that one variant: metric drop, speed-up (a variant
that is "not faster" has none) and size on disk, each through :func:`squeeze.engine.gate.verdict`,
as a command's gate is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from squeeze.core.config import literal
from squeeze.core.errors import ConfigError, Problem
from squeeze.engine.gate import (
    FAILED,
    GATE_MODES,
    GATE_NEEDS,
    METRIC,
    NOT_JUDGED,
    PASSED,
    TIMING,
    passes,
    unjudgeable,
    verdict,
)

if TYPE_CHECKING:  # results reads its verdicts from here: a runtime import would loop
    from squeeze.report.results import SweepResults, VariantResult

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
        raise ConfigError(Problem(f"{{max_size}} takes a size like 50MB or 1.5GiB, not '{text}'"))
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    factor = _BINARY.get(unit) or _UNITS.get(unit)
    if factor is None:
        raise ConfigError(Problem(f"{{max_size}}: unknown unit in '{text}'"))
    return int(number * factor)


@dataclass(frozen=True)
class Gates:
    """What the selected variant must meet; ``gate_on`` says what the drop allowance judges
    (the drop, or the upper end of its 95% interval)."""

    max_accuracy_drop: float | None = None
    min_speedup: float | None = None
    max_size: int | None = None  # bytes on disk
    gate_on: str = field(default="point", metadata={"choices": GATE_MODES})
    min_fidelity: float | None = None  # an embedder's mean cosine to the baseline's embeddings

    @property
    def limits(self) -> dict[str, float | None]:
        """Each gate's limit by name (None: not set)."""
        return {name: getattr(self, name) for name in GATE_NEEDS}

    @property
    def any(self) -> bool:
        return any(limit is not None for limit in self.limits.values())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gates:
        """The gates a results file recorded (older files may lack newer fields)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Selection:
    """A policy with its drop allowance, or a variant's name. ``on`` says what the allowance
    judges, as :attr:`Gates.gate_on` does; ``min_fidelity`` (the run's fidelity gate) keeps a
    policy to the embedders' variants that gate would pass."""

    policy: str | None = None
    max_drop: float = math.inf
    name: str | None = None
    on: str = "point"
    min_fidelity: float | None = None

    @classmethod
    def parse(cls, text: str) -> Selection:
        policy, eq, value = text.partition("=")
        if policy in POLICIES:
            try:
                return cls(policy=policy, max_drop=float(value) if eq else math.inf)
            except ValueError:
                raise ConfigError(
                    Problem(f"{{select}} {policy}=X takes a number of points, not '{value}'")
                ) from None
        if eq and "(" not in text:  # a variant named by its chain holds "=" inside parentheses
            raise ConfigError(
                Problem(
                    f"{{select}} takes {' or '.join(p + '=X' for p in POLICIES)}, or a "
                    "variant's name"
                )
            )
        return cls(name=text)

    def describe(self) -> str:
        floor = f", fidelity >= {self.min_fidelity:g}" if self.min_fidelity is not None else ""
        return self.name or f"{self.policy}={self.max_drop:g}{floor}"

    def rule(self, results: SweepResults) -> str:
        """The rule in words, for a reader of the report rather than of the flags: e.g. 'the
        fastest variant on cpu whose accuracy drop is at most 1 point (the upper end of its 95%
        interval)'."""
        if self.name is not None:
            return f"the variant named by the selection ({self.name})"
        if self.policy == "smallest-under-drop":
            text = "the smallest variant on disk"
        else:
            devices = results.devices
            text = f"the fastest variant on {devices[0]}" if devices else "the fastest variant"
        conditions = []
        if not math.isinf(self.max_drop):
            conditions.append(drop_words(results, self.max_drop, self.on))
        if self.min_fidelity is not None:
            conditions.append(f"fidelity is at least {self.min_fidelity:g}")
        return f"{text} whose {' and '.join(conditions)}" if conditions else text


def drop_words(results: SweepResults, max_drop: float, on: str) -> str:
    """An allowance in words, e.g. 'accuracy drop is at most 1 point (the upper end of its 95%
    interval)'; a lower-is-better metric (perplexity) rises instead of dropping."""
    metric = results.metric_name or "metric"
    change = "drop" if results.higher_is_better else "rise"
    points = f"{max_drop:g} point{'' if max_drop == 1 else 's'}"
    upper = " (the upper end of its 95% interval)" if on == "upper" else ""
    return f"{metric} {change} is at most {points}{upper}"


def gate_words(results: SweepResults, gates: Gates) -> dict[str, str]:
    """Each gate that is set, in words: 'accuracy drop is at most 1 point', 'speed-up on cpu
    is at least 2x', 'size on disk is at most 47.7 MiB' (the report's reader never sees a
    flag's name)."""
    from squeeze.core.fmt import fmt_bytes

    device = results.devices[0] if results.devices else "the first device"
    words = {
        "max_accuracy_drop": lambda x: drop_words(results, x, gates.gate_on),
        "min_fidelity": lambda x: f"fidelity (mean cosine to the baseline) is at least {x:g}",
        "min_speedup": lambda x: f"speed-up on {device} is at least {x:g}x",
        "max_size": lambda x: f"size on disk is at most {fmt_bytes(int(x))}",
    }
    return {gate: words[gate](limit) for gate, limit in gates.limits.items() if limit is not None}


def judged(v: VariantResult, on: str) -> float | None:
    """The drop a gate or a selection compares with its allowance (see
    :mod:`squeeze.engine.gate`)."""
    from squeeze.engine.gate import judged_drop

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
                Problem(f"{{select}} {selection.name}: no such variant; variants: {names}")
            ) from None
    allowance = None if math.isinf(selection.max_drop) else selection.max_drop
    candidates = [
        v
        for v in results.variants
        if v.name != results.baseline
        and passes(judged(v, selection.on), allowance)
        and (
            selection.min_fidelity is None
            or verdict(v.fidelity, selection.min_fidelity, at_least=True) == PASSED
        )
    ]
    if not candidates:
        return None
    if selection.policy == "smallest-under-drop":
        return min(candidates, key=lambda v: (v.bytes_on_disk, _latency(results, v)))
    return min(candidates, key=lambda v: (_latency(results, v), v.bytes_on_disk))


def gate_notes(results: SweepResults, chosen: VariantResult | None, gates: Gates) -> list[str]:
    """What the report must say about the gate beside pass or fail: that the test set is too
    small to decide it, when the chosen variant's interval holds the allowance."""
    from squeeze.engine.gate import undecided_note

    if chosen is None:
        return []
    note = undecided_note(
        chosen.drop_points, chosen.drop_ci, gates.max_accuracy_drop, results.n_samples
    )
    return [f"{chosen.name}: {note}"] if note else []


def judge(
    results: SweepResults, chosen: VariantResult | None, gates: Gates
) -> dict[str, tuple[str, str | None]]:
    """Each gate's verdict on the chosen variant (:func:`squeeze.engine.gate.verdict`) with what to
    say when it failed or, for a gate that is set, could not be judged: never a silent pass."""
    shown = [g for g in GATE_NEEDS if g != "min_fidelity" or gates.min_fidelity is not None]
    if chosen is None:
        return {gate: (NOT_JUDGED, None) for gate in shown}
    name, drop = chosen.name, judged(chosen, gates.gate_on)
    device = results.devices[0] if results.devices else None
    speedup = chosen.speedup.get(device) if device in chosen.latency else None
    # Timed, but within the baseline's own spread: no speed-up at all, whatever the limit.
    not_faster = device in chosen.latency and speedup is None and gates.min_speedup is not None
    what = "the upper end of its drop's 95% interval is" if drop != chosen.drop_points else "drops"
    found = {
        "max_accuracy_drop": (
            verdict(drop, gates.max_accuracy_drop),
            lambda: f"{name}: {what} {drop:.2f} points (> {gates.max_accuracy_drop:g})",
        ),
        "min_fidelity": (
            verdict(chosen.fidelity, gates.min_fidelity, at_least=True),
            lambda: f"{name}: fidelity {chosen.fidelity:.6f} (< {gates.min_fidelity:g})",
        ),
        "min_speedup": (
            FAILED if not_faster else verdict(speedup, gates.min_speedup, at_least=True),
            lambda: (
                f"{name} is not measurably faster than the baseline"
                if speedup is None
                else f"{name} is {speedup:.2f}x faster (< {gates.min_speedup:g}x)"
            ),
        ),
        "max_size": (
            verdict(chosen.bytes_on_disk, gates.max_size),
            lambda: (
                f"{name} is {chosen.bytes_on_disk / 1e6:.1f} MB "
                f"(> {(gates.max_size or 0) / 1e6:g} MB)"
            ),
        ),
    }
    verdicts: dict[str, tuple[str, str | None]] = {}
    for gate in shown:
        outcome, failure = found[gate]
        why = failure() if outcome == FAILED else None
        if outcome == NOT_JUDGED and gates.limits[gate] is not None:
            why = f"{name}: {gate} could not be judged (no {GATE_NEEDS[gate]} was measured)"
        verdicts[gate] = (outcome, why)
    return verdicts


def failures(results: SweepResults, chosen: VariantResult | None, gates: Gates) -> list[str]:
    """Why the chosen variant misses the gates (empty when it passes): a gate failed, or one
    that is set could not be judged."""
    if chosen is None:
        why = "no variant qualifies for the selection"
        if gates.min_fidelity is not None:
            measured = [v for v in results.variants
                        if v.name != results.baseline and v.fidelity is not None]  # fmt: skip
            best = max(measured, key=lambda v: v.fidelity or 0.0, default=None)
            closest = "none measured" if best is None else (
                f"the closest, {best.name}, has {best.fidelity:.6f}")  # fmt: skip
            why += f" with fidelity >= {gates.min_fidelity:g} ({closest})"
        return [why]
    return [why for _, why in judge(results, chosen, gates).values() if why is not None]


def plan_problems(
    gates: Gates, select: Selection | None, *, names: list[str], data: bool, tuning: bool
) -> list[Problem]:
    """Before any work, every gate and selection a run could not judge: an accuracy gate or a
    drop allowance without data (no metric to compare), a name that is not a variant, and what
    a tune search does not judge (it keeps the fastest variant within its own allowance).

    Args:
        gates: The plan's gates.
        select: The plan's selection, if any.
        names: The variants a selection may name (the baseline included).
        data: Whether the run scores its variants (has data).
        tuning: Whether a tune search runs instead of fixed variants.
    """
    # A run times every variant: its speed-up gates always have their figure.
    measured = {METRIC, TIMING} if data else {TIMING}
    problems = [Problem("gates: " + p.text) for p in unjudgeable(gates.limits, measured)]
    if gates.min_fidelity is not None and not -1.0 <= gates.min_fidelity <= 1.0:
        problems.append(Problem(f"gates: {{min_fidelity}} is a mean cosine, from -1 to 1, not "
                                f"{gates.min_fidelity:g}; 0.99 is a usual floor"))  # fmt: skip
    if tuning:
        problems += [
            Problem(f"gates: {{{gate}}} is not judged by a tune: search (it keeps the fastest "
                    "variant within tune.max_accuracy_drop); leave it out")
            for gate in ("min_speedup", "max_size") if gates.limits[gate] is not None
        ]  # fmt: skip
        if gates.min_fidelity is not None:
            problems.append(
                Problem("gates: {min_fidelity} is not judged by a tune: search; its allowance, "
                        "tune.max_accuracy_drop, judges an embedder's fidelity where the data has "
                        "no labels (1 point = 0.01 of mean cosine: 1.0 keeps it >= 0.99); leave "
                        "it out")
            )  # fmt: skip
        if select is not None:
            problems.append(
                Problem(literal(f"select {select.describe()}: a tune: search selects by itself "
                                "(the fastest variant within tune.max_accuracy_drop); leave it "
                                "out"))
            )  # fmt: skip
    elif select is not None and select.name is not None and select.name not in names:
        listing = ", ".join(names)
        problems.append(
            Problem(literal(f"select {select.name}: no such variant; variants: {listing}"))
        )
    elif select is not None and not data and not math.isinf(select.max_drop):
        problems.append(
            Problem(literal(f"select {select.describe()}: ") + "without {data} no variant's drop "
                    "can be judged; pass {data}, or select a variant by name")
        )  # fmt: skip
    return problems
