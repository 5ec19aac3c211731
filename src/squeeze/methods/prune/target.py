"""Latency-aware structured pruning: the amount that meets a speed target on this machine.

Speed-ups from removing heads and FFN neurons are not proportional to the parameters removed
(embeddings, LayerNorms and softmax do not shrink, small matrices use the cores less well) and
differ between CPUs, so the amount is found by measuring: the model pruned at a few amounts is
timed in PyTorch (the format ``squeeze prune`` writes) at batch 1 and the step's token count, a
piecewise-linear latency model through those points gives the amount for the target, and that
amount is timed again to say how close it came (refined up to twice until it meets the target
within 5%; otherwise the least pruning timed at or under the target is taken).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from typing import Any

from squeeze.methods.prune.slicing import max_amount, prune_structured

PROBES = (0.25, 0.5, 0.75)
TOLERANCE = 0.05  # a latency at most 5% under the goal ends the search
REFINEMENTS = 2


def _timer(loaded: Any, seq_len: int, device: str) -> Any:
    """A function timing a model shaped like ``loaded`` (median ms at batch 1)."""
    import torch

    from squeeze.measure.bench import frame_ids, torch_target
    from squeeze.measure.latency import BenchSettings, measure, synthetic_inputs

    settings = BenchSettings(seq_len=seq_len, runs=20, rounds=1, warmup=3, device=device)
    inputs = synthetic_inputs(
        loaded.input_names, 1, seq_len, vocab_size=loaded.config.vocab_size,
        special_ids=frame_ids(loaded.tokenizer),
    )  # fmt: skip
    threads = torch.get_num_threads()

    def time_of(model: Any) -> float:
        target = torch_target("probe", replace(loaded, model=model), device)
        [result] = measure([target], lambda batch: inputs, settings, threads)
        return result.latencies[0].p50_ms

    return time_of


def _interpolate(points: list[tuple[float, float]], goal_ms: float, top: float) -> float:
    """The amount where the piecewise-linear latency through ``points`` reaches ``goal_ms``
    (extrapolated from the last two points up to ``top``)."""
    ordered = sorted(points)
    for (a0, t0), (a1, t1) in itertools.pairwise(ordered):
        if t1 <= goal_ms <= t0 and t0 != t1:
            return a0 + (t0 - goal_ms) / (t0 - t1) * (a1 - a0)
    (a0, t0), (a1, t1) = ordered[-2], ordered[-1]
    if goal_ms < t1 and t0 > t1:
        return min(top, a1 + (t1 - goal_ms) / (t0 - t1) * (a1 - a0))
    return top if goal_ms < t1 else 0.0


def find_amount(
    loaded: Any, spec: Any, config: Any, importance: Any, *, seq_len: int, device: str
) -> tuple[float, list[str], dict[str, Any]]:
    """The fraction of heads and FFN neurons to remove (both alike) for ``config``'s
    ``target_speedup`` or ``target_latency_ms``; with notes and the measured points."""
    time_of = _timer(loaded, seq_len, device)
    base_ms = time_of(loaded.model)
    goal_ms = config.target_latency_ms or base_ms / config.target_speedup
    top = max_amount(loaded.config, spec)
    points: list[tuple[float, float]] = [(0.0, base_ms)]

    def probe(amount: float) -> float:
        model = copy.deepcopy(loaded.model)
        trial = replace(config, heads=amount, ffn=amount, target_speedup=None,
                        target_latency_ms=None, finetune_steps=0)  # fmt: skip
        prune_structured(model, spec, trial, importance)
        ms = time_of(model)
        points.append((amount, ms))
        return ms

    if goal_ms >= base_ms:
        amount, measured = 0.0, base_ms
    else:
        for amount in PROBES:
            if amount <= top:
                probe(amount)
        amount = _interpolate(points, goal_ms, top)
        measured = probe(amount)
        for _ in range(REFINEMENTS):
            close = goal_ms * (1 - TOLERANCE) <= measured <= goal_ms
            if close or (amount >= top and measured > goal_ms):
                break
            amount = _interpolate(points, goal_ms, top)
            measured = probe(amount)
        if measured > goal_ms:
            # The least pruning timed at or under the goal, if any: the target is met for sure.
            meeting = sorted((a, t) for a, t in points if t <= goal_ms and a > 0)
            if meeting:
                amount, measured = meeting[0]
    speed, ms = config.target_speedup, config.target_latency_ms
    target = f"{speed:g}x" if speed else f"{ms:g} ms"
    speedup = base_ms / measured
    met = measured <= goal_ms
    notes = [
        f"target {target}: removed {amount:.0%} of heads and FFN neurons; measured "
        f"{measured:.2f} ms vs {base_ms:.2f} ms ({speedup:.2f}x) in PyTorch at batch 1, "
        f"{seq_len} tokens, from {len(points)} timed points"
        + ("" if met else f"; {1 - goal_ms / measured:.0%} short of the target")
    ]
    details = {
        "target": {"speedup": config.target_speedup, "latency_ms": config.target_latency_ms},
        "amount": amount,
        "measured_ms": measured,
        "baseline_ms": base_ms,
        "speedup": speedup,
        "met": met,
        "points": [{"amount": a, "p50_ms": t} for a, t in sorted(points)],
    }
    return amount, notes, details
