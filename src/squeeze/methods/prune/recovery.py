"""What the pruning steps share: recovery fine-tuning (its parameters and the run), and how
they register (the summary they write, the zipped size they report).

Declared once so that magnitude and structured pruning (and their CLI options and recipe keys)
cannot disagree on a default such as the warm-up, and distillation knows a pruned student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.core.config import StepConfig, at_least, param, range_problem
from squeeze.core.errors import Problem
from squeeze.engine.registry import register

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

PRUNE_SUMMARY = "prune.json"


def pruner(config: type, **declared: Any) -> Callable[[Any], Any]:
    """Register a pruning step's handler: it writes ``prune.json`` (how distillation knows a
    pruned student) and reports the zipped size (what unstructured zeros buy)."""
    return register(config, summary=PRUNE_SUMMARY, zipped_size=True, **declared)


@dataclass(frozen=True, kw_only=True)
class RecoveryConfig(StepConfig):
    """Fine-tuning on the training part of the data after pruning (0 steps = none)."""

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


def recover(
    loaded: LoadedModel, config: RecoveryConfig, ctx: StepContext, on_step: Any = None
) -> list[str]:
    """Run the recovery steps (if any) in place; return the note that says what ran."""
    if not config.finetune_steps:
        return []
    from squeeze.train.loop import train

    train_config = train_config_of(config, config.finetune_steps)
    result = train(
        loaded.model, loaded.task, ctx.data.training(loaded), train_config, on_step=on_step,
        progress=ctx.progress, device=ctx.device,
    )  # fmt: skip
    return [f"recovery fine-tuning: {result.steps} steps, final loss {result.final_loss:.4f}"]
