"""dispatch-messages: advance due enrollments, then send the messages they produced.

Exactly once, in three steps, each its own transaction:

1. ``advance_due``: run the pure engine for enrollments whose due time has come; each send
   becomes a ``messages`` row (unique per enrollment and step) in the same transaction that
   moves the enrollment on, so a step is never produced twice.
2. ``aftersale.pipeline.send.send_pending``: claim pending messages, check the send-time rules,
   choose the channel and render them, and mark them ``sending`` (committed) *before* any
   provider is called.
3. ``aftersale.pipeline.send`` records each provider result. A crash between 2 and 3 leaves rows
   in ``sending``; after the claim expires ``recover_stale`` flags those whose provider call
   had started (``call_started_at``) ``unknown`` for review instead of sending again, because
   the provider may well have delivered them, and puts the others back in the queue.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, not_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.clock import Clock
from aftersale.core.counts import Counts
from aftersale.core.events import SHIPMENT_EVENTS
from aftersale.core.experiments import Choice
from aftersale.core.journeys.engine import (
    AlertAction,
    Assigned,
    Facts,
    Outcome,
    Position,
    SendAction,
    Skip,
    Status,
    advance,
    in_time,
)
from aftersale.core.journeys.model import Journey
from aftersale.db.lookup import by_id, where_in
from aftersale.db.models import (
    AlertRecord,
    Customer,
    Enrollment,
    Message,
    Order,
    Shipment,
    SurveyResponse,
)
from aftersale.db.session import rowcount
from aftersale.pipeline.assignments import Assignments
from aftersale.pipeline.contexts import (
    enrollment_facts,
    responses_by_customer,
)
from aftersale.pipeline.definitions import Definitions, VersionCache

log = logging.getLogger(__name__)

#: How long a send batch may take (AFTERSALE_CLAIM_SECONDS) before its rows count as stale.
DEFAULT_CLAIM = timedelta(seconds=300)


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
    not_prepared: int = 0  # of deferred: preparing or rendering raised (see sending)
    advance_errors: int = 0  # enrollments whose step raised; they are tried again an hour later
    assigned: int = 0  # customers given a variant of an experiment for the first time
    retried: int = 0
    unknown: int = 0
    released: int = 0  # claimed by a sender that stopped before calling the provider: queued again
    not_sent: int = 0
    claimed: int = 0
    deferred: int = 0
    deferred_reasons: Counter[str] = field(default_factory=Counter)
    sms_segments: int = 0
    channel_skips: Counter[str] = field(default_factory=Counter)
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    not_sent_reasons: Counter[str] = field(default_factory=Counter)
    # Delivery of alerts to the team (aftersale.pipeline.alerts): settled, given up, put back for later.
    alerts_delivered: int = 0
    alerts_failed: int = 0
    alerts_retried: int = 0
    alert_routes: Counter[str] = field(default_factory=Counter)


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def claim(query: Any, session: Session) -> Any:
    """``query`` made safe to claim its rows with, for the first read of a transaction.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take disjoint rows.
    SQLite has no row locks, and pysqlite begins a transaction only at the first write, so
    two claimers could read the same pending rows and both send them: take the database's
    write lock first (``BEGIN IMMEDIATE``), which makes claimers on SQLite take turns."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return query.with_for_update(skip_locked=True)
    if dialect == "sqlite":
        connection = session.connection()
        if not getattr(connection.connection.dbapi_connection, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    return query


# -- 1. advance ------------------------------------------------------------------------------
def advance_due(factory: sessionmaker[Session], definitions: Definitions, clock: Clock,
                limit: int = 1000) -> DispatchCounts:
    counts = DispatchCounts()
    now = clock.now()
    with factory() as session, session.begin():
        rows = session.scalars(claim(
            select(Enrollment).where(Enrollment.status == Status.ACTIVE.value,
                                     Enrollment.due_at <= now)
            .order_by(Enrollment.due_at, Enrollment.id).limit(limit), session)).all()
        versions = VersionCache(session)
        customers = by_id(session, Customer, {e.customer_id for e in rows})
        orders = by_id(session, Order, {e.order_id for e in rows if e.order_id})
        shipments = by_id(session, Shipment, {e.shipment_id for e in rows if e.shipment_id})
        parcels = _parcels_awaited(session, rows)
        answers = responses_by_customer(session, set(customers))
        experiments = Assignments.load(session, set(customers), _journeys(versions, rows),
                                       definitions.journeys.values())
        for enrollment in rows:
            counts.advanced += 1
            customer, order = customers[enrollment.customer_id], orders.get(enrollment.order_id)
            given = _given_in_time(enrollment, answers[customer.id], now)
            try:
                journey = versions.get(enrollment.journey_version_id)
                facts = _facts(session, enrollment, customer, order, given, definitions, now,
                               experiments.choices(journey, customer.id),
                               shipments.get(enrollment.shipment_id or ""),
                               parcels.get(enrollment.order_id or "", []))
                outcome = advance(journey, _position(enrollment), facts, now)
                # Another dispatcher drew this customer first, differently: theirs holds, so
                # advance again with it. Each refusal puts one more stored draw in the map,
                # so this ends once the journey's experiments are all known.
                while not experiments.record(session, journey.name, customer.id,
                                             enrollment.id, outcome, now):
                    facts = replace(facts, variants=experiments.choices(journey, customer.id))
                    outcome = advance(journey, _position(enrollment), facts, now)
            except SQLAlchemyError:
                raise  # the database's trouble, not this enrollment's: the batch runs again
            except Exception as exc:  # noqa: BLE001 - one enrollment must not block the rest
                _could_not_advance(enrollment, exc, now, counts)
                continue
            _apply(session, enrollment, journey, customer, outcome, facts, given, now, counts)
        counts.assigned = experiments.recorded
    return counts


def _journeys(versions: VersionCache, rows: Sequence[Enrollment]) -> list[Journey]:
    """The journey versions of the batch that compile; one that does not fails its own
    enrollments when they advance."""
    found = []
    for version_id in {e.journey_version_id for e in rows}:
        try:
            found.append(versions.get(version_id))
        except SQLAlchemyError:
            raise
        except Exception:  # noqa: BLE001 - reported by the enrollment's own advance
            continue
    return found


RETRY_BROKEN_AFTER = timedelta(hours=1)


def _could_not_advance(enrollment: Enrollment, exc: Exception, now: datetime,
                       counts: DispatchCounts) -> None:
    """A step that raises (a stored journey version this release no longer reads, a condition
    only real data breaks) changed nothing. The enrollment stays active and is due again in
    an hour, behind the others: it would otherwise come first on every run and hold up every
    enrollment behind it, and once the cause is fixed it goes on by itself."""
    enrollment.due_at = now + RETRY_BROKEN_AFTER
    counts.advance_errors += 1
    log.error("enrollment %s (%s): %s: %s; tried again at %s", enrollment.id,
              enrollment.journey, type(exc).__name__, exc, enrollment.due_at, exc_info=exc)


def _given_in_time(enrollment: Enrollment, answers: list[SurveyResponse], now: datetime
                   ) -> list[SurveyResponse]:
    """A ``wait_for`` past its deadline is decided as of the deadline: the engine takes the
    timeout path for an answer given after it (``engine.in_time``), and the steps that follow
    must not read that answer either, or a reply stored months late, after an outage, would
    still raise the alert of the branch after a ``continue`` timeout."""
    deadline = enrollment.wait_until
    if enrollment.waiting_for is None or deadline is None or deadline > now:
        return answers
    return [a for a in answers if in_time(a.responded_at, deadline)]


def _position(enrollment: Enrollment) -> Position:
    return Position(enrollment.pc, enrollment.wait_until, enrollment.waiting_for)


def _parcels_awaited(session: Session, rows: Sequence[Enrollment]) -> dict[str, list[Shipment]]:
    """The parcels of each order whose enrollment waits for a shipment moment without being
    about one parcel (an order journey's ``wait_for: shipment.updated``: any of its parcels)."""
    order_ids = {e.order_id for e in rows if e.order_id and e.shipment_id is None
                 and e.waiting_for in SHIPMENT_EVENTS}
    found: defaultdict[str, list[Shipment]] = defaultdict(list)
    for shipment in where_in(session, Shipment, Shipment.order_id, order_ids):
        found[shipment.order_id].append(shipment)
    return found


def _facts(session: Session, enrollment: Enrollment, customer: Customer, order: Order | None,
           answers: list[SurveyResponse], definitions: Definitions, now: datetime,
           variants: Mapping[str, Choice], shipment: Shipment | None = None,
           parcels: Sequence[Shipment] = ()) -> Facts:
    has_guide = (bool(definitions.content.guides_for(order.items, customer.locale or "en"))
                 if order is not None else None)
    facts = enrollment_facts(session, enrollment, customer, order, definitions.segments, now,
                             answers, has_guide=has_guide, shipment=shipment,
                             shop_country=definitions.shop_country, parcels=parcels)
    # shop.yaml's switches ("arriving today" messages on or off) for `when` conditions
    return replace(facts, context={**facts.context, "shop": definitions.content.shop_switches()},
                   variants=variants)


def _apply(session: Session, enrollment: Enrollment, journey: Journey, customer: Customer,
           outcome: Outcome, facts: Facts, answers: list[SurveyResponse], now: datetime,
           counts: DispatchCounts) -> None:
    """Queue the outcome's messages and alerts and move the enrollment on."""
    for action in outcome.actions:
        match action:
            case SendAction():
                session.add(Message(
                    id=new_message_id(), enrollment_id=enrollment.id, step_key=action.step_key,
                    customer_id=customer.id, journey=journey.name, template=action.template,
                    channels=list(action.channels), status="pending", created_at=now,
                    due_at=now, attempts=0,
                    subject_override=dict(action.subject) if action.subject else None))
                counts.queued += 1
            case AlertAction():
                latest = next((a for a in reversed(answers)
                               if a.responded_at >= enrollment.enrolled_at), None)
                session.add(AlertRecord(
                    enrollment_id=enrollment.id, step_key=action.step_key,
                    customer_id=customer.id, order_id=enrollment.order_id, kind=action.kind,
                    # "answer": the answer that led here, for the team's e-mail and webhook
                    details={"segment": enrollment.segment, "journey": journey.name,
                             "response": facts.context.get("response", {}),
                             "answer": None if latest is None else {
                                 "kind": latest.kind, "score": latest.score,
                                 "comment": latest.comment}},
                    created_at=now))
                counts.alerts += 1
            case Skip():
                counts.steps_skipped += 1
            case Assigned():
                pass  # stored before the outcome was applied (Assignments.record)
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


@dataclass(frozen=True)
class Recovered:
    flagged: int  # its provider call had started: ``unknown``, for review
    released: int  # no call had started: ``pending`` again, sent by the next run


def recover_stale(factory: sessionmaker[Session], clock: Clock,
                  claim: timedelta = DEFAULT_CLAIM) -> Recovered:
    """Claims whose sender died (its rows are still ``sending`` after the claim expired): a
    send whose provider call had started may have gone out and is flagged for review; the
    others were never handed to a provider and go back to the queue, not counted as an
    attempt. A sender marks a call only while the row is still its claim, so a row released
    here is never called by the sender that claimed it."""
    stale = and_(Message.status == "sending", Message.sending_at < clock.now() - claim)
    # A claim without a token was taken by a release from before call marks (an old sender
    # in a rolling deploy, or rows left by the one this upgrade stopped): it marked nothing,
    # so any of its rows may have gone out.
    in_doubt = or_(Message.call_started_at.is_not(None), Message.claim_token.is_(None))
    with factory() as session, session.begin():
        flagged = rowcount(session.execute(
            update(Message).where(stale, in_doubt)
            .values(status="unknown",
                    status_reason="sender stopped before recording the provider's answer; "
                                  "check the provider log before resending")))
        released = rowcount(session.execute(
            update(Message).where(stale, not_(in_doubt))
            .values(status="pending", sending_at=None, claim_token=None,
                    attempts=Message.attempts - 1,
                    status_reason="queued again: its sender stopped before calling the "
                                  "provider")))
    if released:
        log.info("%d claimed message(s) whose sender stopped before calling the provider are "
                 "queued again", released)
    return Recovered(flagged or 0, released or 0)
