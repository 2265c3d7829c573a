"""The normalized event format (DESIGN.md section 3): what every intake path produces.

Validation happens here, once, before anything is stored: an event that passes is safe to
store and to act on. Unknown fields are kept (``extra="allow"``); unknown types are rejected.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aftersale.core.clock import as_utc
from aftersale.core.shipments import SHIPMENT_STATUSES, ShipmentStatus
from aftersale.core.survey_scales import SURVEY_SCALES, SurveyKind

log = logging.getLogger(__name__)


class EventType(StrEnum):
    ORDER_PLACED = "order.placed"
    ORDER_SHIPPED = "order.shipped"
    ORDER_DELIVERED = "order.delivered"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REFUNDED = "order.refunded"
    CUSTOMER_UPDATED = "customer.updated"
    CONSENT_CHANGED = "consent.changed"
    SURVEY_RESPONDED = "survey.responded"
    # A carrier moment of one parcel (see aftersale.core.shipments), and the two moments
    # aftersale derives itself when nothing happens (aftersale.pipeline.shipment_checks).
    SHIPMENT_UPDATED = "shipment.updated"
    SHIPMENT_STALLED = "shipment.stalled"
    SHIPMENT_LATE = "shipment.late"


_EVENT_TYPES = frozenset(t.value for t in EventType)  # built once: checked per event
#: Moments aftersale derives itself (stored in the inbox by the pipeline, never taken from
#: outside): a second source of them would raise each one twice.
DERIVED_TYPES = frozenset({"shipment.stalled", "shipment.late"})



# Validation context for a payload read back from the inbox: intake normalized its e-mail
# address and phone number before storing it, and doing it again was a sixth of processing.
STORED = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


# Orders keep money as NUMERIC(14, 2): an amount must stay below 10^12 to be stored.
MAX_AMOUNT = Decimal(10) ** 12


def _money(value: Any) -> Decimal:
    """Money travels as a decimal string; floats are refused because they lose cents."""
    if isinstance(value, float):
        raise ValueError("money must be a decimal string such as \"129.90\", not a float")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"'{value}' is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"'{value}' is not a non-negative amount")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"'{value}' is too large an amount (at most 999999999999.99)")
    return amount


def _yes_or_no(value: Any) -> Any:
    """Consent is a JSON true or false (null: not stated). "yes", 1 or "false" are refused
    rather than guessed: a misread consent sends messages the customer never agreed to."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"must be true, false or null, got {value!r}")
    return value


class OrderUpdates(_Open):
    """The transactional opt-in per channel: "send me updates about my order by SMS /
    WhatsApp". E-mail order updates need none."""

    sms: bool | None = None
    whatsapp: bool | None = None

    _strict = field_validator("sms", "whatsapp", mode="before")(lambda cls, v: _yes_or_no(v))


class Consent(_Open):
    """Marketing consent per channel, and the order-updates opt-ins beside it."""

    email: bool | None = None
    sms: bool | None = None
    whatsapp: bool | None = None
    order_updates: OrderUpdates | None = None

    _strict = field_validator("email", "sms", "whatsapp", mode="before")(
        lambda cls, v: _yes_or_no(v))
    _object = field_validator("order_updates", mode="before")(
        lambda cls, v: _an_object(v, '{"sms": true, "whatsapp": false}'))


def _an_object(value: Any, example: str) -> Any:
    if value is not None and not isinstance(value, dict | BaseModel):
        raise ValueError(f"must be an object such as {example}, got {value!r}")
    return value


class CustomerIn(_Open):
    id: str = Field(min_length=1, max_length=128)
    email: str | None = None
    phone: str | None = None
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    consent: Consent | None = None

    _consent = field_validator("consent", mode="before")(lambda cls, v: _an_object(
        v, '{"email": true, "sms": false, "order_updates": {"sms": true}}'))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if _stored(info):
            return value or None
        return normalize_email(value) if value else None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if not value:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone such as Europe/Istanbul") from None
        return value

    @model_validator(mode="after")
    def _phone(self, info: ValidationInfo) -> CustomerIn:
        # Normalizing needs the country: "0532 123 45 67" is only a number once we know it is TR.
        if self.phone and not _stored(info):
            self.phone = normalize_phone(self.phone, self.country)
        return self


