"""``squeeze finetune``: turn a checkpoint into a trained classifier (or tuned LM)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from squeeze.cli._options import (
    ModelArg,
    OutOpt,
    StepFlags,
    TaskOpt,
    task_of,
    with_config,
    with_data_options,
    with_options,
)
from squeeze.cli._render import print_json, print_notes, print_table, progress_factory
from squeeze.data.spec import DataSpec
from squeeze.train.config import TrainConfig


@with_config(TrainConfig, name="train_config")
@with_data_options
@with_options(StepFlags, omit={"eval_data", "max_accuracy_drop", "min_fidelity", "gate_on"})
def finetune(
    model: ModelArg,
    data: DataSpec,
    train_config: TrainConfig,
    output: OutOpt,
    flags: StepFlags,
    eval_data: Annotated[
        str | None,
        typer.Option(
            help="Validation data (same column options); default: the validation split of --data."
        ),
    ] = None,
    max_eval_samples: Annotated[
        int | None, typer.Option(min=1, help="Validate on at most this many examples.")
    ] = None,
    task: TaskOpt = None,
    early_bird: Annotated[
        str | None,
        typer.Option(
            help="Draw a structured ticket early and train only it (EarlyBERT), e.g. "
            "heads=0.5,ffn=0.5 (optional keys: threshold=0.1, every=N, penalty=1e-4, "
            "max_search=0.5).",
            metavar="KEY=X,...",
        ),
    ] = None,
) -> None:
    """Fine-tune MODEL on --data and save the best validated checkpoint to -o.

    A base encoder gets a classification head with one output per label found in the training
    data. An embedder (a sentence-transformers folder, or --task embedding) given pairs of a text
    and its positive (--text-pair-column, no labels) is tuned contrastively with in-batch
    negatives and stays an embedder. A single file is split by content hash: training uses its
    train part, validation its validation part, and the test part stays unseen for
    `squeeze eval --split test`.
    """
    from squeeze.core.device import resolve_device
    from squeeze.methods.finetune import finetune as run_finetune
    from squeeze.methods.prune.early_bird import parse_early_bird

    validation = None
    if eval_data is not None or max_eval_samples is not None:
        validation = replace(
            data,
            source=eval_data or data.source,
            split=None if eval_data else "validation",
            max_samples=max_eval_samples,
        )
    result = run_finetune(
        model,
        data,
        output,
        eval_data=validation,
        task=task_of(task),
        config=train_config,
        max_length=flags.max_length,
        overwrite=flags.overwrite,
        trust_remote_code=flags.trust_remote_code,
        device=resolve_device(flags.device),
        progress=progress_factory(flags.quiet),
        early_bird=parse_early_bird(early_bird) if early_bird else None,
    )
    if flags.json_output:
        print_json(result.to_dict())
        return
    train = result.train
    rows = [
        ("saved to", str(result.out)),
        ("task", result.task.value),
        ("examples", f"{result.n_train} train, {result.n_validation} validation"),
        ("steps", f"{train.steps} ({train.epochs:g} epochs)"),
        ("time", f"{train.elapsed_s:.1f} s ({train.eval_s:.1f} s validating)"),
        ("training speed", f"{train.samples_per_s:.1f} samples/s"),
        ("final loss", f"{train.final_loss:.4f}"),
    ]
    if result.label_names:
        rows.append(("labels", ", ".join(result.label_names)))
    if result.early_bird is not None:
        bird = result.early_bird
        ended = "settled" if bird["settled"] else "search limit"
        drawn = f"drawn at step {bird['drawn_at_step']} of {bird['total_steps']} ({ended})"
        searched = f"{bird['search_s']:.1f} s / {bird['ticket_train_s']:.1f} s"
        rows += [("early-bird ticket", drawn), ("time searching / on ticket", searched)]
    if train.best_eval is not None:
        best = train.best_eval.primary
        rows.append((f"best validation {best.name}", f"{best.value:.4f} (step {train.best_step})"))
    print_table("squeeze finetune", rows)
    print_notes(result.notes)
