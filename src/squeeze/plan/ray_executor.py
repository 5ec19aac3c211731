"""Chains built on Ray: each chain one Ray task, on this machine's Ray or a cluster's.

``squeeze run|sweep|tune --executor ray`` hands its chains here instead of building them in
turn. Without an address Ray starts on this machine (and stops when the command closes the
executor); with one (``ray start --head`` elsewhere) the tasks run on that cluster's workers.
At most ``workers`` chains are built at once (a search's wave), each holding ``cpus`` CPUs and
``gpus`` GPUs of its node and training on ``cpus`` threads (the thread count keys the artifact:
it changes the rounding).

Artifacts come home through squeeze's artifact cache: a task builds into the cache folder the
driver names, under the cache's own lock and atomic publish (a staging folder renamed into
place), so an artifact is there whole or not at all. On one machine that is its disk; across
machines the cache must be a folder every node mounts at the same path (NFS and the like: the
lock is a file lock on it). A task whose worker dies is retried once by Ray, then reported as a
failed build (a search records the candidate as failed); a step that fails (a bad config,
validation) fails as it does locally, with its own message.

Latency is measured here, between waves, unless ``timing_resource`` names the Ray resource of
the node to time on (one like the deployment target, building nothing): then each measurement
is a Ray task there, one at a time, on all of that node's cores. A step that times this machine
to choose what it builds (the measured quantization default) is such a measurement too: the
steps before it are built on the workers, then it is built where latency is measured, alone,
after the rest of its wave.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from squeeze.core.config import literal
from squeeze.core.errors import ConfigError, Problem, UnsupportedError, ValidationError
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
    timing_resource: str | None = None  # the Ray resource of the node that times; None: here


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
        self._started = False  # whether this executor started Ray (and so stops it)

    @property
    def width(self) -> int:  # type: ignore[override]
        return self.settings.workers

    @property
    def timing_node(self) -> str | None:  # type: ignore[override]
        return self.settings.timing_resource

    def timed(self, measure: Callable[..., Any], *args: Any) -> Any:
        """``measure(*args)`` here, or, with a timing resource, as a Ray task on the node that
        holds it (no CPUs reserved: the node should build nothing, see the README)."""
        resource = self.settings.timing_resource
        if resource is None:
            return measure(*args)
        ray = self.start()
        task = ray.remote(_timed).options(num_cpus=0, resources={resource: 1}, max_retries=1)
        return _get(ray, task.remote(measure, *args))

    def machine(self) -> dict[str, Any]:
        if self.settings.timing_resource is None:
            return super().machine()
        return dict(self.timed(_fingerprint_here))

    def close(self) -> None:
        """Stop the Ray this executor started (a cluster joined by address stays up)."""
        if self._started:
            _import_ray().shutdown()
            self._started = False

    def attempt(
        self, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext, cache_dir: Path,
        model_key: str, started: Callable[[int], None], *, stop_at_failure: bool = False,
    ) -> list[ChainOutput | ValidationError]:  # fmt: skip
        """The workers build every chain up to its first step that times the machine (all of
        it, for most); then each chain with such a step is finished where latency is measured,
        one at a time (see the module's docstring)."""
        ray = self.start()
        # A progress bar lives in this process; workers report through their results. Every
        # build of the command trains on the threads one candidate holds.
        remote = replace(ctx, progress=no_progress, threads=max(1, math.floor(self.settings.cpus)))
        heads = [_before_measuring(calls) for calls in chains]
        done = self._run(ray, heads, remote, cache_dir, model_key, started, stop_at_failure)
        for index, calls in enumerate(chains):
            failed = any(isinstance(o, ValidationError) for o in done.values())
            if stop_at_failure and failed:
                break
            if len(heads[index]) == len(calls) or isinstance(done.get(index), ValidationError):
                continue  # built by the workers, or its first steps failed
            head = done.get(index)
            if head is None:
                started(index)
            done[index] = _outcome(
                ray,
                lambda calls=calls: self.timed(_build, calls, remote, str(cache_dir), model_key),
                "where latency is measured",
            )
            if isinstance(head, ChainOutput) and isinstance(done[index], ChainOutput):
                done[index].notes[:0] = head.notes  # the workers' part: "built by Ray worker"
        return [done[i] for i in sorted(done)]

    def start(self) -> Any:
        """Start Ray here or join the cluster, once per command (a search's waves share it);
        the CLI calls it before any work, so a cluster that cannot be joined is said first.
        Returns the ``ray`` module.

        Raises:
            UnsupportedError: Ray is not installed (naming the extra that installs it).
            ConfigError: Ray did not start, or the cluster could not be joined (with what to
                check).
        """
        ray = _import_ray()
        if not ray.is_initialized():
            _driver_messages_to_stderr()
            env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
            s = self.settings
            local = {} if s.address else {"num_cpus": max(1, round(s.workers * s.cpus))}
            if s.timing_resource and not s.address:  # this machine is the timing node
                local["resources"] = {s.timing_resource: 1}
            try:
                ray.init(address=s.address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": env}, **local)  # fmt: skip
            except (ConnectionError, RuntimeError) as error:  # what ray.init raises for these
                raise ConfigError(_unreachable(s.address, error)) from None
            self._started = True
            self._check_timing_node(ray)
        return ray

    def _check_timing_node(self, ray: Any) -> None:
        """A timing task no node can take would wait for ever: refused up front.

        Raises:
            ConfigError: no node of the cluster holds the timing resource.
        """
        resource = self.settings.timing_resource
        if resource and ray.cluster_resources().get(resource, 0) < 1:
            start = literal(f"ray start --resources '{{\"{resource}\": 1}}'")
            raise ConfigError(Problem(
                f"{{timing_resource}}: no node of the Ray cluster has the resource "
                f"{literal(repr(resource))}; start the node to time on with `{start}`"
            ))  # fmt: skip

    def _run(
        self, ray: Any, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext,
        cache_dir: Path, model_key: str, started: Callable[[int], None], stop_at_failure: bool,
    ) -> dict[int, ChainOutput | ValidationError]:  # fmt: skip
        """Each non-empty chain as a task on the workers, at most ``workers`` at once: the
        outcomes by the chain's index."""
        s = self.settings
        task = ray.remote(_build).options(
            num_cpus=s.cpus, num_gpus=s.gpus, max_retries=1, retry_exceptions=False
        )
        pending: dict[Any, int] = {}
        done: dict[int, ChainOutput | ValidationError] = {}
        queue = [(index, calls) for index, calls in enumerate(chains) if calls]
        while queue or pending:
            while queue and len(pending) < s.workers:
                index, calls = queue.pop(0)
                started(index)
                ref = task.remote(calls, ctx, str(cache_dir), model_key)
                pending[ref] = index
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            done[index] = _outcome(ray, lambda ref=ready[0]: _get(ray, ref), "by Ray worker")
            if stop_at_failure and isinstance(done[index], ValidationError):
                queue.clear()  # what is in flight finishes (its artifact is cached); no more
        return done


def _before_measuring(calls: tuple[StepCall, ...]) -> tuple[StepCall, ...]:
    """The steps of a chain before its first one that times the machine (all of them when
    none does)."""
    for index, call in enumerate(calls):
        if call.config.for_machine():
            return calls[:index]
    return calls


def _timed(measure: Callable[..., Any], *args: Any) -> Any:
    """A measurement, on the timing node, on all of its cores (Ray gives a task that holds no
    CPU one thread)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    return measure(*args)


def _fingerprint_here() -> dict[str, Any]:
    """The timing node's fingerprint, naming it."""
    import socket

    from squeeze.measure.machine import fingerprint

    return {**fingerprint(), "timed_on": f"{socket.gethostname()} pid {os.getpid()}"}


def _get(ray: Any, ref: Any) -> Any:
    """A task's result; an error raised in the task raised here as it was raised there."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _outcome(
    ray: Any, result: Callable[[], tuple[ChainOutput, str]], where: str
) -> ChainOutput | ValidationError:
    """A build's output (naming its worker, built ``where``), or the validation error its
    step failed with, or a task lost twice as a validation failure naming Ray; any other error
    raised as the step raised it."""
    try:
        output, worker = result()
    except ValidationError as error:
        return error
    except ray.exceptions.RayError as error:  # a worker or node lost, after Ray's retry
        return ValidationError(f"its Ray task was lost twice ({type(error).__name__}: "
                               f"{_first_line(error)})")  # fmt: skip
    output.worker = worker
    output.notes.append(f"built {where} ({worker})")
    return output


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


def _unreachable(address: str | None, error: BaseException) -> Problem:
    """Why Ray did not start or could not be joined, and what to check."""
    why = literal(_first_line(error))
    if address is None:
        return Problem(f"Ray did not start on this machine ({why}); run `ray stop` if an "
                       "earlier Ray is stuck, or use {executor} local")  # fmt: skip
    return Problem(
        f"{{ray_address}}: could not join the Ray cluster at {literal(address)} "
        f"({why}); check that `ray start --head` runs there, and for a cluster "
        "with token authentication (Ray's default) set RAY_AUTH_MODE=token and its token "
        "(RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
    )


def _driver_messages_to_stderr() -> None:
    """Ray's driver prints its raylet's messages ("A worker died ...") on stdout, where
    ``--json`` writes its one document: send them to stderr, with the progress. (Ray's own
    function, wrapped where it is looked up; left alone if a Ray release renames it.)"""
    import sys

    module = sys.modules.get("ray._private.worker")
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_stderr  # type: ignore[union-attr]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UnsupportedError("--executor ray needs Ray: pip install 'squeeze[ray]'") from None
    return ray
