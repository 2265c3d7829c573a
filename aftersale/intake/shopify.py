"""Shopify webhooks -> normalized events. Pure code: no I/O, no clock (the caller passes times).

One webhook maps to zero or more :class:`aftersale.core.events.Event`: orders become
``order.placed`` / ``order.cancelled``, refunds ``order.refunded``, the customer consent topics
``consent.changed``, and every carrier moment (``fulfillments/create``,
``fulfillments/update``, ``fulfillment_events/create``) one ``shipment.updated`` of the
shipment ``shopify:{fulfillment id}``. Processing derives ``order.shipped`` and
``order.delivered`` from the shipments, so they are not mapped here.

Since API 2025-01 order payloads carry no marketing consent. An order event then has no
``consent`` at all, so processing keeps the last value the consent topics gave us; treating a
missing value as "no" would unsubscribe every customer with each order.

Shopify carries no order-updates (transactional) opt-in: the checkout's SMS box is marketing
consent (``sms_marketing_consent``), so nothing is mapped to ``consent.order_updates``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from email_validator import EmailNotValidError, validate_email

from aftersale.core.errors import AftersaleError, EventError
from aftersale.core.events import Event, normalize_phone, parse_event
from aftersale.core.shipments import ShipmentStatus
from aftersale.intake.jsonl import LineError, ParsedFile
from aftersale.intake.jsontext import JSONTextError, loads

log = logging.getLogger(__name__)

TOPIC_HEADER = "X-Shopify-Topic"
HMAC_HEADER = "X-Shopify-Hmac-Sha256"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
SHOP_HEADER = "X-Shopify-Shop-Domain"

EMAIL_CONSENT_TOPIC = "customers_email_marketing_consent/update"
SMS_CONSENT_TOPIC = "customers_marketing_consent/update"
# Shopify names the consent topics with an underscore ("customers_email_marketing_consent");
# the slash spellings are accepted too because people (and some docs) write them that way.
TOPIC_ALIASES = {
    "customers/email_marketing_consent/update": EMAIL_CONSENT_TOPIC,
    "customers/marketing_consent/update": SMS_CONSENT_TOPIC,
}

FULFILLMENT_EVENT_TOPIC = "fulfillment_events/create"

#: Shopify's ``shipment_status`` (Fulfillment) and ``status`` (FulfillmentEvent) words, one
#: vocabulary, onto ours. Sources: the REST Fulfillment and FulfillmentEvent resources and the
#: GraphQL ``FulfillmentEventStatus`` enum (DELAYED since 2025-01, CARRIER_PICKED_UP and
#: PICKED_UP in later versions). ``picked_up`` is "the fulfillment was successfully picked up":
#: the customer collected a local-pickup parcel (it follows ``ready_for_pickup``; the carrier
#: collecting it is ``carrier_picked_up``), so it is a delivery. ``returning_to_sender`` is not
#: in Shopify's published enums; issue 17 names it, so it is mapped rather than left unknown.
#: A word not listed becomes ``unknown`` (kept with its word, logged once).
SHIPMENT_STATUSES: dict[str, ShipmentStatus] = {
    "label_printed": ShipmentStatus.LABEL_CREATED,
    "label_purchased": ShipmentStatus.LABEL_CREATED,
    "confirmed": ShipmentStatus.LABEL_CREATED,
    "carrier_picked_up": ShipmentStatus.IN_TRANSIT,
    "in_transit": ShipmentStatus.IN_TRANSIT,
    "delayed": ShipmentStatus.DELAYED,
    "out_for_delivery": ShipmentStatus.OUT_FOR_DELIVERY,
    "attempted_delivery": ShipmentStatus.ATTEMPTED_DELIVERY,
    "ready_for_pickup": ShipmentStatus.READY_FOR_PICKUP,
    "picked_up": ShipmentStatus.DELIVERED,
    "delivered": ShipmentStatus.DELIVERED,
    "failure": ShipmentStatus.EXCEPTION,
    "returning_to_sender": ShipmentStatus.RETURNED_TO_SENDER,
}
# A fulfillment in one of these states did not leave or was withdrawn: its parcel becomes
# ``cancelled`` (kept, no longer counted for the order: a parcel left open would stall, go
# late and keep the order from being delivered). A ``shipment_status`` of ``failure`` is the
# carrier's word and is an ``exception``.
DEAD_FULFILLMENT = frozenset({"cancelled", "error", "failure"})
MAX_EVENT_ID = 200
MAX_MESSAGE = 2000  # the event contract's limit for a carrier's message: longer ones are cut

_CONSENT_STATES: dict[str, bool | None] = {
    "subscribed": True,
    "unsubscribed": False,
    "not_subscribed": False,
    "redacted": False,
    "invalid": False,
    "pending": None,  # double opt-in not confirmed yet: neither yes nor no
}


class UnknownTopic(AftersaleError):
    """A topic we do not map. The webhook answer is 200 so Shopify does not retry forever."""

    def __init__(self, topic: str):
        self.topic = topic
        super().__init__(f"unknown Shopify topic '{topic}'; known topics: {', '.join(KNOWN_TOPICS)}")


class PayloadError(EventError):
    """A known topic whose payload cannot be mapped; the message names the Shopify field."""


# --- signature --------------------------------------------------------------------------------


def verify_hmac(secret: bytes, raw_body: bytes, header: str | None) -> bool:
    """``X-Shopify-Hmac-Sha256`` is base64(HMAC-SHA256(secret, raw body)), over the exact bytes
    received: parsing and re-serializing first would change them."""
    if not header or not secret:
        return False
    expected = base64.b64encode(hmac.new(secret, raw_body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def sign(secret: bytes, raw_body: bytes) -> str:
    """The header value Shopify would send (for tests, fixtures and replay tools)."""
    return base64.b64encode(hmac.new(secret, raw_body, hashlib.sha256).digest()).decode()


def delivery_key(event_id: str | None, webhook_id: str | None) -> str | None:
    """The dedupe key of a delivery. Retries keep both ids, and two subscriptions to the same
    topic share the event id but not the webhook id, so the event id wins when present."""
    for value in (event_id, webhook_id):
        if value and value.strip():
            return value.strip()
    return None


def canonical_topic(topic: str) -> str:
    cleaned = topic.strip().lower()
    return TOPIC_ALIASES.get(cleaned, cleaned)


# --- mapping ----------------------------------------------------------------------------------


def to_events(topic: str, payload: dict[str, Any], delivery_id: str | None, received_at: datetime,
              *, source_ids: Mapping[str, str | None] | None = None) -> list[Event]:
    """Map one webhook to normalized events.

    Raises :class:`UnknownTopic` for a topic we do not map and :class:`PayloadError` (an
    ``EventError``) for a payload that cannot be mapped. Event ids are
    ``shopify:{topic}:{delivery}:{n}``; without a delivery id (a file import) the delivery part
    is derived from the object id and its timestamp, so re-importing stores nothing new.
    """
    name = canonical_topic(topic)
    mapper = _MAPPERS.get(name)
    if mapper is None:
        raise UnknownTopic(topic.strip())
    if not isinstance(payload, dict):
        raise PayloadError(f"{name}: the body must be a JSON object")
    try:
        drafts = mapper(payload, received_at)
    except PayloadError as exc:
        raise PayloadError(f"{name}: {exc}") from None
    if not drafts:
        return []
    key = delivery_id.strip() if delivery_id and delivery_id.strip() else _derived_key(payload)
    ids = {k: v for k, v in (source_ids or {}).items() if v}
    if not ids and delivery_id:
        ids = {"shopify_delivery_id": delivery_id}
    events = []
    for n, draft in enumerate(drafts):
        draft["id"] = _event_id(name, key, n)
        draft["source_ids"] = {"shopify_topic": name, **ids}
        try:
            events.append(parse_event(draft))
        except EventError as exc:
            raise PayloadError(f"{name}: {exc}") from None
    return events


Draft = dict[str, Any]
Mapper = Callable[[dict[str, Any], datetime], list[Draft]]


def _order_placed(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    order_id = _required_id(p, "id")
    order = {
        "id": order_id,
        "number": _text(p.get("name")) or _text(p.get("order_number")),
        "total": _money(p.get("total_price"), "total_price"),
        "currency": _text(p.get("currency")),
        "items": _items(p.get("line_items")),
        "discount_codes": _discount_codes(p.get("discount_codes")),
        "referral_code": referral_code(p),
    }
    when = _time(p, ("created_at", "processed_at", "updated_at"), received_at)
    return [{"type": "order.placed", "occurred_at": when, "customer": _customer(p, order_id),
             "order": order}]


def _order_cancelled(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    # No customer part: processing finds the order's own customer, so the cancellation ends
    # that customer's journeys even if Shopify has since moved the order to another customer.
    order = {"id": _required_id(p, "id"), "number": _text(p.get("name"))}
    when = _time(p, ("cancelled_at", "updated_at", "created_at"), received_at)
    return [{"type": "order.cancelled", "occurred_at": when, "order": order}]


def _refund(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    # A partial refund is a refund too: Shopify's payload does not say whether it was the whole
    # order, and a customer who sent something back is not one to ask for a review.
    order = {"id": _required_id(p, "order_id")}
    when = _time(p, ("processed_at", "created_at"), received_at)
    return [{"type": "order.refunded", "occurred_at": when, "order": order}]


def _fulfillment(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    """A fulfillment is one shipment; each create/update is one ``shipment.updated``. A
    ``shipment_status`` of null on a successful fulfillment means the merchant marked it
    shipped without carrier tracking: ``in_transit``."""
    order = {"id": _required_id(p, "order_id")}
    fulfillment_id = _required_id(p, "id")
    status = (_text(p.get("status")) or "").lower()
    when = _time(p, ("updated_at", "created_at"), received_at)
    if status in DEAD_FULFILLMENT:
        log.info("Shopify fulfillment %s of order %s is %s: its parcel is withdrawn",
                 fulfillment_id, order["id"], status)
        return [{"type": "shipment.updated", "occurred_at": when, "order": order,
                 "shipment": {"id": shipment_id(fulfillment_id),
                              "status": ShipmentStatus.CANCELLED.value, "raw_status": status,
                              "happened_at": when}}]
    raw = _text(p.get("shipment_status"))
    destination = _text(_dict(p.get("destination")).get("country_code"))
    shipment = {
        "id": shipment_id(fulfillment_id),
        **_status(raw, default=ShipmentStatus.IN_TRANSIT),
        "carrier": _text(p.get("tracking_company")),
        "tracking_number": _text(p.get("tracking_number")) or _first(p.get("tracking_numbers")),
        "tracking_url": _text(p.get("tracking_url")) or _first(p.get("tracking_urls")),
        "destination_country": destination.upper() if destination and len(destination) == 2
        and destination.isalpha() else None,
        "estimated_delivery_at": _optional_time(p, "estimated_delivery_at"),
        "happened_at": when,
    }
    return [{"type": "shipment.updated", "occurred_at": when, "order": order,
             "shipment": _present(shipment)}]


def _fulfillment_event(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    """One carrier scan of a fulfillment (the REST FulfillmentEvent resource): its status,
    message, when it happened and the estimate; ``country`` is where the scan was, not the
    destination, so it is not mapped."""
    order = {"id": _required_id(p, "order_id")}
    when = _time(p, ("happened_at", "created_at", "updated_at"), received_at)
    shipment = {
        "id": shipment_id(_required_id(p, "fulfillment_id")),
        **_status(_text(p.get("status")), default=None),
        "message": (_text(p.get("message")) or "")[:MAX_MESSAGE] or None,
        "estimated_delivery_at": _optional_time(p, "estimated_delivery_at"),
        "happened_at": when,
    }
    if "status" not in shipment:
        raise PayloadError("status: missing; a fulfillment event needs its status")
    return [{"type": "shipment.updated", "occurred_at": when, "order": order,
             "shipment": _present(shipment)}]


def shipment_id(fulfillment_id: str) -> str:
    """The shipment a Shopify fulfillment is: the same id from every topic about it."""
    return f"shopify:{fulfillment_id}"


def _status(raw: str | None, default: ShipmentStatus | None) -> dict[str, str]:
    """``status`` and ``raw_status`` of a Shopify word; without a word, ``default``. A word not
    in :data:`SHIPMENT_STATUSES` goes on as it is: the event contract stores it as ``unknown``
    with the word kept, and logs it once."""
    if raw is None:
        return {"status": default.value} if default is not None else {}
    word = raw.lower()[:64]
    mapped = SHIPMENT_STATUSES.get(word)
    return {"status": mapped.value if mapped else word, "raw_status": word}


def _present(part: Draft) -> Draft:
    return {k: v for k, v in part.items() if v is not None}


def _email_consent(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    return _consent(p, received_at, "email", "email_marketing_consent", "email_address")


def _sms_consent(p: dict[str, Any], received_at: datetime) -> list[Draft]:
    return _consent(p, received_at, "sms", "sms_marketing_consent", "phone")


def _consent(p: dict[str, Any], received_at: datetime, channel: str, field: str,
             address_field: str) -> list[Draft]:
    id_field = "customer_id" if p.get("customer_id") is not None else "id"
    customer_id = _required_id(p, id_field)
    consent = p.get(field)
    if not isinstance(consent, dict):
        raise PayloadError(f"{field}: missing or not an object with a 'state'")
    customer: Draft = {"id": customer_id, "consent": {channel: consent_state(consent)}}
    if channel == "email":
        customer["email"] = _valid_email(p.get(address_field))
    else:
        customer["phone"] = _valid_phone([p.get(address_field)], None)
    when = _time(consent, ("consent_updated_at",), received_at)
    return [{"type": "consent.changed", "occurred_at": when, "customer": customer}]


_MAPPERS: dict[str, Mapper] = {
    "orders/create": _order_placed,
    "orders/paid": _order_placed,  # processing is idempotent by order id: both are harmless
    "orders/cancelled": _order_cancelled,
    "refunds/create": _refund,
    "fulfillments/create": _fulfillment,
    "fulfillments/update": _fulfillment,
    FULFILLMENT_EVENT_TOPIC: _fulfillment_event,
    EMAIL_CONSENT_TOPIC: _email_consent,
    SMS_CONSENT_TOPIC: _sms_consent,
}
KNOWN_TOPICS: tuple[str, ...] = tuple(_MAPPERS)


# --- parts ------------------------------------------------------------------------------------


def _customer(p: dict[str, Any], order_id: str) -> Draft:
    raw = p.get("customer")
    c: dict[str, Any] = raw if isinstance(raw, dict) else {}
    billing = _dict(p.get("billing_address"))
    shipping = _dict(p.get("shipping_address"))
    default = _dict(c.get("default_address"))
    customer_id = (_required_id(c, "id", "customer.id") if c.get("id") is not None
                   else f"shopify-guest-{order_id}")
    country = next((code.upper() for code in (_text(a.get("country_code"))
                                              for a in (shipping, billing, default))
                    if code and len(code) == 2 and code.isalpha()), None)
    locale = _text(p.get("customer_locale"))
    data: Draft = {
        "id": customer_id,
        "email": next((e for e in map(_valid_email, (c.get("email"), p.get("email"),
                                                     p.get("contact_email"))) if e), None),
        # Billing before shipping: a gift's shipping address carries the recipient's number.
        "phone": _valid_phone([c.get("phone"), p.get("phone"), billing.get("phone"),
                               shipping.get("phone"), default.get("phone")], country),
        "first_name": _first_text(c, billing, shipping, key="first_name"),
        "last_name": _first_text(c, billing, shipping, key="last_name"),
        "locale": locale if locale and len(locale) <= 35 else None,
        "country": country,
    }
    consent = _order_consent(p, c)
    if consent is not None:
        data["consent"] = consent
    return data


def _order_consent(p: dict[str, Any], c: dict[str, Any]) -> dict[str, bool] | None:
    """Consent from payloads older than API 2025-01, else None (keep the last known value).

    ``buyer_accepts_marketing: false`` only means the box was not ticked at this checkout;
    Shopify does not unsubscribe anyone for that, so only ``true`` counts."""
    email = consent_state(c.get("email_marketing_consent"))
    sms = consent_state(c.get("sms_marketing_consent"))
    if email is None and p.get("buyer_accepts_marketing") is True:
        email = True
    found = {ch: v for ch, v in (("email", email), ("sms", sms)) if v is not None}
    return found or None


def consent_state(consent: Any) -> bool | None:
    """``{"state": "subscribed", ...}`` -> True; unsubscribed/not_subscribed/redacted -> False;
    pending, missing or unknown -> None (changes nothing)."""
    if not isinstance(consent, dict):
        return None
    state = consent.get("state")
    return _CONSENT_STATES.get(state.strip().lower()) if isinstance(state, str) else None


def _items(value: Any) -> list[Draft]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError("line_items: must be a list")
    items = []
    for index, line in enumerate(value):
        where = f"line_items[{index}]"
        if not isinstance(line, dict):
            raise PayloadError(f"{where}: must be an object")
        quantity = line.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise PayloadError(f"{where}.quantity: must be a whole number, got {quantity!r}")
        if quantity < 1:
            continue  # removed by an order edit: not part of the purchase
        items.append({
            "sku": _text(line.get("sku")),
            "title": _text(line.get("title")) or _text(line.get("name")),
            "category": _text(line.get("product_type")),
            "quantity": quantity,
            "price": _money(line.get("price"), f"{where}.price") or "0",
            "product_id": _text(line.get("product_id")),
            "variant_id": _text(line.get("variant_id")),
        })
    return [{k: v for k, v in item.items() if v is not None} for item in items]


def _discount_codes(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    codes = (c.get("code") if isinstance(c, dict) else c for c in value)
    return [code for code in (_text(c) for c in codes) if code]


REFERRAL_PARAMS = ("ref", "referral", "referral_code")
REFERRAL_ATTRIBUTES = ("referral_code", "ref", "referral")


def referral_code(p: Mapping[str, Any]) -> str | None:
    """The ``ref`` (or ``referral``/``referral_code``) query parameter of the landing page,
    else a note attribute of that name (a cart attribute set by the shop's theme)."""
    landing = p.get("landing_site")
    if isinstance(landing, str) and landing:
        try:
            query = parse_qs(urlsplit(landing).query)
        except ValueError:  # "http://[::1/?ref=x": urlsplit refuses a broken IPv6 host
            query = {}
        for name in REFERRAL_PARAMS:
            code = next((v.strip() for v in query.get(name, []) if v.strip()), None)
            if code:
                return code[:128]
    attributes = p.get("note_attributes")
    if isinstance(attributes, list):
        named = {str(a.get("name", "")).strip().lower(): _text(a.get("value"))
                 for a in attributes if isinstance(a, dict)}
        for name in REFERRAL_ATTRIBUTES:
            if named.get(name):
                return str(named[name])[:128]
    return None


def _valid_email(value: Any) -> str | None:
    """A bad address must not cost us the order: it is dropped, the event stays valid."""
    text = _text(value)
    if not text:
        return None
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        log.info("Shopify payload has an invalid e-mail address; dropped")
        return None


def _valid_phone(candidates: Iterable[Any], country: str | None) -> str | None:
    """The first number that is valid (E.164); invalid ones are dropped, not fatal."""
    for value in candidates:
        text = _text(value)
        if not text:
            continue
        try:
            return normalize_phone(text, country)
        except ValueError:
            log.info("Shopify payload has an invalid phone number; dropped")
    return None


def _required_id(obj: Mapping[str, Any], field: str, where: str | None = None) -> str:
    value = obj.get(field)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise PayloadError(f"{where or field}: missing or not an id (got {value!r})")
    text = str(value).strip()
    if len(text) > 100:
        raise PayloadError(f"{where or field}: longer than 100 characters")
    return text


def _money(value: Any, field: str) -> str | None:
    """Shopify sends money as decimal strings; anything else is named, not guessed."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{field}: money must be a decimal string such as \"129.90\", "
                           f"got {value!r}")
    text = str(value).strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise PayloadError(f"{field}: '{text}' is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise PayloadError(f"{field}: '{text}' is not a non-negative amount")
    return text


def _time(obj: Mapping[str, Any], fields: tuple[str, ...], default: datetime) -> str:
    for field in fields:
        value = obj.get(field)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise PayloadError(f"{field}: must be an ISO 8601 time, got {value!r}")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError(f"{field}: '{value}' is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise PayloadError(f"{field}: '{value}' has no UTC offset")
        return parsed.isoformat()
    when = default if default.tzinfo is not None else default.replace(tzinfo=UTC)
    return when.isoformat()


def _optional_time(obj: Mapping[str, Any], field: str) -> str | None:
    if obj.get(field) in (None, ""):
        return None
    return _time(obj, (field,), datetime.min)


def _event_id(topic: str, key: str, n: int) -> str:
    event_id = f"shopify:{topic}:{key}:{n}"
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"shopify:{topic}:{digest}:{n}"


def _derived_key(p: dict[str, Any]) -> str:
    """A stable key for a payload that came without a delivery id: its object id and time, or
    a digest of the whole payload when it has neither (consent payloads may carry no time)."""
    object_id = next((str(p[f]) for f in ("id", "customer_id", "order_id")
                      if isinstance(p.get(f), int | str) and str(p[f])), None)
    stamp = next((str(v) for v in (p.get("updated_at"), p.get("processed_at"), p.get("created_at"),
                                   *(_dict(p.get(f)).get("consent_updated_at")
                                     for f in ("email_marketing_consent", "sms_marketing_consent")))
                  if isinstance(v, str) and v), None)
    if object_id and stamp:
        return f"{object_id}@{stamp}"
    canonical = json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{object_id or 'payload'}#{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return next((t for t in map(_text, value) if t), None)
    return None


def _first_text(*objs: Mapping[str, Any], key: str) -> str | None:
    return next((t for t in (_text(o.get(key)) for o in objs) if t), None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- files (aftersale ingest --format shopify) --------------------------------------------------


def parse_file(lines: Iterable[str], received_at: datetime | None = None) -> ParsedFile:
    """One JSON object per line: ``{"topic": "orders/create", "id": "<optional delivery id>",
    "payload": {...}}``. Every bad line is reported with its number; an unknown topic is an error
    here (a file is written on purpose, so it is more likely a typo than a new Shopify topic).
    A repeated event id inside the file is kept once."""
    when = received_at or datetime.now(UTC)
    parsed = ParsedFile([], [])
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            events = _parse_line(text, when)
        except _BadLine as exc:
            parsed.errors.append(LineError(number, str(exc)))
            continue
        for event in events:
            if event.id in seen:
                parsed.duplicates_in_file += 1
            else:
                seen.add(event.id)
                parsed.events.append(event)
    return parsed


class _BadLine(Exception):
    pass


def _parse_line(text: str, received_at: datetime) -> list[Event]:
    try:
        data = loads(text)
    except JSONTextError as exc:
        raise _BadLine(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _BadLine('a line must be a JSON object: {"topic": ..., "id": ..., "payload": {...}}')
    topic, payload, line_id = data.get("topic"), data.get("payload"), data.get("id")
    if not isinstance(topic, str) or not topic.strip():
        raise _BadLine("topic: missing; give the webhook topic, e.g. \"orders/create\"")
    if not isinstance(payload, dict):
        raise _BadLine("payload: missing or not a JSON object (the webhook body)")
    if line_id is not None and (isinstance(line_id, bool) or not isinstance(line_id, str | int)):
        raise _BadLine(f"id: must be a string (the webhook or event id), got {line_id!r}")
    delivery = str(line_id).strip() if line_id is not None else None
    try:
        return to_events(topic, payload, delivery or None, received_at)
    except (UnknownTopic, EventError) as exc:
        raise _BadLine(str(exc)) from None
