"""Cohort retention: customers grouped by the month of their anchor order, and the share who
ordered again within 30, 60, 90, ... days.

One aggregate query over the report's anchor table (:mod:`aftersale.metrics.anchors`, which
also holds each customer's gap to their next purchase) returns a row per (month, 30-day bucket
of that gap); the cumulative rates are summed up in Python from those few rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aftersale.metrics.anchors import Anchors, anchor_t, using_anchors
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


def cohorts(session: Session, start: datetime | None, end: datetime,
            anchors: Anchors | None = None) -> list[Cohort]:
    """Cohorts by the calendar month (UTC) of each customer's anchor order, oldest first.

    ``retained[k-1]`` is the share of the cohort who placed another purchase at most k×30
    days after their anchor order (cumulative: k = 2 includes k = 1). It is listed only while
    the whole cohort is mature: the end of the anchor month (midnight UTC on the 1st of the
    next month) + k×30 days must be at or before ``end``, so that the customer anchored last in
    the month has had the full k×30 days too. A cohort anchored in March is thus listed with
    no entry until 30 days after 1 April, and recent cohorts have fewer entries than old ones.
    Gaps are measured in whole seconds. ``anchors``: the report's anchor table, already filled
    on this session for the same period; without it one is filled and dropped here."""
    dialect = session.get_bind().dialect.name
    with using_anchors(session, start, end, anchors):
        # The anchor: the order of the customer's first enrollment in any segment, the rows of
        # the "all" segment, so the segment metrics and the cohorts count the same customers.
        a = anchor_t
        # ceil(gap / 30 days) in integer arithmetic: the smallest k with gap <= k×30 days. NULL
        # (no order again) stays NULL.
        bucket = ((a.c.gap + (_WINDOW_SECONDS - 1)) // _WINDOW_SECONDS).label("bucket")
        month = _month_key(a.c.placed_at, dialect).label("month")
        rows = session.execute(
            select(month, bucket, func.count().label("customers"))
            .where(a.c.overall == 1)
            .group_by(month, bucket)
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
