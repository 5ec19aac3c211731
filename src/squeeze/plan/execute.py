"""Build chains of steps through the cache, each step one ``run_step`` of its method, by an
:class:`Executor`: where and in what order they are built is the executor's."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeeze.core.errors import ValidationError
from squeeze.core.types import ProgressFactory, no_progress
from squeeze.data.spec import DataSpec
from squeeze.plan import cache
from squeeze.plan.recipe import Plan
from squeeze.plan.steps import StepCall


@dataclass(frozen=True)
class ChainContext:
    """What every step of a chain shares: the recipe's model (distillation's teacher), its
    data, and where to run."""

    model: str
    data: DataSpec | None
    calibration_data: DataSpec | None
    max_length: int
    device: str = "cpu"
    trust_remote_code: bool = False
    progress: ProgressFactory = no_progress
    target: dict[str, Any] | None = None  # the deployment machine's fingerprint
    # PyTorch's intra-op threads for each build (a Ray worker's CPUs); None: this process's.
    threads: int | None = None

    @classmethod
    def of(cls, plan: Plan, trust_remote_code: bool, progress: ProgressFactory) -> ChainContext:
        """Where the chains of ``plan`` are built: run, sweep and tune build them alike."""
        return cls(plan.model, plan.data, plan.calibration_data, plan.max_length, plan.device,
                   trust_remote_code, progress, plan.target)  # fmt: skip


@dataclass
class ChainOutput:
    """Where a chain's final artifact is and what producing it cost (0 s when cached)."""

    artifact: Path
    cached: bool
    seconds: float
    notes: list[str] = field(default_factory=list)
    worker: str = ""  # which worker built it, where that is not this process


def build_step(
    call: StepCall,
    index: int,
    source: str,
    out: Path,
    ctx: ChainContext,
    decisions: Path | None = None,
) -> list[str]:
    """Run one step from ``source`` into ``out`` (which must not exist); return its notes.

    The step is not measured: a sweep measures each finished variant once, as deployed.
    ``decisions``: where the cache remembers measured choices (the default quantization
    backend's), so every variant's int8 of one shape is measured once.
    """
    from squeeze.engine.runner import run_step
    from squeeze.engine.step import StepOptions
    from squeeze.train.resume import LAST, STATE_FILE, checkpoint_dir_for

    method, config = call.method, call.config
    if index > 0 and method.chained is not None:
        source, config = method.chained(config, source, ctx.model)
    # A run interrupted mid-training continues from its checkpoint.
    resume = method.resumable and (checkpoint_dir_for(out) / LAST / STATE_FILE).is_file()
    options = StepOptions(
        data=ctx.data, calibration_data=ctx.calibration_data, max_length=ctx.max_length,
        measure=False, resume=resume, device=ctx.device,
        trust_remote_code=ctx.trust_remote_code, progress=ctx.progress, decisions=decisions,
        target=ctx.target,
    )  # fmt: skip
    return run_step(source, config, out, options).notes


def built_on(device: str, threads: int) -> str:
    """The hardware a step's artifact can depend on, for its cache key.

    On a GPU, the GPU model (its kernels and number formats differ; "cuda" and "cuda:1" of one
    model build the same bytes). On the CPU, its architecture and instruction sets: they decide
    which backends may run (``auto`` times them and keeps the fastest) and which kernels round
    the training and calibration arithmetic, and the build's ``threads``: PyTorch splits a
    reduction by thread, so one recovery trained on 1 and on 2 threads ends with other weights
    (validation drops +0.19 and +0.29 points on the demo). The CPU's name adds nothing, so CI
    runners with the same instruction sets and cores share artifacts.
    """
    if device == "cpu":
        import platform

        from squeeze.measure.machine import ISA_FLAGS, cpu_flags

        flags = cpu_flags()
        isa = " ".join(f for f in ISA_FLAGS if f in flags)
        return f"cpu {platform.machine()}: {isa}, {threads} threads"
    import torch

    return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"


def step_threads(call: StepCall, ctx: ChainContext) -> int:
    """The intra-op threads ``call`` is built with: a step that times this machine to choose
    (the measured quantization default) with the threads latency is measured with, this
    process's; any other with the context's (a Ray worker's CPUs), else this process's."""
    import torch

    if ctx.threads is None or call.config.for_machine():
        return torch.get_num_threads()
    return ctx.threads


