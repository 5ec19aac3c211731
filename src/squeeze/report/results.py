"""Sweep results: every variant measured the same way, against a baseline from the same run.

This is the file format ``squeeze run``/``squeeze sweep`` write (``results.json``) and
``squeeze report`` reads, so it is plain JSON with a version. Ratios and the Pareto flags are
derived here, once, from the measured figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.errors import DataError
from squeeze.core.types import Latency, points_dropped

# 2: latency records are full Latency records (samples included), not p50/p90/min/max.
# 3: per-sample scores and 95% intervals of drops and speed-ups; version 2 files still read.
# 4: gate_verdicts, each gate's "passed", "failed" or "not judged" (derived, never read back).
# 5: selection_rule and passed_over: how the selected variant was chosen, and why faster ones
#    were not (an older reader would call these fields malformed, hence the version).
FORMAT_VERSION = 5
READABLE_VERSIONS = (2, 3, 4, 5)


@dataclass
class VariantResult:
    """One compressed variant (or the baseline), measured.

    ``speedup`` holds, per device, baseline p50 / variant p50, or None where the variant's p50 lies
    within the baseline's spread (min to max): "not faster" rather than a number that is noise.
    ``scores`` are the variant's per-sample scores on the test set (``Scores.to_dict``), from which
    ``drop_ci`` (the 95% paired interval of ``drop_points``) is derived; ``speedup_ci`` holds the
    95% interval of each speed-up, from the timed runs.
    """

    name: str
    chain: str
    format: str  # "torch" or "onnxruntime": what is deployed and timed
    artifact: str
    params_total: int
    params_nonzero: int
    bytes_on_disk: int
    metric: float | None = None
    fidelity: float | None = None  # an embedder's mean cosine to the baseline's embeddings
    latency: dict[str, Latency] = field(default_factory=dict)
    speedup: dict[str, float | None] = field(default_factory=dict)
    size_ratio: float | None = None  # baseline bytes / variant bytes
    drop_points: float | None = None  # positive = worse than the baseline
    drop_ci: list[float] | None = None
    speedup_ci: dict[str, list[float]] = field(default_factory=dict)
    scores: dict[str, Any] | None = None
    pareto: bool = False
    cached: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "latency": {k: v.to_dict() for k, v in self.latency.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantResult:
        latency = {k: Latency.from_dict(v) for k, v in data.get("latency", {}).items()}
        return cls(**{**data, "latency": latency})


@dataclass
class SweepResults:
    """A whole run: settings, the machine, the baseline's name and every variant.

    ``selection_rule`` says in words how ``selected`` was chosen ("" when nothing was asked to
    choose); ``passed_over`` holds each candidate faster than it that was not chosen, with why,
    fastest first (``squeeze tune`` fills it: a faster row that was "within" on validation is
    the first thing a reader asks about).
    """

    model: str
    metric_name: str | None
    higher_is_better: bool
    n_samples: int
    bench: dict[str, Any]
    machine: dict[str, Any]
    baseline: str
    variants: list[VariantResult]
    gates: dict[str, Any] = field(default_factory=dict)
    selected: str | None = None
    selection_rule: str = ""
    passed_over: dict[str, str] = field(default_factory=dict)
    gate_notes: list[str] = field(default_factory=list)
    version: int = FORMAT_VERSION
    name: str = ""  # the recipe's ``name:``, which titles its tables; "" for none

    @property
    def title(self) -> str:
        """What the run is called in titles: the recipe's name and the model."""
        return f"{self.name}: {self.model}" if self.name else self.model

    @property
    def devices(self) -> list[str]:
        """Devices with latency figures, CPU first."""
        seen = {d for v in self.variants for d in v.latency}
        return sorted(seen, key=lambda d: (d != "cpu", d))

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def gate_verdicts(self) -> dict[str, str]:
        """Each gate's verdict on the selected variant: ``passed``, ``failed``, or ``not judged``
        (not set, or no variant selected). Derived by the judgement that decides the exit code,
        so the file and the exit code cannot disagree."""
        from squeeze.engine.gates import Gates, judge

        chosen = next((v for v in self.variants if v.name == self.selected), None)
        verdicts = judge(self, chosen, Gates.from_dict(self.gates))
        return {gate: outcome for gate, (outcome, _) in verdicts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "variants": [v.to_dict() for v in self.variants],
            "gate_verdicts": self.gate_verdicts,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> SweepResults:
        """Read a results.json.

        Raises:
            DataError: not a squeeze results file, or from an incompatible version.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"{path}: not a readable results file ({e}); pass the results.json that "
                "`squeeze run` or `squeeze sweep` wrote"
            ) from e
        if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
            raise DataError(
                f"{path}: not a squeeze results file of version {FORMAT_VERSION}; re-run the sweep"
            )
        try:
            variants = [VariantResult.from_dict(v) for v in data.pop("variants")]
            data.pop("gate_verdicts", None)  # derived from the rest
            return cls(**{**data, "variants": variants, "version": FORMAT_VERSION})
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(
                f"{path}: a malformed squeeze results file ({type(e).__name__}: {e}); "
                "re-run the sweep"
            ) from e


def derive(results: SweepResults) -> None:
    """Fill in ratios against the baseline, their 95% intervals, "not faster" verdicts and the
    Pareto flags."""
    from squeeze.core.stats import Scores, paired_drop_interval, speedup_interval

    base = results.variant(results.baseline)
    base_scores = Scores.from_dict(base.scores)
    for v in results.variants:
        v.size_ratio = base.bytes_on_disk / v.bytes_on_disk if v.bytes_on_disk else None
        if results.metric_name is not None and v.metric is not None and base.metric is not None:
            v.drop_points = points_dropped(results.metric_name, base.metric, v.metric)
        scores = Scores.from_dict(v.scores)
        v.drop_ci = None
        if v is not base and base_scores is not None and scores is not None:
            interval = paired_drop_interval(base_scores, scores)
            v.drop_ci = list(interval) if interval else None
        v.speedup, v.speedup_ci = {}, {}
        for device, lat in v.latency.items():
            ref = base.latency.get(device)
            if ref is None:
                continue
            if v is base:
                v.speedup[device] = 1.0
                continue
            if ref.min_ms <= lat.p50_ms <= ref.max_ms:
                v.speedup[device] = None  # within the baseline's own spread: not faster
            else:
                v.speedup[device] = ref.p50_ms / lat.p50_ms
            interval = speedup_interval(ref.samples_ms, lat.samples_ms)
            if interval is not None:
                v.speedup_ci[device] = list(interval)
    # The front: variants no other variant beats on metric, latency and size at once.
    front = pareto_indices([_costs(results, v) for v in results.variants])
    for i, v in enumerate(results.variants):
        v.pareto = i in front


def _costs(results: SweepResults, v: VariantResult) -> tuple[float, ...]:
    """What to minimise: worse metric, latency on the first device, size.

    A figure a variant lacks counts as the worst possible, never as 0 (which would make an
    untimed variant the fastest, or an unevaluated one the best on a lower-is-better metric).
    """
    device = results.devices[0] if results.devices else None
    metric = math.inf
    if v.metric is not None:
        metric = -v.metric if results.higher_is_better else v.metric
    latency = v.latency[device].p50_ms if device and device in v.latency else math.inf
    return (metric, latency, float(v.bytes_on_disk))


def pareto_indices(costs: list[tuple[float, ...]]) -> set[int]:
    """Indices of the points no other point matches or beats in every cost (all minimised)."""
    front = set()
    for i, mine in enumerate(costs):
        dominated = any(
            other != mine and all(o <= m for o, m in zip(other, mine, strict=True))
            for j, other in enumerate(costs)
            if j != i
        )
        if not dominated:
            front.add(i)
    return front
