"""``distill``: teach a student from the teacher (the step's input); config and handler.

Training is ``squeeze.train.loop.train`` with the distillation terms as its ``extra_loss``; the best
student on the validation part is kept. The runner scores teacher (before) and student (after)
on the test part, which neither was tuned on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squeeze.core.config import at_least, param
from squeeze.core.errors import ConfigError, Problem
from squeeze.core.types import StepResult, Task
from squeeze.engine.registry import register
from squeeze.methods.prune.recovery import PRUNE_SUMMARY
from squeeze.train.config import EmbeddingLossConfig, TrainConfig

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

PROJECTIONS = ("none", "learned", "fixed")


@dataclass(frozen=True, kw_only=True)
class DistillConfig(TrainConfig, EmbeddingLossConfig):
    """The student, how much each teacher signal counts, and the training run.

    ``temperature`` softens both distributions; the KL term is scaled by T^2 so its gradients keep
    the size of the task loss's (Hinton et al. 2015). ``projection`` maps student hidden states
    into the teacher's width when they differ: ``learned`` trains a linear map with the student,
    ``fixed`` uses a seeded random orthogonal one. An embedder has no logits and reads no labels:
    ``kd_weight`` weighs the distance of the student's sentence embeddings to the teacher's
    (``embedding_loss``) and ``task_weight`` is unused.
    """

    student: str | None = param(
        None, help="Student checkpoint (same tokenizer; same labels or none)."
    )
    student_layers: int | None = param(
        None, help="Student = the teacher with N of its layers, evenly spaced."
    )
    from_pruned: str | None = param(None, help="Student = a `squeeze prune` output of the teacher.")
    temperature: float = param(2.0, help="Softens both models' logits.")
    kd_weight: float = param(1.0, help="Weight of the KL term on logits.")
    task_weight: float = param(0.5, help="Weight of the task loss on labels.")
    hidden_weight: float = param(0.0, help="Weight of hidden-state matching (MSE); 0 = off.")
    attention_weight: float = param(0.0, help="Weight of attention-map matching (MSE); 0 = off.")
    projection: str = param(
        "none", help="Hidden widths differ: none (error), learned or fixed.", choices=PROJECTIONS
    )
    lr: float = param(1e-4, help="Peak learning rate (AdamW).")

    def problems(self) -> list[Problem]:
        found = []
        if len(_students(self)) > 1:
            found.append(_ONE_STUDENT)
        found += at_least("student_layers", self.student_layers, 1)
        if self.temperature <= 0:
            found.append(Problem("{temperature} must be > 0"))
        weights = (self.kd_weight, self.task_weight, self.hidden_weight, self.attention_weight)
        if min(weights) < 0:
            found.append(Problem("loss weights must be >= 0"))
        elif sum(weights) == 0:
            found.append(Problem("at least one loss weight must be > 0"))
        return found + super().problems()

    @property
    def needs_hidden(self) -> bool:
        return self.hidden_weight > 0

    @property
    def needs_attentions(self) -> bool:
        return self.attention_weight > 0


_ONE_STUDENT = Problem("name the student with one of {student}, {student_layers} or {from_pruned}")


def _students(config: DistillConfig) -> list[Any]:
    return [v for v in (config.student, config.student_layers, config.from_pruned) if v is not None]


def _complete(config: DistillConfig) -> list[Problem]:
    """A command names its student; a chain step gets it from the previous step first."""
    return [] if _students(config) else [_ONE_STUDENT]


def _data_problem(config: DistillConfig, given: Collection[str]) -> str | None:
    return None if "data" in given else "distillation needs {data} (it trains on its training part)"


def _chained(config: DistillConfig, previous: str, model: str) -> tuple[str, DistillConfig]:
    """In a chain, the recipe's model teaches and the previous artifact is the student (kept
    zeros and all when it is a prune output)."""
    if (Path(previous) / PRUNE_SUMMARY).is_file():
        return model, replace(config, from_pruned=previous, student_layers=None)
    return model, replace(config, student=previous, student_layers=None)


def _position(config: DistillConfig, index: int) -> list[Problem]:
    """First in a chain, the step names its student; later, the student is the previous step's
    output (kept zeros and all) and naming another is a mistake."""
    if index == 0 and not _students(config):
        return [
            Problem(
                "a first distill() needs {student_layers} (a shallower copy of the model) or "
                "{student}; after a prune step it trains the pruned model"
            )
        ]
    if index > 0 and _students(config):
        return [
            Problem(
                "after another step the student is that step's output: drop {student_layers}, "
                "{student} and {from_pruned}"
            )
        ]
    return []


def _distill_loss(teacher: LoadedModel, config: DistillConfig) -> Any:
    """The ``extra_loss`` for the training loop: the teacher's signals against the student's
    (None when there are none: an embedder's embeddings are its objective, not an extra)."""
    from squeeze.methods.distill.loss import attention_loss, hidden_loss, logit_kd
    from squeeze.methods.distill.student import teacher_outputs

    causal = teacher.task is Task.CAUSAL_LM
    logits = teacher.task is not Task.EMBEDDING and config.kd_weight > 0
    if not (logits or config.needs_hidden or config.needs_attentions):
        return None

    def extra(model: Any, inputs: dict[str, Any], outputs: Any) -> Any:
        target = teacher_outputs(teacher, config, inputs)
        mask = inputs["attention_mask"]
        loss = 0.0
        if logits:
            kd = logit_kd(
                outputs.logits, target.logits, config.temperature, mask if causal else None
            )
            loss = loss + config.kd_weight * kd
        if config.needs_hidden:
            loss = loss + config.hidden_weight * hidden_loss(
                outputs.hidden_states, target.hidden_states, mask
            )
        if config.needs_attentions:
            loss = loss + config.attention_weight * attention_loss(
                outputs.attentions, target.attentions, mask
            )
        return loss

    return extra


def _mask_keeper(student: LoadedModel, masks: dict[str, Any] | None) -> Any:
    """Re-zero a magnitude-pruned student's pruned weights after every optimizer step."""
    if masks is None:
        return None
    from squeeze.methods.prune.magnitude import apply_masks

    params = dict(student.model.named_parameters())
    return lambda _: apply_masks(params, masks)


def _accepts(config: DistillConfig, model_config: Any) -> None:
    if config.student_layers is not None:
        from squeeze.methods.distill.student import layer_copy_spec

        layer_copy_spec(model_config)


@register(
    DistillConfig,
    name="distill",
    accepts=_accepts,
    help="train a student (student_layers=N copy, or the previous step's output) from the model",
    summary="distill.json",
    tasks=("sequence-classification", "causal-lm", "embedding"),
    data_problem=_data_problem,
    inputs=lambda config: tuple(p for p in (config.student, config.from_pruned) if p is not None),
    chained=_chained,
    position=_position,
    complete=_complete,
    resumable=True,
)
def distill(teacher: LoadedModel, config: DistillConfig, ctx: StepContext) -> StepResult:
    """Build the student, train it against the frozen teacher, return the best student."""
    from squeeze.measure.evaluate import evaluate
    from squeeze.methods.distill.student import build_student, describe_student, distill_module
    from squeeze.methods.prune.recovery import validator
    from squeeze.train.loop import train

    embedder = teacher.task is Task.EMBEDDING
    if embedder and not (config.kd_weight or config.needs_hidden or config.needs_attentions):
        raise ConfigError(
            Problem(
                "an embedder learns from the teacher's embeddings ({kd_weight}) or states "
                "({hidden_weight}, {attention_weight}); its {task_weight} has no labels to use"
            )
        )
    teacher.model.requires_grad_(False)
    student, masks, notes = build_student(
        config, teacher, trust_remote_code=ctx.trust_remote_code, device=ctx.device
    )
    module = distill_module(student, teacher, config, config.seed)
    objective, task_weight = None, config.task_weight
    if embedder:
        from squeeze.train.embedding import distillation, with_targets

        # The teacher's embeddings of the training texts, once; no label is read.
        train_enc = with_targets(
            ctx.data.training(teacher, labels=False), teacher.model, teacher.pooling,
            device=ctx.device, progress=ctx.progress,
        )  # fmt: skip
        objective = distillation(student.pooling, config.embedding_loss)
        task_weight = config.kd_weight
    else:
        train_enc = ctx.data.training(teacher)
    initial = None
    if ctx.measure:  # an embedder's student: its fidelity to the teacher too
        held_out = ctx.data.held_out(student)
        initial = evaluate(student, held_out, device=ctx.device, progress=ctx.progress,
                           reference=ctx.metric_before)  # fmt: skip
    result = train(
        module, teacher.task, train_enc, config.train_config(),
        evaluate_fn=validator(student, teacher, ctx), extra_loss=_distill_loss(teacher, config),
        task_weight=task_weight, objective=objective, on_step=_mask_keeper(student, masks),
        checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume, progress=ctx.progress,
        device=ctx.device,
    )  # fmt: skip
    if ctx.resume:
        notes.append(f"resumed from the checkpoint at step {result.resumed_from}")
    notes += result.notes
    details = {
        "student": describe_student(config),
        "student_initial": initial.to_dict() if initial is not None else None,
        "train": result.to_dict(),
    }
    return StepResult(model=student, details=details, notes=notes)
