"""The accuracy gate CI jobs rely on: how many points a step cost, and whether that is allowed.

Shared by every step that changes a model (prune, quantize), so "points" means the same
everywhere: percentage points for accuracy-like metrics, raw units for perplexity and loss.
"""

from __future__ import annotations

from squeeze.errors import GateError
from squeeze.types import Evaluation, points_dropped


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


def passes(drop: float | None, max_drop: float | None) -> bool:
    return max_drop is None or drop is None or drop <= max_drop


class Gated:
    """For step results with ``metric_before``, ``metric_after`` and ``max_accuracy_drop``."""

    metric_before: Evaluation | None
    metric_after: Evaluation | None
    max_accuracy_drop: float | None

    @property
    def drop_points(self) -> float | None:
        """How much worse the primary metric got, in points (x100 for accuracy)."""
        return drop_points(self.metric_before, self.metric_after)

    @property
    def passed(self) -> bool:
        return passes(self.drop_points, self.max_accuracy_drop)

    def gate_fields(self) -> dict[str, object]:
        """The metric and gate part of a step's JSON summary."""
        return {
            "metric_before": self.metric_before.to_dict() if self.metric_before else None,
            "metric_after": self.metric_after.to_dict() if self.metric_after else None,
            "drop_points": self.drop_points,
            "max_accuracy_drop": self.max_accuracy_drop,
            "passed": self.passed,
        }


def gate_error(before: Evaluation, after: Evaluation, max_drop: float, out: object) -> GateError:
    """The one-line failure CI shows: the drop, the values, and by how much the gate was missed."""
    drop = drop_points(before, after)
    b, a = before.primary, after.primary
    return GateError(
        f"{b.name} dropped {drop:.2f} points ({b.value:.4f} -> {a.value:.4f}), "
        f"{drop - max_drop:.2f} more than --max-accuracy-drop {max_drop:g}; "
        f"nothing was written to {out}"
    )