# Both are pure and slow next to the rest of validation (about 0.1 ms each), and the same
# customer comes back in every event of their order.
# Small caches: events of one customer arrive close together, and 65,536 entries cost 40 MB.
@lru_cache(maxsize=4096)
def normalize_email(raw: str) -> str:
    """The normalized address or a ValueError that says what was wrong."""
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"'{raw}' is not a valid e-mail address: {exc}") from None


@lru_cache(maxsize=4096)
def normalize_phone(raw: str, country: str | None) -> str:
    """E.164 or a ValueError that says what was wrong."""
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        raise ValueError(
            f"'{raw}' is not a phone number; use E.164 (+905321234567) or give customer.country"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"'{raw}' is not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Item(_Open):
    sku: str | None = None
    title: str | None = None
    category: str | None = None
    quantity: int = Field(default=1, ge=1)
    price: Decimal = Decimal("0")

    _price = field_validator("price", mode="before")(lambda cls, v: _money(v))


class OrderIn(_Open):
    id: str = Field(min_length=1, max_length=128)
    number: str | None = None
    total: Decimal | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    items: list[Item] = Field(default_factory=list)
    discount_codes: list[str] = Field(default_factory=list)
    referral_code: str | None = None

    _total = field_validator("total", mode="before")(
        lambda cls, v: None if v is None else _money(v)
    )

    @field_validator("discount_codes", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> list[str]:
        # Shopify sends [{"code": ..., "amount": ...}]; the normalized form keeps just the codes.
        if value is None:
            return []
        if not isinstance(value, list):  # iterating False or 7 raised TypeError: a 500
            raise ValueError("must be a list of codes")
        return [c.get("code", "") if isinstance(c, dict) else str(c) for c in value]

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return value.upper() if value else None


def _aware_time(value: datetime | None, example: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"needs a UTC offset, e.g. {example}")
    try:
        return as_utc(value)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


_unknown_statuses_logged: set[str] = set()


class ShipmentIn(_Open):
    """One parcel of an order (a Shopify fulfillment, an AfterShip tracking). ``order.shipped``
    may carry just the tracking fields; the ``shipment.*`` events need ``id`` and ``status``."""

    id: str | None = Field(default=None, min_length=1, max_length=128)
    status: ShipmentStatus | None = None
    raw_status: str | None = Field(default=None, max_length=64)  # the source's own word
    carrier: str | None = Field(default=None, max_length=100)
    tracking_number: str | None = Field(default=None, max_length=100)
    tracking_url: str | None = None
    estimated_delivery_at: datetime | None = None
    message: str | None = Field(default=None, max_length=2000)  # the carrier's last words
    happened_at: datetime | None = None  # when the carrier saw it; default: occurred_at
    destination_country: str | None = Field(default=None, min_length=2, max_length=2)
    days_late: int | None = Field(default=None, ge=0)  # shipment.late: by how many days

    @model_validator(mode="before")
    @classmethod
    def _status(cls, data: Any) -> Any:
        """A status nobody mapped is kept as ``unknown`` with its word in ``raw_status``,
        logged once per value: carriers and platforms add statuses, and a new one must not
        lose the update or answer 500."""
        if not isinstance(data, dict):
            return data
        value = data.get("status")
        if value is None or value in SHIPMENT_STATUSES:
            return data
        if not isinstance(value, str):
            raise ValueError(f"status must be one of {', '.join(sorted(SHIPMENT_STATUSES))}")
        if value[:64] not in _unknown_statuses_logged and len(_unknown_statuses_logged) < 1000:
            _unknown_statuses_logged.add(value[:64])  # bounded: anyone can post a new word
            log.warning("shipment status '%s' is not one we know; stored as 'unknown'", value)
        return {**data, "status": ShipmentStatus.UNKNOWN.value,
                "raw_status": data.get("raw_status") or value[:64]}

    _times = field_validator("happened_at", "estimated_delivery_at")(
        lambda cls, v: _aware_time(v, "2026-03-01T10:00:00+03:00"))
    _country = field_validator("destination_country")(
        lambda cls, v: v.upper() if v else None)


class SurveyIn(_Open):
    kind: SurveyKind
    score: int
    comment: str | None = Field(default=None, max_length=5000)
    order_id: str | None = None
    message_id: str | None = None
    source: str | None = Field(default=None, max_length=12)  # email, sms, whatsapp, api

    @model_validator(mode="after")
    def _in_scale(self) -> SurveyIn:
        low, high = SURVEY_SCALES[self.kind]
        if not low <= self.score <= high:
            raise ValueError(f"{self.kind} score must be between {low} and {high}, got {self.score}")
        return self


_NEEDS: dict[EventType, tuple[str, ...]] = {
    EventType.ORDER_PLACED: ("customer", "order"),
    EventType.ORDER_SHIPPED: ("order",),
    EventType.ORDER_DELIVERED: ("order",),
    EventType.ORDER_CANCELLED: ("order",),
    EventType.ORDER_REFUNDED: ("order",),
    EventType.CUSTOMER_UPDATED: ("customer",),
    EventType.CONSENT_CHANGED: ("customer",),
    EventType.SURVEY_RESPONDED: ("customer", "survey"),
    EventType.SHIPMENT_UPDATED: ("order", "shipment"),
    EventType.SHIPMENT_STALLED: ("order", "shipment"),
    EventType.SHIPMENT_LATE: ("order", "shipment"),
}
SHIPMENT_EVENTS = frozenset({EventType.SHIPMENT_UPDATED, EventType.SHIPMENT_STALLED,
                             EventType.SHIPMENT_LATE})


class Event(_Open):
    id: str = Field(min_length=1, max_length=200)
    type: EventType
    occurred_at: datetime
    customer: CustomerIn | None = None
    order: OrderIn | None = None
    shipment: ShipmentIn | None = None
    survey: SurveyIn | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in _EVENT_TYPES:
            known = ", ".join(t.value for t in EventType if t.value not in DERIVED_TYPES)
            raise ValueError(f"unknown event type '{value}'; known types: {known}")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset, e.g. 2026-03-01T10:00:00+03:00")
        try:
            return as_utc(value)
        except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise ValueError("out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _required_parts(self) -> Event:
        missing = [part for part in _NEEDS[self.type] if getattr(self, part) is None]
        if missing:
            raise ValueError(f"a {self.type.value} event needs {' and '.join(missing)}")
        if self.type == EventType.ORDER_PLACED and self.order and self.order.total is None:
            total = sum((i.price * i.quantity for i in self.order.items), Decimal("0"))
            if total >= MAX_AMOUNT:
                raise ValueError(f"the items add up to {total:.2E}: too large an order total")
            self.order.total = total
        if self.type in SHIPMENT_EVENTS:
            assert self.shipment is not None
            if self.shipment.id is None:
                raise ValueError(f"a {self.type.value} event needs shipment.id")
            if self.type == EventType.SHIPMENT_UPDATED and self.shipment.status is None:
                raise ValueError("a shipment.updated event needs shipment.status, one of "
                                 + ", ".join(s.value for s in ShipmentStatus))
        if self.shipment is not None and self.shipment.happened_at is None:
            self.shipment.happened_at = self.occurred_at
        return self

    @property
    def customer_id(self) -> str | None:
        return self.customer.id if self.customer else None

    @property
    def order_id(self) -> str | None:
        if self.order:
            return self.order.id
        return self.survey.order_id if self.survey else None


def parse_event(data: Any) -> Event:
    """Validate one event; raises :class:`aftersale.core.errors.EventError` with every reason."""
    from aftersale.core.errors import EventError

    if not isinstance(data, dict):
        raise EventError("an event must be a JSON object")
    if isinstance(data.get("type"), str) and data["type"] in DERIVED_TYPES:
        raise EventError(f"type: {data['type']} is derived by aftersale from the carrier's "
                         "updates; send shipment.updated events instead")
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        raise EventError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line a user can act on: 'customer.phone: ... ; order.total: ...'."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
