"""Who we must not message, per channel and address, and the customer's consent that goes with it.

A suppression is keyed by ``(channel, address)``: a hard bounce, a spam report, an unsubscribe,
an SMS STOP or a number the provider calls invalid. Addresses are normalized the same way
everywhere: e-mail lowercased, phone numbers E.164 without the ``whatsapp:`` prefix (the
channel already says which). Lifting one (START, a re-subscribe) keeps the row with
``lifted_at`` set, for the record; suppressing it again clears ``lifted_at``.

A suppression is about the *address*; consent is about the *customer*. When the customer said
so themselves (STOP, unsubscribe, a spam report) their consent for that channel is withdrawn
too; START grants it again. A bounce or an invalid number changes no consent.

Every write is a single conditional statement, so two webhooks racing on the same address
cannot violate the unique key or undo each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from aftersale.db.models import Customer, Suppression
from aftersale.db.session import rowcount
from aftersale.db.upsert import insert

Channel = Literal["email", "sms", "whatsapp"]
CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp")
WHATSAPP_PREFIX = "whatsapp:"

# Reasons (Suppression.reason). The customer's own choices also withdraw their consent.
BOUNCE = "bounce"
INVALID = "invalid"
SPAM_REPORT = "spam_report"
UNSUBSCRIBE = "unsubscribe"
STOP = "stop"
PROVIDER_SUPPRESSION = "provider_suppression"  # the provider already refuses the address
CONSENT_WITHDRAWN = frozenset({SPAM_REPORT, UNSUBSCRIBE, STOP})

def normalize_address(channel: str, address: str) -> str:
    """E-mail lowercased; phone numbers without the ``whatsapp:`` prefix and spaces."""
    value = address.strip()
    if channel == "email":
        return value.lower()
    if value.lower().startswith(WHATSAPP_PREFIX):
        value = value[len(WHATSAPP_PREFIX):]
    return "".join(value.split())


def suppress(session: Session, channel: str, address: str, customer_id: str | None, reason: str,
             source: str, now: datetime) -> bool:
    """Stop messaging ``address`` on ``channel``; True if this made it newly suppressed.

    An active suppression is left as it is (its first reason stands); a lifted one is
    re-activated with the new reason. Withdraws the customer's consent when the reason is the
    customer's own choice (see ``CONSENT_WITHDRAWN``).
    """
    _check_channel(channel)
    address = normalize_address(channel, address)
    row = {"channel": channel, "address": address, "customer_id": customer_id, "reason": reason,
           "source": source, "created_at": now, "lifted_at": None}
    inserted = session.execute(
        insert(session, Suppression).values(row)
        .on_conflict_do_nothing(index_elements=["channel", "address"])
        .returning(Suppression.id)).first() is not None
    changed = inserted
    if not inserted:
        reactivated = session.execute(
            update(Suppression)
            .where(Suppression.channel == channel, Suppression.address == address,
                   Suppression.lifted_at.is_not(None))
            .values(lifted_at=None, reason=reason, source=source, created_at=now,
                    customer_id=func.coalesce(customer_id, Suppression.customer_id))
            .returning(Suppression.id)
            .execution_options(synchronize_session=False)).first()
        changed = reactivated is not None
    if reason in CONSENT_WITHDRAWN:
        set_consent(session, channel, False, now, address=address, customer_id=customer_id)
    return changed


def lift(session: Session, channel: str, address: str, now: datetime, *,
         reasons: Iterable[str] | None = None, grant_consent: bool = True,
         customer_id: str | None = None) -> bool:
    """Allow ``address`` on ``channel`` again (START, a re-subscribe); True if a suppression
    was lifted. ``reasons`` limits what may be lifted: a newsletter re-subscribe must not lift a
    hard bounce. With ``grant_consent`` the customers with that address get their consent back
    (the customer asked for it), whether or not anything was suppressed."""
    _check_channel(channel)
    address = normalize_address(channel, address)
    statement = update(Suppression).where(
        Suppression.channel == channel, Suppression.address == address,
        Suppression.lifted_at.is_(None))
    if reasons is not None:
        statement = statement.where(Suppression.reason.in_(list(reasons)))
    lifted = session.execute(statement.values(lifted_at=now).returning(Suppression.id)
                             .execution_options(synchronize_session=False)).first()
    if grant_consent:
        set_consent(session, channel, True, now, address=address, customer_id=customer_id)
    return lifted is not None


def is_suppressed(session: Session, channel: str, address: str) -> bool:
    return bool(suppressed_addresses(session, [(channel, address)]))


def suppressed_addresses(session: Session,
                         pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The given ``(channel, address)`` pairs that are suppressed now, as given (one query).

    Addresses are compared normalized, so ``Ayse@Example.com`` and ``whatsapp:+90...`` match
    their stored forms.
    """
    wanted: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for channel, address in pairs:
        if address:
            wanted.setdefault((channel, normalize_address(channel, address)), []).append(
                (channel, address))
    if not wanted:
        return set()
    found: set[tuple[str, str]] = set()
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = session.execute(
            select(Suppression.channel, Suppression.address).where(
                Suppression.address.in_({address for _, address in chunk}),
                Suppression.lifted_at.is_(None)))
        for channel, address in rows:
            found.update(wanted.get((channel, address), []))
    return found


def set_consent(session: Session, channel: str, value: bool, now: datetime, *,
                address: str | None = None, customer_id: str | None = None) -> int:
    """Set ``consent_<channel>`` for the customer and every customer with that address (a
    phone number belongs to whoever holds it); returns how many customers changed."""
    _check_channel(channel)
    matches = []
    if customer_id:
        matches.append(Customer.id == customer_id)
    if address:
        address = normalize_address(channel, address)
        matches.append(func.lower(Customer.email) == address if channel == "email"
                       else Customer.phone == address)
    if not matches:
        return 0
    column = getattr(Customer, f"consent_{channel}")
    result = session.execute(
        update(Customer).where(or_(*matches), column.is_not(value))
        .values({column: value, Customer.updated_at: now})
        .execution_options(synchronize_session=False))
    return int(rowcount(result) or 0)


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
