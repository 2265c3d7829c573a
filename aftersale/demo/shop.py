"""A synthetic shop: customers, orders and parcels as events in the DESIGN.md section 3 format.

Pure and deterministic by seed: no database, no network, no wall clock. `aftersale demo` feeds
these events through the real intake over simulated days, so the histories are shaped to make
every segment the engine computes appear in visible numbers inside a short window:

- first_time: every persona's first order;
- repeat: loyal, vip and bargain personas reorder on their own every few weeks;
- vip: vip personas buy expensive things (drones, cameras, coffee machines), >= 1000 EUR soon;
- discount_hunter: bargain personas put a discount code on most orders;
- at_risk: lapsing personas have a "previous" order 90-400 days before their order in the
  window; it is emitted as events dated before `start` so the runner ingests it first.

Events after the end of the window are not emitted: the shop is what had happened by then.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from zoneinfo import ZoneInfo

import phonenumbers

from aftersale.core.links import referral_code

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
HISTORY_DAYS = 400  # how far before `start` a "previous" order may lie
ARCHETYPES = ("one_off", "loyal", "vip", "bargain", "lapsing")
CURRENCY_BY_COUNTRY = {"GB": "GBP", "US": "USD", "TR": "TRY", "PL": "PLN"}
# Units of each currency per euro; fixed so prices (and the vip threshold) are stable by seed.
EUR_RATES: dict[str, Decimal] = {
    "EUR": Decimal(1),
    "GBP": Decimal("0.85"),
    "USD": Decimal("1.08"),
    "TRY": Decimal(45),
    "PLN": Decimal("4.30"),
}
CANCEL_RATE = 0.03
REFUND_RATE = 0.02
CENT = Decimal("0.01")


# ---------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class Persona:
    """One simulated customer: who they are, how to reach them, and how they tend to behave."""

    customer_id: str
    locale: str  # "en" | "tr" | "pl", sometimes a full tag such as "tr-TR"
    country: str  # "GB" | "US" | "TR" | "PL"
    timezone: str  # IANA, matching the country
    first_name: str
    last_name: str
    email: str | None
    phone: str | None  # E.164, a valid mobile number for the country
    consent: dict[str, bool] = field(hash=False)  # email / sms / whatsapp
    archetype: str  # one of ARCHETYPES
    satisfaction: float  # 0..1, mean happiness with what they bought
    responsiveness: float  # 0..1, chance to engage with a message
    reorder_propensity: float  # 0..1, how readily they buy again
    # "Text me about my order" at checkout: the transactional opt-in per channel (sms/whatsapp)
    order_updates: dict[str, bool] = field(default_factory=dict, hash=False)

    @property
    def language(self) -> str:
        return self.locale.split("-")[0]

    @property
    def referral_code(self) -> str:
        return referral_code(self.customer_id)

    @property
    def reachable_channels(self) -> list[str]:
        """Channels with both consent and an address; empty for the ~3% the engine must skip."""
        have = {"email": self.email is not None, "sms": self.phone is not None}
        have["whatsapp"] = have["sms"]
        return [c for c in ("email", "sms", "whatsapp") if self.consent.get(c) and have[c]]


@dataclass(frozen=True)
class SyntheticShop:
    start: datetime
    days: int
    personas: dict[str, Persona]
    events: list[dict]  # sorted by occurred_at (as an instant), then id
    order_count: int = 0  # orders generated; the runner numbers its own orders after these

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def events_between(self, after: datetime, until: datetime) -> list[dict]:
        """Events with `after` < occurred_at <= `until` (naive times are taken as UTC)."""
        lo = bisect_right(self.events, _utc(after), key=_event_instant)
        hi = bisect_right(self.events, _utc(until), key=_event_instant)
        return self.events[lo:hi]


# ---------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True)
class _Product:
    sku: str
    title: str
    category: str
    eur: Decimal
    premium: bool  # what a vip buys: expensive enough that two orders pass 1000 EUR

    def price(self, currency: str) -> Decimal:
        return _shelf_price(self.eur * EUR_RATES[currency], currency)


def _p(sku: str, title: str, category: str, eur: str) -> _Product:
    return _Product(sku, title, category, Decimal(eur), Decimal(eur) >= 500)


_PRODUCTS: tuple[_Product, ...] = (
    _p("DRN-1", "Skylark Mini Drone", "drones", "399"),
    _p("DRN-2", "Skylark Pro 4K Drone", "drones", "1299"),
    _p("DRN-3", "Skylark Spare Battery", "drones", "59"),
    _p("DRN-4", "Propeller Guard Set", "drones", "19"),
    _p("CAM-1", "Lumen Compact Camera", "cameras", "549"),
    _p("CAM-2", "Lumen Mirrorless Z", "cameras", "1490"),
    _p("CAM-3", "Action Cam Go", "cameras", "249"),
    _p("CAM-4", "Camera Sling Bag", "cameras", "45"),
    _p("COF-1", "Barista Espresso Machine", "coffee_machines", "699"),
    _p("COF-2", "Bean-to-Cup Automatic", "coffee_machines", "1090"),
    _p("COF-3", "Capsule Coffee Maker", "coffee_machines", "129"),
    _p("HP-1", "Quiet Wireless Headphones", "headphones", "299"),
    _p("HP-2", "Sport Earbuds", "headphones", "89"),
    _p("MUG-1", "Stoneware Mug", "mugs", "14"),
    _p("MUG-2", "Double-wall Glass Mug Set", "mugs", "24"),
    _p("MUG-3", "Travel Tumbler", "mugs", "29"),
    _p("KIT-1", "Chef's Knife 20 cm", "kitchen", "89"),
    _p("KIT-2", "Cast Iron Skillet", "kitchen", "49"),
    _p("KIT-3", "Burr Coffee Grinder", "kitchen", "129"),
    _p("KIT-4", "Milk Frother", "kitchen", "39"),
)
_BY_CATEGORY: dict[str, tuple[_Product, ...]] = {}
for _product in _PRODUCTS:
    _BY_CATEGORY[_product.category] = (*_BY_CATEGORY.get(_product.category, ()), _product)
_PREMIUM = tuple(p for p in _PRODUCTS if p.premium)
_ACCESSORIES = tuple(p for p in _PRODUCTS if p.eur < 150)
# Everyday shoppers mostly buy small things; drones and cameras still show up often enough
# for the tutorial step (`order.has_category("drones")`) to fire.
_CATEGORY_WEIGHTS = {
    "mugs": 24, "kitchen": 22, "headphones": 16, "drones": 14, "coffee_machines": 12,
    "cameras": 12,
}  # fmt: skip


def _shelf_price(amount: Decimal, currency: str) -> Decimal:
    """Round to a price a shop would print: 339.99, or 17,949.90 in lira."""
    if currency == "TRY":
        return (amount / 10).quantize(Decimal(1)) * 10 - Decimal("0.10")
    return max(amount.quantize(Decimal(1)), Decimal(1)) - CENT


def currency_for(country: str) -> str:
    return CURRENCY_BY_COUNTRY[country]


def basket(persona: Persona, rng: random.Random, currency: str | None = None) -> list[dict]:
    """A plausible basket for this persona; the runner uses it for message-prompted orders."""
    currency = currency or currency_for(persona.country)
    picks = _basket_products(persona.archetype, rng)
    return [_item(product, qty, currency) for product, qty in picks]


def _basket_products(archetype: str, rng: random.Random) -> list[tuple[_Product, int]]:
    if archetype == "vip":
        # one big-ticket item plus accessories: two vip orders are well over 1000 EUR
        chosen = [(rng.choice(_PREMIUM), 1)]
        chosen += [(rng.choice(_ACCESSORIES), rng.randint(1, 2)) for _ in range(rng.randint(0, 2))]
        return _merge(chosen)
    size = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
    chosen = []
    for _ in range(size):
        category = rng.choices(list(_CATEGORY_WEIGHTS), weights=list(_CATEGORY_WEIGHTS.values()))[0]
        options = _BY_CATEGORY[category]
        if archetype == "bargain":
            # bargain hunters skip the flagship models
            options = tuple(p for p in options if not p.premium) or options
        product = rng.choice(options)
        if product.premium and rng.random() < 0.6:
            # flagships are rarer outside the vip crowd, so vip stays a segment of its own
            product = rng.choice([p for p in options if not p.premium])
        chosen.append((product, rng.randint(1, 4) if product.category == "mugs" else 1))
    return _merge(chosen)


def _merge(chosen: list[tuple[_Product, int]]) -> list[tuple[_Product, int]]:
    """One line per sku, as a shop's order would have it."""
    quantities: dict[str, int] = {}
    products: dict[str, _Product] = {}
    for product, qty in chosen:
        quantities[product.sku] = quantities.get(product.sku, 0) + qty
        products[product.sku] = product
    return [(products[sku], qty) for sku, qty in quantities.items()]


