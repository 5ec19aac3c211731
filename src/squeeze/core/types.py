"""Dataclasses shared across steps, so that every layer speaks the same units.

Field names carry their units (``_bytes``, ``_s``) because these records end up in JSON reports
that are read without the code at hand.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from squeeze.core.stats import Scores
    from squeeze.model.loaded import LoadedModel


class Task(str, Enum):
    """What a checkpoint's head computes; decides the metric and the model class.

    ``Task(name)`` also takes the names transformers' pipelines and optimum's exporters give a
    task (:data:`TASK_ALIASES`), so a user who knows those is understood.
    """

    SEQUENCE_CLASSIFICATION = "sequence-classification"
    CAUSAL_LM = "causal-lm"
    MASKED_LM = "masked-lm"
    BASE = "base"
    # An encoder (or decoder) whose pooled hidden states are the output: sentence-transformers
    # models. Its forward returns one embedding per text, not logits.
    EMBEDDING = "embedding"

    @classmethod
    def _missing_(cls, value: object) -> Task | None:
        canonical = TASK_ALIASES.get(value) if isinstance(value, str) else None
        return cls(canonical) if canonical is not None else None


# transformers / optimum task name -> squeeze's. feature-extraction and sentence-similarity are
# embedding, not base: both ask for a text's vector (the Hub's feature-extraction models are
# mostly sentence-transformers, and optimum exports them for exactly that), which squeeze's
# embedding task pools as the model's files say and can score (kNN, STS, retrieval, fidelity);
# base is the bare encoder's token states, which nothing measures. sentiment-analysis is
# transformers' pipeline alias of text-classification.
TASK_ALIASES = {
    "text-classification": "sequence-classification",
    "sentiment-analysis": "sequence-classification",
    "text-generation": "causal-lm",
    "fill-mask": "masked-lm",
    "feature-extraction": "embedding",
    "sentence-similarity": "embedding",
}


@dataclass(frozen=True)
class SizeStats:
    """How big a model is: what it holds and what it costs to ship."""

    params_total: int
    params_nonzero: int
    bytes_on_disk: int


# Metrics where smaller is better; every other metric (accuracy, F1) is a fraction, higher better.
LOWER_IS_BETTER = frozenset({"perplexity", "loss"})


def points_dropped(metric: str, before: float, after: float) -> float:
    """How much worse ``after`` is than ``before`` (positive = worse): the one definition of
    "points" that gates, step summaries and sweep tables share. Percentage points for
    fraction metrics (accuracy 0.90 -> 0.89 is 1 point), raw units for perplexity and loss.
    Works on numpy arrays too (the bootstrap's resampled metrics)."""
    if metric in LOWER_IS_BETTER:
        return after - before
    return (before - after) * 100.0


@dataclass(frozen=True)
class Metric:
    """One score on held-out data; the sample count says how much to trust it."""

    name: str
    value: float
    n_samples: int


@dataclass(frozen=True)
class Evaluation:
    """All metrics of one evaluation pass plus its cost.

    ``scores`` holds each sample's share of the primary metric, so that a drop between two
    evaluations of the same samples gets a paired confidence interval.
    """

    metrics: tuple[Metric, ...]
    n_samples: int
    elapsed_s: float
    scores: Scores | None = field(default=None, compare=False, repr=False)
    # An embedder's embeddings of the held-out texts, in the encoded order: the reference a
    # compressed model's fidelity is measured against (never written to JSON).
    embeddings: Any = field(default=None, compare=False, repr=False)

    @property
    def primary(self) -> Metric:
        """The metric gates and tables use (accuracy, perplexity, an embedder's task metric or
        its fidelity): the first one."""
        return self.metrics[0]

    def metric(self, name: str) -> Metric | None:
        """The metric called ``name``, or None when this evaluation has none."""
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def samples_per_s(self) -> float:
        return self.n_samples / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {m.name: m.value for m in self.metrics},
            "n_samples": self.n_samples,
            "elapsed_s": self.elapsed_s,
            "samples_per_s": self.samples_per_s,
        }


@dataclass(frozen=True)
class Latency:
    """Timed runs of one target at one shape, in milliseconds per batch: the one latency record
    (benchmarks, step summaries and sweep results all keep it, samples included, so any summary
    can be recomputed and the spread is never lost)."""

    samples_ms: tuple[float, ...]
    batch: int
    seq_len: int
    threads: int
    device: str
    runtime: str  # torch or onnxruntime: what ran, not which quantizer made it

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], **shape: Any) -> Latency:
        return cls(samples_ms=tuple(float(s) for s in samples_ms), **shape)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Latency:
        """Back from :meth:`to_dict` (the derived figures are recomputed from the samples)."""
        shape = {f: data[f] for f in ("batch", "seq_len", "threads", "device", "runtime")}
        return cls.from_samples(data["samples_ms"], **shape)

    def _quantile(self, q: float) -> float:
        """Linear interpolation between order statistics (numpy's default percentile)."""
        ordered = sorted(self.samples_ms)
        rank = q * (len(ordered) - 1)
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90_ms(self) -> float:
        return self._quantile(0.9)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def stdev_ms(self) -> float:
        return statistics.stdev(self.samples_ms) if len(self.samples_ms) > 1 else 0.0

    @property
    def runs(self) -> int:
        return len(self.samples_ms)

    @property
    def throughput_per_s(self) -> float:
        """Samples (sequences) per second at the median latency."""
        return self.batch / (self.p50_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "samples_ms"},
            "runs": self.runs,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "stdev_ms": self.stdev_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "throughput_per_s": self.throughput_per_s,
            "samples_ms": list(self.samples_ms),
        }


class ProgressTask(Protocol):
    """A running unit of long work; the CLI renders it as a progress bar."""

    def advance(self, n: int = 1, info: str = "") -> None: ...


class ProgressFactory(Protocol):
    """Opens a progress task; passed down from the CLI so the library never imports rich."""

    def __call__(
        self, description: str, total: int | None
    ) -> contextlib.AbstractContextManager[ProgressTask]: ...


class SilentTask:
    """A progress task that reports nothing."""

    def advance(self, n: int = 1, info: str = "") -> None:
        return None


@contextlib.contextmanager
def no_progress(description: str, total: int | None) -> Iterator[ProgressTask]:
    """The library default: long work reports nothing."""
    yield SilentTask()


@dataclass
class StepResult:
    """What a method's handler did: the model to save, or nothing when it wrote its artifact.

    Handlers only transform. The runner saves ``model`` (when set) into the output folder,
    measures sizes and the metric of what was written, and puts ``details`` (the method's own
    figures: sparsity, agreement, training) into the summary.

    Attributes:
        model: A PyTorch model for the runner to save; None when the handler wrote its artifact
            (an ONNX export, a quantized checkpoint) into ``ctx.out`` itself.
        forward: How to run the deployed artifact, when the handler already opened it (saves
            a second load); None: the runner runs ``model`` or opens the output.
        sizes: Sizes of a handler-written checkpoint whose files miscount parameters (packed
            4-bit weights); None: measured by the runner.
        metric: The held-out metric of what was written, when the handler measured it already
            (``--backend auto`` scores every candidate); None: the runner measures it.
        details: Method-specific figures for the summary JSON.
        notes: What the user should know (fallbacks, what was removed).
    """

    model: LoadedModel | None = None
    forward: Any = None
    sizes: SizeStats | None = None
    metric: Evaluation | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
