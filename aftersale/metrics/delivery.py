"""What delivery does to loyalty: the per-segment delivery metrics (README, Metrics).

Read from the report's anchor table (:func:`aftersale.metrics.anchors.anchor_table`), so the
delivery figures describe the same customers as the rest of a segment's row: each customer's
**anchor order** in the segment (for ``all``, their anchor in ``all``). One customer is one
observation, which the intervals of ``loyalty_by_delivery`` need. Two aggregate queries
(:func:`_parcels`, :func:`_orders`), whatever the number of orders:

- ``on_time_delivery_rate``: the anchor orders' shipments delivered on or before the UTC day
  of their *first* estimated delivery date (whatever time the estimate names) / those
  shipments with a first estimate that are judged by ``end``: delivered by then, or their
  estimated day over by then. A parcel still on its way before its estimated day is over is
  not judged yet (in neither count). A shipment counts once aftersale knew it (``created_at``
  by ``end``).
- ``delivery_problem_rate``: anchor orders with a delivery problem by ``end``
  (``orders.delivery_problem_at``: attempted delivery, delayed, exception, returned to
  sender, stalled or late) / anchor orders shipped by ``end`` (``orders.shipped_at``).
- ``median_days_to_deliver``: over anchor orders shipped and delivered by ``end``, the median
  of ``orders.delivered_at - orders.shipped_at`` (first parcel moving to the whole order
  delivered), in days, counted in whole hours elapsed. Orders told ``order.shipped`` and
  ``order.delivered`` directly count too.
- ``loyalty_by_delivery``: the anchors in two groups, by their anchor order as of ``end``.
  ``problem``: the order had a delivery problem. ``on_time``: no problem, the order delivered
  (``orders.delivered_at``: all its parcels), at least one parcel, and every parcel delivered
  on time as above. Others are in neither. Per group, ``repeat_purchase_rate`` is today's (a
  purchase placed after the anchor order, by ``end``) and ``nps`` counts each customer's
  latest NPS answer (changed last, as the segment NPS) given from the moment they joined the
  group (the problem's first record, or the order's delivery) until ``end``. ``difference``:
  problem - on_time with a 95% interval (Newcombe for the rates, normal approximation for
  NPS, as the holdout lift).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from aftersale.db.models import Shipment, SurveyResponse
from aftersale.metrics.anchors import anchor_t, orders_t, seconds_between, utc_day
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
    for row in session.execute(_parcels(end)):
        for t in [per_segment[row.segment]] + ([overall] if row.overall == 1 else []):
            t.judged += int(row.judged or 0)
            t.on_time += int(row.on_time or 0)
    for row in session.execute(_orders(end, session.get_bind().dialect.name)):
        n = int(row.customers)
        for t in [per_segment[row.segment]] + ([overall] if row.overall == 1 else []):
            t.shipped += int(row.shipped or 0)
            t.problems += int(row.problems or 0)
            if row.hours is not None:
                t.hours[int(row.hours)] = t.hours.get(int(row.hours), 0) + n
            if row.grp is not None:
                t.groups[row.grp] = t.groups[row.grp].add(row.score, n, n, int(row.repeaters or 0))
    return ({name: t.metrics() for name, t in per_segment.items()}, overall.metrics())


def empty_delivery_metrics() -> dict[str, Metric]:
    return _Totals().metrics()


# -- the SQL


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _parcels(end: datetime) -> Select[Any]:
    """Per (segment, all flag): the anchor orders' parcels with a first estimate judged by
    ``end``, and those delivered on time. A join and a sum, no per-anchor grouping."""
    a, s = anchor_t, shipments_t
    return (select(a.c.segment, a.c.overall, _count_if(_judged(s, end)).label("judged"),
                   _count_if(and_(_judged(s, end), _on_time(s, end))).label("on_time"))
            .join_from(a, s, s.c.order_id == a.c.order_id)
            .where(s.c.created_at <= end, s.c.first_estimated_delivery_at.is_not(None),
                   s.c.status != "cancelled")  # withdrawn by the shop: not a delivery
            .group_by(a.c.segment, a.c.overall))


def _delivered(s: Any, end: datetime) -> ColumnElement[bool]:
    return and_(s.c.delivered_at.is_not(None), s.c.delivered_at <= end)


def _on_time(s: Any, end: datetime) -> ColumnElement[bool]:
    """Delivered by ``end``, on or before the (UTC) day of the first estimate: carriers
    promise a day, and a time in it is no promise (NULL without an estimate: test
    :func:`_judged` or the estimate too)."""
    return and_(_delivered(s, end),
                utc_day(s.c.delivered_at) <= utc_day(s.c.first_estimated_delivery_at))


def _judged(s: Any, end: datetime) -> ColumnElement[bool]:
    """A first estimate, and delivered by ``end`` or its estimated day over by then (the day
    is over at 00:00 UTC of the next, so by ``end`` when it is before ``end``'s day)."""
    end_day = literal(end.astimezone(UTC).date(), Date())
    day_over = utc_day(s.c.first_estimated_delivery_at) < end_day
    return and_(s.c.first_estimated_delivery_at.is_not(None), or_(_delivered(s, end), day_over))


def _orders(end: datetime, dialect: str = "sqlite") -> Select[Any]:
    """Per (segment, all flag, whole hours to deliver, group, latest NPS score): customers,
    shipped orders, those with a problem, and repeat purchasers: one pass over the anchors,
    each order found by its primary key.

    Each anchor's group: ``problem`` from its order; else, for a delivered order, ``on_time``
    when the smallest on-time flag of its parcels is 1 (at least one parcel, and all on time):
    one probe through the index on shipments.order_id, only for delivered orders without a
    problem (SQLite evaluates CASE and AND lazily). The latest NPS answer since the anchor
    joined its group is looked up (through the customer index on survey_responses) for anchors in a group
    only; CASE evaluates those look-ups only where they are needed. What comes back is
    bounded by segments x distinct hours x groups x scores.

    The same sums, planned for each database (as the messages in by_segment): PostgreSQL
    runs those per-row look-ups as a nested loop; there the parcels are summed per order
    and hash-joined, and the latest answers ranked among those joined to the grouped anchors
    (:func:`_orders_postgresql`)."""
    if dialect == "postgresql":
        return _orders_postgresql(end)
    a, o = anchor_t, orders_t
    s = shipments_t.alias("parcel")
    all_on_time = (select(_all_on_time(s, end))
                   .where(s.c.order_id == a.c.order_id, s.c.created_at <= end,
                          s.c.status != "cancelled")
                   .scalar_subquery())
    grouped = _grouped(end, all_on_time).join_from(a, o, o.c.id == a.c.order_id)
    # OFFSET 0: computed once per anchor, not again where the outer query reads it
    g = grouped.offset(0).subquery("grouped").c
    latest = _latest_nps(g, end)
    scored = (select(g.segment, g.overall, g.hours, g.grp, g.repeated, g.shipped, g.problem,
                     case((g.grp.is_not(None), latest), else_=None).label("score"))
              .offset(0).subquery("scored"))
    return _sums(scored.c)


def _orders_postgresql(end: datetime) -> Select[Any]:
    """:func:`_orders` for PostgreSQL: the anchors' parcels summed per order and joined by
    hash; each grouped anchor's latest NPS answer ranked among the answers joined to it."""
    a, o, r = anchor_t, orders_t, responses_t
    s = shipments_t
    mine = a.alias("mine")  # an order anchoring several segments repeats: min() does not mind
    per_order = (select(s.c.order_id, _all_on_time(s, end).label("all_on_time"))
                 .join_from(s, mine, mine.c.order_id == s.c.order_id)
                 .where(s.c.created_at <= end, s.c.status != "cancelled")
                 .group_by(s.c.order_id).subquery("per_order"))
    grouped = (_grouped(end, per_order.c.all_on_time)
               .select_from(a.join(o, o.c.id == a.c.order_id)
                            .join(per_order, per_order.c.order_id == a.c.order_id, isouter=True))
               .cte("grouped"))
    g = grouped.c
    changed = func.coalesce(r.c.updated_at, r.c.responded_at)
    rank = func.row_number().over(partition_by=(g.segment, g.customer_id),
                                  order_by=(changed.desc(), r.c.id.desc()))
    ranked = (select(g.segment, g.customer_id, r.c.score, rank.label("recency"))
              .join_from(grouped, r, and_(r.c.customer_id == g.customer_id, r.c.kind == "nps",
                                          r.c.responded_at >= g.since, r.c.responded_at <= end))
              .where(g.grp.is_not(None))
              .subquery("ranked"))
    latest = select(ranked).where(ranked.c.recency == 1).subquery("latest")
    scored = (select(g.segment, g.overall, g.hours, g.grp, g.repeated, g.shipped, g.problem,
                     latest.c.score)
              .select_from(grouped.join(latest, and_(latest.c.segment == g.segment,
                                                     latest.c.customer_id == g.customer_id),
                                        isouter=True))
              .subquery("scored"))
    return _sums(scored.c)


def _all_on_time(s: Any, end: datetime) -> ColumnElement[int]:
    """Over an order's parcels: 1 when every one has a first estimate and was delivered on
    time, 0 when some did not; NULL without parcels."""
    return func.min(case((and_(s.c.first_estimated_delivery_at.is_not(None), _on_time(s, end)), 1),
                         else_=0))


def _grouped(end: datetime, all_on_time: ColumnElement[Any]) -> Select[Any]:
    """Per anchor (the caller adds the FROM: the anchors and their orders): its segment, all
    flag, customer, whether they bought again, whether the order was shipped and had a
    problem by ``end``, the whole hours to deliver it, its group and when it joined it."""
    a, o = anchor_t, orders_t
    shipped = and_(o.c.shipped_at.is_not(None), o.c.shipped_at <= end)
    problem = and_(o.c.delivery_problem_at.is_not(None), o.c.delivery_problem_at <= end)
    delivered = and_(o.c.delivered_at.is_not(None), o.c.delivered_at <= end)
    done = and_(shipped, delivered, o.c.delivered_at >= o.c.shipped_at)
    return select(
        a.c.segment, a.c.overall, a.c.customer_id,
        case((a.c.gap.is_not(None), 1), else_=0).label("repeated"),
        case((shipped, 1), else_=0).label("shipped"),
        case((and_(shipped, problem), 1), else_=0).label("problem"),
        case((done, seconds_between(o.c.shipped_at, o.c.delivered_at) // HOUR_SECONDS),
             else_=None).label("hours"),
        case((problem, literal(PROBLEM)), (and_(delivered, all_on_time == 1), literal(ON_TIME)),
             else_=None).label("grp"),
        case((problem, o.c.delivery_problem_at), else_=o.c.delivered_at).label("since"))


def _latest_nps(g: Any, end: datetime) -> Any:
    """The anchor's latest NPS answer since it joined its group, by ``end`` (the one changed
    last, as the segment NPS), looked up through the customer index on survey_responses."""
    r = responses_t
    changed = func.coalesce(r.c.updated_at, r.c.responded_at)
    return (select(r.c.score)
            .where(r.c.customer_id == g.customer_id, r.c.kind == "nps",
                   r.c.responded_at >= g.since, r.c.responded_at <= end)
            .order_by(changed.desc(), r.c.id.desc())
            .limit(1).scalar_subquery())


def _sums(c: Any) -> Select[Any]:
    return (select(c.segment, c.overall, c.hours, c.grp, c.score,
                   func.count().label("customers"), func.sum(c.repeated).label("repeaters"),
                   func.sum(c.shipped).label("shipped"), func.sum(c.problem).label("problems"))
            .group_by(c.segment, c.overall, c.hours, c.grp, c.score))
