"""What ``squeeze tune`` searches and for how long: the one definition of its parameters.

Like a method's config, its fields give the CLI options (``squeeze tune --amounts ...``) and the
keys of a recipe's ``tune:`` section, with the same validation. Light: no torch, no numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from squeeze.core.config import StepConfig, at_least, literal, param
from squeeze.core.errors import Problem, did_you_mean
from squeeze.methods.prune.structured import ALLOCATIONS, IMPORTANCE_METHODS

# Quantization modes the search may try, as the step each one is: dynamic is the int8 default
# (measured on this machine, unless $SQUEEZE_BACKEND pins a backend); the static and per-tensor
# modes are ONNX Runtime's (the measured default tries static int8 itself, and refuses being
# told to).
QUANTIZE_STEPS = {
    "dynamic": "quantize(int8)",
    "dynamic-per-tensor": "quantize(int8, onnxruntime, per_channel=false)",
    "static": "quantize(int8, onnxruntime, static=true)",
    "none": "export(optimize=true)",
}
# The search space when none is given, cut to what each model allows (``TuneConfig.fitted``).
DEFAULT_AMOUNTS = ("0.25", "0.375", "0.5", "0.625", "0.75")
DEFAULT_LAYERS = ("1", "2")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float | None:
    """``20m``, ``1.5h``, ``900s`` or plain seconds; None when it is not a duration."""
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def items(values: tuple[str, ...]) -> list[str]:
    """A list field's entries: repeated options or recipe lists, each maybe comma-separated
    (``--amounts 0.25,0.5``)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _numbers(name: str, values: tuple[str, ...], low: float, high: float) -> list[Problem]:
    found = []
    for value in items(values):
        try:
            number = float(value)
        except ValueError:
            found.append(Problem(f"{{{name}}} takes numbers, not {literal(repr(value))}"))
            continue
        if not low <= number < high:
            found.append(Problem(f"{{{name}}}: {number:g} is outside [{low:g}, {high:g})"))
    return found


