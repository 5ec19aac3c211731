"""Method configs as data: one frozen dataclass per method is the one definition of its parameters.

A config's fields carry their default, type, help text and allowed choices (``param``); its
``problems()`` states every cross-field rule. From that single definition come the CLI options
(``squeeze.cli._options.config_options``), the recipe step schema (``build`` with strings from
``name(key=value)``) and the validation both share, so a command and a recipe cannot drift.

This module stays light (no torch, no numpy): the CLI builds its options from it at start-up.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from squeeze.errors import ConfigError, Problem, SqueezeError, raise_problems

C = TypeVar("C", bound="StepConfig")


def param(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
) -> Any:
    """A config field with what every front end needs to present it.

    Args:
        default: The one default (omit for a required field).
        help: One line for ``--help`` and the recipe reference.
        choices: Allowed values of a text field; checked by :class:`StepConfig` itself.
        flag: The CLI declaration when it is not ``--field-name`` (``"--seq"``,
            ``"--dynamic-batch/--static-shapes"``).
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "flag": flag}
    if isinstance(default, list):
        default = tuple(default)  # immutable, so a plain default (no factory) is safe
    return dataclasses.field(default=default, metadata=metadata)


def is_required(f: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    """A field without a default (``param`` never uses default factories)."""
    return f.default is dataclasses.MISSING


class StepConfig:
    """Base of every method config: validation that collects every problem before raising.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)`` and override :meth:`problems`;
    ``positional`` names the fields a recipe's bare arguments fill (``quantize(int8)``).
    """

    positional: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        raise_problems([*_choice_problems(self), *self.problems()], ConfigError)

    def problems(self) -> list[Problem]:
        """Cross-field rules, each a :class:`Problem` naming its fields as ``{field}``."""
        return []

    def canonical(self) -> StepConfig:
        """The same request with equivalent spellings made one (for names and cache keys)."""
        return self


def _choice_problems(config: Any) -> list[Problem]:
    found = []
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value is not None and value not in choices:
            found.append(
                Problem(
                    f"{{{f.name}}} must be one of {', '.join(choices)}, not {literal(repr(value))}"
                )
            )
    return found


def range_problem(
    name: str, value: float | None, low: float, high: float, *, closed: str
) -> list[Problem]:
    """``{name} must be in [low, high)`` style checks; ``closed`` says which ends are included
    ("both", "low", "high", "neither")."""
    if value is None:
        return []
    ok_low = value >= low if closed in ("both", "low") else value > low
    ok_high = value <= high if closed in ("both", "high") else value < high
    if ok_low and ok_high:
        return []
    left = "[" if closed in ("both", "low") else "("
    right = "]" if closed in ("both", "high") else ")"
    return [Problem(f"{{{name}}} must be in {left}{low:g}, {high:g}{right}, not {value:g}")]


def at_least(name: str, value: float | None, low: float) -> list[Problem]:
    if value is None or value >= low:
        return []
    return [Problem(f"{{{name}}} must be >= {low:g}, not {value:g}")]


def fields_of(cls: type) -> tuple[dataclasses.Field, ...]:  # type: ignore[type-arg]
    """A config's fields, its own before those it inherits (``sparsity`` before the shared
    recovery options), for help, listings and step names."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    order: list[str] = []
    for klass in cls.__mro__:
        order += [
            n for n in vars(klass).get("__annotations__", {}) if n in by_name and n not in order
        ]
    return tuple(by_name[n] for n in order)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved field annotations (configs use postponed annotations)."""
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``tuple[str, ...]`` -> (tuple, False)."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], type(None) in args
    return typing.get_origin(annotation) or annotation, False


def _coerce(value: Any, annotation: Any, from_text: bool) -> Any:
    """A value of the field's type, or ValueError; ``from_text`` parses chain-step strings."""
    kind, optional = base_type(annotation)
    if value is None or (from_text and str(value).strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ValueError
    if from_text and isinstance(value, str):
        value = value.strip().strip("'\"")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(value).lower() in ("true", "yes", "1")
        raise ValueError
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError
        if from_text and isinstance(value, str):
            return kind(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) or (kind is float and isinstance(value, float)):
            return kind(value)
        raise ValueError
    if kind is tuple:
        if isinstance(value, str):
            inner = value.strip()
            if inner.startswith("[") and inner.endswith("]"):
                inner = inner[1:-1]
            value = [v.strip().strip("'\"") for v in inner.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError
        return tuple(str(v) for v in value)
    if isinstance(value, bool | dict | list):
        raise ValueError
    return str(value)


def type_name(annotation: Any) -> str:
    kind, optional = base_type(annotation)
    name = "list of text" if kind is tuple else {str: "text"}.get(kind, kind.__name__)
    return f"{name} or none" if optional else name


def build(cls: type[C], values: Mapping[str, Any], *, from_text: bool = False) -> C:
    """A validated config from ``values`` (keys are field names): every problem at once.

    Unknown keys, wrong types and missing required fields are reported together with the
    config's own validation problems, so a user fixes a step in one round.

    Raises:
        ConfigError: listing every problem, fields named as ``{field}``.
    """
    hints = field_types(cls)
    known = {f.name: f for f in fields_of(cls)}
    found: list[Problem] = []
    typed: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            listing = ", ".join(known)
            found.append(Problem(literal(f"unknown parameter '{key}'; it takes {listing}")))
            continue
        try:
            typed[key] = _coerce(raw, hints[key], from_text)
        except ValueError:
            found.append(
                Problem(f"{{{key}}} takes {type_name(hints[key])}, not {literal(repr(raw))}")
            )
    for name, f in known.items():
        if is_required(f) and name not in values:
            found.append(Problem(f"{{{name}}} is required"))
    if found:
        # Report the value checks of what was well typed too: one round of fixes, not several.
        try:
            _probe(cls, typed)
        except SqueezeError as e:
            found += [p for p in e.problems if p not in found]
        raise_problems(found, ConfigError)
    return cls(**typed)


def _probe(cls: type, typed: dict[str, Any]) -> None:
    """Run the validation on what was well typed, with stand-ins for missing required fields
    (their own problem is already reported); raises its ConfigError, if any."""
    filled = dict(typed)
    for f in fields_of(cls):
        if f.name not in filled and is_required(f):
            kind, _ = base_type(field_types(cls)[f.name])
            filled[f.name] = {int: 1, float: 0.5, bool: False, tuple: ()}.get(kind, "")
    cls(**filled)


def literal(text: str) -> str:
    """Text for a :class:`Problem` with no placeholders (user input may contain braces)."""
    return text.replace("{", "{{").replace("}", "}}")


def changed(config: Any) -> dict[str, Any]:
    """The fields that differ from their defaults (positional ones always), in field order."""
    shown = {}
    for f in fields_of(type(config)):
        value = getattr(config, f.name)
        if f.name in type(config).positional[:1] or value != f.default:
            shown[f.name] = value
    return shown


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return str(value)
