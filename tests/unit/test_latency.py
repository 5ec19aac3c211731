"""Latency statistics, benchmark inputs and the rotating measurement order."""

from __future__ import annotations

import numpy as np
import pytest

from squeeze.core.errors import ConfigError
from squeeze.measure.latency import BenchSettings, Latency, Target, measure, synthetic_inputs

SHAPE = {"batch": 4, "seq_len": 16, "threads": 2, "device": "cpu", "runtime": "torch"}


def test_latency_statistics():
    lat = Latency.from_samples([1.0, 2.0, 3.0, 4.0, 10.0], **SHAPE)
    assert (lat.p50_ms, lat.mean_ms) == (3.0, 4.0)
    assert lat.p90_ms == pytest.approx(7.6)
    assert lat.stdev_ms == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert lat.throughput_per_s == pytest.approx(4 / 0.003)
    record = lat.to_dict()
    assert record["runs"] == 5 and record["min_ms"] == 1.0 and record["max_ms"] == 10.0


def test_synthetic_inputs_look_like_tokenized_text():
    inputs = synthetic_inputs(
        ["input_ids", "token_type_ids", "attention_mask"], 3, 10, vocab_size=50, special_ids=[2, 3]
    )
    ids = inputs["input_ids"]
    assert ids.shape == (3, 10) and ids.dtype == np.int64
    assert (ids[:, 0] == 2).all() and (ids[:, -1] == 3).all()
    assert not np.isin(ids[:, 1:-1], [2, 3]).any() and ids.max() < 50
    assert inputs["attention_mask"].all() and not inputs["token_type_ids"].any()
    again = synthetic_inputs(["input_ids"], 3, 10, vocab_size=50, special_ids=[2, 3])
    np.testing.assert_array_equal(again["input_ids"], ids)


def test_measure_rotates_targets_and_times_every_pair():
    calls: list[tuple[str, int]] = []

    def target(name: str) -> Target:
        return Target(name, "fake", run=lambda batch: calls.append((name, batch)),
                      prepare=lambda inputs: inputs["input_ids"].shape[0])  # fmt: skip

    settings = BenchSettings(batch_sizes=(1, 2), seq_len=4, runs=6, warmup=1, rounds=3)
    results = measure(
        [target("a"), target("b")],
        lambda batch: synthetic_inputs(["input_ids"], batch, 4, vocab_size=10),
        settings,
        threads=1,
    )
    # Per batch size, per round: warm-up + 2 timed runs per target; the first target rotates,
    # and batch 1 is finished before batch 2 starts.
    block = 3  # 1 warm-up + 2 timed runs
    firsts = [calls[r * 2 * block][0] for r in range(3)]
    assert firsts == ["a", "b", "a"]
    assert [batch for _, batch in calls] == [1] * 18 + [2] * 18
    for result in results:
        assert [len(lat.samples_ms) for lat in result.latencies] == [6, 6]
        assert [lat.batch for lat in result.latencies] == [1, 2]
        assert all(s >= 0 for lat in result.latencies for s in lat.samples_ms)
        assert result.machine["cores"] >= 1 and "isa" in result.machine


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_sizes": ()}, {"batch_sizes": (0,)}, {"seq_len": 1}, {"runs": 1}, {"threads": 0}],
)
def test_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        BenchSettings(**kwargs)
