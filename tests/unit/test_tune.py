"""The tune search on a scripted world: which candidates it tries, in which order, what it
drops early and why, and that an interrupted search resumes without measuring again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from squeeze.core.errors import ConfigError, ValidationError
from squeeze.core.stats import Scores
from squeeze.plan.recipe import Plan
from squeeze.plan.tune.config import TuneConfig, parse_duration
from squeeze.plan.tune.search import Built, Journal, Measured, Search, SearchContext

N = 1000
UNTIMED = {"seconds": 0, "build_seconds": 0}  # what a trace says that depends on the clock


def _param(chain: str, name: str, default: float = 0.0) -> float:
    match = re.search(rf"\b{name}=([\w.]+)", chain)
    return float(match.group(1)) if match else default


class World:
    """Latency falls with the amount pruned and the layers dropped; accuracy falls with both
    and comes back with recovery steps; the global allocation recovers 0.6 points more."""

    def __init__(self, n: int = N) -> None:
        self.n = n  # validation samples: fewer make the intervals quicker to compute
        self.built: list[str] = []
        self.timed: list[str] = []
        self.scored: list[str] = []

    def build(self, chains: list[str]) -> list[Built | ValidationError]:
        """A wave, built at once (in order: see :class:`OutOfOrder`)."""
        self.built += chains
        return [Built(chain) for chain in chains]

    def latency(self, path: str) -> float:
        self.timed.append(path)
        if not path:
            return 40.0  # the fp32 baseline
        amount, layers = _param(path, "heads"), _param(path, "layers")
        static = 1.1 if "static=true" in path else 1.0
        return 10.0 * (1 - 0.8 * amount) * (1 - 0.15 * layers) * static

    def accuracy(self, chain: str) -> float:
        if not chain:
            return 0.90
        amount, layers = _param(chain, "heads"), _param(chain, "layers")
        steps = _param(chain, "finetune_steps") or _param(chain, "max_steps")
        loss = 0.004 if "quantize" in chain else 0.0  # 0.4 points for int8
        if "static=true" in chain:
            loss += 0.01
        damage = 0.6 * amount + 0.12 * layers
        if steps:
            damage *= 0.05 * (100 / steps) ** 0.5
            if "allocation=global" in chain:
                damage -= 0.006
        return 0.90 - loss - max(damage, 0.0)

    def validate(self, path: str) -> Measured:
        self.scored.append(path)
        n = self.n
        correct = round(self.accuracy(path) * n)
        return Measured(correct / n, Scores("accuracy", (1.0,) * correct + (0.0,) * (n - correct)))

    def context(self, log=lambda message: None, width: int = 1) -> SearchContext:
        return SearchContext(self.build, self.latency, self.validate, log=log, width=width)


def _search(world, tmp_path, width: int = 1, **config) -> Search:
    tune = TuneConfig(**{"budget": "1h", **config})
    return Search(Plan(model="m", variants=()), tune, world.context(width=width),
                  Journal(tmp_path / "j"))  # fmt: skip


def test_the_search_bisects_then_rescues_then_drops_layers(tmp_path):
    world = World()
    search = _search(world, tmp_path)
    trials = search.run()
    steps = [(t.stage, t.chain, t.outcome) for t in trials]
    # Quantization first: dynamic is fastest and within budget, static slower, never scored.
    assert steps[0] == ("quantize", "quantize(dtype=int8)", "within")
    assert steps[1][0] == "quantize" and steps[1][2] == "dropped"
    assert "static=true" not in " ".join(world.scored)
    # Bisection over 0.25 ... 0.75: the middle first, then up or down by the verdicts.
    amounts = [_param(t.chain, "heads") for t in trials if t.stage == "amount"]
    assert amounts[0] == 0.5
    # Every pruned candidate is timed before it is trained, and a candidate tried once is
    # never tried again.
    chains = [t.chain for t in trials]
    assert len(chains) == len(set(chains))
    best = search.best
    assert best is not None and best.within
    assert all(t.latency_ms >= best.latency_ms for t in trials if t.within)
    # The frontier: the first amount that misses gets the global allocation before more steps.
    rescued = [t for t in trials if t.stage in ("allocation", "recovery")]
    assert rescued and rescued[0].stage == "allocation"
    assert any(t.stage == "layers" for t in trials)


def test_a_candidate_no_faster_than_the_best_is_not_trained(tmp_path):
    world = World()
    search = _search(world, tmp_path, amounts=("0.5",), layers=("1", "2", "3"))
    trials = search.run()
    dropped = [t for t in trials if t.reason.startswith("not faster")]
    for trial in dropped:
        assert trial.chain not in world.built  # timed unrecovered, never recovered
        assert trial.metric is None


def test_a_candidate_starting_worse_than_a_failure_is_not_recovered(tmp_path):
    world = World()
    # 0.25 passes (1.15 points), 0.5 misses (1.9); three layers off 0.25 start further down
    # (51 points) than 0.5 did (30), so they are not trained.
    search = _search(world, tmp_path, amounts=("0.25", "0.5"), layers=("3",),
                     allocations=("uniform",), near_miss=0.0, max_accuracy_drop=1.5)  # fmt: skip
    trials = search.run()
    by_reason = [t for t in trials if t.reason.startswith("starts")]
    assert by_reason, [(t.chain, t.outcome, t.reason) for t in trials]
    assert all(t.chain not in world.built for t in by_reason)


def test_the_budget_stops_the_search_before_training_it_cannot_afford(tmp_path):
    world = World()
    ticks = iter(range(0, 10_000, 1))
    search = _search(world, tmp_path, budget="60s")
    search.ctx.clock = lambda: float(next(ticks))
    trials = search.run()
    assert search.out_of_time
    assert trials[-1].outcome == "skipped" and trials[-1].reason == "out of time"


def test_an_interrupted_search_resumes_from_its_journal(tmp_path):
    reference = _search(World(), tmp_path / "ref").run()

    class Stop(Exception):
        pass

    def stop_at_third(message: str) -> None:
        if message.startswith("[3]"):
            raise Stop

    world = World()
    first = _search(world, tmp_path / "run")
    first.ctx = world.context(stop_at_third)
    with pytest.raises(Stop):
        first.run()
    measured_before = len(world.timed) + len(world.scored)

    again = World()
    resumed = _search(again, tmp_path / "run").run()
    assert [t.to_dict() | UNTIMED for t in resumed] == [t.to_dict() | UNTIMED for t in reference]
    # What the first run measured is replayed from the journal, not measured again.
    assert len(again.timed) + len(again.scored) == (
        len(World().timed) + _measurements(tmp_path / "ref") - measured_before
    )


def _measurements(folder) -> int:
    return len((folder / "j").read_text().splitlines())


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"budget": "5x"}, "budget takes a duration"),
        ({"amounts": ("0.5", "1.2")}, "1.2 is outside [0, 1)"),
        ({"quantize": ("dynamic,fast",)}, "'fast' is not one of"),
        ({"allocations": ("even",)}, "'even' is not one of"),
    ],
)
def test_bad_tune_configs(kwargs, phrase):
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        TuneConfig(**kwargs)


def test_durations():
    assert parse_duration("20m") == 1200 and parse_duration("1.5h") == 5400
    assert parse_duration("90") == 90 and parse_duration("soon") is None
    assert TuneConfig(amounts=("0.5,0.25",)).amount_ladder == [0.25, 0.5]


def test_the_default_search_space_fits_the_model():
    """Default layers stop short of the model's depth (none where its layers share one block);
    default amounts that leave the same shape as a smaller one are not searched twice."""
    from transformers import BertConfig

    from squeeze.model.tiny import tiny_config

    fitted, notes = TuneConfig().fitted(tiny_config("bert"))  # 2 layers, 4 heads, FFN 64
    assert fitted.layer_ladder == [1] and notes == ["layers to drop: 1 (the model has 2 layers)"]
    assert fitted.amount_ladder == [0.25, 0.375, 0.5, 0.625, 0.75]
    assert fitted.fitted(tiny_config("bert")) == (fitted, [])  # fitting twice changes nothing
    deep, notes = TuneConfig().fitted(tiny_config("bert", layers=4))
    assert deep.layer_ladder == [1, 2] and not notes
    # 2 heads and 2 neurons: 0.25 removes nothing, 0.375 and up all leave one of each.
    narrow = BertConfig(hidden_size=4, num_attention_heads=2, intermediate_size=2)
    small, notes = TuneConfig().fitted(narrow)
    assert small.amount_ladder == [0.375] and notes[-1].startswith("amounts searched: 0.375 (")
    given, _ = TuneConfig(amounts=("0.25,0.5",)).fitted(narrow)
    assert given.amount_ladder == [0.25, 0.5]  # searched as given


@pytest.mark.parametrize(
    ("family", "kept", "why"),
    [("bert", [1], "the model has 2 layers"), ("albert", [], "its layers share one block")],
)
def test_given_layers_the_model_lacks_are_left_out_with_a_note(family, kept, why):
    """A recipe written for a deeper model still runs: layers the model lacks are not tried."""
    from squeeze.model.tiny import tiny_config

    fitted, notes = TuneConfig(layers=("1", "2")).fitted(tiny_config(family))
    assert fitted.layer_ladder == kept
    assert notes == [f"layers to drop: {', '.join(map(str, kept)) or 'none'} ({why})"]


def test_a_candidate_that_fails_to_build_is_recorded_and_the_search_goes_on(tmp_path):
    class Failing(World):
        def build(self, chains: list[str]) -> list[Built | ValidationError]:
            error = ValidationError("the ONNX export disagrees with PyTorch (max diff 0.3)")
            built = super().build(chains)
            return [error if "static=true" in c else b for c, b in zip(chains, built, strict=True)]

    small = {"amounts": ("0.5",), "layers": ("1",)}
    trials = _search(Failing(200), tmp_path, **small).run()
    static = next(t for t in trials if "static=true" in t.chain)
    assert static.outcome == "failed" and static.latency_ms is None
    assert static.reason == "failed to build: the ONNX export disagrees with PyTorch (max diff 0.3)"
    assert any(t.stage == "layers" for t in trials)  # the search went on
    again = Failing(200)
    resumed = _search(again, tmp_path, **small).run()  # the journal remembers the failure
    assert not [c for c in again.built if "static=true" in c]
    assert [t.outcome for t in resumed] == [t.outcome for t in trials]


def _final(name: str, metric: float, p50: float, ci: list[float] | None = None):
    from squeeze.model.tiny import latency_of
    from squeeze.report.results import VariantResult

    latency = {"cpu": latency_of(p50, p50 * 0.98, p50 * 1.02)}
    v = VariantResult(name, name, "onnxruntime", name, 1, 1, 1, metric=metric, latency=latency)
    v.drop_ci = ci
    return v


@pytest.mark.parametrize("gate_on", ["point", "upper"])
def test_tune_says_why_each_faster_candidate_was_not_selected(gate_on):
    from squeeze.engine.gates import Gates
    from squeeze.plan.tune.run import passed_over
    from squeeze.plan.tune.search import Trial
    from squeeze.report.results import SweepResults, derive

    def trial(order, chain, outcome, latency=None, drop=None, reason=""):
        return Trial(order, chain, "amount", "", latency_ms=latency, drop=drop, outcome=outcome,
                     reason=reason)  # fmt: skip

    trials = [
        trial(1, "q8", "within", 4.1, 0.4),
        trial(2, "q8+s0.5", "within", 2.1, 0.8),  # within on validation, over on test
        trial(3, "q8+s0.75", "over", 1.6, 1.35),
        trial(4, "q8+s0.75+l1", "dropped", 1.0, reason="starts 9.0 pts down before recovery"),
        trial(5, "q8+l1", "failed", reason="failed to build: max diff 0.3"),
        trial(6, "slow", "over", 6.0, 1.5),  # slower than the selected one: not named
        trial(7, "late", "skipped", 5.0, reason="out of time"),  # slower too
    ]
    variants = [
        _final("baseline", 0.90, 10.0),
        _final("q8", 0.895, 4.0),
        _final("q8+s0.5", 0.8884, 2.0),
        _final("q8+s0.75", 0.8865, 1.5),
        _final("slow", 0.885, 6.0),
    ]
    results = SweepResults("m", "accuracy", True, 1000, {}, {}, "baseline", variants)
    derive(results)
    results.variant("q8+s0.5").drop_ci = [0.9, 1.45]  # upper end over budget, point too
    gates = Gates(1.0, gate_on=gate_on)
    why = passed_over(results, trials, results.variant("q8"), gates)
    test = "test drop 1.16 points" + (" (95% interval up to 1.45)" if gate_on == "upper" else "")
    assert why == {
        "q8+s0.75+l1": "dropped by the search: starts 9.0 pts down before recovery",
        "q8+s0.75": "beyond budget on validation: validation drop 1.35 points > the 1-point budget",
        "q8+s0.5": f"within budget on validation, but {test} > the 1-point budget",
        "q8+l1": "failed to build: max diff 0.3",
    }
    # Nothing selected: every candidate says why.
    assert set(passed_over(results, trials, None, gates)) == {t.chain for t in trials}


TRACES = json.loads((Path(__file__).parent / "tune_traces.json").read_text())


def _config(name: str) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in TRACES[name]["config"].items()}


@pytest.mark.parametrize("name", sorted(TRACES))
def test_a_search_one_candidate_wide_is_the_sequential_search(name, tmp_path):
    """Recorded from the search before it proposed waves: with a width of 1 every decision,
    message and measurement is the same (each artifact is now built once, not fetched from the
    cache again to be scored)."""
    recorded = TRACES[name]
    world, said = World(200), []
    search = _search(world, tmp_path, **_config(name))
    search.ctx.log = said.append
    trials = search.run()
    assert [t.to_dict() | UNTIMED for t in trials] == recorded["trials"]
    assert said == recorded["log"]
    assert (world.timed, world.scored) == (recorded["timed"], recorded["scored"])
    assert world.built == list(dict.fromkeys(recorded["built"]))


class OutOfOrder(World):
    """A pool of workers: each wave's chains finish last first, and every wave is recorded."""

    def __init__(self, n: int = N) -> None:
        super().__init__(n)
        self.waves: list[list[str]] = []

    def build(self, chains: list[str]) -> list[Built | ValidationError]:
        self.waves.append(chains)
        return super().build(chains[::-1])[::-1]


