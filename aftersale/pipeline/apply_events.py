"""process-events: drain the inbox in batches and apply each event to the database.

Per event: upsert the customer, the order and its shipment, record survey answers, enroll the
customer into the journeys the event triggers (segment and holdout decided here), wake up
enrollments waiting for it, and end enrollments it exits.

A ``shipment.updated`` is one carrier moment of one parcel: it goes into the shipment's
history, moves its status only forward (aftersale.core.shipments.takes_over), and may make
an order moment, which is derived into the inbox rather than applied here: the order's first
moving parcel is its ``order.shipped``, and the order is delivered (``order.delivered``) when
all its shipments are. The next batch of the same drain applies them exactly like those
events posted directly, so the journeys that wait for them need nothing new.

A batch loads what its events touch (customers, their orders and enrollments, survey messages,
referral codes) in a few queries, applies the events in memory and writes once at the end: a
query per event would bound processing at a few hundred events a second. The rows it changes
are plain objects (:mod:`aftersale.db.batchrows`), written with one executemany per table and
set of changed columns: as ORM instances, loading and flushing them cost more than the rest.

An event that cannot apply (an order that is not ours, a shipment before its order) is found by
checks that run before it changes anything, so it is marked and the batch goes on. Anything
unexpected rolls the batch back and runs it again the careful way, each event in its own
savepoint, so the rest still apply: an event a rule refuses fails with its reason, and one hit
by an error no check foresaw waits to be tried again (see ``_unexpected``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import Text, cast, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.core.clock import Clock
from aftersale.core.counts import Counts
from aftersale.core.customer_facts import customer_facts, newest_facts
from aftersale.core.events import SHIPMENT_EVENTS, STORED, Event, EventType, ShipmentIn
from aftersale.core.journeys.engine import Status, in_holdout, in_time
from aftersale.core.journeys.model import Journey, Reentry
from aftersale.core.links import referral_code
from aftersale.core.shipments import (
    MOVING_STATUSES,
    PROBLEM_STATUSES,
    ShipmentStatus,
    takes_over,
)
from aftersale.db.batchrows import RowSet
from aftersale.db.errors import is_storage_outage
from aftersale.db.lookup import by_id, in_chunks
from aftersale.db.models import (
    Customer,
    Enrollment,
    InboxEvent,
    Message,
    Order,
    Referral,
    Shipment,
    ShipmentUpdate,
    SurveyResponse,
)
from aftersale.intake.inbox import store_events
from aftersale.pipeline.contexts import (
    purchases_among,
    segment_context,
    shipment_context,
    shipment_entry_key,
    shipment_moment,
    stall_concerns,
)
from aftersale.pipeline.definitions import Definitions, VersionCache, ensure_version
from aftersale.pipeline.erasure import scrub_payload

log = logging.getLogger(__name__)

ORDER_STATUS = {
    EventType.ORDER_SHIPPED: ("shipped", "shipped_at"),
    EventType.ORDER_DELIVERED: ("delivered", "delivered_at"),
    EventType.ORDER_CANCELLED: ("cancelled", "cancelled_at"),
    EventType.ORDER_REFUNDED: ("refunded", "refunded_at"),
}
DEFAULT_MAX_AGE = timedelta(days=3)
# A late "shipped" must not turn a delivered order back: statuses only move forward.
ORDER_STATUS_RANK = {"placed": 0, "shipped": 1, "delivered": 2, "cancelled": 3, "refunded": 4}


class EventRejected(Exception):
    """The event is valid JSON but cannot be applied (e.g. it names someone else's order)."""


class OrderNotYetKnown(EventRejected):
    """A shipment, delivery, cancellation or refund arrived before its order: webhooks are not
    delivered in order (a retried orders/create can come after fulfillments/create). The event
    waits and is retried until the order arrives or ``ORDER_WAIT`` has passed."""


ORDER_WAIT = timedelta(days=3)
#: The inbox source of the events aftersale derives itself (order moments from shipments,
#: shipment.stalled / shipment.late from the clock check).
DERIVED_SOURCE = "aftersale"
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
    unexpected: int = 0  # of waiting: an error no check foresaw (see _unexpected)
    answers_changed: int = 0
    referrals: int = 0
    shipment_updates: int = 0  # carrier moments recorded in a shipment's history
    derived: int = 0  # order.shipped/order.delivered put in the inbox for the next batch
    stalled: int = 0  # shipment.stalled / shipment.late derived by the clock check
    late: int = 0
    replayed_batches: int = 0  # rolled back and applied again event by event
    by_type: Counter[str] = field(default_factory=Counter)
    by_segment: Counter[str] = field(default_factory=Counter)


def process_batch(factory: sessionmaker[Session], definitions: Definitions, clock: Clock,
                  limit: int = 1000, max_trigger_age: timedelta | None = DEFAULT_MAX_AGE,
                  due_by: datetime | None = None) -> ProcessCounts:
    """Apply up to ``limit`` pending inbox events, oldest first, in one transaction.

    An event older than ``max_trigger_age`` updates the history but starts no journey: an
    import of last year's orders must not send last year's tracking links.

    ``due_by``: take only events that occurred by then. A simulated run passes its clock's
    time, so an imported history is taken event by event as the clock reaches it, and nothing
    is sent before what triggered it. None (the wall clock): every event is in the past."""
    try:
        return _process(factory, definitions, clock, limit, max_trigger_age, due_by,
                        careful=False)
    except _TakeCare as trouble:
        log.warning("batch rolled back (%s); applying it again event by event",
                    trouble.__cause__)
        counts = _process(factory, definitions, clock, limit, max_trigger_age, due_by,
                          careful=True)
        counts.replayed_batches += 1
        return counts


class _TakeCare(Exception):
    """Something no check foresaw went wrong in a batch applied all at once."""


def _process(factory: sessionmaker[Session], definitions: Definitions, clock: Clock,
             limit: int, max_trigger_age: timedelta | None, due_by: datetime | None,
             careful: bool) -> ProcessCounts:
    counts = ProcessCounts()
    with factory() as session, session.begin():
        query = (select(*_Item.COLUMNS).where(InboxEvent.status == "pending")
                 .order_by(InboxEvent.seq).limit(limit))
        if due_by is not None:
            # Still in seq order, through ix_inbox_status_seq (README: `run --until`).
            query = query.where(InboxEvent.occurred_at <= due_by)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        now = clock.now()
        _retry_waiting(session, now)
        items = [_Item(**row._asdict()) for row in session.execute(query)]
        events: list[tuple[_Item, Event]] = []
        for item in items:
            counts.events += 1
            counts.by_type[item.type] += 1
            try:
                events.append((item, Event.model_validate_json(item.payload_json,
                                                               context=STORED)))
            except ValueError as exc:
                _failed(item, exc, counts)
        applier = _Applier(session, definitions, clock, VersionCache(session), counts,
                           max_trigger_age)
        if careful:
            for item, event in events:
                _apply_alone(applier, item, event)
        else:
            _apply_together(applier, events)
        _Item.write_back(session, items, now)
    return counts


@dataclass
class _Item:
    """An inbox event in the batch, as plain values: its outcome is written back for the whole
    batch in one statement (as ORM objects, the inbox rows' 1,000 updates and their loading
    cost a tenth of a batch)."""

    # The payload as its JSON text: pydantic reads the text faster than json.loads + a dict.
    COLUMNS: ClassVar = (InboxEvent.seq, InboxEvent.event_id, InboxEvent.type,
                         InboxEvent.received_at,
                         cast(InboxEvent.payload, Text).label("payload_json"))
    seq: int
    event_id: str
    type: str
    received_at: datetime
    payload_json: str
    status: str = "pending"
    error: str | None = None
    # the payload without personal data (see _Applier.without_forgotten_data), to store
    scrubbed: dict[str, Any] | None = None

    @staticmethod
    def write_back(session: Session, items: list[_Item], now: datetime) -> None:
        """One UPDATE per outcome (almost always: all processed), over the events' seqs."""
        by_outcome: defaultdict[tuple[str, str | None], list[int]] = defaultdict(list)
        for item in items:
            by_outcome[(item.status, item.error)].append(item.seq)
        for (status, error), seqs in by_outcome.items():
            for chunk in in_chunks(seqs):
                session.execute(update(InboxEvent).where(InboxEvent.seq.in_(chunk))
                                .values(status=status, error=error, processed_at=now))
        if scrubbed := [{"seq": i.seq, "payload": i.scrubbed} for i in items
                        if i.scrubbed is not None]:
            session.execute(update(InboxEvent), scrubbed)


def _apply_together(applier: _Applier, events: list[tuple[_Item, Event]]) -> None:
    applier.known = _Known.load(applier.session, [event for _, event in events],
                                applier.definitions)
    for item, event in events:
        try:
            applier.apply(applier.without_forgotten_data(item, event))
        except EventRejected as exc:  # raised by the checks, before the event changed anything
            _rejected(item, exc, applier)
            continue
        except Exception as exc:
            if is_storage_outage(exc):
                raise
            raise _TakeCare from exc
        _processed(item, applier.counts)
    try:
        applier.write()
    except SQLAlchemyError as exc:
        if is_storage_outage(exc):
            raise
        raise _TakeCare from exc


def _apply_alone(applier: _Applier, item: _Item, event: Event) -> None:
    try:
        with applier.session.begin_nested(), _undone_on_error(applier.version_ids):
            applier.derived.clear()  # what an event that failed derived went with it
            applier.known = _Known.load(applier.session, [event], applier.definitions)
            applier.apply(applier.without_forgotten_data(item, event))
            applier.write()
    except EventRejected as exc:
        _rejected(item, exc, applier)
    except (ValueError, SQLAlchemyError) as exc:
        if is_storage_outage(exc):
            raise  # not this event's fault: the batch rolls back and runs again
        _failed(item, exc, applier.counts)
    except Exception as exc:  # noqa: BLE001 - anything else must not block the inbox
        _unexpected(item, exc, applier.counts)
    else:
        _processed(item, applier.counts)


@contextmanager
def _undone_on_error(version_ids: dict[str, int]) -> Iterator[None]:
    """A journey version row an event stores goes when its savepoint is rolled back: so must
    the id kept for it, or the next event would enroll against a row that is not there."""
    kept = dict(version_ids)
    try:
        yield
    except BaseException:
        version_ids.clear()
        version_ids.update(kept)
        raise


def _processed(item: _Item, counts: ProcessCounts) -> None:
    item.status, item.error = "processed", None
    counts.processed += 1


def _rejected(item: _Item, exc: EventRejected, applier: _Applier) -> None:
    if isinstance(exc, OrderNotYetKnown) and (
            applier.clock.now() - item.received_at <= ORDER_WAIT):
        item.status, item.error = "waiting", str(exc)
        applier.counts.waiting += 1
    else:
        _failed(item, exc, applier.counts)


def _failed(item: _Item, exc: Exception, counts: ProcessCounts) -> None:
    item.status, item.error = "failed", str(exc)[:2000]
    counts.failed += 1
    log.warning("event %s failed: %s", item.event_id, exc)


def _unexpected(item: _Item, exc: Exception, counts: ProcessCounts) -> None:
    """An error no check foresaw (a bug, a stored journey version this release cannot read)
    says nothing about the event. Left pending it would fail every run of its batch and hold
    up every event behind it; marked failed it would be lost, and a bad release would fail
    the whole inbox. It waits instead, as an event ahead of its order does, and is tried
    again every minute (``RETRY_WAITING_AFTER``) until the cause is fixed."""
    item.status = "waiting"
    item.error = f"{type(exc).__name__}: {exc}"[:2000]  # "KeyError: 'c-1'", not "'c-1'"
    counts.waiting += 1
    counts.unexpected += 1
    log.error("event %s: unexpected %s, tried again in a minute", item.event_id,
              type(exc).__name__, exc_info=exc)


def _retry_waiting(session: Session, now: datetime) -> None:
    """Put waiting events (for their order, or after an unexpected error) back in line;
    their old seq puts them first."""
    session.execute(update(InboxEvent)
                    .where(InboxEvent.status == "waiting",
                           InboxEvent.processed_at <= now - RETRY_WAITING_AFTER)
                    .values(status="pending"))


class _Rows:
    """The batch's rows of each table it writes, in the order they are inserted: parents
    first, as the foreign keys need."""

    def __init__(self) -> None:
        self.customers = RowSet(Customer)
        self.orders = RowSet(Order)
        self.shipments = RowSet(Shipment)
        self.shipment_updates = RowSet(ShipmentUpdate)
        self.referrals = RowSet(Referral)
        self.answers = RowSet(SurveyResponse)
        self.enrollments = RowSet(Enrollment)

    def write(self, session: Session) -> None:
        for rows in (self.customers, self.orders, self.shipments, self.shipment_updates,
                     self.referrals, self.answers, self.enrollments):
            rows.write(session)


@dataclass
class _Known:
    """The rows a batch's events touch, loaded up front and kept current as they apply (what
    an event adds, the next one sees)."""

    rows: _Rows
    # Every order of the customers whose events place an order or start a journey: only those
    # read the purchase history, and loading it for every event was a fifth of a batch's
    # reads. A customer left out is not a key, so reading their history fails loudly.
    orders_of: dict[str, list[Order]]
    # The enrollments of these customers: all of them for those with a history (the re-entry
    # rule reads them when a journey starts), the active ones for the rest (what an event
    # can end or wake). Half of a batch's reads were enrollments that had already ended.
    enrollments_of: defaultdict[str, list[Enrollment]]
    # Every shipment of the orders the batch's shipment.* events are about: an update finds
    # its parcel (by id, or by tracking number), and the order is delivered when all are.
    shipments_of: defaultdict[str, list[Shipment]]
    referrers: dict[str, str]  # referral code -> customer id
    messages: dict[str, Message]  # survey messages answered
    answers: dict[str, SurveyResponse]  # by message id

    @property
    def customers(self) -> dict[str, Customer]:
        return self.rows.customers.by_key

    @property
    def orders(self) -> dict[str, Order]:
        return self.rows.orders.by_key

    @property
    def shipments(self) -> dict[str, Shipment]:
        return self.rows.shipments.by_key

    @classmethod
    def load(cls, session: Session, events: list[Event], definitions: Definitions) -> _Known:
        rows = _Rows()
        orders = rows.orders.by_keys(session, {e.order.id for e in events if e.order})
        customer_ids = {e.customer.id for e in events if e.customer}
        customer_ids |= {o.customer_id for o in orders.values()}
        orders_of: dict[str, list[Order]] = {
            customer_id: [] for customer_id in _history_needed(events, orders, definitions)}
        for order in rows.orders.load(session, Order.customer_id, orders_of):
            orders_of[order.customer_id].append(order)
        enrollments_of: defaultdict[str, list[Enrollment]] = defaultdict(list)
        for enrollment in [
                *rows.enrollments.load(session, Enrollment.customer_id, orders_of),
                *rows.enrollments.load(session, Enrollment.customer_id,
                                       customer_ids - orders_of.keys(),
                                       Enrollment.status == Status.ACTIVE.value)]:
            enrollments_of[enrollment.customer_id].append(enrollment)
        rows.customers.by_keys(session, customer_ids)
        shipments_of: defaultdict[str, list[Shipment]] = defaultdict(list)
        if shipment_events := [e for e in events if e.type in SHIPMENT_EVENTS]:
            # by id too: an update naming another order's parcel is refused, not applied
            rows.shipments.by_keys(session, {e.shipment.id for e in shipment_events
                                             if e.shipment})
            for shipment in rows.shipments.load(session, Shipment.order_id, {
                    e.order.id for e in shipment_events if e.order}):
                shipments_of[shipment.order_id].append(shipment)
        codes = {e.order.referral_code.strip().upper() for e in events
                 if e.order and e.order.referral_code}
        message_ids = {e.survey.message_id for e in events
                       if e.survey and e.survey.message_id is not None}
        return cls(
            rows=rows, orders_of=orders_of, enrollments_of=enrollments_of,
            shipments_of=shipments_of,
            referrers={c.referral_code: c.id for c in rows.customers.load(
                session, Customer.referral_code, codes) if c.referral_code},
            messages=by_id(session, Message, message_ids),
            answers={a.message_id: a for a in rows.answers.load(
                session, SurveyResponse.message_id, message_ids) if a.message_id is not None})


def derived_id(subject: str, type_: EventType | str) -> str:
    """The inbox id of a moment derived about ``subject`` (an order or a shipment id): one
    per moment, so deriving it again stores nothing."""
    return f"derived:{subject}:{type_}"


def _earliest(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new < current else current


def _history_needed(events: list[Event], orders: dict[str, Order],
                    definitions: Definitions) -> set[str]:
    """The customers whose purchase history the batch reads: of events that place an order
    (a referral checks for earlier orders) or that start a journey (segment rules)."""
    needed: set[str] = set()
    for event in events:
        if event.type == EventType.ORDER_PLACED or definitions.triggered_by(event.type.value):
            order = orders.get(event.order.id) if event.order else None
            if event.customer is not None:
                needed.add(event.customer.id)
            elif order is not None:
                needed.add(order.customer_id)
    return needed


@dataclass
class _Applier:
    session: Session
    definitions: Definitions
    clock: Clock
    versions: VersionCache
    counts: ProcessCounts
    max_trigger_age: timedelta | None
    known: _Known = field(init=False)
    version_ids: dict[str, int] = field(default_factory=dict)
    # order.shipped / order.delivered derived from shipments, for the inbox (see derive)
    derived: dict[str, Event] = field(default_factory=dict)

    def write(self) -> None:
        self.known.rows.write(self.session)
        if self.derived:
            # The inbox's own insert: stored once by id, taken by the next batch of this drain.
            self.counts.derived += store_events(self.session, list(self.derived.values()),
                                                DERIVED_SOURCE, self.clock.now()).stored
            self.derived = {}

    def without_forgotten_data(self, item: _Item, event: Event) -> Event:
        """A late event from before its customer was forgotten (a webhook retried for days)
        must not bring their personal data back: it is applied, and kept, without it."""
        order = self.known.orders.get(event.order.id) if event.order else None
        customer_id = event.customer.id if event.customer else order and order.customer_id
        customer = self.known.customers.get(customer_id) if customer_id else None
        if (customer is None or customer.forgotten_at is None
                or event.occurred_at > customer.forgotten_at):
            return event
        scrubbed = scrub_payload(json.loads(item.payload_json))
        if isinstance(scrubbed.get("customer"), dict):  # forgetting withdrew consent too
            scrubbed["customer"].pop("consent", None)
        item.scrubbed = scrubbed
        return Event.model_validate(scrubbed, context=STORED)

    def apply(self, event: Event) -> None:
        self.check(event)
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
        elif event.type in SHIPMENT_EVENTS:
            assert event.order is not None
            order = self.known.orders[event.order.id]  # check() made sure it is known
            if event.type == EventType.SHIPMENT_UPDATED:
                self.update_shipment(event, order)
        if customer is None and order is not None:
            customer = self.known.customers.get(order.customer_id)
        if customer is None:
            return
        self.exit_or_resume(event, customer, order)
        self.enroll(event, customer, order)

    def check(self, event: Event) -> None:
        """Raise what makes this event inapplicable, before it has changed anything."""
        known = self.known
        if event.type == EventType.ORDER_PLACED:
            assert event.order is not None and event.customer is not None
            order = known.orders.get(event.order.id)
            if order is not None and order.customer_id != event.customer.id:
                raise EventRejected(f"order {order.id} belongs to customer {order.customer_id}, "
                                    f"not {event.customer.id}")
        elif event.type in ORDER_STATUS:
            assert event.order is not None
            if event.order.id not in known.orders:
                raise OrderNotYetKnown(f"order {event.order.id} is unknown; waiting for its "
                                       "order.placed event")
        elif event.type in SHIPMENT_EVENTS:
            self.check_shipment(event)
        elif event.type == EventType.SURVEY_RESPONDED:
            assert event.survey is not None and event.customer is not None
            survey, customer_id = event.survey, event.customer.id
            if survey.message_id is None:
                return
            message = known.messages.get(survey.message_id)
            if message is None or message.customer_id != customer_id:
                raise EventRejected(f"survey message {survey.message_id} was not sent to "
                                    f"customer {customer_id}")
            existing = known.answers.get(survey.message_id)
            if existing is not None and existing.kind != survey.kind and self._newer(
                    event, existing):
                raise EventRejected(f"message {survey.message_id} asked {existing.kind}, "
                                    f"not {survey.kind}")

    def check_shipment(self, event: Event) -> None:
        assert event.order is not None and event.shipment is not None
        order_id, data = event.order.id, event.shipment
        order = self.known.orders.get(order_id)
        if order is None:
            raise OrderNotYetKnown(f"order {order_id} is unknown; waiting for its order.placed "
                                   "event")
        if event.customer is not None and event.customer.id != order.customer_id:
            raise EventRejected(f"order {order_id} belongs to customer {order.customer_id}, "
                                f"not {event.customer.id}")
        assert data.id is not None  # the event contract requires it for shipment.* events
        other = self.known.shipments.get(data.id)
        if other is not None and other.order_id != order_id:
            raise EventRejected(f"shipment {data.id} belongs to order {other.order_id}, "
                                f"not {order_id}")
        if event.type != EventType.SHIPMENT_UPDATED and self.shipment_of(order_id, data) is None:
            raise EventRejected(f"shipment {data.id} of order {order_id} is unknown")

    @staticmethod
    def _newer(event: Event, answer: SurveyResponse) -> bool:
        return event.occurred_at >= (answer.updated_at or answer.responded_at)

    # -- state ---------------------------------------------------------------------------
    def upsert_customer(self, event: Event) -> Customer:
        data = event.customer
        assert data is not None
        now = self.clock.now()
        customer = self.known.customers.get(data.id)
        if customer is None:
            code = referral_code(data.id)
            customer = self.known.rows.customers.add(
                id=data.id, created_at=now, updated_at=now, consent_email=False,
                consent_sms=False, consent_whatsapp=False, order_updates_sms=False,
                order_updates_whatsapp=False, referral_code=code)
            self.known.referrers[code] = data.id
        facts = customer_facts(data)
        take, times = newest_facts(customer.fact_times, facts, event.occurred_at)
        changed = False
        for name in take:
            if getattr(customer, name) != facts[name]:
                setattr(customer, name, facts[name])
                changed = True
        if take and times != customer.fact_times:
            customer.fact_times = times  # a new dict: batch rows notice replaced values only
        if changed:  # most events repeat what we know: only their facts' times change
            customer.updated_at = now
        return customer

    def place_order(self, event: Event, customer: Customer) -> Order:
        data = event.order
        assert data is not None
        order = self.known.orders.get(data.id)
        if order is not None:
            return order  # replayed under another event id: the order is already known
        order = self.known.rows.orders.add(
            id=data.id, customer_id=customer.id, number=data.number, placed_at=event.occurred_at,
            total=data.total or Decimal("0"), currency=data.currency,
            items=[i.model_dump(mode="json", exclude_none=True) for i in data.items],
            discount_codes=list(data.discount_codes), referral_code=data.referral_code,
            status="placed",
        )
        if data.referral_code:
            self.record_referral(order, customer, data.referral_code)
        self.known.orders_of[customer.id].append(order)
        return order

    def record_referral(self, order: Order, customer: Customer, code: str) -> None:
        """An order carrying another customer's code is their referral. Only the referred
        customer's first order makes it a referral of a new customer (what the referral rate
        counts); a code on a later order is kept, flagged, for the record."""
        code = code.strip().upper()
        referrer_id = self.known.referrers.get(code)
        if referrer_id is None or referrer_id == customer.id:
            return  # unknown code, or a customer using their own: not a referral
        earlier = any(o.placed_at <= order.placed_at for o in self.known.orders_of[customer.id]
                      if o.id != order.id)
        self.known.rows.referrals.add(
            code=code, referrer_id=referrer_id, customer_id=customer.id, order_id=order.id,
            first_order=not earlier, created_at=self.clock.now())
        self.counts.referrals += 1

    def update_order(self, event: Event) -> Order:
        assert event.order is not None
        order = self.known.orders[event.order.id]  # check() made sure it is known
        status, column = ORDER_STATUS[event.type]
        if getattr(order, column) is None:
            setattr(order, column, event.occurred_at)
        if ORDER_STATUS_RANK[status] > ORDER_STATUS_RANK[order.status]:
            order.status = status
        if event.type == EventType.ORDER_SHIPPED and event.shipment is not None:
            order.carrier = event.shipment.carrier or order.carrier
            order.tracking_number = event.shipment.tracking_number or order.tracking_number
            order.tracking_url = event.shipment.tracking_url or order.tracking_url
        return order

    # -- shipments -----------------------------------------------------------------------
    def shipment_of(self, order_id: str, data: ShipmentIn) -> Shipment | None:
        """The parcel an update is about: by its id, or, for an id we do not know, the order's
        shipment with the same tracking number (one parcel reported by two sources, e.g. a
        Shopify fulfillment and an AfterShip tracking)."""
        assert data.id is not None
        shipment = self.known.shipments.get(data.id)
        if shipment is not None or not data.tracking_number:
            return shipment
        return next((s for s in self.known.shipments_of[order_id]
                     if s.tracking_number == data.tracking_number), None)

    def update_shipment(self, event: Event, order: Order) -> Shipment:
        """Record one carrier moment: every update goes into the history, in or out of order;
        the status moves only forward (takes_over); the estimate, message and last update are
        the newest ones; shipped, delivered and problem times are the first."""
        data = event.shipment
        assert data is not None and data.id is not None and data.status is not None
        happened = data.happened_at or event.occurred_at
        status = ShipmentStatus(data.status)
        now = self.clock.now()
        shipment = self.shipment_of(order.id, data)
        if shipment is None:
            shipment = self.known.rows.shipments.add(
                id=data.id, order_id=order.id, carrier=data.carrier,
                tracking_number=data.tracking_number, tracking_url=data.tracking_url,
                destination_country=data.destination_country, status=status.value,
                raw_status=data.raw_status, status_at=happened, last_update_at=happened,
                last_message=data.message,
                first_estimated_delivery_at=data.estimated_delivery_at,
                estimated_delivery_at=data.estimated_delivery_at,
                delivered_at=happened if status == ShipmentStatus.DELIVERED else None,
                created_at=now, updated_at=now)
            self.known.shipments_of[order.id].append(shipment)
        else:
            self.revise_shipment(shipment, data, status, happened)
            shipment.updated_at = now
        if status in MOVING_STATUSES and (shipment.shipped_at is None
                                          or happened < shipment.shipped_at):
            shipment.shipped_at = happened
        if status in PROBLEM_STATUSES:
            # A problem is one even if reported late, after a newer status: the history had it.
            shipment.problem_at = _earliest(shipment.problem_at, happened)
            order.delivery_problem_at = _earliest(order.delivery_problem_at, happened)
        self.known.rows.shipment_updates.add(
            shipment_id=shipment.id, event_id=event.id, status=status.value,
            raw_status=data.raw_status, happened_at=happened, message=data.message,
            estimated_delivery_at=data.estimated_delivery_at, recorded_at=now)
        self.counts.shipment_updates += 1
        self.derive(event, order, shipment, status)
        return shipment

    @staticmethod
    def revise_shipment(shipment: Shipment, data: ShipmentIn, status: ShipmentStatus,
                        happened: datetime) -> None:
        for name in ("carrier", "tracking_number", "tracking_url", "destination_country"):
            value = getattr(data, name)
            if value is not None and value != getattr(shipment, name):
                setattr(shipment, name, value)
        if takes_over(ShipmentStatus(shipment.status), shipment.status_at, status, happened):
            shipment.status, shipment.raw_status = status.value, data.raw_status
            shipment.status_at = happened
            if status == ShipmentStatus.DELIVERED:
                shipment.delivered_at = happened
        if shipment.first_estimated_delivery_at is None:
            shipment.first_estimated_delivery_at = data.estimated_delivery_at
        # The newest update says what is true now; an older one fills only what is missing
        # (the history keeps each update's estimate and message as reported).
        newest = happened >= shipment.last_update_at
        if newest:
            shipment.last_update_at = happened
        if data.estimated_delivery_at is not None and (
                newest or shipment.estimated_delivery_at is None):
            shipment.estimated_delivery_at = data.estimated_delivery_at
        if data.message is not None and (newest or shipment.last_message is None):
            shipment.last_message = data.message

    def derive(self, event: Event, order: Order, shipment: Shipment,
               status: ShipmentStatus) -> None:
        """The order's own moments, derived from its parcels, as inbox events (durable,
        idempotent by id) that the next batch applies like any other ``order.shipped`` /
        ``order.delivered``: the first moving status of any of its shipments ships the order;
        the order is delivered when all its shipments are."""
        if order.status in ("cancelled", "refunded"):
            return
        # When the parcels say it happened, but never after the event that tells it: a
        # simulated run takes events as its clock reaches them.
        latest = event.occurred_at
        shipments = self.known.shipments_of[order.id]
        if status in MOVING_STATUSES and order.shipped_at is None:
            first = min(s.shipped_at for s in shipments if s.shipped_at is not None)
            self.add_derived(order, EventType.ORDER_SHIPPED, min(first, latest), {
                "id": shipment.id, "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url})
        # A withdrawn parcel (a cancelled fulfillment) no longer counts for the order.
        parcels = [s for s in shipments if s.status != ShipmentStatus.CANCELLED.value]
        if (order.delivered_at is None and parcels
                and all(s.status == ShipmentStatus.DELIVERED.value for s in parcels)):
            delivered = max(s.delivered_at or s.status_at for s in parcels)
            self.add_derived(order, EventType.ORDER_DELIVERED, min(delivered, latest),
                             {"id": shipment.id})

    def add_derived(self, order: Order, type_: EventType, at: datetime,
                    shipment: dict[str, Any]) -> None:
        event_id = derived_id(order.id, type_)
        self.derived[event_id] = Event.model_validate({
            "id": event_id, "type": type_.value, "occurred_at": at,
            "order": {"id": order.id}, "shipment": shipment})

    def record_response(self, event: Event, customer: Customer) -> None:
        """One answer per survey message: a later answer to the same message (another click,
        another reply) replaces the score; a comment sent later is added to it."""
        survey = event.survey
        assert survey is not None
        existing = (self.known.answers.get(survey.message_id)
                    if survey.message_id is not None else None)
        if existing is None:
            answer = self.known.rows.answers.add(
                event_id=event.id, customer_id=customer.id, order_id=survey.order_id,
                message_id=survey.message_id, kind=survey.kind, score=survey.score,
                comment=survey.comment, source=survey.source, responded_at=event.occurred_at,
                updated_at=event.occurred_at)
            if survey.message_id is not None:
                self.known.answers[survey.message_id] = answer
        elif self._newer(event, existing):
            existing.score = survey.score
            existing.comment = survey.comment or existing.comment
            existing.source = survey.source or existing.source
            existing.updated_at = event.occurred_at
            self.counts.answers_changed += 1

    # -- journeys ------------------------------------------------------------------------
    def _concerns(self, enrollment: Enrollment, event: Event, order: Order | None) -> bool:
        """Order events concern only the enrollments of that order; shipment events those of
        that order too, and of an enrollment about one parcel, only that parcel's."""
        if event.type in SHIPMENT_EVENTS:
            shipment = self._shipment_row(event)
            return (order is not None and enrollment.order_id == order.id
                    and (enrollment.shipment_id is None or shipment is None
                         or enrollment.shipment_id == shipment.id))
        if event.type.value.startswith("order."):
            return order is not None and enrollment.order_id == order.id
        return True

    def _shipment_row(self, event: Event) -> Shipment | None:
        """The stored parcel a shipment.* event is about (after update_shipment, for a
        shipment.updated), for the enrollment it starts and the contexts."""
        if event.type not in SHIPMENT_EVENTS or event.shipment is None or event.order is None:
            return None
        return self.shipment_of(event.order.id, event.shipment)

    def exit_or_resume(self, event: Event, customer: Customer, order: Order | None) -> None:
        """End the enrollments this event exits; wake those waiting for it (dispatch looks at
        them on its next run)."""
        now = self.clock.now()
        for enrollment in self.known.enrollments_of[customer.id]:
            if (enrollment.status != Status.ACTIVE.value
                    or not self._concerns(enrollment, event, order)):
                continue
            journey = self.versions.get(enrollment.journey_version_id)
            if event.type.value in journey.exit_on:
                enrollment.status = Status.EXITED.value
                enrollment.ended_at = now
                enrollment.end_reason = f"exit event {event.type.value}"
                enrollment.due_at = None
                self.counts.exited += 1
            elif enrollment.waiting_for == event.type.value and in_time(
                    event.occurred_at, enrollment.wait_until):  # a late one does not wake it
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
        context = segment_context(self.session, customer, order, self.definitions.segments, now,
                                  purchases_among(self.known.orders_of[customer.id]))
        segment = self.definitions.segments.assign(context)
        context["shop"] = self.definitions.content.shop_switches()  # for journeys' entry `when`
        # A shipment event is about one parcel, at one moment of it (its status, a stall, a
        # late date); an older scan that did not become its status is no moment at all.
        shipment = self._shipment_row(event)
        shipment_id = shipment.id if shipment is not None else (
            event.shipment.id if event.shipment and event.type in SHIPMENT_EVENTS else None)
        moment = shipment_moment(event, shipment) if shipment_id else None
        if shipment_id and moment is None:
            self.counts.too_old += len(journeys)
            return
        entry_context = context | {"segment": segment, "shipment": None if shipment is None
                                   else shipment_context(shipment, moment, now,
                                                         self.definitions.shop_country)}
        enrollments = self.known.enrollments_of[customer.id]
        entered = {(e.journey, e.entry_key) for e in enrollments}
        for journey in journeys:
            if segment is None or (journey.segments and segment not in journey.segments):
                self.counts.not_eligible += 1
                continue
            if journey.entry_when is not None and not journey.entry_when.evaluate(entry_context):
                self.counts.not_eligible += 1
                continue
            if not stall_concerns(journey, event, (entry_context["shipment"] or {}).get(
                    "is_international"), self.definitions.stalled_after):
                continue  # derived for another journey's stall threshold
            entry_key = self._entry_key(journey, order, shipment_id, moment)
            if (journey.name, entry_key) in entered:
                continue  # the re-entry rule: once per order, customer, or parcel moment
            holdout = in_holdout(journey.name, customer.id, journey.holdout_percent)
            if journey.name not in self.version_ids:
                self.version_ids[journey.name] = ensure_version(self.session, journey, self.clock)
            enrollment = self.known.rows.enrollments.add(
                journey=journey.name,
                journey_version_id=self.version_ids[journey.name],
                customer_id=customer.id, order_id=order.id if order else None,
                shipment_id=shipment_id,
                entry_key=entry_key, segment=segment, holdout=holdout,
                # The holdout group is recorded (metrics compare it) but never gets a step.
                status=Status.COMPLETED.value if holdout else Status.ACTIVE.value,
                end_reason="holdout" if holdout else None,
                ended_at=now if holdout else None,
                pc=0, due_at=None if holdout else now, enrolled_at=now)
            enrollments.append(enrollment)
            entered.add((journey.name, entry_key))
            self.counts.by_segment[segment] += 1
            if holdout:
                self.counts.holdout += 1
            else:
                self.counts.enrolled += 1

    @staticmethod
    def _entry_key(journey: Journey, order: Order | None, shipment_id: str | None = None,
                   moment: str | None = None) -> str:
        if journey.reentry == Reentry.ONCE_PER_SHIPMENT_MOMENT and shipment_id and moment:
            return shipment_entry_key(shipment_id, moment)
        if journey.reentry == Reentry.ONCE_PER_CUSTOMER or order is None:
            return "customer"
        return f"order:{order.id}"
