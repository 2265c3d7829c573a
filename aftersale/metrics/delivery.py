"""What delivery does to loyalty: the per-segment delivery metrics (README, Metrics).

Read from the report's anchor table (:func:`aftersale.metrics.anchors.anchor_table`), so the
delivery figures describe the same customers as the rest of a segment's row: each customer's
**anchor order** in the segment (for ``all``, their anchor in ``all``). One customer is one
observation, which the intervals of ``loyalty_by_delivery`` need. Three aggregate queries,
each grouped by segment (and the ``all`` flag), whatever the number of orders:

- ``on_time_delivery_rate``: the anchor orders' shipments delivered by the end of the UTC day
  of their *first* estimated delivery date / those shipments with a first estimate that are
  judged by ``end``: delivered by then, or their estimated day over by then. A parcel still on
  its way before its estimated day is over is not judged yet (in neither count). A shipment
  counts once aftersale knew it (``created_at`` by ``end``).
- ``delivery_problem_rate``: anchor orders with a delivery problem by ``end``
  (``orders.delivery_problem_at``: attempted delivery, delayed, exception, returned to
  sender, stalled or late) / anchor orders shipped by ``end`` (``orders.shipped_at``).
- ``median_days_to_deliver``: over anchor orders shipped and delivered by ``end``, the median
  of ``orders.delivered_at - orders.shipped_at`` (first parcel moving to the whole order
  delivered), in days, counted in whole hours elapsed. Orders told ``order.shipped`` and
  ``order.delivered`` directly count too.
- ``loyalty_by_delivery``: the anchors in two groups, by their anchor order as of ``end``.
  ``problem``: the order had a delivery problem. ``on_time``: no problem, at least one
  shipment, and every shipment delivered on time as above. Others are in neither. Per group,
  ``repeat_purchase_rate`` is today's (a purchase placed after the anchor order, by
  ``end``) and ``nps`` counts each customer's latest NPS answer (changed last, as the segment
  NPS) given from the moment they joined the group (the problem's first record, or the
  delivery of the order's last parcel) until ``end``. ``difference``: problem - on_time with
  a 95% interval (Newcombe for the rates, normal approximation for NPS, as the holdout lift).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from aftersale.db.models import Shipment, SurveyResponse
from aftersale.metrics.anchors import DAY_SECONDS, anchor_t, epoch_seconds, orders_t, seconds_between
from aftersale.metrics.journeys import NO_ONE, GroupCounts
from aftersale.metrics.model import (
    DeliveryDifference,
    LoyaltyByDelivery,
    Mean,
    Metric,
    Rate,
)
from aftersale.metrics.stats import as_lift, difference_ci, histogram_median, nps_difference_ci

HOUR_SECONDS = 3_600
ON_TIME, PROBLEM = "on_time", "problem"

shipments_t = Shipment.__table__
responses_t = SurveyResponse.__table__


class _Totals:
    def __init__(self) -> None:
        self.judged = self.on_time = self.shipped = self.problems = 0
        self.hours: dict[int, int] = {}  # whole hours from shipped to delivered -> orders
        self.groups: dict[str, GroupCounts] = {ON_TIME: NO_ONE, PROBLEM: NO_ONE}

    def metrics(self) -> dict[str, Metric]:
        median_hours = histogram_median(self.hours)
        on_time, problem = self.groups[ON_TIME], self.groups[PROBLEM]
        on_time_out, problem_out = on_time.outcome(), problem.outcome()
        difference = DeliveryDifference(
            nps=as_lift(nps_difference_ci(
                problem_out.nps.promoters, problem_out.nps.detractors, problem_out.nps.n,
                on_time_out.nps.promoters, on_time_out.nps.detractors, on_time_out.nps.n)),
            repeat_purchase_rate=as_lift(difference_ci(
                problem.repeaters, problem.anchored, on_time.repeaters, on_time.anchored)))
        return {
            "on_time_delivery_rate": Rate.of(self.on_time, self.judged),
            "delivery_problem_rate": Rate.of(self.problems, self.shipped),
            "median_days_to_deliver": Mean(
                value=None if median_hours is None else round(median_hours / 24, 2),
                n=sum(self.hours.values())),
            "loyalty_by_delivery": LoyaltyByDelivery(on_time=on_time_out, problem=problem_out,
                                                     difference=difference),
        }


def delivery_metrics(session: Session, end: datetime
                     ) -> tuple[dict[str, dict[str, Metric]], dict[str, Metric]]:
    """(metrics per segment, metrics of ``all``) over the anchor table already filled on the
    session's connection for a report ending at ``end``. Segments without a delivery are
    absent from the first; every one of their figures would be empty (see
    :func:`empty_delivery_metrics`)."""
    per_segment: dict[str, _Totals] = defaultdict(_Totals)
    overall = _Totals()

    def targets(row: Any) -> list[_Totals]:
        return [per_segment[row.segment]] + ([overall] if row.overall == 1 else [])

    for row in session.execute(_shipments(end)):
        for t in targets(row):
            t.judged += int(row.judged or 0)
            t.on_time += int(row.on_time or 0)
    for row in session.execute(_orders(end)):
        for t in targets(row):
            t.shipped += int(row.shipped or 0)
            t.problems += int(row.problems or 0)
            if row.hours is not None:
                t.hours[int(row.hours)] = t.hours.get(int(row.hours), 0) + int(row.delivered)
    for row in session.execute(_loyalty(end)):
        for t in targets(row):
            n = int(row.customers)
            t.groups[row.grp] = t.groups[row.grp].add(row.score, n, n, int(row.repeaters or 0))
    return ({name: t.metrics() for name, t in per_segment.items()}, overall.metrics())


def empty_delivery_metrics() -> dict[str, Metric]:
    return _Totals().metrics()


# -- the SQL


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _next_day(estimate: ColumnElement[Any]) -> ColumnElement[int]:
    """Epoch seconds of 00:00 UTC the day after ``estimate``: a parcel delivered before it
    arrived on the estimated day, whatever time of day the estimate names (carriers give a
    day; a time in it is no promise)."""
    return (epoch_seconds(estimate) // DAY_SECONDS + 1) * DAY_SECONDS


def _delivered_on_time(s: Any, end: datetime) -> ColumnElement[bool]:
    return and_(s.c.first_estimated_delivery_at.is_not(None), s.c.delivered_at.is_not(None),
                s.c.delivered_at <= end,
                epoch_seconds(s.c.delivered_at) < _next_day(s.c.first_estimated_delivery_at))


def _shipments(end: datetime) -> Select[Any]:
    """Per (segment, all flag): anchor orders' shipments with a first estimate judged by
    ``end``, and those delivered on time."""
    a, s = anchor_t, shipments_t
    delivered = and_(s.c.delivered_at.is_not(None), s.c.delivered_at <= end)
    # the estimated day is over by ``end`` (epoch seconds, floored like the column's)
    day_over = _next_day(s.c.first_estimated_delivery_at) <= literal(int(end.timestamp()))
    judged = or_(delivered, day_over)
    return (select(a.c.segment, a.c.overall, _count_if(judged).label("judged"),
                   _count_if(and_(judged, _delivered_on_time(s, end))).label("on_time"))
            .join_from(a, s, s.c.order_id == a.c.order_id)
            .where(s.c.created_at <= end, s.c.first_estimated_delivery_at.is_not(None))
            .group_by(a.c.segment, a.c.overall))


def _orders(end: datetime) -> Select[Any]:
    """Per (segment, all flag, whole hours to deliver): shipped anchor orders, those with a
    problem, and those delivered."""
    a, o = anchor_t, orders_t
    problem = and_(o.c.delivery_problem_at.is_not(None), o.c.delivery_problem_at <= end)
    delivered = and_(o.c.delivered_at.is_not(None), o.c.delivered_at <= end,
                     o.c.delivered_at >= o.c.shipped_at)
    hours = case((delivered, seconds_between(o.c.shipped_at, o.c.delivered_at) // HOUR_SECONDS),
                 else_=None).label("hours")
    return (select(a.c.segment, a.c.overall, hours, func.count().label("shipped"),
                   _count_if(problem).label("problems"), _count_if(delivered).label("delivered"))
            .join_from(a, o, o.c.id == a.c.order_id)
            .where(o.c.shipped_at.is_not(None), o.c.shipped_at <= end)
            .group_by(a.c.segment, a.c.overall, hours))


def _loyalty(end: datetime) -> Select[Any]:
    """Per (segment, all flag, group, latest NPS score): customers and repeat purchasers.

    Each anchor is put in its group by two probes of its order's shipments (through the
    index on shipments.order_id); then its latest NPS answer since it joined the group is
    looked up (through the customer index on survey_responses). At most 12 scores x 2 groups
    per segment come back."""
    a, o, r = anchor_t, orders_t, responses_t
    s = shipments_t.alias("parcel")
    mine = and_(s.c.order_id == a.c.order_id, s.c.created_at <= end)
    problem = and_(o.c.delivery_problem_at.is_not(None), o.c.delivery_problem_at <= end)
    # written out, not NOT(on time): a NULL inside NOT would hide a parcel still on its way
    late_or_open = or_(
        s.c.first_estimated_delivery_at.is_(None), s.c.delivered_at.is_(None),
        s.c.delivered_at > end,
        epoch_seconds(s.c.delivered_at) >= _next_day(s.c.first_estimated_delivery_at))
    on_time = and_(exists().where(mine), ~exists().where(mine, late_or_open))
    last_parcel = select(func.max(s.c.delivered_at)).where(mine).scalar_subquery()
    grouped = (select(a.c.segment, a.c.overall, a.c.customer_id,
                      case((a.c.gap.is_not(None), 1), else_=0).label("repeated"),
                      case((problem, literal(PROBLEM)), (on_time, literal(ON_TIME)),
                           else_=None).label("grp"),
                      case((problem, o.c.delivery_problem_at), else_=last_parcel).label("since"))
               .join_from(a, o, o.c.id == a.c.order_id)
               # OFFSET 0: computed once per anchor, not again where the outer query reads it
               .offset(0).subquery("grouped"))
    g = grouped.c
    changed = func.coalesce(r.c.updated_at, r.c.responded_at)
    latest = (select(r.c.score)
              .where(r.c.customer_id == g.customer_id, r.c.kind == "nps",
                     r.c.responded_at >= g.since, r.c.responded_at <= end)
              .order_by(changed.desc(), r.c.id.desc())
              .limit(1).scalar_subquery())
    scored = (select(g.segment, g.overall, g.grp, g.repeated, latest.label("score"))
              .where(g.grp.is_not(None)).offset(0).subquery("scored"))
    c = scored.c
    return (select(c.segment, c.overall, c.grp, c.score, func.count().label("customers"),
                   func.sum(c.repeated).label("repeaters"))
            .group_by(c.segment, c.overall, c.grp, c.score))
