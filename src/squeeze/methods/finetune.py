"""``finetune``: a checkpoint plus a dataset in, the best validated fine-tuned checkpoint out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.config import literal
from squeeze.core.errors import DataError, Problem, UnsupportedError
from squeeze.core.output import atomic_output, check_output
from squeeze.core.types import ProgressFactory, Task, no_progress
from squeeze.data.encoding import default_length, encode, fit_length
from squeeze.data.examples import load_dataset
from squeeze.data.spec import DataSpec, held_out_part, local_file, training_part
from squeeze.measure.evaluate import evaluate
from squeeze.model.checkpoint import detect_task, load, read_config, resolve_local, write_checkpoint
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
    next-token loss when ``task`` says so. A local file is split by content hash: training uses
    ``train``, validation ``validation``, and ``test`` stays unseen for ``squeeze eval``.

    ``early_bird`` (an :class:`~squeeze.methods.prune.early_bird.EarlyBirdConfig`) draws a
    structured ticket early in training and fine-tunes the pruned model for the rest of the budget.
    """
    config = config or TrainConfig()
    inputs = [resolve_local(source), local_file(data), local_file(eval_data)]
    check_output(out, overwrite=overwrite, inputs=inputs)
    detected = detect_task(read_config(source, trust_remote_code=trust_remote_code))
    target = task or (
        Task.CAUSAL_LM if detected is Task.CAUSAL_LM else Task.SEQUENCE_CLASSIFICATION
    )
    if target not in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
        raise UnsupportedError(
            f"finetune trains sequence classifiers and causal LMs, not {target.value}"
        )
    classify = target is Task.SEQUENCE_CLASSIFICATION
    notes: list[str] = []

    data = training_part(data)
    train_ds = load_dataset(data, need_labels=classify)
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
                progress=progress, device=device,
            )  # fmt: skip
            notes += ticket_notes
        else:
            result = train(
                loaded.model, target, train_enc, config, evaluate_fn=evaluate_fn,
                progress=progress, device=device,
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
