"""Holdout-lift statistics, checked against published and hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from aftersale.metrics.model import Lift
from aftersale.metrics.stats import (
    as_lift,
    difference_ci,
    nps_difference_ci,
    nps_variance,
    verdict,
    wilson_interval,
)

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score
# interval without continuity correction): (x1, n1, x2, n2) -> (low, high) as fractions.
NEWCOMBE_METHOD_10 = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_METHOD_10)
def test_difference_ci_matches_newcombes_published_intervals(counts: tuple[int, int, int, int],
                                                             expected: tuple[float, float]) -> None:
    x1, n1, x2, n2 = counts
    result = difference_ci(x1, n1, x2, n2)
    assert result is not None
    diff, low, high = result
    assert diff == pytest.approx(100 * (x1 / n1 - x2 / n2))
    # The paper prints four decimals of a fraction: within 0.0002 is 0.02 points.
    assert low == pytest.approx(100 * expected[0], abs=0.02)
    assert high == pytest.approx(100 * expected[1], abs=0.02)


def test_the_newcombe_example_is_20_points_from_5_2_to_33_4() -> None:
    assert [round(v, 1) for v in difference_ci(56, 70, 48, 80) or ()] == [20.0, 5.2, 33.4]


def test_wilson_interval_by_hand_for_zero_successes() -> None:
    # 0/10, z = 1.96: centre = (z²/20) / (1 + z²/10) = 0.19208 / 1.38416 = 0.13877, and the
    # half-width is (z / 1.38416) · sqrt(z² / 400) = 1.41602 · 0.098 = 0.13877: [0, 0.27754].
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.27754, abs=1e-5)


def test_wilson_interval_is_symmetric_between_zero_and_all() -> None:
    low0, high0 = wilson_interval(0, 25)
    low1, high1 = wilson_interval(25, 25)
    assert high1 == 1.0
    assert low0 == 0.0
    assert 1 - low1 == pytest.approx(high0)


def test_extremes_still_give_an_interval_of_nonzero_width() -> None:
    # Wald would say 0 ± 0 here: no evidence at all dressed up as certainty.
    result = difference_ci(0, 40, 0, 40)
    assert result is not None
    diff, low, high = result
    assert diff == 0.0
    assert low < -5 and high > 5
    assert low == pytest.approx(-high)


def test_all_versus_none_stays_within_plus_100_points() -> None:
    result = difference_ci(30, 30, 0, 30)
    assert result is not None
    diff, low, high = result
    assert diff == 100.0
    assert high == pytest.approx(100.0)
    assert 80 < low < 100


@pytest.mark.parametrize("counts", [(0, 0, 3, 10), (3, 10, 0, 0), (0, 0, 0, 0)])
def test_an_empty_group_has_no_difference(counts: tuple[int, int, int, int]) -> None:
    assert difference_ci(*counts) is None


def test_nps_variance_by_hand() -> None:
    # 50 promoters, 20 detractors of 100: (0.5 + 0.2 - 0.3²) / 100 = 0.0061
    assert nps_variance(50, 20, 100) == pytest.approx(0.0061)
    # All passives: every answer scores 0, no variance.
    assert nps_variance(0, 0, 40) == 0.0


def test_nps_difference_ci_by_hand() -> None:
    # NPS 30 vs 0. Var1 = 0.0061, Var2 = (0.3 + 0.3 - 0) / 100 = 0.006; se = sqrt(0.0121) = 0.11;
    # 1.96 · 0.11 = 0.2156 -> 30 ± 21.56 points.
    result = nps_difference_ci(50, 20, 100, 30, 30, 100)
    assert result is not None
    diff, low, high = result
    assert diff == pytest.approx(30.0)
    assert low == pytest.approx(8.44)
    assert high == pytest.approx(51.56)


def test_nps_difference_ci_is_clamped_to_the_possible_range() -> None:
    result = nps_difference_ci(2, 0, 2, 0, 1, 2)
    assert result is not None
    diff, low, high = result
    assert diff == pytest.approx(150.0)
    assert low >= -200 and high <= 200


def test_nps_difference_needs_answers_in_both_groups() -> None:
    assert nps_difference_ci(3, 1, 5, 0, 0, 0) is None
    assert nps_difference_ci(0, 0, 0, 3, 1, 5) is None


def test_as_lift_rounds_to_one_decimal_and_never_prints_minus_zero() -> None:
    lift = as_lift((0.04, -0.04, 12.345))
    assert lift == Lift(difference=0.0, ci_low=0.0, ci_high=12.3)
    assert math.copysign(1, lift.ci_low or 0.0) == 1.0
    assert as_lift(None) == Lift(difference=None, ci_low=None, ci_high=None)


def test_verdict_small_groups_are_not_enough_data() -> None:
    lift = Lift(difference=10.0, ci_low=2.0, ci_high=18.0)
    assert verdict(lift, 120, 12) == \
        "not enough data yet (120 treated, 12 holdout; need at least 30 in each)"
    assert verdict(lift, 29, 30) == \
        "not enough data yet (29 treated, 30 holdout; need at least 30 in each)"


def test_a_journey_without_holdout_says_so_rather_than_waiting_for_data() -> None:
    empty = Lift(difference=None, ci_low=None, ci_high=None)
    assert verdict(empty, 2000, 0) == "no holdout group: every customer gets this journey (holdout: 0%)"


def test_verdict_without_a_difference_is_not_enough_data() -> None:
    empty = Lift(difference=None, ci_low=None, ci_high=None)
    assert verdict(empty, 0, 0, min_group=0).startswith("not enough data yet")


def test_verdict_interval_across_zero_is_no_detectable_effect() -> None:
    lift = Lift(difference=1.1, ci_low=-1.2, ci_high=3.4)
    assert verdict(lift, 300, 40) == "no detectable effect on repeat purchase (-1.2 to +3.4 points)"


def test_verdict_interval_touching_zero_is_no_detectable_effect() -> None:
    lift = Lift(difference=4.0, ci_low=0.0, ci_high=8.0)
    assert verdict(lift, 300, 40).startswith("no detectable effect")


def test_verdict_interval_above_zero_lifts() -> None:
    lift = Lift(difference=4.5, ci_low=1.0, ci_high=8.0)
    assert verdict(lift, 300, 40) == "lifts repeat purchase by 4.5 points (95% CI +1.0 to +8.0)"


def test_verdict_interval_below_zero_lowers() -> None:
    lift = Lift(difference=-4.5, ci_low=-8.0, ci_high=-1.0)
    assert verdict(lift, 300, 40) == "lowers repeat purchase by 4.5 points (95% CI -8.0 to -1.0)"


def test_verdict_names_another_outcome() -> None:
    lift = Lift(difference=12.0, ci_low=3.0, ci_high=21.0)
    assert verdict(lift, 50, 50, outcome="NPS") == "lifts NPS by 12.0 points (95% CI +3.0 to +21.0)"


def test_verdict_from_newcombes_example() -> None:
    lift = as_lift(difference_ci(56, 70, 48, 80))
    assert verdict(lift, 70, 80) == "lifts repeat purchase by 20.0 points (95% CI +5.2 to +33.4)"
