"""``aftersale forget``: erase one customer's personal data and keep the anonymous counts.

Erased (NULL, or ``[erased]`` where a column may not be empty):

- ``customers``: e-mail, phone, first and last name, time zone, the WhatsApp window; consent
  and order-updates opt-ins withdrawn on every channel (there is no address left to use them
  on), and the times of the facts they came with;
- ``messages``: recipient, subject, text and HTML bodies; an address or name quoted in
  ``status_reason`` or ``skips``;
- ``sandbox_outbox`` (the sandbox's provider log): the customer's messages and the team's alert
  e-mails about them;
- ``inbox_events``: every event of the customer (by customer, order or survey message) keeps
  only the fields processing and metrics read (ids, type, times, totals, items, scores,
  consent flags, carrier); contact details, names, comments, tracking and any unknown field go;
- ``survey_responses.comment`` and the comment copied into ``alerts.details``;
- ``delivery_events``: recipient and raw provider payload; an address quoted in ``reason``;
- ``inbound_messages`` (SMS/WhatsApp replies): sender, text and raw payload;
- ``orders``: tracking number and URL (a carrier's page shows where the parcel went).

Kept, because metrics count them and none of it says who the person is: every row and its ids,
times, statuses, scores, totals, items, segments, holdout flags, referrals and referral clicks;
locale and country (coarse, reports group by them); the referral code (derived from the id).
Experiment assignments (``experiment_assignments``: ids, the variant, its version and time)
are kept like the holdout flag: an experiment's results count them, and dropping a forgotten
customer's would shrink one variant's denominator after the fact while their outcomes (kept
orders and scores) still count elsewhere. A variant's own subject lines on a message
(``subject_override``) are the marketer's text, not the customer's, and stay too.

Kept on purpose: an *active* suppression (bounce, STOP, unsubscribe) keeps its address, unlinked
from the customer. An opt-out must keep holding when the same address comes back (a new order
under a new customer id); keeping the address only for that is a legitimate interest (GDPR art.
17(3), the suppression-list practice). A lifted suppression has no such purpose and is deleted.

Active enrollments end (``exited``, "customer forgotten") and queued messages are marked not
sent, so nothing more goes out. It all happens in the caller's transaction. Forgetting again is
harmless: ``forgotten_at`` keeps the first time, and a second run erases only what came in
since (a late provider report), otherwise nothing. Processing applies a shop event that
happened before ``forgotten_at`` (a webhook retried after the erasure) with its payload
scrubbed by :func:`scrub_payload` and without its consent, so it brings nothing back; a new
order after the erasure is a new relationship and is taken as it comes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from aftersale.core.errors import AftersaleError
from aftersale.core.journeys.engine import Status
from aftersale.db.models import (
    AlertRecord,
    Customer,
    DeliveryEvent,
    Enrollment,
    InboundMessage,
    InboxEvent,
    Message,
    Order,
    SandboxOutbox,
    Suppression,
    SurveyResponse,
)
from aftersale.pipeline.suppression import normalize_address

ERASED = "[erased]"  # for columns that may not be empty
REASON = "customer forgotten"

# What an inbox event keeps: the fields processing and metrics read, nothing that names anyone.
_KEEP_EVENT = ("id", "type", "occurred_at", "source_ids", "customer", "order", "shipment", "survey")
_KEEP_PART: dict[str, tuple[str, ...]] = {
    "customer": ("id", "locale", "country", "consent"),
    "order": ("id", "number", "total", "currency", "items", "discount_codes", "referral_code"),
    "shipment": ("carrier",),
    "survey": ("kind", "score", "order_id", "message_id", "source"),
}
_KEEP_ITEM = ("sku", "title", "category", "quantity", "price")


class UnknownCustomer(AftersaleError):
    """No customer has this id; nothing was changed."""

    def __init__(self, customer_id: str):
        self.customer_id = customer_id
        super().__init__(f"unknown customer '{customer_id}': no customer has this id; "
                         "nothing was changed")


@dataclass(frozen=True)
class ForgetSummary:
    """What one run erased (rows changed per kind, in display order) and what it kept."""

    customer_id: str
    forgotten_at: datetime  # the first time this customer was forgotten
    already_forgotten: bool  # forgotten by an earlier run
    erased: dict[str, int]
    enrollments_ended: int
    messages_cancelled: int
    suppressions_kept: int  # active opt-outs kept (address only), see the module docstring
    message_ids: tuple[str, ...] = field(default=(), repr=False)  # incl. alert e-mails

    @property
    def changed(self) -> int:
        return sum(self.erased.values()) + self.enrollments_ended + self.messages_cancelled


def forget_customer(session: Session, customer_id: str, now: datetime) -> ForgetSummary:
    """Erase ``customer_id``'s personal data in the caller's transaction (see the module
    docstring); raises :class:`UnknownCustomer` when there is no such customer."""
    customer = session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        raise UnknownCustomer(customer_id)
    orders = list(session.scalars(select(Order).where(Order.customer_id == customer_id)))
    messages = list(session.scalars(select(Message).where(Message.customer_id == customer_id)))
    alerts = list(session.scalars(select(AlertRecord)
                                  .where(AlertRecord.customer_id == customer_id)))
    events = _inbox_events(session, customer_id, {o.id for o in orders}, {m.id for m in messages})
    # Everything the customer was ever reachable at or called, not only what is stored now:
    # an address changed by customer.updated still sits in old events and sent messages.
    identity = _Identity.of(customer, messages, events)
    redact = _Redactor(identity.terms())
    outbox_ids = [m.id for m in messages] + [f"alert_{a.id}" for a in alerts]

    erased = {
        "customer": _erase_customer(customer, now),
        "inbox events": sum(_erase_event(e, redact) for e in events),
        "messages": sum(_erase_message(m, redact) for m in messages),
        "provider log (sandbox)": _erase_outbox(session, outbox_ids),
        "survey comments": sum(_set(r, comment=None) for r in session.scalars(
            select(SurveyResponse).where(SurveyResponse.customer_id == customer_id))),
        "alerts": sum(_erase_alert(a, redact) for a in alerts),
        "delivery events": _erase_deliveries(session, [m.id for m in messages], identity, redact),
        "inbound messages": _erase_inbound(session, customer_id, identity),
        "orders (tracking)": sum(_set(o, tracking_number=None, tracking_url=None)
                                 for o in orders),
    }
    erased["lifted suppressions"], kept = _settle_suppressions(session, customer_id, identity)
    ended = sum(_set(e, status=Status.EXITED.value, ended_at=now, end_reason=REASON, due_at=None,
                     claimed_by=None, claimed_until=None)
                for e in session.scalars(select(Enrollment).where(
                    Enrollment.customer_id == customer_id,
                    Enrollment.status == Status.ACTIVE.value)))
    cancelled = sum(_set(m, status="not_sent", status_reason=REASON)
                    for m in messages if m.status == "pending")
    already = customer.forgotten_at is not None
    if not already:
        customer.forgotten_at = now
    session.flush()
    assert customer.forgotten_at is not None
    return ForgetSummary(customer_id, customer.forgotten_at, already, erased, ended, cancelled,
                         kept, tuple(outbox_ids))


def erase_sandbox_files(folder: Path, message_ids: Iterable[str]) -> int:
    """Delete the sandbox channel's files of these messages (``AFTERSALE_SANDBOX_DIR``);
    returns how many went. Files live outside the transaction: call after the commit."""
    removed = 0
    for message_id in message_ids:
        for path in folder.glob(f"{glob_escape(message_id)}.*"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# -- finding ---------------------------------------------------------------------------------
def _inbox_events(session: Session, customer_id: str, order_ids: set[str],
                  message_ids: set[str]) -> list[InboxEvent]:
    """The customer's events: by customer id, by one of their orders (a Shopify cancellation
    names only the order) or by one of their survey messages. A JSON scan of the inbox: fine
    for a rare erasure, and the same SQL on SQLite and PostgreSQL."""
    payload = InboxEvent.payload
    matches = [payload[("customer", "id")].as_string() == customer_id]
    if order_ids:
        matches.append(payload[("order", "id")].as_string().in_(sorted(order_ids)))
    if message_ids:
        matches.append(payload[("survey", "message_id")].as_string().in_(sorted(message_ids)))
    return list(session.scalars(select(InboxEvent).where(or_(*matches))
                                .order_by(InboxEvent.seq)))


@dataclass(frozen=True)
class _Identity:
    emails: frozenset[str]  # normalized (lowercased)
    phones: frozenset[str]  # E.164
    names: frozenset[str]

    @classmethod
    def of(cls, customer: Customer, messages: list[Message],
           events: list[InboxEvent]) -> _Identity:
        emails, phones, names = set[str](), set[str](), set[str]()

        def add(email: Any, phone: Any, *more_names: Any) -> None:
            if isinstance(email, str) and email.strip():
                emails.add(normalize_address("email", email))
            if isinstance(phone, str) and phone.strip():
                phones.add(normalize_address("sms", phone))
            names.update(n.strip() for n in more_names if isinstance(n, str) and n.strip())

        add(customer.email, customer.phone, customer.first_name, customer.last_name)
        for message in messages:
            if message.recipient and message.channel:
                add(*((message.recipient, None) if message.channel == "email"
                      else (None, message.recipient)))
        for event in events:
            part = (event.payload or {}).get("customer")
            if isinstance(part, dict):
                add(part.get("email"), part.get("phone"), part.get("first_name"),
                    part.get("last_name"))
        return cls(frozenset(emails), frozenset(phones), frozenset(names))

    def addresses(self) -> set[tuple[str, str]]:
        return ({("email", e) for e in self.emails}
                | {(ch, p) for p in self.phones for ch in ("sms", "whatsapp")})

    def terms(self) -> tuple[list[str], list[str]]:
        """(strings erased wherever they appear, names erased as whole words)."""
        plain = set(self.emails) | set(self.phones) | {p.lstrip("+") for p in self.phones}
        return sorted(plain, key=len, reverse=True), sorted(self.names, key=len, reverse=True)


class _Redactor:
    """Replaces the customer's addresses and names inside free text that is otherwise kept
    (provider error reasons, skip reasons): the rest of the text stays useful."""

    def __init__(self, terms: tuple[list[str], list[str]]):
        plain, names = terms
        parts = [re.escape(t) for t in plain if len(t) >= 3]
        # Names as whole words only: "Ann" must not eat "Annual". One letter is no name.
        parts += [rf"(?<!\w){re.escape(n)}(?!\w)" for n in names if len(n) >= 2]
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def text(self, value: str | None) -> str | None:
        if value is None or self._pattern is None:
            return value
        return self._pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value


# -- erasing (each returns 1 if the row changed, else 0) --------------------------------------
def _set(row: Any, **values: Any) -> int:
    changed = 0
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = 1
    return changed


def _erase_customer(customer: Customer, now: datetime) -> int:
    changed = _set(customer, email=None, phone=None, first_name=None, last_name=None,
                   timezone=None, whatsapp_last_inbound_at=None, consent_email=False,
                   consent_sms=False, consent_whatsapp=False, order_updates_sms=False,
                   order_updates_whatsapp=False, fact_times=None)
    if changed:
        customer.updated_at = now
    return changed


def _erase_event(event: InboxEvent, redact: _Redactor) -> int:
    return _set(event, payload=redact.json(scrub_payload(event.payload)),
                error=redact.text(event.error))


def scrub_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event payload reduced to what processing and metrics read; still a valid event, so
    an event not yet processed is processed as before, minus the personal data."""
    kept: dict[str, Any] = {}
    for key in _KEEP_EVENT:
        value = payload.get(key)
        if key in _KEEP_PART and isinstance(value, dict):
            value = {k: value[k] for k in _KEEP_PART[key] if k in value}
            if key == "customer" and isinstance(value.get("consent"), dict):
                value["consent"] = _consent_flags(value["consent"])
            if key == "order" and isinstance(value.get("items"), list):
                value["items"] = [{k: i[k] for k in _KEEP_ITEM if k in i}
                                  for i in value["items"] if isinstance(i, dict)]
        if value is not None:
            kept[key] = value
    return kept


