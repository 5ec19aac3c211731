"""How `squeeze tune` scales out: the demo search on 1 and 2 workers here, measured, and on 1 to
64 workers, simulated from the measured run's own per-candidate times.

Measured: `squeeze run examples/demo-tune.yaml` (the demo model, `make tune`'s search) as its own
process, once with ``--executor local`` and once per ``--workers N`` with ``--executor ray
--cpus-per-candidate C``, each from an empty artifact cache; wall time, candidates tried, the
waves the training went in, and the variant each selects (the same, or the line says why not).
Every run has ``OMP_NUM_THREADS=C``: the local run is one worker of C CPUs, and it builds each
candidate on as many threads as a Ray worker does (a recovery trained on 1 and on 2 threads ends
with other weights, so the comparison would otherwise be of other models).

Simulated: the search itself (``squeeze.plan.tune.search.Search``) proposing waves of 1 to 64
candidates, on a clock that charges each wave the longest of its builds, then every candidate's
timing and scoring one after another on the driver (where latency is measured, never while a
build runs), then the final measurement. The costs are fitted to the measured local run's
trace: a pruned candidate's build, a recovery step, a quantization, a timing, a scoring. Each
build is stretched by a random straggler factor (log-normal, --straggler); the decisions come
from an accuracy model shaped like the demo's (accuracy falls with the amount pruned and the
layers dropped and comes back with recovery; the global allocation and more steps recover
more). Prints, per worker count: waves, candidates, simulated wall time, speed-up over one
worker and the share spent measuring on the driver, which no worker count shortens.

    python benchmarks/distributed.py --budget 60m       # measure (about an hour here), simulate
    python benchmarks/distributed.py --simulate-only --trace .cache/distributed/local/trace.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from squeeze.core.stats import Scores
from squeeze.measure.machine import describe_machine, fingerprint
from squeeze.plan.recipe import Plan
from squeeze.plan.tune.config import TuneConfig
from squeeze.plan.tune.search import Built, Journal, Measured, Search, SearchContext

RECIPE = Path(__file__).resolve().parent.parent / "examples" / "demo-tune.yaml"
WIDTHS = (1, 2, 4, 8, 16, 32, 64)
RAY_START_S = 5.0  # measured here: a local Ray instance starts in 4.5 s


def recipe(work: Path, budget: str | None) -> Path:
    """The demo recipe; with ``budget``, a copy in ``work`` searching that long (its paths made
    absolute), so that neither search is cut short by the clock and the two compare on what they
    decide (a faster one legitimately tries more within a budget)."""
    if budget is None:
        return RECIPE
    import yaml

    record = yaml.safe_load(RECIPE.read_text())
    record["model"] = str((RECIPE.parent / record["model"]).resolve())
    record["data"]["source"] = str((RECIPE.parent / record["data"]["source"]).resolve())
    record["tune"]["budget"] = budget
    copy = work / RECIPE.name
    copy.write_text(yaml.safe_dump(record, sort_keys=False))
    return copy


def measure(workers: int, cpus: float, work: Path, demo: Path) -> dict[str, Any]:
    """One demo search as a user runs it, from an empty cache: wall time and what it chose."""
    name = "local" if workers == 1 else f"ray-{workers}"
    out, cache = work / name, work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    cluster = [] if workers == 1 else ["--executor", "ray", "--workers", str(workers),
                                       "--cpus-per-candidate", f"{cpus:g}"]  # fmt: skip
    args = [sys.executable, "-m", "squeeze", "run", str(demo), "-o", str(out), "--overwrite",
            "--cache-dir", str(cache), "--json", "--quiet", *cluster]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads(cpus))}
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: nothing within budget, still a measured search
        sys.exit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    trace = summary["trace"]
    return {
        "run": name, "workers": workers, "wall_s": round(wall, 1),
        "candidates": len(trace), "selected": summary.get("selected"),
        "built_by": sorted({t["built_by"].split(" pid ")[0] for t in trace if t["built_by"]}),
        "trace": str(out / "trace.json"),
    }  # fmt: skip


def threads(cpus: float) -> int:
    """The threads a Ray task of ``cpus`` CPUs trains on (squeeze's executor: at least one)."""
    return max(1, math.floor(cpus))


def fit_costs(trace: dict[str, Any]) -> dict[str, float]:
    """Per-candidate costs, in seconds, from a one-worker trace (``build_seconds`` of each
    candidate is its builds; the rest of ``seconds`` its timing and scoring)."""
    trials = trace["trials"]
    quantize = [t for t in trials if t["stage"] == "quantize"]
    pruned = [t for t in trials if t["stage"] != "quantize"]
    # Dropped before recovery: a build and a timing (and a scoring, for a worse start).
    early = [t for t in pruned if t["outcome"] == "dropped"]
    trained = [t for t in pruned if t["outcome"] in ("within", "over") and t["recovery_steps"]]
    if early:
        raw_build = statistics.median(t["build_seconds"] for t in early)
        per_step = statistics.median(
            max(t["build_seconds"] - raw_build, 0.0) / t["recovery_steps"] for t in trained
        )
    else:  # every pruned candidate was trained: each one's raw and recovered builds, fitted
        steps = [float(t["recovery_steps"]) for t in trained]
        per_step, both = statistics.linear_regression(steps, [t["build_seconds"] for t in trained])
        raw_build = max(both / 2, 0.0)
    timing = statistics.median(
        [t["seconds"] - t["build_seconds"] for t in early if "not faster" in t["reason"]]
        or [t["seconds"] - t["build_seconds"] for t in quantize if t["outcome"] == "dropped"]
        or [1.0]
    )
    # A finished candidate is timed once and scored twice (before and after recovery).
    scoring = statistics.median(
        max((t["seconds"] - t["build_seconds"] - timing) / 2, 0.1) for t in trained
    )
    return {
        "quantize_build": statistics.median(t["build_seconds"] for t in quantize),
        "raw_build": raw_build, "per_step": per_step, "timing": timing, "scoring": scoring,
    }  # fmt: skip


def _param(chain: str, name: str) -> float:
    match = re.search(rf"\b{name}=([\w.]+)", chain)
    return float(match.group(1)) if match else 0.0


class SimulatedWorld:
    """The search's view of the demo, on a simulated clock: accuracy and latency from a model
    shaped like the demo's, every build and measurement charged its fitted cost."""

    def __init__(self, costs: dict[str, float], straggler: float, seed: int) -> None:
        self.costs, self.straggler = costs, straggler
        self.rng = random.Random(seed)
        self.now, self.waves, self.measuring = 0.0, 0, 0.0

    def _build_cost(self, chain: str) -> float:
        steps = _param(chain, "finetune_steps") or 1.5 * _param(chain, "max_steps")  # + teacher
        if "structured" not in chain:
            return self.costs["quantize_build"]
        return self.costs["raw_build"] + steps * self.costs["per_step"]

    def build(self, chains: list[str]) -> list[Built]:
        """A wave: as long as its slowest build, each stretched by a straggler factor."""
        self.waves += 1
        spread = [math.exp(self.rng.gauss(0.0, self.straggler)) for _ in chains]
        self.now += max(self._build_cost(c) * f for c, f in zip(chains, spread, strict=True))
        return [Built(chain) for chain in chains]

    def latency(self, path: str) -> float:
        self._measure(self.costs["timing"])
        amount, layers = _param(path, "heads"), _param(path, "layers")
        tail = 0.55 if "quantize" in path else 1.0
        return 12.0 * tail * (1 - 0.75 * amount) * (1 - 0.15 * layers) if path else 12.0

    def validate(self, path: str) -> Measured:
        self._measure(self.costs["scoring"])
        correct = round(self.accuracy(path) * 1000)
        return Measured(
            correct / 1000, Scores("accuracy", (1.0,) * correct + (0.0,) * (1000 - correct))
        )

    def _measure(self, seconds: float) -> None:
        self.now += seconds
        self.measuring += seconds

    @staticmethod
    def accuracy(chain: str) -> float:
        if not chain:
            return 0.90
        amount, layers = _param(chain, "heads"), _param(chain, "layers")
        steps = _param(chain, "finetune_steps") or _param(chain, "max_steps")
        loss = 0.004 if "quantize" in chain else 0.0
        loss += 0.01 if "static=true" in chain else 0.0
        damage = 0.6 * amount + 0.12 * layers
        if steps:
            damage *= 0.05 * (100 / steps) ** 0.5
            damage -= 0.006 if "allocation=global" in chain else 0.0
        return 0.90 - loss - max(damage, 0.0)


def simulate(costs: dict[str, float], straggler: float, seed: int, work: Path) -> list[dict]:
    """The demo search at each width, on the simulated clock."""
    from squeeze.plan.recipe import load_plan

    tune = load_plan(RECIPE).tune
    assert tune is not None
    rows = []
    for width in WIDTHS:
        world = SimulatedWorld(costs, straggler, seed)
        ctx = SearchContext(world.build, world.latency, world.validate, width=width,
                            clock=lambda w=world: w.now)  # fmt: skip
        journal = work / "simulated" / f"{width}.jsonl"
        journal.unlink(missing_ok=True)
        config = TuneConfig(**{**_fields(tune), "budget": "10h"})
        search = Search(Plan(model="demo", variants=()), config, ctx, Journal(journal))
        trials = search.run()
        finished = sum(t.finished for t in trials)
        # The final measurement: every finished candidate and the baseline scored on the test
        # split and timed together (three rounds), on the driver.
        world._measure((finished + 1) * (costs["scoring"] + 3 * costs["timing"]))
        wall = world.now + (RAY_START_S if width > 1 else 0.0)
        rows.append({"workers": width, "waves": world.waves, "candidates": len(trials),
                     "wall_s": round(wall, 1), "measuring_share": round(world.measuring / wall, 3),
                     "selected": search.best.chain if search.best else None})  # fmt: skip
    one = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(one / row["wall_s"], 2)
    return rows


def _fields(config: TuneConfig) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(config, f.name) for f in fields(config)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".cache/distributed"))
    parser.add_argument("--workers", default="2", help="Ray worker counts to measure, e.g. 2,4")
    parser.add_argument("--cpus-per-candidate", type=float, default=1.0)
    parser.add_argument("--budget", help="the searches' budget instead of the recipe's (60m)")
    parser.add_argument("--simulate-only", action="store_true")
    parser.add_argument("--trace", type=Path, help="a one-worker trace.json to fit costs from")
    parser.add_argument("--straggler", type=float, default=0.25, help="log-normal sigma")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    machine = describe_machine(fingerprint())
    print(f"machine: {machine}")
    if not args.simulate_only:
        print(f"every run: OMP_NUM_THREADS={threads(args.cpus_per_candidate)} (one worker's)")
    measured = []
    if not args.simulate_only:
        for workers in [1, *(int(n) for n in args.workers.split(","))]:
            demo = recipe(args.work, args.budget)
            row = measure(workers, args.cpus_per_candidate, args.work, demo)
            measured.append(row)
            where = f", built on {', '.join(row['built_by'])}" if row["built_by"] else ""
            print(f"measured  {row['run']:>8}: {row['wall_s']:7.1f} s, {row['candidates']} "
                  f"candidates, selected {row['selected']}{where}")  # fmt: skip
        base = measured[0]
        for row in measured[1:]:
            same = "the same variant" if row["selected"] == base["selected"] else "ANOTHER variant"
            print(f"  {row['run']}: {base['wall_s'] / row['wall_s']:.2f}x the local wall time, "
                  f"{same} as local")  # fmt: skip
    trace_path = args.trace or (Path(measured[0]["trace"]) if measured else None)
    if trace_path is None or not trace_path.is_file():
        sys.exit("--simulate-only needs --trace: a trace.json of a one-worker demo search")
    costs = fit_costs(json.loads(trace_path.read_text()))
    print("costs fitted from " + str(trace_path) + ": "
          + ", ".join(f"{k} {v:.2f} s" for k, v in costs.items()))  # fmt: skip
    rows = simulate(costs, args.straggler, args.seed, args.work)
    print(f"\nsimulated (stragglers: log-normal sigma {args.straggler}; Ray start "
          f"{RAY_START_S:g} s beyond one worker)")  # fmt: skip
    print(f"{'workers':>7} {'waves':>5} {'candidates':>10} {'wall':>9} {'speed-up':>8} "
          f"{'measuring':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['workers']:>7} {r['waves']:>5} {r['candidates']:>10} {r['wall_s']:>7.0f} s "
              f"{r['speedup']:>7.2f}x {r['measuring_share']:>8.0%}")  # fmt: skip
    if len({r["selected"] for r in rows}) > 1:
        print("note: the simulated searches did not all select the same candidate")
    if args.json:
        record = {"machine": machine, "measured": measured, "costs": costs,
                  "simulated": rows}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
