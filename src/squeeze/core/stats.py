"""How sure a reported difference is: 95% intervals for accuracy drops and speed-ups.

A test split of 1,035 sentences cannot tell a 0.5-point drop from noise (one standard error of an
accuracy near 0.82 is 1.2 points there), so every drop squeeze reports carries an interval, and
CI gates can judge its upper end instead of the point estimate.

- Metric drops are **paired**: both models are scored on the very same test samples, so the
  bootstrap resamples sample indices once and scores both models on each resample. Pairing
  removes the variance both models share (hard sentences are hard for both), which makes the
  interval much tighter than two independent intervals would be.
- Speed-ups are ratios of median latencies from independent timed runs; each side's runs are
  resampled on their own.

Percentile bootstrap intervals with a fixed seed: the same inputs always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from squeeze.core.types import points_dropped

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
# Resampled at most this many at a time, so memory stays at a few MB for large test sets.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Scores:
    """Each test sample's share of the primary metric, in the order of the test set.

    Accuracy: ``values`` 1.0 (correct) or 0.0, no weights; the metric is their mean (so are an
    embedder's fidelity, kNN accuracy and NDCG). Perplexity and loss: ``values`` the summed
    next-token NLL of each sample and ``weights`` its token count; the metric is the
    token-weighted mean NLL (exponentiated for perplexity). Spearman (STS): ``values`` each
    pair's predicted similarity and ``weights`` its gold score; the metric is their rank
    correlation.
    """

    metric: str
    values: tuple[float, ...]
    weights: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "values": list(self.values), "weights": self.weights}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Scores | None:
        if data is None:
            return None
        weights = data.get("weights")
        return cls(
            data["metric"],
            tuple(float(v) for v in data["values"]),
            tuple(float(w) for w in weights) if weights is not None else None,
        )


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation (ties share their average rank); 0.0 when a side is
    constant, where it is undefined."""
    import numpy as np

    def ranks(x: Any) -> Any:
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        return ((ends - counts + 1 + ends) / 2.0)[inverse]

    ra, rb = ranks(np.asarray(a)), ranks(np.asarray(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _row_spearman(a: Any, b: Any) -> Any:
    """Spearman of each row pair of two [resamples, n] arrays; ties (a resample repeats samples)
    take ordinal ranks, consistently on both sides, which is close enough for an interval."""
    import numpy as np

    def ranks(x: Any) -> Any:
        return np.argsort(np.argsort(x, axis=-1, kind="stable"), axis=-1).astype(np.float64)

    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))
    return (ra * rb).sum(axis=-1) / np.maximum(den, 1e-12)


def _metric_of(scores: Scores, index: Any) -> Any:
    """The metric on each row of resampled ``index`` (shape [resamples, n])."""
    import numpy as np

    if scores.metric == "spearman":  # values: predicted similarity, weights: gold score
        assert scores.weights is not None
        gold = np.asarray(scores.weights, dtype=np.float64)
        return _row_spearman(np.asarray(scores.values, dtype=np.float64)[index], gold[index])
    values = np.asarray(scores.values, dtype=np.float64)
    weights = (
        np.ones_like(values)
        if scores.weights is None
        else np.asarray(scores.weights, dtype=np.float64)
    )
    mean = values[index].sum(axis=-1) / np.maximum(weights[index].sum(axis=-1), 1e-12)
    return np.exp(mean) if scores.metric == "perplexity" else mean


def _percentiles(draws: Any, level: float) -> tuple[float, float]:
    import numpy as np

    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _medians(samples: tuple[float, ...], rng: Any, resamples: int) -> Any:
    """The median of each of ``resamples`` bootstrap resamples of ``samples``."""
    import numpy as np

    values = np.asarray(samples, dtype=np.float64)
    return np.median(values[rng.integers(0, len(values), (resamples, len(values)))], axis=1)


def paired_drop_interval(
    before: Scores,
    after: Scores,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """The ``level`` interval of the points ``after`` dropped against ``before``, resampling the
    shared test samples (paired bootstrap); None when the two were not scored on the same
    number of samples (then they are not paired) or on a different metric."""
    import numpy as np

    n = len(before)
    if n == 0 or len(after) != n or before.metric != after.metric:
        return None
    rng = np.random.default_rng(seed)
    draws = []
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        draws.append(
            points_dropped(before.metric, _metric_of(before, index), _metric_of(after, index))
        )
    return _percentiles(np.concatenate(draws), level)


def speedup_interval(
    before_ms: tuple[float, ...],
    after_ms: tuple[float, ...],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """The ``level`` interval of median(before) / median(after), each side's timed runs
    resampled independently; None with fewer than two runs on a side."""
    import numpy as np

    if len(before_ms) < 2 or len(after_ms) < 2:
        return None
    rng = np.random.default_rng(seed)
    ratios = _medians(before_ms, rng, resamples) / _medians(after_ms, rng, resamples)
    return _percentiles(ratios, level)


def median_interval(
    samples_ms: tuple[float, ...], *, level: float = LEVEL, resamples: int = RESAMPLES
) -> tuple[float, float] | None:
    """The ``level`` interval of the median latency (the plots' error bars)."""
    import numpy as np

    if len(samples_ms) < 2:
        return None
    return _percentiles(_medians(samples_ms, np.random.default_rng(SEED), resamples), level)


def verdict(drop: float | None, interval: Sequence[float] | None, max_drop: float) -> str:
    """Whether a drop is within ``max_drop`` for certain ("within"), beyond it for certain
    ("over"), or whether the test set is too small to tell ("undecided": the interval holds the
    threshold). Without an interval only the point estimate speaks ("within"/"over")."""
    if drop is None:
        return "within"
    if interval is None or math.isnan(interval[0]):
        return "within" if drop <= max_drop else "over"
    low, high = interval
    if high <= max_drop:
        return "within"
    if low > max_drop:
        return "over"
    return "undecided"


def fmt_interval(interval: Sequence[float] | None) -> str:
    """``[-2.03, +0.41]``; '' without an interval."""
    if interval is None:
        return ""
    return f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"
