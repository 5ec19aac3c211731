"""``run_tune``: check, search, measure the finished candidates alike, choose, write.

The output is a sweep's (results.json, report/, selected/) plus the search trace (trace.json,
report/trace.md and trace.csv): every finished candidate is measured again with the baseline on
the test split, in one rotating latency measurement, so its row means what a ``squeeze run``
row means. The chosen variant is the fastest whose drop is within budget on the validation
split (where the search chose it) and on the test split (where it is reported).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from squeeze.artifact import Artifact
from squeeze.core.config import literal
from squeeze.core.errors import ConfigError, DataError, OutputExistsError, Problem, ValidationError
from squeeze.core.output import check_output
from squeeze.core.types import ProgressFactory, no_progress
from squeeze.data.examples import load_dataset
from squeeze.data.spec import held_out_part, training_part
from squeeze.engine.gate import judged_drop, passes
from squeeze.engine.gates import Gates, Selection, judged
from squeeze.plan import pipeline
from squeeze.plan.cache import claim, content_key, data_key, library_versions
from squeeze.plan.execute import LOCAL, ChainContext, Executor
from squeeze.plan.recipe import Plan, variants_from
from squeeze.plan.steps import StepCall, chain_text, parse_chain
from squeeze.plan.tune.config import QUANTIZE_STEPS, TuneConfig
from squeeze.plan.tune.search import (
    DROPPED,
    FAILED,
    OVER,
    SKIPPED,
    Built,
    Journal,
    Measured,
    Search,
    SearchContext,
    Trial,
)
from squeeze.report.results import SweepResults, VariantResult

JOURNAL = "journal.jsonl"
FINGERPRINT = "search"  # the journal entry recording what its measurements depend on


def state_dir_for(out: str | Path) -> Path:
    """Where an unfinished search keeps its journal: a visible sibling of the output."""
    out = Path(out)
    return out.with_name(f"{out.name}.tune")


def _check_state(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to discard an interrupted search silently, or to resume one that is not there.

    Raises:
        OutputExistsError: a journal exists and neither --resume nor --overwrite was given.
        ConfigError: --resume without a journal.
    """
    exists = (folder / JOURNAL).is_file()
    if resume and not exists:
        raise ConfigError(Problem(f"{{resume}}: no search journal at {folder}; run without it"))
    if exists and not resume:
        if not overwrite:
            raise OutputExistsError(
                Problem(
                    f"an interrupted search left its journal at {folder}; pass {{resume}} to "
                    "continue it or {overwrite} to start over"
                )
            )
        shutil.rmtree(folder)


def _validation_spec(plan: Plan, say: Any, trust_remote_code: bool) -> Any:
    """The split the search decides on: the data's validation part; its test part (with a
    warning: the reported drop is then optimistic) when there is none."""
    assert plan.data is not None
    spec = held_out_part(training_part(plan.data), "validation")
    config = Artifact.of(plan.model).config(trust_remote_code=trust_remote_code)
    try:
        load_dataset(spec, need_labels=pipeline.needs_labels(plan.model, config))
    except DataError as e:
        say(f"no validation split ({e}); the search decides on the test split, so its drop is "
            "optimistic")  # fmt: skip
        return pipeline.evaluation_spec(plan)
    return spec


def _check(plan: Plan, config: TuneConfig) -> None:
    """Every problem before any work: data, and steps the model cannot take."""
    if plan.data is None:
        raise ConfigError(Problem("{data} is required: the search scores every candidate"))
    probes = [QUANTIZE_STEPS[mode] for mode in config.quantize_modes]
    probes.append(f"structured(heads={config.amount_ladder[0]:g}, finetune_steps=1)")
    if config.distill_steps:
        probes.append("structured(layers=1) -> distill(max_steps=1)")
    pipeline.check_plan(replace(plan, variants=variants_from(probes, "tune")))


def _fingerprint(plan: Plan, config: TuneConfig, model_key: str) -> dict[str, Any]:
    """What the journal's measurements depend on: the model's and data's content, the lengths,
    device and timing settings, the search options (all but the time budget, which a resumed
    search may extend) and the versions of squeeze and the libraries that build and run the
    candidates (those the cache keys its artifacts by); as the journal stores it (JSON)."""
    record = {
        "model": model_key,
        "data": data_key(plan.data),
        "calibration_data": data_key(plan.calibration_data),
        "max_length": plan.max_length,
        "device": plan.device,
        "bench": asdict(plan.bench),
        "gate_on": plan.gates.gate_on,
        **{f.name: getattr(config, f.name) for f in fields(config) if f.name != "budget"},
        "libraries": library_versions(),
    }
    return json.loads(json.dumps(record))


