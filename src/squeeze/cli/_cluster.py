"""Where ``run``, ``sweep`` and ``tune`` build: ``--executor local|ray`` and Ray's settings,
one set of options for the three commands (``with_cluster``), the executor they name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import Enum
from typing import Annotated, Any

import typer

from squeeze.cli._options import dataclass_params, inject_options
from squeeze.core.errors import ConfigError, Problem


class ExecutorChoice(str, Enum):
    """``--executor`` values: where variants and candidates are built."""

    local = "local"
    ray = "ray"


@dataclass(frozen=True)
class ClusterFlags:
    """The executor options: local (in turn, here) by default; Ray when asked."""

    executor: Annotated[
        ExecutorChoice,
        typer.Option(
            help="Where variants and search candidates are built: local (one after another, "
            "here) or ray (as Ray tasks, --workers at once; a search proposes that many per "
            "wave; `pip install 'squeeze[ray]'`). Latency is timed between builds, here unless "
            "--timing-resource names a node."
        ),
    ] = ExecutorChoice.local
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: join this cluster (`ray start --head` there; the cache "
            "must be a folder every node mounts at the same path); default: Ray on this "
            "machine, stopped after the run."
        ),
    ] = None
    workers: Annotated[int, typer.Option(min=1, help="With --executor ray: builds at once.")] = 2
    cpus_per_candidate: Annotated[
        float, typer.Option(min=0.0, help="With --executor ray: CPUs each build holds.")
    ] = 1.0
    gpus_per_candidate: Annotated[
        float, typer.Option(min=0.0, help="With --executor ray: GPUs each build holds.")
    ] = 0.0
    timing_resource: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: measure latency on the Ray node that has this resource "
            "(given by `ray start --resources` to a node like the deployment target, with "
            "--num-cpus 0 so that nothing is built there); default: here.",
            metavar="NAME",
        ),
    ] = None

    @contextmanager
    def opened(self) -> Iterator[Any]:
        """The executor these options name, closed after the command (a Ray started here is
        stopped). Ray is imported, started or joined only when asked for, before any work: a
        missing Ray is refused with the extra to install, a cluster that cannot be joined
        with what to check."""
        from squeeze.plan.execute import LOCAL

        if self.executor is ExecutorChoice.local:
            self._check_local()
            yield LOCAL
            return
        from squeeze.plan.ray_executor import RayExecutor, RaySettings

        settings = RaySettings(self.ray_address, self.workers, self.cpus_per_candidate,
                               self.gpus_per_candidate, self.timing_resource)  # fmt: skip
        executor = RayExecutor(settings)
        try:
            executor.start()
            yield executor
        finally:
            executor.close()

    def _check_local(self) -> None:
        """Ray's options without Ray would be silently ignored: refused instead.

        Raises:
            ConfigError: a Ray option was given with the local executor.
        """
        given = [f"{{{f.name}}}" for f in fields(self)
                 if f.name != "executor" and getattr(self, f.name) != f.default]  # fmt: skip
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise ConfigError(Problem(f"{', '.join(given)} {verb} to Ray's builds: add "
                                      "{executor=ray}"))  # fmt: skip


def with_cluster(command: Any) -> Any:
    """Add the executor options to a command, which receives ``cluster: ClusterFlags``."""
    params = dataclass_params(ClusterFlags)
    return inject_options(command, "cluster", params, lambda values: ClusterFlags(**values))
