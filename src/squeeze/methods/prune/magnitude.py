"""Unstructured magnitude pruning: zero the smallest weights of the transformer blocks.

Zeros do not make dense matrix multiplies faster; they make the weights compress well (see
``bytes_compressed`` in the summary) and are the starting point for sparse kernels.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from squeeze.core.config import param, range_problem
from squeeze.core.errors import ConfigError, Problem
from squeeze.core.types import StepResult
from squeeze.methods.prune.recovery import (
    RecoveryConfig,
    pruner,
    recover,
    recovery_data_problem,
    training_of,
)

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

SCOPES = ("global", "layer")
SCHEDULES = ("oneshot", "cubic")


@dataclass(frozen=True, kw_only=True)
class MagnitudePruneConfig(RecoveryConfig):
    """Which weights to zero, how many, and when.

    ``scope="global"`` ranks all selected weights together (one threshold); ``layer`` prunes
    each weight matrix to the same fraction. ``schedule="cubic"`` grows sparsity over the
    recovery steps (Zhu & Gupta 2017) instead of pruning at once.
    """

    positional: ClassVar[tuple[str, ...]] = ("sparsity",)

    sparsity: float = param(help="Fraction of block weights to zero.")
    scope: str = param(
        "global", help="global (one threshold) or layer (per matrix).", choices=SCOPES
    )
    include: tuple[str, ...] = param((), help="Also prune params matching (fnmatch).")
    exclude: tuple[str, ...] = param((), help="Never prune params matching (fnmatch).")
    schedule: str = param(
        "oneshot",
        help="oneshot, or cubic over the recovery steps (Zhu & Gupta).",
        choices=SCHEDULES,
    )

    def problems(self) -> list[Problem]:
        found = range_problem("sparsity", self.sparsity, 0, 1, closed="neither")
        if self.schedule == "cubic" and not self.finetune_steps:
            found.append(Problem("{schedule} cubic needs {finetune_steps} > 0"))
        return found + super().problems()


def prunable_weights(
    loaded: LoadedModel, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """The 2-D weights of the transformer blocks' projections, plus ``include``, minus ``exclude``.

    Embeddings, LayerNorms, biases and the task head sit outside the blocks or are 1-D, so they
    are left alone by default: pruning them costs much accuracy for little size. The blocks are
    found through the family's spec, or for any other family by walking the modules.
    """
    from squeeze.model.discover import block_list_path, module_prefix

    model = loaded.model
    path = loaded.spec.layers if loaded.spec is not None else block_list_path(model.base_model)
    prefix = module_prefix(model, path) if path is not None else None
    chosen = {}
    for name, weight in model.named_parameters():
        in_blocks = (
            prefix is not None
            and name.startswith(prefix)
            and name.endswith(".weight")
            and weight.ndim == 2
        )
        if (in_blocks or any(fnmatch.fnmatch(name, p) for p in include)) and not any(
            fnmatch.fnmatch(name, p) for p in exclude
        ):
            chosen[name] = weight
    if not chosen:
        raise ConfigError(
            Problem("no weights left to prune; check the {include}/{exclude} patterns")
        )
    return chosen


def magnitude_masks(weights: dict[str, Any], sparsity: float, scope: str) -> dict[str, Any]:
    """Boolean keep-masks zeroing the ``sparsity`` fraction of smallest-magnitude weights."""
    import torch

    def above(values: Any, pool: Any) -> Any:
        """Where ``values`` exceed the ``sparsity`` quantile of ``pool`` (all where none go)."""
        k = int(sparsity * pool.numel())
        if k == 0:
            return torch.ones_like(values, dtype=torch.bool)
        return values > torch.kthvalue(pool.flatten().float(), k).values

    magnitudes = {name: weight.detach().abs() for name, weight in weights.items()}
    if scope == "global":
        pool = torch.cat([m.flatten() for m in magnitudes.values()])
        return {name: above(m, pool) for name, m in magnitudes.items()}
    return {name: above(m, m) for name, m in magnitudes.items()}


def apply_masks(weights: dict[str, Any], masks: dict[str, Any]) -> None:
    """Zero each masked weight where its mask is False; the mask follows the weight's device
    (training may have placed a model elsewhere than its masks were made)."""
    import torch

    with torch.no_grad():
        for name, mask in masks.items():
            weights[name].mul_(mask.to(weights[name].device))


def sparsity_of(weights: dict[str, Any]) -> float:
    """Measured fraction of zeros among ``weights``."""
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / total


def _masking_hook(loaded: LoadedModel, config: MagnitudePruneConfig) -> tuple[Any, Any]:
    """Masks applied now (one-shot) or grown during recovery (cubic), the step callback that
    keeps pruned weights at zero after every optimizer step, and the final masking."""
    from squeeze.methods.prune.schedule import cubic_sparsity

    weights = prunable_weights(loaded, config.include, config.exclude)
    state: dict[str, Any] = {}
    # The cubic schedule reaches the target at 2/3 of the steps; the rest tunes a fixed mask.
    ramp = max(1, (2 * config.finetune_steps) // 3)
    every = max(1, ramp // 10)
    cubic = config.schedule == "cubic"

    def update(sparsity: float) -> None:
        state["masks"] = magnitude_masks(weights, sparsity, config.scope)
        apply_masks(weights, state["masks"])

    def on_step(step: Any) -> None:
        if cubic and step.step <= ramp and step.step % every == 0:
            update(cubic_sparsity(step.step, ramp, config.sparsity))
        elif "masks" in state:
            apply_masks(weights, state["masks"])

    def finish() -> None:
        """Final masks: the target for cubic; for one-shot, the masks fixed at the start."""
        if cubic:
            update(config.sparsity)
        else:
            apply_masks(weights, state["masks"])

    if not cubic:
        update(config.sparsity)
    return on_step, finish


@pruner(
    MagnitudePruneConfig,
    name="magnitude",
    help="zero the smallest block weights (smaller zipped, not faster)",
    data_problem=recovery_data_problem,
)
def magnitude(loaded: LoadedModel, config: MagnitudePruneConfig, ctx: StepContext) -> StepResult:
    """Zero weights (now, or along the cubic schedule while recovering), keep them zero."""
    training = training_of(loaded, config, ctx) if config.finetune_steps else None
    on_step, finish = _masking_hook(loaded, config)
    notes = recover(loaded, config, ctx, training, on_step)
    finish()
    weights = prunable_weights(loaded, config.include, config.exclude)
    notes.append(
        "unstructured zeros shrink the compressed size, not the dense file or dense latency"
    )
    return StepResult(
        model=loaded,
        details={"sparsity": sparsity_of(weights), "loads_with_plain_transformers": True},
        notes=notes,
    )
