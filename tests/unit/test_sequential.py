"""The experiments' decision rule: the boundary by hand, its shape, the states and the sentences."""

from __future__ import annotations

import math

import pytest

from aftersale.core.sequential import (
    Arm,
    Comparison,
    Evaluation,
    State,
    compare,
    evaluate,
    mixing_variance,
    radius,
    smoothed_variance,
    verdict,
)

GOAL = "repeat purchase"


def rates(*counts: tuple[str, int, int]) -> list[Arm]:
    return [Arm.rate(name, x, n) for name, x, n in counts]


def width(arm_a: Arm, arm_b: Arm, planned: int = 300) -> float:
    comparison = compare(arm_a, arm_b, planned, 0.05)
    return comparison.high - comparison.low


def test_the_boundary_matches_a_hand_computation() -> None:
    # 30/300 against 45/300, tuned for 300 a variant, alpha 0.05. Smoothed rates 31/302 and
    # 46/302 give variances 0.0921122 and 0.1291171, so V = 0.2212293 / 300 = 0.00073743.
    # At the planned size V* = V, so τ² = c·V with c = 2 ln 20 + ln(1 + 2 ln 20) = 7.936155
    # and the radius is sqrt(V · (1+c)/c · (2 ln 20 + ln(1+c)))
    #   = sqrt(0.00073743 · 1.126006 · (5.991465 + 2.190105)) = sqrt(0.0067936) = 0.082423.
    comparison = compare(Arm.rate("guide", 30, 300), Arm.rate("offer", 45, 300), 300, 0.05)
    assert comparison.variant == "offer"
    assert comparison.difference == pytest.approx(5.0)
    assert comparison.low == pytest.approx(5.0 - 8.2423, abs=1e-3)
    assert comparison.high == pytest.approx(5.0 + 8.2423, abs=1e-3)


def test_at_the_planned_size_the_interval_is_3_04_standard_errors_either_side() -> None:
    # The price of looking every day: ±3.04 SE where a single fixed look would use ±1.96.
    v = 0.0004
    assert radius(v, mixing_variance(v, 0.05), 0.05) / math.sqrt(v) == pytest.approx(3.0352, abs=1e-4)


def test_the_mixing_variance_makes_the_interval_tightest_near_the_planned_size() -> None:
    v = 0.001
    tuned = mixing_variance(v, 0.05)
    # Howard et al.'s closed form is an approximation of the optimum: within 1% of the best
    # τ² on a fine grid, and clearly better than τ² ten times too small or too large.
    best = min(radius(v, tuned * k / 100, 0.05) for k in range(10, 1000))
    assert radius(v, tuned, 0.05) <= best * 1.01
    assert radius(v, tuned, 0.05) < radius(v, tuned / 10, 0.05)
    assert radius(v, tuned, 0.05) < radius(v, tuned * 10, 0.05)


def test_swapping_the_arms_mirrors_the_difference_and_its_interval() -> None:
    a, b = Arm.rate("a", 37, 410), Arm.rate("b", 58, 395)
    forward, backward = compare(a, b, 300, 0.05), compare(b, a, 300, 0.05)
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.low == pytest.approx(-forward.high)
    assert backward.high == pytest.approx(-forward.low)


