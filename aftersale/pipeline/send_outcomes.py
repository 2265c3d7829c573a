"""What providers tell us after a send, normalized: one :class:`Delivery` model for SendGrid
events and Twilio status callbacks, and one :class:`Inbound` model for SMS/WhatsApp replies.

Provider modules (:mod:`aftersale.webhooks`) only verify and parse; the rules live here:

- every report is stored once in ``delivery_events`` (``(provider, provider_event_id)`` is the
  idempotency key), with the raw payload kept beside the normalized fields;
- ``Message.delivery_status`` only moves forward: a late ``processed`` never overwrites
  ``delivered``, while ``opened``/``clicked``/``read`` after ``delivered`` do;
- reports that say an address must not be used again suppress it on that channel: a hard
  bounce, a drop for a bounced/invalid address, a spam report, an unsubscribe, Twilio 21610
  (the recipient replied STOP) and 21211/21614/21635 (invalid, not a mobile, a landline);
- a duplicate report has no second effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from aftersale.core.reply_keywords import Keyword, classify_keyword
from aftersale.core.scanners import BURST_LINKS, Click, Seen, burst_partners, suspect_reason
from aftersale.db.lookup import in_chunks
from aftersale.db.models import Customer, DeliveryEvent, InboundMessage, Message
from aftersale.db.upsert import insert
from aftersale.pipeline.suppression import (
    BOUNCE,
    INVALID,
    PROVIDER_SUPPRESSION,
    SPAM_REPORT,
    STOP,
    UNSUBSCRIBE,
    lift,
    normalize_address,
    suppress,
)
from aftersale.surveys.sms_answers import ReplyOutcome, SurveyReplies, answer_from_reply

CHUNK = 500


class DeliveryKind(StrEnum):
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    OPENED = "opened"
    CLICKED = "clicked"
    # Not a person's (aftersale.core.scanners): stored beside, never counted as opens/clicks.
    MACHINE_OPENED = "machine_opened"  # Apple Mail Privacy Protection (SendGrid sg_machine_open)
    SUSPECT_CLICKED = "suspect_clicked"  # most likely a mail scanner; the rule in ``reason``
    SPAM_REPORT = "spam_report"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"  # SendGrid group_resubscribe: lifts an unsubscribe
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    READ = "read"
    SENT = "sent"
    QUEUED = "queued"
    UNKNOWN = "unknown"  # a report we do not understand: stored, acted on never


#: How far along a message is; ``delivery_status`` only moves to an equal or higher rank.
#: Kinds missing here (unknown, resubscribed, a machine's open or click) never change it.
_RANKS: dict[DeliveryKind, int] = {
    DeliveryKind.QUEUED: 0,
    DeliveryKind.PROCESSED: 1, DeliveryKind.SENT: 1,
    DeliveryKind.DEFERRED: 2,
    DeliveryKind.DELIVERED: 3, DeliveryKind.BOUNCED: 3, DeliveryKind.DROPPED: 3,
    DeliveryKind.FAILED: 3, DeliveryKind.UNDELIVERED: 3,
    DeliveryKind.OPENED: 4, DeliveryKind.READ: 4,
    DeliveryKind.CLICKED: 5,
    DeliveryKind.SPAM_REPORT: 6, DeliveryKind.UNSUBSCRIBED: 6,
}
# Plain strings: database drivers must see "delivered", never an enum member.
MESSAGE_STATUS_RANK: dict[str, int] = {kind.value: rank for kind, rank in _RANKS.items()}

#: Twilio error codes that mean "never use this number on this channel again".
TWILIO_SUPPRESSING_CODES: dict[str, str] = {
    "21610": STOP,  # the recipient replied STOP
    "21211": INVALID,  # invalid To number
    "21614": INVALID,  # not a mobile number
    "21635": INVALID,  # a landline
}


@dataclass(frozen=True)
class Delivery:
    """One provider report about one message, normalized; ``raw`` is the payload as received."""

    provider: str
    provider_event_id: str
    kind: DeliveryKind
    message_id: str | None  # ours, from custom args / the status callback URL
    provider_message_id: str | None
    recipient: str | None  # normalized: e-mail lowercased, E.164 without "whatsapp:"
    occurred_at: datetime  # aware UTC
    reason: str | None = None
    error_code: str | None = None
    bounce_type: Literal["hard", "soft"] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    channel: str | None = None  # email, sms, whatsapp


@dataclass(frozen=True)
class DeliveryCounts:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    suppressed: int = 0  # addresses newly suppressed
    lifted: int = 0  # suppressions lifted (re-subscribes)


@dataclass(frozen=True)
class Effect:
    """What a report does to an address besides being recorded."""

    action: Literal["suppress", "lift"]
    channel: str
    address: str
    reason: str  # the suppression reason; for "lift", the reason it may lift


def twilio_error_suppression(code: str | int | None) -> str | None:
    """The suppression reason for a Twilio error code, or None when the number stays usable.
    Also for the lead's send path: the same codes come back synchronously from Messages.create."""
    return TWILIO_SUPPRESSING_CODES.get(str(code)) if code is not None else None


