"""``squeeze finetune``: turn a checkpoint into a trained classifier (or tuned LM)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from squeeze.cli._options import (
    BatchSizeOpt,
    DeviceOpt,
    JsonOpt,
    MaxLengthOpt,
    ModelArg,
    OutOpt,
    OverwriteOpt,
    QuietOpt,
    TaskOpt,
    TrustOpt,
    task_of,
    with_data_options,
)
from squeeze.cli._render import print_json, print_notes, print_table, progress_factory
from squeeze.data import DataSpec


@with_data_options
def finetune(
    model: ModelArg,
    data: DataSpec,
    output: OutOpt,
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
    epochs: Annotated[float, typer.Option(help="Passes over the training data.")] = 3.0,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Optimizer steps; overrides --epochs.")
    ] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 5e-5,
    batch_size: BatchSizeOpt = 32,
    grad_accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = 1,
    warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps spent warming up.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    eval_every: Annotated[
        int | None, typer.Option(min=1, help="Validate every N steps (default: every epoch).")
    ] = None,
    mixed_precision: Annotated[
        str, typer.Option(help="auto (bf16/fp16 on CUDA, off on CPU), no, fp16 or bf16.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    max_length: MaxLengthOpt = 128,
    device: DeviceOpt = "cpu",
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustOpt = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune MODEL on --data and save the best validated checkpoint to -o.

    A base encoder gets a classification head with one output per label found in the training
    data. A single file is split by content hash: training uses its train part, validation its
    validation part, and the test part stays unseen for `squeeze eval --split test`.
    """
    from squeeze.device import resolve_device
    from squeeze.train import TrainConfig
    from squeeze.train import finetune as run_finetune

    config = TrainConfig(
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        seed=seed,
        eval_every=eval_every,
        mixed_precision=mixed_precision,
    )
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
        config=config,
        max_length=max_length,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
        device=resolve_device(device),
        progress=progress_factory(quiet),
    )
    if json_output:
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
    if train.best_eval is not None:
        best = train.best_eval.primary
        rows.append((f"best validation {best.name}", f"{best.value:.4f} (step {train.best_step})"))
    print_table("squeeze finetune", rows)
    print_notes(result.notes)
