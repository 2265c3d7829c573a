"""Sending queued messages: claim, check the rules, choose the channel, render, send, record.

Exactly once: claimed rows are marked ``sending`` (with the claim's token) and committed
*before* any provider call, and each call's start is committed just before it, a window of
calls at a time (:mod:`aftersale.pipeline.call_marks`); the provider's answers are recorded in a last
transaction, matched by the token. A crash in between leaves ``sending`` rows: those whose call
had started :func:`aftersale.pipeline.advance.recover_stale` flags for review, never resends; the others
go back to the queue. A stopping sender (SIGTERM, :mod:`aftersale.pipeline.stopping`) starts no further
call, records the ones in flight and puts the rest back.

Checked at send time, not at enrollment, because the world changes while a step waits: an exit
event (cancellation), suppressions (bounce, STOP, unsubscribe), consent, the WhatsApp 24-hour
window, quiet hours in the customer's time zone and the frequency cap. The last two defer a
marketing message to the first allowed minute; nothing is dropped for them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aftersale.channels.base import Channel, OutboundMessage, SendResult
from aftersale.core.backoff import Backoff
from aftersale.core.channel_choice import Contact, choose_channel
from aftersale.core.clock import Clock
from aftersale.core.journeys.engine import Status
from aftersale.core.journeys.model import Journey
from aftersale.core.links import Links
from aftersale.core.sending_rules import FrequencyCap, QuietHours
from aftersale.core.sms_encoding import sms_segments
from aftersale.core.survey_scales import scale
from aftersale.db.lookup import by_id
from aftersale.db.models import Customer, Enrollment, Message, Order, Shipment, Suppression
from aftersale.db.retry import while_away
from aftersale.pipeline.advance import DEFAULT_CLAIM, DispatchCounts, claim
from aftersale.pipeline.call_marks import CallMarks
from aftersale.pipeline.contexts import customer_context, enrollment_shipment, order_context
from aftersale.pipeline.definitions import Definitions, VersionCache
from aftersale.pipeline.send_outcomes import twilio_error_suppression
from aftersale.pipeline.suppression import normalize_address, suppress
from aftersale.pipeline.tracking_links import ShipmentLinks

RETRY = Backoff(base=timedelta(minutes=1))  # uncapped: MAX_ATTEMPTS ends it (1 to 96 min)
MAX_ATTEMPTS = 8
WHATSAPP_WINDOW = timedelta(hours=24)
RETRY_UNPREPARED_AFTER = timedelta(hours=1)
AMBIGUOUS = "no_answer"  # the channels' code for "sent, but the answer never came"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rules:
    """The marketing rules from settings; a journey may override or switch each off."""

    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCap | None = None

    def for_journey(self, journey: Journey) -> tuple[QuietHours | None, FrequencyCap | None]:
        quiet = self.quiet_hours if journey.quiet_hours is None else journey.quiet_hours or None
        cap = self.frequency_cap if journey.frequency_cap is None else journey.frequency_cap or None
        return quiet, cap


@dataclass(frozen=True)
class _Prepared:
    outbound: OutboundMessage
    channel: str


@dataclass
class _Batch:
    """What one claimed batch needs, loaded with a handful of queries."""

    session: Session
    definitions: Definitions
    available: set[str]
    links: Links
    rules: Rules
    now: datetime
    counts: DispatchCounts
    customers: dict[str, Customer] = field(default_factory=dict)
    enrollments: dict[int, Enrollment] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    suppressed: dict[tuple[str, str], str] = field(default_factory=dict)
    recent: dict[tuple[str, str], list[datetime]] = field(default_factory=lambda: defaultdict(list))
    tracking: ShipmentLinks | None = None

    def load(self, rows: list[Message]) -> None:
        self.customers = by_id(self.session, Customer, {m.customer_id for m in rows})
        self.enrollments = by_id(self.session, Enrollment, {m.enrollment_id for m in rows})
        self.orders = by_id(self.session, Order,
                            {e.order_id for e in self.enrollments.values() if e.order_id})
        self.shipments = by_id(self.session, Shipment, {
            e.shipment_id for e in self.enrollments.values() if e.shipment_id})
        self.tracking = ShipmentLinks.load(self.session, self.links, self.enrollments.values())
        # Suppressions store normalized addresses (e-mail lowercased), so look them up that way.
        addresses = {normalize_address(channel, a) for c in self.customers.values()
                     for channel, a in (("email", c.email), ("sms", c.phone)) if a}
        if addresses:
            self.suppressed = {
                (s.channel, s.address): s.reason for s in self.session.scalars(
                    select(Suppression).where(Suppression.address.in_(addresses),
                                              Suppression.lifted_at.is_(None)))}
        cap = self.rules.frequency_cap
        longest = max([cap.per if cap else timedelta(0)] + [
            j.frequency_cap.per for j in self.definitions.journeys.values() if j.frequency_cap])
        if longest and self.customers:
            content = self.definitions.content
            # A template no longer in content/ (renamed, retired) counts, as marketing would.
            transactional = {t for t in content.templates() if content.is_transactional(t)}
            for customer_id, channel, sent_at, template in self.session.execute(
                    select(Message.customer_id, Message.channel, Message.sending_at,
                           Message.template)
                    .where(Message.customer_id.in_(set(self.customers)),
                           Message.status.in_(("sent", "sending", "unknown")),
                           Message.sending_at > self.now - longest)):
                if template not in transactional:
                    self.recent[(customer_id, channel)].append(sent_at)
            for times in self.recent.values():
                times.sort()

    def prepare(self, message: Message, journey: Journey) -> _Prepared | None:
        customer = self.customers[message.customer_id]
        enrollment = self.enrollments[message.enrollment_id]
        order = self.orders.get(enrollment.order_id or "")
        exit_event = _exit_seen(journey.exit_on, order)
        if enrollment.status == Status.EXITED.value or exit_event:
            # An exit (a cancellation) that arrived after the step was queued wins, even when
            # the journey had already reached its end.
            _not_sent(message, f"{exit_event or 'exit event'} before sending", self.counts)
            return None
        content = self.definitions.content
        transactional = content.is_transactional(message.template)
        quiet, cap = self.rules.for_journey(journey)
        if not transactional and quiet is not None:
            allowed = quiet.next_allowed(self.now, customer.timezone)
            if allowed is not None:
                self._defer(message, allowed, "quiet hours")
                return None
        window_open = (customer.whatsapp_last_inbound_at is not None
                       and self.now - customer.whatsapp_last_inbound_at < WHATSAPP_WINDOW)
        contact = Contact(
            customer.email, customer.phone,
            {"email": customer.consent_email, "sms": customer.consent_sms,
             "whatsapp": customer.consent_whatsapp},
            suppressed={ch: reason for ch in ("email", "sms", "whatsapp")
                        if (reason := self._suppression(ch, customer)) is not None},
            whatsapp_window_open=window_open,
            order_updates={"sms": customer.order_updates_sms,
                           "whatsapp": customer.order_updates_whatsapp})
        contexts: dict[str, dict[str, Any]] = {}

        def context_for(channel: str) -> dict[str, Any]:
            # Built once per channel: it signs links, so only for channels actually rendered.
            if channel not in contexts:
                contexts[channel] = render_context(
                    customer, order, message.id, message.template, channel, transactional,
                    self.definitions, self.links, enrollment_shipment(
                        enrollment, self.shipments.get(enrollment.shipment_id or ""), self.now,
                        self.definitions.shop_country))
                if self.tracking is not None:  # the tracking page's link for the carrier's
                    self.tracking.apply(contexts[channel], message.id, customer.id, enrollment,
                                        order, self.now)
            return contexts[channel]

        # The approved template matters only where WhatsApp free text is not allowed.
        approved = None
        if ("whatsapp" in message.channels and not window_open
                and content.has(message.template, "whatsapp")):
            approved = content.whatsapp_template(message.template, customer.locale,
                                                 context_for("whatsapp"))
        choice = choose_channel(message.channels, contact, transactional, self.available,
                                lambda channel: content.has(message.template, channel),
                                has_approved_whatsapp_template=approved is not None)
        message.skips = [list(s) for s in choice.skipped]
        for channel, reason in choice.skipped:
            self.counts.channel_skips[f"{channel}: {reason}"] += 1
        if choice.channel is None or choice.recipient is None:
            _not_sent(message, choice.reason, self.counts)
            return None
        capped = None if transactional else cap
        if capped is not None:
            allowed = capped.next_allowed(self.recent[(customer.id, choice.channel)], self.now)
            if allowed is not None:
                self._defer(message, allowed, "frequency cap")
                return None
        context = context_for(choice.channel)
        # A message split's variant may bring its own subject line (rendered alike).
        rendered = content.render(message.template, choice.channel, customer.locale, context,
                                  message.subject_override)
        if capped is not None:  # only once it rendered: a message that fails here is not sent
            self.recent[(customer.id, choice.channel)].append(self.now)
        use_template = choice.channel == "whatsapp" and approved is not None
        message.channel, message.recipient = choice.channel, choice.recipient
        message.locale, message.subject = rendered.locale, rendered.subject
        message.body_text, message.body_html = rendered.text, rendered.html
        if choice.channel == "sms":
            message.sms_encoding, message.sms_segments = sms_segments(rendered.text)
            self.counts.sms_segments += message.sms_segments
        return _Prepared(OutboundMessage(
            id=message.id, channel=choice.channel, recipient=choice.recipient, text=rendered.text,  # type: ignore[arg-type]  # one of self.available
            subject=rendered.subject, html=rendered.html, transactional=transactional,
            journey=message.journey, template=message.template, customer_id=customer.id,
            unsubscribe_url=context["links"]["unsubscribe"],
            content_sid=approved[0] if use_template and approved else None,
            content_variables=approved[1] if use_template and approved else None,
        ), choice.channel)

    def _suppression(self, channel: str, customer: Customer) -> str | None:
        address = customer.email if channel == "email" else customer.phone
        if not address:
            return None
        return self.suppressed.get((channel, normalize_address(channel, address)))

    def could_not_prepare(self, message: Message, exc: Exception) -> None:
        """A template renamed away, a render error only real data brings out, a stored
        journey version this release cannot read. Left as it was, the message would be
        claimed first again on every run and hold up every message behind it; failed, it
        would be lost, and a bad release would fail every message. It is deferred an hour
        instead, behind the others, and goes out once the cause is fixed. It never reached
        a provider, so nothing is in doubt."""
        message.skips = None  # what choosing a channel noted, if it got that far
        self._defer(message, self.now + RETRY_UNPREPARED_AFTER, "could not prepare")
        message.status_reason = f"deferred: could not prepare: {type(exc).__name__}: {exc}"[:2000]
        self.counts.not_prepared += 1
        log.error("message %s: could not prepare (%s), tried again at %s", message.id,
                  type(exc).__name__, message.due_at, exc_info=exc)

    def _defer(self, message: Message, until: datetime, why: str) -> None:
        message.due_at = until
        message.status_reason = f"deferred: {why}"
        self.counts.deferred += 1
        self.counts.deferred_reasons[why] += 1
        return None


def send_pending(factory: sessionmaker[Session], definitions: Definitions,
                 channels: Mapping[str, Channel], links: Links, clock: Clock,
                 limit: int = 1000, rules: Rules | None = None,
                 claim_for: timedelta = DEFAULT_CLAIM) -> DispatchCounts:
    """Claim up to ``limit`` due messages and send them. No provider call starts later than
    half of ``claim_for`` after claiming (a batch waiting for a slow provider rate would
    otherwise still be sending when :func:`~aftersale.pipeline.advance.recover_stale` flags it);
    what does not fit goes back to the queue."""
    counts = DispatchCounts()
    now = clock.now()
    deadline = time.time() + claim_for.total_seconds() / 2
    token = secrets.token_hex(16)  # two claims in the same instant are still told apart
    prepared: list[_Prepared] = []
    with factory() as session, session.begin():
        rows = list(session.scalars(claim(
            select(Message).where(Message.status == "pending", Message.due_at <= now)
            # Deterministic order (ids are random): the same input sends in the same order,
            # which decides who a frequency cap defers when two messages are due together.
            .order_by(Message.due_at, Message.enrollment_id, Message.step_key).limit(limit),
            session)))
        counts.claimed = len(rows)
        batch = _Batch(session, definitions, set(channels), links, rules or Rules(), now, counts)
        batch.load(rows)
        versions = VersionCache(session)
        for message in rows:
            try:
                journey = versions.get(
                    batch.enrollments[message.enrollment_id].journey_version_id)
                item = batch.prepare(message, journey)
            except SQLAlchemyError:
                raise  # the database's trouble, not this message's: the batch runs again
            except Exception as exc:  # noqa: BLE001 - one message must not block the rest
                batch.could_not_prepare(message, exc)
                continue
            if item is not None:
                message.status, message.sending_at, message.claim_token = "sending", now, token
                message.call_started_at = None
                message.attempts += 1
                prepared.append(item)
    by_channel: dict[str, list[OutboundMessage]] = {}
    for item in prepared:
        by_channel.setdefault(item.channel, []).append(item.outbound)
    # Channels side by side: one after another, a slow first one would use up the deadline
    # of those behind it.
    channel_of = {p.outbound.id: p.channel for p in prepared}
    provider_of = {p.outbound.id: channels[p.channel].provider for p in prepared}

    def record(session: Session, results: list[SendResult], into: DispatchCounts) -> set[str]:
        return _record_sent(session, results, channel_of, provider_of, clock.now(), into)

    gates = {name: CallMarks(factory, clock, token, [m.id for m in outbound],
                             getattr(channels[name], "concurrency", 1), record)
             for name, outbound in by_channel.items()}
    with ThreadPoolExecutor(max_workers=max(len(by_channel), 1),
                            thread_name_prefix="send-channel") as pool:
        sent = pool.map(lambda named: channels[named[0]].send_batch(named[1], deadline,
                                                                    gates[named[0]]),
                        by_channel.items())
        results = [r for (name, _), batch in zip(by_channel.items(), sent, strict=True)
                   for r in gates[name].unrecorded(batch)]
    for gate in gates.values():
        counts.add(gate.counts)
    _record(factory, results, channel_of, provider_of, clock, counts, token)
    return counts


def _exit_seen(exit_on: tuple[str, ...], order: Order | None) -> str | None:
    if order is None:
        return None
    for event, when in (("order.cancelled", order.cancelled_at),
                        ("order.refunded", order.refunded_at)):
        if when is not None and event in exit_on:
            return event
    return None


def _not_sent(message: Message, reason: str, counts: DispatchCounts) -> None:
    message.status, message.status_reason = "not_sent", reason
    counts.not_sent += 1
    counts.not_sent_reasons[reason.split(";")[0].split(": ", 1)[-1]] += 1


def render_context(customer: Customer, order: Order | None, message_id: str, template: str,
                   channel: str, transactional: bool, definitions: Definitions,
                   links: Links, shipment: dict[str, Any] | None = None) -> dict[str, Any]:
    """What templates see (documented in aftersale.content.library). ``shipment``: the
    parcel of a shipment journey (:func:`aftersale.pipeline.contexts.enrollment_shipment`)."""
    kind = definitions.content.survey_kind(template)
    survey = None
    if kind is not None:
        survey = {"kind": kind, "scale": scale(kind),
                  "link": lambda score: links.survey(message_id, customer.id, kind, int(score)),
                  "honeypot": links.honeypot(message_id, customer.id, kind)}
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
        "shipment": shipment,
    }


def _record(factory: sessionmaker[Session], results: list[SendResult],
            channel_of: dict[str, str], provider_of: dict[str, str], clock: Clock,
            counts: DispatchCounts, token: str) -> None:
    """Record the provider's answers, retried while the database is away for a moment.

    The answers exist only in this process: given up, the rows would stay ``sending`` and be
    flagged ``unknown`` for review after the claim expires, although we know what happened.
    Recording sets each row to its result, so repeating it after a commit whose answer was
    lost changes nothing."""
    if not results:
        return
    def write() -> DispatchCounts:
        counted = DispatchCounts()  # a try that rolled back counted nothing
        _record_once(factory, results, channel_of, provider_of, clock, counted, token)
        return counted

    counts.add(while_away(write, f"recording {len(results)} provider answers"))


def _still_ours(message: Message, token: str) -> bool:
    """The row is as this batch's claim left it (or flagged ``unknown`` since)."""
    return message.status in ("sending", "unknown") and message.claim_token == token