def sendgrid_dropped_suppression(reason: str | None) -> str | None:
    """SendGrid drops a mail for the address (bounced before, invalid, on its suppression lists)
    or for the mail itself (a bad SMTPAPI header, spam content): only the former suppress."""
    text = (reason or "").lower()
    if "bounced" in text:
        return BOUNCE
    if "smtpapi" in text or "spam content" in text or "quota" in text:
        return None
    if "invalid" in text:
        return INVALID
    if "unsubscribed" in text or "spam reporting" in text:
        return PROVIDER_SUPPRESSION
    return None


def effect_of(delivery: Delivery) -> Effect | None:
    channel, address = delivery.channel, delivery.recipient
    if not channel or not address:
        return None
    kind = delivery.kind
    reason: str | None = None
    if kind == DeliveryKind.BOUNCED and delivery.bounce_type == "hard":
        reason = BOUNCE
    elif kind == DeliveryKind.DROPPED:
        reason = sendgrid_dropped_suppression(delivery.reason)
    elif kind == DeliveryKind.SPAM_REPORT:
        reason = SPAM_REPORT
    elif kind == DeliveryKind.UNSUBSCRIBED:
        reason = UNSUBSCRIBE
    elif kind in (DeliveryKind.FAILED, DeliveryKind.UNDELIVERED):
        reason = twilio_error_suppression(delivery.error_code)
    elif kind == DeliveryKind.RESUBSCRIBED:
        return Effect("lift", channel, address, UNSUBSCRIBE)
    return Effect("suppress", channel, address, reason) if reason else None


def apply_deliveries(session: Session, deliveries: Sequence[Delivery], now: datetime,
                     ) -> DeliveryCounts:
    """Record reports and act on the new ones, in the caller's transaction (all or nothing)."""
    unique: dict[tuple[str, str], Delivery] = {}
    for delivery in deliveries:
        unique.setdefault((delivery.provider, delivery.provider_event_id), delivery)
    batch = _judge_clicks(session, _resolve_messages(session, list(unique.values())))
    messages = _message_facts(session, {d.message_id for d in batch if d.message_id})
    new_keys = _insert_events(session, batch, now)
    fresh = [d for d in batch if (d.provider, d.provider_event_id) in new_keys]
    _advance_status(session, fresh)
    suppressed = lifted = 0
    # In the order they happened: an unsubscribe and a re-subscribe may share a batch.
    for delivery in sorted(fresh, key=lambda d: d.occurred_at):
        customer_id, message_channel, message_recipient = messages.get(
            delivery.message_id or "", (None, None, None))
        if delivery.channel is None and message_channel:
            delivery = replace(delivery, channel=message_channel)
        if (delivery.recipient is None and message_channel and message_recipient
                and delivery.channel == message_channel):
            delivery = replace(delivery, recipient=normalize_address(message_channel,
                                                                     message_recipient))
        effect = effect_of(delivery)
        if effect is None:
            continue
        if effect.action == "suppress":
            suppressed += suppress(session, effect.channel, effect.address, customer_id,
                                   effect.reason, delivery.provider, now)
        else:
            lifted += lift(session, effect.channel, effect.address, now, reasons=[effect.reason],
                           customer_id=customer_id)
    return DeliveryCounts(received=len(deliveries), stored=len(fresh),
                          duplicates=len(deliveries) - len(fresh), suppressed=suppressed,
                          lifted=lifted)


