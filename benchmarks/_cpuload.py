"""How much of the machine other processes took while a benchmark timed.

Shared by benchmarks/embedders.py and benchmarks/st_peer.py, the latter run by the peer's own
venv (no squeeze installed): both run as scripts, so this sits beside them with the standard
library only (the leading underscore: a helper, not a benchmark of its own). Others' work on a
small shared machine slows multi-threaded inference most (its threads wait for one another at
every layer), so a figure taken under load says so beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

Stamp = tuple[float, float, float]


def cpu_seconds() -> Stamp | None:
    """(all CPUs busy, all CPUs in total, this process) in seconds; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = (user + nice + system + irq + softirq + steal) / tick
    own = os.times()
    return busy, busy + (idle + iowait) / tick, own.user + own.system


def others_share(before: Stamp | None, after: Stamp | None) -> float | None:
    """The share of the machine's CPU time other processes took between two stamps."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    others = (after[0] - before[0]) - (after[2] - before[2])
    return round(max(0.0, others) / (after[1] - before[1]), 3)