# Keys of the fingerprint that hold content hashes: named, not shown.
_HASHED = {"model": "another model", "data": "other data",
           "calibration_data": "other calibration data"}  # fmt: skip


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the journal's search and this run's, in the user's terms."""
    found = []
    for key, new in current.items():
        old = recorded.get(key)
        if old == new:
            continue
        if key in _HASHED:
            found.append(f"{_HASHED[key]} (this run's files or options differ)")
        elif isinstance(new, dict):
            old = old if isinstance(old, dict) else {}
            found += [f"{key} {k} {_shown(old.get(k))} (this run asks {_shown(v)})"
                      for k, v in new.items() if old.get(k) != v]  # fmt: skip
        else:
            found.append(f"{key} {_shown(old)} (this run asks {_shown(new)})")
    return found


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _check_resume(journal: Journal, fingerprint: dict[str, Any], *, resume: bool) -> None:
    """Record what a new search measures under; refuse to resume one measured otherwise,
    whose measurements would silently decide this run.

    Raises:
        ConfigError: the journal's search differs from this run (naming how), or it does not
            record what it searched.
    """
    recorded = journal.get(FINGERPRINT, "")
    restart = "rerun with the same options, or with {overwrite} instead of {resume} to start over"
    if resume and recorded is None and len(journal):
        raise ConfigError(Problem(f"{{resume}}: the journal at {literal(str(journal.path))} "
                                  f"does not record what it searched; {restart}"))  # fmt: skip
    if recorded is None:
        journal.put(FINGERPRINT, "", fingerprint, 0.0)
        return
    differences = _differences(recorded, fingerprint)
    if differences:
        raise ConfigError(Problem(f"{{resume}}: the journal was searched with "
                                  f"{literal(', '.join(differences))}; {restart}"))  # fmt: skip


def _context(
    plan: Plan, cache_dir: Path, executor: Executor, trust_remote_code: bool,
    progress: ProgressFactory, say: Any, root: str,
) -> SearchContext:  # fmt: skip
    """How the search builds (each chain through ``executor``) and measures; ``root`` is the
    model's content key."""
    chains = ChainContext.of(plan, trust_remote_code, progress)
    validation = _validation_spec(plan, say, trust_remote_code)
    # One round is enough to rank candidates; the final measurement rotates every variant.
    settings = replace(plan.bench, rounds=1)

    def build(wave: list[str]) -> list[Built | ValidationError]:
        calls = [parse_chain(chain, "tune") for chain in wave]
        if len(wave) > 1:
            say(f"building {len(wave)} candidates at once")
        outcomes = executor.attempt(calls, chains, cache_dir, root, lambda i: None)
        return [o if isinstance(o, ValidationError) else Built(str(o.artifact), o.worker)
                for o in outcomes]  # fmt: skip

    def latency(path: str) -> float:
        return float(executor.timed(_p50_ms, path, settings))

    base: list[Any] = []

    def reference() -> Any:
        """The model's own evaluation on the validation split, once: an embedder's candidates
        are scored against its embeddings (a resumed search replays the model's score from the
        journal, so the embeddings, which the journal does not keep, are measured again)."""
        if not base:
            base.append(pipeline.evaluate_artifact(plan.model, validation, plan.max_length))
        return base[0]

    # Other models need no reference (None: a hub id whose files are not here may embed).
    embedder = pipeline.is_embedder(plan.model) is not False

    def validate(path: str) -> Measured:
        if path == plan.model:
            evaluation = reference()
        else:
            evaluation = pipeline.evaluate_artifact(
                path, validation, plan.max_length, reference=reference() if embedder else None
            )
        return Measured(evaluation.primary.value, evaluation.scores)

    return SearchContext(build=build, latency=latency, validate=validate, log=say,
                         width=executor.width, resolve=_resolved)  # fmt: skip


def _resolved(chain: str, path: str) -> str:
    """``chain`` with its last step as the request its measured choice resolved to, read from
    the summary that step wrote into its artifact ``path`` (the chain itself without one)."""
    calls = parse_chain(chain, "tune")
    last = calls[-1]
    summary = Path(path) / last.method.summary if last.method.summary else None
    if summary is None or not summary.is_file():
        return chain
    chosen = last.config.chosen(json.loads(summary.read_text()))
    return chain_text((*calls[:-1], StepCall(chosen)))


def _p50_ms(path: str, settings: Any) -> float:
    """One artifact's median latency, as the search ranks candidates (a module function: a
    Ray executor may run it on the timing node)."""
    from squeeze.measure.bench import bench_models

    results, _ = bench_models([path], settings)
    return results[0].latencies[0].p50_ms


