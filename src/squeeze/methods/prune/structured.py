"""Structured pruning that physically removes heads, FFN neurons and layers: config, choice
of what to cut (by importance), and the registered handler.

The slicing itself lives in ``squeeze.model.shapes``. Sliced layers are smaller
``Linear``/``Conv1D`` modules: the model has fewer parameters and does less work in PyTorch and in
ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squeeze.core.config import at_least, param, range_problem
from squeeze.core.errors import ConfigError, Problem, UnsupportedError
from squeeze.core.types import StepResult
from squeeze.engine.registry import register
from squeeze.methods.prune.magnitude import PRUNABLE_TASKS
from squeeze.methods.prune.recovery import (
    RecoveryConfig,
    recover,
    recovery_data_problem,
    train_config_of,
)
from squeeze.model.arch import ArchSpec, ffn_width, kv_heads, layer_list, spec_for
from squeeze.model.shapes import (
    LayerShape,
    current_shapes,
    describe_config,
    keep_bias_heads,
    keep_heads,
    keep_layers,
    keep_neurons,
)

if TYPE_CHECKING:
    from squeeze.engine.step import StepContext
    from squeeze.model.loaded import LoadedModel

IMPORTANCE_METHODS = ("magnitude", "taylor", "slimming")
ALLOCATIONS = ("uniform", "global")


@dataclass(frozen=True, kw_only=True)
class StructuredPruneConfig(RecoveryConfig):
    """How much structure to remove, and how to rank it.

    ``importance`` None means taylor when there is data and magnitude otherwise: data-driven
    scores are better (Michel et al. 2019), weights alone need nothing.
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
        targeted = self.target_speedup is not None or self.target_latency_ms is not None
        if not (self.heads or self.ffn or self.layers or targeted):
            found.append(
                Problem(
                    "structured pruning needs {heads}, {ffn}, {layers}, {target_speedup} or "
                    "{target_latency_ms}"
                )
            )
        if self.target_speedup is not None and self.target_latency_ms is not None:
            found.append(Problem("give {target_speedup} or {target_latency_ms}, not both"))
        if targeted and (self.heads or self.ffn):
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

    def importance_for(self, has_data: bool) -> str:
        return self.importance or ("taylor" if has_data else "magnitude")


def kept(units: int, fraction: float) -> int:
    """How many of ``units`` a ``fraction`` prune keeps: one at least, so no block is cut."""
    return units - min(round(fraction * units), units - 1)


def top_units(scores: Any, keep: int) -> list[int]:
    """Indices of the ``keep`` highest scores, in their original order."""
    import torch

    return sorted(torch.topk(torch.as_tensor(scores).float(), keep).indices.tolist())


def max_amount(model_config: Any, spec: ArchSpec) -> float:
    """The largest fraction of heads and FFN neurons that can go (one of each stays)."""
    groups, width = kv_heads(model_config), ffn_width(model_config, spec)
    return min((groups - 1) / groups, (width - 1) / width)


def _allocate(
    scores: list[Any], layers: list[int], keep: int, allocation: str
) -> dict[int, list[int]]:
    """Which units each of ``layers`` keeps: ``keep`` per layer (uniform), or ``keep`` times the
    layer count in all, the most important across layers (global), each layer keeping one at
    least so that no block is cut in two.

    Global ranking compares each layer's scores divided by their L2 norm: raw magnitudes and
    gradients differ in scale from layer to layer (Michel et al. 2019 normalise head importance
    per layer the same way before comparing across layers).
    """
    import torch

    if allocation == "uniform":
        return {i: top_units(scores[i], keep) for i in layers}
    normalised = {i: torch.as_tensor(scores[i]).float() for i in layers}
    normalised = {i: t / t.norm().clamp_min(1e-12) for i, t in normalised.items()}
    chosen = {i: [int(torch.argmax(t))] for i, t in normalised.items()}
    rest = sorted(
        (
            (value, i, unit)
            for i, t in normalised.items()
            for unit, value in enumerate(t.tolist())
            if unit != chosen[i][0]
        ),
        reverse=True,
    )
    for _, i, unit in rest[: keep * len(layers) - len(layers)]:
        chosen[i].append(unit)
    return {i: sorted(units) for i, units in chosen.items()}


