"""Latency you can trust: warm-up, repeated timed runs, medians with spread, like with like.

Every target in one call is measured with the same inputs, threads and run counts, in rotating
blocks (each target warmed up, then timed, the order rotating over rounds): alternating PyTorch
and ONNX Runtime call by call made both 1.5-2.3x slower on a 2-core machine, and a single block
per target lets drift in clock speed favour whoever ran first.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from squeeze.core.config import choice_problem
from squeeze.core.errors import ConfigError, Problem
from squeeze.core.faults import stop_if_interrupted
from squeeze.core.types import Latency, ProgressFactory, no_progress
from squeeze.measure.machine import fingerprint

# How PyTorch targets compute: fp32, TF32 matmuls (CUDA), or weights and activations in half.
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class BenchSettings:
    """One set of measurement settings shared by every target of a comparison.

    ``precision`` and ``compile`` apply to PyTorch targets (an export's precision is in its
    file): ``compile`` runs the model through ``torch.compile``, compiled during warm-up.
    """

    batch_sizes: tuple[int, ...] = (1,)
    seq_len: int = 128
    threads: int | None = None
    runs: int = 30
    warmup: int = 5
    rounds: int = 3
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(Problem("{batch_sizes} needs sizes >= 1, like 1,8"))
        if self.seq_len < 2:
            raise ConfigError(Problem("{seq_len} must be at least 2"))
        if self.runs < 2 or self.warmup < 0 or self.rounds < 1:
            raise ConfigError(Problem("{runs} must be >= 2 and {warmup} >= 0"))
        if self.threads is not None and self.threads < 1:
            raise ConfigError(Problem("{threads} must be >= 1"))
        if self.precision not in PRECISIONS:
            raise ConfigError(choice_problem("precision", self.precision, PRECISIONS))
        if self.precision == "tf32" and not self.device.startswith("cuda"):
            raise ConfigError(Problem("{precision} tf32 is a CUDA matmul mode; pass {device} cuda"))


@dataclass
class Target:
    """Something to time: ``run(inputs)`` does one batch; ``sync`` waits for the device.

    ``prepare`` turns numpy inputs into what ``run`` takes (tensors on the device), outside the
    timed region. ``peak_memory`` is read after each of the target's blocks, ``reset_peak``
    called before each: on CUDA, torch's peak counter is one per device, so without the reset
    every model of a comparison would report the largest one's peak.
    """

    name: str
    runtime: str
    run: Callable[[Any], Any]
    prepare: Callable[[dict[str, np.ndarray]], Any] = lambda inputs: inputs
    sync: Callable[[], None] = lambda: None
    peak_memory: Callable[[], int | None] = lambda: None
    reset_peak: Callable[[], None] = lambda: None


@dataclass
class BenchResult:
    """All latencies of one target, with the machine they were taken on."""

    name: str
    runtime: str
    latencies: list[Latency]
    peak_memory_bytes: int | None
    machine: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "latency": [lat.to_dict() for lat in self.latencies],
            "peak_memory_bytes": self.peak_memory_bytes,
            "machine": self.machine,
            **self.extra,
        }


def synthetic_inputs(
    input_names: Sequence[str],
    batch: int,
    seq_len: int,
    *,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A batch shaped like tokenized text: ordinary token ids framed by special tokens.

    Every row is full length (no padding), so the timed work is exactly batch x seq_len tokens.
    """
    rng = np.random.default_rng(seed)
    special = set(special_ids)
    ordinary = np.array([i for i in range(vocab_size) if i not in special])
    ids = rng.choice(ordinary, size=(batch, seq_len))
    if len(special_ids) >= 2:
        ids[:, 0], ids[:, -1] = special_ids[0], special_ids[1]
    shapes = {
        "input_ids": ids,
        "attention_mask": np.ones((batch, seq_len)),
        "token_type_ids": np.zeros((batch, seq_len)),
    }
    return {name: shapes[name].astype(np.int64) for name in input_names}


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Pin PyTorch's intra-op threads for a measurement and restore them after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time(target: Target, prepared: Any, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        target.run(prepared)
    target.sync()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        target.run(prepared)
        target.sync()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def process_peak_rss_bytes() -> int:
    """The process's resident-set high-water mark (includes loading: an upper bound)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(
    targets: Sequence[Target],
    inputs_for: Callable[[int], dict[str, np.ndarray]],
    settings: BenchSettings,
    threads: int,
    *,
    progress: ProgressFactory = no_progress,
) -> list[BenchResult]:
    """Time every target at every batch size with identical settings, in rotating blocks.

    Each batch size is measured completely (every round, every target) before the next.

    Args:
        targets: What to time.
        inputs_for: Batch size -> numpy inputs (the same for every target).
        settings: Shapes, runs, warm-up and rounds.
        threads: Intra-op threads every target was set up with (recorded).
        progress: Progress-bar factory.
    """
    per_round = max(1, -(-settings.runs // settings.rounds))  # ceil: at least `runs` in total
    samples: dict[tuple[int, int], list[float]] = {}
    peaks: dict[int, int | None] = {}
    total = settings.rounds * len(targets) * len(settings.batch_sizes)
    # One batch size at a time: a PyTorch model timed at batch 1 right after its own batch-8
    # block read 76 ms instead of 65 ms (BERT-base pruned, 2 cores), so shapes never interleave.
    with torch_threads(threads), progress("Benchmarking", total) as bar:
        for batch in settings.batch_sizes:
            for round_index in range(settings.rounds):
                for i in range(len(targets)):
                    t = (i + round_index) % len(targets)
                    target = targets[t]
                    target.reset_peak()
                    prepared = target.prepare(inputs_for(batch))
                    samples.setdefault((t, batch), []).extend(
                        _time(target, prepared, per_round, settings.warmup)
                    )
                    peak = target.peak_memory()
                    if peak is not None:
                        peaks[t] = max(peaks.get(t) or 0, peak)
                    bar.advance(1, info=f"{target.name} batch {batch}")
                    stop_if_interrupted()
    machine = fingerprint()
    machine["torch_threads"] = threads
    shape = {"seq_len": settings.seq_len, "threads": threads, "device": settings.device}
    return [
        BenchResult(
            name=target.name,
            runtime=target.runtime,
            latencies=[
                Latency.from_samples(samples[(t, b)], batch=b, runtime=target.runtime, **shape)
                for b in settings.batch_sizes
            ],
            peak_memory_bytes=peaks.get(t),
            machine=machine,
        )
        for t, target in enumerate(targets)
    ]
