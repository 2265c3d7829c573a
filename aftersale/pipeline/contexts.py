"""Build what the pure engine and the segment rules read, from database rows.

This is the one place that turns rows into condition contexts, so ``customer.orders_count``
means the same in a segment rule, a ``when`` and a preview.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.clock import as_utc
from aftersale.core.delivery_clock import StallDefaults
from aftersale.core.events import Event, EventType
from aftersale.core.journeys.engine import Facts
from aftersale.core.journeys.model import Journey
from aftersale.core.segment_rules import OrderFact, SegmentSet, customer_facts
from aftersale.core.shipments import FINAL_STATUSES, is_international
from aftersale.db.models import Customer, Enrollment, Order, Shipment, SurveyResponse

PURCHASE_STATUSES = ("placed", "shipped", "delivered")


def order_context(order: Order, segments: SegmentSet | None = None,
                  is_first: bool | None = None, has_guide: bool | None = None) -> dict[str, Any]:
    # Prices are stored as JSON strings ("129.90"); templates get Decimals, as for the total
    # and as `aftersale validate`'s sample order has them, so `sum(attribute='price')` that
    # passed validation works on a real order too.
    items = [_priced(i) for i in order.items or []]
    categories = {str(i.get("category", "")).lower() for i in items}
    skus = {str(i.get("sku", "")).upper() for i in items}
    codes = {str(c).upper() for c in order.discount_codes or []}
    return {
        "id": order.id,
        "number": order.number or order.id,
        "total": order.total,
        "currency": order.currency,
        "placed_at": order.placed_at,
        "status": order.status,
        "items": items,
        "item_count": sum(int(i.get("quantity", 1)) for i in items),
        "discount_used": bool(codes),
        "is_first_order": is_first,
        "has_guide": has_guide,
        # any parcel of it delayed, stalled, late, attempted, failed or returned
        "had_delivery_problem": order.delivery_problem_at is not None,
        "total_in_reporting_currency": (
            float(segments.to_reporting(order.total, order.currency) or 0) if segments else None
        ),
        "tracking": (
            {"carrier": order.carrier, "number": order.tracking_number, "url": order.tracking_url}
            if order.tracking_number or order.tracking_url else None
        ),
        "has_category": lambda name: str(name).lower() in categories,
        "has_sku": lambda sku: str(sku).upper() in skus,
        "has_discount_code": lambda code: str(code).upper() in codes,
    }


def shipment_context(shipment: Shipment, moment: str | None, now: datetime,
                     shop_country: str | None = None) -> dict[str, Any]:
    """The parcel a shipment journey is about, for its conditions (``shipment.*``) and its
    messages. ``moment``: what started the enrollment (:func:`shipment_moment`), such as
    ``in_transit``, ``stalled:3`` or ``late:2026-03-05``."""
    estimate = shipment.first_estimated_delivery_at or shipment.estimated_delivery_at
    until = shipment.delivered_at or now
    kind = moment.split(":")[0] if moment else None
    # A late moment is about the date it missed; a later estimate is the new date (a message
    # must never promise the date that already passed).
    missed = (shipment.late_for or shipment.first_estimated_delivery_at) if kind == "late" else None
    latest = shipment.estimated_delivery_at
    new_estimate = (latest if latest is not None and (kind != "late" or (
        missed is not None and as_utc(latest) > as_utc(missed))) else None)
    return {
        "id": shipment.id,
        "status": shipment.status,
        "raw_status": shipment.raw_status,
        # the kind of moment: the status, "stalled" or "late" (the entry key has the detail)
        "moment": kind,
        "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number,
        "tracking_url": shipment.tracking_url,
        "destination_country": shipment.destination_country,
        "is_international": is_international(shipment.destination_country, shop_country),
        "estimated_delivery_at": shipment.estimated_delivery_at,
        "first_estimated_delivery_at": shipment.first_estimated_delivery_at,
        "has_estimate": shipment.estimated_delivery_at is not None,
        "missed_date": missed,  # late moments: the estimated date that passed
        "new_estimate": new_estimate,  # the estimate still to come, if the carrier gave one
        # calendar days past the first promised date (0 on time), None without a promise
        "days_late": (None if estimate is None
                      else max(0, (until.date() - estimate.date()).days)),
        "days_since_update": max(0, (now - shipment.last_update_at).days),
        "last_message": shipment.last_message,
        "status_at": shipment.status_at,
        "last_update_at": shipment.last_update_at,
        "shipped_at": shipment.shipped_at,
        "delivered_at": shipment.delivered_at,
    }


SHIPMENT_KEY = "shipment:{id}:{moment}"
# enrollments.entry_key is 140 characters; a shipment id may be 128: a long one is keyed by
# its hash (the moment, at most 18 characters, must still fit beside it).
_LONGEST_KEYED_ID = 100


def shipment_entry_key(shipment_id: str, moment: str) -> str:
    """The entry key of a shipment journey's enrollment: once per parcel and moment."""
    return SHIPMENT_KEY.format(id=_keyed_id(shipment_id), moment=moment)


