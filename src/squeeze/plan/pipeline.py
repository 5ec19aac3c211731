"""``run_plan``: build every variant through the cache, measure all of them alike, choose, gate.

Measured alike means: the metric on the same held-out examples, sizes from the files that would
ship, and latency of the deployed format (PyTorch checkpoint or ONNX Runtime export) in one
rotating measurement together with the baseline, so ratios compare like with like.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from squeeze.artifact import Artifact, positions_in
from squeeze.core.config import literal, named_in
from squeeze.core.errors import (
    ConfigError,
    Problem,
    SqueezeError,
    UnsupportedError,
    raise_problems,
)
from squeeze.core.output import atomic_output, check_output
from squeeze.core.types import LOWER_IS_BETTER, ProgressFactory, Task, no_progress
from squeeze.data.encoding import encode_for
from squeeze.data.examples import label_ids, load_dataset
from squeeze.data.spec import evaluation_part, local_file, training_part
from squeeze.engine.gate import fidelity_of
from squeeze.engine.gates import Gates, Selection, choose, failures, gate_notes, plan_problems
from squeeze.measure.evaluate import evaluate_forward
from squeeze.plan.cache import content_key
from squeeze.plan.execute import LOCAL, ChainContext, Executor
from squeeze.plan.recipe import DEFAULT_NAME, Plan
from squeeze.report.results import SweepResults, VariantResult, derive

BASELINE = "baseline"
RESULTS_FILE = "results.json"
SELECTED_DIR = "selected"


def check_plan(plan: Plan) -> None:
    """Before any work, every problem of the whole plan in one error: gates and a selection the
    run could not judge, steps that need data or a machine feature they lack, and data that does
    not read (a wrong column fails now, not after an hour).

    Raises:
        ConfigError: naming each gate, variant and step, and the data section, that is wrong.
    """
    from squeeze.model.checkpoint import read_config

    given = {name for name in ("data", "calibration_data") if getattr(plan, name) is not None}
    problems = list(plan.problems)
    names = [BASELINE, *(v.name for v in plan.variants)]
    problems += plan_problems(
        plan.gates, plan.select, names=names, data=plan.data is not None,
        tuning=plan.tune is not None,
    )  # fmt: skip
    if plan.gates.min_fidelity is not None and is_embedder(plan.model) is False:
        problems.append(
            Problem(f"gates: {{min_fidelity}} judges an embedder's embeddings; "
                    f"{literal(plan.model)} is not an embedder (no sentence-transformers files): "
                    "leave it out, or gate on {max_accuracy_drop}", UnsupportedError)
        )  # fmt: skip
    if plan.eval_data is not None and plan.data is None:
        problems.append(
            Problem("eval_data: the variants are scored only in a run with {data}; give {data} too")
        )
    try:  # cheap: no weights; a config that does not read is the build's to report
        model_config = read_config(plan.model)
    except SqueezeError:
        model_config = None
    problems += plan_length_problems(plan, model_config)
    for i, variant in enumerate(plan.variants, 1):
        for j, call in enumerate(variant.steps, 1):
            place = literal(f"variants[{i}] step {j} {call.canonical()}")
            reason = call.method.data_problem(call.config, given)
            found = [Problem(reason)] if reason else []
            if j == 1 or call.method.chained is None:  # a chained step is completed later
                found += call.method.complete(call.config)
            if model_config is not None:  # a step this model cannot take (family without spec)
                try:
                    call.method.accepts(call.config, model_config)
                except SqueezeError as e:
                    found += [Problem(p.text, p.error or type(e)) for p in e.problems]
            problems += [Problem(f"{place}: {p.text}", p.error) for p in found]
    if plan.data is not None:
        parts = {"data": training_part(plan.data)}
        scored = "eval_data" if plan.eval_data else "data (test part)"
        parts[scored] = evaluation_spec(plan)
        labelled = needs_labels(plan.model, model_config)
        label2id = getattr(model_config, "label2id", None) if labelled else None
        for where, spec in parts.items():
            try:
                dataset = load_dataset(spec, need_labels=labelled)
                if label2id and where == scored:  # labels the model lacks fail the baseline
                    label_ids(dataset, label2id)
            except SqueezeError as e:
                found = [Problem(p.text, p.error or type(e)) for p in e.problems]
                if where.split()[0] in plan.from_recipe:  # "data (test part)" is data's
                    problems += named_in(where, {}, found)
                else:
                    problems += [Problem(f"{literal(where)}: {p.text}", p.error) for p in found]
    raise_problems(problems, ConfigError)


def fit_plan(plan: Any, *, trust_remote_code: bool = False) -> tuple[Any, list[str]]:
    """A run's plan (``squeeze.plan.recipe.Plan``) with its lengths fitted to the model, before
    any work, and notes for the user.

    Lengths the user did not give (``plan.lengths_given``) become the model's position table
    where that is shorter; a given ``max_length`` beyond it is cut to it with a note (as
    :func:`squeeze.data.encoding.fit_length` does for single commands). The timed length follows
    ``max_length`` unless given; a given one that is too long is left for
    :func:`plan_length_problems` to refuse. A model whose config does not read is left as is:
    the build names that problem.
    """
    try:
        limit = Artifact.of(plan.model).positions(trust_remote_code=trust_remote_code)
    except SqueezeError:
        return plan, []
    if limit is None:
        return plan, []
    notes = []
    if plan.max_length > limit and "max_length" in plan.lengths_given:
        notes.append(
            f"max_length {plan.max_length} is longer than {plan.model}'s {limit} positions; "
            f"inputs are cut to {limit} tokens"
            + ("" if "seq_len" in plan.lengths_given else " and timed at that length")
        )
    bench = plan.bench
    if "seq_len" not in plan.lengths_given:
        bench = replace(bench, seq_len=min(bench.seq_len, limit))
    return replace(plan, max_length=min(plan.max_length, limit), bench=bench), notes


def plan_length_problems(plan: Any, model_config: Any) -> list[Problem]:
    """A plan's timed length (``bench.seq``) beyond the model's position table: refused before
    any work, naming the recipe key that sets it, where the bench would fail only after every
    variant was built. Nothing when the config did not read (the build says why)."""
    limit = positions_in(model_config)
    seq = plan.bench.seq_len
    if limit is None or seq <= limit:
        return []
    if "seq_len" in plan.lengths_given:
        fix = f"set bench seq to {limit} or less, or leave it out to time at max_length"
    else:
        fix = f"set max_length to {limit} or less (the latency is timed at max_length)"
    return [Problem(literal(f"bench seq {seq} is longer than this model's {limit} positions; "
                            f"{fix}"))]  # fmt: skip


def plan_inputs(plan: Plan, cache_dir: Path, recipe: str | Path | None = None) -> list[Path]:
    """Everything a plan reads, which its output may not be, hold or sit inside: the model,
    each step's own inputs (a teacher), the data files, the artifact cache and the recipe."""
    named = [plan.model, cache_dir, recipe]
    named += [local_file(s) for s in (plan.data, plan.eval_data, plan.calibration_data)]
    named += [p for v in plan.variants for c in v.steps for p in c.method.inputs(c.config)]
    paths = (Path(p).expanduser() for p in named if p is not None)
    return [p for p in paths if p.exists() or p == cache_dir]


