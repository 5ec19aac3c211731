"""``squeeze eval``: a checkpoint's metric on held-out data."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from squeeze.cli._options import (
    ModelArg,
    NormalizeOpt,
    PoolingOpt,
    StepFlags,
    TaskOpt,
    pooling_of,
    task_of,
    with_data_options,
    with_options,
)
from squeeze.cli._render import print_json, print_notes, print_table, progress_factory
from squeeze.data.spec import DataSpec


@with_data_options
@with_options(
    StepFlags, omit={"eval_data", "max_accuracy_drop", "min_fidelity", "gate_on", "overwrite"}
)
def eval_(
    model: ModelArg,
    data: DataSpec,
    flags: StepFlags,
    task: TaskOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per batch.")] = 32,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Embedders: the original model (checkpoint or export) to measure fidelity "
            "against: mean cosine, similarity Spearman and top-10 neighbour overlap."
        ),
    ] = None,
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
) -> None:
    """Score a checkpoint (PyTorch) or a `squeeze export` folder (ONNX Runtime, OpenVINO) on a
    dataset: accuracy and macro-F1 for classifiers, perplexity for causal LMs; for embedders
    kNN accuracy (labelled text), STS Spearman (scored pairs) or NDCG/MRR/recall@10 (query and
    positive pairs), and fidelity to --reference; with the sample count and the time it took."""
    from squeeze.artifact import Artifact
    from squeeze.core.device import resolve_device
    from squeeze.core.errors import ConfigError, Problem
    from squeeze.core.types import Task
    from squeeze.data.encoding import default_length, encode_for, fit_length
    from squeeze.measure.evaluate import evaluate_forward
    from squeeze.measure.machine import other_isa_note

    device = resolve_device(flags.device)
    opened = dict(
        task=task_of(task),
        device=device,
        trust_remote_code=flags.trust_remote_code,
        pooling=pooling_of(pooling, normalize),
    )
    if reference is not None:
        check_reference(reference)
    scorable = Artifact.of(model).open(**opened)
    if reference is not None and scorable.task is not Task.EMBEDDING:
        raise ConfigError(
            Problem(f"{{reference}} is for embedders; this is a {scorable.task.value} model")
        )
    max_length = flags.max_length or default_length(scorable.max_tokens)
    encoded, dataset = encode_for(scorable, data, max_length=max_length)
    max_length, _ = fit_length(scorable, max_length)  # what the examples were cut to
    progress = progress_factory(flags.quiet)
    against = None
    if reference is not None:
        against = _reference(reference, scorable, data, max_length, opened, progress)
    evaluation = evaluate_forward(
        scorable.forward,
        encoded,
        scorable.task,
        batch_size=batch_size,
        progress=progress,
        reference=against,
    )
    elsewhere = other_isa_note(Artifact.of(model).chosen_for(), model)
    notes = [*scorable.notes, *dataset.notes, *([elsewhere] if elsewhere else [])]
    if encoded.n_truncated:
        notes.append(f"{encoded.n_truncated} of {len(encoded)} examples cut to {max_length} tokens")
    scored = dict(
        model=model, task=scorable.task.value, runtime=scorable.runtime, data=dataset.name
    )
    if scorable.pooling is not None:
        scored["pooling"] = scorable.pooling.describe()
    if reference is not None:
        scored["reference"] = reference
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


def check_reference(reference: str) -> None:
    """A reference that is missing is refused before the model is loaded."""
    from squeeze.artifact import Artifact

    Artifact.of(reference).config()


def _reference(
    reference: str,
    scorable: Any,
    data: DataSpec,
    max_length: int,
    opened: dict[str, Any],
    progress: Any,
) -> Any:
    """The reference model's evaluation of the same texts, cut to the same length (its
    embeddings are what fidelity compares with).

    Raises:
        ConfigError: a reference that is not an embedder.
    """
    from squeeze.artifact import Artifact
    from squeeze.core.errors import ConfigError, Problem
    from squeeze.core.types import Task
    from squeeze.data.encoding import encode_for
    from squeeze.measure.evaluate import evaluate_forward

    original = Artifact.of(reference).open(**opened)
    if original.task is not Task.EMBEDDING:
        raise ConfigError(
            Problem(f"{{reference}} {reference} is a {original.task.value} model, not an embedder")
        )
    encoded, _ = encode_for(original, data, max_length=max_length)
    return evaluate_forward(original.forward, encoded, Task.EMBEDDING, progress=progress)
