"""The search behind ``squeeze tune``: the fastest variant within an accuracy budget, found with
as little work as the evidence allows.

Every decision uses the **validation** split; the test split is kept for the final, honest
measurement (choosing on the test split would make its drop optimistic). The search:

1. **Quantization** of the unpruned model, each mode timed first and scored only when it is the
   fastest not yet ruled out: the fastest mode within budget becomes every later candidate's
   tail (pruning does not change which int8 kernels are fastest), the measured default as the
   backend it chose here, so no pruned candidate times the backends again.
2. **Pruning amount** by bisection over the ladder of amounts (heads and FFN neurons together):
   accuracy falls and speed rises with the amount, so each result halves what is left.
3. **Around the frontier**: at the first amount that misses, the global allocation, then more
   recovery steps or distillation for a near miss; where one passes, the climb goes on. At the
   most aggressive amount that passes, whole layers are dropped on top.

Each stage proposes its candidates in **waves** of up to ``width`` at once (the executor's
workers): the bisection becomes a k-ary search over the amounts, the ways to rescue a near miss
and the layers to drop are tried together. A wave's candidates are built at once, then timed
one after another here, never while a candidate trains; with a width of 1 every wave holds one
candidate, and the search is the sequential one above, decision for decision.

Each pruned candidate is first built without recovery, which takes seconds: its latency (the same
as after recovery, the shapes do not change) is measured before any training, and a candidate
that is not faster than the best so far is dropped then. Its accuracy before recovery is
measured too: one that starts worse than a candidate which the same recovery could not bring
within budget is dropped without training. Everything is built through the artifact cache, and
every measurement goes into a journal beside the output, so an interrupted search resumes by
replaying its own decisions without redoing work. A candidate whose compression step fails
validation (exit 5 from its command) is recorded as failed, with why, and the search goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.errors import ValidationError
from squeeze.plan.recipe import Plan
from squeeze.plan.steps import chain_text, parse_chain
from squeeze.plan.tune.config import QUANTIZE_STEPS, TuneConfig

WITHIN, OVER, DROPPED, SKIPPED, FAILED = "within", "over", "dropped", "skipped", "failed"


@dataclass
class Trial:
    """One candidate the search looked at: one row of the trace.

    ``metric`` and ``drop`` are on the validation split (after recovery, for pruned ones);
    ``*_before_recovery`` are the same candidate pruned but not yet recovered.
    """

    order: int
    chain: str
    stage: str
    why: str
    latency_ms: float | None = None
    metric_before_recovery: float | None = None
    drop_before_recovery: float | None = None
    metric: float | None = None
    drop: float | None = None
    drop_ci: list[float] | None = None
    outcome: str = ""
    reason: str = ""
    recovery_steps: int = 0
    amount: float = 0.0  # heads and FFN fraction removed (pruned candidates)
    layers: int = 0  # whole layers dropped
    allocation: str = ""
    distilled: bool = False
    seconds: float = 0.0
    build_seconds: float = 0.0  # of ``seconds``, building its wave(s); the rest measured here
    built_by: str = ""  # the worker that built it, where the executor says (Ray)

    @property
    def within(self) -> bool:
        return self.outcome == WITHIN

    @property
    def finished(self) -> bool:
        """Built and scored in full: a row of the final measurement."""
        return self.outcome in (WITHIN, OVER)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Journal:
    """Measurements by (kind, chain), appended to a JSON-lines file as they are made, so a
    resumed search replays its decisions from them instead of measuring again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.elapsed_s = 0.0  # search time already spent by earlier, interrupted runs
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[(entry["kind"], entry["chain"])] = entry["value"]
                    self.elapsed_s = max(self.elapsed_s, float(entry["elapsed_s"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by the interruption: measured again

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, kind: str, chain: str) -> dict[str, Any] | None:
        return self._entries.get((kind, chain))

    def put(self, kind: str, chain: str, value: dict[str, Any], elapsed_s: float) -> None:
        self._entries[(kind, chain)] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"kind": kind, "chain": chain, "value": value, "elapsed_s": elapsed_s}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def canonical(chain: str) -> str:
    """One spelling per candidate: journal keys and result names must match."""
    return chain_text(parse_chain(chain, "tune"))


@dataclass(frozen=True)
class Recovery:
    """How a pruned candidate is recovered: its allocation, fine-tuning steps, or
    distillation steps instead (``distill`` > 0)."""

    allocation: str
    steps: int
    distill: int = 0


@dataclass
class Measured:
    """A validation score as the search keeps it."""

    metric: float
    scores: Any  # squeeze.core.stats.Scores


@dataclass(frozen=True)
class Built:
    """A chain's artifact, and which worker built it ("" here, or taken from the cache)."""

    path: str
    worker: str = ""


@dataclass
class SearchContext:
    """How the search builds and measures; functions, so tests can count the calls.

    ``build`` builds a wave of chains at once (through the cache, by the executor): each one's
    artifact, or the validation error its step failed with. ``width``: the most candidates a
    wave proposes. ``resolve`` names what a built chain's measured choice chose (chain and
    artifact path -> chain).
    """

    build: Callable[[list[str]], list[Built | ValidationError]]
    latency: Callable[[str], float]  # artifact path -> p50 ms
    validate: Callable[[str], Measured]  # artifact path -> validation score
    log: Callable[[str], None] = lambda message: None
    clock: Callable[[], float] = time.perf_counter
    width: int = 1
    resolve: Callable[[str, str], str] = lambda chain, path: chain


@dataclass
class Search:
    """One run of the search over ``config``'s space from ``plan.model``."""

    plan: Plan
    config: TuneConfig
    ctx: SearchContext
    journal: Journal
    metric_name: str = "accuracy"
    trials: list[Trial] = field(default_factory=list)
    base: Measured | None = None
    base_latency_ms: float = 0.0
    tail: str = ""
    _start: float = 0.0
    _eval_s: list[float] = field(default_factory=list)
    _step_s: list[float] = field(default_factory=list)
    _built: dict[str, Built] = field(default_factory=dict)  # this run's, by chain
    out_of_time: bool = False

    # -- measurement, through the journal ------------------------------------------------------

    def _elapsed(self) -> float:
        return self.journal.elapsed_s + self.ctx.clock() - self._start

    def _prepare(self, chains: list[str]) -> float:
        """Build ``chains`` at once (a wave), those not built or failed already; a failed
        validation is journaled, so a resumed search fails the candidate again without
        building it again. Returns the seconds the wave took."""
        wanted = [c for c in dict.fromkeys(chains)
                  if c not in self._built and self.journal.get("failure", c) is None]  # fmt: skip
        if not wanted:
            return 0.0
        start = self.ctx.clock()
        for chain, outcome in zip(wanted, self.ctx.build(wanted), strict=True):
            if isinstance(outcome, ValidationError):
                self.journal.put("failure", chain, {"error": str(outcome)}, self._elapsed())
            else:
                self._built[chain] = outcome
        return self.ctx.clock() - start

    def _build(self, chain: str) -> str:
        """The artifact of ``chain``, built now unless a wave built it.

        Raises:
            ValidationError: the chain's compression step failed its validation.
        """
        self._prepare([chain])
        failed = self.journal.get("failure", chain)
        if failed is not None:
            raise ValidationError(failed["error"])
        return self._built[chain].path

    def _worker(self, chain: str) -> str:
        """Which worker built ``chain`` in this run ("" here, or replayed from the journal)."""
        built = self._built.get(chain)
        return built.worker if built else ""

    def _needs_build(self, chain: str, *kinds: str) -> bool:
        """Whether measuring ``chain`` (``kinds``: latency, validation) needs its artifact: a
        resumed search replays what the journal holds without building."""
        return any(self.journal.get(kind, chain) is None for kind in kinds)

    def _latency_of(self, chain: str) -> float:
        known = self.journal.get("latency", chain)
        if known is None:
            path = self._build(chain) if chain else self.plan.model
            known = {"p50_ms": self.ctx.latency(path)}
            self.journal.put("latency", chain, known, self._elapsed())
        return float(known["p50_ms"])

    def _validate(self, chain: str) -> Measured:
        from squeeze.core.stats import Scores

        known = self.journal.get("validation", chain)
        if known is None:
            path = self._build(chain) if chain else self.plan.model
            start = self.ctx.clock()
            measured = self.ctx.validate(path)
            self._eval_s.append(self.ctx.clock() - start)
            known = {"metric": measured.metric, "scores": measured.scores.to_dict()}
            self.journal.put("validation", chain, known, self._elapsed())
        return Measured(float(known["metric"]), Scores.from_dict(known["scores"]))

    def _drop(self, measured: Measured) -> tuple[float, list[float] | None]:
        from squeeze.core.stats import paired_drop_interval
        from squeeze.core.types import points_dropped

        assert self.base is not None
        drop = points_dropped(self.metric_name, self.base.metric, measured.metric)
        interval = paired_drop_interval(self.base.scores, measured.scores)
        return drop, list(interval) if interval else None

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def best(self) -> Trial | None:
        """The fastest candidate within budget so far."""
        within = [t for t in self.trials if t.within and t.latency_ms is not None]
        return min(within, key=lambda t: t.latency_ms) if within else None  # type: ignore[arg-type,return-value]

    def _new(self, chain: str, stage: str, why: str) -> Trial:
        trial = Trial(order=len(self.trials) + 1, chain=canonical(chain), stage=stage, why=why)
        self.trials.append(trial)
        return trial

    def _say(self, trial: Trial) -> None:
        """One line per candidate: its figures, what became of it, and the best so far."""
        figures = []
        if trial.latency_ms is not None:
            figures.append(f"{trial.latency_ms:.2f} ms ({self._speedup(trial):.1f}x)")
        if trial.drop is not None:
            figures.append(f"validation drop {trial.drop:+.2f} pts")
        best = self.best
        lead = "none within budget yet"
        if best:
            lead = f"best so far: {best.chain} ({self._speedup(best):.1f}x)"
        outcome = trial.outcome + (f" ({trial.reason})" if trial.reason else "")
        self.ctx.log(f"[{trial.order}] {trial.chain}: {', '.join(figures) or '-'} -> {outcome}; "
                     f"{lead}")  # fmt: skip

    def _speedup(self, trial: Trial) -> float:
        return self.base_latency_ms / trial.latency_ms if trial.latency_ms else 0.0

    def _time_for(self, steps: int) -> bool:
        """Whether a candidate with ``steps`` of training still fits the budget, with time kept
        for the final measurement: each finished candidate scored on the test split once more,
        and all of them timed together."""
        per_step = max(self._step_s) if self._step_s else 0.0
        per_eval = max(self._eval_s) if self._eval_s else 10.0
        needed = steps * per_step + 2 * per_eval
        reserve = (sum(t.finished for t in self.trials) + 1) * (per_eval + 5.0)
        fits = self._elapsed() + needed + reserve <= self.config.budget_s
        if not fits:
            self.out_of_time = True
        return fits

    # -- candidates ----------------------------------------------------------------------------

    def _prune_step(self, amount: float, layers: int, allocation: str, steps: int) -> str:
        parts = []
        if amount:
            parts += [f"heads={amount:g}", f"ffn={amount:g}"]
        if layers:
            parts.append(f"layers={layers}")
        if allocation != "uniform":
            parts.append(f"allocation={allocation}")
        if steps:
            parts.append(f"finetune_steps={steps}")
            if self.config.lr != 5e-5:
                parts.append(f"lr={self.config.lr:g}")
            if self.config.seed:
                parts.append(f"seed={self.config.seed}")
        if self.config.importance:
            parts.append(f"importance={self.config.importance}")
        return f"structured({', '.join(parts)})"

    def _with_tail(self, *steps: str) -> str:
        return " -> ".join([*steps, self.tail])

    def _over_from_worse_start(self, trial: Trial) -> Trial | None:
        """A finished candidate of another shape that started no worse than ``trial`` and still
        missed with the same kind of recovery (allocation, fine-tuning or distillation, at least
        as many steps): ``trial`` would miss too. Candidates of the same shape are other ways
        to recover it, tried for exactly that reason."""
        for other in self.trials:
            if (
                other is not trial
                and other.outcome == OVER
                and (other.amount, other.layers) != (trial.amount, trial.layers)
                and (other.allocation, other.distilled) == (trial.allocation, trial.distilled)
                and other.recovery_steps >= trial.recovery_steps
                and other.drop_before_recovery is not None
                and trial.drop_before_recovery is not None
                and other.drop_before_recovery <= trial.drop_before_recovery
            ):
                return other
        return None

    def try_wave(
        self, proposals: list[tuple[float, int, Recovery, str, str]], *, drop_slower: bool = True
    ) -> list[Trial]:
        """Build, time and (if still worth it) recover and score pruned candidates together:
        each proposal ``(amount, layers, recovery, stage, why)`` becomes a trial, in order.

        All are built unrecovered at once and timed one after another; those still worth it
        are then recovered at once and scored. ``drop_slower`` drops a candidate no faster
        than the best so far before scoring it; the bisection over amounts turns it off, as it
        needs every verdict on accuracy. A candidate tried before is not tried again: its trial
        is returned.
        """
        start = self.ctx.clock()
        trials, new = [], []
        for amount, layers, recovery, stage, why in proposals:
            trial = self._proposed(amount, layers, recovery, stage, why)
            trials.append(trial)
            if not trial.outcome and trial not in new:
                new.append(trial)
        raw = {id(t): self._raw(t) for t in new}
        # Built together where they are to be timed; one timed before is built if it is scored.
        spent = self._prepare([raw[id(t)] for t in new if self._needs_build(raw[id(t)], "latency")])
        for trial in new:
            trial.build_seconds = spent
        recover = []
        for trial in new:
            try:
                if self._measure_unrecovered(trial, raw[id(trial)], drop_slower):
                    recover.append(trial)
            except ValidationError as e:
                trial.outcome, trial.reason = FAILED, f"failed to build: {e}"
        training = [t for t in recover if self._needs_build(t.chain, "validation")]
        spent = self._prepare([t.chain for t in training])
        if spent > 1.0:  # trained here, not taken from the artifact cache
            self._step_s.append(spent / max(max(t.recovery_steps for t in training), 1))
        for trial in training:
            trial.build_seconds += spent
        for trial in recover:
            try:
                self._score(trial, self._validate(trial.chain))
                trial.built_by = self._worker(trial.chain)
            except ValidationError as e:
                trial.outcome, trial.reason = FAILED, f"failed to build: {e}"
        for trial in new:
            self._done(trial, start)
        return trials

    def _proposed(
        self, amount: float, layers: int, recovery: Recovery, stage: str, why: str
    ) -> Trial:
        """The trial of one proposal: a new one, or the one that tried it before."""
        earlier = self._tried(amount, layers, recovery)
        if earlier is not None:
            return earlier
        trial = self._new(self._recovered(amount, layers, recovery), stage, why)
        trial.recovery_steps = recovery.distill or recovery.steps
        trial.amount, trial.layers = amount, layers
        trial.allocation, trial.distilled = recovery.allocation, bool(recovery.distill)
        return trial

    def _recovered(self, amount: float, layers: int, recovery: Recovery) -> str:
        """The chain of a pruned candidate recovered as ``recovery``, with the tail."""
        steps = 0 if recovery.distill else recovery.steps
        distill = [f"distill(max_steps={recovery.distill})"] if recovery.distill else []
        prune = self._prune_step(amount, layers, recovery.allocation, steps)
        return canonical(self._with_tail(prune, *distill))

    def _tried(self, amount: float, layers: int, recovery: Recovery) -> Trial | None:
        """The trial that already tried this candidate, if one did."""
        chain = self._recovered(amount, layers, recovery)
        return next((t for t in self.trials if t.chain == chain), None)

    def _raw(self, trial: Trial) -> str:
        """``trial``'s candidate pruned but not recovered: timed, and scored before recovery."""
        return canonical(
            self._with_tail(self._prune_step(trial.amount, trial.layers, trial.allocation, 0))
        )

    def _measure_unrecovered(self, trial: Trial, raw: str, drop_slower: bool) -> bool:
        """Time and score ``trial`` before recovery; whether it is still worth recovering
        (otherwise its outcome is set: dropped, or skipped for lack of time)."""
        trial.latency_ms = self._latency_of(raw)
        best = self.best
        if drop_slower and best is not None and trial.latency_ms >= best.latency_ms:  # type: ignore[operator]
            trial.outcome, trial.reason = DROPPED, f"not faster than {best.chain}"
            return False
        before = self._validate(raw)
        trial.metric_before_recovery = before.metric
        trial.drop_before_recovery, _ = self._drop(before)
        worse = self._over_from_worse_start(trial)
        if worse is not None:
            trial.outcome = DROPPED
            trial.reason = (
                f"starts {trial.drop_before_recovery:.1f} pts down before recovery, no better "
                f"than [{worse.order}], which the same recovery left over budget"
            )
            return False
        if not self._time_for(trial.recovery_steps):
            trial.outcome, trial.reason = SKIPPED, "out of time"
            return False
        return True

    def _score(self, trial: Trial, measured: Measured) -> None:
        from squeeze.engine.gate import judged_drop

        trial.metric = measured.metric
        trial.drop, trial.drop_ci = self._drop(measured)
        judged = judged_drop(trial.drop, trial.drop_ci, self.plan.gates.gate_on)
        assert judged is not None
        trial.outcome = WITHIN if judged <= self.config.max_accuracy_drop else OVER

    def _done(self, trial: Trial, start: float) -> Trial:
        trial.seconds = self.ctx.clock() - start
        self._say(trial)
        return trial

    # -- the stages ----------------------------------------------------------------------------

    def run(self) -> list[Trial]:
        self._start = self.ctx.clock()
        self.base = self._validate("")
        self.metric_name = self.base.scores.metric
        self.base_latency_ms = self._latency_of("")
        self.ctx.log(
            f"baseline: {self.metric_name} {self.base.metric:.4f} on "
            f"{len(self.base.scores)} validation samples, {self.base_latency_ms:.2f} ms"
        )
        self._quantization()
        frontier = self._amounts()
        if frontier is not None:
            self._layers(*frontier)
        return self.trials

    def _quantization(self) -> None:
        """Stage 1: the tail every pruned candidate gets (fp32 ONNX when no mode passes)."""
        timed = []
        modes = list(self.config.quantize_modes)
        for first in range(0, len(modes), self.ctx.width):
            wave = [self._new(QUANTIZE_STEPS[mode], "quantize", f"quantization mode {mode}")
                    for mode in modes[first : first + self.ctx.width]]  # fmt: skip
            start = self.ctx.clock()
            spent = self._prepare([t.chain for t in wave if self._needs_build(t.chain, "latency")])
            for trial in wave:
                trial.build_seconds = spent
                try:
                    trial.latency_ms = self._latency_of(trial.chain)
                    timed.append(trial)
                except ValidationError as e:
                    trial.outcome, trial.reason = FAILED, f"failed to build: {e}"
                trial.built_by = self._worker(trial.chain)
                trial.seconds = self.ctx.clock() - start
                if trial.outcome == FAILED:
                    self._say(trial)
        for trial in sorted(timed, key=lambda t: t.latency_ms):  # type: ignore[arg-type,return-value]
            start = self.ctx.clock()
            best = self.best
            if best is not None:
                trial.outcome, trial.reason = DROPPED, f"slower than {best.chain}; not scored"
            else:
                self._score(trial, self._validate(trial.chain))
            trial.seconds += self.ctx.clock() - start
            self._say(trial)
        best = self.best
        if best is None:
            self.ctx.log("no quantization mode keeps the budget; pruned candidates stay fp32 ONNX")
            self.tail = canonical(QUANTIZE_STEPS["none"])
        else:
            self.tail = self._pinned(best.chain)

    def _pinned(self, chain: str) -> str:
        """The tail as later candidates get it: a measured default (the int8 backend timed
        fastest) as the backend it chose for the unpruned model, journaled. Each pruned
        candidate is then quantized alike, in seconds, without timing every backend again in
        its build, on a worker beside other builds rather than where latency is measured."""
        if not parse_chain(chain, "tune")[-1].config.for_machine():
            return chain
        known = self.journal.get("tail", chain)
        if known is None:
            known = {"chain": canonical(self.ctx.resolve(chain, self._build(chain)))}
            self.journal.put("tail", chain, known, self._elapsed())
        pinned = str(known["chain"])
        if pinned != chain:
            self.ctx.log(f"{chain} chose {pinned} for the unpruned model; every pruned "
                         "candidate is quantized with it")  # fmt: skip
        return pinned

    def _between(self, low: int, high: int) -> list[int]:
        """Up to ``width`` ladder indices splitting (low, high) evenly: the middle one for a
        width of 1 (a bisection), every one when the width covers them (a k-ary search)."""
        n = self.ctx.width
        return sorted({low + (high - low) * j // (n + 1) for j in range(1, n + 1)} - {low, high})

    def _amounts(self) -> tuple[int, Recovery] | None:
        """Stages 2 and 3a: the most aggressive amount within budget and how it was recovered,
        or None when no amount passes."""
        ladder = self.config.amount_ladder
        first = Recovery("uniform", self.config.recovery_ladder[0])
        low, high = -1, len(ladder)  # ladder[low] passes (-1: unpruned); ladder[high] misses
        found: dict[int, Recovery] = {}
        while high - low > 1 and not self.out_of_time:
            points = self._between(low, high)
            search = "bisection" if len(points) == 1 else f"{len(points) + 1}-ary search"
            why = f"{search} between {self._edge(low)} and {self._edge(high)}"
            ways = {i: [first] for i in points}
            # Workers to spare: the lower amounts' global allocation in the same wave, the
            # rescue each would get first if it missed.
            if "global" in self.config.allocation_modes:
                for i in points[: self.ctx.width - len(points)]:
                    ways[i].append(Recovery("global", first.steps))
            wave = [(ladder[i], 0, way, "amount" if way is first else "allocation",
                     why if way is first else f"{why}, with the global allocation alongside")
                    for i in points for way in ways[i]]  # fmt: skip
            verdicts = iter(self.try_wave(wave, drop_slower=False))
            skipped = False
            # Accuracy falls with the amount: the verdicts in order move the edges up to the
            # first miss (what lies above it is taken to miss too).
            for index in points:
                tried = [(way, next(verdicts)) for way in ways[index]]
                passed = next((way for way, trial in tried if trial.within), None)
                if passed is not None:
                    low, found[index] = index, passed
                    continue
                skipped = tried[0][1].outcome == SKIPPED
                if not skipped:
                    high = index
                break
            if skipped:
                break
        # The first amount that misses: other ways to recover it; where one passes, climb on.
        while high < len(ladder) and not self.out_of_time:
            tried = [t for t in self.trials if (t.amount, t.layers) == (ladder[high], 0)]
            floor = tried[-1].recovery_steps if tried and not tried[-1].distilled else 0
            passed = self._rescue(ladder[high], 0, self._last_drop(ladder[high], 0), floor)
            if passed is None:
                break
            found[high], low, high = passed, high, high + 1
            climbing = True
            while climbing and high < len(ladder) and not self.out_of_time:
                why = "the next amount up, recovered as the last one that passed"
                up = ladder[high : high + self.ctx.width]
                for trial in self.try_wave([(amount, 0, passed, "amount", why) for amount in up]):
                    if not trial.within:
                        climbing = False
                        break
                    found[high], low, high = passed, high, high + 1
        return (low, found[low]) if low >= 0 else None

    def _edge(self, index: int) -> str:
        ladder = self.config.amount_ladder
        if index < 0:
            return "none"
        return f"{ladder[index]:g}" if index < len(ladder) else "all"

    def _last_drop(self, amount: float, layers: int) -> float | None:
        """The smallest validation drop any candidate of this shape reached (quantization-only
        trials have amount 0, which the ladder never holds)."""
        drops = [t.drop for t in self.trials
                 if t.drop is not None and (t.amount, t.layers) == (amount, layers)]  # fmt: skip
        return min(drops) if drops else None

    def _rescue(
        self, amount: float, layers: int, closest: float | None, floor: int = 0
    ) -> Recovery | None:
        """Other ways to bring a missing candidate within budget, cheapest first: the global
        allocation (no extra cost), then, for a near miss, more recovery steps, then
        distillation; never fewer fine-tuning steps than ``floor`` (what already missed).
        A wave tries the next ``width`` of them that qualify. Returns the first recovery (in
        that order) that passed, or None."""
        config = self.config
        first = config.recovery_ladder[0]
        options: list[tuple[Recovery, str, str]] = []
        if "global" in config.allocation_modes:
            options.append((Recovery("global", first), "allocation", "the global allocation"))
        for more in config.recovery_ladder[1:]:
            for allocation in config.allocation_modes:
                why = f"a near miss: {more} recovery steps"
                options.append((Recovery(allocation, more), "recovery", why))
        if config.distill_steps:
            for allocation in config.allocation_modes:
                recovery = Recovery(allocation, 0, config.distill_steps)
                options.append((recovery, "recovery", "a near miss: distillation from the model"))

        def qualifies(recovery: Recovery) -> bool:
            if not recovery.distill and recovery.steps < floor:
                return False
            costly = recovery.distill or recovery.steps > first
            near = closest is not None and closest - config.max_accuracy_drop <= config.near_miss
            return not costly or near

        def verdict(trial: Trial) -> bool | None:
            """True: it passed; False: nothing left to gain here; None: go on."""
            nonlocal closest
            if trial.within:
                return True
            if trial.drop is not None:
                closest = trial.drop if closest is None else min(closest, trial.drop)
            elif trial.outcome == DROPPED and trial.reason.startswith("not faster"):
                return False  # no faster than the best already: nothing to gain here
            return None

        remaining = list(options)
        while remaining and not self.out_of_time:
            wave: list[tuple[Recovery, str, str]] = []
            while remaining and len(wave) < self.ctx.width and not self.out_of_time:
                option = remaining.pop(0)
                if not qualifies(option[0]):
                    continue
                # One tried before (in an earlier stage or wave) is judged where it stands,
                # taking no place in this wave.
                earlier = self._tried(amount, layers, option[0])
                if earlier is None:
                    wave.append(option)
                elif (passed := verdict(earlier)) is not None:
                    return option[0] if passed else None
            if not wave:
                return None
            proposals = [(amount, layers, r, stage, why) for r, stage, why in wave]
            for (recovery, _, _), trial in zip(wave, self.try_wave(proposals), strict=True):
                if (passed := verdict(trial)) is not None:
                    return recovery if passed else None
        return None

    def _layers(self, index: int, recovery: Recovery) -> None:
        """Stage 3b: drop whole layers on top of the most aggressive amount that passed; a
        wave tries the next ``width`` layer counts with the recovery that passed last."""
        amount = self.config.amount_ladder[index]
        ladder = list(self.config.layer_ladder)
        at = 0
        while at < len(ladder):
            if self.out_of_time:
                return
            counts = ladder[at : at + self.ctx.width]
            proposals = [(amount, layers, recovery, "layers",
                          f"{layers} layer(s) dropped on top of amount {amount:g}")
                         for layers in counts]  # fmt: skip
            for layers, trial in zip(counts, self.try_wave(proposals), strict=True):
                at += 1
                if trial.within:
                    continue
                if trial.outcome != OVER:
                    return
                rescued = self._rescue(amount, layers, trial.drop, recovery.steps)
                if rescued is None:
                    return
                recovery = rescued
                break  # the counts after it are proposed again with this recovery