def _consent_flags(consent: dict[str, Any]) -> dict[str, Any]:
    """The consent flags alone, the order-updates opt-ins included."""
    flags = {k: v for k, v in consent.items() if k in ("email", "sms", "whatsapp")}
    if isinstance(consent.get("order_updates"), dict):
        flags["order_updates"] = {k: v for k, v in consent["order_updates"].items()
                                  if k in ("sms", "whatsapp")}
    return flags


def _erase_message(message: Message, redact: _Redactor) -> int:
    return _set(message, recipient=None, subject=None, body_text=None, body_html=None,
                status_reason=redact.text(message.status_reason),
                skips=redact.json(message.skips))


def _erase_outbox(session: Session, message_ids: list[str]) -> int:
    if not message_ids:
        return 0
    return sum(_set(row, recipient=ERASED, subject=None, body_text=ERASED, body_html=None)
               for row in session.scalars(select(SandboxOutbox)
                                          .where(SandboxOutbox.message_id.in_(message_ids))))


def _erase_alert(alert: AlertRecord, redact: _Redactor) -> int:
    details = dict(alert.details or {})
    for key in ("answer", "response"):  # the engine copies the answer's comment in here
        if isinstance(details.get(key), dict):
            details[key] = {k: v for k, v in details[key].items() if k != "comment"}
    return _set(alert, details=redact.json(details), last_error=redact.text(alert.last_error))