def test_the_interval_shrinks_as_customers_come_in() -> None:
    widths = [width(Arm.rate("a", n // 10, n), Arm.rate("b", n // 8, n)) for n in (300, 600, 1200, 4800)]
    assert widths == sorted(widths, reverse=True)
    assert len(set(widths)) == len(widths)
    # roughly like 1/sqrt(n) once past the planned size (a log factor on top)
    assert widths[3] < widths[1] / 2


def test_a_lower_alpha_widens_the_interval() -> None:
    a, b = Arm.rate("a", 30, 300), Arm.rate("b", 45, 300)
    loose, strict = compare(a, b, 300, 0.05), compare(a, b, 300, 0.025)
    assert strict.low < loose.low and strict.high > loose.high


def test_there_is_never_a_winner_below_min_per_variant() -> None:
    # Every customer of B bought again, none of A: still no winner until each has 300.
    for n in (1, 10, 150, 299):
        for horizon in (False, True):
            evaluation = evaluate(rates(("a", 0, n), ("b", n, n)), 300, horizon)
            assert evaluation.winner is None
            assert evaluation.state is (State.NO_DIFFERENCE if horizon else State.COLLECTING)
    # one arm at 300 is not enough: the smallest arm counts
    evaluation = evaluate(rates(("a", 0, 300), ("b", 299, 299)), 300, False)
    assert evaluation.state is State.COLLECTING and evaluation.smallest == 299
    assert evaluate(rates(("a", 0, 300), ("b", 300, 300)), 300, False).winner == "b"


def test_collecting_names_the_leader_and_how_many_are_still_needed() -> None:
    evaluation = evaluate(rates(("guide", 20, 230), ("guide_and_offer", 30, 212)), 500, False)
    assert evaluation.state is State.COLLECTING
    assert evaluation.leader == "guide_and_offer" and evaluation.needed == 500
    assert verdict(evaluation, GOAL) == "guide_and_offer leads; no decision yet: 212 of 500 needed"


def test_without_any_data_the_verdict_says_so() -> None:
    evaluation = evaluate(rates(("guide", 0, 0), ("offer", 0, 0)), 300, False)
    assert evaluation.state is State.COLLECTING
    assert evaluation.leader is None and evaluation.comparisons == ()
    assert verdict(evaluation, GOAL) == "no data yet"
    ended = evaluate(rates(("guide", 0, 0), ("offer", 0, 0)), 300, True)
    assert verdict(ended, GOAL) == "no difference detected at the horizon (no data)"


def test_a_variant_without_data_has_no_comparison_yet() -> None:
    evaluation = evaluate(rates(("a", 3, 40), ("b", 0, 0), ("c", 5, 38)), 300, False)
    assert [c.variant for c in evaluation.comparisons] == ["c"]
    assert evaluation.comparison("b") is None and evaluation.leader == "c"


def test_running_shows_the_lead_and_the_interval_that_still_holds_zero() -> None:
    evaluation = evaluate(rates(("guide", 30, 300), ("guide_and_offer", 45, 300)), 300, False)
    assert evaluation.state is State.RUNNING and evaluation.winner is None
    assert verdict(evaluation, GOAL) == ("guide_and_offer leads by +5.0 points of repeat purchase; "
                                         "not yet decisive (95% CI -3.2 to +13.2)")


def test_when_the_control_leads_the_sentence_says_over_which_variant() -> None:
    evaluation = evaluate(rates(("guide", 45, 300), ("guide_and_offer", 30, 300)), 300, False)
    assert evaluation.leader == "guide"
    assert verdict(evaluation, GOAL) == ("guide leads by +5.0 points of repeat purchase over "
                                         "guide_and_offer; not yet decisive (95% CI -3.2 to +13.2)")


def test_a_variant_wins_when_its_whole_interval_is_above_zero() -> None:
    evaluation = evaluate(rates(("guide", 100, 1000), ("guide_and_offer", 150, 1000)), 300, False)
    assert evaluation.state is State.WINNER and evaluation.winner == "guide_and_offer"
    comparison = evaluation.comparison("guide_and_offer")
    assert comparison is not None and comparison.low > 0
    assert verdict(evaluation, GOAL) == ("guide_and_offer wins: +5.0 points of repeat purchase "
                                         "(95% CI +0.4 to +9.6)")
    # a winner stays a winner at the horizon
    assert evaluate(rates(("guide", 100, 1000), ("guide_and_offer", 150, 1000)), 300, True).winner \
        == "guide_and_offer"


def test_the_control_wins_when_every_variant_is_below_it() -> None:
    evaluation = evaluate(rates(("guide", 150, 1000), ("guide_and_offer", 100, 1000)), 300, False)
    assert evaluation.state is State.WINNER and evaluation.winner == "guide"
    assert verdict(evaluation, GOAL) == ("guide wins: +5.0 points of repeat purchase over "
                                         "guide_and_offer (95% CI +0.4 to +9.6)")


def test_at_the_horizon_without_a_winner_there_is_no_difference_with_the_leaders_interval() -> None:
    evaluation = evaluate(rates(("guide", 30, 300), ("guide_and_offer", 45, 300)), 300, True)
    assert evaluation.state is State.NO_DIFFERENCE and evaluation.winner is None
    assert verdict(evaluation, GOAL) == (
        "no difference detected at the horizon (guide_and_offer leads by +5.0 points of "
        "repeat purchase, 95% CI -3.2 to +13.2)")
    short = evaluate(rates(("guide", 20, 230), ("guide_and_offer", 30, 212)), 500, True)
    assert verdict(short, GOAL).endswith("; only 212 of the 500 needed)")


def test_three_variants_are_each_judged_against_the_control_at_alpha_over_two() -> None:
    arms = rates(("a", 100, 1000), ("b", 150, 1000), ("c", 110, 1000))
    evaluation = evaluate(arms, 300, False)
    assert [c.variant for c in evaluation.comparisons] == ["b", "c"]
    assert evaluation.comparison("b") == compare(arms[0], arms[1], 300, 0.025)
    assert evaluation.comparison("c") == compare(arms[0], arms[2], 300, 0.025)
    # Bonferroni costs width: the same pair with two variants only is narrower.
    two = evaluate(arms[:2], 300, False).comparison("b")
    three = evaluation.comparison("b")
    assert two is not None and three is not None and three.low < two.low


def test_bonferroni_can_turn_a_two_variant_winner_into_a_running_three_variant_test() -> None:
    arms = rates(("a", 100, 1000), ("b", 149, 1000), ("c", 100, 1000))
    assert evaluate(arms[:2], 300, False).winner == "b"
    assert evaluate(arms, 300, False).state is State.RUNNING


def test_of_several_variants_above_the_control_the_largest_difference_wins() -> None:
    arms = rates(("a", 100, 2000), ("b", 260, 2000), ("c", 330, 2000))
    evaluation = evaluate(arms, 300, False)
    assert all(c.low > 0 for c in evaluation.comparisons)
    assert evaluation.winner == "c"


def test_the_control_wins_only_if_it_beats_every_variant() -> None:
    arms = rates(("a", 300, 2000), ("b", 150, 2000), ("c", 290, 2000))
    evaluation = evaluate(arms, 300, False)
    assert evaluation.state is State.RUNNING and evaluation.leader == "a"
    assert verdict(evaluation, GOAL).startswith("a leads by +0.5 points of repeat purchase over c;")
    arms = rates(("a", 300, 2000), ("b", 150, 2000), ("c", 160, 2000))
    assert evaluate(arms, 300, False).winner == "a"


def test_rates_of_0_and_100_percent_still_have_an_interval_of_some_width() -> None:
    assert smoothed_variance(Arm.rate("a", 0, 298)) == pytest.approx((1 / 300) * (299 / 300))
    assert smoothed_variance(Arm.rate("a", 298, 298)) == pytest.approx((1 / 300) * (299 / 300))
    nothing = evaluate(rates(("a", 0, 300), ("b", 0, 300)), 300, False)
    comparison = nothing.comparison("b")
    assert comparison is not None and comparison.low < 0 < comparison.high
    assert nothing.state is State.RUNNING
    everything = evaluate(rates(("a", 300, 300), ("b", 300, 300)), 300, False)
    assert everything.state is State.RUNNING
    # one sale among 300 against none is no evidence at all
    assert evaluate(rates(("a", 0, 300), ("b", 1, 300)), 300, False).state is State.RUNNING
    assert evaluate(rates(("a", 0, 300), ("b", 300, 300)), 300, False).winner == "b"


def test_nps_is_compared_in_nps_points() -> None:
    # NPS +30 (150 promoters, 60 detractors of 300) against +45 (180 and 45 of 300).
    control, variant = Arm.nps("day7", 150, 60, 300), Arm.nps("day21", 180, 45, 300)
    assert control.mean == pytest.approx(0.30) and variant.mean == pytest.approx(0.45)
    evaluation = evaluate([control, variant], 300, False)
    comparison = evaluation.comparison("day21")
    assert comparison is not None and comparison.difference == pytest.approx(15.0)
    # One promoter and one detractor added: (151 - 61)/302 and (151 + 61)/302 for the control.
    mean, mean_sq = 90 / 302, 212 / 302
    assert smoothed_variance(control) == pytest.approx(mean_sq - mean * mean)
    assert verdict(evaluation, "NPS").startswith("day21 ")


def test_nps_smoothing_treats_all_promoters_and_all_detractors_alike() -> None:
    promoters, detractors = Arm.nps("a", 50, 0, 50), Arm.nps("b", 0, 50, 50)
    assert smoothed_variance(promoters) == pytest.approx(smoothed_variance(detractors))
    assert smoothed_variance(promoters) > 0


def test_the_sentences_use_the_metrics_sign_convention_and_never_say_minus_zero() -> None:
    nearly_equal = Evaluation(State.RUNNING, "b", None,
                              (compare(Arm.rate("a", 100, 1000), Arm.rate("b", 100, 1000), 300, 0.05),),
                              300, 1000)
    text = verdict(nearly_equal, GOAL)
    assert "-0.0" not in text and "−" not in text  # ASCII minus, as metrics/stats.py prints
    assert "+0.0 points" in text


def test_the_verdict_reads_an_evaluation_rebuilt_from_stored_figures() -> None:
    # results code may rebuild an Evaluation from a decision's JSON: the control is the one
    # name without a comparison of its own
    stored = Evaluation(State.WINNER, "guide", "guide",
                        (Comparison("offer", -4.0, -7.1, -0.9), Comparison("video", -2.5, -5.0, -0.2)),
                        300, 900)
    assert verdict(stored, "NPS") == "guide wins: +2.5 points of NPS over video (95% CI +0.2 to +5.0)"


def test_a_tie_is_led_by_the_control() -> None:
    assert evaluate(rates(("a", 10, 100), ("b", 10, 100)), 300, False).leader == "a"


def test_an_experiment_needs_two_variants_and_a_positive_minimum() -> None:
    with pytest.raises(ValueError, match="two variants"):
        evaluate(rates(("a", 1, 10)), 300, False)
    with pytest.raises(ValueError, match="min_per_variant"):
        evaluate(rates(("a", 1, 10), ("b", 1, 10)), 0, False)
