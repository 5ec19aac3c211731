"""The accuracy gate CI jobs rely on: how many points a step cost, and whether that is allowed.

Shared by every step that changes a model (prune, quantize), so "points" means the same
everywhere: percentage points for accuracy-like metrics, raw units for perplexity and loss.

A gate judges either the point estimate of the drop (``point``) or the upper end of its 95%
paired interval (``upper``): on a small test set the point estimate moves by a point from one
seed to the next, so a CI gate on it is flaky; the upper end fails only drops the data shows.

This module is the one place a gate is judged, for commands and recipes alike (:func:`verdict`):
``passed``, ``failed``, or ``not judged`` when no figure was measured, which is never a pass. A
gate whose figure a run will not measure is refused before any work (:func:`unjudgeable`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from squeeze.core.errors import GateError, Problem
from squeeze.core.types import Evaluation, points_dropped

GATE_MODES = ("point", "upper")
PASSED, FAILED, NOT_JUDGED = "passed", "failed", "not judged"
METRIC, TIMING = "metric", "timing"
# What each gate compares, so what a run must measure for it to be judged (sizes always are).
GATE_NEEDS: dict[str, str | None] = {
    "max_accuracy_drop": METRIC,
    "min_fidelity": METRIC,
    "min_speedup": TIMING,
    "max_size": None,
}
FIDELITY = "fidelity"  # the embedder metric --min-fidelity judges (mean cosine to the input)
_UNMEASURED = {
    METRIC: "{{{gate}}} needs {{data}}: without a metric measured before and after there is no "
    "drop to judge; pass {{data}} or leave {{{gate}}} out",
    TIMING: "{{{gate}}} needs timings: without them there is no speed-up to judge; time the "
    "variants or leave {{{gate}}} out",
}


def verdict(measured: float | None, limit: float | None, *, at_least: bool = False) -> str:
    """The one judgement of every gate: whether ``measured`` keeps ``limit`` (at most, or at
    least). Without a limit or a measured figure the gate is ``not judged``, never passed."""
    if limit is None or measured is None:
        return NOT_JUDGED
    return PASSED if (measured >= limit if at_least else measured <= limit) else FAILED


def unjudgeable(limits: Mapping[str, float | None], measured: Collection[str]) -> list[Problem]:
    """A problem for each gate that is set (in ``limits``) but whose figure is not among what
    the run will measure: raised before any work, since such a gate could only pass silently."""
    return [
        Problem(_UNMEASURED[need].format(gate=gate))
        for gate, limit in limits.items()
        if limit is not None and (need := GATE_NEEDS[gate]) is not None and need not in measured
    ]


class GateMissed(Exception):
    """Raised inside an atomic output to discard it when the gate fails; carries the result."""

    def __init__(self, result: object) -> None:
        super().__init__("gate missed")
        self.result = result


def drop_points(before: Evaluation | None, after: Evaluation | None) -> float | None:
    """How much worse the primary metric got (positive = worse), or None without data."""
    if before is None or after is None:
        return None
    return points_dropped(before.primary.name, before.primary.value, after.primary.value)


def drop_interval(
    before: Evaluation | None, after: Evaluation | None
) -> tuple[float, float] | None:
    """The 95% paired interval of the drop, or None without per-sample scores on both sides."""
    if before is None or after is None or before.scores is None or after.scores is None:
        return None
    from squeeze.core.stats import paired_drop_interval

    return paired_drop_interval(before.scores, after.scores)


def judged_drop(drop: float | None, interval: Sequence[float] | None, gate_on: str) -> float | None:
    """The figure the gate compares with its allowance: the drop, or its interval's upper end
    (an interval as JSON keeps it, a list, will do)."""
    if gate_on == "upper" and interval:
        return interval[1]
    return drop


def passes(judged: float | None, max_drop: float | None) -> bool:
    """Whether a drop keeps an allowance: no allowance lets everything through; an allowance
    never lets through a drop that was not measured."""
    return max_drop is None or verdict(judged, max_drop) == PASSED


def undecided_note(
    drop: float | None, interval: Sequence[float] | None, max_drop: float | None, n: int
) -> str | None:
    """What to say when the interval holds the allowance: the data cannot decide the gate."""
    from squeeze.core.stats import fmt_interval
    from squeeze.core.stats import verdict as interval_verdict

    if max_drop is None or interval_verdict(drop, interval, max_drop) != "undecided":
        return None
    return (
        f"the test set ({n} samples) is too small to decide the {max_drop:g}-point gate: the drop "
        f"is {drop:.2f} points, 95% interval {fmt_interval(interval)}"
    )


def fidelity_of(evaluation: Evaluation | None) -> float | None:
    """An embedder's mean cosine to the original's embeddings, where it was measured."""
    found = evaluation.metric(FIDELITY) if evaluation is not None else None
    return found.value if found is not None else None


class Gated:
    """For step results with ``metric_before``, ``metric_after``, ``max_accuracy_drop`` and
    ``gate_on``; embedders' ``min_fidelity`` too."""

    metric_before: Evaluation | None
    metric_after: Evaluation | None
    max_accuracy_drop: float | None
    gate_on: str
    min_fidelity: float | None = None

    @property
    def drop_points(self) -> float | None:
        """How much worse the primary metric got, in points (x100 for accuracy)."""
        return drop_points(self.metric_before, self.metric_after)

    @property
    def drop_interval(self) -> tuple[float, float] | None:
        """The drop's 95% paired interval, bootstrapped once per pair of evaluations (the gate,
        its note, the summary and the table all read it)."""
        pair = (self.metric_before, self.metric_after)
        memo = getattr(self, "_interval_memo", None)
        if memo is None or memo[0] is not pair[0] or memo[1] is not pair[1]:
            memo = (*pair, drop_interval(*pair))
            self._interval_memo = memo
        return memo[2]

    @property
    def verdict(self) -> str:
        """The accuracy gate's verdict: passed, failed, or not judged (no gate, or no metric)."""
        judged = judged_drop(self.drop_points, self.drop_interval, self.gate_on)
        return verdict(judged, self.max_accuracy_drop)

    @property
    def fidelity(self) -> float | None:
        return fidelity_of(self.metric_after)

    @property
    def fidelity_verdict(self) -> str:
        """The fidelity floor's verdict: passed, failed, or not judged."""
        return verdict(self.fidelity, self.min_fidelity, at_least=True)

    @property
    def passed(self) -> bool:
        """Whether the step may be written: no gate, or every gate judged and kept."""
        return (self.max_accuracy_drop is None or self.verdict == PASSED) and (
            self.min_fidelity is None or self.fidelity_verdict == PASSED
        )

    @property
    def undecided(self) -> str | None:
        """The note saying the test set is too small to decide the gate, if it is."""
        n = self.metric_after.n_samples if self.metric_after else 0
        return undecided_note(self.drop_points, self.drop_interval, self.max_accuracy_drop, n)

    def gate_fields(self) -> dict[str, object]:
        """The metric and gate part of a step's JSON summary."""
        interval = self.drop_interval
        return {
            "metric_before": self.metric_before.to_dict() if self.metric_before else None,
            "metric_after": self.metric_after.to_dict() if self.metric_after else None,
            "drop_points": self.drop_points,
            "drop_ci95": list(interval) if interval else None,
            "max_accuracy_drop": self.max_accuracy_drop,
            "gate_on": self.gate_on,
            "gate_undecided": self.undecided,
            "min_fidelity": self.min_fidelity,
            "gate_verdicts": {
                "max_accuracy_drop": self.verdict,
                **(
                    {"min_fidelity": self.fidelity_verdict} if self.min_fidelity is not None else {}
                ),
            },
            "passed": self.passed,
        }


