"""The one training loop: fine-tuning, recovery after pruning and distillation all run through it.

Later steps hook in rather than copy it: ``extra_loss`` adds a term (distillation's KL to a
teacher), ``on_step`` runs after every optimizer step (pruning re-applies its masks there).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.checkpoint import (
    atomic_output,
    check_output,
    detect_task,
    load,
    read_config,
    resolve_local,
    write_checkpoint,
)
from squeeze.data import (
    Batch,
    DataSpec,
    Encoded,
    batches,
    encode,
    held_out_part,
    load_dataset,
    training_part,
)
from squeeze.errors import ConfigError, DataError, UnsupportedError
from squeeze.evaluate import LOWER_IS_BETTER, evaluate
from squeeze.types import Evaluation, ProgressFactory, Task, no_progress

MIXED_PRECISION_CHOICES = ("auto", "no", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; defaults suit fine-tuning a small encoder.

    ``max_steps`` (optimizer steps) wins over ``epochs`` when both are set. ``eval_every``
    defaults to once per epoch.
    """

    epochs: float = 3.0
    max_steps: int | None = None
    lr: float = 5e-5
    batch_size: int = 32
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_every: int | None = None
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.epochs <= 0:
            problems.append("--epochs must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("--max-steps must be >= 1")
        if self.lr <= 0:
            problems.append("--lr must be > 0")
        if self.batch_size < 1 or self.grad_accum < 1:
            problems.append("--batch-size and --grad-accum must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("--warmup-ratio must be in [0, 1)")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append("--eval-every must be >= 1")
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            problems.append(
                f"--mixed-precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}"
            )
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class StepState:
    """What a step callback sees after each optimizer step."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    lr: float


@dataclass
class TrainResult:
    """What happened during training; ``best_eval`` is the model's state when it returns.

    ``elapsed_s`` is the whole run; ``eval_s`` the part spent validating, which
    ``samples_per_s`` leaves out so that it measures training speed alone.
    """

    steps: int
    epochs: float
    samples_seen: int
    elapsed_s: float
    final_loss: float
    eval_s: float = 0.0
    best_eval: Evaluation | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        train_s = self.elapsed_s - self.eval_s
        return self.samples_seen / train_s if train_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "epochs": self.epochs,
            "samples_seen": self.samples_seen,
            "elapsed_s": self.elapsed_s,
            "eval_s": self.eval_s,
            "samples_per_s": self.samples_per_s,
            "final_loss": self.final_loss,
            "best_step": self.best_step,
            "best_eval": self.best_eval.to_dict() if self.best_eval else None,
            "history": self.history,
            "notes": self.notes,
        }


ExtraLoss = Callable[[Any, dict[str, Any], Any], Any]
StepCallback = Callable[[StepState], None]


def _autocast_dtype(setting: str, device: str) -> Any:
    """The autocast dtype, or None for full precision. Half precision only pays off on GPUs."""
    import torch

    if setting == "no" or (setting == "auto" and not device.startswith("cuda")):
        return None
    if setting in ("fp16", "bf16") and not device.startswith("cuda"):
        raise UnsupportedError(f"--mixed-precision {setting} needs a CUDA device; use 'no' on CPU")
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if setting == "fp16" else torch.bfloat16


def _micro_batches(data: Encoded, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless shuffled batches, reshuffled (seeded) every epoch."""
    for epoch in itertools.count():
        yield from batches(data, batch_size, shuffle=True, seed=seed + epoch)


def task_loss(model: Any, task: Task, inputs: dict[str, Any], labels: Any) -> tuple[Any, Any]:
    if task is Task.SEQUENCE_CLASSIFICATION:
        outputs = model(**inputs, labels=labels)
    elif task is Task.CAUSAL_LM:
        lm_labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        outputs = model(**inputs, labels=lm_labels)
    else:
        raise UnsupportedError(
            f"training is supported for sequence classifiers and causal LMs, not {task.value}"
        )
    return outputs.loss, outputs


def _optimizer(model: Any, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW without decay on biases and norms (1-D tensors), with warm-up + linear decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    warmup = round(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def _is_better(new: Evaluation, old: Evaluation | None) -> bool:
    if old is None:
        return True
    if new.primary.name in LOWER_IS_BETTER:
        return new.primary.value < old.primary.value
    return new.primary.value > old.primary.value


def train(
    model: Any,
    task: Task,
    data: Encoded,
    config: TrainConfig,
    *,
    evaluate_fn: Callable[[], Evaluation] | None = None,
    extra_loss: ExtraLoss | None = None,
    on_step: StepCallback | None = None,
    progress: ProgressFactory = no_progress,
    device: str = "cpu",
) -> TrainResult:
    """Train ``model`` in place with AdamW and warm-up + linear decay.

    With ``evaluate_fn``, the model is evaluated every ``eval_every`` steps and at the end, and the
    best-scoring weights are restored before returning (kept in CPU memory, not on disk).

    Args:
        model: A transformers module whose forward returns ``loss`` given ``labels``.
        task: Decides the loss (cross-entropy on labels, or next-token for causal LMs).
        data: Encoded training examples (with labels for classification).
        config: Hyper-parameters.
        evaluate_fn: Scores the model on held-out data; called in eval mode.
        extra_loss: ``(model, inputs, outputs) -> tensor`` added to the task loss.
        on_step: Called after each optimizer step (and its scheduler step).
        progress: Progress-bar factory; shows loss and samples/s.
        device: Where the model and batches live.
    """
    import torch

    if len(data) == 0:
        raise DataError("no training examples left after filtering")
    if task is Task.SEQUENCE_CLASSIFICATION and data.labels is None:
        raise DataError("training a classifier needs labelled data (--label-column)")
    torch.manual_seed(config.seed)
    model.to(device)
    autocast_dtype = _autocast_dtype(config.mixed_precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype is torch.float16)

    steps_per_epoch = math.ceil(math.ceil(len(data) / config.batch_size) / config.grad_accum)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    eval_every = config.eval_every or steps_per_epoch
    optimizer, scheduler = _optimizer(model, config, total_steps)

    result = TrainResult(steps=0, epochs=0.0, samples_seen=0, elapsed_s=0.0, final_loss=math.nan)
    best_state: dict[str, Any] | None = None
    recent: list[float] = []
    stream = _micro_batches(data, config.batch_size, config.seed)
    start = time.perf_counter()
    model.train()
    with progress("Training", total_steps) as bar:
        for step in range(1, total_steps + 1):
            step_loss = 0.0
            for _ in range(config.grad_accum):
                batch = next(stream)
                inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.inputs.items()}
                labels = (
                    torch.from_numpy(batch.labels).to(device) if batch.labels is not None else None
                )
                with torch.autocast(
                    device_type=device.split(":")[0],
                    dtype=autocast_dtype,
                    enabled=autocast_dtype is not None,
                ):
                    loss, outputs = task_loss(model, task, inputs, labels)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model, inputs, outputs)
                scaler.scale(loss / config.grad_accum).backward()
                step_loss += float(loss.detach()) / config.grad_accum
                result.samples_seen += batch.size
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            result.steps = step
            result.final_loss = step_loss
            recent = [*recent[-19:], step_loss]
            if on_step is not None:
                on_step(
                    StepState(
                        step,
                        total_steps,
                        step / steps_per_epoch,
                        step_loss,
                        scheduler.get_last_lr()[0],
                    )
                )
            rate = result.samples_seen / (time.perf_counter() - start - result.eval_s)
            bar.advance(1, info=f"loss {sum(recent) / len(recent):.4f} · {rate:.0f} samples/s")

            if evaluate_fn is not None and (step % eval_every == 0 or step == total_steps):
                model.eval()
                eval_start = time.perf_counter()
                evaluation = evaluate_fn()
                result.eval_s += time.perf_counter() - eval_start
                model.train()
                result.history.append(
                    {"step": step, "loss": step_loss, **evaluation.to_dict()["metrics"]}
                )
                if _is_better(evaluation, result.best_eval):
                    result.best_eval, result.best_step = evaluation, step
                    best_state = {
                        k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                    }
    model.eval()
    result.elapsed_s = time.perf_counter() - start
    result.epochs = round(result.steps / steps_per_epoch, 3)
    if best_state is not None and result.best_step != result.steps:
        model.load_state_dict(best_state)
        result.notes.append(
            f"kept the best checkpoint, from step {result.best_step} "
            f"({result.best_eval.primary.name} {result.best_eval.primary.value:.4f})"
        )
    return result


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

    def to_dict(self) -> dict[str, Any]:
        return {
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
    config: TrainConfig = TrainConfig(),
    max_length: int = 128,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
) -> FinetuneResult:
    """Fine-tune a checkpoint on a dataset and save the best validated weights as an HF folder.

    A base or masked-LM encoder gets a fresh classification head sized by the labels in the
    training data; a sequence classifier keeps its head and labels; a causal LM is tuned on
    next-token loss when ``task`` says so. A local file is split by content hash: training uses
    ``train``, validation ``validation``, and ``test`` stays unseen for ``squeeze eval``.
    """
    local_model = resolve_local(source)
    check_output(out, overwrite=overwrite, inputs=[local_model])
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
    if classify and detected is not Task.SEQUENCE_CLASSIFICATION:
        label_names = train_ds.labels()
        if len(label_names) < 2:
            raise DataError(
                f"{train_ds.name} has {len(label_names)} label(s); a classifier needs at least 2"
            )
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
    encode_args = {
        "input_names": loaded.input_names,
        "max_length": max_length,
        "label2id": loaded.label2id,
    }
    train_enc = encode(train_ds, loaded.tokenizer, **encode_args)
    if train_enc.labels is not None:
        notes += _imbalance_notes(train_enc.labels, loaded.config.id2label)
    val_enc = encode(val_ds, loaded.tokenizer, **encode_args) if val_ds else None

    with atomic_output(out, overwrite=overwrite, inputs=[local_model]) as tmp:
        result = train(
            loaded.model,
            target,
            train_enc,
            config,
            evaluate_fn=(lambda: evaluate(loaded, val_enc, device=device)) if val_enc else None,
            progress=progress,
            device=device,
        )
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
        )
        (tmp / "finetune.json").write_text(
            json.dumps(
                {**summary.to_dict(), "config": asdict(config), "data": train_ds.name}, indent=2
            )
        )
    return summary
