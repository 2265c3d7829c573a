"""SMS and WhatsApp through Twilio's Messages API, with the official ``twilio`` client.

Both channels share one ``twilio.rest.Client`` per account and base URL. Every request goes to
``AFTERSALE_TWILIO_BASE_URL``: the HTTP client rewrites scheme and host itself, so neither a
``TWILIO_REGION``/``TWILIO_EDGE`` in the environment nor a region set later can send messages
elsewhere (an emulator in tests, a proxy in production). Our message id travels in the
``StatusCallback`` URL, so every delivery callback maps back to the message.

Errors: 429, 408 and 5xx, timeouts and unreachable hosts are worth retrying
(``TransientProviderError``, with ``Retry-After`` when Twilio sends one); any other 4xx is
permanent and carries Twilio's error code: 21211 invalid To, 21610 the recipient replied STOP,
21614 not a mobile number, 63016 WhatsApp free-form text outside the 24-hour window.
Without an HTTP answer the code is ``unreachable`` (the request never reached Twilio) or
``no_answer`` (it was sent but not answered: Twilio may have accepted the message).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError

from aftersale.channels.base import OutboundMessage, SingleSendChannel
from aftersale.config import Settings
from aftersale.core.backoff import retry_after_seconds
from aftersale.core.errors import ConfigError, PermanentProviderError, TransientProviderError

PROVIDER = "twilio"
DEFAULT_TIMEOUT = 10.0  # seconds, for connect and for each read
WHATSAPP = "whatsapp:"
# Error codes of transient failures without an HTTP answer.
UNREACHABLE = "unreachable"  # the request never reached Twilio: safe to resend
NO_ANSWER = "no_answer"  # sent, but no answer: the outcome is unknown


class BaseUrlHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, pinned to one base URL, remembering each thread's last headers.

    ``TwilioRestException`` does not carry the response headers; a 429's ``Retry-After`` is
    read from ``last_headers()`` in the thread that made the call.
    """

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(timeout=timeout)
        self._base = urlsplit(base_url.rstrip("/"))
        self._local = threading.local()
        if self.session is not None:
            # With trust_env on, requests reads the environment again on every call (proxies
            # and NO_PROXY, the CA bundle, ~/.netrc): a sixth of the dispatcher's CPU. Every
            # call goes to this one base URL, so reading it once gives the same settings.
            self.proxy: dict[str, str] = get_environ_proxies(base_url) | self.proxy
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                self.session.verify = bundle
            self.session.trust_env = False

    def rewrite(self, url: str) -> str:
        """Same path and query, on our scheme and host (and under our base path, if any)."""
        parts = urlsplit(url)
        return urlunsplit((self._base.scheme, self._base.netloc, self._base.path + parts.path,
                           parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        self._local.headers = None
        response = super().request(method, self.rewrite(url), *args, **kwargs)
        self._local.headers = response.headers
        return response

    def last_headers(self) -> Mapping[str, str] | None:
        return getattr(self._local, "headers", None)


@functools.lru_cache(maxsize=8)
def shared_client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    """One client per account and base URL, shared by the SMS and WhatsApp channels."""
    # environment={}: the process's TWILIO_* variables must not change where or as whom we send.
    return Client(account_sid, auth_token, http_client=BaseUrlHttpClient(base_url, timeout),
                  environment={})


class TwilioChannel(SingleSendChannel):
    """Sends one message per Messages API call; subclasses choose the addressing."""

    provider = PROVIDER

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT):
        if not settings.twilio_account_sid or settings.twilio_auth_token is None:
            raise ConfigError("AFTERSALE_TWILIO_ACCOUNT_SID and AFTERSALE_TWILIO_AUTH_TOKEN are "
                              f"required for the Twilio {self.name} channel")
        self._token = settings.twilio_auth_token.get_secret_value()
        self.client = shared_client(settings.twilio_account_sid, self._token,
                                    str(settings.twilio_base_url), timeout)
        self._base_url = str(settings.twilio_base_url).rstrip("/")
        self._callback = f"{str(settings.public_url).rstrip('/')}/webhooks/twilio/status"

    def addressing(self, message: OutboundMessage) -> dict[str, str]:
        """``to`` and ``from_`` or ``messaging_service_sid`` for ``messages.create``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def status_callback(self, message: OutboundMessage) -> str:
        return f"{self._callback}?{urlencode({'m': message.id})}"

    def send_one(self, message: OutboundMessage) -> str | None:
        params: dict[str, Any] = {**self.addressing(message), **content_params(message),
                                  "status_callback": self.status_callback(message)}
        try:
            sent = self.client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._api_error(exc) from exc
        except requests.RequestException as exc:
            raise self._network_error(exc) from exc
        return sent.sid

    def _network_error(self, exc: requests.RequestException) -> TransientProviderError:
        """Worth retrying; the code tells a request that never left from one left unanswered."""
        host = self._base_url
        reason = _reason(exc)
        if isinstance(reason, ConnectTimeoutError) or isinstance(exc, requests.ConnectTimeout):
            # Refused, unresolvable or timed out while connecting: the request did not go out.
            return TransientProviderError(PROVIDER, self._scrub(f"could not reach {host}: {reason}"),
                                          code=UNREACHABLE)
        return TransientProviderError(
            PROVIDER, self._scrub(f"no answer from {host}: {reason}; the message may have been "
                                  "accepted"), code=NO_ANSWER)

    def _api_error(self, exc: TwilioRestException | TwilioServiceException
                   ) -> TransientProviderError | PermanentProviderError:
        status = int(exc.status)
        code = str(exc.code) if exc.code is not None else str(status)
        if isinstance(exc, TwilioRestException):
            text = str(exc.msg).removeprefix("Unable to create record: ")
        else:
            text = exc.detail or exc.title
        detail = self._scrub(f"HTTP {status}: {text}")
        if status in (408, 429) or status >= 500:
            http = self.client.http_client
            headers = http.last_headers() if isinstance(http, BaseUrlHttpClient) else None
            retry_after = retry_after_seconds(headers.get("Retry-After")) if headers else None
            return TransientProviderError(PROVIDER, detail, code=code, status=status,
                                          retry_after=retry_after)
        return PermanentProviderError(PROVIDER, detail, code=code, status=status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[auth token]") if self._token else text


class TwilioSmsChannel(TwilioChannel):
    """SMS from ``AFTERSALE_TWILIO_MESSAGING_SERVICE_SID`` when set (it wins), else from
    ``AFTERSALE_TWILIO_FROM``."""

    name = "sms"

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(settings, timeout=timeout)
        if settings.twilio_messaging_service_sid:
            self._sender = {"messaging_service_sid": settings.twilio_messaging_service_sid}
        elif settings.twilio_from:
            self._sender = {"from_": settings.twilio_from}
        else:
            raise ConfigError("AFTERSALE_TWILIO_FROM or AFTERSALE_TWILIO_MESSAGING_SERVICE_SID is "
                              "required when AFTERSALE_SMS_PROVIDER=twilio")

    def addressing(self, message: OutboundMessage) -> dict[str, str]:
        return {"to": message.recipient, **self._sender}


class TwilioWhatsAppChannel(TwilioChannel):
    """WhatsApp: both numbers as ``whatsapp:+E164``, from ``AFTERSALE_TWILIO_WHATSAPP_FROM``.

    Free-form text is only delivered within 24 h of the customer's last inbound message;
    outside it Twilio answers 63016 and an approved template is needed (see ``content_params``).
    """

    name = "whatsapp"

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(settings, timeout=timeout)
        if not settings.twilio_whatsapp_from:
            raise ConfigError("AFTERSALE_TWILIO_WHATSAPP_FROM is required when "
                              "AFTERSALE_WHATSAPP_PROVIDER=twilio")
        self._from = whatsapp_address(settings.twilio_whatsapp_from)

    def addressing(self, message: OutboundMessage) -> dict[str, str]:
        return {"to": whatsapp_address(message.recipient), "from_": self._from}


def whatsapp_address(number: str) -> str:
    """``+905321234567`` -> ``whatsapp:+905321234567``; an address already prefixed is kept."""
    return number if number.startswith(WHATSAPP) else f"{WHATSAPP}{number}"


def content_params(message: OutboundMessage) -> dict[str, str]:
    """The message's content: free-form ``body``, or an approved template.

    The seam for the WhatsApp 24-hour window: a message object with a ``content_sid``
    attribute (``HX...``) and optional ``content_variables`` (a dict such as
    ``{"1": "Ayşe"}`` or its JSON text) is sent as that template, without a body.
    ``OutboundMessage`` has no such fields yet; they are read with ``getattr``.
    """
    content_sid = getattr(message, "content_sid", None)
    if not content_sid:
        return {"body": message.text}
    params = {"content_sid": str(content_sid)}
    variables = getattr(message, "content_variables", None)
    if variables:
        params["content_variables"] = (variables if isinstance(variables, str)
                                       else json.dumps(variables, ensure_ascii=False))
    return params


def _reason(exc: requests.RequestException) -> object:
    """The urllib3 error inside requests' wrapper (shorter, and says what happened)."""
    inner = exc.args[0] if exc.args else None
    return getattr(inner, "reason", None) or inner or exc
