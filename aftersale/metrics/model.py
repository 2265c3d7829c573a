"""What ``aftersale metrics --format json`` prints: a stable, documented schema.

Every rate carries its numerator and denominator; a denominator of 0 gives ``value: null``,
never 0. Rates are in percent, rounded to one decimal in ``value`` (the counts are exact).
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Rate(_Out):
    """numerator / denominator in percent; null when the denominator is 0."""

    value: float | None
    numerator: int
    denominator: int

    @classmethod
    def of(cls, numerator: int, denominator: int) -> Rate:
        value = None if denominator == 0 else round(100.0 * numerator / denominator, 1)
        return cls(value=value, numerator=numerator, denominator=denominator)


class Nps(_Out):
    """%promoters (9-10) - %detractors (0-6) over each customer's latest NPS answer."""

    value: float | None
    n: int
    promoters: int
    passives: int
    detractors: int

    @classmethod
    def of(cls, promoters: int, passives: int, detractors: int) -> Nps:
        n = promoters + passives + detractors
        value = None if n == 0 else round(100.0 * (promoters - detractors) / n, 1)
        return cls(value=value, n=n, promoters=promoters, passives=passives,
                   detractors=detractors)


class Mean(_Out):
    """A mean (CES on 1-7, messages per customer) or a median (days to the second order, days
    to deliver)."""

    value: float | None
    n: int


class Lift(_Out):
    """One group minus another (treated - holdout, problem - on_time) in points, with a 95%
    confidence interval."""

    difference: float | None
    ci_low: float | None
    ci_high: float | None


class GroupOutcome(_Out):
    """A group of customers: how many, how many bought again, how they answered NPS."""

    customers: int
    repeat_purchase_rate: Rate
    nps: Nps


class DeliveryDifference(_Out):
    """problem - on_time, in points (NPS points, percentage points), with a 95% interval."""

    nps: Lift
    repeat_purchase_rate: Lift


class LoyaltyByDelivery(_Out):
    """``loyalty_by_delivery``: customers whose anchor order was delivered on time against
    those whose anchor order had a delivery problem (README, Metrics)."""

    on_time: GroupOutcome
    problem: GroupOutcome
    difference: DeliveryDifference


Metric = Rate | Nps | Mean | LoyaltyByDelivery


class SegmentMetrics(_Out):
    segment: str  # a segment name, or "all" (every customer in any segment, counted once)
    customers: int
    # Keys (DESIGN.md section 4): nps, csat, ces, response_rate_nps, response_rate_csat,
    # response_rate_ces, repeat_purchase_rate, retention_30d, retention_60d, retention_90d,
    # churn_90d, referral_rate, median_days_to_second_order, messages_per_customer;
    # delivery: on_time_delivery_rate, delivery_problem_rate, median_days_to_deliver,
    # loyalty_by_delivery
    metrics: dict[str, Metric]



class JourneyLift(_Out):
    journey: str
    treated: GroupOutcome
    holdout: GroupOutcome
    repeat_purchase_lift: Lift
    nps_lift: Lift | None  # only where both groups were asked
    verdict: str  # plain words: "not enough data yet", "no detectable effect", ...


class FunnelStep(_Out):
    journey: str
    step: str
    template: str
    channel: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    failed: int
    unsubscribed: int
    # Beside the people's opens and clicks, never inside them: messages with an Apple Mail
    # Privacy Protection open, and with a click a mail scanner most likely made.
    machine_opened: int = 0
    suspect_clicked: int = 0


class Cohort(_Out):
    month: str  # YYYY-MM of the anchor order
    customers: int
    # retained[k-1]: share who ordered again within k x 30 days of their anchor order; listed
    # only once every anchor of the month is that old by ``to`` (immature ones are left out)
    retained: list[Rate]


class MetricsReport(_Out):
    schema_version: int = SCHEMA_VERSION
    as_of: datetime
    from_: date | None = Field(alias="from")
    to: date
    segments: list[SegmentMetrics]
    journeys: list[JourneyLift]
    funnel: list[FunnelStep]
    cohorts: list[Cohort]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)