def _keyed_id(shipment_id: str) -> str:
    if len(shipment_id) <= _LONGEST_KEYED_ID:
        return shipment_id
    return "sha256-" + hashlib.sha256(shipment_id.encode()).hexdigest()[:40]


def stall_threshold(event: Event) -> int | None:
    """The business days of silence a ``shipment.stalled`` was derived for: the clock check
    raises one per threshold in use (``shipment.stalled_after``; an event with only
    ``days_silent`` was derived for that)."""
    extra = (event.shipment.model_extra or {}) if event.shipment else {}
    days = extra.get("stalled_after", extra.get("days_silent"))
    return None if days is None else int(days)


def shipment_moment(event: Event, shipment: Shipment | None) -> str | None:
    """The moment of a parcel a shipment event is: its status for ``shipment.updated``,
    ``stalled`` (``stalled:N`` when derived for a threshold of N business days) or
    ``late:YYYY-MM-DD`` (per estimated date). None: not a shipment event, or an update that
    did not become the parcel's status (an older scan arriving late is no new moment)."""
    data = event.shipment
    if data is None or data.id is None:
        return None
    if event.type == EventType.SHIPMENT_UPDATED:
        if data.status is None or (shipment is not None and shipment.status != data.status):
            return None
        return str(data.status)
    extra = data.model_extra or {}
    if shipment is not None and (shipment.delivered_at is not None
                                 or shipment.status in FINAL_STATUSES):
        return None  # stalled or late, then delivered or returned before it was applied
    if event.type == EventType.SHIPMENT_STALLED:
        since = extra.get("silent_since")
        if (shipment is not None and since is not None
                and as_utc(shipment.last_update_at) > datetime.fromisoformat(str(since))):
            return None  # the carrier spoke again before the stall was applied
        days = stall_threshold(event)
        return "stalled" if days is None else f"stalled:{days}"
    if event.type == EventType.SHIPMENT_LATE:
        day = (data.model_extra or {}).get("late_for")  # the local date the clock judged
        estimate = data.estimated_delivery_at or (shipment.late_for if shipment else None)
        if day is None and estimate is not None:
            day = estimate.date().isoformat()
        return "late" if day is None else f"late:{day}"
    return None


def stall_concerns(journey: Journey, event: Event, international: bool | None,
                   default: StallDefaults | None = None) -> bool:
    """Whether a ``shipment.stalled`` event starts this journey. The clock check derives one
    per threshold in use (:func:`stall_threshold`): a journey with ``stalled_after`` for the
    parcel's side (domestic or international, as ``shipment.is_international`` says) takes the
    event of its own threshold, the others the settings' one (``default``, or the event's
    ``shop_threshold`` flag). An event without a threshold (one for all) starts them all."""
    days = stall_threshold(event)
    if event.type != EventType.SHIPMENT_STALLED or days is None:
        return True
    extra = (event.shipment.model_extra or {}) if event.shipment else {}
    abroad = bool(extra.get("is_international", international))
    own = journey.stalled_after.days(abroad) if journey.stalled_after else None
    if own is not None:
        return own == days
    if "shop_threshold" in extra:
        return bool(extra["shop_threshold"])
    settings = default.days(abroad) if default is not None else None
    return settings is None or settings == days


