"""One error family for everything a user can get wrong.

The CLI catches :class:`SqueezeError`, prints its message as one line on stderr and exits with
``exit_code``; nothing below the CLI prints or exits. Each subclass maps to one documented exit
code so that CI jobs can tell a failed gate from a broken input.
"""

from __future__ import annotations


class SqueezeError(Exception):
    """Root of all errors squeeze reports to users (never a bug: bugs stay tracebacks)."""

    exit_code: int = 2


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