def _item(product: _Product, quantity: int, currency: str) -> dict:
    return {
        "sku": product.sku,
        "title": product.title,
        "category": product.category,
        "quantity": quantity,
        "price": _money(product.price(currency)),
    }


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


# ---------------------------------------------------------------------------------------------
# Events


def order_event(
    persona: Persona,
    order_id: str,
    number: str,
    when: datetime,
    items: list[dict],
    currency: str,
    discount_codes: list,
    referral_code: str | None,
    event_id: str,
) -> dict:
    """An `order.placed` event with the full customer block, total = sum(price x quantity)."""
    total = sum((Decimal(i["price"]) * i["quantity"] for i in items), Decimal(0))
    return {
        "id": event_id,
        "type": "order.placed",
        "occurred_at": _local_iso(when, persona.timezone),
        "customer": customer_block(persona),
        "order": {
            "id": order_id,
            "number": number,
            "total": _money(total),
            "currency": currency,
            "items": [dict(i) for i in items],
            "discount_codes": list(discount_codes),
            "referral_code": referral_code,
        },
    }


def customer_block(persona: Persona) -> dict:
    return {
        "id": persona.customer_id,
        "email": persona.email,
        "phone": persona.phone,
        "first_name": persona.first_name,
        "last_name": persona.last_name,
        "locale": persona.locale,
        "timezone": persona.timezone,
        "country": persona.country,
        "consent": {**persona.consent, "order_updates": dict(persona.order_updates)},
    }