def _measure_static(
    path: str, plan: Plan, reference: Any = None
) -> tuple[str, tuple[int, int, int], Any]:
    """Runtime, sizes and the metric of one artifact (an embedder's with its fidelity to
    ``reference``, the baseline's evaluation)."""
    artifact = Artifact.of(path)
    # A checkpoint is sized on its loaded model, so it is opened once for size and metric; an
    # export is sized from its graph and opened only to be scored.
    opened = plan.data is not None or artifact.runtime == "torch"
    runnable = artifact.open(device="cpu") if opened else None
    stats = artifact.size_stats(runnable.loaded if runnable else None)
    sizes = (stats.params_total, stats.params_nonzero, stats.bytes_on_disk)
    if plan.data is None:
        return artifact.runtime, sizes, None
    scored = _score(runnable, evaluation_spec(plan), plan.max_length, reference)
    return artifact.runtime, sizes, scored


def evaluation_spec(plan: Plan) -> Any:
    """Where a plan's reported metric comes from: its eval data, or the test part of its data."""
    assert plan.data is not None
    return plan.eval_data or evaluation_part(training_part(plan.data))


def _score(scorable: Any, spec: Any, max_length: int, reference: Any = None) -> Any:
    encoded, _ = encode_for(scorable, spec, max_length=max_length)
    return evaluate_forward(scorable.forward, encoded, scorable.task, reference=reference)


