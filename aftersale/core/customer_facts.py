"""What an event says about its customer, and which of it is news: the newest fact per field
wins. Pure: processing applies it to the batch's rows.

Webhooks arrive late and out of order (a retried Shopify delivery, a requeued import), so an
event's ``occurred_at``, not its arrival, decides. Each customer keeps, per column, the time
of the newest event that stated it (``customers.fact_times``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aftersale.core.events import CustomerIn

_PROFILE = ("email", "phone", "first_name", "last_name", "locale", "timezone", "country")


def customer_facts(data: CustomerIn) -> dict[str, Any]:
    """The customer columns an event states. Only fields the event carries: a shipment event
    without an e-mail address must not erase the one we have."""
    facts = {name: value for name in _PROFILE if (value := getattr(data, name)) is not None}
    consent = data.consent
    if consent is not None:
        facts |= {f"consent_{ch}": value for ch in ("email", "sms", "whatsapp")
                  if (value := getattr(consent, ch)) is not None}
        if consent.order_updates is not None:
            facts |= {f"order_updates_{ch}": value for ch in ("sms", "whatsapp")
                      if (value := getattr(consent.order_updates, ch)) is not None}
    return facts


def newest_facts(known: dict[str, str] | None, facts: dict[str, Any],
                 occurred_at: datetime) -> tuple[set[str], dict[str, str]]:
    """Which of an event's ``facts`` apply, and the customer's fact times afterwards.

    The newest fact per field wins: a field takes the event's value unless a newer event
    stated it, so a late or requeued webhook fills what is still unknown and overwrites
    nothing newer. Equal times: the later arrival wins."""
    times = dict(known or {})
    take = {name for name in facts if (stated := times.get(name)) is None
            or datetime.fromisoformat(stated) <= occurred_at}
    stamp = occurred_at.isoformat()
    for name in take:
        times[name] = stamp
    return take, times