def _choose(
    results: SweepResults, trials: list[Trial], gates: Gates
) -> tuple[VariantResult | None, list[str]]:
    """The fastest variant within budget on validation (search) and test (final)."""
    within = {t.chain for t in trials if t.within}
    device = results.devices[0] if results.devices else "cpu"
    candidates = [v for v in results.variants if v.name in within]
    qualified = [
        v
        for v in candidates
        if passes(judged(v, gates.gate_on), gates.max_accuracy_drop) and device in v.latency
    ]
    if not qualified:
        why = "no candidate kept the drop within budget on the validation split"
        if candidates:
            why = f"{len(candidates)} candidate(s) within budget on validation missed it on test"
        return None, [why]
    return min(qualified, key=lambda v: v.latency[device].p50_ms), []


def passed_over(
    results: SweepResults, trials: list[Trial], chosen: VariantResult | None, gates: Gates
) -> dict[str, str]:
    """Why each candidate faster than ``chosen`` was not chosen (every candidate, when none
    was), fastest first: the question a faster row in the table raises, answered where it is
    asked rather than left to be pieced together from the trace.

    Candidates measured again at the end compare by that measurement; the others (dropped,
    skipped) by the search's timing of both. One that failed to build has no speed, so it is
    always named.
    """
    device = results.devices[0] if results.devices else "cpu"
    final = {v.name: v for v in results.variants}

    def final_ms(name: str) -> float | None:
        v = final.get(name)
        return v.latency[device].p50_ms if v is not None and device in v.latency else None

    chosen_trial = next((t for t in trials if chosen and t.chain == chosen.name), None)
    found: list[tuple[float, str, str]] = []
    for t in trials:
        if t is chosen_trial:
            continue
        mine = final_ms(t.chain)
        if chosen_trial is not None and t.outcome != FAILED:
            theirs = final_ms(chosen_trial.chain)
            if mine is None or theirs is None:
                mine, theirs = t.latency_ms, chosen_trial.latency_ms
            if mine is None or theirs is None or mine >= theirs:
                continue
        speed = mine if mine is not None else t.latency_ms
        why = _why_not(t, final.get(t.chain), gates, device)
        found.append((float("inf") if speed is None else speed, t.chain, why))
    return {chain: why for _, chain, why in sorted(found, key=lambda f: f[0])}


def _why_not(t: Trial, v: VariantResult | None, gates: Gates, device: str) -> str:
    """One candidate's reason, in the budget's terms ('test drop 1.16 points > the 1-point
    budget'), with the 95% interval's upper end where that is what the budget judges."""
    budget = gates.max_accuracy_drop
    assert budget is not None  # a tune always has its allowance

    def beyond(split: str, drop: float | None, interval: list[float] | None) -> str:
        upper = judged_drop(drop, interval, gates.gate_on)
        if drop is None or upper is None:
            return f"no {split} drop was measured"
        shown = f"{split} drop {drop:.2f} points"
        if upper != drop:
            shown += f" (95% interval up to {upper:.2f})"
        return f"{shown} > the {budget:g}-point budget"

    if t.outcome == OVER:
        return f"beyond budget on validation: {beyond('validation', t.drop, t.drop_ci)}"
    if t.outcome in (DROPPED, SKIPPED):
        return f"{t.outcome} by the search: {t.reason}"
    if t.outcome == FAILED:
        return t.reason
    # Within budget on validation, so the test split or the final timing ruled it out.
    if v is None or device not in v.latency:
        return f"not timed on {device} in the final measurement"
    return f"within budget on validation, but {beyond('test', v.drop_points, v.drop_ci)}"


def _annotate(results: SweepResults, trials: list[Trial]) -> None:
    """Each finished candidate's row says what the search saw of it on validation."""
    by_chain = {t.chain: t for t in trials}
    for v in results.variants:
        trial = by_chain.get(v.name)
        if trial is not None and trial.drop is not None:
            drop = f"validation drop {trial.drop:+.2f} points"
            v.notes.insert(0, f"search [{trial.order}]: {drop}, {trial.outcome}")


