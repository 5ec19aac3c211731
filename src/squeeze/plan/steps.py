"""The steps a variant chains, written ``name(key=value, ...)`` and joined by ``->``.

A step is a registered method's config (``squeeze.engine.registry``): its parameters, types,
defaults and checks are the config's fields, so a recipe step takes exactly what the command takes
and runs the same handler. Parsing checks names, types, values and order before anything runs, and
reports every problem of a chain at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from squeeze.core.config import StepConfig, build, changed, literal, named_in, show_value
from squeeze.core.errors import ConfigError, Problem, SqueezeError, raise_problems
from squeeze.engine.registry import Method, method_for, method_named


@dataclass(frozen=True)
class StepCall:
    """One parsed step: a validated method config."""

    config: StepConfig

    @property
    def method(self) -> Method:
        return method_for(self.config)

    @property
    def kind(self) -> str:
        return self.method.name

    def canonical(self) -> str:
        """The step as written for tables and cache keys: its main parameter, then what differs
        from the defaults."""
        shown = changed(self.config.canonical())
        return f"{self.kind}({', '.join(f'{k}={show_value(v)}' for k, v in shown.items())})"

    @property
    def final(self) -> bool:
        """Whether nothing may follow it (an ONNX export, a quantized model)."""
        return self.method.is_final(self.config)


_CALL = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def _split_args(inner: str) -> list[str]:
    """Split on commas outside brackets and quotes (``include=[a.*, b.*]``)."""
    parts, depth, quote, current = [], 0, "", []
    for char in inner:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _prefixed(where: str, problems: Any) -> list[Problem]:
    """Problems after the step's place, each field named as the step writes it (``sparsity``,
    a setting as ``key=value``), never as a command's flag: the user wrote a step."""
    return named_in(where, {}, problems, sets="=")


def parse_step(text: str, where: str = "step") -> StepCall:
    """Parse ``name(key=value, ...)``; bare arguments fill the method's positional fields.

    Raises:
        ConfigError: unknown step or parameter, a value of the wrong type or out of range,
            a missing one: every problem of the step, each after ``where``.
    """
    match = _CALL.match(text)
    if not match:
        raise ConfigError(
            f"{where}: cannot read '{text.strip()}'; write it like structured(heads=0.3)"
        )
    name, inner = match.group(1).replace("-", "_"), match.group(2) or ""
    try:
        method = method_named(name)
    except ConfigError as e:
        raise ConfigError(_prefixed(where, e.problems)) from None
    positional = method.config.positional
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for index, part in enumerate(_split_args(inner)):
        key, eq, raw = part.partition("=")
        if not eq:
            if index >= len(positional):
                problems.append(
                    Problem(literal(f"{name}() takes key=value arguments, not '{part}'"))
                )
                continue
            key, raw = positional[index], part
        key = key.strip().replace("-", "_")
        if key in values:
            problems.append(Problem(literal(f"{name}() got '{key}' twice")))
        values[key] = raw
    try:
        config = build(method.config, values, from_text=True)
    except SqueezeError as e:
        problems += e.problems
    raise_problems(_prefixed(f"{where} {name}()", problems), ConfigError)
    return StepCall(config)


def parse_chain(text: str, where: str = "variant") -> tuple[StepCall, ...]:
    """Parse ``step -> step -> ...``: every step, then their order.

    Raises:
        ConfigError: every problem of every step and of the order, each after its place.
    """
    pieces = text.split("->")
    if not text.strip() or any(not p.strip() for p in pieces):
        raise ConfigError(f"{where}: empty step in '{text}'; chain steps like a() -> b()")
    calls: list[StepCall] = []
    problems: list[Problem] = []
    for i, piece in enumerate(pieces):
        try:
            calls.append(parse_step(piece, f"{where} step {i + 1}"))
        except SqueezeError as e:
            problems += e.problems
    raise_problems(problems, ConfigError)
    for i, call in enumerate(calls):
        place = f"{where} step {i + 1} {call.canonical()}"
        if call.final and i < len(calls) - 1:
            problems.append(
                Problem(literal(f"{place}: must be the last step (nothing can follow it)"))
            )
        problems += _prefixed(place, call.method.position(call.config, i))
    raise_problems(problems, ConfigError)
    return tuple(calls)


def chain_text(calls: tuple[StepCall, ...]) -> str:
    return " -> ".join(c.canonical() for c in calls)