def _record_once(factory: sessionmaker[Session], results: list[SendResult],
                 channel_of: dict[str, str], provider_of: dict[str, str], clock: Clock,
                 counts: DispatchCounts, token: str) -> None:
    with factory() as session, session.begin():
        _apply(session, results, channel_of, provider_of, clock.now(), counts, token)


def _record_sent(session: Session, results: list[SendResult], channel_of: dict[str, str],
                 provider_of: dict[str, str], now: datetime, counts: DispatchCounts) -> set[str]:
    """The answers "sent, with this id" among ``results``, in one statement without loading
    the rows: the common case, recorded as a batch goes (see aftersale.pipeline.call_marks). The rare
    others wait for the end of the batch and :func:`_apply`. Returns the ids recorded."""
    sent = [r for r in results if r.status == "sent" and r.provider_message_id]
    if sent:
        session.execute(update(Message), [
            {"id": r.message_id, "status": "sent", "sent_at": now,
             "provider": provider_of[r.message_id], "provider_message_id": r.provider_message_id}
            for r in sent])
        counts.sent += len(sent)
        counts.sent_by_channel.update(channel_of[r.message_id] for r in sent)
    return {r.message_id for r in sent}


def _apply(session: Session, results: list[SendResult], channel_of: dict[str, str],
           provider_of: dict[str, str], now: datetime, counts: DispatchCounts,
           token: str) -> None:
    """Write the provider's answers to their rows."""
    rows = by_id(session, Message, {r.message_id for r in results})
    for result in results:
        message = rows[result.message_id]
        if result.status != "sent" and not _still_ours(message, token):
            # Decided on meanwhile (aftersale review), maybe claimed again by another
            # sender: only "it went out" is news to them.
            continue
        if result.status == "later":  # never tried: not an attempt
            message.status, message.sending_at = "pending", None
            message.claim_token = message.call_started_at = None
            message.due_at = now + timedelta(seconds=result.retry_after or 0)
            message.attempts -= 1
            message.status_reason = f"deferred: {result.error}"
            counts.deferred += 1
            counts.deferred_reasons[result.error or "rate limit"] += 1
            continue
        message.provider = provider_of[result.message_id]
        message.provider_message_id = result.provider_message_id or message.provider_message_id
        if result.status == "sent":
            message.status, message.sent_at = "sent", now
            counts.sent += 1
            counts.sent_by_channel[channel_of[result.message_id]] += 1
        elif result.error_code == AMBIGUOUS:
            # The request went out and no answer came back: the provider may have
            # accepted it. Neither provider takes an idempotency key, so a resend could
            # reach the customer twice; flag it for review instead.
            message.status = "unknown"
            message.status_reason = f"no answer from the provider: {result.error}"
            counts.unknown += 1
        elif result.status == "retry" and message.attempts < MAX_ATTEMPTS:
            # Back to pending with exponential backoff; the provider said "not now".
            delay = RETRY.delay(message.attempts, result.retry_after)
            message.status, message.due_at = "pending", now + delay
            message.claim_token = message.call_started_at = None
            message.status_reason = result.error
            counts.retried += 1
        else:
            message.status, message.status_reason = "failed", result.error
            counts.failed += 1
            # 21610 (STOP), 21211 (invalid number)... come back from the send itself too:
            # suppress the address before the next dispatch, as the callback would.
            reason = twilio_error_suppression(result.error_code) \
                if message.provider == "twilio" else None
            if reason and message.channel and message.recipient:
                suppress(session, message.channel, message.recipient, message.customer_id,
                         reason, "twilio", now)