def _resolve_messages(session: Session, batch: list[Delivery]) -> list[Delivery]:
    """Reports without our id (a mail sent before custom args existed) are matched by the
    provider's message id when we recorded it at send time.

    A report may carry a longer id than the one the send returned: SendGrid's ``sg_message_id``
    is the ``X-Message-Id`` followed by ``.filter...``, and old-style ids contain dots
    themselves (``14c5d75ce93.dfd.64b469``), so every dot-prefix is a candidate and the longest
    one we recorded wins."""
    wanted = {d.provider_message_id for d in batch if d.message_id is None and d.provider_message_id}
    if not wanted:
        return batch
    candidates = {prefix for pid in wanted for prefix in _dot_prefixes(pid)}
    recorded: dict[tuple[str | None, str], str] = {}
    for chunk in in_chunks(candidates):
        for provider, provider_message_id, message_id in session.execute(
                select(Message.provider, Message.provider_message_id, Message.id)
                .where(Message.provider_message_id.in_(chunk))):
            recorded[(provider, provider_message_id)] = message_id

    def match(delivery: Delivery) -> str | None:
        for prefix in reversed(_dot_prefixes(delivery.provider_message_id or "")):
            if (delivery.provider, prefix) in recorded:
                return recorded[(delivery.provider, prefix)]
        return None

    return [replace(d, message_id=match(d)) if d.message_id is None else d for d in batch]


