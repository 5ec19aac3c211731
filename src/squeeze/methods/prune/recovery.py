"""What the pruning steps share: recovery fine-tuning (its parameters and the run), and how
they register (the summary they write, the zipped size they report).

Declared once so that magnitude and structured pruning (and their CLI options and recipe keys)
cannot disagree on a default such as the warm-up, and distillation knows a pruned student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.core.config import at_least, param, range_problem
from squeeze.core.errors import Problem
from squeeze.core.types import Task
from squeeze.engine.registry import register
from squeeze.train.config import EmbeddingLossConfig

if TYPE_CHECKING:
    from squeeze.core.types import Evaluation
    from squeeze.data.encoding import Encoded
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel
    from squeeze.train.loop import Objective

PRUNE_SUMMARY = "prune.json"


def pruner(config: type, **declared: Any) -> Callable[[Any], Any]:
    """Register a pruning step's handler: it writes ``prune.json`` (how distillation knows a
    pruned student) and reports the zipped size (what unstructured zeros buy)."""
    return register(config, summary=PRUNE_SUMMARY, zipped_size=True, **declared)


@dataclass(frozen=True, kw_only=True)
class RecoveryConfig(EmbeddingLossConfig):
    """Fine-tuning on the training part of the data after pruning (0 steps = none); an embedder
    distils from its unpruned self instead (``embedding_loss``)."""

    finetune_steps: int = param(0, help="Recovery fine-tuning steps on the training data.")
    lr: float = param(5e-5, help="Recovery learning rate.")
    batch_size: int = param(32, help="Recovery examples per batch.")
    warmup_ratio: float = param(0.1, help="Fraction of recovery steps spent warming up.")
    seed: int = param(0, help="Seed for recovery shuffling.")

    def problems(self) -> list[Problem]:
        found = at_least("finetune_steps", self.finetune_steps, 0)
        if self.lr <= 0:
            found.append(Problem("{lr} must be > 0"))
        found += at_least("batch_size", self.batch_size, 1)
        found += range_problem("warmup_ratio", self.warmup_ratio, 0, 1, closed="low")
        return found


def train_config_of(config: RecoveryConfig, steps: int) -> Any:
    """A TrainConfig of ``steps`` with the step's learning rate, batch, warm-up and seed: the
    one translation for recovery, slimming and early-bird training."""
    from squeeze.train.loop import TrainConfig

    return TrainConfig(
        max_steps=steps, lr=config.lr, batch_size=config.batch_size,
        warmup_ratio=config.warmup_ratio, seed=config.seed,
    )  # fmt: skip


def recovery_data_problem(config: RecoveryConfig, given: Any) -> str | None:
    if config.finetune_steps and "data" not in given:
        return "{finetune_steps} needs {data} (recovery trains on its training part)"
    return None


@dataclass
class Training:
    """What a pruning step trains and ranks on, fixed before the model changes.

    Attributes:
        data: The training part: labelled examples, or an embedder's texts with its own
            embeddings of them (before pruning) as targets.
        objective: What a training batch costs: None for the task's own loss (classifiers,
            causal LMs), an embedder's distillation toward those targets.
        ranking: What taylor importance differentiates: None for the task's loss, an
            embedder's :func:`~squeeze.train.embedding.sensitivity`.
    """

    data: Encoded
    objective: Objective | None = None
    ranking: Objective | None = None


def training_of(
    loaded: LoadedModel, config: RecoveryConfig, ctx: StepContext, *, learn: bool = True
) -> Training:
    """The training part and its objectives. An embedder has no labels to recover on: it
    learns to embed the training texts as it did before pruning, so their embeddings are
    computed here, before any change (its labels, if the data has any, are never read); with
    ``learn`` False (taylor ranking alone) it needs its texts only."""
    if loaded.task is not Task.EMBEDDING:
        return Training(ctx.data.training(loaded))
    from squeeze.train.embedding import distillation, sensitivity, with_targets

    assert loaded.pooling is not None  # every embedder has one
    data = ctx.data.training(loaded, labels=False)
    if learn:
        data = with_targets(
            data, loaded.model, loaded.pooling, device=ctx.device, progress=ctx.progress
        )
    return Training(
        data,
        distillation(loaded.pooling, config.embedding_loss),
        sensitivity(loaded.pooling, config.seed),
    )


def validator(
    model: LoadedModel, original: LoadedModel, ctx: StepContext
) -> Callable[[], Evaluation] | None:
    """How training scores ``model`` on the validation split to keep its best step, or None
    without one: the task's metric, or an embedder's fidelity to ``original``'s embeddings of
    the split, taken now (the unpruned model, or the teacher), since its labels are never read."""
    from squeeze.measure.evaluate import evaluate

    embedder = original.task is Task.EMBEDDING
    validation = ctx.data.validation(model, labels=not embedder)
    if validation is None:
        return None
    reference = evaluate(original, validation, device=ctx.device) if embedder else None
    return lambda: evaluate(model, validation, device=ctx.device, reference=reference)


def recover(
    loaded: LoadedModel,
    config: RecoveryConfig,
    ctx: StepContext,
    training: Training | None,
    on_step: Any = None,
) -> list[str]:
    """Run the recovery steps (if any) in place on ``training`` (:func:`training_of`, taken
    before pruning); return the note that says what ran."""
    if not config.finetune_steps:
        return []
    from squeeze.train.loop import train

    assert training is not None  # taken whenever there are recovery steps
    train_config = train_config_of(config, config.finetune_steps)
    result = train(
        loaded.model, loaded.task, training.data, train_config, objective=training.objective,
        on_step=on_step, progress=ctx.progress, device=ctx.device,
    )  # fmt: skip
    how = (
        f"recovery by distillation from the unpruned embeddings ({config.embedding_loss})"
        if loaded.task is Task.EMBEDDING
        else "recovery fine-tuning"
    )
    return [f"{how}: {result.steps} steps, final loss {result.final_loss:.4f}"]
