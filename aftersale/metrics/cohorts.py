"""Cohort retention: customers grouped by the month of their anchor order, and the share who
ordered again within 30, 60, 90, ... days.

One aggregate query returns a row per (month, 30-day bucket of the gap to the next order);
the cumulative rates are summed up in Python from those few rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from aftersale.metrics.anchors import enrollments_t, is_purchase, orders_t, seconds_between
from aftersale.metrics.model import Cohort, Rate

WINDOW = timedelta(days=30)
_WINDOW_SECONDS = int(WINDOW.total_seconds())


def _month_key(column: Any, dialect: str) -> Any:
    """'YYYY-MM' of a UTC time. SQLite stores naive UTC text; PostgreSQL's to_char would use
    the session's time zone, so the time is turned into UTC wall-clock time first."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _month_end(month: str) -> datetime:
    """The first instant of the following month (UTC): the end of ``month``."""
    year, number = (int(part) for part in month.split("-"))
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)


def _anchor_times(start: datetime | None, end: datetime) -> Any:
    """One row per customer: customer_id, placed_at (of the anchor order). The same rows as
    :func:`aftersale.metrics.anchors.anchors` with ``by_segment=False`` (the "all" segment):
    of the customer's first enrollments in each segment whose order was placed in the period,
    the earliest (by enrolled_at, ties by id).

    Found per customer by walking their enrollments in time order through
    ix_enrollments_customer_enrolled and stopping at the first that qualifies (usually the
    very first), instead of finding every segment's first enrollment and ranking them all
    with a window function. OFFSET 0 keeps SQLite from flattening the per-customer query
    into its user, which would run the look-up once per reference to it."""
    e, p, o = enrollments_t, enrollments_t.alias("earlier"), orders_t
    enrolled = enrollments_t.alias("enrolled")
    earlier_in_segment = exists().where(
        p.c.segment == e.c.segment, p.c.customer_id == e.c.customer_id,
        p.c.enrolled_at <= end, p.c.order_id.is_not(None),
        or_(p.c.enrolled_at < e.c.enrolled_at,
            and_(p.c.enrolled_at == e.c.enrolled_at, p.c.id < e.c.id)))
    placed = (select(o.c.placed_at).select_from(e).join(o, o.c.id == e.c.order_id)
              .where(e.c.customer_id == enrolled.c.customer_id, e.c.enrolled_at <= end,
                     e.c.order_id.is_not(None), ~earlier_in_segment, o.c.placed_at <= end))
    if start is not None:
        placed = placed.where(o.c.placed_at >= start)
    first_placed = placed.order_by(e.c.enrolled_at, e.c.id).limit(1).scalar_subquery()
    per_customer = (select(enrolled.c.customer_id, first_placed.label("placed_at"))
                    .group_by(enrolled.c.customer_id).offset(0).subquery("first_placed"))
    return (select(per_customer.c.customer_id, per_customer.c.placed_at)
            .where(per_customer.c.placed_at.is_not(None)).subquery("anchors"))


def cohorts(session: Session, start: datetime | None, end: datetime) -> list[Cohort]:
    """Cohorts by the calendar month (UTC) of each customer's anchor order, oldest first.

    ``retained[k-1]`` is the share of the cohort who placed another purchase at most k×30
    days after their anchor order (cumulative: k = 2 includes k = 1). It is listed only while
    the whole cohort is mature: the end of the anchor month (midnight UTC on the 1st of the
    next month) + k×30 days must be at or before ``end``, so that the customer anchored last in
    the month has had the full k×30 days too. A cohort anchored in March is thus listed with
    no entry until 30 days after 1 April, and recent cohorts have fewer entries than old ones.
    Gaps are measured in whole seconds."""
    dialect = session.get_bind().dialect.name
    # The anchor: the order of the customer's first enrollment in any segment (the same rows
    # as the "all" segment of the segment metrics, so both count the same customers).
    first = _anchor_times(start, end)
    later = orders_t.alias("later")
    # The next purchase per customer: a correlated look-up through ix_orders_customer_placed
    # that stops at the first purchase after the anchor (no join of every later order and no
    # sort to group them). OFFSET 0 keeps SQLite from flattening it into the grouping query,
    # which would run the look-up twice (once for the GROUP BY key and once for the output).
    next_at = (select(later.c.placed_at)
               .where(later.c.customer_id == first.c.customer_id,
                      later.c.placed_at > first.c.placed_at,
                      later.c.placed_at <= end, is_purchase(later, end))
               .order_by(later.c.placed_at).limit(1).scalar_subquery())
    returns = (select(first.c.placed_at.label("anchor_at"), next_at.label("next_at"))
               .offset(0).subquery("returns"))
    per_customer = select(
        _month_key(returns.c.anchor_at, dialect).label("month"),
        seconds_between(returns.c.anchor_at, returns.c.next_at).label("gap"),
    ).subquery("per_customer")
    # ceil(gap / 30 days) in integer arithmetic: the smallest k with gap <= k×30 days. NULL
    # (no order again) stays NULL.
    bucket = ((per_customer.c.gap + (_WINDOW_SECONDS - 1)) // _WINDOW_SECONDS).label("bucket")
    rows = session.execute(
        select(per_customer.c.month, bucket, func.count().label("customers"))
        .group_by(per_customer.c.month, bucket)
    ).all()
    sizes: dict[str, int] = defaultdict(int)
    returned: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for month, k, count in rows:
        sizes[month] += count
        if k is not None:
            returned[month][max(int(k), 1)] += count  # a gap under a second is still "within 30 days"
    return [_cohort(month, sizes[month], returned[month], end) for month in sorted(sizes)]


def _cohort(month: str, size: int, returned: dict[int, int], end: datetime) -> Cohort:
    retained: list[Rate] = []
    matured_by = _month_end(month)
    k, cumulative = 1, 0
    while matured_by + k * WINDOW <= end:
        cumulative += returned.get(k, 0)
        retained.append(Rate.of(cumulative, size))
        k += 1
    return Cohort(month=month, customers=size, retained=retained)