@pytest.mark.parametrize("name", sorted(TRACES))
@pytest.mark.parametrize("width", [2, 3])
def test_waves_finished_out_of_order_select_what_the_sequential_search_selects(
    name, width, tmp_path
):
    sequential = _search(World(200), tmp_path / "1", **_config(name))
    sequential.run()
    world = OutOfOrder(200)
    wide = _search(world, tmp_path / "wide", width=width, **_config(name))
    trials = wide.run()
    assert sequential.best is not None and wide.best is not None
    assert wide.best.chain == sequential.best.chain
    assert max(map(len, world.waves)) <= width
    # Built in waves (more than one candidate at once), each candidate still tried once, and
    # every timing after its wave was built: none while one trains.
    assert any(len(wave) > 1 for wave in world.waves)
    assert len({t.chain for t in trials}) == len(trials)
    in_order = World(200)
    assert [t.to_dict() | UNTIMED for t in trials] == [
        t.to_dict() | UNTIMED
        for t in _search(in_order, tmp_path / "in-order", width=width, **_config(name)).run()
    ]


def test_a_wide_search_trains_in_fewer_waves_than_one_at_a_time(tmp_path):
    """What a cluster buys: the default search's recovery trainings, in waves."""
    counts = {}
    for width in (1, 4):
        world = OutOfOrder(200)
        _search(world, tmp_path / str(width), width=width).run()
        counts[width] = sum(any("finetune_steps" in c for c in wave) for wave in world.waves)
    assert counts[4] < counts[1], counts