def chain_keys(calls: tuple[StepCall, ...], ctx: ChainContext, model_key: str) -> list[str]:
    """The cache key of each step's output: its input's key, the step, what it reads and
    where it is built (:func:`squeeze.plan.cache.step_key` adds the library versions)."""
    keys, key = [], model_key
    for call in calls:
        key = cache.step_key(
            key,
            call.canonical(),
            device=built_on(ctx.device, step_threads(call, ctx)),
            # Only where a step resolves something from outside its fields (the quantize
            # default's backend): other steps keep the keys their cached artifacts have.
            **({"environment": env} if (env := call.config.canonical().environment()) else {}),
            # A measured choice made for another machine is another artifact.
            **({"target": ctx.target["isa"]} if ctx.target and call.config.for_machine() else {}),
            data=cache.data_key(ctx.data),
            calibration_data=cache.data_key(ctx.calibration_data),
            max_length=ctx.max_length,
            teacher=model_key if call.method.chained is not None else None,
            # Other checkpoints the step reads (a distillation's named student) key it too.
            inputs=[cache.content_key(p) for p in call.method.inputs(call.config)],
        )
        keys.append(key)
    return keys


def run_chain(
    calls: tuple[StepCall, ...], ctx: ChainContext, cache_dir: Path, model_key: str
) -> ChainOutput:
    """Run ``calls`` from the recipe's model, reusing every step output already in the cache.

    Raises:
        ConfigError: ``cache_dir`` is a folder that is not squeeze's cache (before any work).
    """
    from squeeze.measure.latency import torch_threads

    cache.claim(cache_dir)
    source = ctx.model
    cached, notes = True, []
    start = time.perf_counter()
    for index, (call, key) in enumerate(zip(calls, chain_keys(calls, ctx, model_key), strict=True)):
        out = cache_dir / f"{key[:20]}-{call.kind}"
        with cache.entry_lock(out):  # a job sharing this cache waits here, then reuses the entry
            problem = cache.damage(out) if out.exists() else None
            if problem is not None:
                notes.append(f"{call.canonical()}: the cached artifact was damaged ({problem}); "
                             "rebuilt it")  # fmt: skip
                shutil.rmtree(out)
            if not out.exists():
                cached = False
                staging = cache.staging_path(out)
                # A build that died before publishing left this; its training checkpoint (kept
                # beside it) lets the rebuild resume.
                shutil.rmtree(staging, ignore_errors=True)
                with torch_threads(step_threads(call, ctx)):
                    built = build_step(call, index, source, staging, ctx,
                                       cache.decisions_in(cache_dir))  # fmt: skip
                notes += [f"{call.canonical()}: {n}" for n in built]
                cache.publish(staging, out, key)
        source = str(out)
    return ChainOutput(Path(source), cached, 0.0 if cached else time.perf_counter() - start, notes)


class Executor:
    """Builds a plan's chains, deciding where and in what order: ``run``, ``sweep`` and ``tune``
    hand every chain to one. This one (``LOCAL``, the default) builds them in turn, in this
    process; a distributed executor subclasses it, overrides :meth:`attempt` and is passed as
    ``executor=`` to ``run_plan`` or ``run_tune``: the search and the pipeline stay as they are.

    ``width`` is how many chains it builds at once: the tune search proposes that many
    candidates per wave (1: one after another, today's search exactly).
    """

    width = 1
    timing_node: str | None = None  # where latency is measured, when not here (a Ray node)

    def timed(self, measure: Callable[..., Any], *args: Any) -> Any:
        """``measure(*args)`` (a latency measurement) where latency is measured: here, in this
        process, with nothing of this executor building meanwhile."""
        return measure(*args)

    def machine(self) -> dict[str, Any]:
        """The fingerprint of the machine latency is measured on, for the results."""
        from squeeze.measure.machine import fingerprint

        return fingerprint()

    def close(self) -> None:
        """Release what building started (a distributed executor's cluster connection);
        nothing here. The command that made the executor closes it."""

    def attempt(
        self, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext, cache_dir: Path,
        model_key: str, started: Callable[[int], None], *, stop_at_failure: bool = False,
    ) -> list[ChainOutput | ValidationError]:  # fmt: skip
        """Each chain built as :func:`run_chain` builds it, in the order of ``chains`` whatever
        order they were built in: its output, or the validation error its step failed with
        (the tune search records that candidate as failed and goes on). ``started(i)`` as
        chain ``i`` starts; ``stop_at_failure`` may leave chains after a failure unbuilt (the
        list is then shorter)."""
        outcomes: list[ChainOutput | ValidationError] = []
        for index, calls in enumerate(chains):
            started(index)
            try:
                outcomes.append(run_chain(calls, ctx, cache_dir, model_key))
            except ValidationError as error:
                outcomes.append(error)
                if stop_at_failure:
                    break
        return outcomes

    def build(
        self, chains: Sequence[tuple[StepCall, ...]], ctx: ChainContext, cache_dir: Path,
        model_key: str, started: Callable[[int], None],
    ) -> list[ChainOutput]:  # fmt: skip
        """Every chain's output, as :meth:`attempt` builds them; a chain's failure raised, as a
        run or sweep fails on it."""
        outputs = []
        for outcome in self.attempt(chains, ctx, cache_dir, model_key, started,
                                    stop_at_failure=True):  # fmt: skip
            if isinstance(outcome, ValidationError):
                raise outcome
            outputs.append(outcome)
        return outputs


LOCAL = Executor()
