"""Twilio's webhooks: delivery status callbacks and inbound SMS/WhatsApp messages.

Both are form POSTs signed with ``X-Twilio-Signature`` = HMAC-SHA1(auth token, URL + every
POST parameter). The URL must be exactly what Twilio called, so it is rebuilt from
``AFTERSALE_PUBLIC_URL`` plus the path and query, never from the request's Host header (which a
proxy or an attacker controls). Our message id rides in the status callback URL (``?m=``), set
by :mod:`aftersale.channels.twilio`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from aftersale.config import Settings
from aftersale.core.errors import WebhookRejected
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind, Inbound
from aftersale.pipeline.suppression import WHATSAPP_PREFIX, normalize_address

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"

_STATUSES: dict[str, DeliveryKind] = {
    "accepted": DeliveryKind.QUEUED,
    "scheduled": DeliveryKind.QUEUED,
    "queued": DeliveryKind.QUEUED,
    "sending": DeliveryKind.SENT,
    "sent": DeliveryKind.SENT,
    "delivered": DeliveryKind.DELIVERED,
    "undelivered": DeliveryKind.UNDELIVERED,
    "failed": DeliveryKind.FAILED,
    "canceled": DeliveryKind.FAILED,  # a scheduled message cancelled before sending: never sent
    "read": DeliveryKind.READ,
}
# Callbacks carry the code only; a few words make the stored event readable.
ERROR_TEXTS = {
    "21211": "invalid 'To' number",
    "21610": "the recipient replied STOP",
    "21614": "'To' is not a mobile number",
    "21635": "'To' is a landline",
    "30003": "unreachable handset",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "63016": "WhatsApp free-form text outside the 24-hour window",
}


class FormParams(dict[str, str]):
    """Form parameters: ``form[name]`` is the first value, ``getlist(name)`` every value (the
    request validator signs each value of a repeated parameter)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self._all.setdefault(key, []).append(value)
            self.setdefault(key, value)

    def getlist(self, key: str) -> list[str]:
        return list(self._all.get(key, []))


def parse_form(body: bytes) -> FormParams:
    """An ``application/x-www-form-urlencoded`` body (Twilio sends UTF-8). Bytes that are not
    UTF-8 are replaced, which then fails the signature check rather than raising."""
    return FormParams(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def verify(settings: Settings, path_and_query: str, form: Mapping[str, Any],
           signature: str | None) -> None:
    """Raise :class:`WebhookRejected` unless Twilio signed this URL and these parameters.

    ``form`` may be a plain dict or a multi-dict (Starlette's ``FormData``): repeated
    parameters are signed value by value. Without an auth token nothing can be verified: 503,
    so Twilio retries and nothing unverified is accepted.
    """
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        raise WebhookRejected(503, "Twilio webhooks are not configured: set "
                                   "AFTERSALE_TWILIO_AUTH_TOKEN")
    if not signature:
        raise WebhookRejected(403, f"missing {SIGNATURE_HEADER} header")
    url = public_url(settings, path_and_query)
    try:
        valid = RequestValidator(token.get_secret_value()).validate(url, form, signature)
    except Exception:  # noqa: BLE001 - anything odd in the request means "not verified"
        valid = False
    if not valid:
        raise WebhookRejected(403, "the signature does not match PUBLIC_URL + path and the "
                                   "parameters (check AFTERSALE_PUBLIC_URL and the auth token)")


def public_url(settings: Settings, path_and_query: str) -> str:
    """The URL Twilio called: ``AFTERSALE_PUBLIC_URL`` (with any base path) + path + query."""
    return str(settings.public_url).rstrip("/") + "/" + path_and_query.lstrip("/")


def parse_status(form: Mapping[str, Any], *, message_id: str | None = None,
                 received_at: datetime | None = None) -> Delivery:
    """A status callback as a :class:`Delivery`; one event per (MessageSid, MessageStatus), so
    Twilio's retries of the same callback are duplicates. ``message_id`` is the ``m`` query
    parameter of the callback URL. Raises ValueError (a 400) without MessageSid."""
    sid = _field(form, "MessageSid") or _field(form, "SmsSid")
    if not sid:
        raise ValueError("a status callback needs MessageSid")
    status = (_field(form, "MessageStatus") or _field(form, "SmsStatus") or "").lower()
    kind = _STATUSES.get(status, DeliveryKind.UNKNOWN)
    code = _field(form, "ErrorCode")
    to = _field(form, "To")
    reason = _field(form, "ErrorMessage") or (ERROR_TEXTS.get(code) if code else None)
    if kind == DeliveryKind.UNKNOWN:
        reason = f"unknown Twilio status {status!r}"
    elif status == "canceled":
        reason = "cancelled before sending"
    return Delivery(
        provider=PROVIDER,
        provider_event_id=f"{sid}:{status}"[:200],
        kind=kind,
        message_id=message_id if message_id and len(message_id) <= 40 else None,
        provider_message_id=sid[:100],
        recipient=normalize_address(_channel(to), to)[:320] if to else None,
        occurred_at=received_at or datetime.now(UTC),  # callbacks carry no event time
        reason=reason,
        error_code=code[:20] if code and code != "0" else None,
        raw=raw_form(form),
        channel=_channel(to) if to else None,
    )


def parse_inbound(form: Mapping[str, Any]) -> Inbound:
    """An inbound SMS or WhatsApp message; raises ValueError (a 400) without MessageSid/From."""
    sid = _field(form, "MessageSid") or _field(form, "SmsMessageSid")
    sender = _field(form, "From")
    if not sid or not sender:
        raise ValueError("an inbound message needs MessageSid and From")
    channel = _channel(sender)
    return Inbound(
        provider=PROVIDER,
        provider_message_id=sid[:100],
        channel=channel,
        from_address=normalize_address(channel, sender)[:64],
        to_address=(_field(form, "To") or "")[:64] or None,
        body=_text(form.get("Body")),
        raw=raw_form(form),
        opt_out_type=_field(form, "OptOutType"),
    )


def raw_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as received; a repeated parameter keeps all its values as a list."""
    getlist = getattr(form, "getlist", None)
    raw: dict[str, Any] = {}
    for key in form:
        values = [_text(v) for v in getlist(key)] if getlist else [_text(form[key])]
        raw[_text(key)] = values[0] if len(values) == 1 else values
    return raw


def _channel(address: str | None) -> Literal["sms", "whatsapp"]:
    return "whatsapp" if address and address.lower().startswith(WHATSAPP_PREFIX) else "sms"


def _field(form: Mapping[str, Any], name: str) -> str | None:
    return _text(form.get(name)).strip() or None


def _text(value: Any) -> str:
    """A parameter as text without NUL characters: a form may carry ``%00``, which PostgreSQL
    cannot store in a text column (and no SMS contains). Checked after the signature."""
    return str(value).replace("\x00", "") if value is not None else ""
