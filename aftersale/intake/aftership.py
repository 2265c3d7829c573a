"""AfterShip tracking webhooks -> ``shipment.updated`` events. Pure code: no I/O, no clock.

AfterShip (Tracking, webhook versions 2025-2026) POSTs ``{"event", "event_id", "ts", "msg"}``
where ``msg`` is the whole Tracking object; the signature is ``aftership-hmac-sha256`` =
base64(HMAC-SHA256(webhook secret, raw body)) (AfterShip's "Webhook Signature" page). Two
events are carrier moments: ``tracking_update`` (the tag changed) and ``edd_revise`` (the
estimated delivery date changed); ``tracking_pending_time`` and anything else are not.

One webhook is one event of the shipment ``aftership:{msg.id}``, for the order ``msg.order_id``.
Its id is ``aftership:{msg.id}:{tag}:{time of the last checkpoint, else msg.updated_at}``, so
a retried webhook, or the same moment sent again under a new ``event_id``, is stored once; an
``edd_revise`` is ``aftership:{msg.id}:edd:{the new estimate}``.

AfterShip's times come in the recipient's or the checkpoint's local time, often without an
offset (``YYYY-MM-DD``, ``YYYY-MM-DDTHH:mm:ss``). Such a time is read in the time zone of its
country (the destination for estimates, the checkpoint's country for scans); where a country
has several zones, the westernmost one, so a date-only estimate (read as the end of that day)
is never passed early. Without a country: UTC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import get_global

from aftersale.core.errors import AftersaleError, EventError
from aftersale.core.events import Event, parse_event
from aftersale.core.shipments import ShipmentStatus

log = logging.getLogger(__name__)

HMAC_HEADER = "aftership-hmac-sha256"
TRACKING_EVENTS = ("tracking_update", "edd_revise")
MAX_EVENT_ID = 200
MAX_MESSAGE = 2000

#: AfterShip's tags onto our statuses (its "Delivery Statuses" page). ``Pending`` is a tracking
#: AfterShip has no carrier scan for yet: a label at most. ``Expired`` means AfterShip gave up
#: (no update for 30 days): nothing is known about the parcel, so it is ``unknown`` (stored,
#: never a status change); our own stalled check has spoken long before.
TAGS: dict[str, ShipmentStatus] = {
    "Pending": ShipmentStatus.LABEL_CREATED,
    "InfoReceived": ShipmentStatus.LABEL_CREATED,
    "InTransit": ShipmentStatus.IN_TRANSIT,
    "OutForDelivery": ShipmentStatus.OUT_FOR_DELIVERY,
    "AttemptFail": ShipmentStatus.ATTEMPTED_DELIVERY,
    "AvailableForPickup": ShipmentStatus.READY_FOR_PICKUP,
    "Exception": ShipmentStatus.EXCEPTION,
    "Delivered": ShipmentStatus.DELIVERED,
    "Expired": ShipmentStatus.UNKNOWN,
}

#: ``Exception`` subtags that say more than "exception" (its "Delivery Sub-statuses" page):
#: delays are ``delayed``, returning/returned to sender ``returned_to_sender``. Every other
#: Exception subtag (refused, lost, damaged, held, wrong address...) stays ``exception``.
EXCEPTION_SUBTAGS: dict[str, ShipmentStatus] = {
    "Exception_004": ShipmentStatus.DELAYED,  # customs clearance
    "Exception_005": ShipmentStatus.DELAYED,  # external factors
    "Exception_010": ShipmentStatus.RETURNED_TO_SENDER,  # on its way back to the sender
    "Exception_011": ShipmentStatus.RETURNED_TO_SENDER,  # back with the sender
    "Exception_016": ShipmentStatus.DELAYED,  # processing issue in the carrier network
    "Exception_017": ShipmentStatus.DELAYED,  # extreme weather
    "Exception_019": ShipmentStatus.DELAYED,  # late flight
}


class UnknownEvent(AftersaleError):
    """An AfterShip event that is no carrier moment; answered 200 so AfterShip stops retrying."""

    def __init__(self, event: str):
        self.event = event
        super().__init__(f"AfterShip event '{event}' is not mapped; mapped events: "
                         f"{', '.join(TRACKING_EVENTS)}")


class PayloadError(EventError):
    """A tracking webhook that cannot be mapped; the message names the AfterShip field."""


# --- signature --------------------------------------------------------------------------------


def sign(secret: bytes, raw_body: bytes) -> str:
    """The ``aftership-hmac-sha256`` value AfterShip sends for this body."""
    return base64.b64encode(hmac.new(secret, raw_body, hashlib.sha256).digest()).decode()


def verify_hmac(secret: bytes, raw_body: bytes, header: str | None) -> bool:
    """Over the exact bytes received, compared in constant time; no secret verifies nothing."""
    if not header or not secret:
        return False
    return hmac.compare_digest(sign(secret, raw_body).encode(),
                               header.strip().encode("utf-8", "replace"))


# --- mapping ----------------------------------------------------------------------------------


def status_of(tag: str, subtag: str | None) -> ShipmentStatus | str:
    """Our status for a tag and subtag; a tag we do not know is returned as the word itself
    (the event contract stores it as ``unknown`` with the word, logged once)."""
    if tag == "Exception" and subtag in EXCEPTION_SUBTAGS:
        return EXCEPTION_SUBTAGS[subtag]
    return TAGS.get(tag, tag)


def to_event(body: Mapping[str, Any], received_at: datetime) -> Event:
    """Map one webhook body. Raises :class:`UnknownEvent` for an event that is no carrier
    moment and :class:`PayloadError` (an ``EventError``) naming the field that cannot be read."""
    kind = body.get("event")
    if not isinstance(kind, str) or kind not in TRACKING_EVENTS:
        if kind is None or isinstance(kind, str):
            raise UnknownEvent(str(kind))
        raise PayloadError(f"event: must be a string such as 'tracking_update', got {kind!r}")
    msg = body.get("msg")
    if not isinstance(msg, dict):
        raise PayloadError("msg: missing or not an object (the Tracking)")
    tracking_id = _required(msg, "id")
    order_id = _required(msg, "order_id")
    tag = _required(msg, "tag")
    subtag = _text(msg.get("subtag"))
    checkpoint = _last_checkpoint(msg)
    destination = _country(msg.get("destination_country_region")) or _country(
        msg.get("destination_country_iso3"))
    where = _country(checkpoint.get("country_region")) or _country(
        checkpoint.get("country_iso3")) or destination
    updated_at = _time(msg, "updated_at", None, "msg.")
    happened_at = (_time(checkpoint, "checkpoint_time", where, "msg.checkpoints[-1].")
                   or updated_at or _from_ts(body.get("ts")) or received_at)
    estimate = _estimate(msg, destination)
    status = status_of(tag, subtag)
    message = (_text(checkpoint.get("message")) or _text(msg.get("subtag_message"))
               or "")[:MAX_MESSAGE] or None
    shipment = {
        "id": f"aftership:{tracking_id}",
        "status": status.value if isinstance(status, ShipmentStatus) else status,
        "raw_status": (subtag or tag)[:64],
        "carrier": _text(msg.get("slug")),
        "tracking_number": _text(msg.get("tracking_number")),
        "tracking_url": _text(msg.get("courier_tracking_link"))
        or _text(msg.get("aftership_tracking_url")),
        "estimated_delivery_at": estimate.isoformat() if estimate else None,
        "message": message,
        "happened_at": happened_at.isoformat(),
        "destination_country": destination,
    }
    if kind == "edd_revise":
        moment = f"edd:{estimate.isoformat() if estimate else 'none'}"
        occurred_at = updated_at or _from_ts(body.get("ts")) or received_at
    else:
        stamp = _text(checkpoint.get("checkpoint_time")) or _text(msg.get("updated_at"))
        moment = f"{tag}:{stamp or happened_at.isoformat()}"
        occurred_at = happened_at
    draft = {
        "id": _event_id(tracking_id, moment),
        "type": "shipment.updated",
        "occurred_at": occurred_at.isoformat(),
        "order": {"id": order_id},
        "shipment": {k: v for k, v in shipment.items() if v is not None},
        "source_ids": {k: v for k, v in (("aftership_event", kind),
                                         ("aftership_event_id", _text(body.get("event_id"))),
                                         ("aftership_tracking_id", tracking_id)) if v},
    }
    try:
        return parse_event(draft)
    except EventError as exc:
        raise PayloadError(str(exc)) from None


def _last_checkpoint(msg: Mapping[str, Any]) -> dict[str, Any]:
    """AfterShip lists checkpoints oldest first: the last one is the moment that was sent."""
    checkpoints = msg.get("checkpoints")
    if checkpoints is None:
        return {}
    if not isinstance(checkpoints, list):
        raise PayloadError("msg.checkpoints: must be a list")
    last = checkpoints[-1] if checkpoints else {}
    if not isinstance(last, dict):
        raise PayloadError("msg.checkpoints[-1]: must be an object")
    return last


def _estimate(msg: Mapping[str, Any], country: str | None) -> datetime | None:
    """The newest estimate AfterShip has: ``latest_estimated_delivery`` (2024+), then the
    carrier's, AfterShip's AI, the shop's custom one, then the legacy ``expected_delivery``.
    A range counts by its end: a parcel is late only once the whole range has passed."""
    for field, keys in (("latest_estimated_delivery", ("datetime", "datetime_max")),
                        ("courier_estimated_delivery_date",
                         ("estimated_delivery_date", "estimated_delivery_date_max")),
                        ("aftership_estimated_delivery_date",
                         ("estimated_delivery_date", "estimated_delivery_date_max")),
                        ("custom_estimated_delivery_date",
                         ("estimated_delivery_date", "estimated_delivery_date_max"))):
        part = msg.get(field)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise PayloadError(f"msg.{field}: must be an object")
        for key in keys:
            found = _time(part, key, country, f"msg.{field}.", end_of_day=True)
            if found:
                return found
    return _time(msg, "expected_delivery", country, "msg.", end_of_day=True)


def _time(obj: Mapping[str, Any], field: str, country: str | None, where: str,
          end_of_day: bool = False) -> datetime | None:
    value = obj.get(field)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}{field}: must be an ISO 8601 date or time, got {value!r}")
    text = value.strip()
    try:
        if len(text) == 10:  # a date: the end of that day where the parcel is
            day = date.fromisoformat(text)
            parsed = datetime.combine(day, time(23, 59, 59) if end_of_day else time(12))
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{where}{field}: '{value}' is not an ISO 8601 date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone_of(country, parsed))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PayloadError(f"{where}{field}: '{value}' is out of range") from None


def zone_of(country: str | None, when: datetime) -> tzinfo:
    """The time zone a local time of ``country`` is read in: its only zone, or of several the
    one with the smallest UTC offset at ``when`` (the westernmost); UTC when unknown."""
    zones: list[ZoneInfo] = []
    for name in get_global("territory_zones").get(country or "", []):
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue
    if not zones:
        return UTC
    return min(zones, key=lambda z: when.replace(tzinfo=z).utcoffset() or timedelta(0))


def _country(value: Any) -> str | None:
    """ISO 3166 alpha-3 (AfterShip's form) -> alpha-2, through CLDR's territory aliases in
    Babel (``USA`` -> ``US``); an alpha-2 code passes; anything else is no country."""
    text = _text(value)
    if not text or not text.isascii() or not text.isalpha():
        return None
    code = text.upper()
    if len(code) == 2:
        return code
    replacement = get_global("territory_aliases").get(code) if len(code) == 3 else None
    if replacement and len(replacement) == 1 and len(replacement[0]) == 2:
        return str(replacement[0])
    return None


def _from_ts(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _required(obj: Mapping[str, Any], field: str) -> str:
    text = _text(obj.get(field))
    if text is None:
        raise PayloadError(f"msg.{field}: missing or empty (got {obj.get(field)!r})")
    if len(text) > 128:
        raise PayloadError(f"msg.{field}: longer than 128 characters")
    return text


def _event_id(tracking_id: str, moment: str) -> str:
    event_id = f"aftership:{tracking_id}:{moment}"
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    return f"aftership:{hashlib.sha256(event_id.encode()).hexdigest()[:40]}"


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None