def fulfilment_events(
    persona: Persona, order_id: str, placed_at: datetime, rng: random.Random, lines: int = 1,
    legacy: bool | None = None,
) -> list[dict]:
    """What happens to an order after placement: cancelled (~3%, before shipping, then nothing
    else), or shipped 1-3 days later in one parcel (two for ~4% of orders of several lines),
    each parcel told by its carrier as ``shipment.updated`` events (see `parcel_updates`);
    refunded (~2%) some days after delivery, and always after a lost parcel.

    With ``legacy`` (default `LEGACY_ORDER_EVENTS`) the order's ``order.shipped`` (at the first
    parcel's first scan) and ``order.delivered`` (when every parcel is) come too."""
    if rng.random() < CANCEL_RATE:
        cancelled = _utc(placed_at) + timedelta(minutes=rng.randint(20, 30 * 60))
        return [_follow_up(persona, order_id, "cancelled", cancelled)]
    # one draw of the order stream per shipped order: the parcels' own story is told from it,
    # so how carriers behave does not shift any other order's draws
    story = random.Random(rng.getrandbits(64))
    count = 2 if lines >= 2 and story.random() < SPLIT_RATE else 1
    shipped = _business_hours(placed_at, story.randint(1, 3), persona, story)
    events: list[dict] = []
    for n in range(1, count + 1):
        if n > 1:  # the rest of the order follows from another warehouse a day or two later
            shipped = _business_hours(shipped, story.randint(1, 2), persona, story)
        events += parcel_updates(persona, order_id, n, shipped, story)
    ends = {e["shipment"]["id"]: e for e in events}  # each parcel's last word
    last = max(_event_instant(e) for e in ends.values())
    delivered = all(e["shipment"]["status"] == "delivered" for e in ends.values())
    if LEGACY_ORDER_EVENTS if legacy is None else legacy:
        first = next(e for e in events if e["shipment"]["status"] == "in_transit")
        tracking = {k: first["shipment"][k] for k in ("carrier", "tracking_number", "tracking_url")}
        events.append(_follow_up(persona, order_id, "shipped", _event_instant(first),
                                 shipment=tracking))
        if delivered:
            events.append(_follow_up(persona, order_id, "delivered", last))
    if not delivered:  # a lost parcel: the shop refunds it once the carrier gives up
        refunded = last + timedelta(days=story.randint(1, 3), hours=story.randint(0, 8))
        events.append(_follow_up(persona, order_id, "refunded", refunded))
    elif story.random() < REFUND_RATE:
        refunded = last + timedelta(days=story.randint(2, 20), hours=story.randint(0, 8))
        events.append(_follow_up(persona, order_id, "refunded", refunded))
    events.sort(key=lambda e: (_event_instant(e), e["id"]))
    return events


