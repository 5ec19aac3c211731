"""Early-bird tickets (EarlyBERT, Chen et al. 2021): find the structure early, train only it.

Fine-tuning starts with slimming's unit scales and their L1 penalty. Every ``every`` steps the
pruning mask the scales imply is drawn (the ``heads`` and ``ffn`` fractions with the lowest
scales removed, the same share in every layer) and compared with the previous one by normalised
Hamming distance (the share of units whose kept/removed verdict changed). Once that distance
falls below ``threshold`` the structure has settled: the ticket is drawn, the scales are folded
into the weights, the model is pruned physically, and the smaller model fine-tunes for the rest
of the step budget. That saves the time the full model would have spent on those steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from squeeze.core.config import StepConfig, at_least, param, range_problem
from squeeze.core.errors import Problem
from squeeze.core.types import StepResult
from squeeze.methods.prune.recovery import (
    RecoveryConfig,
    pruner,
    train_config_of,
    training_of,
    validator,
)
from squeeze.methods.prune.slicing import kept, prune_structured, top_units
from squeeze.methods.prune.structured import StructuredPruneConfig
from squeeze.model.arch import spec_for


@dataclass(frozen=True, kw_only=True)
class EarlyBirdConfig(StepConfig):
    """What ticket to draw and when (``--early-bird heads=0.5,ffn=0.5[,threshold=0.1,...]``)."""

    positional: ClassVar[tuple[str, ...]] = ()

    heads: float = param(0.0, help="Fraction of attention heads the ticket removes.")
    ffn: float = param(0.0, help="Fraction of FFN neurons the ticket removes.")
    threshold: float = param(
        0.1, help="Draw the ticket once consecutive masks differ by less than this."
    )
    every: int = param(0, help="Steps between mask checks (0: a twentieth of the budget).")
    penalty: float = param(1e-4, help="L1 weight on the unit scales while searching.")
    max_search: float = param(
        0.5, help="Draw the ticket by this fraction of the budget even if masks still move."
    )

    def problems(self) -> list[Problem]:
        found = range_problem("heads", self.heads, 0, 1, closed="low")
        found += range_problem("ffn", self.ffn, 0, 1, closed="low")
        found += range_problem("threshold", self.threshold, 0, 1, closed="high")
        found += range_problem("max_search", self.max_search, 0, 1, closed="high")
        found += at_least("every", self.every, 0)
        if self.penalty < 0:
            found.append(Problem("{penalty} must be >= 0"))
        if not (self.heads or self.ffn):
            found.append(Problem("an early-bird ticket needs {heads} or {ffn} to remove"))
        return found


def parse_early_bird(text: str) -> EarlyBirdConfig:
    """``heads=0.5,ffn=0.4,threshold=0.1`` into a config (every problem named at once).

    Raises:
        ConfigError: an entry that is not key=value, an unknown key, or a bad value.
    """
    import re

    from squeeze.core.config import build, literal
    from squeeze.core.errors import ConfigError

    values: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(
                f"--early-bird takes key=value pairs like heads=0.5,ffn=0.4, not '{part}'"
            )
        values[key.strip()] = value.strip()
    try:
        return build(EarlyBirdConfig, values, from_text=True)
    except ConfigError as e:
        # Its keys are not flags of the command: name them as written inside --early-bird.
        texts = [re.sub(r"\{(\w+)\}", r"\1", p.text) for p in e.problems]
        raise ConfigError([Problem(literal(f"--early-bird: {t}")) for t in texts]) from None


@dataclass
class Ticket:
    """How the ticket was found: the distances at each check, where it was drawn, the time of
    each phase."""

    drawn_at: int = 0
    settled: bool = False
    checks: list[dict[str, float]] = field(default_factory=list)
    search_s: float = 0.0
    ticket_s: float = 0.0
    total_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "drawn_at_step": self.drawn_at,
            "settled": self.settled,
            "total_steps": self.total_steps,
            "search_s": self.search_s,
            "ticket_train_s": self.ticket_s,
            "checks": self.checks,
        }


def _mask(scores: list[Any], fraction: float) -> list[set[int]]:
    """Per layer, the units a uniform ``fraction`` prune keeps, as ``prune_structured`` picks
    them (the highest scores)."""
    return [set(top_units(layer, kept(len(layer), fraction))) for layer in scores]


def _distance(a: list[set[int]], b: list[set[int]], scores: list[Any]) -> float:
    """Normalised Hamming distance: units kept by one mask and removed by the other, over all
    the units that ``scores`` (per layer) rank."""
    return sum(len(x ^ y) for x, y in zip(a, b, strict=True)) / max(sum(map(len, scores)), 1)


def train_early_bird(
    loaded: Any,
    data: Any,
    train_config: Any,
    config: EarlyBirdConfig,
    *,
    evaluate_fn: Any = None,
    objective: Any = None,
    progress: Any = None,
    device: str = "cpu",
) -> tuple[Any, Ticket, list[str]]:
    """Search for the ticket, prune ``loaded`` to it (in place, shapes set), and train it for
    the rest of the budget. Returns the second phase's training result, the ticket, notes.
    ``objective`` replaces the task's loss in both phases (an embedder's, which has none)."""
    from squeeze.core.types import no_progress
    from squeeze.methods.prune.slimming import slimming_importance
    from squeeze.train.loop import planned_steps, train

    progress = progress or no_progress
    spec = spec_for(loaded.config, "early-bird tickets")
    _, total = planned_steps(len(data), train_config)
    every = config.every or max(1, total // 20)
    limit = max(every, round(config.max_search * total))
    ticket = Ticket(total_steps=total)
    previous: tuple[list[set[int]], list[set[int]]] | None = None

    def check(state: Any, slots: list[Any]) -> bool:
        nonlocal previous
        if state.step % every and state.step < limit:
            return False
        scales = ([s.heads.detach() for s in slots], [s.ffn.detach() for s in slots])
        masks = (_mask(scales[0], config.heads), _mask(scales[1], config.ffn))
        if previous is not None:
            d_heads = _distance(previous[0], masks[0], scales[0]) if config.heads else 0.0
            d_ffn = _distance(previous[1], masks[1], scales[1]) if config.ffn else 0.0
            ticket.checks.append({"step": state.step, "heads": d_heads, "ffn": d_ffn})
            if max(d_heads, d_ffn) < config.threshold:
                ticket.drawn_at, ticket.settled = state.step, True
                return True
        previous = masks
        if state.step >= limit:
            ticket.drawn_at = state.step
            return True
        return False

    start = time.perf_counter()
    importance, _ = slimming_importance(
        loaded.model, spec, loaded.config, loaded.task, data,
        replace(train_config, max_steps=total), penalty=config.penalty, objective=objective,
        on_step=check, progress=progress, device=device,
    )  # fmt: skip
    ticket.search_s = time.perf_counter() - start
    prune = StructuredPruneConfig(heads=config.heads, ffn=config.ffn)
    loaded.shapes, _, notes = prune_structured(loaded.model, spec, prune, importance)
    rest = max(1, total - ticket.drawn_at)
    start = time.perf_counter()
    result = train(
        loaded.model, loaded.task, data, replace(train_config, max_steps=rest),
        evaluate_fn=evaluate_fn, objective=objective, progress=progress, device=device,
    )  # fmt: skip
    ticket.ticket_s = time.perf_counter() - start
    last = ticket.checks[-1] if ticket.checks else None
    how = (
        f"masks settled (distance {max(last['heads'], last['ffn']):.3f} < {config.threshold:g})"
        if ticket.settled and last
        else f"the search limit ({config.max_search:.0%} of the budget) was reached"
    )
    notes.insert(
        0,
        f"early-bird ticket drawn at step {ticket.drawn_at} of {total}: {how}; the pruned model "
        f"trained {result.steps} more steps ({ticket.search_s:.1f} s searching, "
        f"{ticket.ticket_s:.1f} s on the ticket)",
    )
    return result, ticket, notes


@dataclass(frozen=True, kw_only=True)
class EarlyBirdStepConfig(EarlyBirdConfig, RecoveryConfig):
    """The recipe step ``early_bird(heads=0.5, ffn=0.5, finetune_steps=200)``: fine-tune the
    recipe's model on its data with an early-bird ticket (``finetune_steps`` is the whole
    budget, search included). The command is ``squeeze finetune --early-bird``. An embedder
    trains toward its own embeddings from before (``embedding_loss``), as recovery does."""

    def problems(self) -> list[Problem]:
        found = EarlyBirdConfig.problems(self) + RecoveryConfig.problems(self)
        if not self.finetune_steps:
            found.append(Problem("early_bird() needs {finetune_steps}: its training budget"))
        return found


@pruner(
    EarlyBirdStepConfig,
    name="early_bird",
    accepts=lambda config, model_config: spec_for(model_config, "early-bird tickets"),
    help="fine-tune with an early-bird ticket: find the structure early, train only it",
    tasks=("sequence-classification", "causal-lm", "embedding"),
    data_problem=lambda config, given: None if "data" in given else "early_bird() trains on {data}",
)
def early_bird_step(loaded: Any, config: EarlyBirdStepConfig, ctx: Any) -> StepResult:
    """Search, prune to the ticket and train it, keeping the best validated step."""
    training = training_of(loaded, config, ctx)
    result, ticket, notes = train_early_bird(
        loaded, training.data, train_config_of(config, config.finetune_steps), config,
        evaluate_fn=validator(loaded, loaded, ctx), objective=training.objective,
        progress=ctx.progress, device=ctx.device,
    )  # fmt: skip
    return StepResult(
        model=loaded,
        details={"early_bird": ticket.to_dict(), "train": result.to_dict()},
        notes=notes + result.notes,
    )