def _choices(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> list[Problem]:
    return [
        Problem(f"{{{name}}}: " + literal(f"{v!r} is not one of {', '.join(allowed)}"
                                          f"{did_you_mean(v, allowed)}"))
        for v in items(values)
        if v not in allowed
    ]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TuneConfig(StepConfig):
    """The search space, the accuracy budget and the time budget of ``squeeze tune``.

    The search climbs ``amounts`` (heads and FFN neurons removed together) by bisection, each
    pruned candidate recovered with the first of ``recovery_steps`` and quantized with the
    fastest mode of ``quantize`` that keeps the budget; around the most aggressive amount that
    passes it tries the global allocation, more recovery (or distillation) for near misses, and
    dropping ``layers`` on top.
    """

    max_accuracy_drop: float = param(
        1.0,
        help="Largest drop allowed (points): the search returns the fastest variant within it. "
        "An embedder's is of its task metric (kNN accuracy, Spearman, NDCG@10), or on unlabelled "
        "text of fidelity to the model (1 point = 0.01 of mean cosine).",
    )
    budget: str = param(
        "30m", help="Time for the whole search, final measurement included, e.g. 20m, 1h, 900s."
    )
    # None: the default, fitted to the model (``fitted``); given values are checked against it.
    amounts: tuple[str, ...] | None = param(
        None,
        help="Fractions of heads and FFN neurons removed together: the ladder searched "
        f"[default: {','.join(DEFAULT_AMOUNTS)}, less those that leave the model the shape a "
        "smaller one does].",
    )
    layers: tuple[str, ...] | None = param(
        None,
        help="Whole layers to drop on top of the best amount, tried in order [default: "
        f"{','.join(DEFAULT_LAYERS)}, those fewer than the model's layers].",
    )
    allocations: tuple[str, ...] = param(
        ("uniform", "global"),
        help="How pruning spreads over layers: uniform first, global tried where it may pass.",
    )
    recovery_steps: tuple[str, ...] = param(
        ("100", "300"),
        help="Recovery fine-tuning steps: each pruned candidate gets the first; a near miss is "
        "retried with the next.",
    )
    distill_steps: int = param(
        0, help="Also retry near misses by distillation from MODEL for this many steps (0: no)."
    )
    near_miss: float = param(
        2.0, help="A candidate over the budget by at most this many points is retried."
    )
    quantize: tuple[str, ...] = param(
        ("dynamic", "static"),
        help="int8 modes tried (dynamic, dynamic-per-tensor, static; none: fp32 ONNX).",
    )
    importance: str | None = param(
        None, help="magnitude or taylor (the default, with data).", choices=IMPORTANCE_METHODS
    )
    lr: float = param(5e-5, help="Recovery learning rate.")
    seed: int = param(0, help="Seed for recovery shuffling.")

    def problems(self) -> list[Problem]:
        found = at_least("max_accuracy_drop", self.max_accuracy_drop, 0)
        if parse_duration(self.budget) is None:
            text = literal(repr(self.budget))
            found.append(Problem(f"{{budget}} takes a duration like 20m, 1h or 900s, not {text}"))
        if self.amounts is not None and not items(self.amounts):
            found.append(Problem("{amounts} needs at least one fraction"))
        found += _numbers("amounts", self.amounts or (), 0.0, 1.0)
        found += _numbers("layers", self.layers or (), 1, 1000)
        found += _numbers("recovery_steps", self.recovery_steps, 1, 1e9)
        found += _choices("allocations", self.allocations, ALLOCATIONS)
        if not self.quantize:
            found.append(Problem("{quantize} needs at least one mode (none: fp32 ONNX)"))
        found += _choices("quantize", self.quantize, tuple(QUANTIZE_STEPS))
        found += at_least("distill_steps", self.distill_steps, 0)
        found += at_least("near_miss", self.near_miss, 0)
        if self.lr <= 0:
            found.append(Problem("{lr} must be > 0"))
        if not self.recovery_steps:
            found.append(Problem("{recovery_steps} needs at least one step count"))
        return found

    @property
    def budget_s(self) -> float:
        seconds = parse_duration(self.budget)
        assert seconds is not None  # validated
        return seconds

    @property
    def amount_ladder(self) -> list[float]:
        amounts = DEFAULT_AMOUNTS if self.amounts is None else self.amounts
        return sorted({float(a) for a in items(amounts) if float(a) > 0})

    @property
    def layer_ladder(self) -> list[int]:
        layers = DEFAULT_LAYERS if self.layers is None else self.layers
        return sorted({int(float(n)) for n in items(layers)})

    def fitted(self, model_config: Any) -> tuple[TuneConfig, list[str]]:
        """The search space for one model, before any work, so the search never fails halfway
        on a step the model cannot take (and a recipe written for a deeper model still runs).
        A family without a spec is left to ``check_plan`` to refuse.

        Layers to drop stop short of the model's depth (none where its layers share one
        block's weights), given or default; default amounts skip any that leave the model the
        shape a smaller one does (a model with few heads or neurons rounds several to the same
        counts), given ones are searched as given. Fitting a fitted config changes nothing.

        Returns:
            The config with ``amounts`` and ``layers`` stated, and notes on what was left out.
        """
        from squeeze.methods.prune.slicing import kept
        from squeeze.model.arch import ffn_width, find_spec, kv_heads

        spec = find_spec(model_config)
        if spec is None:
            return self, []
        depth = 0 if spec.shared_layers else int(model_config.num_hidden_layers)
        notes = []
        layers = [n for n in self.layer_ladder if n < depth]
        if layers != self.layer_ladder:
            why = f"the model has {depth} layers" if depth else "its layers share one block"
            notes.append(f"layers to drop: {_listed(layers)} ({why})")
        amounts = self.amount_ladder
        if self.amounts is None:
            groups, width = kv_heads(model_config), ffn_width(model_config, spec)
            seen = {(groups, width)}
            amounts = []
            for amount in self.amount_ladder:
                shape = (kept(groups, amount), kept(width, amount))
                if shape not in seen:
                    seen.add(shape)
                    amounts.append(amount)
            if amounts != self.amount_ladder:
                notes.append(f"amounts searched: {_listed(amounts)} (with {groups} head groups "
                             f"and {width} FFN neurons, the others prune nothing or the same "
                             "as a smaller one)")  # fmt: skip
        stated = tuple(f"{a:g}" for a in amounts)
        return replace(self, amounts=stated, layers=tuple(str(n) for n in layers)), notes

    @property
    def recovery_ladder(self) -> list[int]:
        return [int(float(n)) for n in items(self.recovery_steps)]

    @property
    def quantize_modes(self) -> list[str]:
        return items(self.quantize)

    @property
    def allocation_modes(self) -> list[str]:
        return items(self.allocations)


def _listed(values: list[Any]) -> str:
    return ", ".join(f"{v:g}" for v in values) if values else "none"