def moment_of_entry(entry_key: str | None, shipment_id: str) -> str | None:
    """The moment an enrollment's entry key (``shipment:{id}:{moment}``) names, if any."""
    prefix = shipment_entry_key(shipment_id, "")
    if entry_key is None or not entry_key.startswith(prefix):
        return None
    return entry_key[len(prefix):] or None


def _priced(item: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**item, "price": Decimal(str(item["price"]))}
    except (KeyError, InvalidOperation):  # an item stored before prices were checked
        return item


def customer_context(customer: Customer) -> dict[str, Any]:
    locale = customer.locale or ""
    return {
        "id": customer.id,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "email": customer.email,
        "phone": customer.phone,
        "locale": customer.locale,
        "language": locale.replace("_", "-").split("-")[0].lower() or None,
        "country": customer.country,
        "timezone": customer.timezone,
        "has_email": bool(customer.email),
        "has_phone": bool(customer.phone),
    }


def purchase_history(session: Session, customer_id: str) -> list[Order]:
    """Orders that count as purchases, oldest first (cancelled and refunded ones do not)."""
    return purchases_among(session.scalars(select(Order).where(Order.customer_id == customer_id)))


def purchases_among(orders: Iterable[Order]) -> list[Order]:
    """The purchases among orders already loaded, oldest first (ties by id)."""
    return sorted((o for o in orders if o.status in PURCHASE_STATUSES),
                  key=lambda o: (o.placed_at, o.id))


class LazyFacts(Mapping[str, Any]):
    """Fields known at once, plus history fields loaded by one query on first use: most
    engine steps (a wait, a send without ``when``) never read the history."""

    def __init__(self, known: dict[str, Any], load: Callable[[], dict[str, Any]]):
        self._known, self._load, self._loaded = known, load, False

    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._known.update(self._load())

    def __getitem__(self, key: str) -> Any:
        if key not in self._known:
            self._ensure()
        return self._known[key]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(self._known)

    def __len__(self) -> int:
        self._ensure()
        return len(self._known)


def history_facts(session: Session, customer: Customer, order: Order | None,
                  segments: SegmentSet, now: datetime, history: list[Order] | None = None
                  ) -> tuple[dict[str, Any], bool]:
    """``customer.*`` history fields as of ``order``, and whether it is their first order.
    ``history``: their :func:`purchase_history`, when the caller has it already."""
    if history is None:
        history = purchase_history(session, customer.id)
    facts = [OrderFact(o.placed_at, Decimal(o.total), o.currency, bool(o.discount_codes))
             for o in history]
    index = next((i for i, o in enumerate(history) if order and o.id == order.id), len(history) - 1)
    if not facts or index < 0:
        return {"orders_count": 0, "total_spent": 0.0}, False
    return customer_facts(facts, index, segments, now), index == 0


def segment_context(session: Session, customer: Customer, order: Order | None,
                    segments: SegmentSet, now: datetime, history: list[Order] | None = None
                    ) -> dict[str, Any]:
    facts, is_first = history_facts(session, customer, order, segments, now, history)
    context: dict[str, Any] = {"customer": customer_context(customer) | facts}
    if order is not None:
        context["order"] = order_context(order, segments, is_first=is_first)
    return context