def _follow_up(persona: Persona, order_id: str, kind: str, when: datetime, **extra: dict) -> dict:
    """Events after placement carry only the ids that link them (DESIGN.md section 3)."""
    return {
        "id": f"evt-{order_id}-{kind}",
        "type": f"order.{kind}",
        "occurred_at": _local_iso(when, persona.timezone),
        "customer": {"id": persona.customer_id},
        "order": {"id": order_id},
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Parcels: what the carriers say

# The single switch for the order.shipped / order.delivered events the shop sent before it
# had carriers. Off: process-events derives both from the carriers' shipment.updated.
LEGACY_ORDER_EVENTS = False
# Each parcel has one story; the rates are per parcel.
LOST_RATE = 0.01  # in transit, then silence, then the carrier's "lost" exception
ATTEMPT_RATE = 0.03  # nobody home: delivered a day or two later
DELAY_RATE = 0.08  # half say so (a `delayed` update with a new date), half simply go quiet
SPLIT_RATE = 0.04  # orders of several lines that ship in two parcels
ON_TIME, DELAYED, SILENT, ATTEMPTED, LOST = "on_time", "delayed", "silent", "attempted", "lost"
PROBLEM_STATUSES = frozenset({"attempted_delivery", "delayed", "exception", "returned_to_sender"})


def parcel_story(rng: random.Random) -> str:
    roll = rng.random()
    if roll < LOST_RATE:
        return LOST
    if roll < LOST_RATE + ATTEMPT_RATE:
        return ATTEMPTED
    if roll < LOST_RATE + ATTEMPT_RATE + DELAY_RATE:
        return DELAYED if rng.random() < 0.5 else SILENT
    return ON_TIME


def parcel_updates(
    persona: Persona, order_id: str, n: int, shipped: datetime, rng: random.Random
) -> list[dict]:
    """One parcel, id ``demo:{order}:{n}``, as its carrier reports it: 3-4 updates.

    The label is made at `shipped` (working hours), the first scan a few hours later; the
    carrier plans the delivery 1-3 days after the label's day and promises a day (an evening
    in the customer's time zone, 0-2 days of slack over the plan). Most parcels come on time
    (out for delivery that morning when the trip takes three days, so no parcel on time is
    3 days without a word: stalled); the rest follow `parcel_story`."""
    story = parcel_story(rng)
    carrier = rng.choice(_CARRIERS[persona.country])
    number, url = _tracking(carrier, persona.country, rng)
    parcel = {"id": f"demo:{order_id}:{n}", "carrier": carrier, "tracking_number": number,
              "tracking_url": url, "destination_country": persona.country}
    scanned = _utc(shipped) + timedelta(minutes=rng.randint(120, 480))
    trip = rng.choices((1, 2, 3), weights=(35, 45, 20))[0]
    planned = _business_hours(shipped, trip, persona, rng)  # days after the label's
    promise = _local_at(planned, rng.choices((0, 1, 2), weights=(55, 35, 10))[0], 20, persona)
    steps: list[tuple[str, datetime, datetime, str | None]] = [
        ("label_created", _utc(shipped), promise, None),
        ("in_transit", scanned, promise, None)]
    if story == LOST:
        gave_up = scanned + timedelta(days=rng.randint(8, 14), minutes=rng.randint(0, 480))
        steps.append(("exception", gave_up, promise, "lost"))
    elif story == ATTEMPTED:
        steps.append(("attempted_delivery", planned, promise, None))
        steps.append(("delivered", _business_hours(planned, rng.randint(1, 2), persona, rng),
                      promise, None))
    elif story in (DELAYED, SILENT):
        late_by = rng.randint(2, 4)
        if story == DELAYED:  # the morning it was due, the carrier owns up and names a new day
            revised = promise + timedelta(days=late_by)
            steps.append(("delayed", _local_at(planned, 0, 7, persona, rng), revised, None))
        else:
            revised = promise
        steps.append(("delivered", _business_hours(promise, late_by, persona, rng), revised,
                       None))
    else:
        if trip >= 3:
            steps.append(("out_for_delivery", _local_at(planned, 0, 7, persona, rng), promise,
                          None))
        steps.append(("delivered", planned, promise, None))
    words = _CARRIER_WORDS[_LANGUAGE_OF[persona.country]]
    return [_parcel_update(persona, order_id, parcel, status, when, estimate, words[status], raw)
            for status, when, estimate, raw in steps]


def _parcel_update(persona: Persona, order_id: str, parcel: dict, status: str, when: datetime,
                   estimate: datetime, message: str, raw_status: str | None) -> dict:
    happened = _local_iso(when, persona.timezone)
    shipment = {**parcel, "status": status, "message": message, "happened_at": happened,
                "estimated_delivery_at": _local_iso(estimate, persona.timezone)}
    if raw_status is not None:
        shipment["raw_status"] = raw_status
    return {
        "id": f"evt-{parcel['id']}-{status}",
        "type": "shipment.updated",
        "occurred_at": happened,
        "customer": {"id": persona.customer_id},
        "order": {"id": order_id},
        "shipment": shipment,
    }


def delivery_problems(events: list[dict]) -> dict[str, datetime]:
    """When each order's delivery went wrong as its customer saw it, read from the carriers'
    updates alone: the first problem status (delayed, attempted delivery, exception, returned),
    or the first promised time passing with the parcel not delivered. Orders delivered on time
    are absent."""
    parcels: dict[str, list[dict]] = {}
    for event in events:
        if event["type"] == "shipment.updated":
            parcels.setdefault(event["shipment"]["id"], []).append(event)
    problems: dict[str, datetime] = {}
    for updates in parcels.values():
        updates = sorted(updates, key=_happened)
        promise = datetime.fromisoformat(updates[0]["shipment"]["estimated_delivery_at"])
        delivered = next((_happened(u) for u in updates
                          if u["shipment"]["status"] == "delivered"), None)
        moments = [_happened(u) for u in updates if u["shipment"]["status"] in PROBLEM_STATUSES]
        if delivered is None or delivered > promise:
            moments.append(_utc(promise))
        if moments:
            order = updates[0]["order"]["id"]
            problems[order] = min(problems.get(order, min(moments)), min(moments))
    return problems


def _happened(event: dict) -> datetime:
    return datetime.fromisoformat(event["shipment"]["happened_at"]).astimezone(UTC)


def _local_at(when: datetime, days: int, hour: int, persona: Persona,
              rng: random.Random | None = None) -> datetime:
    """`days` calendar days after `when` where the customer is, at `hour` o'clock local time
    (plus up to two hours when a generator is given: a van leaves between 7 and 9)."""
    zone = _zone(persona.timezone)
    day = _utc(when).astimezone(zone).date() + timedelta(days=days)
    moment = datetime.combine(day, time(hour), tzinfo=zone)
    if rng is not None:
        moment += timedelta(minutes=rng.randint(0, 119))
    return moment.astimezone(UTC)


_LANGUAGE_OF = {"GB": "en", "US": "en", "TR": "tr", "PL": "pl"}
# What the carriers write, in the destination's language (their tracking pages' own words).
_CARRIER_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "label_created": "Shipping label created, awaiting item",
        "in_transit": "Your item is on its way: departed from the sorting facility",
        "out_for_delivery": "Out for delivery today",
        "attempted_delivery": "We tried to deliver your item but nobody was in. "
                              "We will try again on the next working day.",
        "delayed": "Your item is delayed due to high volumes in our network. "
                   "We are sorry for the inconvenience.",
        "exception": "We are unable to locate your item. Please contact the sender.",
        "delivered": "Delivered",
    },
    "tr": {
        "label_created": "Gönderi kaydı oluşturuldu, kargo teslim alınmayı bekliyor",
        "in_transit": "Kargonuz transfer merkezinden çıkış yaptı",
        "out_for_delivery": "Kargonuz dağıtıma çıkarıldı",
        "attempted_delivery": "Alıcı adreste bulunamadı, bir sonraki iş günü tekrar "
                              "teslim edilmeye çalışılacak.",
        "delayed": "Yoğunluk nedeniyle gönderinizin tesliminde gecikme yaşanmaktadır.",
        "exception": "Gönderiniz kayıp. Lütfen gönderici ile iletişime geçiniz.",
        "delivered": "Teslim edildi",
    },
    "pl": {
        "label_created": "Przesyłka przygotowana przez Nadawcę",
        "in_transit": "Przesyłka w drodze: wyjechała z sortowni",
        "out_for_delivery": "Wydana do doręczenia",
        "attempted_delivery": "Nieudana próba doręczenia: adresat nieobecny. Ponowimy "
                              "doręczenie w następnym dniu roboczym.",
        "delayed": "Opóźnienie w doręczeniu z powodu dużej liczby przesyłek. "
                   "Przepraszamy za utrudnienia.",
        "exception": "Przesyłka zaginęła. Prosimy o kontakt z Nadawcą.",
        "delivered": "Dostarczona",
    },
}  # fmt: skip


