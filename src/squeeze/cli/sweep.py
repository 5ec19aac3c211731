"""``squeeze run`` (a recipe, or chains on the command line) and ``squeeze sweep`` (a grid).

Both build their variants through the artifact cache, measure every one of them with the same
settings against the baseline, write results.json, a report and the selected artifact to -o, and
exit 1 when the selected variant misses a gate (after writing everything, so CI keeps the report).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from squeeze.cli._cluster import ClusterFlags, with_cluster
from squeeze.cli._options import (
    GATE_ON_HELP,
    CacheDirOpt,
    EvalDataOpt,
    GateOn,
    JsonOpt,
    MaxDropOpt,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    TrustOpt,
    choice_parser,
    optional_data_spec,
    with_data_options,
    with_options,
)
from squeeze.cli._render import progress_factory, stderr
from squeeze.core.errors import ConfigError, GateError
from squeeze.data.spec import DataSpec


@dataclass(frozen=True)
class RunFlags:
    """The options `run` and `sweep` share: evaluation, timing, gates, selection, output. None:
    the recipe's setting."""

    eval_data: EvalDataOpt = None
    max_length: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Truncate inputs to this many tokens; latency is timed at this length "
            "(default: the recipe's, else 128 or the model's positions where fewer; one "
            "beyond the model's positions is cut to them, with a note).",
        ),
    ] = None
    runs: Annotated[
        int | None,
        typer.Option(min=2, help="Timed runs per variant and round."),
    ] = None
    max_accuracy_drop: MaxDropOpt = None
    # None: the recipe's gates.gate_on, else point.
    gate_on: Annotated[
        GateOn | None,
        typer.Option(help=GATE_ON_HELP, parser=choice_parser(GateOn, "gate_on")),
    ] = None
    min_speedup: Annotated[
        float | None,
        typer.Option(help="Fail (exit 1) unless the selected variant is this much faster."),
    ] = None
    max_size: Annotated[
        str | None,
        typer.Option(help="Fail (exit 1) if the selected variant is larger, e.g. 50MB."),
    ] = None
    min_fidelity: Annotated[
        float | None,
        typer.Option(
            min=-1.0,
            max=1.0,
            help="Embedders: select among variants whose embeddings of the held-out texts keep "
            "this mean cosine to the baseline's (e.g. 0.99; needs data, not labels), and fail "
            "(exit 1) if none does.",
        ),
    ] = None
    select: Annotated[
        str | None,
        typer.Option(
            help="best-under-drop=X (fastest within X points), smallest-under-drop=X, or a "
            "name; copied to OUTPUT/selected."
        ),
    ] = None
    cache_dir: CacheDirOpt = None
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or cuda:N (default: recipe's, or cpu).")
    ] = None
    overwrite: OverwriteOpt = False
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted search (a recipe's tune: section).")
    ] = False
    trust_remote_code: TrustOpt = False
    json_output: JsonOpt = False
    quiet: QuietOpt = False


def _finish(
    plan: Any, data: DataSpec | None, output: str, flags: RunFlags, cluster: ClusterFlags,
    recipe: str | None = None,
) -> None:  # fmt: skip
    """Apply the command line over the plan, run it (or its search) on the executor
    ``cluster`` names, show the results, gate. ``recipe`` is the file the plan came from: an
    input the output guard protects with the rest."""
    from squeeze.cli._results import print_outcome
    from squeeze.cli.tune import fit_lengths
    from squeeze.core.device import resolve_device
    from squeeze.engine.gates import Selection, parse_size
    from squeeze.plan.cache import default_cache_dir
    from squeeze.plan.pipeline import run_plan

    o = flags
    if data is not None:
        plan = replace(plan, data=data, eval_data=optional_data_spec(data, o.eval_data),
                       from_recipe=plan.from_recipe - {"data", "eval_data"})  # fmt: skip
    elif o.eval_data is not None:  # read like the recipe's data, which it then scores on
        plan = replace(plan, eval_data=optional_data_spec(plan.data, o.eval_data),
                       from_recipe=plan.from_recipe - {"eval_data"})  # fmt: skip
    gates = {  # None: the recipe's
        "max_accuracy_drop": o.max_accuracy_drop,
        "gate_on": None if o.gate_on is None else o.gate_on.value,
        "min_speedup": o.min_speedup,
        "max_size": parse_size(o.max_size) if o.max_size else None,
        "min_fidelity": o.min_fidelity,
    }
    bench = replace(plan.bench, seq_len=o.max_length or plan.bench.seq_len)
    plan = replace(
        plan,
        gates=replace(plan.gates, **{k: v for k, v in gates.items() if v is not None}),
        select=Selection.parse(o.select) if o.select else plan.select,
        max_length=o.max_length or plan.max_length,
        bench=replace(bench, runs=o.runs) if o.runs else bench,
        device=resolve_device(o.device or plan.device),
        # --max-length sets the timed length too, over the recipe's bench seq.
        lengths_given=plan.lengths_given - {"seq_len"} | {"max_length"}
        if o.max_length
        else plan.lengths_given,
    )
    plan = fit_lengths(plan, o.trust_remote_code)

    if plan.tune is not None:
        from squeeze.cli.tune import tune_plan

        config = plan.tune
        if o.max_accuracy_drop is not None:
            config = replace(config, max_accuracy_drop=o.max_accuracy_drop)
        with cluster.opened() as executor:
            tune_plan(plan, config, output, o, cache_dir=o.cache_dir, resume=o.resume,
                      recipe=recipe, executor=executor)  # fmt: skip
        return
    if o.resume:
        raise ConfigError("--resume continues a recipe's tune: search; this recipe has none")

    def log(message: str) -> None:
        if not o.quiet:
            stderr.print(f"[dim]{message}[/dim]")

    with cluster.opened() as executor:
        results, problems = run_plan(
            plan, output, executor=executor,
            cache_dir=Path(o.cache_dir) if o.cache_dir else default_cache_dir(),
            overwrite=o.overwrite, trust_remote_code=o.trust_remote_code,
            progress=progress_factory(o.quiet), log=log, recipe=recipe,
        )  # fmt: skip
    print_outcome(results, output, problems, o.json_output)
    if problems:
        raise GateError(f"selected variant {results.selected or '(none)'}: {'; '.join(problems)}")


