"""Choosing where models run, with a clear error instead of a CUDA traceback."""

from __future__ import annotations

from squeeze.core.errors import ConfigError, Problem, UnsupportedError


def resolve_device(name: str) -> str:
    """Validate a ``--device`` value ("cpu", "cuda" or "cuda:N") against this machine.

    Raises:
        ConfigError: not a device name squeeze understands.
        UnsupportedError: CUDA asked for where there is none (or not that many GPUs).
    """
    import torch

    if name == "cpu":
        return name
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"unknown device '{name}'; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UnsupportedError(
            Problem(f"{{device}} {name}: no CUDA device on this machine; use {{device}} cpu")
        )
    if index and int(index) >= torch.cuda.device_count():
        raise UnsupportedError(
            Problem(
                f"{{device}} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        )
    return name