def gate_error(result: Gated, out: object) -> GateError:
    """The one-line failure CI shows: the drop, the values, and by how much the gate was missed
    (or the fidelity and the floor it fell under)."""
    from squeeze.core.stats import fmt_interval

    if result.min_fidelity is not None and result.fidelity_verdict != PASSED:
        measured = "was not measured" if result.fidelity is None else f"is {result.fidelity:.4f}"
        return GateError(
            f"the embeddings' mean cosine to the original's {measured}, below --min-fidelity "
            f"{result.min_fidelity:g}; nothing was written to {out}"
        )
    before, after, max_drop = result.metric_before, result.metric_after, result.max_accuracy_drop
    assert before is not None and after is not None and max_drop is not None
    drop = drop_points(before, after)
    interval = result.drop_interval
    judged = judged_drop(drop, interval, result.gate_on)
    assert drop is not None and judged is not None
    b, a = before.primary, after.primary
    ci = f", 95% interval {fmt_interval(interval)}" if interval else ""
    what = "the upper end of its interval is" if judged != drop else "that is"
    return GateError(
        f"{b.name} dropped {drop:.2f} points ({b.value:.4f} -> {a.value:.4f}{ci}); {what} "
        f"{judged - max_drop:.2f} more than --max-accuracy-drop {max_drop:g}; "
        f"nothing was written to {out}"
    )
