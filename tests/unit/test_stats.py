"""Confidence intervals against hand computations, and gates that judge them."""

from __future__ import annotations

import math

import pytest

from squeeze.core.stats import (
    Scores,
    median_interval,
    paired_drop_interval,
    speedup_interval,
    verdict,
)
from squeeze.core.types import Evaluation, Metric
from squeeze.engine.gate import Gated, undecided_note


def _accuracy(correct: list[int]) -> Scores:
    return Scores("accuracy", tuple(float(c) for c in correct))


def test_paired_bootstrap_matches_the_binomial_by_hand():
    """Four samples, one the variant gets wrong that the baseline got right: a resample holds
    that sample k ~ Binomial(4, 1/4) times, so the drop is 25k points. P(k = 0) = 0.316 sits
    above 2.5%, so the low end is 0; P(k <= 2) = 0.949 and P(k <= 3) = 0.996 put the 97.5th
    percentile at k = 3: 75 points."""
    interval = paired_drop_interval(
        _accuracy([1, 1, 0, 0]), _accuracy([0, 1, 0, 0]), resamples=20_000
    )
    assert interval == (0.0, 75.0)


def test_paired_bootstrap_agrees_with_the_normal_approximation():
    """1,000 samples, 30 the variant loses and 20 it gains: a 1-point drop. By hand, the paired
    differences d have mean 0.01 and variance 0.05 - 0.01**2 = 0.0499, so the standard error is
    sqrt(0.0499 / 1000) = 0.706 points and the normal interval 1 +- 1.96 * 0.706 =
    [-0.385, 2.385]."""
    base = [1] * 30 + [0] * 20 + [1] * 600 + [0] * 350
    variant = [0] * 30 + [1] * 20 + [1] * 600 + [0] * 350
    low, high = paired_drop_interval(_accuracy(base), _accuracy(variant), resamples=20_000)
    assert low == pytest.approx(-0.385, abs=0.15) and high == pytest.approx(2.385, abs=0.15)


def test_pairing_is_much_tighter_than_two_independent_intervals():
    """Same 1,000 samples, both about 82% accurate, disagreeing on 20: pairing sees only those."""
    base = [1] * 820 + [0] * 180
    variant = [1] * 810 + [0] * 10 + [1] * 0 + [0] * 180
    low, high = paired_drop_interval(_accuracy(base), _accuracy(variant))
    independent_half_width = 1.96 * math.sqrt(2 * 0.82 * 0.18 / 1000) * 100  # 3.4 points
    assert high - low < independent_half_width


def test_perplexity_intervals_are_in_its_own_units():
    """Each sample's NLL sum and token count: the same scores give a zero interval; a variant
    worse on every sample by 0.1 nats per token has perplexity exp(0.1) times higher."""
    nll = tuple(float(2 + i % 3) * 10 for i in range(50))
    tokens = (10.0,) * 50
    base = Scores("perplexity", nll, tokens)
    assert paired_drop_interval(base, base) == (0.0, 0.0)
    worse = Scores("perplexity", tuple(x + 1.0 for x in nll), tokens)
    low, high = paired_drop_interval(base, worse)
    assert 0 < low <= high
    assert low > math.exp(2.0) * (math.exp(0.1) - 1) * 0.9


def test_unpaired_scores_have_no_interval():
    assert paired_drop_interval(_accuracy([1, 0]), _accuracy([1, 0, 1])) is None
    assert paired_drop_interval(_accuracy([1]), Scores("perplexity", (1.0,), (1.0,))) is None


def test_speedup_interval_of_constant_timings_is_the_ratio():
    assert speedup_interval((10.0,) * 5, (5.0,) * 5) == (2.0, 2.0)
    assert speedup_interval((10.0,), (5.0, 5.0)) is None
    low, high = speedup_interval((9.0, 10.0, 11.0) * 5, (4.0, 5.0, 6.0) * 5)
    assert 9 / 6 <= low <= 2.0 <= high <= 11 / 4
    # 30 runs, a third each at 1, 2 and 3 ms. A resample's median (the mean of its 15th and 16th
    # runs) is 1.5 when exactly 15 of its 30 draws are 1 ms and 1.0 with 16 or more. By hand,
    # P(Bin(30, 1/3) >= 15) = 0.043 lies above 2.5% and P(>= 16) = 0.019 below: the low end is
    # 1.5, and by symmetry the high end 2.5.
    assert median_interval((1.0, 2.0, 3.0) * 10) == (1.5, 2.5)


@pytest.mark.parametrize(
    ("drop", "interval", "verdict_"),
    [
        (0.5, (-0.5, 0.9), "within"),
        (0.5, (-0.5, 1.5), "undecided"),
        (2.0, (1.2, 2.8), "over"),
        (0.5, None, "within"),
        (1.5, None, "over"),
    ],
)
def test_verdicts(drop, interval, verdict_):
    assert verdict(drop, interval, 1.0) == verdict_


class _Step(Gated):
    def __init__(self, before: list[int], after: list[int], max_drop: float, on: str) -> None:
        self.metric_before, self.metric_after = _evaluation(before), _evaluation(after)
        self.max_accuracy_drop, self.gate_on = max_drop, on


def _evaluation(correct: list[int]) -> Evaluation:
    n = len(correct)
    metric = Metric("accuracy", sum(correct) / n, n)
    return Evaluation((metric,), n, 1.0, scores=_accuracy(correct))


def test_gate_on_upper_fails_what_the_point_estimate_lets_through():
    """100 samples, the variant loses 2: a 2-point drop whose interval reaches about 5 points."""
    before, after = [1] * 100, [0] * 2 + [1] * 98
    assert _Step(before, after, 3.0, "point").passed
    upper = _Step(before, after, 3.0, "upper")
    assert not upper.passed
    fields = upper.gate_fields()
    assert fields["drop_ci95"][0] == 0.0 and fields["drop_ci95"][1] > 3.0
    assert "too small to decide the 3-point gate" in fields["gate_undecided"]
    assert _Step(before, after, 6.0, "upper").passed


def test_no_note_when_the_data_decides():
    assert undecided_note(0.2, (0.0, 0.5), 1.0, 100) is None
    assert undecided_note(0.2, (0.0, 0.5), None, 100) is None