def responses_by_customer(session: Session, customer_ids: set[str]
                          ) -> dict[str, list[SurveyResponse]]:
    """Every survey answer of these customers, oldest first, in one query."""
    found: dict[str, list[SurveyResponse]] = {cid: [] for cid in customer_ids}
    if customer_ids:
        for answer in session.scalars(
                select(SurveyResponse).where(SurveyResponse.customer_id.in_(customer_ids))
                .order_by(SurveyResponse.responded_at, SurveyResponse.id)):
            found[answer.customer_id].append(answer)
    return found


def enrollment_facts(session: Session, enrollment: Enrollment, customer: Customer,
                     order: Order | None, segments: SegmentSet, now: datetime,
                     answers: list[SurveyResponse], has_guide: bool | None = None,
                     shipment: Shipment | None = None, shop_country: str | None = None,
                     parcels: Iterable[Shipment] = ()) -> Facts:
    """``answers``: the customer's survey answers (see :func:`responses_by_customer`); only
    those given since the enrollment started count for it. ``shipment``: the enrollment's
    parcel (``Enrollment.shipment_id``), for shipment journeys; ``parcels``: the order's
    parcels, for an order journey waiting for a shipment moment (any of them will do)."""
    cache: dict[str, Any] = {}

    def history() -> tuple[dict[str, Any], bool]:
        if "facts" not in cache:
            cache["facts"] = history_facts(session, customer, order, segments, now)
        return cache["facts"]

    context: dict[str, Any] = {
        "customer": LazyFacts(customer_context(customer), lambda: history()[0])}
    if order is not None:
        known = order_context(order, segments) | {"has_guide": has_guide}
        del known["is_first_order"]
        context["order"] = LazyFacts(known, lambda: {"is_first_order": history()[1]})
    context["segment"] = enrollment.segment
    responses = [a for a in answers if a.responded_at >= enrollment.enrolled_at]
    response: dict[str, Any] = {}
    for answer in responses:  # latest answer of each kind wins
        response[answer.kind] = answer.score
        response["comment"] = answer.comment
    context["response"] = response
    seen: dict[str, datetime] = {}
    if order is not None:
        for event, when in (
            (EventType.ORDER_PLACED, order.placed_at),
            (EventType.ORDER_SHIPPED, order.shipped_at),
            (EventType.ORDER_DELIVERED, order.delivered_at),
            (EventType.ORDER_CANCELLED, order.cancelled_at),
            (EventType.ORDER_REFUNDED, order.refunded_at),
        ):
            if when is not None:
                seen[event.value] = when
    if responses:
        seen[EventType.SURVEY_RESPONDED.value] = responses[-1].responded_at
    if shipment is not None:
        context["shipment"] = enrollment_shipment(enrollment, shipment, now, shop_country)
    for parcel in [shipment] if shipment is not None else parcels:
        for moment, when in shipment_seen(parcel).items():
            # Only what happened after it entered: the update that started it is no news.
            if when > enrollment.enrolled_at and when > seen.get(moment, enrollment.enrolled_at):
                seen[moment] = when
    return Facts(context=context, seen=seen)


def enrollment_shipment(enrollment: Enrollment, shipment: Shipment | None, now: datetime,
                        shop_country: str | None) -> dict[str, Any] | None:
    """An enrollment's parcel as its conditions and its messages read it (the moment it
    entered on comes from its entry key)."""
    if shipment is None:
        return None
    return shipment_context(shipment, moment_of_entry(enrollment.entry_key, shipment.id), now,
                            shop_country)


def shipment_seen(shipment: Shipment) -> dict[str, datetime]:
    """When the parcel's moments last happened, for ``wait_for`` (they count only while the
    step waits): its newest carrier update, its stall and its latest late date."""
    seen = {EventType.SHIPMENT_UPDATED.value: shipment.last_update_at}
    late_at = shipment.late_at or shipment.late_for
    for event, when in ((EventType.SHIPMENT_STALLED, shipment.stalled_at),
                        (EventType.SHIPMENT_LATE, late_at)):
        if when is not None:
            seen[event.value] = when
    return seen
