"""The one command runner: every command and every recipe step runs a method through here.

``run_step`` does, once for all methods: check the output path, load the input, prepare the
data, measure the metric before (only when asked), call the registered handler, save what it
returns, measure sizes and the metric of what was written (the deployed format), time input and
output together (when asked), apply the accuracy gate, write the summary JSON, and move the
folder into place atomically. Handlers only transform.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from squeeze.artifact import Artifact
from squeeze.core.errors import ConfigError, Problem, UnsupportedError, raise_problems
from squeeze.core.output import atomic_output, check_output
from squeeze.core.types import Evaluation, StepResult, Task
from squeeze.data.encoding import default_length
from squeeze.data.spec import check_exists
from squeeze.engine.gate import METRIC, Gated, GateMissed, unjudgeable
from squeeze.engine.registry import Method, method_for
from squeeze.engine.step import StepContext, StepData, StepOptions
from squeeze.model.checkpoint import load, resolve_local, write_checkpoint
from squeeze.model.loaded import LoadedModel
from squeeze.train.accel import is_main_process

SCORABLE = (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.EMBEDDING)


@dataclass
class StepSummary(Gated):
    """What a step did, measured the same way for every method; the summary JSON."""

    out: Path
    method: str
    config: dict[str, Any]
    before: dict[str, int]
    after: dict[str, int]
    seconds: float = 0.0
    metric_before: Evaluation | None = None
    metric_after: Evaluation | None = None
    max_accuracy_drop: float | None = None
    gate_on: str = "point"
    min_fidelity: float | None = None
    latency: dict[str, Any] | None = None
    written: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def retained(self) -> float | None:
        """The output's share of the input's metric (inverted for lower-is-better metrics)."""
        from squeeze.core.types import LOWER_IS_BETTER

        if self.metric_before is None or self.metric_after is None:
            return None
        b, a = self.metric_before.primary, self.metric_after.primary
        if b.name in LOWER_IS_BETTER:
            return b.value / a.value if a.value else 0.0
        return a.value / b.value if b.value else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "method": self.method,
            "config": self.config,
            "before": self.before,
            "after": self.after,
            **self.gate_fields(),
            "retained": self.retained,
            "latency": self.latency,
            "written": self.written,
            "seconds": self.seconds,
            **self.details,
            "notes": self.notes,
        }


def _check_needs(method: Method, config: Any, options: StepOptions) -> None:
    """Before any work: what the method still lacks, data it needs or that is not there, and a
    gate the step could not judge (an accuracy gate without data, or on a step that is not
    scored)."""
    for spec in (options.data, options.eval_data, options.calibration_data):
        check_exists(spec)
    problems = list(method.complete(config))
    reason = method.data_problem(config, options.given())
    if reason:
        problems.append(Problem(reason))
    gates = {"max_accuracy_drop": options.max_accuracy_drop, "min_fidelity": options.min_fidelity}
    if options.measure:
        problems += unjudgeable(gates, {METRIC} if options.data is not None else set())
    else:
        problems += [
            Problem(f"{{{gate}}} cannot be judged with measure=False (no metric is measured); "
                    "measure the step or leave the gate out")
            for gate, limit in gates.items() if limit is not None
        ]  # fmt: skip
    raise_problems(problems, ConfigError)


def _fit_lengths(source: str, options: StepOptions) -> StepOptions:
    """A step's lengths, fitted to the model before any work (its config alone is read): no
    ``max_length`` means the default the model holds, and the step is timed at the length its
    examples are cut to, so a too-long length is cut with a note (by the encoding), never a
    timing failure after hours of training."""
    limit = Artifact.of(source).positions(trust_remote_code=options.trust_remote_code)
    length = options.max_length or default_length(limit)
    bench = options.bench
    if bench is not None:
        bench = replace(bench, seq_len=length if limit is None else min(length, limit))
    return replace(options, max_length=length, bench=bench)


def _check_task(method: Method, loaded: LoadedModel, options: StepOptions) -> None:
    if loaded.task.value not in method.tasks:
        raise UnsupportedError(f"{method.name} cannot take a {loaded.task.value} model")
    if options.min_fidelity is not None and loaded.task is not Task.EMBEDDING:
        raise UnsupportedError(
            Problem(
                f"{{min_fidelity}} judges an embedder's embeddings; this is a "
                f"{loaded.task.value} model (gate it with {{max_accuracy_drop}})"
            )
        )
    if options.data is not None and options.measure and loaded.task not in SCORABLE:
        raise UnsupportedError(
            Problem(
                f"{{data}} needs a classifier or causal LM to score, not a "
                f"{loaded.task.value} model"
            )
        )


@contextmanager
def _output(out: str | Path, options: StepOptions, inputs: list[Path | None]) -> Iterator[Path]:
    """The atomic output folder; under ``accelerate launch`` only the first process writes."""
    if is_main_process():
        with atomic_output(out, overwrite=options.overwrite, inputs=inputs) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix="squeeze-discard-") as tmp:
            yield Path(tmp)


def _bench(source: Path, output: Path, settings: Any) -> dict[str, Any]:
    """Time input and output in one rotating measurement."""
    from squeeze.measure.bench import bench_models

    results, _ = bench_models([str(source), str(output)], settings)
    before, after = (r.latencies[0] for r in results)
    return {
        "before": {"p50_ms": before.p50_ms, "p90_ms": before.p90_ms},
        "after": {"p50_ms": after.p50_ms, "p90_ms": after.p90_ms},
        "speedup": before.p50_ms / after.p50_ms if after.p50_ms else None,
        "settings": asdict(settings),
        "machine": results[0].machine,
    }


def _evaluate_after(
    result: StepResult,
    loaded: LoadedModel,
    tmp: Path,
    data: StepData,
    options: StepOptions,
    before: Evaluation | None,
) -> Evaluation:
    """The metric of what was written, run as it is deployed (an embedder's fidelity to
    ``before``, the input's evaluation, too)."""
    from squeeze.measure.evaluate import evaluate_forward
    from squeeze.model.runtime import torch_forward

    scorer = result.model or loaded
    forward = result.forward
    if forward is None:
        if result.model is not None:
            forward = torch_forward(result.model.model, options.device, result.model.pooling)
        else:
            forward = Artifact.of(tmp).open(device="cpu").forward
    return evaluate_forward(
        forward,
        data.held_out(scorer),
        loaded.task,
        progress=options.progress,
        reference=before,
    )


def run_step(
    source: str | Path, config: Any, out: str | Path, options: StepOptions = StepOptions()
) -> StepSummary:
    """Run the method registered for ``config`` from ``source`` into ``out``.

    Nothing is written when the gate fails (the summary says so; the caller decides the exit
    code) or when anything raises.

    Raises:
        ConfigError: a config that needs data it was not given, an output over an input.
        UnsupportedError: an input the method cannot take.
    """
    from squeeze.measure.evaluate import evaluate
    from squeeze.train.resume import check_resume, checkpoint_dir_for

    source = str(source)
    method = method_for(config)
    _check_needs(method, config, options)
    inputs = [
        resolve_local(source),
        *(resolve_local(p) for p in method.inputs(config)),
        *options.files(),
    ]
    check_output(out, overwrite=options.overwrite, inputs=inputs)
    options = _fit_lengths(source, options)
    checkpoint_dir = checkpoint_dir_for(out) if method.resumable else None
    resuming = (
        check_resume(checkpoint_dir, resume=options.resume, overwrite=options.overwrite)
        if checkpoint_dir is not None
        else False
    )
    start = time.perf_counter()
    loaded = load(source, trust_remote_code=options.trust_remote_code, device=options.device)
    _check_task(method, loaded, options)
    method.accepts(config, loaded.config)
    notes = list(loaded.notes)
    data = StepData(options, notes)
    measuring = options.measure and data.given
    # Deflating the weights takes seconds; only a summary someone reads needs it (not a sweep's).
    zipped = method.zipped_size and options.measure
    summary = StepSummary(
        out=Path(out),
        method=method.name,
        config=asdict(config),
        before=Artifact.of(loaded.path).sizes(loaded, zipped=zipped),
        after={},
        max_accuracy_drop=options.max_accuracy_drop,
        gate_on=options.gate_on,
        min_fidelity=options.min_fidelity,
        notes=notes,
    )
    if measuring:
        summary.metric_before = evaluate(
            loaded, data.held_out(loaded), device=options.device, progress=options.progress
        )
        notes.append(
            f"metric on {summary.metric_before.n_samples} held-out examples "
            f"({data.held_out_spec().split or 'given'})"
        )
    try:
        with (
            tempfile.TemporaryDirectory(prefix="squeeze-work-") as scratch,
            _output(out, options, inputs) as tmp,
        ):
            ctx = StepContext(
                source=source, out=tmp, scratch=Path(scratch), data=data, device=options.device,
                trust_remote_code=options.trust_remote_code, measure=measuring,
                checkpoint_dir=checkpoint_dir, resume=resuming, max_length=options.max_length,
                metric_before=summary.metric_before, max_accuracy_drop=options.max_accuracy_drop,
                gate_on=options.gate_on, min_fidelity=options.min_fidelity,
                progress=options.progress, decisions=options.decisions,
                target=options.target,
            )  # fmt: skip
            result = method.handler(loaded, config, ctx)
            notes += result.notes
            summary.details = result.details
            if result.model is not None:
                write_checkpoint(result.model, tmp)
            summary.after = (
                asdict(result.sizes)
                if result.sizes is not None
                else Artifact.of(tmp).sizes(result.model, zipped=zipped)
            )
            if (
                method.compresses
                and summary.after["bytes_on_disk"] >= summary.before["bytes_on_disk"]
            ):
                notes.append(
                    f"the result is not smaller on disk ({summary.after['bytes_on_disk']} vs "
                    f"{summary.before['bytes_on_disk']} bytes)"
                )
            if measuring:
                summary.metric_after = result.metric or _evaluate_after(
                    result, loaded, tmp, data, options, summary.metric_before
                )
            if options.bench is not None and is_main_process():
                summary.latency = _bench(loaded.path, tmp, options.bench)
            summary.seconds = time.perf_counter() - start
            if summary.undecided:
                notes.append(summary.undecided)
            if not summary.passed:
                raise GateMissed(summary)
            summary.written = is_main_process()
            if method.summary is not None:
                (tmp / method.summary).write_text(json.dumps(summary.to_dict(), indent=2))
    except GateMissed:
        notes.append(f"nothing was written to {out}: a gate failed")
    if checkpoint_dir is not None and is_main_process():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary
