"""The executor seam: ``run``/``sweep`` and ``tune`` build every chain through the executor they
are given, and an executor that finishes chains out of order changes nothing in the results."""

from __future__ import annotations

import json
from pathlib import Path

from squeeze.plan.execute import LOCAL, Executor
from squeeze.plan.pipeline import run_plan
from squeeze.plan.recipe import plan_from
from squeeze.plan.steps import chain_text
from squeeze.plan.tune.config import TuneConfig
from squeeze.plan.tune.run import run_tune

VARIANTS = ["quantize(int8)", "structured(heads=0.5, ffn=0.5)",
            "structured(heads=0.5, ffn=0.5) -> quantize(int8)"]  # fmt: skip


class LastFirst(Executor):
    """Builds the chains it is handed last first, as a pool of workers may finish them, and
    records each hand-over."""

    def __init__(self) -> None:
        self.handed: list[list[str]] = []

    def attempt(self, chains, ctx, cache_dir, model_key, started, *, stop_at_failure=False):
        self.handed.append([chain_text(calls) for calls in chains])
        last = len(chains) - 1
        backwards = super().attempt(
            chains[::-1], ctx, cache_dir, model_key, lambda i: started(last - i)
        )
        return backwards[::-1]


def _plan(model: Path, data: Path):
    return plan_from(
        {
            "model": str(model),
            "data": {"source": str(data), "max_samples": 300},
            "max_length": 32,
            "bench": {"batch": 1, "runs": 3, "rounds": 1, "warmup": 1},
            "variants": VARIANTS,
        }
    )


def _rows(out: Path) -> list[tuple]:
    """What a run reports of each variant, less what depends on the cache folder, the clock or
    the build order (which chain finds a shared first step already built): the artifact's
    entry name stands for its cache key."""
    results = json.loads((out / "results.json").read_text())
    return [
        (v["name"], v["chain"], v["format"], Path(v["artifact"]).name, v["params_total"],
         v["params_nonzero"], v["bytes_on_disk"], v["metric"], v["scores"])
        for v in results["variants"]
    ]  # fmt: skip


def test_a_run_builds_its_variants_through_the_executor_in_plan_order(
    trained_classifier, order_csv, tmp_path
):
    plan = _plan(trained_classifier, order_csv)
    said: dict[str, list[str]] = {"local": [], "last-first": []}
    executor = LastFirst()
    for name, chosen in (("local", LOCAL), ("last-first", executor)):
        run_plan(
            plan, tmp_path / name, cache_dir=tmp_path / f"cache-{name}", executor=chosen,
            log=said[name].append,
        )  # fmt: skip

    # Every chain in one hand-over, in the plan's order.
    assert executor.handed == [[v.chain for v in plan.variants]]
    building = [[m for m in messages if m.startswith("building")] for messages in said.values()]
    assert building[0] == [f"building {v.name}: {v.chain}" for v in plan.variants]
    assert building[1] == building[0][::-1]  # each said as its build started
    # Built last first, reported in order: same variants, cache keys, sizes and metrics.
    local, last_first = _rows(tmp_path / "local"), _rows(tmp_path / "last-first")
    assert [row[0] for row in local] == ["baseline", *(v.name for v in plan.variants)]
    assert last_first == local


def test_a_search_builds_every_candidate_through_the_executor(
    trained_classifier, order_csv, tmp_path
):
    plan = _plan(trained_classifier, order_csv)
    config = TuneConfig(
        max_accuracy_drop=100, budget="10m", amounts=("0.5",), layers=(),
        recovery_steps=("2",), quantize=("dynamic",),
    )  # fmt: skip
    executor = LastFirst()
    results, trials, _ = run_tune(
        plan, config, tmp_path / "out", cache_dir=tmp_path / "cache", executor=executor
    )
    searched, final = executor.handed[:-1], executor.handed[-1]
    assert all(len(chains) == 1 for chains in searched)  # the search builds one at a time
    built = {chains[0] for chains in searched}
    assert {t.chain for t in trials if t.finished} <= built
    # The final measurement hands over every finished candidate at once.
    assert final == [t.chain for t in trials if t.finished]
    assert [v.name for v in results.variants[1:]] == final
    assert results.selected in final
