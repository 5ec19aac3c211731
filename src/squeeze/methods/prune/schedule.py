"""Gradual sparsity schedules for pruning during recovery fine-tuning."""

from __future__ import annotations


def cubic_sparsity(step: int, total_steps: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) * (1 - t/n)^3.

    Prunes fast while many weights are redundant and slowly near the target, which recovers
    accuracy better than pruning everything at once.
    """
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3
