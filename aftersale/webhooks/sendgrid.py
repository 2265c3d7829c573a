"""SendGrid's signed Event Webhook: verify the ECDSA signature over the exact raw body, then
parse the JSON array into :class:`aftersale.pipeline.send_outcomes.Delivery` reports.

The library's ``EventWebhook.verify_signature`` checks ``timestamp + body`` but not the
timestamp's age. SendGrid retries a POST that did not get a 2xx "at increasing intervals for up
to 24 hours after the event occurs" (its Event Webhook troubleshooting page), so a validly
signed request is accepted for :data:`RETRY_PERIOD` plus :data:`MARGIN`: a short outage of ours
must not turn every retry into a 403 and lose bounces and unsubscribes for good. Replaying a
captured request inside that window is harmless, because each event is stored once per
``sg_event_id`` and a report never moves a message's status backwards. A timestamp in the future
(beyond :data:`CLOCK_SKEW`) or older than the window is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from sendgrid.helpers.eventwebhook import EventWebhook

from aftersale.config import Settings
from aftersale.core.errors import WebhookRejected
from aftersale.core.links import HONEYPOT_PARAM
from aftersale.core.scanners import Click, suspect_reason
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind
from aftersale.pipeline.suppression import normalize_address

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
RETRY_PERIOD = timedelta(hours=24)
MARGIN = timedelta(hours=1)  # queueing on SendGrid's side, and our clock against theirs
CLOCK_SKEW = timedelta(minutes=5)
MESSAGE_ID_ARG = "aftersale_message_id"  # our id, sent in custom_args (channels/sendgrid.py)

_KINDS: dict[str, DeliveryKind] = {
    "processed": DeliveryKind.PROCESSED,
    "dropped": DeliveryKind.DROPPED,
    "deferred": DeliveryKind.DEFERRED,
    "delivered": DeliveryKind.DELIVERED,
    "bounce": DeliveryKind.BOUNCED,
    "open": DeliveryKind.OPENED,
    "click": DeliveryKind.CLICKED,
    "spamreport": DeliveryKind.SPAM_REPORT,
    "unsubscribe": DeliveryKind.UNSUBSCRIBED,
    "group_unsubscribe": DeliveryKind.UNSUBSCRIBED,
    "group_resubscribe": DeliveryKind.RESUBSCRIBED,
}


@functools.lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key.strip())


def verify(settings: Settings, raw_body: bytes, signature: str | None, timestamp: str | None,
           now: datetime) -> None:
    """Raise :class:`WebhookRejected` unless SendGrid signed exactly these bytes within its
    retry period.

    No public key configured is a 503, not a 403: the request may well be genuine, we just
    cannot tell, and a 5xx keeps SendGrid retrying (for up to 24 hours) until the operator sets
    ``AFTERSALE_SENDGRID_WEBHOOK_PUBLIC_KEY``; nothing is accepted unverified.
    """
    key = settings.sendgrid_webhook_public_key
    if not key:
        raise WebhookRejected(503, "the signed event webhook is not configured: set "
                                   "AFTERSALE_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key")
    try:
        verifier = _verifier(key)
    except (ValueError, TypeError):
        raise WebhookRejected(503, "AFTERSALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER "
                                   "public key (copy it from SendGrid's Mail Settings)") from None
    if not signature or not timestamp:
        raise WebhookRejected(403, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        signed_at = datetime.fromtimestamp(int(timestamp.strip()), UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookRejected(403, f"{TIMESTAMP_HEADER} is not a unix time") from None
    if signed_at - now > CLOCK_SKEW:
        raise WebhookRejected(403, "the signature timestamp is in the future")
    if now - signed_at > RETRY_PERIOD + MARGIN:
        raise WebhookRejected(403, "the signature timestamp is older than SendGrid's 24-hour "
                                   "retry period (a replayed request)")
    try:
        valid = verifier.verify_signature(raw_body.decode("utf-8"), signature, timestamp)
    except Exception:  # noqa: BLE001 - a malformed signature or body is simply not valid
        valid = False
    if not valid:
        raise WebhookRejected(403, "the signature does not match the body")


def parse(payload: Any, received_at: datetime | None = None) -> list[Delivery]:
    """The events of one webhook POST; raises ValueError (a 400) when it is not a JSON array of
    objects. An event kind we do not know becomes ``UNKNOWN``, kept with its raw payload.
    ``received_at`` stands in for an event without a usable ``timestamp``."""
    received_at = received_at or datetime.now(UTC)
    if not isinstance(payload, list):
        raise ValueError("the body must be a JSON array of events")
    for index, item in enumerate(payload):
        if not isinstance(item, dict):
            raise ValueError(f"event {index} is not a JSON object")
    return [parse_event(item, received_at) for item in payload]


def parse_event(event: Mapping[str, Any], received_at: datetime) -> Delivery:
    name = _text(event.get("event")) or ""
    kind = _KINDS.get(name, DeliveryKind.UNKNOWN)
    bounce_type: Literal["hard", "soft"] | None = None
    if kind == DeliveryKind.BOUNCED:
        # type "blocked" is a temporary refusal; "bounce" (or none, in older payloads) is final.
        bounce_type = "soft" if _text(event.get("type")) == "blocked" else "hard"
    email = _text(event.get("email"))
    kind, engagement = _engagement(kind, event, received_at)
    return Delivery(
        provider=PROVIDER,
        provider_event_id=_clip(_text(event.get("sg_event_id")), 200) or _fingerprint(event),
        kind=kind,
        message_id=_our_id(event.get(MESSAGE_ID_ARG)),
        # The whole id: the X-Message-Id we recorded is one of its dot-prefixes (send_outcomes.py).
        provider_message_id=_clip(_text(event.get("sg_message_id")), 100),
        recipient=_clip(normalize_address("email", email), 320) if email else None,
        occurred_at=_when(event.get("timestamp"), received_at),
        reason=engagement or _reason(kind, event),
        error_code=_clip(_text(event.get("status")), 20),
        bounce_type=bounce_type,
        raw=dict(event),
        channel="email",
    )


def _engagement(kind: DeliveryKind, event: Mapping[str, Any], received_at: datetime,
                ) -> tuple[DeliveryKind, str | None]:
    """Opens and clicks that are not a person's are kept apart: an open Apple Mail Privacy
    Protection made (``sg_machine_open``), a click on the e-mail's hidden honeypot link or
    with a scanner's user agent (aftersale.core.scanners; the rules that need the send
    time and the other clicks run when the events are applied, aftersale.pipeline.send_outcomes)."""
    if kind == DeliveryKind.OPENED and _flag(event.get("sg_machine_open")):
        return DeliveryKind.MACHINE_OPENED, "sg_machine_open"
    if kind != DeliveryKind.CLICKED:
        return kind, None
    click = Click(at=received_at, score=None, honeypot=_is_honeypot(_text(event.get("url"))),
                  user_agent=_text(event.get("useragent")))
    reason = suspect_reason(click)
    return (DeliveryKind.SUSPECT_CLICKED, reason) if reason else (kind, None)


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _is_honeypot(url: str | None) -> bool:
    """Our survey link's hidden twin (aftersale.core.links.Links.honeypot): ``/s/TOKEN?hp=1``."""
    if not url:
        return False
    parts = urlsplit(url)
    return "/s/" in parts.path and any(k == HONEYPOT_PARAM for k, _ in parse_qsl(parts.query))


def _reason(kind: DeliveryKind, event: Mapping[str, Any]) -> str | None:
    if kind in (DeliveryKind.BOUNCED, DeliveryKind.DROPPED):
        return _text(event.get("reason"))
    if kind in (DeliveryKind.DEFERRED, DeliveryKind.DELIVERED):
        return _text(event.get("response"))
    if kind == DeliveryKind.UNKNOWN:
        return f"unknown SendGrid event {_text(event.get('event'))!r}"
    return None


def _when(value: Any, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return default


def _our_id(value: Any) -> str | None:
    text = _text(value)
    return text if text and len(text) <= 40 else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


def _fingerprint(event: Mapping[str, Any]) -> str:
    """A stable id for an event without ``sg_event_id``, so a resend is still a duplicate."""
    blob = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