def test_a_k_ary_search_splits_the_ladder_evenly(tmp_path):
    search = _search(World(), tmp_path, width=1)
    assert search._between(-1, 5) == [2]  # the bisection's middle
    search.ctx.width = 2
    assert search._between(-1, 5) == [1, 3]
    search.ctx.width = 8
    assert search._between(-1, 5) == [0, 1, 2, 3, 4] and search._between(2, 3) == []


def test_every_quantization_mode_is_a_step_without_a_pinned_backend(monkeypatch):
    """As a user runs it (no $SQUEEZE_BACKEND): the measured default refuses being told to be
    static, so the static and per-tensor modes name ONNX Runtime (`make tune` failed here)."""
    from squeeze.plan.steps import parse_chain
    from squeeze.plan.tune.config import QUANTIZE_STEPS

    monkeypatch.delenv("SQUEEZE_BACKEND", raising=False)
    for mode, step in QUANTIZE_STEPS.items():
        assert parse_chain(step, "tune"), mode  # raises ConfigError where refused


def test_the_measured_default_becomes_the_backend_it_chose_for_every_pruned_candidate(
    monkeypatch, tmp_path
):
    """`quantize(int8)` times every backend in its build: the tail names what it chose for
    the unpruned model, so no pruned candidate times them again (on a Ray worker, beside other
    builds); a resumed search replays the choice from its journal."""
    from squeeze.plan.tune.search import canonical

    monkeypatch.delenv("SQUEEZE_BACKEND", raising=False)
    chose = canonical("quantize(int8, onnxruntime, per_channel=false)")
    asked, logs = [], []

    def resolve(chain: str, path: str) -> str:
        asked.append(chain)
        return chose

    world = World()
    search = _search(world, tmp_path, quantize=("dynamic",))
    search.ctx = world.context(logs.append)
    search.ctx.resolve = resolve
    trials = search.run()
    assert asked == ["quantize(dtype=int8)"] and search.tail == chose
    assert trials[0].chain == "quantize(dtype=int8)"  # the trace names what was asked
    pruned = [t.chain for t in trials if t.stage != "quantize"]
    assert pruned and all(chain.endswith(f" -> {chose}") for chain in pruned)
    assert f"quantize(dtype=int8) chose {chose} for the unpruned model" in " ".join(logs)

    again = _search(World(), tmp_path, quantize=("dynamic",))
    again.ctx.resolve = lambda chain, path: pytest.fail("resolved again on resume")
    assert [t.chain for t in again.run()] == [t.chain for t in trials]


def test_a_pinned_backend_is_not_resolved(tmp_path):
    """With $SQUEEZE_BACKEND (as in these tests) `quantize(int8)` measures nothing."""
    search = _search(World(), tmp_path, quantize=("dynamic",))
    search.ctx.resolve = lambda chain, path: pytest.fail("nothing was measured to resolve")
    search.run()
    assert search.tail == "quantize(dtype=int8)"