def _write_trace(folder: Path, trials: list[Trial], search: Search) -> None:
    """trace.json, report/trace.md and report/trace.csv: what the search tried, and why."""
    rows = trace_rows(trials, search.base_latency_ms)
    record = {
        "baseline": {
            "validation_metric": search.base.metric if search.base else None,
            "latency_ms": search.base_latency_ms,
        },
        "tail": search.tail,
        "out_of_time": search.out_of_time,
        "trials": [t.to_dict() for t in trials],
    }
    (folder / "trace.json").write_text(json.dumps(record, indent=2))
    (folder / "report" / "trace.md").write_text(trace_markdown(rows), encoding="utf-8")
    with (folder / "report" / "trace.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["order"])
        writer.writeheader()
        writer.writerows(rows)


def trace_rows(trials: list[Trial], base_latency_ms: float) -> list[dict[str, Any]]:
    """The trace as flat rows (order, candidate, why, figures, outcome) for Markdown and CSV."""
    return [
        {
            "order": t.order,
            "stage": t.stage,
            "candidate": t.chain,
            "why": t.why,
            "latency_ms": None if t.latency_ms is None else round(t.latency_ms, 3),
            "speedup": None if not t.latency_ms else round(base_latency_ms / t.latency_ms, 2),
            "drop_before_recovery": t.drop_before_recovery,
            "val_drop": t.drop,
            "val_drop_ci": t.drop_ci,
            "outcome": t.outcome,
            "reason": t.reason,
            "seconds": round(t.seconds, 1),
            "built_by": t.built_by,
        }
        for t in trials
    ]


def trace_markdown(rows: list[dict[str, Any]]) -> str:
    """The search trace as a Markdown table: what was tried, in which order, and why."""
    header = ["#", "stage", "candidate", "why tried", "latency", "val drop (before recovery)",
              "outcome"]  # fmt: skip
    workers = any(r["built_by"] for r in rows)  # built on a cluster: say where
    header += ["built by"] if workers else []
    lines = ["# squeeze tune: search trace", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    for r in rows:
        latency = f"{r['latency_ms']:.2f} ms ({r['speedup']:.1f}x)" if r["latency_ms"] else ""
        drop = f"{r['val_drop']:+.2f}" if r["val_drop"] is not None else ""
        if r["drop_before_recovery"] is not None:
            drop += f" ({r['drop_before_recovery']:+.1f})"
        outcome = r["outcome"] + (f": {r['reason']}" if r["reason"] else "")
        cells = [str(r["order"]), r["stage"], f"`{r['candidate']}`", r["why"], latency, drop,
                 outcome] + ([r["built_by"] or "-"] if workers else [])  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def run_tune(
    plan: Plan,
    config: TuneConfig,
    out: str | Path,
    *,
    cache_dir: Path,
    overwrite: bool = False,
    resume: bool = False,
    trust_remote_code: bool = False,
    progress: ProgressFactory = no_progress,
    log: Any = None,
    recipe: str | Path | None = None,
    note: Any = None,
    executor: Executor = LOCAL,
) -> tuple[SweepResults, list[Trial], list[str]]:
    """Search, measure, choose and write ``out``; returns the results, the trace and the
    reasons the search found nothing within budget (empty = a variant was selected).

    ``log`` takes progress messages; ``note`` what was changed to fit the model (the search
    space), said before any work (default: ``log``).
    """
    say = log or (lambda message: None)
    inputs = pipeline.plan_inputs(plan, cache_dir, recipe)
    check_output(out, overwrite=overwrite, inputs=inputs)
    state = state_dir_for(out)
    _check_state(state, resume=resume, overwrite=overwrite)
    _check(plan, config)
    model_config = Artifact.of(plan.model).config(trust_remote_code=trust_remote_code)
    config, notes = config.fitted(model_config)
    for text in notes:
        (note or say)(f"search space fitted to the model: {text}")
    gates = replace(plan.gates, max_accuracy_drop=config.max_accuracy_drop)
    plan = replace(plan, gates=gates)
    root = content_key(plan.model)
    claim(cache_dir)  # a folder that is not squeeze's cache is refused before the journal starts
    journal = Journal(state / JOURNAL)
    _check_resume(journal, _fingerprint(plan, config, root), resume=resume)
    ctx = _context(plan, cache_dir, executor, trust_remote_code, progress, say, root)
    search = Search(plan, config, ctx, journal)
    trials = search.run()
    if search.out_of_time:
        say(f"the {config.budget} budget is spent; measuring what was finished")
    say("measuring every finished candidate with the baseline on the test split")
    # Every finished candidate, named by its chain.
    chains = [t.chain for t in trials if t.finished]
    final = replace(plan, variants=variants_from(chains, "tune") if chains else ())
    results = pipeline.measure_plan(
        final, cache_dir=cache_dir, executor=executor, trust_remote_code=trust_remote_code,
        progress=progress, log=say,
    )  # fmt: skip
    _annotate(results, trials)
    chosen, problems = _choose(results, trials, gates)
    rule = Selection("best-under-drop", config.max_accuracy_drop, on=gates.gate_on).rule(results)
    pipeline.write_outcome(
        results, out, chosen, gates=gates,
        selection=f"fastest within {config.max_accuracy_drop:g} points on validation and test",
        problems=problems, overwrite=overwrite, inputs=inputs,
        rule=f"{rule}, on the validation split (where the search chose) and on the test split "
        "(where it is reported)",
        passed_over=passed_over(results, trials, chosen, gates),
        extra=lambda folder: _write_trace(folder, trials, search),
    )  # fmt: skip
    shutil.rmtree(state, ignore_errors=True)
    return results, trials, problems
