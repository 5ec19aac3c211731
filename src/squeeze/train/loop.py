"""The one training loop: fine-tuning, recovery after pruning and distillation all run through it.

Later steps hook in rather than copy it: ``extra_loss`` adds a term (distillation's KL to a
teacher), ``on_step`` runs after every optimizer step (pruning re-applies its masks there).
Hugging Face Accelerate drives it, so ``accelerate launch`` spreads it over several GPUs (each
process takes every N-th batch) while a direct run uses one device; with a checkpoint folder it
saves its whole state periodically and resumes from it exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.errors import ConfigError, DataError, Problem, UnsupportedError
from squeeze.core.faults import stop_if_interrupted
from squeeze.core.types import Evaluation, ProgressFactory, Task, no_progress, points_dropped
from squeeze.data.encoding import Batch, Encoded, batches
from squeeze.train import resume as checkpoints
from squeeze.train.accel import make_accelerator
from squeeze.train.config import TrainConfig


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
    resumed_from: int | None = None
    processes: int = 1

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
            "resumed_from": self.resumed_from,
            "processes": self.processes,
            "history": self.history,
            "notes": self.notes,
        }


ExtraLoss = Callable[[Any, dict[str, Any], Any], Any]
# ``(model, inputs, labels) -> (loss, outputs)``: what a batch costs. Classifiers and causal LMs
# have their task's loss (task_loss); embedders one of squeeze.train.embedding's.
Objective = Callable[[Any, dict[str, Any], Any], tuple[Any, Any]]
# Returns True to end training after this step (an early-bird ticket was drawn).
StepCallback = Callable[[StepState], bool | None]


def _micro_batches(
    data: Encoded, batch_size: int, seed: int, *, skip: int = 0, rank: int = 0, world: int = 1
) -> Iterator[Batch]:
    """Endless shuffled, length-grouped batches, reshuffled (seeded) every epoch.

    Batches are numbered across epochs; process ``rank`` of ``world`` takes every ``world``-th,
    and a resumed run starts after the ``skip`` that all processes together have used, so the
    sequence is the same as if the run had never stopped.
    """
    per_epoch = math.ceil(len(data) / batch_size)
    epoch, position = divmod(skip, per_epoch)
    while True:
        first = position + (rank - epoch * per_epoch - position) % world
        yield from batches(
            data, batch_size, shuffle=True, seed=seed + epoch, start=first, step=world,
            by_length=True,
        )  # fmt: skip
        epoch, position = epoch + 1, 0


def task_loss(model: Any, task: Task, inputs: dict[str, Any], labels: Any) -> tuple[Any, Any]:
    if task is Task.SEQUENCE_CLASSIFICATION:
        outputs = model(**inputs, labels=labels)
    elif task is Task.CAUSAL_LM:
        lm_labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
        outputs = model(**inputs, labels=lm_labels)
    else:
        raise UnsupportedError(
            f"training is supported for sequence classifiers, causal LMs and embedders, not "
            f"{task.value}"
        )
    return outputs.loss, outputs


def planned_steps(examples: int, config: TrainConfig, world: int = 1) -> tuple[int, int]:
    """Optimizer steps per epoch and in all (``max_steps``, or ``epochs`` worth) for
    ``examples`` training examples spread over ``world`` processes."""
    per_epoch = math.ceil(examples / config.batch_size)
    steps_per_epoch = math.ceil(per_epoch / (config.grad_accum * world))
    return steps_per_epoch, config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))


def _optimizer(model: Any, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW without decay on biases and norms (1-D tensors), with warm-up + linear decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    trained = [p for p in model.parameters() if p.requires_grad]
    # Parameters with a ``squeeze_lr`` of their own (slimming's unit scales) get it, undecayed.
    own = [p for p in trained if getattr(p, "squeeze_lr", None) is not None]
    rest = [p for p in trained if getattr(p, "squeeze_lr", None) is None]
    groups = [
        {"params": [p for p in rest if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0},
    ]
    for lr in sorted({p.squeeze_lr for p in own}):
        groups.append(
            {"params": [p for p in own if p.squeeze_lr == lr], "weight_decay": 0.0, "lr": lr}
        )
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    warmup = round(config.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def _is_better(new: Evaluation, old: Evaluation | None) -> bool:
    """Whether ``new`` beats ``old``: a negative drop (higher accuracy, lower perplexity)."""
    return old is None or points_dropped(new.primary.name, old.primary.value, new.primary.value) < 0


def _fingerprint(config: TrainConfig, data: Encoded, world: int, task_weight: float) -> dict:
    """What must match for a checkpoint to continue this run rather than another one."""
    settings = {**asdict(config), "examples": len(data), "processes": world}
    return json.loads(json.dumps({**settings, "task_weight": task_weight}))


def train(
    model: Any,
    task: Task,
    data: Encoded,
    config: TrainConfig,
    *,
    evaluate_fn: Callable[[], Evaluation] | None = None,
    extra_loss: ExtraLoss | None = None,
    task_weight: float = 1.0,
    objective: Objective | None = None,
    on_step: StepCallback | None = None,
    checkpoint_dir: Path | None = None,
    save_every: int | None = None,
    resume: bool = False,
    progress: ProgressFactory = no_progress,
    device: str = "cpu",
) -> TrainResult:
    """Train ``model`` in place with AdamW and warm-up + linear decay.

    With ``evaluate_fn``, the model is evaluated every ``eval_every`` steps and at the end, and the
    best-scoring weights are restored before returning (kept in CPU memory, and in the checkpoint).
    Under ``accelerate launch`` every process runs this with the same arguments: the batch size is
    per process, each process evaluates on the full held-out data (so all agree on the best step),
    and only the main one writes checkpoints.

    Args:
        model: A transformers module whose forward returns ``loss`` given ``labels``.
        task: Decides the loss (cross-entropy on labels, or next-token for causal LMs).
        data: Encoded training examples (with labels for classification).
        config: Hyper-parameters.
        evaluate_fn: Scores the model on held-out data; called in eval mode.
        extra_loss: ``(model, inputs, outputs) -> tensor`` added to the task loss.
        task_weight: Multiplies the task loss (distillation balances it against its own term).
        objective: What a batch costs, in place of the task's own loss: an embedder's
            distillation or contrastive loss (:mod:`squeeze.train.embedding`).
        on_step: Called after each optimizer step (and its scheduler step); returning True
            ends training there.
        checkpoint_dir: Where to save the run's state every ``save_every`` steps (default: at
            every evaluation, or every 100 steps without one); none when None.
        resume: Continue from the checkpoint in ``checkpoint_dir``, which must exist and come
            from a run with the same settings and data.
        progress: Progress-bar factory; shows loss and samples/s.
        device: Where the model and batches live.
    """
    import torch

    if len(data) == 0:
        raise DataError("no training examples left after filtering")
    if task is Task.SEQUENCE_CLASSIFICATION and data.labels is None:
        raise DataError(Problem("training a classifier needs labelled data ({label_column})"))
    if save_every is not None and save_every < 1:
        raise ConfigError(Problem("{save_every} must be >= 1"))
    torch.manual_seed(config.seed)
    model.to(device)
    accelerator = make_accelerator(device, config.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if not accelerator.is_main_process:
        progress = no_progress

    steps_per_epoch, total_steps = planned_steps(len(data), config, world)
    eval_every = config.eval_every or steps_per_epoch
    save_every = save_every or (eval_every if evaluate_fn is not None else 100)
    optimizer, scheduler = _optimizer(model, config, total_steps)
    wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    fingerprint = _fingerprint(config, data, world, task_weight)
    state = checkpoints.LoopState(history=[])
    if resume and checkpoint_dir is not None:
        state = checkpoints.load(accelerator, checkpoint_dir, fingerprint)
    result = TrainResult(
        steps=state.step,
        epochs=0.0,
        samples_seen=state.samples_seen,
        elapsed_s=0.0,
        final_loss=math.nan,
        eval_s=state.eval_s,
        best_eval=state.best_eval,
        best_step=state.best_step,
        history=state.history or [],
        resumed_from=state.step if resume else None,
        processes=world,
    )
    if world > 1:
        result.notes.append(
            f"trained on {world} processes: {config.batch_size} examples per process per batch, "
            f"{config.batch_size * world * config.grad_accum} per optimizer step"
        )
    best_state = state.best_state
    recent: list[float] = []
    stream = _micro_batches(
        data, config.batch_size, config.seed,
        skip=state.step * config.grad_accum * world, rank=rank, world=world,
    )  # fmt: skip
    start = time.perf_counter() - state.elapsed_s
    model.train()
    try:
        with progress("Training", total_steps) as bar:
            bar.advance(state.step)
            for step in range(state.step + 1, total_steps + 1):
                stop_if_interrupted()
                step_loss = 0.0
                for micro in range(config.grad_accum):
                    batch = next(stream)
                    inputs = {k: torch.from_numpy(v).to(device) for k, v in batch.inputs.items()}
                    labels = (
                        torch.from_numpy(batch.labels).to(device)
                        if batch.labels is not None
                        else None
                    )
                    # Gradients are averaged across processes once per step, not per micro-batch.
                    last = micro == config.grad_accum - 1
                    with contextlib.nullcontext() if last else accelerator.no_sync(wrapped):
                        with accelerator.autocast():
                            if objective is None:
                                loss, outputs = task_loss(wrapped, task, inputs, labels)
                            else:
                                loss, outputs = objective(wrapped, inputs, labels)
                            if task_weight != 1.0:
                                loss = task_weight * loss
                            if extra_loss is not None:
                                loss = loss + extra_loss(model, inputs, outputs)
                        accelerator.backward(loss / config.grad_accum)
                    step_loss += float(loss.detach()) / config.grad_accum
                    result.samples_seen += batch.size * world
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                result.steps = step
                result.final_loss = step_loss
                recent = [*recent[-19:], step_loss]
                lr = scheduler.get_last_lr()[0]
                after = StepState(step, total_steps, step / steps_per_epoch, step_loss, lr)
                stop = on_step is not None and bool(on_step(after))
                rate = result.samples_seen / max(1e-9, time.perf_counter() - start - result.eval_s)
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
                            k: v.detach().to("cpu", copy=True)
                            for k, v in model.state_dict().items()
                        }
                if checkpoint_dir is not None and step % save_every == 0 and step < total_steps:
                    loop_state = checkpoints.LoopState(
                        step=step,
                        samples_seen=result.samples_seen,
                        elapsed_s=time.perf_counter() - start,
                        eval_s=result.eval_s,
                        history=result.history,
                        best_step=result.best_step,
                        best_eval=result.best_eval,
                        best_state=best_state,
                    )
                    checkpoints.save(accelerator, checkpoint_dir, loop_state, fingerprint)
                if stop:
                    break
    finally:
        # Undo what prepare() did to the module (mixed-precision forward wrappers, DDP).
        accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
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
