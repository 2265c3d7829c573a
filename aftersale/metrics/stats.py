"""Confidence intervals for holdout lift, and the verdict people read. Pure: no SQL, no I/O.

Differences are in points: percentage points for a rate, NPS points for an NPS (both scales
run to 100), so "+4.5" reads the same way next to a rate of 12.0% or an NPS of 35.0.
"""

from __future__ import annotations

import math

from aftersale.metrics.model import Lift

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