_CARRIERS = {
    "GB": ("Royal Mail", "UPS"),
    "US": ("UPS", "USPS"),
    "TR": ("Yurtiçi Kargo", "Aras Kargo"),
    "PL": ("InPost", "DPD"),
}
_UPS_CHARS = "0123456789ABCDEFGHJKLMNPRSTVWXYZ"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _tracking(carrier: str, country: str, rng: random.Random) -> tuple[str, str]:
    """Tracking numbers and links shaped like each carrier's real ones."""
    if carrier == "Royal Mail":
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
        number = f"{letters}{_digits(rng, 9)}GB"
        return number, f"https://www.royalmail.com/track-your-item#/tracking-results/{number}"
    if carrier == "UPS":
        number = "1Z" + "".join(rng.choice(_UPS_CHARS) for _ in range(16))
        return number, f"https://www.ups.com/track?loc=en_{country}&tracknum={number}"
    if carrier == "USPS":
        number = "9400" + _digits(rng, 18)
        return number, f"https://tools.usps.com/go/TrackConfirmAction?tLabels={number}"
    if carrier == "Yurtiçi Kargo":
        number = _digits(rng, 12)
        return (
            number,
            f"https://www.yurticikargo.com/tr/online-servisler/gonderi-sorgula?code={number}",
        )
    if carrier == "Aras Kargo":
        number = _digits(rng, 13)
        return number, f"https://kargotakip.araskargo.com.tr/mainpage.aspx?code={number}"
    if carrier == "InPost":
        number = _digits(rng, 24)
        return number, f"https://inpost.pl/sledzenie-przesylek?number={number}"
    number = f"{_digits(rng, 13)}U"  # DPD Polska
    return number, f"https://tracktrace.dpd.com.pl/parcelDetails?typ=1&p1={number}"


# ---------------------------------------------------------------------------------------------
# Time helpers


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _event_instant(event: dict) -> datetime:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_iso(when: datetime, timezone: str) -> str:
    """ISO 8601 in the customer's own offset, whole seconds (as a shop platform sends it)."""
    return _utc(when).replace(microsecond=0).astimezone(_zone(timezone)).isoformat()


def _daytime(instant: datetime, persona: Persona, rng: random.Random) -> datetime:
    """People mostly shop awake: a night-time order moves to the next morning (some stay)."""
    local = instant.astimezone(_zone(persona.timezone))
    if local.hour >= 8 or rng.random() < 0.08:
        return instant
    return instant + timedelta(hours=8 - local.hour, minutes=rng.randint(0, 180))


def _business_hours(after: datetime, days: int, persona: Persona, rng: random.Random) -> datetime:
    """`days` calendar days later where the customer is (DST-proof), during the working day:
    carriers scan parcels between 9:00 and 18:00 local time."""
    zone = _zone(persona.timezone)
    day = _utc(after).astimezone(zone).date() + timedelta(days=days)
    opening = datetime.combine(day, time(9), tzinfo=zone)
    moment = opening + timedelta(minutes=rng.randint(0, 9 * 60), seconds=rng.randint(0, 59))
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Personas


@dataclass(frozen=True)
class _Market:
    country: str
    weight: float
    locales: tuple[str, ...]  # repeated entries weight the short form
    timezones: tuple[tuple[str, float], ...]


# ~45% English (GB/US), 30% Turkish, 25% Polish.
_MARKETS = (
    _Market("GB", 0.25, ("en", "en", "en", "en-GB"), (("Europe/London", 1.0),)),
    _Market(
        "US",
        0.20,
        ("en", "en", "en-US"),
        (("America/New_York", 0.5), ("America/Chicago", 0.3), ("America/Los_Angeles", 0.2)),
    ),
    _Market("TR", 0.30, ("tr", "tr", "tr", "tr-TR"), (("Europe/Istanbul", 1.0),)),
    _Market("PL", 0.25, ("pl", "pl", "pl", "pl-PL"), (("Europe/Warsaw", 1.0),)),
)


