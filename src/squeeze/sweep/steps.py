"""The steps a variant chains, written ``name(arg=value, ...)`` and joined by ``->``.

Each step is declared once (its parameters, their types and defaults) and runs the same library
function as its command (``prune_checkpoint``, ``distill_checkpoint``, ``quantize_checkpoint``,
``export_onnx``): a recipe is a way to call them, not a second implementation. Parsing checks
names, types and order before anything runs, so a bad recipe fails in a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from squeeze.errors import ConfigError

Value = float | int | str | bool | None


@dataclass(frozen=True)
class Param:
    kind: type
    default: Value
    required: bool = False


@dataclass(frozen=True)
class StepKind:
    """A step's declared parameters; ``positional`` names what bare arguments fill, in order."""

    name: str
    params: dict[str, Param]
    positional: tuple[str, ...] = ()
    summary: str = ""


_TRAIN = {"lr": Param(float, None), "batch_size": Param(int, 32)}
STEPS = {
    kind.name: kind
    for kind in (
        StepKind(
            "magnitude",
            {
                "sparsity": Param(float, None, required=True),
                "scope": Param(str, "global"),
                "schedule": Param(str, "oneshot"),
                "finetune_steps": Param(int, 0),
                **_TRAIN,
            },
            ("sparsity",),
            "zero the smallest block weights (smaller zipped, not faster)",
        ),
        StepKind(
            "structured",
            {
                "heads": Param(float, 0.0),
                "ffn": Param(float, 0.0),
                "layers": Param(int, 0),
                "importance": Param(str, None),
                "finetune_steps": Param(int, 0),
                **_TRAIN,
            },
            (),
            "remove heads, FFN neurons and layers (fewer parameters, faster)",
        ),
        StepKind(
            "distill",
            {
                "layers": Param(int, None),
                "steps": Param(int, 300),
                "temperature": Param(float, 2.0),
                "kd_weight": Param(float, 1.0),
                "task_weight": Param(float, 0.5),
                "hidden_weight": Param(float, 0.0),
                "attention_weight": Param(float, 0.0),
                **_TRAIN,
            },
            (),
            "train the current model (or a layers=N copy) from the recipe's model",
        ),
        StepKind(
            "quantize",
            {
                "dtype": Param(str, "int8"),
                "backend": Param(str, None),
                "static": Param(bool, False),
                "per_channel": Param(bool, False),
                "optimize": Param(bool, True),
            },
            ("dtype", "backend"),
            "int8 for ONNX Runtime (default), fp16/bf16 checkpoints, torch/bitsandbytes int8",
        ),
        StepKind(
            "export",
            {"optimize": Param(bool, True)},
            (),
            "fp32 ONNX for ONNX Runtime (fused by default)",
        ),
    )
}


@dataclass(frozen=True)
class StepCall:
    """One parsed step with every parameter resolved (defaults filled in)."""

    kind: str
    args: tuple[tuple[str, Value], ...]

    @property
    def params(self) -> dict[str, Value]:
        return dict(self.args)

    def canonical(self) -> str:
        """The step as written for tables and cache keys: its main parameter, then what differs
        from the defaults (a backend that is the dtype's default counts as default)."""
        kind = STEPS[self.kind]
        main = kind.positional[:1]
        shown = []
        for key, value in self.args:
            default = kind.params[key].default
            if self.kind == "quantize" and key == "backend":
                from squeeze.quantize.config import DEFAULT_BACKEND

                default = DEFAULT_BACKEND[self.params["dtype"]] if value is not None else None
            if key in main or value != default:
                shown.append(f"{key}={_show(value)}")
        return f"{self.kind}({', '.join(shown)})"

    @property
    def makes_onnx(self) -> bool:
        """Whether the output is an ONNX Runtime export (nothing can follow it)."""
        if self.kind == "export":
            return True
        if self.kind != "quantize":
            return False
        return self.quantize_config().chosen_backend == "onnxruntime"

    def quantize_config(self) -> Any:
        from squeeze.quantize.config import QuantizeConfig

        p = self.params
        return QuantizeConfig(
            dtype=p["dtype"], backend=p["backend"], static=p["static"],
            per_channel=p["per_channel"], optimize=p["optimize"],
        )  # fmt: skip