def _spread(allocation: str, units: dict[int, list[int]], per_unit: int) -> str:
    """' on average (layers keep 2-10)' for a global allocation; '' for a uniform one."""
    if allocation == "uniform":
        return ""
    counts = [len(u) * per_unit for u in units.values()]
    return f" on average (layers keep {min(counts)}-{max(counts)})"


def prune_structured(
    model: Any, spec: ArchSpec, config: StructuredPruneConfig, importance: Any
) -> tuple[list[LayerShape], bool, list[str]]:
    """Remove the least important layers, head groups and neurons from ``model`` in place.

    With ``allocation`` uniform, every kept layer loses the same number of heads and neurons, so
    the model stays balanced and FFN widths stay expressible in a stock config. With global, the
    same totals are removed where they matter least across layers (the same parameter count),
    so layers keep different widths, recorded in ``squeeze.json``.

    Returns:
        The new per-layer shapes, whether the stock config now describes them, and notes.
    """
    model_config = model.config
    blocks = list(layer_list(model, spec))
    n_layers = len(blocks)
    if spec.shared_layers and config.layers:
        raise UnsupportedError(
            [
                Problem(
                    f"{spec.family} reuses one block's weights for all "
                    f"{model_config.num_hidden_layers} layers, so there is no layer to drop; "
                    "prune {heads} or {ffn} (that prunes the shared block in every pass)"
                )
            ]
        )
    if config.layers >= n_layers:
        raise ConfigError(
            [Problem(f"{{layers}} {config.layers} would remove all {n_layers} layers")]
        )
    notes = []
    if importance.layers is None:
        # Without data, drop the top layers: Sajjad et al. (2020) found that costs least.
        keep = list(range(n_layers - config.layers))
    else:
        keep = top_units(importance.layers, n_layers - config.layers)
    if config.layers:
        dropped = sorted(set(range(n_layers)) - set(keep))
        notes.append(f"dropped layers {dropped} of {n_layers} ({importance.method} importance)")

    groups = kv_heads(model_config)
    width = ffn_width(model_config, spec)
    drop_groups = groups - kept(groups, config.heads)
    drop_neurons = width - kept(width, config.ffn)
    n_rep = model_config.num_attention_heads // groups
    allocation = config.allocation
    if allocation == "global" and drop_groups and spec.shared_head_bias:
        allocation = "uniform"
        notes.append(
            "heads allocated uniformly: every layer must keep the same heads (they share one "
            "position bias); FFN neurons allocated globally"
        )
    head_units = _allocate(importance.heads, keep, groups - drop_groups, allocation)
    neuron_units = _allocate(importance.ffn, keep, width - drop_neurons, config.allocation)
    if drop_groups and spec.shared_head_bias:
        # One bias table serves every layer's heads, so every layer keeps the same heads: the
        # ones most important summed over the kept layers.
        shared = top_units(sum(importance.heads[i] / importance.heads[i].sum() for i in keep),
                      groups - drop_groups)  # fmt: skip
        head_units = dict.fromkeys(keep, shared)
        keep_bias_heads(model, spec, [u * n_rep + r for u in shared for r in range(n_rep)])
        notes.append(f"kept the same heads {shared} in every layer (they share one position bias)")
    for index in keep:
        if drop_groups:
            keep_heads(blocks[index], spec, model_config, head_units[index])
        if drop_neurons:
            keep_neurons(blocks[index], spec, neuron_units[index], width)
    if config.heads:
        notes.append(
            f"removed {drop_groups * n_rep} of {model_config.num_attention_heads} heads per layer"
            f"{_spread(allocation, head_units, n_rep)} ({drop_groups / groups:.0%}; asked "
            f"{config.heads:.0%})"
        )
    if config.ffn:
        notes.append(
            f"removed {drop_neurons} of {width} FFN neurons per layer"
            f"{_spread(config.allocation, neuron_units, 1)} ({drop_neurons / width:.0%})"
        )
    keep_layers(model, spec, keep)
    shapes = current_shapes(model, spec, model_config)
    expressible = describe_config(model_config, spec, shapes)
    return shapes, expressible, notes