@dataclass(frozen=True)
class _Profile:
    """How an archetype is drawn: Beta(a, b) parameters and purchase rhythm."""

    weight: float
    satisfaction: tuple[float, float]
    responsiveness: tuple[float, float]
    reorder: tuple[float, float]
    reorder_days: tuple[float, float] | None  # organic reorder interval range, None = no rhythm
    prior_chance: float  # chance of an order shortly before the first one in the window
    code_chance: float  # chance each order carries a discount code


_PROFILES = {
    "one_off": _Profile(0.40, (3.0, 2.0), (2.5, 4.0), (1.0, 12.0), None, 0.0, 0.08),
    "loyal": _Profile(0.22, (8.0, 1.5), (5.0, 3.0), (7.0, 3.0), (21, 42), 0.35, 0.06),
    "vip": _Profile(0.07, (9.0, 1.2), (5.0, 3.0), (8.0, 2.5), (18, 40), 0.5, 0.03),
    "bargain": _Profile(0.13, (4.0, 2.0), (4.0, 4.0), (5.0, 5.0), (25, 50), 0.3, 0.85),
    "lapsing": _Profile(0.18, (2.2, 2.2), (2.0, 4.5), (1.5, 8.0), None, 0.0, 0.1),
}
_DISCOUNT_CODES = ("SPRING15", "FLASH20", "SAVE10", "BUNDLE10", "FREESHIP", "WEEKEND25")


def _personas(count: int, rng: random.Random) -> list[Persona]:
    used: set[str] = set()  # emails and phones, so no two customers share an address
    return [_persona(f"c-{i:05d}", rng, used) for i in range(1, count + 1)]


def _persona(customer_id: str, rng: random.Random, used: set[str]) -> Persona:
    market = rng.choices(_MARKETS, weights=[m.weight for m in _MARKETS])[0]
    zones = market.timezones
    timezone = rng.choices([z for z, _ in zones], weights=[w for _, w in zones])[0]
    archetype = rng.choices(ARCHETYPES, weights=[_PROFILES[a].weight for a in ARCHETYPES])[0]
    profile = _PROFILES[archetype]
    locale = rng.choice(market.locales)
    first, last = _name(locale.split("-")[0], rng)
    email, phone, consent = _contacts(first, last, market.country, rng, used)
    return Persona(
        customer_id=customer_id,
        locale=locale,
        country=market.country,
        timezone=timezone,
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        consent=consent,
        archetype=archetype,
        satisfaction=round(rng.betavariate(*profile.satisfaction), 3),
        responsiveness=round(rng.betavariate(*profile.responsiveness), 3),
        reorder_propensity=round(rng.betavariate(*profile.reorder), 3),
        order_updates=_order_updates(customer_id, phone),
    )


def _order_updates(customer_id: str, phone: str | None) -> dict[str, bool]:
    """~60% of customers with a phone ask for order updates by SMS, ~35% by WhatsApp. Drawn
    from their own generator, so adding this changed no other draw of a seeded shop."""
    if phone is None:
        return {"sms": False, "whatsapp": False}
    rng = random.Random(f"order-updates:{customer_id}:{phone}")
    return {"sms": rng.random() < 0.60, "whatsapp": rng.random() < 0.35}


_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # language: (female first names, male first names, last names)
    "en": (
        ("Olivia", "Amelia", "Isla", "Emily", "Sophie", "Grace", "Charlotte", "Hannah", "Chloe",
         "Lucy", "Emma", "Ava", "Mia", "Abigail", "Madison", "Harper", "Ella", "Megan"),
        ("Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "James",
         "William", "Liam", "Ethan", "Michael", "Daniel", "Samuel", "Henry", "Owen", "Ryan"),
        ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
         "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
         "Wood", "Jackson", "Clarke", "Miller", "Davis", "Garcia", "Martinez", "Anderson",
         "Moore", "Lee", "Harris", "Lewis", "Young", "King", "Scott", "Baker", "Hughes", "Patel",
         "Khan", "O'Connor", "Murphy", "Campbell"),
    ),
    "tr": (
        ("Ayşe", "Fatma", "Zeynep", "Elif", "Emine", "Hülya", "Gülşen", "Şule", "Özge", "Çağla",
         "Büşra", "Ilgın", "Nazlı", "Sıla", "Gökçe", "Dilara", "Merve", "Tuğba", "Şebnem",
         "Yağmur", "Irmak", "Öykü", "Ümran", "İpek"),
        ("Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Hasan", "İbrahim", "Murat", "Ömer",
         "Barış", "Oğuz", "Çağrı", "Gökhan", "Doğan", "Ümit", "Serkan", "Emre", "Burak",
         "Tolga", "Kıvanç", "Onur", "Uğur", "İsmail", "Şükrü"),
        ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın",
         "Özdemir", "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara", "Koç", "Kurt",
         "Özkan", "Şimşek", "Güneş", "Erdem", "Aksoy", "Polat", "Korkmaz", "Çakır", "Taş",
         "Acar", "Bulut", "Güler", "Işık", "Tekin", "Ünal", "Gündoğdu", "Avcı", "Sarıkaya",
         "Bozkurt", "Uçar"),
    ),
    "pl": (
        ("Anna", "Maria", "Katarzyna", "Małgorzata", "Agnieszka", "Barbara", "Ewa", "Krystyna",
         "Elżbieta", "Zofia", "Joanna", "Magdalena", "Dorota", "Grażyna", "Bożena", "Jolanta",
         "Żaneta", "Łucja", "Urszula", "Alicja", "Wiktoria", "Zuzanna", "Jadwiga"),
        ("Piotr", "Krzysztof", "Andrzej", "Tomasz", "Paweł", "Michał", "Łukasz", "Marcin",
         "Grzegorz", "Józef", "Jędrzej", "Wojciech", "Stanisław", "Zbigniew", "Mikołaj",
         "Bartłomiej", "Maciej", "Sławomir", "Jakub", "Kacper", "Dawid", "Przemysław"),
        # the masculine form; _polish_surname gives the feminine one (-ski -> -ska)
        ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
         "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Jankowski", "Mazur",
         "Wojciechowski", "Kwiatkowski", "Krawczyk", "Kaczmarek", "Piotrowski", "Grabowski",
         "Zając", "Pawłowski", "Michalski", "Król", "Wieczorek", "Jabłoński", "Wróbel",
         "Majewski", "Stępień", "Małecki", "Górski", "Sikora", "Bąk", "Sokołowski",
         "Kaźmierczak", "Głowacki", "Ziółkowski", "Czarnecki", "Przybylski", "Żak"),
    ),
}  # fmt: skip


