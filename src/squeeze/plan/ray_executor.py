"""Chains built on Ray: each chain one Ray task, on this machine's Ray or a cluster's.

``squeeze run|sweep --executor ray`` hands its chains here instead of building them in turn.
Without an address Ray starts on this machine (and stops after the build); with one
(``ray start --head`` elsewhere) the tasks run on that cluster's workers. At most ``workers``
chains are built at once, each holding ``cpus`` CPUs and ``gpus`` GPUs of its node.

Artifacts come home through squeeze's artifact cache: a task builds into the cache folder the
driver names, under the cache's own lock and atomic publish (a staging folder renamed into
place), so an artifact is there whole or not at all. On one machine that is its disk; across
machines the cache must be a folder every node mounts at the same path (NFS and the like: the
lock is a file lock on it). A task whose worker dies is retried once by Ray; a step that fails
(a bad config, validation) fails the run as it does locally, with its own message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from squeeze.core.errors import UnsupportedError, ValidationError
from squeeze.core.types import no_progress
from squeeze.plan.execute import ChainContext, ChainOutput, Executor, run_chain
from squeeze.plan.steps import StepCall

# What a worker needs of the driver's environment: squeeze's own settings and offline hubs.
_ENV_PREFIXES = ("SQUEEZE_", "HF_", "TRANSFORMERS_")


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: ``address`` None starts Ray here; ``workers`` chains at once."""

    address: str | None = None
    workers: int = 2
    cpus: float = 1.0
    gpus: float = 0.0


def _build(
    calls: tuple[StepCall, ...], ctx: ChainContext, cache_dir: str, model_key: str
) -> tuple[ChainOutput, str]:
    """One chain, on a Ray worker: its output and which worker built it."""
    import socket

    output = run_chain(calls, ctx, Path(cache_dir), model_key)
    return output, f"{socket.gethostname()} pid {os.getpid()}"


class RayExecutor(Executor):
    """Builds each chain as a Ray task (see the module's docstring)."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings

    def build(
        self, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext, cache_dir: Path,
        model_key: str, started: Callable[[int], None],
    ) -> list[ChainOutput]:  # fmt: skip
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
            s = self.settings
            local = {} if s.address else {"num_cpus": max(1, round(s.workers * s.cpus))}
            ray.init(address=s.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": env}, **local)  # fmt: skip
        try:
            return self._run(ray, chains, ctx, cache_dir, model_key, started)
        finally:
            if started_here:
                ray.shutdown()

    def _run(
        self, ray: Any, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext,
        cache_dir: Path, model_key: str, started: Callable[[int], None],
    ) -> list[ChainOutput]:  # fmt: skip
        s = self.settings
        task = ray.remote(_build).options(
            num_cpus=s.cpus, num_gpus=s.gpus, max_retries=1, retry_exceptions=False
        )
        # A progress bar lives in this process; workers report through their results.
        remote_ctx = replace(ctx, progress=no_progress)
        pending: dict[Any, int] = {}
        done: dict[int, ChainOutput] = {}
        queue = list(enumerate(chains))
        while queue or pending:
            while queue and len(pending) < s.workers:
                index, calls = queue.pop(0)
                started(index)
                ref = task.remote(calls, remote_ctx, str(cache_dir), model_key)
                pending[ref] = index
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            output, worker = _result(ray, ready[0])
            output.notes.append(f"built by Ray worker {worker}")
            done[index] = output
        return [done[i] for i in range(len(chains))]


def _result(ray: Any, ref: Any) -> tuple[ChainOutput, str]:
    """A task's result; a step's own error as the step raised it, a worker lost twice as a
    step failure naming Ray."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
    except ray.exceptions.RayError as error:  # a worker or node lost, after Ray's retry
        raise ValidationError(f"a Ray task failed twice ({type(error).__name__}); run again, "
                        "or use --executor local") from error  # fmt: skip


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UnsupportedError("--executor ray needs Ray: pip install 'squeeze[ray]'") from None
    return ray
