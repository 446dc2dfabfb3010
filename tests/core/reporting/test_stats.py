import math

import pytest

from dml_pipelines.core.reporting.stats import seed_stats


def test_one_two_and_three_seeds():
    one = seed_stats([0.5])
    assert (one.mean, one.std, one.n, one.ci95) == (0.5, None, 1, None)
    two = seed_stats([1.0, 3.0])
    assert two.std == pytest.approx(math.sqrt(2)) and two.ci95 is None
    three = seed_stats([1.0, 2.0, 6.0])
    mean = 3.0
    std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (6 - mean) ** 2) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, df=2)
    assert three.std == pytest.approx(std)
    assert three.ci95 == pytest.approx((mean - half, mean + half))
    assert three.format(1) == f"3.0 ± {std:.1f} [{mean - half:.1f}, {mean + half:.1f}]"
    assert three.scaled(100).mean == pytest.approx(300.0)


def test_non_finite_values_are_left_out_and_none_when_nothing_is_left():
    assert seed_stats([float("nan"), None]) is None
    assert seed_stats([0.2, float("nan"), 0.4]).n == 2


def test_the_interval_is_clipped_to_the_metric_range():
    values = [0.99, 0.97, 0.70]  # widely spread near the top (a Recall@1)
    free = seed_stats(values)
    assert free.ci95[1] > 1.0  # the symmetric t-interval passes 1
    clipped = seed_stats(values, (0.0, 1.0))
    assert clipped.ci95 == (pytest.approx(free.ci95[0]), 1.0)
    assert (clipped.mean, clipped.std) == (free.mean, free.std)
    low = seed_stats([0.01, 0.02, 0.30], (0.0, 1.0))
    assert low.ci95[0] == 0.0 and low.ci95[1] < 1.0
