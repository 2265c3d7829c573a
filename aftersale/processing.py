"""process-events: drain the inbox in batches and apply each event to the database.

Per event: upsert the customer, the order and its shipment, record survey answers, enroll the
customer into the journeys the event triggers (segment and holdout decided here), wake up
enrollments waiting for it, and end enrollments it exits. Each event runs in its own savepoint:
one bad event is marked failed with its reason and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.clock import Clock
from aftersale.counts import Counts
from aftersale.db.models import (
    Customer,
    Enrollment,
    InboxEvent,
    Message,
    Order,
    Referral,
    SurveyResponse,
)
from aftersale.events import Event, EventType
from aftersale.facts import segment_context
from aftersale.journeys.definitions import Definitions, VersionCache, ensure_version
from aftersale.journeys.engine import Status, in_holdout
from aftersale.journeys.model import Journey, Reentry
from aftersale.links import referral_code

log = logging.getLogger(__name__)

ORDER_STATUS = {
    EventType.ORDER_SHIPPED: ("shipped", "shipped_at"),
    EventType.ORDER_DELIVERED: ("delivered", "delivered_at"),
    EventType.ORDER_CANCELLED: ("cancelled", "cancelled_at"),
    EventType.ORDER_REFUNDED: ("refunded", "refunded_at"),
}
DEFAULT_MAX_AGE = timedelta(days=3)
# A late "shipped" must not turn a delivered order back: statuses only move forward.
STATUS_RANK = {"placed": 0, "shipped": 1, "delivered": 2, "cancelled": 3, "refunded": 4}


class EventRejected(Exception):
    """The event is valid JSON but cannot be applied (e.g. it names someone else's order)."""


class OrderNotYetKnown(EventRejected):
    """A shipment, delivery, cancellation or refund arrived before its order: webhooks are not
    delivered in order (a retried orders/create can come after fulfillments/create). The event
    waits and is retried until the order arrives or ``ORDER_WAIT`` has passed."""


ORDER_WAIT = timedelta(days=3)
RETRY_WAITING_AFTER = timedelta(minutes=1)


@dataclass
class ProcessCounts(Counts):
    events: int = 0
    processed: int = 0
    failed: int = 0
    enrolled: int = 0
    holdout: int = 0
    not_eligible: int = 0
    too_old: int = 0
    resumed: int = 0
    exited: int = 0
    waiting: int = 0
    answers_changed: int = 0
    referrals: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_segment: Counter[str] = field(default_factory=Counter)


def process_batch(factory: sessionmaker[Session], definitions: Definitions, clock: Clock,
                  limit: int = 1000, max_trigger_age: timedelta | None = DEFAULT_MAX_AGE
                  ) -> ProcessCounts:
    """Apply up to ``limit`` pending inbox events, oldest first, in one transaction.

    An event older than ``max_trigger_age`` updates the history but starts no journey: an
    import of last year's orders must not send last year's tracking links."""
    counts = ProcessCounts()
    with factory() as session, session.begin():
        query = (select(InboxEvent).where(InboxEvent.status == "pending")
                 .order_by(InboxEvent.seq).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        _retry_waiting(session, clock.now())
        rows = session.scalars(query).all()
        versions = VersionCache(session)
        applier = _Applier(session, definitions, clock, versions, counts, max_trigger_age)
        for row in rows:
            counts.events += 1
            counts.by_type[row.type] += 1
            try:
                with session.begin_nested():
                    applier.apply(Event.model_validate(row.payload))
                row.status, row.error = "processed", None
                counts.processed += 1
            except OrderNotYetKnown as exc:
                gave_up = clock.now() - row.received_at > ORDER_WAIT
                row.status, row.error = ("failed" if gave_up else "waiting"), str(exc)
                counts.failed += gave_up
                counts.waiting += not gave_up
            except (EventRejected, ValueError, SQLAlchemyError) as exc:
                if _database_trouble(exc):
                    raise  # not this event's fault: the batch rolls back and runs again
                row.status, row.error = "failed", str(exc)[:2000]
                counts.failed += 1
                log.warning("event %s failed: %s", row.event_id, exc)
            row.processed_at = clock.now()
    return counts


def _database_trouble(exc: Exception) -> bool:
    """The database went away or is busy (a lost connection, a lock timeout), rather than
    this event being wrong: failing the event would blame it, and lose it."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _retry_waiting(session: Session, now: datetime) -> None:
    """Put events waiting for their order back in line (their old seq puts them first)."""
    session.execute(update(InboxEvent)
                    .where(InboxEvent.status == "waiting",
                           InboxEvent.processed_at <= now - RETRY_WAITING_AFTER)
                    .values(status="pending"))


@dataclass
class _Applier:
    session: Session
    definitions: Definitions
    clock: Clock
    versions: VersionCache
    counts: ProcessCounts
    max_trigger_age: timedelta | None
    version_ids: dict[str, int] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        customer = self.upsert_customer(event) if event.customer else None
        order: Order | None = None
        if event.type == EventType.ORDER_PLACED:
            assert customer is not None and event.order is not None
            order = self.place_order(event, customer)
        elif event.type in ORDER_STATUS:
            order = self.update_order(event)
        elif event.type == EventType.SURVEY_RESPONDED:
            assert customer is not None
            self.record_response(event, customer)
        if customer is None and order is not None:
            customer = self.session.get(Customer, order.customer_id)
        if customer is None:
            return
        self.session.flush()
        self.exit_or_resume(event, customer, order)
        self.enroll(event, customer, order)
        self.session.flush()

    # -- state ---------------------------------------------------------------------------
    def upsert_customer(self, event: Event) -> Customer:
        data = event.customer
        assert data is not None
        now = self.clock.now()
        customer = self.session.get(Customer, data.id)
        if customer is None:
            customer = Customer(id=data.id, created_at=now, updated_at=now, consent_email=False,
                                consent_sms=False, consent_whatsapp=False,
                                referral_code=referral_code(data.id))
            self.session.add(customer)
        # Only fields the event carries change: a shipment event without an e-mail address
        # must not erase the one we have.
        changes = {name: getattr(data, name) for name in
                   ("email", "phone", "first_name", "last_name", "locale", "timezone", "country")}
        if data.consent is not None:
            changes |= {f"consent_{ch}": getattr(data.consent, ch)
                        for ch in ("email", "sms", "whatsapp")}
        changed = False
        for name, value in changes.items():
            if value is not None and getattr(customer, name) != value:
                setattr(customer, name, value)
                changed = True
        if changed:  # most events repeat what we know: no write for them
            customer.updated_at = now
            self.session.flush()
        return customer

    def place_order(self, event: Event, customer: Customer) -> Order:
        data = event.order
        assert data is not None
        order = self.session.get(Order, data.id)
        if order is not None:
            if order.customer_id != customer.id:
                raise EventRejected(f"order {data.id} belongs to customer {order.customer_id}, "
                                    f"not {customer.id}")
            return order  # replayed under another event id: the order is already known
        order = Order(
            id=data.id, customer_id=customer.id, number=data.number, placed_at=event.occurred_at,
            total=data.total or Decimal("0"), currency=data.currency,
            items=[i.model_dump(mode="json", exclude_none=True) for i in data.items],
            discount_codes=list(data.discount_codes), referral_code=data.referral_code,
            status="placed",
        )
        self.session.add(order)
        self.session.flush()
        if data.referral_code:
            self.record_referral(order, customer, data.referral_code)
        return order

    def record_referral(self, order: Order, customer: Customer, code: str) -> None:
        """An order carrying another customer's code is their referral. Only the referred
        customer's first order makes it a referral of a new customer (what the referral rate
        counts); a code on a later order is kept, flagged, for the record."""
        referrer_id = self.session.scalar(
            select(Customer.id).where(Customer.referral_code == code.strip().upper()))
        if referrer_id is None or referrer_id == customer.id:
            return  # unknown code, or a customer using their own: not a referral
        earlier = self.session.scalar(
            select(Order.id).where(Order.customer_id == customer.id, Order.id != order.id,
                                   Order.placed_at <= order.placed_at).limit(1))
        self.session.add(Referral(code=code.strip().upper(), referrer_id=referrer_id,
                                  customer_id=customer.id, order_id=order.id,
                                  first_order=earlier is None, created_at=self.clock.now()))
        self.counts.referrals += 1

    def update_order(self, event: Event) -> Order:
        assert event.order is not None
        order = self.session.get(Order, event.order.id)
        if order is None:
            raise OrderNotYetKnown(f"order {event.order.id} is unknown; waiting for its "
                                   "order.placed event")
        status, column = ORDER_STATUS[event.type]
        if getattr(order, column) is None:
            setattr(order, column, event.occurred_at)
        if STATUS_RANK[status] > STATUS_RANK[order.status]:
            order.status = status
        if event.type == EventType.ORDER_SHIPPED and event.shipment is not None:
            order.carrier = event.shipment.carrier or order.carrier
            order.tracking_number = event.shipment.tracking_number or order.tracking_number
            order.tracking_url = event.shipment.tracking_url or order.tracking_url
        return order

    def record_response(self, event: Event, customer: Customer) -> None:
        """One answer per survey message: a later answer to the same message (another click,
        another reply) replaces the score; a comment sent later is added to it."""
        survey = event.survey
        assert survey is not None
        order_id = survey.order_id
        existing = None
        if survey.message_id is not None:
            message = self.session.get(Message, survey.message_id)
            if message is None or message.customer_id != customer.id:
                raise EventRejected(f"survey message {survey.message_id} was not sent to "
                                    f"customer {customer.id}")
            existing = self.session.scalars(select(SurveyResponse).where(
                SurveyResponse.message_id == survey.message_id)).first()
        if existing is None:
            self.session.add(SurveyResponse(
                event_id=event.id, customer_id=customer.id, order_id=order_id,
                message_id=survey.message_id, kind=survey.kind, score=survey.score,
                comment=survey.comment, source=survey.source, responded_at=event.occurred_at,
                updated_at=event.occurred_at))
        elif event.occurred_at >= (existing.updated_at or existing.responded_at):
            if existing.kind != survey.kind:
                raise EventRejected(f"message {survey.message_id} asked {existing.kind}, "
                                    f"not {survey.kind}")
            existing.score = survey.score
            existing.comment = survey.comment or existing.comment
            existing.source = survey.source or existing.source
            existing.updated_at = event.occurred_at
            self.counts.answers_changed += 1
        self.session.flush()

    # -- journeys ------------------------------------------------------------------------
    def _active(self, customer: Customer) -> list[Enrollment]:
        return list(self.session.scalars(select(Enrollment).where(
            Enrollment.customer_id == customer.id, Enrollment.status == Status.ACTIVE.value)))

    def _concerns(self, enrollment: Enrollment, event: Event, order: Order | None) -> bool:
        """Order events concern only the enrollments of that order."""
        if event.type.value.startswith("order."):
            return order is not None and enrollment.order_id == order.id
        return True

    def exit_or_resume(self, event: Event, customer: Customer, order: Order | None) -> None:
        """End the enrollments this event exits; wake those waiting for it (dispatch looks at
        them on its next run)."""
        now = self.clock.now()
        for enrollment in self._active(customer):
            if not self._concerns(enrollment, event, order):
                continue
            journey = self.versions.get(enrollment.journey_version_id)
            if event.type.value in journey.exit_on:
                enrollment.status = Status.EXITED.value
                enrollment.ended_at = now
                enrollment.end_reason = f"exit event {event.type.value}"
                enrollment.due_at = None
                self.counts.exited += 1
            elif enrollment.waiting_for == event.type.value:
                enrollment.due_at = now
                self.counts.resumed += 1

    def enroll(self, event: Event, customer: Customer, order: Order | None) -> None:
        journeys = self.definitions.triggered_by(event.type.value)
        if not journeys:
            return
        now = self.clock.now()
        if self.max_trigger_age is not None and now - event.occurred_at > self.max_trigger_age:
            self.counts.too_old += len(journeys)
            return
        context = segment_context(self.session, customer, order, self.definitions.segments, now)
        segment = self.definitions.segments.assign(context)
        entered = set(self.session.execute(
            select(Enrollment.journey, Enrollment.entry_key)
            .where(Enrollment.customer_id == customer.id)).tuples())
        for journey in journeys:
            if segment is None or (journey.segments and segment not in journey.segments):
                self.counts.not_eligible += 1
                continue
            entry_key = self._entry_key(journey, order)
            if (journey.name, entry_key) in entered:
                continue  # the re-entry rule: once per order, or once per customer
            holdout = in_holdout(journey.name, customer.id, journey.holdout_percent)
            if journey.name not in self.version_ids:
                self.version_ids[journey.name] = ensure_version(self.session, journey, self.clock)
            self.session.add(Enrollment(
                journey=journey.name,
                journey_version_id=self.version_ids[journey.name],
                customer_id=customer.id, order_id=order.id if order else None,
                entry_key=entry_key, segment=segment, holdout=holdout,
                # The holdout group is recorded (metrics compare it) but never gets a step.
                status=Status.COMPLETED.value if holdout else Status.ACTIVE.value,
                end_reason="holdout" if holdout else None,
                ended_at=now if holdout else None,
                pc=0, due_at=None if holdout else now, enrolled_at=now))
            self.counts.by_segment[segment] += 1
            if holdout:
                self.counts.holdout += 1
            else:
                self.counts.enrolled += 1

    @staticmethod
    def _entry_key(journey: Journey, order: Order | None) -> str:
        if journey.reentry == Reentry.ONCE_PER_CUSTOMER or order is None:
            return "customer"
        return f"order:{order.id}"