def _name(language: str, rng: random.Random) -> tuple[str, str]:
    female_names, male_names, last_names = _NAMES[language]
    female = rng.random() < 0.5
    first = rng.choice(female_names if female else male_names)
    last = rng.choice(last_names)
    if language == "pl" and female:
        last = _polish_surname(last)
    return first, last


def _polish_surname(masculine: str) -> str:
    """Polish adjectival surnames agree in gender: Kowalski -> Kowalska, Czarnecki -> Czarnecka."""
    return masculine[:-1] + "a" if masculine.endswith("ki") else masculine


_FOLD = str.maketrans({"ı": "i", "İ": "I", "ł": "l", "Ł": "L"})  # letters NFKD cannot strip


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _contacts(
    first: str, last: str, country: str, rng: random.Random, used: set[str]
) -> tuple[str | None, str | None, dict[str, bool]]:
    """Addresses and consent: ~70% email, ~50% sms, ~40% whatsapp consent; everyone has at
    least one consented, reachable channel except ~3% who have none (the engine skips them)."""
    roll = rng.random()
    email = _email(first, last, rng, used) if roll >= 0.06 else None  # 6% phone-only
    phone = _phone(country, rng, used) if roll < 0.06 or roll >= 0.18 else None  # 12% email-only
    if rng.random() < 0.03:
        return email, phone, {"email": False, "sms": False, "whatsapp": False}
    consent = {
        "email": email is not None and rng.random() < 0.70,
        "sms": phone is not None and rng.random() < 0.56,
        "whatsapp": phone is not None and rng.random() < 0.45,
    }
    if not any(consent.values()):
        # they opted in to something at checkout, or the shop could not message them at all
        consent["email" if email is not None else "sms"] = True
    return email, phone, consent


_DOMAINS = ("example.com", "example.org", "example.net")


def _email(first: str, last: str, rng: random.Random, used: set[str]) -> str:
    f, surname = _ascii(first), _ascii(last)
    local = rng.choice((f"{f}.{surname}", f"{f}{surname}", f"{f[0]}{surname}", f"{f}.{surname[0]}"))
    address = f"{local}@{rng.choice(_DOMAINS)}"
    while address in used:  # namesakes get a number, as real mailbox providers force
        address = f"{local}{rng.randint(1, 9999)}@{rng.choice(_DOMAINS)}"
    used.add(address)
    return address


@cache
def _phone_stem(country: str) -> str:
    """The region's example mobile number without its last 4 digits."""
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None, country  # the demo's countries all have one
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[:-4]


def _phone(country: str, rng: random.Random, used: set[str]) -> str:
    """A valid mobile number for the country: the example number with new last 4 digits."""
    stem = _phone_stem(country)
    while True:
        candidate = f"{stem}{rng.randint(0, 9999):04d}"
        if candidate not in used and phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            used.add(candidate)
            return candidate


# ---------------------------------------------------------------------------------------------
# Purchase histories


@dataclass
class _Plan:
    """An order before it has an id (ids follow placement time, as a shop numbers them)."""

    persona: Persona
    placed: datetime  # UTC
    items: list[dict]
    discount_codes: list[str]
    referral_code: str | None = None
    first_ever: bool = False


def _history(persona: Persona, start: datetime, end: datetime, rng: random.Random) -> list[_Plan]:
    times = _purchase_times(persona, start, end, rng)
    profile = _PROFILES[persona.archetype]
    currency = currency_for(persona.country)
    plans = []
    for n, placed in enumerate(times):
        codes = [rng.choice(_DISCOUNT_CODES)] if rng.random() < profile.code_chance else []
        if n == 0 and not codes and rng.random() < 0.12:
            codes = ["WELCOME10"]  # first-order welcome code, used by some of everyone
        plans.append(_Plan(persona, placed, basket(persona, rng, currency), codes, None, n == 0))
    return plans


