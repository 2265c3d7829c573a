"""Building blocks shared by the metric queries: which orders are purchases, each customer's
anchor order, and time differences that compile to the same numbers on SQLite and PostgreSQL.

The anchors of a report are found once and kept in a temporary table
(:func:`anchor_table`) that the segment metrics and the cohorts both read: finding every
customer's first enrollment per segment is the most expensive step of a report, and doing it
once keeps the two in agreement by construction.

Everything here is SQLAlchemy Core so the metrics stay aggregates in the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Date,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable
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


class utc_day(FunctionElement[date]):
    """The UTC calendar day of a stored timestamp, comparable with another ``utc_day`` and
    with a bound :class:`datetime.date`. Cheaper than :class:`epoch_seconds` on SQLite, where
    it is the first ten characters of the stored text (no date parsing per row)."""

    type = Date()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    # naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff": the day is its first ten characters
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day)
def _day_default(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) AS DATE)"


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


def segment_anchors(start: datetime | None, end: datetime,
                    segments: Sequence[str] | None = None) -> Select[Any]:
    """One row per (segment, customer) in the period: segment, customer_id, order_id,
    enrolled_at, enrollment_id, placed_at (of the anchor order). See :func:`anchor_table`.

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


# The anchors of one report, per connection (TEMPORARY): one row per (segment, customer) in
# the period, with the gap to their next purchase; ``overall`` is 1 on the row whose anchor is
# the customer's anchor in ``all`` (the earliest of their segment anchors), so ``all`` is
# those rows.
_temp = MetaData()
anchor_t = Table(
    "metrics_segment_anchor", _temp,
    Column("segment", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("order_id", orders_t.c.id.type, nullable=False),  # the anchor order
    Column("placed_at", orders_t.c.placed_at.type, nullable=False),
    # whole seconds from the anchor order to the next purchase (NULL: none by the report time)
    Column("gap", BigInteger),
    Column("overall", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
_anchor_index = Index("ix_metrics_segment_anchor", anchor_t.c.customer_id, anchor_t.c.segment)


@dataclass(frozen=True)
class Anchors:
    """The anchor table of one period, filled on one session's connection."""

    start: datetime | None
    end: datetime

    def check(self, start: datetime | None, end: datetime) -> None:
        if (start, end) != (self.start, self.end):
            raise ValueError(f"the anchor table is for {self.start}..{self.end}, "
                             f"not {start}..{end}")


@contextlib.contextmanager
def anchor_table(session: Session, start: datetime | None, end: datetime) -> Iterator[Anchors]:
    """Fill the temporary anchor table on the session's connection; drop it afterwards.

    One row per (segment, customer): the anchor is the order of the customer's first
    enrollment in the segment (earliest enrolled_at, ties by id). Only enrollments that exist
    at ``end`` and that an order started count (every shipped journey is triggered by
    order.placed). A cancelled anchor order still anchors: the customer was enrolled, and
    later orders count against it. The period filter applies to the anchor order's placed_at:
    [start, end]. ``gap`` is the whole seconds to the first purchase placed after the anchor
    order and by ``end`` (NULL: none).

    ``overall`` marks each customer's anchor in ``all``: every customer who is in some
    segment in the period, once, anchored at the earliest of their segment anchors (by
    enrolled_at, ties by id). Without ``start`` that is simply their first enrollment in any
    segment; with it, a customer whose first enrollment predates the period but who entered
    another segment within it is still in ``all``, so ``all`` covers every segment row.

    Every segment is kept (``all`` needs them all even when a report lists only some). After
    a failure the drop is only attempted: PostgreSQL refuses statements in a failed
    transaction, and there the caller's rollback removes the table; any leftover (pysqlite
    runs DDL outside the transaction) is dropped before the next report fills it.
    """
    session.execute(text(f"DROP TABLE IF EXISTS {anchor_t.name}"))
    session.execute(CreateTable(anchor_t))  # the index after the rows: faster than row by row
    sa = segment_anchors(start, end).subquery("segment_anchor")
    later = orders_t.alias("later")
    next_at = (select(func.min(later.c.placed_at))
               .where(later.c.customer_id == sa.c.customer_id, later.c.placed_at > sa.c.placed_at,
                      later.c.placed_at <= end, is_purchase(later, end))
               .scalar_subquery())
    rank = func.row_number().over(partition_by=sa.c.customer_id,
                                  order_by=(sa.c.enrolled_at, sa.c.enrollment_id))
    session.execute(anchor_t.insert().from_select(
        ["segment", "customer_id", "order_id", "placed_at", "gap", "overall"],
        select(sa.c.segment, sa.c.customer_id, sa.c.order_id, sa.c.placed_at,
               seconds_between(sa.c.placed_at, next_at),
               case((rank == 1, 1), else_=0))))
    session.execute(CreateIndex(_anchor_index))
    if session.get_bind().dialect.name == "postgresql":
        # a temporary table has no statistics until analyzed: without them PostgreSQL
        # expected 200 distinct anchor orders and chose nested loops over 150,000
        session.execute(text(f"ANALYZE {anchor_t.name}"))
    try:
        yield Anchors(start, end)
    except BaseException:
        with contextlib.suppress(SQLAlchemyError):
            session.execute(text(f"DROP TABLE IF EXISTS {anchor_t.name}"))
        raise
    session.execute(text(f"DROP TABLE {anchor_t.name}"))


@contextlib.contextmanager
def using_anchors(session: Session, start: datetime | None, end: datetime,
                  anchors: Anchors | None) -> Iterator[Anchors]:
    """The caller's anchor table (checked to be for this period), or a table of its own."""
    if anchors is not None:
        anchors.check(start, end)
        yield anchors
        return
    with anchor_table(session, start, end) as own:
        yield own
