"""dispatch-messages: advance due enrollments, then send the messages they produced.

Exactly once, in three steps, each its own transaction:

1. ``advance_due``: run the pure engine for enrollments whose due time has come; each send
   becomes a ``messages`` row (unique per enrollment and step) in the same transaction that
   moves the enrollment on, so a step is never produced twice.
2. ``send_pending``: claim pending messages, choose the channel and render them, and mark them
   ``sending`` (committed) *before* any provider is called.
3. record each provider result. A crash between 2 and 3 leaves rows in ``sending``; after the
   claim expires ``recover_stale`` flags them ``unknown`` for review instead of sending again,
   because the provider may well have delivered them.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import Channel, OutboundMessage, SendResult
from aftersale.channels.choice import Contact, choose_channel
from aftersale.clock import Clock
from aftersale.counts import Counts
from aftersale.db.models import AlertRecord, Customer, Enrollment, Message, Order, SurveyResponse
from aftersale.events import SURVEY_SCALES
from aftersale.facts import (
    customer_context,
    enrollment_facts,
    order_context,
    responses_by_customer,
)
from aftersale.journeys.definitions import Definitions, VersionCache
from aftersale.journeys.engine import AlertAction, Position, SendAction, Skip, Status, advance
from aftersale.journeys.model import Journey
from aftersale.links import Links

log = logging.getLogger(__name__)
RETRY_BASE = timedelta(minutes=1)
MAX_ATTEMPTS = 8


@dataclass
class DispatchCounts(Counts):
    advanced: int = 0
    queued: int = 0
    alerts: int = 0
    completed: int = 0
    exited: int = 0
    steps_skipped: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    not_sent: int = 0
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    not_sent_reasons: Counter[str] = field(default_factory=Counter)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _claim(query: Any, session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


# -- 1. advance ------------------------------------------------------------------------------
def advance_due(factory: sessionmaker[Session], definitions: Definitions, clock: Clock,
                limit: int = 1000) -> DispatchCounts:
    counts = DispatchCounts()
    now = clock.now()
    with factory() as session, session.begin():
        rows = session.scalars(_claim(
            select(Enrollment).where(Enrollment.status == Status.ACTIVE.value,
                                     Enrollment.due_at <= now)
            .order_by(Enrollment.due_at, Enrollment.id).limit(limit), session)).all()
        versions = VersionCache(session)
        customers = _by_id(session, Customer, {e.customer_id for e in rows})
        orders = _by_id(session, Order, {e.order_id for e in rows if e.order_id})
        answers = responses_by_customer(session, set(customers))
        for enrollment in rows:
            counts.advanced += 1
            _advance_one(session, enrollment, versions.get(enrollment.journey_version_id),
                         customers[enrollment.customer_id], orders.get(enrollment.order_id),
                         answers[enrollment.customer_id], definitions, now, counts)
    return counts


def _advance_one(session: Session, enrollment: Enrollment, journey: Journey,
                 customer: Customer, order: Order | None, answers: list[SurveyResponse],
                 definitions: Definitions, now: datetime, counts: DispatchCounts) -> None:
    has_guide = (bool(definitions.content.guides_for(order.items, customer.locale or "en"))
                 if order is not None else None)
    facts = enrollment_facts(session, enrollment, customer, order, definitions.segments, now,
                             answers, has_guide=has_guide)
    position = Position(enrollment.pc, enrollment.wait_until, enrollment.waiting_for)
    outcome = advance(journey, position, facts, now)
    for action in outcome.actions:
        match action:
            case SendAction():
                session.add(Message(
                    id=new_message_id(), enrollment_id=enrollment.id, step_key=action.step_key,
                    customer_id=customer.id, journey=journey.name, template=action.template,
                    channels=list(action.channels), status="pending", created_at=now,
                    due_at=now, attempts=0))
                counts.queued += 1
            case AlertAction():
                session.add(AlertRecord(
                    enrollment_id=enrollment.id, step_key=action.step_key,
                    customer_id=customer.id, order_id=enrollment.order_id, kind=action.kind,
                    details={"segment": enrollment.segment, "journey": journey.name,
                             "response": facts.context.get("response", {})},
                    created_at=now))
                counts.alerts += 1
            case Skip():
                counts.steps_skipped += 1
    enrollment.pc = outcome.position.pc
    enrollment.wait_until = outcome.position.wait_until
    enrollment.waiting_for = outcome.position.waiting_for
    enrollment.due_at = outcome.due_at
    if outcome.status != Status.ACTIVE:
        enrollment.status = outcome.status.value
        enrollment.ended_at = now
        enrollment.end_reason = outcome.reason
        if outcome.status == Status.EXITED:
            counts.exited += 1
        else:
            counts.completed += 1


# -- 2 + 3. send -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prepared:
    outbound: OutboundMessage
    channel: str


def send_pending(factory: sessionmaker[Session], definitions: Definitions,
                 channels: Mapping[str, Channel], links: Links, clock: Clock,
                 limit: int = 1000) -> DispatchCounts:
    counts = DispatchCounts()
    now = clock.now()
    prepared: list[_Prepared] = []
    with factory() as session, session.begin():
        rows = session.scalars(_claim(
            select(Message).where(Message.status == "pending", Message.due_at <= now)
            .order_by(Message.due_at, Message.id).limit(limit), session)).all()
        customers = _by_id(session, Customer, {m.customer_id for m in rows})
        enrollments = _by_id(session, Enrollment, {m.enrollment_id for m in rows})
        orders = _by_id(session, Order, {e.order_id for e in enrollments.values() if e.order_id})
        versions = VersionCache(session)
        for message in rows:
            enrollment = enrollments[message.enrollment_id]
            order = orders.get(enrollment.order_id or "")
            exit_event = _exit_seen(versions.get(enrollment.journey_version_id).exit_on, order)
            if enrollment.status == Status.EXITED.value or exit_event:
                # An exit (a cancellation) that arrived after the step was queued wins, even
                # when the journey had already reached its end.
                _not_sent(message, f"{exit_event or 'exit event'} before sending", counts)
                continue
            item = _prepare(message, customers[message.customer_id], order, definitions,
                            set(channels), links, counts)
            if item is not None:
                message.status, message.sending_at = "sending", now
                message.attempts += 1
                prepared.append(item)
    by_channel: dict[str, list[OutboundMessage]] = {}
    for item in prepared:
        by_channel.setdefault(item.channel, []).append(item.outbound)
    results: list[SendResult] = []
    for name, batch in by_channel.items():
        results += channels[name].send_batch(batch)
    _record(factory, results, {p.outbound.id: p.channel for p in prepared}, clock, counts)
    return counts


def _exit_seen(exit_on: tuple[str, ...], order: Order | None) -> str | None:
    if order is None:
        return None
    for event, when in (("order.cancelled", order.cancelled_at),
                        ("order.refunded", order.refunded_at)):
        if when is not None and event in exit_on:
            return event
    return None


def _by_id(session: Session, model: Any, ids: set[Any]) -> dict[Any, Any]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}


def _not_sent(message: Message, reason: str, counts: DispatchCounts) -> None:
    message.status, message.status_reason = "not_sent", reason
    counts.not_sent += 1
    counts.not_sent_reasons[reason.split(";")[0].split(": ", 1)[-1]] += 1


def _prepare(message: Message, customer: Customer, order: Order | None,
             definitions: Definitions, available: set[str], links: Links,
             counts: DispatchCounts) -> _Prepared | None:
    content = definitions.content
    transactional = content.is_transactional(message.template)
    contact = Contact(customer.email, customer.phone,
                      {"email": customer.consent_email, "sms": customer.consent_sms,
                       "whatsapp": customer.consent_whatsapp})
    choice = choose_channel(message.channels, contact, transactional, available,
                            lambda channel: content.has(message.template, channel))
    message.skips = [list(s) for s in choice.skipped]
    if choice.channel is None or choice.recipient is None:
        _not_sent(message, choice.reason, counts)
        return None
    context = render_context(customer, order, message.id, message.template, choice.channel,
                             transactional, definitions, links)
    rendered = content.render(message.template, choice.channel, customer.locale, context)
    message.channel, message.recipient, message.locale = choice.channel, choice.recipient, rendered.locale
    message.subject, message.body_text, message.body_html = rendered.subject, rendered.text, rendered.html
    message.provider = "pending"
    return _Prepared(OutboundMessage(
        id=message.id, channel=choice.channel, recipient=choice.recipient, text=rendered.text,
        subject=rendered.subject, html=rendered.html, transactional=transactional,
        journey=message.journey, template=message.template, customer_id=customer.id,
        unsubscribe_url=context["links"]["unsubscribe"],
    ), choice.channel)


def render_context(customer: Customer, order: Order | None, message_id: str, template: str,
                   channel: str, transactional: bool, definitions: Definitions,
                   links: Links) -> dict[str, Any]:
    """What templates see (documented in aftersale.content.library)."""
    kind = definitions.content.survey_kind(template)
    survey = None
    if kind is not None:
        low, high = SURVEY_SCALES[kind]
        survey = {"kind": kind, "scale": list(range(low, high + 1)),
                  "link": lambda score: links.survey(message_id, customer.id, kind, int(score))}
    return {
        "customer": customer_context(customer),
        "order": order_context(order, definitions.segments) if order is not None else None,
        "links": {
            "unsubscribe": None if transactional else links.unsubscribe(message_id, customer.id,
                                                                        channel),
            "referral": links.referral(customer.id),
        },
        "survey": survey,
        "offer": None,
    }


def _record(factory: sessionmaker[Session], results: list[SendResult],
            channel_of: dict[str, str], clock: Clock, counts: DispatchCounts) -> None:
    if not results:
        return
    now = clock.now()
    with factory() as session, session.begin():
        rows = _by_id(session, Message, {r.message_id for r in results})
        for result in results:
            message = rows[result.message_id]
            message.provider_message_id = result.provider_message_id or message.provider_message_id
            if result.status == "sent":
                message.status, message.sent_at = "sent", now
                counts.sent += 1
                counts.sent_by_channel[channel_of[result.message_id]] += 1
            elif result.status == "retry" and message.attempts < MAX_ATTEMPTS:
                # Back to pending with exponential backoff; the provider said "not now".
                delay = max(RETRY_BASE * 2 ** (message.attempts - 1),
                            timedelta(seconds=result.retry_after or 0))
                message.status, message.due_at = "pending", now + delay
                message.status_reason = result.error
                counts.retried += 1
            else:
                message.status, message.status_reason = "failed", result.error
                counts.failed += 1


def recover_stale(factory: sessionmaker[Session], clock: Clock,
                  claim: timedelta = timedelta(minutes=5)) -> int:
    """Flag sends whose outcome is unknown (the sender died mid-send) for review."""
    cutoff = clock.now() - claim
    with factory() as session, session.begin():
        result = session.execute(
            update(Message).where(Message.status == "sending", Message.sending_at < cutoff)
            .values(status="unknown",
                    status_reason="sender stopped before recording the provider's answer; "
                                  "check the provider log before resending"))
        return result.rowcount or 0