def _dot_prefixes(provider_message_id: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``, shortest first."""
    parts = provider_message_id.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1) if parts[n - 1]]


def _judge_clicks(session: Session, batch: list[Delivery]) -> list[Delivery]:
    """Clicks a mail scanner most likely made become ``suspect_clicked``: too soon after the
    send, or a burst of different links of one message (aftersale.core.scanners; the
    provider parser already caught honeypot links and scanner user agents). An earlier click
    the burst reveals is re-marked in ``delivery_events``; its raw payload stays as received."""
    engaged = (DeliveryKind.CLICKED, DeliveryKind.SUSPECT_CLICKED)
    clicks = [d for d in batch if d.kind in engaged and d.message_id]
    if not clicks:
        return batch
    sent_at: dict[str, datetime | None] = {}
    seen: dict[str, list[Seen]] = {}
    links: dict[str, int] = {}  # each distinct link a number, as a score is for survey links
    stored: dict[int, DeliveryEvent] = {}
    for chunk in in_chunks(d.message_id for d in clicks):
        sent_at.update({mid: at for mid, at in session.execute(
            select(Message.id, Message.sent_at).where(Message.id.in_(chunk)))})
        for row in session.scalars(select(DeliveryEvent).where(
                DeliveryEvent.message_id.in_(chunk),
                DeliveryEvent.kind.in_([k.value for k in engaged]))):
            stored[row.id] = row
            seen.setdefault(row.message_id or "", []).append(
                Seen(row.occurred_at, _link_number(links, row.raw, row.reason), row.id))
    judged: dict[int, Delivery] = {}
    for position, delivery in sorted(enumerate(batch), key=lambda p: p[1].occurred_at):
        if delivery.kind not in engaged or not delivery.message_id:
            continue
        this = Seen(delivery.occurred_at, _link_number(links, delivery.raw, delivery.reason),
                    -1 - position)
        click = Click(at=delivery.occurred_at, score=this.score, honeypot=this.score is None,
                      user_agent=_text_or_none(delivery.raw.get("useragent")),
                      sent_at=sent_at.get(delivery.message_id))
        partners = burst_partners(click, seen.get(delivery.message_id, []), BURST_LINKS)
        reason = (suspect_reason(click, partners, BURST_LINKS)
                  if delivery.kind == DeliveryKind.CLICKED else None)
        for partner in partners:
            key = partner.key or 0
            if key < 0:  # one of this batch
                earlier = judged.get(-1 - key, batch[-1 - key])
                if earlier.kind == DeliveryKind.CLICKED:
                    judged[-1 - key] = replace(earlier, kind=DeliveryKind.SUSPECT_CLICKED,
                                               reason="burst")
            elif stored[key].kind == DeliveryKind.CLICKED.value:
                stored[key].kind, stored[key].reason = DeliveryKind.SUSPECT_CLICKED.value, "burst"
        if reason is not None:
            judged[position] = replace(delivery, kind=DeliveryKind.SUSPECT_CLICKED, reason=reason)
        seen.setdefault(delivery.message_id, []).append(this)
    session.flush()
    return [judged.get(i, d) for i, d in enumerate(batch)]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _link_number(links: dict[str, int], raw: dict[str, Any], reason: str | None) -> int | None:
    """None for the honeypot; else the same number for the same link."""
    if reason == "honeypot":
        return None
    return links.setdefault(str(raw.get("url") or ""), len(links))


def _message_facts(session: Session, ids: set[str],
                   ) -> dict[str, tuple[str, str | None, str | None]]:
    """message id -> (customer id, channel, recipient) for the messages that exist."""
    facts: dict[str, tuple[str, str | None, str | None]] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), CHUNK):
        rows = session.execute(
            select(Message.id, Message.customer_id, Message.channel, Message.recipient)
            .where(Message.id.in_(listed[start:start + CHUNK])))
        facts.update({mid: (cid, channel, recipient) for mid, cid, channel, recipient in rows})
    return facts


def _insert_events(session: Session, batch: list[Delivery], now: datetime) -> set[tuple[str, str]]:
    """INSERT ... ON CONFLICT DO NOTHING; the keys that were new (RETURNING works on both)."""
    if not batch:
        return set()
    new: set[tuple[str, str]] = set()
    for start in range(0, len(batch), CHUNK):
        rows = [_event_row(d, now) for d in batch[start:start + CHUNK]]
        statement = insert(session, DeliveryEvent).values(rows).on_conflict_do_nothing(
            index_elements=["provider", "provider_event_id"],
        ).returning(DeliveryEvent.provider, DeliveryEvent.provider_event_id)
        new.update((provider, event_id) for provider, event_id in session.execute(statement))
    return new


def _event_row(delivery: Delivery, now: datetime) -> dict[str, Any]:
    return {"provider": delivery.provider, "provider_event_id": delivery.provider_event_id,
            "message_id": delivery.message_id, "provider_message_id": delivery.provider_message_id,
            "kind": delivery.kind.value, "recipient": delivery.recipient,
            "reason": delivery.reason, "error_code": delivery.error_code,
            "occurred_at": delivery.occurred_at, "received_at": now, "raw": delivery.raw}


def _advance_status(session: Session, fresh: Iterable[Delivery]) -> None:
    """One conditional UPDATE per message: atomic, so concurrent webhooks cannot move it back."""
    best: dict[str, Delivery] = {}
    for delivery in fresh:
        rank = MESSAGE_STATUS_RANK.get(delivery.kind.value)
        if delivery.message_id is None or rank is None:
            continue
        current = best.get(delivery.message_id)
        if current is None or (rank, delivery.occurred_at) >= (MESSAGE_STATUS_RANK[current.kind.value],
                                                                 current.occurred_at):
            best[delivery.message_id] = delivery
    for message_id, delivery in sorted(best.items()):  # one lock order: no deadlocks between batches
        rank = MESSAGE_STATUS_RANK[delivery.kind.value]
        behind = [kind for kind, r in MESSAGE_STATUS_RANK.items() if r <= rank]
        session.execute(
            update(Message).where(Message.id == message_id,
                                  or_(Message.delivery_status.is_(None),
                                      Message.delivery_status.in_(behind)))
            .values(delivery_status=delivery.kind.value)
            .execution_options(synchronize_session=False))


# --- inbound messages (SMS/WhatsApp replies) --------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """A message a customer sent us."""

    provider: str
    provider_message_id: str
    channel: Literal["sms", "whatsapp"]
    from_address: str  # E.164, without "whatsapp:"
    to_address: str | None
    body: str
    raw: dict[str, Any] = field(default_factory=dict)
    opt_out_type: str | None = None  # Twilio Advanced Opt-Out: STOP, START, HELP

    @property
    def keyword(self) -> Keyword | None:
        """Twilio's own classification wins (it knows custom keywords); else ours."""
        told = (self.opt_out_type or "").strip().lower()
        match told:
            case "stop" | "start" | "help":
                return told
        return classify_keyword(self.body)


@dataclass(frozen=True)
class InboundResult:
    stored: bool  # False: a duplicate, nothing done again
    keyword: Keyword | None
    customer_id: str | None
    locale: str | None
    survey: ReplyOutcome | None = None  # what the reply did to a survey; None: not looked at

    @property
    def reply(self) -> str | None:
        """The survey text to send back (a thank-you or the one clarification), if any."""
        return self.survey.reply if self.survey is not None else None


def apply_inbound(session: Session, inbound: Inbound, now: datetime,
                  surveys: SurveyReplies | None = None) -> InboundResult:
    """Store the message once by provider id; on the first time, act on it: a WhatsApp message
    opens the 24-hour window, STOP suppresses that channel and withdraws consent, START lifts
    it and grants consent. Anything else, given ``surveys``, may answer the customer's open
    survey on that channel (:mod:`aftersale.surveys.sms_answers`), in this same transaction: a
    duplicate delivery of the message therefore never answers or clarifies twice."""
    address = normalize_address(inbound.channel, inbound.from_address)
    customer = session.execute(
        select(Customer.id, Customer.locale).where(Customer.phone == address)
        .order_by(Customer.updated_at.desc(), Customer.id).limit(1)).first()
    customer_id, locale = (customer[0], customer[1]) if customer else (None, None)
    keyword = inbound.keyword
    inserted = session.execute(
        insert(session, InboundMessage).values(
            provider=inbound.provider, provider_message_id=inbound.provider_message_id,
            channel=inbound.channel, from_address=address, to_address=inbound.to_address,
            body=inbound.body, customer_id=customer_id, received_at=now, raw=inbound.raw,
        ).on_conflict_do_nothing(index_elements=["provider_message_id"])
        .returning(InboundMessage.id)).first()
    if inserted is None:
        return InboundResult(False, keyword, customer_id, locale)
    if inbound.channel == "whatsapp":
        session.execute(
            update(Customer).where(Customer.phone == address,
                                   or_(Customer.whatsapp_last_inbound_at.is_(None),
                                       Customer.whatsapp_last_inbound_at < now))
            .values(whatsapp_last_inbound_at=now)
            .execution_options(synchronize_session=False))
    if keyword == "stop":
        suppress(session, inbound.channel, address, customer_id, STOP, f"{inbound.provider}_inbound",
                 now)
    elif keyword == "start":
        lift(session, inbound.channel, address, now, customer_id=customer_id)
    survey = None
    if keyword is None and surveys is not None:
        survey = answer_from_reply(session, customer_id, inbound.channel, inbound.body,
                                   surveys.kinds, now, surveys.days, texts=surveys.texts,
                                   locale=locale)
    return InboundResult(True, keyword, customer_id, locale, survey)


__all__ = [
    "Delivery", "DeliveryCounts", "DeliveryKind", "Effect", "Inbound", "InboundResult",
    "apply_deliveries", "apply_inbound", "effect_of", "sendgrid_dropped_suppression",
    "twilio_error_suppression",
]
