"""One error family for everything a user can get wrong.

The CLI catches :class:`SqueezeError`, prints its message as one line on stderr and exits with
``exit_code``; nothing below the CLI prints or exits. Each subclass maps to one documented exit
code so that CI jobs can tell a failed gate from a broken input.

The library names config fields, not flags: a message is a list of :class:`Problem` texts with
``{field}`` placeholders, which the CLI renders as ``--field`` and a recipe as ``field`` after
the step it is in (``variants[2] step 1: sparsity ...``). ``{field=value}`` names a setting, so
each front end writes it in its own syntax (``--label-map sign``, ``label_map: sign``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


class _Names(dict):  # type: ignore[type-arg]
    """Renders every ``{placeholder}`` of a problem through the front end's namer."""

    def __init__(self, namer: Callable[[str], str]) -> None:
        super().__init__()
        self._namer = namer

    def __missing__(self, key: str) -> str:
        return self._namer(key)


@dataclass(frozen=True)
class Problem:
    """One thing wrong, phrased with ``{field}`` placeholders (``{data}`` names the dataset) and
    ``{field=value}`` for a setting that fixes it (the namer receives ``field=value``).

    Literal braces are doubled, as in ``str.format``. ``error`` is the error class the problem
    calls for when it is not a usage error (a dtype/backend combination squeeze does not offer
    is :class:`UnsupportedError`, exit 4).
    """

    text: str
    error: type[SqueezeError] | None = None

    def render(self, namer: Callable[[str], str] = str) -> str:
        try:
            return self.text.format_map(_Names(namer))
        except (ValueError, IndexError, AttributeError):
            # A value with stray braces (a path like "run{1}") must not hide the message.
            return self.text


class SqueezeError(Exception):
    """Root of all errors squeeze reports to users (never a bug: bugs stay tracebacks).

    Built from a plain message, a :class:`Problem` or several; :meth:`render` names their
    fields the way a front end's user typed them.
    """

    exit_code: int = 2

    def __init__(self, message: str | Problem | Sequence[Problem], *, where: str = "") -> None:
        if isinstance(message, str):
            message = Problem(message.replace("{", "{{").replace("}", "}}"))
        if isinstance(message, Problem):
            message = [message]
        self.problems: tuple[Problem, ...] = tuple(message)
        self.where = where
        super().__init__(self.render())

    def render(self, namer: Callable[[str], str] = str) -> str:
        """All problems as one line, each named by ``namer``, after the place they are in."""
        text = "; ".join(p.render(namer) for p in self.problems)
        return f"{self.where}: {text}" if self.where else text


def first_line(error: BaseException) -> str:
    """The first line of a library's error, for a one-line message (its class name if empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def nearest(value: object, choices: Iterable[str]) -> str | None:
    """The choice a mistyped ``value`` most likely meant, or None when none is close.

    The same word in another case or with ``_`` for ``-`` first, then the one choice it begins
    (``onnx`` -> ``onnxruntime``, which difflib alone finds too far), then the closest spelling
    (difflib's ratio of at least 0.6: ``magnitud`` -> ``magnitude``, ``fnn`` -> ``ffn``).
    """
    by_fold = {_fold(c): c for c in reversed(list(choices))}
    typed = _fold(str(value))
    if typed in by_fold:
        return by_fold[typed]
    begun = [c for fold, c in by_fold.items() if len(typed) >= 2 and fold.startswith(typed)]
    if len(begun) == 1:
        return begun[0]
    close = difflib.get_close_matches(typed, list(by_fold), n=1)
    return by_fold[close[0]] if close else None


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` after a message about a mistyped ``value``; empty when no choice
    is close. Every closed set of values squeeze checks (options, step names, parameters,
    recipe keys, splits, columns) suggests through this one function."""
    match = nearest(value, choices)
    return f" (did you mean '{match}'?)" if match is not None and match != value else ""


def _fold(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def raise_problems(problems: Sequence[Problem], default: type[SqueezeError]) -> None:
    """Raise one error listing every problem: of the class they all call for, else ``default``
    (a recipe with a typo and an unsupported combination is a usage error first)."""
    if problems:
        kinds = {p.error for p in problems}
        kind = kinds.pop() if len(kinds) == 1 else None
        raise (kind or default)(problems)


class GateError(SqueezeError):
    """A quality gate (accuracy drop, speed-up, size) was not met."""

    exit_code = 1


class ConfigError(SqueezeError):
    """Options or a config that cannot work together (usage error)."""

    exit_code = 2


class CheckpointError(SqueezeError):
    """A model path or hub id that is missing, not a checkpoint, or corrupt."""

    exit_code = 3


class DataError(SqueezeError):
    """A dataset that is missing, empty, malformed or does not fit the model."""

    exit_code = 3


class OutputExistsError(SqueezeError):
    """An output path exists and ``--overwrite`` was not given (nothing was written)."""

    exit_code = 2


class UnsupportedError(SqueezeError):
    """An architecture, dtype/backend combination or device squeeze cannot handle here."""

    exit_code = 4


class ValidationError(SqueezeError):
    """A compression or export step produced a result that failed its checks."""

    exit_code = 5


class OSFault(SqueezeError):
    """The operating system refused a file operation: no space left, permission denied, a
    read-only file system, a path too long. Not squeeze's fault, not the input's: the
    environment's, so CI can tell it apart."""

    exit_code = 6
