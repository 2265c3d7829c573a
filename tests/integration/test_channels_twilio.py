"""The Twilio SMS and WhatsApp channels, through the official client, over HTTP to the emulator."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from aftersale.channels.base import OutboundMessage, SendResult
from aftersale.channels.twilio import (
    BaseUrlHttpClient,
    TwilioSmsChannel,
    TwilioWhatsAppChannel,
    content_params,
    whatsapp_address,
)
from aftersale.config import Settings
from aftersale.core.errors import ConfigError
from aftersale.emulators.server import Reply, closed_port
from aftersale.emulators.twilio import TwilioEmulator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "auth-token-5ecret-never-in-errors"
TIMEOUT = 1.0
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
SMS_SID = re.compile(r"^SM[0-9a-f]{32}$")

SMS = OutboundMessage(id="msg-1", channel="sms", recipient="+905321234567",
                      text="Merhaba Ayşe, siparişiniz yolda.", journey="post-purchase",
                      template="shipping_update", transactional=True)
WHATSAPP = replace(SMS, id="msg-2", channel="whatsapp", recipient="whatsapp:+905321234567")


@dataclass(frozen=True)
class TemplateMessage(OutboundMessage):
    """What the 24-hour-window logic will hand the channel: an approved template."""

    content_sid: str | None = None
    content_variables: dict[str, str] | str | None = None


def settings_for(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        sms_provider="twilio", whatsapp_provider="twilio", twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN, twilio_base_url=base_url, twilio_from="+15017122661",
        twilio_whatsapp_from="+14155238886", public_url="https://shop.example.com")
    values.update(overrides)
    return Settings(**values, _env_file=None)


@pytest.fixture
def emulator() -> Iterator[TwilioEmulator]:
    with TwilioEmulator(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as running:
        yield running


@pytest.fixture
def sms(emulator: TwilioEmulator) -> TwilioSmsChannel:
    return TwilioSmsChannel(settings_for(emulator.base_url), timeout=TIMEOUT)


@pytest.fixture
def whatsapp(emulator: TwilioEmulator) -> TwilioWhatsAppChannel:
    return TwilioWhatsAppChannel(settings_for(emulator.base_url), timeout=TIMEOUT)


# -- what goes over the wire ----------------------------------------------------------------

def test_an_sms_is_a_form_post_to_messages_with_basic_auth_and_our_id_in_the_status_callback(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    [result] = sms.send_batch([SMS])

    [request] = emulator.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    basic = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": ["+905321234567"], "From": ["+15017122661"],
        "Body": ["Merhaba Ayşe, siparişiniz yolda."],
        "StatusCallback": ["https://shop.example.com/webhooks/twilio/status?m=msg-1"],
    }
    [created] = emulator.messages
    assert SMS_SID.match(created["sid"])
    assert result == SendResult("msg-1", "sent", provider_message_id=created["sid"])


def test_the_messaging_service_wins_over_the_from_number(emulator: TwilioEmulator) -> None:
    channel = TwilioSmsChannel(settings_for(emulator.base_url,
                                            twilio_messaging_service_sid="MG" + "a" * 32),
                               timeout=TIMEOUT)
    [result] = channel.send_batch([SMS])

    form = emulator.requests[0].form
    assert form["MessagingServiceSid"] == ["MG" + "a" * 32]
    assert "From" not in form
    assert result.status == "sent"


def test_the_messaging_service_alone_is_enough(emulator: TwilioEmulator) -> None:
    channel = TwilioSmsChannel(settings_for(emulator.base_url, twilio_from=None,
                                            twilio_messaging_service_sid="MG" + "b" * 32),
                               timeout=TIMEOUT)
    assert channel.send_batch([SMS])[0].status == "sent"
    assert emulator.requests[0].field("MessagingServiceSid") == "MG" + "b" * 32


@pytest.mark.parametrize("configured_from", ["+14155238886", "whatsapp:+14155238886"])
def test_whatsapp_addresses_both_numbers_as_whatsapp_e164(emulator: TwilioEmulator,
                                                          configured_from: str) -> None:
    channel = TwilioWhatsAppChannel(settings_for(emulator.base_url,
                                                 twilio_whatsapp_from=configured_from),
                                    timeout=TIMEOUT)
    [result] = channel.send_batch([WHATSAPP])

    assert emulator.requests[0].form == {
        "To": ["whatsapp:+905321234567"], "From": ["whatsapp:+14155238886"],
        "Body": ["Merhaba Ayşe, siparişiniz yolda."],
        "StatusCallback": ["https://shop.example.com/webhooks/twilio/status?m=msg-2"],
    }
    assert result.status == "sent"
    assert result.provider_message_id == emulator.messages[0]["sid"]


def test_whatsapp_ignores_the_sms_messaging_service(emulator: TwilioEmulator) -> None:
    channel = TwilioWhatsAppChannel(settings_for(emulator.base_url,
                                                 twilio_messaging_service_sid="MG" + "a" * 32),
                                    timeout=TIMEOUT)
    channel.send_batch([WHATSAPP])
    assert "MessagingServiceSid" not in emulator.requests[0].form


def test_a_bare_phone_number_is_addressed_as_whatsapp(emulator: TwilioEmulator,
                                                      whatsapp: TwilioWhatsAppChannel) -> None:
    whatsapp.send_batch([replace(WHATSAPP, recipient="+905321234567")])
    assert emulator.requests[0].field("To") == "whatsapp:+905321234567"


def test_a_message_with_a_content_sid_is_sent_as_that_template_without_a_body(
        emulator: TwilioEmulator, whatsapp: TwilioWhatsAppChannel) -> None:
    message = TemplateMessage(**{**WHATSAPP.__dict__, "content_sid": "HX" + "c" * 32,
                                 "content_variables": {"1": "Ayşe", "2": "#1001"}})
    [result] = whatsapp.send_batch([message])

    form = emulator.requests[0].form
    assert form["ContentSid"] == ["HX" + "c" * 32]
    assert form["ContentVariables"] == ['{"1": "Ayşe", "2": "#1001"}']
    assert "Body" not in form
    assert result.status == "sent"


def test_content_params_default_to_the_free_form_body() -> None:
    assert content_params(WHATSAPP) == {"body": WHATSAPP.text}
    assert content_params(TemplateMessage(**{**WHATSAPP.__dict__, "content_sid": "HX1",
                                             "content_variables": '{"1": "x"}'})) == {
        "content_sid": "HX1", "content_variables": '{"1": "x"}'}
    assert whatsapp_address("whatsapp:+1555") == "whatsapp:+1555"


def test_the_message_id_is_url_encoded_in_the_status_callback(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    sms.send_batch([replace(SMS, id="a b&c")])
    assert emulator.requests[0].field("StatusCallback") == (
        "https://shop.example.com/webhooks/twilio/status?m=a+b%26c")


def test_sms_and_whatsapp_share_one_client(sms: TwilioSmsChannel,
                                           whatsapp: TwilioWhatsAppChannel) -> None:
    assert sms.client is whatsapp.client


def test_region_and_edge_cannot_move_requests_off_the_base_url(
        emulator: TwilioEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    channel = TwilioSmsChannel(settings_for(emulator.base_url), timeout=TIMEOUT)
    assert channel.send_batch([SMS])[0].status == "sent"
    channel.client.region, channel.client.edge = "ie1", "dublin"
    assert channel.send_batch([SMS])[0].status == "sent"
    assert [r.path for r in emulator.requests] == [MESSAGES_PATH, MESSAGES_PATH]


def test_the_http_client_keeps_path_and_query_under_the_base_url() -> None:
    client = BaseUrlHttpClient("http://proxy.internal:8080/twilio/")
    assert client.rewrite("https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/AC1/Messages.json?a=1") == (
        "http://proxy.internal:8080/twilio/2010-04-01/Accounts/AC1/Messages.json?a=1")


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"twilio_from": None}, "AFTERSALE_TWILIO_FROM"),
    ({"twilio_account_sid": None, "sms_provider": "sandbox", "whatsapp_provider": "sandbox"},
     "AFTERSALE_TWILIO_ACCOUNT_SID"),
])
def test_sms_needs_credentials_and_a_sender(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        TwilioSmsChannel(settings_for("http://127.0.0.1:9", **overrides))


def test_whatsapp_needs_its_own_sender() -> None:
    settings = settings_for("http://127.0.0.1:9", whatsapp_provider="sandbox", twilio_whatsapp_from=None)
    with pytest.raises(ConfigError, match="AFTERSALE_TWILIO_WHATSAPP_FROM"):
        TwilioWhatsAppChannel(settings)


# -- errors: one table, the same cases as the SendGrid channel's ----------------------------

def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"code": code, "message": message, "status": status,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}"}, headers or {})


@dataclass(frozen=True)
class ErrorCase:
    id: str
    scene: Reply | str  # a scripted reply, or: "to:NUMBER", "wrong token", "stopped", "closed port"
    status: str
    code: str | None
    retry_after: float | None = None
    error_contains: str = ""


ERROR_CASES = [
    ErrorCase("429 with Retry-After", twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "2"}),
              "retry", "20429", 2.0, "Too Many Requests"),
    ErrorCase("500", twilio_error(500, 20500, "Internal Server Error"), "retry", "20500"),
    ErrorCase("502 without JSON", Reply(502, b"<html>bad gateway</html>"), "retry", "502"),
    ErrorCase("503 with Retry-After", Reply(503, None, {"Retry-After": "30"}), "retry", "503", 30.0),
    ErrorCase("timeout", Reply(201, {}, delay=TIMEOUT + 0.5), "retry", "no_answer",
              error_contains="may have been accepted"),
    ErrorCase("21211 invalid To", "to:+15005550001", "failed", "21211", error_contains="not a valid phone"),
    ErrorCase("21211 malformed To", "to:0532 123", "failed", "21211"),
    ErrorCase("21610 replied STOP", "to:+15005550004", "failed", "21610",
              error_contains="unsubscribed recipient"),
    ErrorCase("21614 not mobile", "to:+15005550009", "failed", "21614"),
    ErrorCase("400 without a Twilio code", Reply(400, {"message": "Bad request", "status": 400}),
              "failed", "400"),
    ErrorCase("401 wrong auth token", "wrong token", "failed", "20003", error_contains="Authenticate"),
    ErrorCase("connection refused (emulator stopped)", "stopped", "retry", "unreachable",
              error_contains="Connection refused"),
    ErrorCase("connection refused (nothing listening)", "closed port", "retry", "unreachable",
              error_contains="Connection refused"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_provider_errors_become_retry_or_failed_results(emulator: TwilioEmulator, case: ErrorCase) -> None:
    base_url, message = emulator.base_url, SMS
    if isinstance(case.scene, Reply):
        emulator.enqueue(case.scene)
    elif case.scene.startswith("to:"):
        message = replace(SMS, recipient=case.scene.removeprefix("to:"))
    elif case.scene == "wrong token":
        emulator.auth_token = "another-token"
    elif case.scene == "stopped":
        emulator.stop()
    else:
        base_url = f"http://127.0.0.1:{closed_port()}"
    channel = TwilioSmsChannel(settings_for(base_url), timeout=TIMEOUT)

    started = time.monotonic()
    [result] = channel.send_batch([message])

    assert time.monotonic() - started < TIMEOUT + 1
    assert (result.message_id, result.status, result.error_code) == ("msg-1", case.status, case.code)
    assert result.provider_message_id is None
    assert result.retry_after == case.retry_after
    assert result.error and result.error.startswith("twilio: ")
    assert case.error_contains in result.error
    assert AUTH_TOKEN not in result.error


@pytest.mark.parametrize(("reply_or_to", "status", "code"), [
    (twilio_error(400, 63016, "Failed to send freeform message because you are outside the allowed "
                              "window. If you are using WhatsApp, please use a Message Template."),
     "failed", "63016"),
    (twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "1"}), "retry", "20429"),
    ("whatsapp:+15005550004", "failed", "21610"),
])
def test_whatsapp_errors_map_like_sms_ones(emulator: TwilioEmulator, whatsapp: TwilioWhatsAppChannel,
                                           reply_or_to: Reply | str, status: str, code: str) -> None:
    message = WHATSAPP
    if isinstance(reply_or_to, Reply):
        emulator.enqueue(reply_or_to)
    else:
        message = replace(WHATSAPP, recipient=reply_or_to)
    [result] = whatsapp.send_batch([message])
    assert (result.status, result.error_code) == (status, code)


def test_the_auth_token_is_scrubbed_even_when_the_provider_echoes_it(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    emulator.enqueue(twilio_error(400, 21211, f"token {AUTH_TOKEN} leaked"))
    [result] = sms.send_batch([SMS])
    assert result.error == "twilio: HTTP 400: token [auth token] leaked (code 21211)"


def test_one_failure_does_not_stop_the_batch_and_results_keep_their_order(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    messages = [replace(SMS, id="a"), replace(SMS, id="b", recipient="+15005550004"),
                replace(SMS, id="c")]
    emulator.enqueue(twilio_error(503, 20503, "Service Unavailable"))

    results = sms.send_batch(messages)

    assert [(r.message_id, r.status, r.error_code) for r in results] == [
        ("a", "retry", "20503"), ("b", "failed", "21610"), ("c", "sent", None)]
    assert results[2].provider_message_id == emulator.messages[0]["sid"]


def test_the_channel_recovers_when_the_emulator_comes_back(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    assert sms.send_batch([SMS])[0].status == "sent"  # leaves a kept-alive connection in the pool
    emulator.stop()
    assert sms.send_batch([SMS])[0].error_code == "unreachable"
    emulator.start()
    assert sms.send_batch([SMS])[0].status == "sent"


def test_retry_after_of_one_thread_is_not_read_by_another(
        emulator: TwilioEmulator, sms: TwilioSmsChannel) -> None:
    import threading

    emulator.enqueue(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "7"}))
    first = sms.send_batch([SMS])[0]
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(sms.client.http_client.last_headers()))
    thread.start()
    thread.join()
    assert first.retry_after == 7.0
    assert seen == [None]


def test_the_environment_is_read_once_with_the_answer_requests_would_give(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies, NO_PROXY and the CA bundle from the environment, read when the client is
    made rather than on every call: for the one host it talks to, the same settings."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = BaseUrlHttpClient("https://api.twilio.com")
    assert proxied.proxy.get("https") == "http://proxy.example:3128"
    assert proxied.session is not None and proxied.session.verify == "/etc/ssl/certs/corporate.pem"
    assert proxied.session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")
    assert BaseUrlHttpClient("https://api.twilio.com").proxy == {}