def evaluate_artifact(path: str, spec: Any, max_length: int, reference: Any = None) -> Any:
    """The metric of a checkpoint or export on ``spec``, run as it is deployed (an export in
    ONNX Runtime), on the CPU as every sweep measures; an embedder's fidelity is to
    ``reference``'s embeddings of the same texts (the baseline's evaluation)."""
    return _score(Artifact.of(path).open(device="cpu"), spec, max_length, reference)


def needs_labels(model: str, model_config: Any) -> bool:
    """Whether scoring ``model`` needs labelled data, as scoring reads it: a classifier's does;
    an embedder's and a language model's do not (a config that did not read: assume so)."""
    from squeeze.model.checkpoint import detect_task

    if model_config is None:
        return True
    return detect_task(model_config) is Task.SEQUENCE_CLASSIFICATION and not is_embedder(model)


def is_embedder(model: str) -> bool | None:
    """Whether ``model`` is an embedder, from its files alone (sentence-transformers files, or
    an export that pools); None where the files are not here to say (a hub id not cached)."""
    from squeeze.model.checkpoint import resolve_local
    from squeeze.model.pooling import has_sentence_files

    artifact = Artifact.of(model)
    if artifact.manifest is not None:
        return artifact.manifest.get("pooling") is not None
    folder = resolve_local(model)
    return None if folder is None else has_sentence_files(folder)


def _latencies(
    paths: list[str], names: list[str], plan: Plan, progress: ProgressFactory
) -> dict[str, list[Any]]:
    """Latency per device for every artifact (progress names its variant), each device in one
    rotating measurement."""
    import torch

    from squeeze.measure.bench import bench_models

    labels = dict(zip(paths, names, strict=True))
    results, _ = bench_models(paths, plan.bench, progress=progress, labels=labels)
    out: dict[str, list[Any]] = {"cpu": [r.latencies[0] for r in results]}
    if torch.cuda.is_available() and plan.bench.device == "cpu":
        # GPU figures where there is one; ONNX exports stay on the CPU build of ONNX Runtime.
        gpu_paths = [p for p in paths if Artifact.of(p).runtime == "torch"]
        gpu, _ = bench_models(
            gpu_paths, replace(plan.bench, device="cuda"), progress=progress, labels=labels
        )
        by_path = dict(zip(gpu_paths, gpu, strict=True))
        out["cuda"] = [by_path[p].latencies[0] if p in by_path else None for p in paths]
    return out


