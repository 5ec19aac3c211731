"""The ``structured`` step: its config and registered handler.

It ranks heads, FFN neurons and layers (``importance``), finds the amount a latency target needs
(``target``), cuts the least important (``slicing``), then recovers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from squeeze.core.config import at_least, param, range_problem
from squeeze.core.errors import Problem
from squeeze.core.types import StepResult
from squeeze.methods.prune.recovery import (
    RecoveryConfig,
    pruner,
    recover,
    recovery_data_problem,
    train_config_of,
    training_of,
)
from squeeze.methods.prune.slicing import prune_structured
from squeeze.methods.prune.target import find_amount
from squeeze.model.arch import spec_for

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

IMPORTANCE_METHODS = ("magnitude", "taylor", "slimming")
ALLOCATIONS = ("uniform", "global")


@dataclass(frozen=True, kw_only=True)
class StructuredPruneConfig(RecoveryConfig):
    """How much structure to remove, and how to rank it.

    ``importance`` None means taylor when there is data and magnitude otherwise: data-driven
    scores are better (Michel et al. 2019), weights alone need nothing. An embedder's taylor
    scores differentiate a random projection of its sentence embeddings (how far they move),
    and its slimming and recovery distil toward the unpruned embeddings (no labels needed).
    """

    heads: float = param(0.0, help="Fraction of attention heads to remove.")
    ffn: float = param(0.0, help="Fraction of FFN neurons to remove.")
    layers: int = param(0, help="Whole layers to drop.")
    importance: str | None = param(
        None,
        help="magnitude, taylor (data-driven; the default with data) or slimming (learned unit "
        "scales under an L1 penalty, trained --slimming-steps on the data).",
        choices=IMPORTANCE_METHODS,
    )
    importance_batches: int = param(16, help="Batches of training data for taylor importance.")
    slimming_steps: int = param(
        100, help="slimming: training steps (weights and unit scales) before ranking."
    )
    slimming_penalty: float = param(1e-4, help="slimming: L1 weight on the unit scales.")
    target_speedup: float | None = param(
        None,
        help="Remove as much of heads and FFN (alike) as makes the model this much faster on "
        "this machine (PyTorch, batch 1, --max-length tokens; measured).",
    )
    target_latency_ms: float | None = param(
        None, help="As --target-speedup, for a latency in ms instead."
    )
    allocation: str = param(
        "uniform",
        help="uniform (every layer loses the same share) or global (rank heads and neurons "
        "across all layers: layers keep different widths).",
        choices=ALLOCATIONS,
    )

    def problems(self) -> list[Problem]:
        found = range_problem("heads", self.heads, 0, 1, closed="low")
        found += range_problem("ffn", self.ffn, 0, 1, closed="low")
        found += at_least("layers", self.layers, 0)
        found += at_least("importance_batches", self.importance_batches, 1)
        found += at_least("slimming_steps", self.slimming_steps, 1)
        if self.slimming_penalty < 0:
            found.append(Problem("{slimming_penalty} must be >= 0"))
        if not (self.heads or self.ffn or self.layers or self.targeted):
            found.append(
                Problem(
                    "structured pruning needs {heads}, {ffn}, {layers}, {target_speedup} or "
                    "{target_latency_ms}"
                )
            )
        if self.target_speedup is not None and self.target_latency_ms is not None:
            found.append(Problem("give {target_speedup} or {target_latency_ms}, not both"))
        if self.targeted and (self.heads or self.ffn):
            found.append(
                Problem("a target chooses {heads} and {ffn} itself; leave them out or drop it")
            )
        if self.target_speedup is not None and self.target_speedup <= 1:
            found.append(Problem(f"{{target_speedup}} must be > 1, not {self.target_speedup:g}"))
        if self.target_latency_ms is not None and self.target_latency_ms <= 0:
            found.append(Problem("{target_latency_ms} must be > 0"))
        return found + super().problems()

    @property
    def targeted(self) -> bool:
        return self.target_speedup is not None or self.target_latency_ms is not None


def _data_problem(config: StructuredPruneConfig, given: Any) -> str | None:
    if config.importance == "taylor" and "data" not in given:
        return "{importance} taylor needs {data} (it scores units by gradients on it)"
    if config.importance == "slimming" and "data" not in given:
        return "{importance} slimming needs {data} (it trains unit scales on it)"
    return recovery_data_problem(config, given)


@pruner(
    StructuredPruneConfig,
    name="structured",
    accepts=lambda config, model_config: spec_for(model_config, "structured pruning"),
    help="remove heads, FFN neurons and layers (fewer parameters, faster)",
    data_problem=_data_problem,
)
def structured(loaded: LoadedModel, config: StructuredPruneConfig, ctx: StepContext) -> StepResult:
    """Rank units, slice the least important away, then recover."""
    from squeeze.methods.prune.importance import magnitude_importance, taylor_importance

    spec = spec_for(loaded.config, "structured pruning")
    method = config.importance or ("taylor" if ctx.data.given else "magnitude")
    notes: list[str] = []
    # Taken before anything changes the model: an embedder's targets are its own embeddings.
    learn = bool(config.finetune_steps) or method == "slimming"
    needed = learn or method == "taylor"
    training = training_of(loaded, config, ctx, learn=learn) if needed else None
    if method == "taylor":
        assert training is not None
        importance = taylor_importance(
            loaded.model, spec, loaded.config, loaded.task, training.data,
            max_batches=config.importance_batches, objective=training.ranking, device=ctx.device,
        )  # fmt: skip
    elif method == "slimming":
        from squeeze.methods.prune.slimming import slimming_importance

        assert training is not None
        # Trained with the recovery's learning rate, batch and seed.
        importance, result = slimming_importance(
            loaded.model, spec, loaded.config, loaded.task, training.data,
            train_config_of(config, config.slimming_steps), penalty=config.slimming_penalty,
            objective=training.objective, progress=ctx.progress, device=ctx.device,
        )  # fmt: skip
        notes.append(
            f"slimming importance: trained {result.steps} steps (weights and unit scales, L1 "
            f"{config.slimming_penalty:g}), final loss {result.final_loss:.4f}"
        )
    else:
        importance = magnitude_importance(loaded.model, spec, loaded.config)
    details: dict[str, Any] = {"importance": method}
    if config.targeted:
        amount, notes, details["target"] = find_amount(
            loaded, spec, config, importance, seq_len=ctx.max_length, device=ctx.device
        )
        if not amount and not config.layers:  # the model already meets the target
            details["loads_with_plain_transformers"] = True
            return StepResult(model=loaded, details=details, notes=notes)
        config = replace(config, heads=amount, ffn=amount, target_speedup=None,
                         target_latency_ms=None)  # fmt: skip
    loaded.shapes, details["loads_with_plain_transformers"], cut = prune_structured(
        loaded.model, spec, config, importance
    )
    return StepResult(
        model=loaded, details=details, notes=notes + cut + recover(loaded, config, ctx, training)
    )
