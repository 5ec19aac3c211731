"""Method configs as data: one frozen dataclass per method is the one definition of its parameters.

A config's fields carry their default, type, help text and allowed choices (``param``); its
``problems()`` states every cross-field rule. From that single definition come the CLI options
(``squeeze.cli._options.config_params``), the recipe step schema (``build`` with strings from
``name(key=value)``) and the validation both share, so a command and a recipe cannot drift.

This module stays light (no torch, no numpy): the CLI builds its options from it at start-up.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from squeeze.core.errors import ConfigError, Problem, SqueezeError, did_you_mean, raise_problems

C = TypeVar("C", bound="StepConfig")


class Registered(Sequence[str]):
    """Choices a registry holds, read each time they are asked for: the quantization backends
    (and the dtypes they produce) are registered by modules imported on first use, and one
    registered later (a plugin's) is a valid value as much as a built-in."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names

    def _current(self) -> tuple[str, ...]:
        return tuple(self._names())

    def __getitem__(self, index: int | slice) -> Any:
        return self._current()[index]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator[str]:  # one registry read (Sequence's would read per item)
        return iter(self._current())


def param(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field with what every front end needs to present it.

    Args:
        default: The one default (omit for a required field).
        help: One line for ``--help`` and the recipe reference.
        choices: Allowed values of a text field; checked by :class:`StepConfig` itself, which
            names the nearest one for a typo. :class:`Registered` choices stay live.
        flag: The CLI declaration when it is not ``--field-name`` (``"--seq"``,
            ``"--dynamic-batch/--static-shapes"``).
        metavar: How ``--help`` names a value where listing its choices would say too much
            (``NAME`` for the backends, whose help lists them).
    """
    if choices is not None and not isinstance(choices, Registered):
        choices = tuple(choices) or None
    metadata = {"help": help, "choices": choices, "flag": flag, "metavar": metavar}
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

    def environment(self) -> dict[str, Any]:
        """What the request resolves to from outside its fields (an environment variable), for
        cache keys: a name stays as written while the artifact it builds may differ."""
        return {}

    def for_machine(self) -> bool:
        """Whether what it builds is chosen for the machine it deploys to (a measured choice:
        a recipe's ``target`` fingerprint changes it)."""
        return False

    def chosen(self, summary: dict[str, Any]) -> StepConfig:
        """The request a measured choice resolved to, read from the summary the step wrote
        (the backend the quantization default timed fastest): it builds the same kind of
        artifact without measuring again. Itself where nothing was chosen."""
        return self


def _choice_problems(config: Any) -> list[Problem]:
    found = []
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value is not None and value not in choices:
            found.append(choice_problem(f.name, value, choices))
    return found


def choice_problem(name: str, value: Any, choices: Iterable[str]) -> Problem:
    """``{name} must be one of a, b, not 'x' (did you mean 'a'?)``: the one wording of a value
    outside a closed set, for config fields and the CLI's choice options alike."""
    choices = list(choices)
    text = f"must be one of {', '.join(choices)}, not {value!r}{did_you_mean(value, choices)}"
    return Problem(f"{{{name}}} {literal(text)}")


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


def _plain(annotation: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True): the annotation without its None, and whether it had one."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = typing.get_args(annotation)
        inner = [a for a in args if a is not type(None)]
        return inner[0], type(None) in args
    return annotation, False


def base_type(annotation: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``tuple[str, ...]`` -> (tuple, False)."""
    plain, optional = _plain(annotation)
    return typing.get_origin(plain) or plain, optional


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
        text = isinstance(value, str)
        if text:
            inner = value.strip()
            if inner.startswith("[") and inner.endswith("]"):
                inner = inner[1:-1]
            value = [v.strip().strip("'\"") for v in inner.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError
        # tuple[str, ...] (a step's patterns), tuple[int, ...] (batch sizes), or a fixed length
        # like tuple[float, float, float] (split ratios).
        items = typing.get_args(_plain(annotation)[0]) or (str, ...)
        if items[-1] is not Ellipsis and len(items) != len(value):
            raise ValueError
        item = items[0]
        return tuple(str(v) if item is str else _coerce(v, item, from_text or text) for v in value)
    if isinstance(value, bool | dict | list):
        raise ValueError
    return str(value)


def type_name(annotation: Any) -> str:
    kind, optional = base_type(annotation)
    name = "list of text" if kind is tuple else {str: "text"}.get(kind, kind.__name__)
    return f"{name} or none" if optional else name


_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("true or false", "true/false values"), str: ("text", "text")}  # fmt: skip


def expected(annotation: Any) -> str:
    """A recipe value's type in words, for ``bench.runs: expected an integer, got 'thirty'``."""
    kind, _ = base_type(annotation)
    if kind is tuple:
        items = typing.get_args(_plain(annotation)[0]) or (str, ...)
        count = "" if items[-1] is Ellipsis else f"{len(items)} "
        return f"a list of {count}{_NOUNS.get(items[0], ('', items[0].__name__))[1]}"
    return _NOUNS.get(kind, (getattr(kind, "__name__", str(kind)), ""))[0]


def check_section(
    cls: type,
    values: Any,
    where: str,
    *,
    keys: Mapping[str, str] | None = None,
    hints: Mapping[str, Any] | None = None,
    own: Sequence[str] = (),
) -> tuple[dict[str, Any], list[Problem]]:
    """A recipe section checked against the fields of ``cls``: their type hints (and choices)
    are its schema, as they are a step's. Every unknown key, wrong type, value outside its
    choices and missing required field is a problem naming its place (``bench.runs``).

    Args:
        cls: The dataclass whose fields the section's keys are.
        values: The section as read from the file (anything: a wrong type is a problem).
        where: The section's place (``bench``); empty for the top level.
        keys: Recipe key -> field name, where they differ (``seq`` -> ``seq_len``); the keys
            it lists are the only ones allowed. Default: every field, by its name.
        hints: Types that replace a field's own for the recipe (a size written ``50MB``).
        own: Keys checked by their own parser: passed through as read, never required.

    Returns:
        The well-typed values by field name, and the problems.
    """
    keys = keys or {f.name: f.name for f in fields_of(cls)}
    label = where or "recipe"
    if not isinstance(values, Mapping):
        listing = ", ".join(keys)
        problem = f"{label}: expected a mapping of {listing}, got {values!r}"
        return {}, [Problem(literal(problem))]
    types_ = {**field_types(cls), **(hints or {})}
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    typed: dict[str, Any] = {}
    found: list[Problem] = []
    for key, raw in values.items():
        name = keys.get(key) if isinstance(key, str) else None
        place = f"{where}.{key}" if where else str(key)
        if name is None:
            listing = ", ".join(keys)
            text = f"{label}: unknown key '{key}'{did_you_mean(key, keys)}; known keys: {listing}"
            found.append(Problem(literal(text)))
        elif key in own:
            typed[name] = raw
        else:
            try:
                typed[name] = _coerce(raw, types_[name], from_text=False)
            except ValueError:
                text = f"{place}: expected {expected(types_[name])}, got {raw!r}"
                found.append(Problem(literal(text)))
                continue
            choices = by_name[name].metadata.get("choices")
            if choices and typed[name] is not None and typed[name] not in choices:
                hint = did_you_mean(raw, choices)
                text = f"{place}: expected one of {', '.join(choices)}, got {raw!r}{hint}"
                found.append(Problem(literal(text)))
    for key, name in keys.items():
        if key not in values and key not in own and is_required(by_name[name]):
            found.append(Problem(literal(f"{label}: '{key}' is required")))
    return typed, found


def named_in(
    where: str, keys: Mapping[str, str], problems: Iterable[Problem], *, sets: str = ": "
) -> list[Problem]:
    """Problems of a part of a recipe (its class's own checks, which name fields as
    ``{field}``) after its place, with fields named as the recipe writes them: ``bench: runs
    must be >= 2``. A setting ``{field=value}`` is written ``key: value`` in a section, and
    ``key=value`` in a step (``sets="="``).

    Args:
        where: The part's place (``bench``, ``variants[2] step 1 structured()``).
        keys: Recipe key -> field name, where they differ (``seq`` -> ``seq_len``).
        problems: The problems, as the library raised them.
        sets: How the recipe sets a key's value in that part.
    """
    key_of = {name: key for key, name in keys.items()}

    def name(field: str) -> str:
        field, given, value = field.partition("=")
        key = key_of.get(field, field)
        return f"{key}{sets}{value}" if given else key

    return [Problem(literal(f"{where}: {p.render(name)}"), p.error) for p in problems]


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
            hint = did_you_mean(key, known)
            found.append(Problem(literal(f"unknown parameter '{key}'{hint}; it takes {listing}")))
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