def _slimming(
    loaded: LoadedModel, spec: ArchSpec, config: StructuredPruneConfig, ctx: StepContext
) -> tuple[Any, str]:
    """Slimming importance, trained with the recovery's learning rate, batch and seed."""
    from squeeze.methods.prune.slimming import slimming_importance

    train_config = train_config_of(config, config.slimming_steps)
    importance, result = slimming_importance(
        loaded.model, spec, loaded.config, loaded.task, ctx.data.training(loaded), train_config,
        penalty=config.slimming_penalty, progress=ctx.progress, device=ctx.device,
    )  # fmt: skip
    note = (
        f"slimming importance: trained {result.steps} steps (weights and unit scales, L1 "
        f"{config.slimming_penalty:g}), final loss {result.final_loss:.4f}"
    )
    return importance, note


def _data_problem(config: StructuredPruneConfig, given: Any) -> str | None:
    if config.importance == "taylor" and "data" not in given:
        return "{importance} taylor needs {data} (it scores units by gradients on it)"
    if config.importance == "slimming" and "data" not in given:
        return "{importance} slimming needs {data} (it trains unit scales on it)"
    return recovery_data_problem(config, given)


def _accepts(config: StructuredPruneConfig, model_config: Any) -> None:
    spec_for(model_config, "structured pruning")


@register(
    StructuredPruneConfig,
    name="structured",
    accepts=_accepts,
    help="remove heads, FFN neurons and layers (fewer parameters, faster)",
    summary="prune.json",
    tasks=PRUNABLE_TASKS,
    data_problem=_data_problem,
    zipped_size=True,
)
def structured(loaded: LoadedModel, config: StructuredPruneConfig, ctx: StepContext) -> StepResult:
    """Rank units, slice the least important away, then recover."""
    from squeeze.methods.prune.importance import magnitude_importance, taylor_importance

    spec = spec_for(loaded.config, "structured pruning")
    method = config.importance_for(ctx.data.given)
    if method == "taylor":
        importance = taylor_importance(
            loaded.model, spec, loaded.config, loaded.task, ctx.data.training(loaded),
            max_batches=config.importance_batches, device=ctx.device,
        )  # fmt: skip
    elif method == "slimming":
        importance, slim_note = _slimming(loaded, spec, config, ctx)
    else:
        importance = magnitude_importance(loaded.model, spec, loaded.config)
    details: dict[str, Any] = {"importance": method}
    target_notes: list[str] = [slim_note] if method == "slimming" else []
    if config.targeted:
        from dataclasses import replace

        from squeeze.methods.prune.target import find_amount

        amount, target_notes, details["target"] = find_amount(
            loaded, spec, config, importance, seq_len=ctx.max_length, device=ctx.device
        )
        if not amount and not config.layers:  # the model already meets the target
            details["loads_with_plain_transformers"] = True
            return StepResult(model=loaded, details=details, notes=target_notes)
        config = replace(config, heads=amount, ffn=amount, target_speedup=None,
                         target_latency_ms=None)  # fmt: skip
    shapes, plain, notes = prune_structured(loaded.model, spec, config, importance)
    loaded.shapes = shapes
    notes = target_notes + notes + [n for n in (recover(loaded, config, ctx),) if n]
    details["loads_with_plain_transformers"] = plain
    return StepResult(model=loaded, details=details, notes=notes)
