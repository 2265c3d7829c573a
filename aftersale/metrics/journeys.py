"""Does each journey help? Holdout lift per journey, and the message funnel per step.

Both are single aggregate queries (SQLAlchemy Core, the same SQL on SQLite and PostgreSQL):
only one row per journey and group, or per step and channel, comes back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.expression import FunctionElement

from aftersale.core.survey_scales import NPS_PASSIVE_MIN, NPS_PROMOTER_MIN
from aftersale.db.models import DeliveryEvent, Enrollment, Message, Order, SurveyResponse
from aftersale.metrics.anchors import is_purchase, orders_t
from aftersale.metrics.model import FunnelStep, GroupOutcome, JourneyLift, Nps, Rate
from aftersale.metrics.stats import as_lift, difference_ci, nps_difference_ci, verdict
from aftersale.pipeline.send_outcomes import DeliveryKind as K


def in_period(column: Any, start: datetime | None, end: datetime) -> ColumnElement[bool]:
    """start <= column <= end; no start means "since the beginning"."""
    return column <= end if start is None else column.between(start, end)


# --- holdout lift ------------------------------------------------------------------------------


def _first_enrollments(start: datetime | None, end: datetime) -> Any:
    """Per (journey, customer): the customer's first enrollment in the journey (by time, then
    id), with its anchor order's time. Whether the customer is treated or holdout is decided by
    this first enrollment only: a later re-entry must not switch their group.

    The customer is in the period when the anchor order was placed in it; an enrollment that
    no order started (none of the shipped journeys, but a trigger could be another event) is
    placed by its enrollment time instead. Enrollments after ``end`` have not happened yet."""
    e, p = Enrollment.__table__, Enrollment.__table__.alias("earlier")
    # The first enrollment is the one with no earlier one (by time, then id) in the journey:
    # a NOT EXISTS probe through ix_enrollments_journey_customer per enrollment, cheaper on
    # SQLite than ranking every enrollment with row_number() and reading the ranks back.
    earlier = exists().where(
        p.c.journey == e.c.journey, p.c.customer_id == e.c.customer_id,
        p.c.enrolled_at <= end,
        or_(p.c.enrolled_at < e.c.enrolled_at,
            and_(p.c.enrolled_at == e.c.enrolled_at, p.c.id < e.c.id)))
    anchor = aliased(Order, name="anchor")
    return (select(e.c.journey, e.c.customer_id, e.c.holdout, e.c.enrolled_at,
                   anchor.placed_at.label("anchor_at"))
            .outerjoin(anchor, anchor.id == e.c.order_id)
            .where(e.c.enrolled_at <= end, ~earlier,
                   in_period(func.coalesce(anchor.placed_at, e.c.enrolled_at), start, end))
            .subquery("firsts"))


def _latest_nps(firsts: Any, end: datetime) -> Any:
    """The latest NPS score the customer gave after their first enrollment in the journey and
    by ``end`` (an answer given before it cannot show the journey's effect); NULL if none.

    A correlated look-up per first enrollment (by the customer index on survey_responses)
    rather than a second pass over the first enrollments, which would sort them again."""
    return (select(SurveyResponse.score)
            .where(SurveyResponse.customer_id == firsts.c.customer_id,
                   SurveyResponse.kind == "nps",
                   SurveyResponse.responded_at >= firsts.c.enrolled_at,
                   SurveyResponse.responded_at <= end)
            .order_by(SurveyResponse.responded_at.desc(), SurveyResponse.id.desc())
            .limit(1).scalar_subquery())


def journey_lifts(session: Session, start: datetime | None, end: datetime) -> list[JourneyLift]:
    """Per journey with customers in the period: treated vs holdout, and the difference.

    - treated / holdout: customers whose first enrollment in the journey was (not) in the
      holdout; ``customers`` counts all of them.
    - repeat purchase: a purchase (not cancelled or refunded by ``end``, as in
      :func:`aftersale.metrics.anchors.is_purchase`) placed after the anchor order (the first
      enrollment's order) and by ``end``, over the customers that have an anchor order.
    - NPS: each customer's latest NPS answer after their first enrollment. ``nps_lift`` is
      given only when both groups have answers. Holdout customers get no messages, surveys
      included, so they are usually never asked and ``nps_lift`` is mostly None: an NPS
      "lift" against the few who answered through another route would be biased anyway.
    - the verdict is about repeat purchase, needing 30 customers with an anchor in each group.
    """
    firsts = _first_enrollments(start, end)
    # Bought again: a purchase after the anchor and by ``end``. An EXISTS probe per first
    # enrollment through ix_orders_customer_placed, which stops at the first such purchase;
    # cheaper on SQLite than grouping every order by customer and joining that back.
    later = orders_t.alias("later")
    bought_again = exists().where(later.c.customer_id == firsts.c.customer_id,
                                  later.c.placed_at > firsts.c.anchor_at,
                                  later.c.placed_at <= end, is_purchase(later, end))
    per_customer = (
        select(firsts.c.journey, firsts.c.holdout, firsts.c.anchor_at,
               case((bought_again, 1), else_=0).label("repeated"),
               _latest_nps(firsts, end).label("score"))
        # OFFSET 0 keeps SQLite from flattening this into the grouping query, where the NPS
        # look-up would run twice per row (once for the GROUP BY key, once for the output).
        .offset(0)
        .subquery("per_customer"))
    c = per_customer.c
    # Grouped by the score itself, so the NPS look-up appears once in the query (not in three
    # CASEs); at most 12 scores x 2 groups per journey come back, folded into counts here.
    rows = session.execute(
        select(c.journey, c.holdout, c.score, func.count().label("customers"),
               func.count(c.anchor_at).label("anchored"),
               func.coalesce(func.sum(c.repeated), 0).label("repeaters"))
        .group_by(c.journey, c.holdout, c.score)
    ).all()
    groups: dict[str, dict[bool, GroupCounts]] = {}
    for row in rows:
        by_group = groups.setdefault(row.journey, {})
        by_group[bool(row.holdout)] = by_group.get(bool(row.holdout), NO_ONE).add(
            row.score, row.customers, row.anchored, row.repeaters)
    return [_lift(journey, by_group.get(False, NO_ONE), by_group.get(True, NO_ONE))
            for journey, by_group in sorted(groups.items())]


@dataclass(frozen=True)
class GroupCounts:
    """A group's customers, those with an anchor order, repeat purchasers and latest NPS
    answers, added up from grouped rows (also the delivery groups of
    :mod:`aftersale.metrics.delivery`)."""

    customers: int
    anchored: int
    repeaters: int
    promoters: int
    passives: int
    detractors: int

    def add(self, score: int | None, customers: int, anchored: int, repeaters: int) -> GroupCounts:
        """These counts plus customers whose latest NPS answer was ``score`` (None: none)."""
        promoters = passives = detractors = 0
        if score is not None and score >= NPS_PROMOTER_MIN:
            promoters = customers
        elif score is not None and score >= NPS_PASSIVE_MIN:
            passives = customers
        elif score is not None:
            detractors = customers
        return GroupCounts(self.customers + customers, self.anchored + anchored,
                      self.repeaters + repeaters, self.promoters + promoters,
                      self.passives + passives, self.detractors + detractors)

    def outcome(self) -> GroupOutcome:
        return GroupOutcome(customers=self.customers,
                            repeat_purchase_rate=Rate.of(self.repeaters, self.anchored),
                            nps=Nps.of(self.promoters, self.passives, self.detractors))


NO_ONE = GroupCounts(0, 0, 0, 0, 0, 0)


def _lift(journey: str, treated: GroupCounts, holdout: GroupCounts) -> JourneyLift:
    repeat = as_lift(difference_ci(treated.repeaters, treated.anchored,
                                   holdout.repeaters, holdout.anchored))
    t_nps, h_nps = treated.outcome().nps, holdout.outcome().nps
    nps_lift = None
    if t_nps.n and h_nps.n:
        nps_lift = as_lift(nps_difference_ci(t_nps.promoters, t_nps.detractors, t_nps.n,
                                             h_nps.promoters, h_nps.detractors, h_nps.n))
    return JourneyLift(journey=journey, treated=treated.outcome(), holdout=holdout.outcome(),
                       repeat_purchase_lift=repeat, nps_lift=nps_lift,
                       verdict=verdict(repeat, treated.anchored, holdout.anchored))


# --- funnel ------------------------------------------------------------------------------------

# A message counts once in every stage it reached. A stage is reached when an event of that
# stage *or a later one* was seen: a provider's report can be lost or late, and image blocking
# hides the open of a mail that is then clicked; yet a click or a spam report cannot happen to
# a message that never arrived. WhatsApp's "read" is "opened".
# Opens and clicks count people only: an Apple Mail Privacy Protection open and a click a mail
# scanner most likely made (aftersale.core.scanners) prove delivery, and are counted beside,
# as ``machine_opened`` and ``suspect_clicked``, never inside ``opened`` and ``clicked``.
_OPENED = (K.OPENED, K.READ, K.CLICKED)
_MACHINE = (K.MACHINE_OPENED, K.SUSPECT_CLICKED)
_DELIVERED = (K.DELIVERED, *_OPENED, *_MACHINE, K.SPAM_REPORT, K.UNSUBSCRIBED)
_FAILED = (K.FAILED, K.UNDELIVERED, K.DROPPED)  # the provider gave up (dropped: never tried)
_UNSUBSCRIBED = (K.UNSUBSCRIBED, K.SPAM_REPORT)  # a spam report unsubscribes, in effect
STAGES: dict[str, tuple[K, ...]] = {
    "delivered": _DELIVERED, "opened": _OPENED, "clicked": (K.CLICKED,),
    "bounced": (K.BOUNCED,), "failed": _FAILED, "unsubscribed": _UNSUBSCRIBED,
    "machine_opened": (K.MACHINE_OPENED,), "suspect_clicked": (K.SUSPECT_CLICKED,),
}


class _unindexed(FunctionElement[Any]):
    """The column, kept from choosing the index for a term: SQLite's planner (with no ANALYZE
    statistics) would walk ix_messages_status_due for ``status = 'sent'``, nearly every row,
    by random look-ups. SQLite's unary ``+`` turns that off; elsewhere it is the column."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(_unindexed, "sqlite")
def _unindexed_sqlite(element: _unindexed, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


@compiles(_unindexed)
def _unindexed_default(element: _unindexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def _stages_reached(end: datetime) -> Any:
    """Per message with events by ``end``: message_id and a 0/1 flag per stage reached. One
    pass over ix_delivery_events_message_stage (message_id, occurred_at, kind), which holds
    every column read, in message_id order: grouped as it is read, no sort and no table."""
    return (select(DeliveryEvent.message_id,
                   *(func.max(case((DeliveryEvent.kind.in_([k.value for k in kinds]), 1),
                                   else_=0)).label(name)
                     for name, kinds in STAGES.items()))
            .where(DeliveryEvent.occurred_at <= end)
            .group_by(DeliveryEvent.message_id)
            .subquery("reached"))


_StepKey = tuple[str, str, str, str]  # journey, step, template, channel


def _sends(session: Session, start: datetime | None, end: datetime) -> dict[_StepKey, Any]:
    """Per step and channel: messages sent in the period, sends that failed in it, and when
    the step was first sent. Read from ix_messages_funnel alone, which holds every column
    used in the grouping order: no sort, and none of the wide message rows is read."""
    status = _unindexed(Message.status)
    sent = Message.status == "sent"
    rows = session.execute(
        select(Message.journey, Message.step_key, Message.template, Message.channel,
               func.sum(case((sent, 1), else_=0)).label("sent"),
               func.sum(case((sent, 0), else_=1)).label("failed"),
               func.min(func.coalesce(Message.sent_at, Message.sending_at)).label("first_at"))
        .where(or_(and_(status == "sent", in_period(Message.sent_at, start, end)),
                   and_(status == "failed", in_period(Message.sending_at, start, end))))
        .group_by(Message.journey, Message.step_key, Message.template, Message.channel)
    ).all()
    return {(r.journey, r.step_key, r.template, r.channel or "unknown"): r for r in rows}


def _stages(session: Session, start: datetime | None, end: datetime
            ) -> dict[_StepKey, dict[str, int]]:
    """Per step and channel: the messages sent in the period that reached each stage. Driven
    from the delivery events (fewer than the messages), each message found by its id."""
    reached = _stages_reached(end)
    rows = session.execute(
        select(Message.journey, Message.step_key, Message.template, Message.channel,
               *(func.sum(reached.c[name]).label(name) for name in STAGES))
        .join_from(reached, Message, Message.id == reached.c.message_id)
        .where(Message.status == "sent", in_period(Message.sent_at, start, end))
        .group_by(Message.journey, Message.step_key, Message.template, Message.channel)
    ).all()
    return {(r.journey, r.step_key, r.template, r.channel or "unknown"):
            {name: int(getattr(r, name) or 0) for name in STAGES} for r in rows}


def funnel(session: Session, start: datetime | None, end: datetime) -> list[FunnelStep]:
    """Per journey, step, template and channel: how many messages reached each stage.

    Messages in the period: sent (status 'sent', ``sent_at`` in the period) or failed to send
    (status 'failed', last attempt in the period). ``sent`` counts the first kind; the other
    stages count sent messages only, except ``failed``, which counts both a failed send and a
    provider's failed/undelivered/dropped report. Only delivery events by ``end`` count.
    Steps are listed per journey in the order they were first sent, which is the journey's
    order for every customer who got them.

    Two grouped queries, each returning one row per step and channel: the sends, from the
    messages alone, and the stages reached, from the delivery events joined to their
    messages. Joining every message to its events instead costs twice as much on SQLite."""
    sends = _sends(session, start, end)
    stages = _stages(session, start, end)
    nothing = dict.fromkeys(STAGES, 0)
    steps = []
    for key in sorted(sends, key=lambda k: (k[0], sends[k].first_at, k[1], k[3])):
        journey, step, template, channel = key
        reached = stages.get(key, nothing)
        steps.append(FunnelStep(
            journey=journey, step=step, template=template, channel=channel,
            sent=int(sends[key].sent or 0),
            **{name: reached[name] for name in STAGES if name != "failed"},
            failed=reached["failed"] + int(sends[key].failed or 0)))
    return steps