def _purchase_times(
    persona: Persona, start: datetime, end: datetime, rng: random.Random
) -> list[datetime]:
    """Every order a persona places: optional history before the window, a first order in the
    window, then organic reorders on the archetype's rhythm while the window lasts."""
    profile = _PROFILES[persona.archetype]
    first = _in_window(start, end, persona, rng)
    times = _earlier_orders(persona, first, start, rng)
    times.append(first)
    if profile.reorder_days is not None:
        lo, hi = profile.reorder_days
        # keen re-buyers come back sooner
        every = hi - (hi - lo) * persona.reorder_propensity
        moment = _next_order(first, every, persona, rng)
        while moment <= end:
            times.append(moment)
            moment = _next_order(moment, every, persona, rng)
    elif rng.random() < persona.reorder_propensity:
        # the odd one-off or lapsing customer buys again unprompted: the holdout's baseline
        again = _daytime(first + timedelta(days=rng.uniform(20, 90)), persona, rng)
        if again <= end:
            times.append(again)
    return times


def _earlier_orders(
    persona: Persona, first: datetime, start: datetime, rng: random.Random
) -> list[datetime]:
    """History that gives the first in-window order its segment."""
    profile = _PROFILES[persona.archetype]
    if persona.archetype == "lapsing":
        # 95-400 days before the order in the window, and before `start`: at_risk
        into_window = (first - start).days
        gap = rng.uniform(max(1, 95 - into_window), HISTORY_DAYS - 1)
        previous = _daytime(start - timedelta(days=gap), persona, rng)
        earlier = [previous]
        older = previous - timedelta(days=rng.uniform(30, 150))
        if rng.random() < 0.35 and older > start - timedelta(days=HISTORY_DAYS):
            earlier.insert(0, older)
        return earlier
    if rng.random() < profile.prior_chance:
        # a recent previous order (well within 90 days): repeat or vip from the start
        return [_daytime(first - timedelta(days=rng.uniform(20, 75)), persona, rng)]
    return []


def _in_window(start: datetime, end: datetime, persona: Persona, rng: random.Random) -> datetime:
    """First orders spread evenly over the window, at waking hours; always inside it."""
    span = int((end - start).total_seconds())
    raw = start + timedelta(seconds=rng.randint(1, max(1, span)))
    moved = _daytime(raw, persona, rng)
    if moved > end:
        moved -= timedelta(days=1)
    return moved if start < moved <= end else raw


def _next_order(after: datetime, every: float, persona: Persona, rng: random.Random) -> datetime:
    days = max(7.0, rng.gauss(every, every * 0.25))
    return _daytime(after + timedelta(days=days, minutes=rng.randint(-600, 600)), persona, rng)


def _assign_referrals(plans: list[_Plan], rng: random.Random) -> None:
    """Some brand-new customers arrive with a happy customer's referral code;
    the referrer must have bought before the referred customer's first order."""
    firsts = sorted(
        (p.placed, p.persona.customer_id)
        for p in plans
        if p.first_ever
        and p.persona.archetype in ("loyal", "vip", "bargain")
        and p.persona.satisfaction >= 0.7
    )
    for plan in plans:
        if not plan.first_ever or plan.persona.archetype == "lapsing" or rng.random() >= 0.12:
            continue
        eligible = bisect_left(firsts, (plan.placed - timedelta(days=1), ""))
        if eligible == 0:
            continue
        referrer = firsts[rng.randrange(eligible)][1]
        if referrer != plan.persona.customer_id:
            plan.referral_code = referral_code(referrer)


# ---------------------------------------------------------------------------------------------
# The shop


def build_shop(
    customers: int = 2000, days: int = 120, seed: int = 7, start: datetime | None = None
) -> SyntheticShop:
    """Build the shop. Independent random streams per phase keep personas stable when the
    order logic changes, and make the result depend on nothing but the arguments."""
    start = _utc(start or DEFAULT_START)
    end = start + timedelta(days=days)
    personas = _personas(customers, _stream(seed, "personas"))
    orders_rng = _stream(seed, "orders")
    plans = [plan for p in personas for plan in _history(p, start, end, orders_rng)]
    _assign_referrals(plans, _stream(seed, "referrals"))
    plans.sort(key=lambda p: (p.placed, p.persona.customer_id))
    events = _events(plans, end, _stream(seed, "fulfilment"))
    return SyntheticShop(
        start=start,
        days=days,
        personas={p.customer_id: p for p in personas},
        events=events,
        order_count=len(plans),
    )


def _stream(seed: int, phase: str) -> random.Random:
    return random.Random(f"aftersale-demo:{seed}:{phase}")


def _events(plans: list[_Plan], end: datetime, rng: random.Random) -> list[dict]:
    timed: list[tuple[datetime, str, dict]] = []
    for seq, plan in enumerate(plans, start=1):
        order_id = f"o-{seq:06d}"
        placed = order_event(
            plan.persona,
            order_id,
            f"#{1000 + seq}",
            plan.placed,
            plan.items,
            currency_for(plan.persona.country),
            plan.discount_codes,
            plan.referral_code,
            f"evt-{order_id}-placed",
        )
        later = fulfilment_events(plan.persona, order_id, plan.placed, rng, len(plan.items))
        for event in (placed, *later):
            instant = _event_instant(event)
            if instant <= end:
                timed.append((instant, event["id"], event))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [event for _, _, event in timed]
