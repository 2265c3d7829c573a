"""A realistic stream of shop events in the contract format (DESIGN.md section 3), generated
lazily so a million of them never sit in memory at once.

Each order is placed (the full customer block: e-mail, phone, consent), then usually shipped,
delivered and sometimes answered (an NPS or CSAT score); a few are cancelled or refunded, and
now and then a customer changes their details or consent. About 40% of orders come from a
customer who bought before, so upserts find existing rows. Events come out in time order (a
heap holds the follow-ups of recent orders), over ``span`` so a processing clock set at its
end still enrolls them (process-events starts no journey for events older than 72 hours).
"""

from __future__ import annotations

import heapq
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# (locale, country, time zone, currency, phone prefix, digits after it): numbers that
# phonenumbers accepts as valid mobiles.
PEOPLE = (("tr", "TR", "Europe/Istanbul", "TRY", "+90532", 7),
          ("de", "DE", "Europe/Berlin", "EUR", "+49151", 8),
          ("pl", "PL", "Europe/Warsaw", "PLN", "+48512", 6),
          ("en", "GB", "Europe/London", "GBP", "+447712", 6),
          ("en", "US", "America/New_York", "USD", "+1202555", 4))
CATEGORIES = ("drones", "cameras", "audio", "toys")
REPEAT_SHARE = 0.4  # of orders placed by a customer who ordered before


def _customer(rng: random.Random, n: int) -> dict[str, Any]:
    locale, country, zone, _, prefix, digits = PEOPLE[n % len(PEOPLE)]
    return {"id": f"bc{n:07d}", "email": f"buyer{n}@example.com",
            "phone": f"{prefix}{n % 10 ** digits:0{digits}d}", "first_name": f"First{n}",
            "last_name": f"Last{n}", "locale": locale, "timezone": zone, "country": country,
            "consent": {"email": rng.random() < 0.9, "sms": rng.random() < 0.5,
                        "whatsapp": rng.random() < 0.3}}


def generate(count: int, *, start: datetime, span: timedelta = timedelta(hours=48),
             seed: int = 11, prefix: str = "") -> Iterator[dict[str, Any]]:
    """``count`` events in time order between ``start`` and ``start + span``."""
    rng = random.Random(seed)
    orders = max(count // 3, 1)  # ~3 events per order
    gap = span.total_seconds() * 0.6 / orders  # placements fill the first 60% of the span
    customers: list[dict[str, Any]] = []
    pending: list[tuple[float, int, dict[str, Any]]] = []  # (time, tie-break, event)
    tie = 0
    emitted = 0

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat()

    def later(seconds: float, event: dict[str, Any]) -> None:
        nonlocal tie
        tie += 1
        heapq.heappush(pending, (seconds, tie, event))

    n_order = 0
    while emitted < count:
        now = n_order * gap
        while pending and (pending[0][0] <= now or n_order >= orders):
            if emitted >= count:
                return
            seconds, _, event = heapq.heappop(pending)
            event["occurred_at"] = at(seconds)
            emitted += 1
            yield event
        if emitted >= count:
            return
        if n_order >= orders:
            if not pending:  # only when count is far above 3 per order: place more
                orders += max((count - emitted) // 3, 1)
            continue
        n_order += 1
        if customers and rng.random() < REPEAT_SHARE:
            customer = rng.choice(customers)
        else:
            customer = _customer(rng, len(customers))
            customers.append(customer)
        cid = customer["id"]
        oid = f"{prefix}bo{n_order:08d}"
        quantity = 1 + int(rng.random() * 2)
        price = f"{rng.lognormvariate(3.9, 0.7):.2f}"
        category = CATEGORIES[n_order % len(CATEGORIES)]
        codes = ["WELCOME10"] if rng.random() < 0.2 else []
        currency = next(p[3] for p in PEOPLE if p[1] == customer["country"])
        emitted += 1
        yield {"id": f"{prefix}ev-{oid}-placed", "type": "order.placed", "occurred_at": at(now),
               "customer": customer,
               "order": {"id": oid, "number": f"#{n_order}", "currency": currency,
                         "items": [{"sku": f"SKU-{n_order % 40:03d}", "title": "Item",
                                    "category": category, "quantity": quantity,
                                    "price": price}],
                         "discount_codes": codes}}
        fate = rng.random()
        shipped = now + rng.uniform(1800, 4 * 3600)
        if fate < 0.02:
            later(now + rng.uniform(300, 3600), {"id": f"{prefix}ev-{oid}-cancelled",
                                                 "type": "order.cancelled",
                                                 "customer": {"id": cid}, "order": {"id": oid}})
            continue
        later(shipped, {"id": f"{prefix}ev-{oid}-shipped", "type": "order.shipped",
                        "customer": {"id": cid}, "order": {"id": oid},
                        "shipment": {"carrier": "DHL", "tracking_number": f"TN{oid}",
                                     "tracking_url": f"https://track.example.com/{oid}"}})
        delivered = shipped + rng.uniform(3600, 8 * 3600)
        later(delivered, {"id": f"{prefix}ev-{oid}-delivered", "type": "order.delivered",
                          "customer": {"id": cid}, "order": {"id": oid}})
        if fate < 0.04:
            later(delivered + 3600, {"id": f"{prefix}ev-{oid}-refunded",
                                     "type": "order.refunded", "customer": {"id": cid},
                                     "order": {"id": oid}})
        elif fate < 0.30:
            kind = "nps" if fate < 0.2 else "csat"
            score = rng.choice(range(0, 11) if kind == "nps" else range(1, 6))
            later(delivered + rng.uniform(600, 6 * 3600),
                  {"id": f"{prefix}ev-{oid}-answer", "type": "survey.responded",
                   "customer": {"id": cid},
                   "survey": {"kind": kind, "score": score, "order_id": oid, "source": "api"}})
        if rng.random() < 0.03:
            later(shipped, {"id": f"{prefix}ev-{oid}-consent", "type": "consent.changed",
                            "customer": {"id": cid, "consent": {"sms": rng.random() < 0.5}}})


def write_jsonl(path: Path, count: int, *, start: datetime, seed: int = 11,
                span: timedelta = timedelta(hours=48)) -> Counter[str]:
    """Write ``count`` events as JSON Lines; returns how many of each type."""
    kinds: Counter[str] = Counter()
    with path.open("w", encoding="utf-8") as out:
        buffer: list[str] = []
        for event in generate(count, start=start, span=span, seed=seed):
            kinds[event["type"]] += 1
            buffer.append(json.dumps(event, separators=(",", ":")))
            if len(buffer) >= 10_000:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
    return kinds
