"""Build what the pure engine and the segment rules read, from database rows.

This is the one place that turns rows into condition contexts, so ``customer.orders_count``
means the same in a segment rule, a ``when`` and a preview.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.events import EventType
from aftersale.core.journeys.engine import Facts
from aftersale.core.segment_rules import OrderFact, SegmentSet, customer_facts
from aftersale.db.models import Customer, Enrollment, Order, SurveyResponse

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
                     answers: list[SurveyResponse], has_guide: bool | None = None) -> Facts:
    """``answers``: the customer's survey answers (see :func:`responses_by_customer`); only
    those given since the enrollment started count for it."""
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
    return Facts(context=context, seen=seen)
