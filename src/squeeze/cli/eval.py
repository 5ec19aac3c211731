"""``squeeze eval``: a checkpoint's metric on held-out data."""

from __future__ import annotations

from typing import Annotated

import typer

from squeeze.cli._options import (
    ModelArg,
    StepFlags,
    TaskOpt,
    task_of,
    with_data_options,
    with_options,
)
from squeeze.cli._render import print_json, print_notes, print_table, progress_factory
from squeeze.data.spec import DataSpec


@with_data_options
@with_options(StepFlags, omit={"eval_data", "max_accuracy_drop", "gate_on", "overwrite"})
def eval_(
    model: ModelArg,
    data: DataSpec,
    flags: StepFlags,
    task: TaskOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per batch.")] = 32,
) -> None:
    """Score a checkpoint (PyTorch) or a `squeeze export` folder (ONNX Runtime) on a dataset:
    accuracy and macro-F1 for classifiers, perplexity for causal LMs, with the sample count and
    the time it took."""
    from squeeze.artifact import Artifact
    from squeeze.core.device import resolve_device
    from squeeze.data.encoding import default_length, encode_for, fit_length
    from squeeze.measure.evaluate import evaluate_forward

    device = resolve_device(flags.device)
    scorable = Artifact.of(model).open(
        task=task_of(task), device=device, trust_remote_code=flags.trust_remote_code
    )
    max_length = flags.max_length or default_length(scorable.max_tokens)
    encoded, dataset = encode_for(scorable, data, max_length=max_length)
    max_length, _ = fit_length(scorable, max_length)  # what the examples were cut to
    evaluation = evaluate_forward(
        scorable.forward,
        encoded,
        scorable.task,
        batch_size=batch_size,
        progress=progress_factory(flags.quiet),
    )
    notes = [*scorable.notes, *dataset.notes]
    if encoded.n_truncated:
        notes.append(f"{encoded.n_truncated} of {len(encoded)} examples cut to {max_length} tokens")
    scored = dict(
        model=model, task=scorable.task.value, runtime=scorable.runtime, data=dataset.name
    )
    if flags.json_output:
        print_json({**scored, **evaluation.to_dict(), "device": device, "notes": notes})
        return
    rows = [*scored.items(), *((m.name, f"{m.value:.4f}") for m in evaluation.metrics)]
    rows += [
        ("samples", str(evaluation.n_samples)),
        ("elapsed", f"{evaluation.elapsed_s:.2f} s"),
        ("throughput", f"{evaluation.samples_per_s:.1f} samples/s on {device}"),
    ]
    print_table("squeeze eval", rows)
    print_notes(notes)
