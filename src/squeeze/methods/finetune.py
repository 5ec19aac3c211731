"""``finetune``: a checkpoint plus a dataset in, the best validated fine-tuned checkpoint out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.config import literal
from squeeze.core.errors import ConfigError, DataError, Problem, UnsupportedError
from squeeze.core.output import atomic_output, check_output
from squeeze.core.types import ProgressFactory, Task, no_progress
from squeeze.data.encoding import default_length, encode, encode_sentences, fit_length
from squeeze.data.examples import load_dataset
from squeeze.data.spec import DataSpec, check_exists, held_out_part, local_file, training_part
from squeeze.measure.evaluate import evaluate
from squeeze.model.checkpoint import (
    detect_task,
    embedder_pooling,
    load,
    read_config,
    resolve_local,
    write_checkpoint,
)
from squeeze.train.loop import TrainConfig, TrainResult, train


@dataclass
class FinetuneResult:
    """A fine-tuned checkpoint and how it got there."""

    out: Path
    task: Task
    train: TrainResult
    label_names: list[str] | None
    n_train: int
    n_validation: int
    notes: list[str] = field(default_factory=list)
    early_bird: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "early_bird": self.early_bird,
            "out": str(self.out),
            "task": self.task.value,
            "labels": self.label_names,
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "train": self.train.to_dict(),
            "notes": self.notes,
        }


def _imbalance_notes(labels: Any, id2label: dict[int, str], limit: float = 0.9) -> list[str]:
    """Warn when one label dominates: accuracy then says little and training may collapse."""
    import numpy as np

    counts = np.bincount(labels, minlength=len(id2label))
    top = int(counts.argmax())
    share = counts[top] / counts.sum()
    if share <= limit:
        return []
    return [
        f"training labels are imbalanced: {share:.0%} are '{id2label[top]}'; check --split "
        "and --max-samples, and judge the model by macro-F1"
    ]


def _embedder_target(data: DataSpec) -> tuple[Task | None, str | None]:
    """What an embedder given no task becomes: an embedder when the data holds pairs without
    labels (contrastive tuning), else a classifier on its encoder (the task it has labels for),
    with a note saying how to keep it an embedder."""
    dataset = load_dataset(data, need_labels=False)
    if dataset.text_pair_column is not None and dataset.label_column is None:
        return Task.EMBEDDING, None
    return None, (
        "the model is a sentence embedder: this trains a classifier on its encoder; to tune "
        "it as an embedder give pairs (--text-pair-column, a text and its positive, no labels)"
    )


def _check_pairs(dataset: Any, batch_size: int) -> None:
    """An embedder tunes on pairs of a text and its positive, nothing else, in batches whose
    other pairs are each text's negatives (checked before the model loads).

    Raises:
        DataError: single texts, or pairs with scores or labels.
        ConfigError: batches of one pair (no negatives).
    """
    if batch_size < 2:
        raise ConfigError(
            Problem("{batch_size} must be at least 2: a text's negatives are the batch's others")
        )
    if dataset.text_pair_column is None:
        raise DataError(
            Problem(
                f"{literal(dataset.name)} holds single texts; an embedder fine-tunes on pairs of "
                "a text and its positive: name the second column with {text_pair_column} (for a "
                "classifier on labelled texts leave out {task})"
            )
        )
    if dataset.label_column is not None:
        raise DataError(
            Problem(
                f"{literal(dataset.name)} pairs carry labels or scores (column "
                f"{literal(repr(dataset.label_column))}); an embedder fine-tunes on pairs of a "
                "text and its positive without them (scored pairs evaluate it: squeeze eval)"
            )
        )


def finetune(
    source: str,
    data: DataSpec,
    out: str | Path,
    *,
    eval_data: DataSpec | None = None,
    task: Task | None = None,
    config: TrainConfig | None = None,
    max_length: int | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
    early_bird: Any = None,
) -> FinetuneResult:
    """Fine-tune a checkpoint on a dataset and save the best validated weights as an HF folder.

    A base or masked-LM encoder gets a fresh classification head sized by the labels in the
    training data; a sequence classifier keeps its head and labels; a causal LM is tuned on
    next-token loss when ``task`` says so. An embedder given pairs (a text and its positive, no
    labels), or any model with ``task`` embedding, is tuned contrastively with in-batch negatives
    and stays an embedder (:func:`squeeze.train.embedding.contrastive`); an embedder given
    labelled single texts becomes a classifier on its encoder, as a base encoder does. A local
    file is split by content hash: training uses ``train``, validation ``validation``, and
    ``test`` stays unseen for ``squeeze eval``.

    ``early_bird`` (an :class:`~squeeze.methods.prune.early_bird.EarlyBirdConfig`) draws a
    structured ticket early in training and fine-tunes the pruned model for the rest of the budget.
    """
    config = config or TrainConfig()
    for spec in (data, eval_data):  # before the model's config is read: a typo costs nothing
        check_exists(spec)
    inputs = [resolve_local(source), local_file(data), local_file(eval_data)]
    check_output(out, overwrite=overwrite, inputs=inputs)
    model_config = read_config(source, trust_remote_code=trust_remote_code)
    detected = detect_task(model_config)
    data = training_part(data)
    notes: list[str] = []
    if task is None:
        found, _ = embedder_pooling(source, resolve_local(source), model_config, None, {})
        if found is Task.EMBEDDING:
            task, note = _embedder_target(data)
            notes += [note] if note else []
    target = task or (
        Task.CAUSAL_LM if detected is Task.CAUSAL_LM else Task.SEQUENCE_CLASSIFICATION
    )
    if target not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.EMBEDDING):
        raise UnsupportedError(
            f"finetune trains sequence classifiers, causal LMs and embedders, not {target.value}"
        )
    classify = target is Task.SEQUENCE_CLASSIFICATION
    embedder = target is Task.EMBEDDING

    train_ds = load_dataset(data, need_labels=classify)
    if embedder:
        _check_pairs(train_ds, config.batch_size)
    notes += train_ds.notes
    val_spec = eval_data or held_out_part(data, "validation")
    try:
        val_ds = load_dataset(val_spec, need_labels=classify)
    except DataError as e:
        if eval_data is not None:
            raise
        val_ds = None
        notes.append(f"no validation split ({e}); kept the last step instead of the best")

    label_names = None
    if classify:
        # Also for a classifier that has labels already: training on one label would "succeed"
        # and teach it to answer that label always.
        found = train_ds.labels()
        if len(found) < 2:
            shown = ", ".join(f"'{label}'" for label in found) or "none"
            raise DataError(
                Problem(
                    f"{literal(train_ds.name)} holds {len(found)} label(s) ({literal(shown)}); "
                    "a classifier needs at least 2: check {label_column}, {label_map} and {split}"
                )
            )
        if detected is not Task.SEQUENCE_CLASSIFICATION:
            label_names = found
    import torch

    # A new head is initialised while loading: seed first, or runs differ (a fresh clone's demo
    # once scored 0.8203 where this machine's had 0.8068).
    torch.manual_seed(config.seed)
    loaded = load(
        source,
        task=target,
        trust_remote_code=trust_remote_code,
        allow_new_weights=label_names is not None,
        label_names=label_names,
        device=device,
    )
    notes += loaded.notes
    max_length, length_note = fit_length(loaded, max_length or default_length(loaded.max_tokens))
    notes += [length_note] if length_note else []
    objective = None
    if embedder:
        from squeeze.train.embedding import contrastive, paired

        assert loaded.pooling is not None  # loaded as an embedder
        train_enc = paired(encode_sentences(train_ds, loaded, max_length=max_length))
        # Validated by retrieval of each text's pair among the split's pairs (NDCG@10).
        val_enc = encode_sentences(val_ds, loaded, max_length=max_length) if val_ds else None
        objective = contrastive(loaded.pooling)
    else:
        encode_args = {
            "input_names": loaded.input_names,
            "max_length": max_length,
            "label2id": loaded.label2id,
        }
        train_enc = encode(train_ds, loaded.tokenizer, **encode_args)
        if train_enc.labels is not None:
            notes += _imbalance_notes(train_enc.labels, loaded.config.id2label)
        val_enc = encode(val_ds, loaded.tokenizer, **encode_args) if val_ds else None

    evaluate_fn = (lambda: evaluate(loaded, val_enc, device=device)) if val_enc else None
    ticket = None
    with atomic_output(out, overwrite=overwrite, inputs=inputs) as tmp:
        if early_bird is not None:
            from squeeze.methods.prune.early_bird import train_early_bird

            result, ticket, ticket_notes = train_early_bird(
                loaded, train_enc, config, early_bird, evaluate_fn=evaluate_fn,
                objective=objective, progress=progress, device=device,
            )  # fmt: skip
            notes += ticket_notes
        else:
            result = train(
                loaded.model, target, train_enc, config, evaluate_fn=evaluate_fn,
                objective=objective, progress=progress, device=device,
            )  # fmt: skip
        notes += result.notes
        write_checkpoint(loaded, tmp)
        summary = FinetuneResult(
            out=Path(out),
            task=target,
            train=result,
            label_names=[loaded.config.id2label[i] for i in range(loaded.config.num_labels)]
            if classify
            else None,
            n_train=len(train_enc),
            n_validation=len(val_enc) if val_enc else 0,
            notes=notes,
            early_bird=ticket.to_dict() if ticket is not None else None,
        )
        (tmp / "finetune.json").write_text(
            json.dumps(
                {**summary.to_dict(), "config": asdict(config), "data": train_ds.name}, indent=2
            )
        )
    return summary