def _erase_deliveries(session: Session, message_ids: list[str], identity: _Identity,
                      redact: _Redactor) -> int:
    """Reports about the customer's messages, and reports that name one of their addresses
    without naming a message of ours."""
    matches: list[ColumnElement[bool]] = []
    if message_ids:
        matches.append(DeliveryEvent.message_id.in_(message_ids))
    addresses = sorted(identity.emails | identity.phones)
    if addresses:
        matches.append(and_(DeliveryEvent.message_id.is_(None),
                            DeliveryEvent.recipient.in_(addresses)))
    if not matches:
        return 0
    return sum(_set(row, recipient=None, raw={}, reason=redact.text(row.reason))
               for row in session.scalars(select(DeliveryEvent).where(or_(*matches))))


def _erase_inbound(session: Session, customer_id: str, identity: _Identity) -> int:
    """Replies the customer sent: linked to them, or from their number and linked to nobody
    (a number shared with another customer stays theirs)."""
    matches = [InboundMessage.customer_id == customer_id]
    if identity.phones:
        matches.append(and_(InboundMessage.customer_id.is_(None),
                            InboundMessage.from_address.in_(sorted(identity.phones))))
    return sum(_set(row, from_address=ERASED, body=ERASED, raw={})
               for row in session.scalars(select(InboundMessage).where(or_(*matches))))


def _settle_suppressions(session: Session, customer_id: str,
                         identity: _Identity) -> tuple[int, int]:
    """(lifted suppressions deleted, active ones kept). Active ones keep only the address."""
    matches = [Suppression.customer_id == customer_id]
    by_channel: dict[str, list[str]] = {}
    for channel, address in identity.addresses():
        by_channel.setdefault(channel, []).append(address)
    matches += [and_(Suppression.channel == channel, Suppression.address.in_(sorted(addresses)),
                     or_(Suppression.customer_id.is_(None),
                         Suppression.customer_id == customer_id))
                for channel, addresses in by_channel.items()]
    lifted = kept = 0
    for row in session.scalars(select(Suppression).where(or_(*matches))):
        if row.lifted_at is not None:
            session.delete(row)
            lifted += 1
        else:
            row.customer_id = None
            kept += 1
    return lifted, kept