@with_cluster
@with_options(RunFlags)
@with_data_options(required=False)
def run(
    output: OutOpt,
    flags: RunFlags,
    cluster: ClusterFlags,
    recipe: Annotated[
        str | None, typer.Argument(help="Recipe file (.yaml or .toml); or use --model/--variant.")
    ] = None,
    data: DataSpec | None = None,
    model: Annotated[str | None, typer.Option(help="Model (overrides the recipe's).")] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help='A chain like "structured(heads=0.3) -> quantize(int8)", or a name for it: '
            '"slim=structured(heads=0.3) -> quantize(int8)"; repeatable.',
            metavar="[NAME=]CHAIN",
        ),
    ] = None,
) -> None:
    """Run a recipe: build each variant (chains of prune, distill, quantize and export steps),
    measure all of them the same way against the baseline, and write results.json, a report
    (Markdown, CSV, plots, HTML) and the selected artifact to -o.

    Steps take the options of their commands, as key=value: magnitude(sparsity=0.5),
    structured(heads=0.3, ffn=0.5, finetune_steps=100), distill(student_layers=N, or after a
    prune step; max_steps=300), quantize(int8[, onnxruntime|torch|bitsandbytes]), export().
    """
    from squeeze.plan.recipe import Plan, load_plan, variants_from

    if recipe is not None:
        plan = load_plan(recipe)
        if variant:
            plan = replace(plan, variants=plan.variants + variants_from(list(variant), "--variant"))
    else:
        if model is None or not variant:
            raise ConfigError("give a recipe file, or --model and at least one --variant")
        plan = Plan(model=model, variants=variants_from(list(variant), "--variant"))
    if model is not None:
        plan = replace(plan, model=model)
    _finish(plan, data, output, flags, cluster, recipe)


def _floats(text: str | None, flag: str) -> list[float]:
    if not text:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes numbers like 0.3,0.5, not '{text}'") from None


def grid(
    sparsity: list[float],
    heads: list[float],
    ffn: list[float],
    dtypes: list[str],
    finetune_steps: int,
    distill_steps: int,
) -> list[str]:
    """Every prune setting (none, each sparsity, each heads x ffn pair), optionally distilled,
    times every precision (unchanged or each dtype); without the unchanged model itself."""
    recover = f", finetune_steps={finetune_steps}" if finetune_steps else ""
    prunes = [f"magnitude(sparsity={s}{recover})" for s in sparsity]
    prunes += [
        f"structured(heads={h}, ffn={f}{recover})"
        for h in heads or [0.0]
        for f in ffn or [0.0]
        if h or f
    ]
    if distill_steps:
        prunes = [f"{p} -> distill(max_steps={distill_steps})" for p in prunes]
    tails = [None, *(f"quantize({d})" for d in dtypes)]
    chains = ([p for p in (prune, tail) if p] for prune in [None, *prunes] for tail in tails)
    return [" -> ".join(parts) for parts in chains if parts]


@with_cluster
@with_options(RunFlags)
@with_data_options
def sweep(
    model: Annotated[str, typer.Argument(help="Checkpoint to compress (the baseline).")],
    data: DataSpec,
    output: OutOpt,
    flags: RunFlags,
    cluster: ClusterFlags,
    sparsity: Annotated[
        str | None, typer.Option(help="Magnitude sparsities, e.g. 0.3,0.5,0.7.")
    ] = None,
    heads: Annotated[
        str | None, typer.Option(help="Structured head fractions, e.g. 0.3,0.5.")
    ] = None,
    ffn: Annotated[str | None, typer.Option(help="Structured FFN fractions, e.g. 0.5.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Precisions to add to every variant, e.g. fp16,int8.")
    ] = None,
    finetune_steps: Annotated[
        int, typer.Option(min=0, help="Recovery fine-tuning steps after each prune.")
    ] = 0,
    distill_steps: Annotated[
        int, typer.Option(min=0, help="Distillation steps after each prune (teacher: MODEL).")
    ] = 0,
) -> None:
    """Compress MODEL over a grid (sparsities, head/FFN fractions, precisions), measure every
    variant against it the same way and write results, report and the selected artifact to -o.
    Finished artifacts are cached by content: re-runs and added grid points reuse them."""
    from squeeze.plan.recipe import Plan, variants_from

    chains = grid(
        _floats(sparsity, "--sparsity"), _floats(heads, "--heads"), _floats(ffn, "--ffn"),
        [d.strip() for d in (dtype or "").split(",") if d.strip()], finetune_steps, distill_steps,
    )  # fmt: skip
    if not chains:
        raise ConfigError("nothing to sweep: give --sparsity, --heads/--ffn or --dtype")
    plan = Plan(model=model, variants=variants_from(chains, "sweep"))
    _finish(plan, data, output, flags, cluster)
