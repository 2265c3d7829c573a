"""The SendGrid e-mail channel, through the official client, over HTTP to the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from aftersale.channels.base import OutboundMessage, SendResult
from aftersale.channels.sendgrid import SendGridEmailChannel, reset_in_seconds
from aftersale.config import Settings
from aftersale.core.backoff import retry_after_seconds
from aftersale.core.errors import ConfigError
from aftersale.emulators.sendgrid import MAIL_SEND, SendGridEmulator
from aftersale.emulators.server import Reply, closed_port

API_KEY = "SG.aftersale-test.5ecret-key-never-in-errors"
TIMEOUT = 1.0

MARKETING = OutboundMessage(
    id="msg-1", channel="email", recipient="ayse@example.com", text="Merhaba Ayşe",
    subject="Nasıl gidiyor?", html="<p>Merhaba Ayşe</p>", transactional=False,
    journey="post-purchase", template="csat_checkin", customer_id="c-1",
    unsubscribe_url="https://shop.example.com/u/tok-1")
SHIPPING = replace(MARKETING, id="msg-2", subject="Your order shipped", text="On its way",
                   html=None, transactional=True, template="shipping_update",
                   unsubscribe_url="https://shop.example.com/u/tok-2")


def settings_for(base_url: str, api_key: str = API_KEY) -> Settings:
    return Settings(email_provider="sendgrid", sendgrid_api_key=api_key, sendgrid_base_url=base_url,
                    email_from="shop@example.com", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def emulator() -> Iterator[SendGridEmulator]:
    with SendGridEmulator(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def channel(emulator: SendGridEmulator) -> SendGridEmailChannel:
    return SendGridEmailChannel(settings_for(emulator.base_url), timeout=TIMEOUT)


# -- what goes over the wire ----------------------------------------------------------------

def test_a_marketing_mail_is_posted_to_mail_send_with_our_id_categories_and_unsubscribe_headers(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    [result] = channel.send_batch([MARKETING])

    [request] = emulator.requests
    assert (request.method, request.path) == ("POST", MAIL_SEND)
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "personalizations": [{"to": [{"email": "ayse@example.com"}]}],
        "from": {"email": "shop@example.com"},
        "subject": "Nasıl gidiyor?",
        "content": [{"type": "text/plain", "value": "Merhaba Ayşe"},
                    {"type": "text/html", "value": "<p>Merhaba Ayşe</p>"}],
        "custom_args": {"aftersale_message_id": "msg-1"},
        "categories": ["post-purchase", "csat_checkin"],
        "headers": {"List-Unsubscribe": "<https://shop.example.com/u/tok-1>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    [(x_message_id, _)] = emulator.sent
    assert result == SendResult("msg-1", "sent", provider_message_id=x_message_id)


def test_a_transactional_mail_carries_no_unsubscribe_headers(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    [result] = channel.send_batch([SHIPPING])

    body = emulator.requests[0].json
    assert "headers" not in body
    assert body["content"] == [{"type": "text/plain", "value": "On its way"}]
    assert body["categories"] == ["post-purchase", "shipping_update"]
    assert result.status == "sent"


def test_marketing_mail_without_an_unsubscribe_url_has_no_headers_and_empty_categories_are_skipped(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    message = replace(MARKETING, unsubscribe_url=None, journey="", template="winback")
    channel.send_batch([message])

    body = emulator.requests[0].json
    assert "headers" not in body
    assert body["categories"] == ["winback"]
    channel.send_batch([replace(MARKETING, journey="", template="")])
    assert "categories" not in emulator.requests[1].json


def test_each_mail_gets_its_own_provider_id_and_one_failure_does_not_stop_the_batch(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    emulator.enqueue(Reply(202, headers={"X-Message-Id": "first"}),
                     Reply(400, {"errors": [{"message": "Does not contain a valid address.",
                                             "field": "personalizations.0.to.0.email"}]}))
    messages = [replace(SHIPPING, id=f"m{i}") for i in range(4)]

    results = channel.send_batch(messages)

    assert [r.message_id for r in results] == ["m0", "m1", "m2", "m3"]
    assert [r.status for r in results] == ["sent", "failed", "sent", "sent"]
    assert results[0].provider_message_id == "first"
    ids = [r.provider_message_id for r in results[2:]]
    assert all(ids) and len(set(ids)) == 2
    assert [r.json["custom_args"] for r in emulator.requests] == [
        {"aftersale_message_id": f"m{i}"} for i in range(4)]


def test_a_mail_without_subject_fails_before_calling_sendgrid(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    [result] = channel.send_batch([replace(MARKETING, subject=None)])
    assert (result.status, result.error_code) == ("failed", "no_subject")
    assert emulator.requests == []


def test_the_api_key_is_required() -> None:
    with pytest.raises(ConfigError, match="AFTERSALE_SENDGRID_API_KEY"):
        SendGridEmailChannel(Settings(_env_file=None))  # type: ignore[call-arg]


# -- errors: one table, the same cases as the Twilio channel's ------------------------------

@dataclass(frozen=True)
class ErrorCase:
    id: str
    reply: Reply | None  # None: the case sets the scene itself (see the test)
    status: str
    code: str | None
    retry_after: float | None = None
    error_contains: str = ""


ERROR_CASES = [
    ErrorCase("429 with Retry-After", Reply(429, {"errors": [{"message": "too many requests"}]},
                                            {"Retry-After": "2"}), "retry", "429", 2.0),
    ErrorCase("500", Reply(500, {"errors": [{"message": "internal error"}]}), "retry", "500",
              error_contains="internal error"),
    ErrorCase("502 (no exception class of its own)", Reply(502, b"<html>bad gateway</html>"),
              "retry", "502"),
    ErrorCase("503 with Retry-After", Reply(503, None, {"Retry-After": "30"}), "retry", "503", 30.0),
    ErrorCase("timeout", Reply(202, delay=TIMEOUT + 0.5), "retry", "no_answer",
              error_contains="may have been accepted"),
    ErrorCase("400 invalid address", Reply(400, {"errors": [
        {"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email",
         "help": None}]}), "failed", "400", error_contains="Does not contain a valid address."),
    ErrorCase("403 sender not verified", Reply(403, {"errors": [
        {"message": "The from address does not match a verified Sender Identity."}]}),
        "failed", "403", error_contains="verified Sender Identity"),
    ErrorCase("413 too large", Reply(413, {"errors": [{"message": "payload too large"}]}),
              "failed", "413"),
    ErrorCase("wrong API key", None, "failed", "401", error_contains="authorization grant is invalid"),
    ErrorCase("connection refused (emulator stopped)", None, "retry", "unreachable",
              error_contains="Connection refused"),
    ErrorCase("connection refused (nothing listening)", None, "retry", "unreachable",
              error_contains="Connection refused"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_provider_errors_become_retry_or_failed_results(
        emulator: SendGridEmulator, case: ErrorCase) -> None:
    channel = SendGridEmailChannel(settings_for(emulator.base_url), timeout=TIMEOUT)
    if case.reply is not None:
        emulator.enqueue(case.reply)
    elif case.id == "wrong API key":
        emulator.api_key = "SG.another-key"
    elif case.id.endswith("(emulator stopped)"):
        emulator.stop()
    else:
        channel = SendGridEmailChannel(settings_for(f"http://127.0.0.1:{closed_port()}"),
                                       timeout=TIMEOUT)

    started = time.monotonic()
    [result] = channel.send_batch([MARKETING])

    assert time.monotonic() - started < TIMEOUT + 1
    assert (result.message_id, result.status, result.error_code) == ("msg-1", case.status, case.code)
    assert result.provider_message_id is None
    assert result.retry_after == case.retry_after
    assert result.error and result.error.startswith("sendgrid: ")
    assert case.error_contains in result.error
    assert API_KEY not in result.error


def test_a_429_without_retry_after_waits_until_the_rate_limit_resets(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    emulator.enqueue(Reply(429, {"errors": [{"message": "too many requests"}]},
                           {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset": str(int(time.time()) + 5)}))
    [result] = channel.send_batch([MARKETING])
    assert result.status == "retry"
    assert result.retry_after is not None and 3 <= result.retry_after <= 5


def test_a_500_ignores_the_rate_limit_reset_header(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    emulator.enqueue(Reply(500, None, {"X-RateLimit-Reset": str(int(time.time()) + 60)}))
    [result] = channel.send_batch([MARKETING])
    assert (result.status, result.retry_after) == ("retry", None)


def test_the_api_key_is_scrubbed_even_when_the_provider_echoes_it(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    emulator.enqueue(Reply(400, {"errors": [{"message": f"key {API_KEY} is malformed"}]}))
    [result] = channel.send_batch([MARKETING])
    assert result.error == "sendgrid: HTTP 400: key [api key] is malformed (code 400)"


def test_the_channel_recovers_when_the_emulator_comes_back(
        emulator: SendGridEmulator, channel: SendGridEmailChannel) -> None:
    emulator.stop()
    assert channel.send_batch([MARKETING])[0].status == "retry"
    emulator.start()
    assert channel.send_batch([MARKETING])[0].status == "sent"


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("2", 2.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
    ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),  # an HTTP date, 100 s after the epoch, "now" at 60
])
def test_retry_after_is_read_as_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=60.0) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("1000", 10.0), ("900", 0.0), ("x", None)])
def test_the_rate_limit_reset_is_seconds_from_now_never_negative(
        value: str | None, expected: float | None) -> None:
    assert reset_in_seconds(value, now=990.0) == expected


def test_a_configured_mailto_is_offered_after_the_one_click_url() -> None:
    from aftersale.channels.sendgrid import mail_payload

    message = OutboundMessage(id="msg_1", channel="email", recipient="a@example.com", text="hi",
                              subject="Hello", unsubscribe_url="https://shop.example.com/u/t")
    headers = mail_payload(message, "shop@example.com", "unsubscribe@example.com")["headers"]
    assert headers["List-Unsubscribe"] == (
        "<https://shop.example.com/u/t>, "
        "<mailto:unsubscribe@example.com?subject=unsubscribe%20msg_1>")
