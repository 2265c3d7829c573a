"""E-mail through SendGrid's v3 Mail Send API, with the official ``sendgrid`` client.

Every mail carries our message id in ``custom_args`` (SendGrid echoes it in every event webhook,
so events map back without a lookup by SendGrid's id) and the journey and template as
``categories``. Marketing mail carries one-click unsubscribe headers (RFC 8058), which the
large mailbox providers require of bulk senders; transactional mail (a shipping update) does not.

Errors: 429, 408 and 5xx, timeouts and unreachable hosts are worth retrying
(``TransientProviderError``); any other 4xx is permanent, with SendGrid's first error message.
Error codes are the HTTP status, or ``unreachable`` (the request never reached SendGrid) or
``no_answer`` (it was sent but not answered: SendGrid may have accepted the mail).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.error import URLError

import sendgrid
from python_http_client.exceptions import HTTPError as SendGridHTTPError

from aftersale.channels.base import OutboundMessage, SingleSendChannel
from aftersale.config import Settings
from aftersale.core.backoff import capped_wait, retry_after_seconds
from aftersale.core.errors import ConfigError, PermanentProviderError, TransientProviderError

PROVIDER = "sendgrid"
DEFAULT_TIMEOUT = 10.0  # seconds, for connect and for each read
# Error codes of transient failures without an HTTP answer.
UNREACHABLE = "unreachable"  # the request never reached SendGrid: safe to resend
NO_ANSWER = "no_answer"  # sent, but no answer: the outcome is unknown


class SendGridEmailChannel(SingleSendChannel):
    name = "email"
    provider = PROVIDER

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT):
        if settings.sendgrid_api_key is None:
            raise ConfigError("AFTERSALE_SENDGRID_API_KEY is required when AFTERSALE_EMAIL_PROVIDER=sendgrid")
        self._key = settings.sendgrid_api_key.get_secret_value()
        self._from = settings.email_from
        self._host = str(settings.sendgrid_base_url).rstrip("/")
        self._client = sendgrid.SendGridAPIClient(api_key=self._key, host=self._host)
        # The client has no timeout argument; every request it builds copies this one.
        self._client.client.timeout = timeout
        self._unsubscribe_mailto = settings.unsubscribe_mailto

    def send_one(self, message: OutboundMessage) -> str | None:
        payload = mail_payload(message, self._from, self._unsubscribe_mailto)
        try:
            response = self._client.send(payload)
        except SendGridHTTPError as exc:
            raise self._http_error(exc) from exc
        except URLError as exc:
            # urllib wraps what happens before the request is out: refused, DNS, connect timeout.
            raise TransientProviderError(
                PROVIDER, self._scrub(f"could not reach {self._host}: {exc.reason}"),
                code=UNREACHABLE) from exc
        except (OSError, http.client.HTTPException) as exc:
            # A read timeout or a dropped connection after the request went out: SendGrid may
            # have accepted the mail. It is still retried (DESIGN.md section 5); the code tells.
            raise TransientProviderError(
                PROVIDER, self._scrub(f"no answer from {self._host}: {exc or type(exc).__name__}; "
                                      "the mail may have been accepted"), code=NO_ANSWER) from exc
        return response.headers.get("X-Message-Id")

    def _http_error(self, exc: SendGridHTTPError) -> TransientProviderError | PermanentProviderError:
        status = int(exc.status_code)
        detail = self._scrub(f"HTTP {status}: {first_error_message(exc.body) or exc.reason}")
        if status in (408, 429) or status >= 500:
            headers = exc.headers
            retry_after = retry_after_seconds(headers.get("Retry-After") if headers else None)
            if retry_after is None and status == 429 and headers:
                # X-RateLimit-Reset is on every answer but only means "wait" on a 429.
                retry_after = reset_in_seconds(headers.get("X-RateLimit-Reset"))
            return TransientProviderError(PROVIDER, detail, code=str(status), status=status,
                                          retry_after=retry_after)
        return PermanentProviderError(PROVIDER, detail, code=str(status), status=status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[api key]") if self._key else text


def mail_payload(message: OutboundMessage, sender: str,
                 unsubscribe_mailto: str | None = None) -> dict[str, Any]:
    """The Mail Send body for one message (text/plain first, then text/html, as SendGrid requires)."""
    if not message.subject:
        raise PermanentProviderError(PROVIDER, f"message {message.id} has no subject; e-mail content "
                                     "needs one", code="no_subject")
    content = [{"type": mime, "value": value}
               for mime, value in (("text/plain", message.text), ("text/html", message.html)) if value]
    if not content:
        raise PermanentProviderError(PROVIDER, f"message {message.id} has no text or HTML body",
                                     code="no_content")
    payload: dict[str, Any] = {
        "personalizations": [{"to": [{"email": message.recipient}]}],
        "from": {"email": sender},
        "subject": message.subject,
        "content": content,
        "custom_args": {"aftersale_message_id": message.id},
    }
    categories = list(dict.fromkeys(c for c in (message.journey, message.template) if c))
    if categories:
        payload["categories"] = categories
    if not message.transactional and message.unsubscribe_url:
        targets = f"<{message.unsubscribe_url}>"
        if unsubscribe_mailto:
            # Mailbox providers also accept a mailto; the one-click URL comes first.
            targets += f", <mailto:{unsubscribe_mailto}?subject=unsubscribe%20{message.id}>"
        payload["headers"] = {"List-Unsubscribe": targets,
                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return payload


def first_error_message(body: bytes | str | None) -> str | None:
    """SendGrid's ``{"errors": [{"message": ...}]}`` -> the first message, if there is one."""
    if not body:
        return None
    try:
        errors = json.loads(body).get("errors") or []
        return str(errors[0].get("message")) if errors and errors[0].get("message") else None
    except (ValueError, AttributeError, TypeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text.strip()[:200] or None


def reset_in_seconds(value: str | None, now: float | None = None) -> float | None:
    """``X-RateLimit-Reset`` (epoch seconds) as seconds from now, within the bounds of a
    ``Retry-After``."""
    if not value:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    return capped_wait(reset - (time.time() if now is None else now))