def measure_plan(
    plan: Plan,
    *,
    cache_dir: Path,
    executor: Executor,
    trust_remote_code: bool = False,
    progress: ProgressFactory = no_progress,
    log: Any = None,
) -> SweepResults:
    """Build every variant of ``plan`` through the cache, by ``executor``, and measure it and the
    baseline alike (metric on the held-out data, sizes, one rotating latency measurement);
    ratios, intervals and the Pareto front derived."""
    say = log or (lambda message: None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    wanted = plan.variants
    chains = executor.build(
        [v.steps for v in wanted], ChainContext.of(plan, trust_remote_code, progress), cache_dir,
        content_key(plan.model), lambda i: say(f"building {wanted[i].name}: {wanted[i].chain}"),
    )  # fmt: skip
    built: list[tuple[str, str, Any]] = [(BASELINE, "", None)]
    built += [(v.name, v.chain, chain) for v, chain in zip(wanted, chains, strict=True)]
    paths = [plan.model, *(str(chain.artifact) for chain in chains)]
    variants: list[VariantResult] = []
    metric_name, n_samples = None, 0
    # The baseline's evaluation: an embedder's variants are measured against its embeddings of
    # the same texts (every variant, cached or built, is scored again here: nothing is stored).
    reference = None
    for (name, chain_text, chain), path in zip(built, paths, strict=True):
        say(f"measuring {name}")
        start = time.perf_counter()
        fmt, (total, nonzero, size), evaluation = _measure_static(path, plan, reference)
        if evaluation is not None:
            metric_name, n_samples = evaluation.primary.name, evaluation.n_samples
        embedded = evaluation is not None and evaluation.embeddings is not None
        if name == BASELINE and embedded:
            reference = evaluation
        variants.append(
            VariantResult(
                name=name, chain=chain_text, format=fmt, artifact=path, params_total=total,
                params_nonzero=nonzero, bytes_on_disk=size,
                metric=evaluation.primary.value if evaluation else None,
                # The baseline is its own reference: 1 by definition.
                fidelity=1.0 if name == BASELINE and embedded else fidelity_of(evaluation),
                scores=evaluation.scores.to_dict() if evaluation and evaluation.scores else None,
                cached=chain.cached if chain else False,
                seconds=chain.seconds if chain else time.perf_counter() - start,
                notes=chain.notes if chain else [],
            )
        )  # fmt: skip
    say("timing every variant together")
    names = [v.name for v in variants]
    # A progress bar lives in this process: a measurement on another node reports at its end.
    shown = progress if executor.timing_node is None else no_progress
    for device, summaries in executor.timed(_latencies, paths, names, plan, shown).items():
        for variant, summary in zip(variants, summaries, strict=True):
            if summary is not None:
                variant.latency[device] = summary

    results = SweepResults(
        model=plan.model, metric_name=metric_name,
        higher_is_better=metric_name not in LOWER_IS_BETTER, n_samples=n_samples,
        bench=asdict(plan.bench), machine=executor.machine(), baseline=BASELINE, variants=variants,
        gates=asdict(plan.gates), name="" if plan.name == DEFAULT_NAME else plan.name,
    )  # fmt: skip
    derive(results)
    return results


def write_outcome(
    results: SweepResults,
    out: str | Path,
    chosen: VariantResult | None,
    *,
    gates: Gates,
    selection: str,
    problems: list[str],
    rule: str = "",
    passed_over: dict[str, str] | None = None,
    overwrite: bool = False,
    inputs: Sequence[Path] = (),
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Record ``chosen``, the ``rule`` that chose it (in words), the faster candidates it was
    chosen over (``passed_over``: name -> why not) and what ``gates`` say of it in ``results``,
    then write results.json, report/ and selected/ (with its marker) into ``out`` atomically;
    ``extra`` adds files of its own to the folder before it moves into place. ``inputs`` are
    :func:`plan_inputs`, guarded again at the moment of writing."""
    from squeeze.report.write import write_report

    results.selected = chosen.name if chosen else None
    results.selection_rule = rule
    results.passed_over = dict(passed_over or {})
    results.gate_notes = gate_notes(results, chosen, gates)
    with atomic_output(out, overwrite=overwrite, inputs=inputs) as tmp:
        results.save(tmp / RESULTS_FILE)
        write_report(results, tmp / "report", overwrite=False)
        if chosen is not None:
            shutil.copytree(chosen.artifact, tmp / SELECTED_DIR)
            marker = {
                "variant": chosen.name,
                "chain": chosen.chain,
                "selection": selection,
                "gates_passed": not problems,
                "problems": problems,
            }
            (tmp / SELECTED_DIR / "squeeze-selected.json").write_text(json.dumps(marker, indent=2))
        if extra is not None:
            extra(tmp)


def run_plan(
    plan: Plan,
    out: str | Path,
    *,
    cache_dir: Path,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    progress: ProgressFactory = no_progress,
    log: Any = None,
    recipe: str | Path | None = None,
    executor: Executor = LOCAL,
) -> tuple[SweepResults, list[str]]:
    """Build, measure, choose and write ``out`` (results.json, report/, selected/).

    Returns the results and the reasons the chosen variant misses the gates (empty = passed);
    the caller turns those into the exit code, after everything has been written.
    """
    inputs = plan_inputs(plan, cache_dir, recipe)
    check_output(out, overwrite=overwrite, inputs=inputs)
    check_plan(plan)
    results = measure_plan(
        plan, cache_dir=cache_dir, executor=executor, trust_remote_code=trust_remote_code,
        progress=progress, log=log,
    )  # fmt: skip
    selection = plan.select
    if selection is None and plan.gates.any:
        # Gates judge one variant: by default the fastest within the allowed drop.
        allowance = plan.gates.max_accuracy_drop
        selection = Selection("best-under-drop", math.inf if allowance is None else allowance)
    if selection is not None:
        selection = replace(selection, on=plan.gates.gate_on, min_fidelity=plan.gates.min_fidelity)
    chosen = choose(results, selection) if selection else None
    problems = failures(results, chosen, plan.gates) if plan.gates.any else []
    write_outcome(
        results, out, chosen, gates=plan.gates, selection=selection.describe() if selection else "",
        problems=problems, rule=selection.rule(results) if selection else "", overwrite=overwrite,
        inputs=inputs,
    )  # fmt: skip
    return results, problems
