"""Confidence intervals for holdout lift, and the verdict people read. Pure: no SQL, no I/O.

Differences are in points: percentage points for a rate, NPS points for an NPS (both scales
run to 100), so "+4.5" reads the same way next to a rate of 12.0% or an NPS of 35.0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from aftersale.metrics.model import Lift, LoyaltyByDelivery

Interval = tuple[float, float, float]  # (difference, low, high)


def wilson_interval(x: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for the proportion x/n, as fractions (0-1).

    Unlike the Wald interval p ± z·sqrt(p(1-p)/n) it never leaves [0, 1] and does not collapse
    to a single point at 0/n or n/n, which is exactly where small holdout groups live."""
    if n <= 0:
        raise ValueError("the Wilson interval needs n > 0")
    p = x / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp rounding noise only: mathematically the interval already lies within [0, 1].
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_ci(x1: int, n1: int, x2: int, n2: int, z: float = 1.96) -> Interval | None:
    """p1 - p2 with a confidence interval, in percentage points; None when a group is empty.

    Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the difference
    between independent proportions", method 10): with Wilson intervals (l1, u1) and (l2, u2),

        low  = d - sqrt((p1 - l1)² + (u2 - p2)²)
        high = d + sqrt((u1 - p1)² + (p2 - l2)²)

    It keeps close to the nominal 95% coverage for small groups and for rates near 0% or 100%
    (a holdout of 25 customers with no repeat purchase), where the Wald interval is too narrow
    or even zero-width. z = 1.96 gives a 95% interval."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return 100 * d, 100 * low, 100 * high


def nps_variance(promoters: int, detractors: int, n: int) -> float:
    """Variance of an NPS estimate on the -1..1 scale: each answer scores +1 (promoter),
    0 (passive) or -1 (detractor), so Var = E[X²] - E[X]² = (p_p + p_d - (p_p - p_d)²) / n."""
    pp, pd = promoters / n, detractors / n
    return (pp + pd - (pp - pd) ** 2) / n


def nps_difference_ci(promoters1: int, detractors1: int, n1: int,
                      promoters2: int, detractors2: int, n2: int,
                      z: float = 1.96) -> Interval | None:
    """NPS(group 1) - NPS(group 2) with a confidence interval, in NPS points; None when a group
    has no answer.

    Normal approximation: the two estimates are independent, so the standard error of the
    difference is sqrt(Var1 + Var2) with :func:`nps_variance`. There is no score interval for a
    three-valued answer as simple as Newcombe's, and NPS groups are usually larger than holdout
    groups; read the interval with care below about 30 answers a group (when every answer in
    both groups is the same, it collapses to a point). Bounds are clamped to the possible
    range, -200 to +200."""
    if n1 <= 0 or n2 <= 0:
        return None
    d = (promoters1 - detractors1) / n1 - (promoters2 - detractors2) / n2
    se = math.sqrt(nps_variance(promoters1, detractors1, n1) + nps_variance(promoters2, detractors2, n2))
    return 100 * d, max(-200.0, 100 * (d - z * se)), min(200.0, 100 * (d + z * se))


def histogram_median(histogram: Mapping[int, int]) -> float | None:
    """The median of a {value: count} histogram (the mean of the two middle values when the
    count is even); None when it is empty. SQL has no portable median, so the queries return
    such histograms (bounded by the distinct values, never by the rows)."""
    n = sum(histogram.values())
    if n == 0:
        return None
    middle = [(n - 1) // 2, n // 2]  # 0-based positions of the middle value(s)
    found: list[int] = []
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        while len(found) < 2 and middle[len(found)] < seen:
            found.append(value)
    return (found[0] + found[1]) / 2


def as_lift(interval: Interval | None, digits: int = 1) -> Lift:
    """The output model, rounded like every other value in the report (one decimal)."""
    if interval is None:
        return Lift(difference=None, ci_low=None, ci_high=None)
    d, low, high = (round(v, digits) + 0.0 for v in interval)  # + 0.0: no "-0.0" in the output
    return Lift(difference=d, ci_low=low, ci_high=high)


def verdict(lift: Lift, treated_n: int, holdout_n: int, min_group: int = 30,
            outcome: str = "repeat purchase") -> str:
    """The lift in plain words. An effect is claimed only when the whole 95% interval lies on
    one side of zero; an interval touching zero is "no detectable effect", which is not the
    same as "no effect" (the interval says how large an effect could still hide in it).

    Below ``min_group`` customers in either group the interval is too wide to say anything,
    so we say so instead of showing a number people would over-read."""
    if holdout_n == 0 and treated_n > 0:
        return "no holdout group: every customer gets this journey (holdout: 0%)"
    if treated_n < min_group or holdout_n < min_group or lift.difference is None \
            or lift.ci_low is None or lift.ci_high is None:
        return (f"not enough data yet ({treated_n} treated, {holdout_n} holdout; "
                f"need at least {min_group} in each)")
    interval = f"95% CI {lift.ci_low:+.1f} to {lift.ci_high:+.1f}"
    if lift.ci_low > 0:
        return f"lifts {outcome} by {lift.difference:.1f} points ({interval})"
    if lift.ci_high < 0:
        return f"lowers {outcome} by {-lift.difference:.1f} points ({interval})"
    return f"no detectable effect on {outcome} ({lift.ci_low:+.1f} to {lift.ci_high:+.1f} points)"


def delivery_verdict(loyalty: LoyaltyByDelivery, min_group: int = 30) -> str:
    """One sentence on what a delivery problem did to loyalty: problem - on_time for NPS and
    repeat purchase, each with its 95% interval, as "N points lower (95% CI a to b)" (the
    interval of how much lower; a negative bound means it may be higher). As in
    :func:`verdict`, below ``min_group`` in either group (NPS answers, or customers for repeat
    purchase) the figure is left out and the sentence says so."""
    outcomes = (
        ("NPS", loyalty.difference.nps, loyalty.problem.nps.n, loyalty.on_time.nps.n, "answers"),
        ("repeat purchase", loyalty.difference.repeat_purchase_rate,
         loyalty.problem.repeat_purchase_rate.denominator,
         loyalty.on_time.repeat_purchase_rate.denominator, "customers"))
    parts = []
    for label, lift, problem_n, on_time_n, counted in outcomes:
        if problem_n < min_group or on_time_n < min_group or lift.difference is None \
                or lift.ci_low is None or lift.ci_high is None:
            parts.append(f"{label}: not enough data yet ({problem_n} {counted} after a problem, "
                         f"{on_time_n} on time; need at least {min_group} in each)")
            continue
        sign = -1 if lift.difference < 0 else 1
        low, high = sorted((sign * lift.ci_low, sign * lift.ci_high))
        direction = "lower" if sign < 0 else "higher"
        parts.append(f"{label} {abs(lift.difference):.0f} points {direction} "
                     f"(95% CI {low + 0.0:.0f} to {high + 0.0:.0f})")
    return ("Customers whose parcel had a problem, against those whose parcels came on time: "
            + "; ".join(parts) + ".")
