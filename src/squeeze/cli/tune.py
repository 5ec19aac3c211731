"""``squeeze tune``: the fastest variant this machine can serve within an accuracy budget.

Searches structured pruning amounts, allocations, recovery and int8 modes (``squeeze.plan.tune``),
then writes what ``squeeze run`` writes plus the search trace; exit 1 when no variant keeps the
budget (after writing everything, so CI keeps the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from squeeze.cli._cluster import ClusterFlags, with_cluster
from squeeze.cli._options import (
    CacheDirOpt,
    ModelArg,
    OutOpt,
    StepFlags,
    optional_data_spec,
    with_config,
    with_data_options,
    with_options,
)
from squeeze.cli._render import progress_factory, stderr
from squeeze.core.errors import GateError
from squeeze.data.spec import DataSpec
from squeeze.plan.tune.config import TuneConfig


@with_cluster
@with_data_options
@with_config(TuneConfig)
@with_options(StepFlags, omit={"max_length", "max_accuracy_drop", "min_fidelity"})
def tune(
    model: ModelArg,
    data: DataSpec,
    output: OutOpt,
    config: TuneConfig,
    flags: StepFlags,
    cluster: ClusterFlags,
    max_length: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Tokens per example, and the length timed (default: 128, or the model's "
            "positions where fewer; one beyond the model's positions is cut to them, with a "
            "note).",
        ),
    ] = None,
    runs: Annotated[int, typer.Option(min=2, help="Timed runs per variant and round.")] = 30,
    cache_dir: CacheDirOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted search from OUTPUT.tune.")
    ] = False,
) -> None:
    """Find the fastest variant of MODEL whose accuracy drop stays within --max-accuracy-drop,
    within --budget: structured pruning (amounts, allocation, layers) with recovery, and int8
    modes, searched on the validation split and reported on the test split with 95% intervals.

    Candidates that cannot win are dropped early (not faster than the best so far, or starting
    worse than one recovery could not save); artifacts are cached, and an interrupted search
    continues with --resume. -o gets results.json, the report (with trace.md), trace.json and
    the selected artifact.
    """
    from squeeze.core.device import resolve_device
    from squeeze.data.encoding import DEFAULT_MAX_LENGTH
    from squeeze.engine.gates import Gates
    from squeeze.measure.latency import BenchSettings
    from squeeze.plan.recipe import Plan

    length = max_length or DEFAULT_MAX_LENGTH
    plan = Plan(
        model=model,
        variants=(),
        data=data,
        eval_data=optional_data_spec(data, flags.eval_data),
        max_length=length,
        device=resolve_device(flags.device),
        bench=BenchSettings(seq_len=length, runs=runs),
        gates=Gates(config.max_accuracy_drop, gate_on=flags.gate_on.value),
        lengths_given=frozenset({"max_length"} if max_length else ()),
    )
    plan = fit_lengths(plan, flags.trust_remote_code)
    with cluster.opened() as executor:
        tune_plan(plan, config, output, flags, cache_dir=cache_dir, resume=resume,
                  executor=executor)  # fmt: skip


def fit_lengths(plan: Any, trust_remote_code: bool) -> Any:
    """The plan with its lengths fitted to the model (``squeeze.plan.pipeline.fit_plan``), saying
    on stderr where a given length was cut: before any work, for run, sweep and tune alike."""
    from squeeze.plan.pipeline import fit_plan

    plan, notes = fit_plan(plan, trust_remote_code=trust_remote_code)
    for text in notes:
        _note(text)
    return plan


def _note(text: str) -> None:
    """A setting changed to fit the model: said on stderr before any work, --quiet or not."""
    stderr.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


def tune_plan(
    plan: Any,
    config: TuneConfig,
    output: str,
    flags: Any,
    *,
    cache_dir: str | None,
    resume: bool,
    recipe: str | None = None,
    executor: Any = None,
) -> None:
    """Run the search (``squeeze tune``, or ``squeeze run`` on a recipe with ``tune:``), show
    the trace and the results, and exit 1 when nothing kept the budget. ``flags``: the command's
    ``StepFlags`` or ``RunFlags`` (overwrite, trust_remote_code, json_output, quiet);
    ``executor`` builds the candidates (default: here, one after another)."""
    from squeeze.cli._results import print_outcome
    from squeeze.plan.cache import default_cache_dir
    from squeeze.plan.execute import LOCAL
    from squeeze.plan.tune.run import run_tune

    def log(message: str) -> None:
        if not flags.quiet:
            stderr.print(message, markup=False, highlight=False)

    results, trials, problems = run_tune(
        plan, config, output, cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
        overwrite=flags.overwrite, resume=resume, trust_remote_code=flags.trust_remote_code,
        progress=progress_factory(flags.quiet), log=log, recipe=recipe, note=_note,
        executor=executor or LOCAL,
    )  # fmt: skip
    print_outcome(results, output, problems, flags.json_output, trials)
    if problems:
        raise GateError(f"squeeze tune: {'; '.join(problems)}")
