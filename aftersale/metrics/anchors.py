"""Building blocks shared by the metric queries: which orders are purchases, each customer's
anchor order, and time differences that compile to the same numbers on SQLite and PostgreSQL.

Everything here is SQLAlchemy Core so the metrics stay aggregates in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from aftersale.db.models import Enrollment, Order

ALL = "all"
DAY_SECONDS = 86_400
NOT_PURCHASES = ("cancelled", "refunded")

orders_t = Order.__table__
enrollments_t = Enrollment.__table__


class epoch_seconds(FunctionElement[int]):
    """Whole seconds since 1970 of a stored UTC timestamp.

    Integer seconds make "within N days" exact: julianday() differences are floats, and a
    string comparison with datetime(x, '+N days') breaks on SQLite's fractional seconds.
    """

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    # SQLite stores naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"); strftime('%s') reads it.
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds)
def _epoch_default(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def seconds_between(earlier: ColumnElement[Any], later: ColumnElement[Any]) -> ColumnElement[int]:
    return epoch_seconds(later) - epoch_seconds(earlier)


def is_purchase(orders: Any, end: datetime) -> ColumnElement[bool]:
    """An order that counts as a purchase in a report as of ``end``.

    Cancelled or refunded orders are never purchases (DESIGN section 4): the status says so
    now, and a cancelled_at/refunded_at stamp at or before ``end`` says so even if the status
    was never updated. Shared with the other metric modules so they all agree.
    """
    return and_(
        not_(orders.c.status.in_(NOT_PURCHASES)),
        or_(orders.c.cancelled_at.is_(None), orders.c.cancelled_at > end),
        or_(orders.c.refunded_at.is_(None), orders.c.refunded_at > end),
    )


def anchors(start: datetime | None, end: datetime, *, by_segment: bool,
            segments: Sequence[str] | None = None) -> Select[Any]:
    """One row per (segment, customer): segment, customer_id, order_id, placed_at.

    The anchor is the order of the customer's first enrollment in the segment (earliest
    enrolled_at, ties by id). Only enrollments that exist at ``end`` and that an order
    started count (every shipped journey is triggered by order.placed). A cancelled anchor
    order still anchors: the customer was enrolled, and later orders count against it. The
    period filter applies to the anchor order's placed_at: [start, end].

    With ``by_segment=False`` the rows are for ``all``: every customer who is in some segment
    in the period, once, anchored at the earliest of those segment anchors (by enrolled_at,
    ties by id). Without ``start`` that is simply their first enrollment in any segment; with
    it, a customer whose first enrollment predates the period but who entered another segment
    within it is still in ``all``, so ``all`` covers every segment row.
    """
    in_period = _segment_anchors(start, end, None if not by_segment else segments)
    if by_segment:
        return select(in_period.c.segment, in_period.c.customer_id, in_period.c.order_id,
                      in_period.c.placed_at)
    first = func.row_number().over(partition_by=in_period.c.customer_id,
                                   order_by=(in_period.c.enrolled_at, in_period.c.enrollment_id))
    ranked = select(in_period, first.label("overall_rank")).subquery("overall")
    return (select(literal(ALL).label("segment"), ranked.c.customer_id, ranked.c.order_id,
                   ranked.c.placed_at)
            .where(ranked.c.overall_rank == 1))


def segment_anchors(start: datetime | None, end: datetime,
                    segments: Sequence[str] | None = None) -> Select[Any]:
    """One row per (segment, customer) in the period: segment, customer_id, order_id,
    enrolled_at, enrollment_id, placed_at (of the anchor order). See :func:`anchors`.

    The first enrollment is the one with no earlier enrollment (by enrolled_at, ties by id) in
    the same segment: a NOT EXISTS probe through ix_enrollments_segment_customer, which costs
    about two thirds of ranking every enrollment with a window function on SQLite.
    """
    e, p, o = enrollments_t, enrollments_t.alias("earlier"), orders_t
    earlier = exists().where(
        p.c.segment == e.c.segment, p.c.customer_id == e.c.customer_id,
        # the redundant upper bound lets the probe stop at this enrollment's time
        p.c.enrolled_at <= e.c.enrolled_at, p.c.order_id.is_not(None),
        or_(p.c.enrolled_at < e.c.enrolled_at,
            and_(p.c.enrolled_at == e.c.enrolled_at, p.c.id < e.c.id)))
    query = (select(e.c.segment, e.c.customer_id, e.c.order_id, e.c.enrolled_at,
                    e.c.id.label("enrollment_id"), o.c.placed_at)
             .join_from(e, o, o.c.id == e.c.order_id)
             .where(e.c.enrolled_at <= end, e.c.order_id.is_not(None), ~earlier,
                    o.c.placed_at <= end))
    if segments is not None:
        query = query.where(e.c.segment.in_(list(segments)))
    if start is not None:
        query = query.where(o.c.placed_at >= start)
    return query


def _segment_anchors(start: datetime | None, end: datetime, segments: Sequence[str] | None) -> Any:
    return segment_anchors(start, end, segments).subquery("segment_anchor")