def _show(value: Value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_CALL = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def _convert(raw: str, param: Param, where: str) -> Value:
    text = raw.strip().strip("'\"")
    try:
        if param.kind is bool:
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
            raise ValueError
        if param.kind is int:
            return int(text)
        if param.kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{where}: '{raw.strip()}' is not a {param.kind.__name__}") from None
    return text


def parse_step(text: str, where: str = "step") -> StepCall:
    """Parse ``name(arg=value, ...)``; bare arguments fill the step's positional parameters.

    Raises:
        ConfigError: unknown step or parameter, a value of the wrong type, a missing one.
    """
    match = _CALL.match(text)
    if not match:
        raise ConfigError(
            f"{where}: cannot read '{text.strip()}'; write it like structured(heads=0.3)"
        )
    name, inner = match.group(1).replace("-", "_"), match.group(2) or ""
    kind = STEPS.get(name)
    if kind is None:
        raise ConfigError(f"{where}: unknown step '{name}'; steps are {', '.join(STEPS)}")
    values: dict[str, Value] = {}
    parts = [p for p in (x.strip() for x in inner.split(",")) if p]
    for index, part in enumerate(parts):
        key, eq, raw = part.partition("=")
        if not eq:
            if index >= len(kind.positional):
                raise ConfigError(f"{where}: {name}() takes name=value arguments, not '{part}'")
            key, raw = kind.positional[index], part
        key = key.strip().replace("-", "_")
        if key not in kind.params:
            raise ConfigError(
                f"{where}: {name}() has no parameter '{key}'; it takes {', '.join(kind.params)}"
            )
        if key in values:
            raise ConfigError(f"{where}: {name}() got '{key}' twice")
        values[key] = _convert(raw, kind.params[key], f"{where}: {name}({key})")
    missing = [k for k, p in kind.params.items() if p.required and k not in values]
    if missing:
        raise ConfigError(f"{where}: {name}() needs {', '.join(missing)}")
    args = tuple((k, values.get(k, p.default)) for k, p in kind.params.items())
    call = StepCall(kind.name, args)
    _check_values(call, where)
    return call


def _check_values(call: StepCall, where: str) -> None:
    """Value checks the library would make later, made now: fail before hours of work."""
    p = call.params
    try:
        if call.kind == "magnitude":
            from squeeze.prune.magnitude import MagnitudePruneConfig

            MagnitudePruneConfig(sparsity=p["sparsity"], scope=p["scope"])
        elif call.kind == "structured":
            from squeeze.prune.structured import StructuredPruneConfig

            StructuredPruneConfig(
                heads=p["heads"], ffn=p["ffn"], layers=p["layers"],
                importance=p["importance"] or "magnitude",
            )  # fmt: skip
        elif call.kind == "distill":
            from squeeze.distill.loss import DistillConfig

            DistillConfig(**{k: p[k] for k in ("temperature", "kd_weight", "task_weight")})
        elif call.kind == "quantize":
            call.quantize_config()
    except ConfigError as e:
        raise ConfigError(f"{where}: {call.canonical()}: {e}") from None


def parse_chain(text: str, where: str = "variant") -> tuple[StepCall, ...]:
    """Parse ``step -> step -> ...``; an ONNX-producing step must come last.

    Raises:
        ConfigError: as for :func:`parse_step`, or steps in an impossible order.
    """
    pieces = [p for p in text.split("->")]
    if not text.strip() or any(not p.strip() for p in pieces):
        raise ConfigError(f"{where}: empty step in '{text}'; chain steps like a() -> b()")
    calls = tuple(parse_step(p, f"{where} step {i + 1}") for i, p in enumerate(pieces))
    for call in calls[:-1]:
        if call.makes_onnx:
            raise ConfigError(
                f"{where}: {call.canonical()} produces ONNX, so it must be the last step"
            )
        if call.kind == "quantize":
            raise ConfigError(f"{where}: {call.canonical()} must be the last step")
    for i, call in enumerate(calls):
        if call.kind == "distill" and i == 0 and call.params["layers"] is None:
            raise ConfigError(
                f"{where}: a first distill() needs layers=N (a shallower copy of the model); "
                "after a prune step it trains the pruned model"
            )
        if call.kind == "distill" and i > 0 and call.params["layers"] is not None:
            raise ConfigError(f"{where}: distill(layers=N) must be the first step")
    return calls


def chain_text(calls: tuple[StepCall, ...]) -> str:
    return " -> ".join(c.canonical() for c in calls)
