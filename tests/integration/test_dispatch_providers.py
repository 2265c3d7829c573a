"""The whole dispatch path with the real SendGrid and Twilio clients, over HTTP, against the
local emulators: what reaches the provider, what we record, and what happens when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import Message, Suppression
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.emulators.server import Reply
from aftersale.emulators.twilio import TwilioEmulator
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, run_to, sent, treated_customer

ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-test-token"
KEY = "SG.test-key"


@pytest.fixture
def providers(settings: Settings) -> Iterator[tuple[Runtime, SendGridEmulator, TwilioEmulator]]:
    with SendGridEmulator(api_key=KEY) as sendgrid, \
            TwilioEmulator(account_sid=ACCOUNT, auth_token=TOKEN) as twilio:
        configured = Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
            "email_provider": "sendgrid", "sendgrid_api_key": KEY,
            "sendgrid_base_url": sendgrid.base_url, "sms_provider": "twilio",
            "twilio_account_sid": ACCOUNT, "twilio_auth_token": TOKEN,
            "twilio_base_url": twilio.base_url, "twilio_from": "+15017122661",
            "provider_timeout_seconds": 1.0})
        rt = open_runtime(configured, SimulatedClock(START))
        yield rt, sendgrid, twilio
        rt.engine.dispose()


def test_messages_go_through_the_official_clients_and_are_recorded(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, sendgrid, twilio = providers
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START, cid),
         follow("delivered", "o-1", START, cid))
    run_to(rt, definitions, START + days(1), tick=timedelta(hours=6))
    shipping, tutorial = sent(rt, cid)
    [sms] = twilio.messages
    assert (shipping.channel, shipping.provider_message_id) == ("sms", sms["sid"])
    assert sms["to"] == "+905321234567" and "https://track.example.com/o-1" in sms["body"]
    [(sendgrid_id, mail)] = sendgrid.sent
    assert (tutorial.channel, tutorial.provider_message_id) == ("email", sendgrid_id)
    assert mail["custom_args"] == {"aftersale_message_id": tutorial.id}
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["headers"]["List-Unsubscribe"].startswith("<https://shop.example.com/u/")
    assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]


def test_a_rate_limited_send_is_retried_after_the_providers_delay_and_sent_once(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, _, twilio = providers
    definitions = rt.definitions()
    twilio.enqueue(Reply(429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                         {"Retry-After": "600"}),
                   Reply(503, {"code": 20503, "message": "Unavailable", "status": 503}))
    feed(rt, placed("o-1", START, "c-1"), follow("shipped", "o-1", START, "c-1"))
    run_to(rt, definitions, START)
    [message] = sent(rt, "c-1")
    assert message.status == "pending" and message.due_at == START + timedelta(seconds=600)
    run_to(rt, definitions, START + timedelta(minutes=10))  # the 503: backoff doubles to 2 min
    [message] = sent(rt, "c-1")
    assert message.status == "pending" and message.attempts == 2
    run_to(rt, definitions, START + timedelta(minutes=13), tick=timedelta(minutes=1))
    [message] = sent(rt, "c-1")
    assert message.status == "sent" and message.attempts == 3
    assert len(twilio.messages) == 1  # accepted once, however many tries


def test_a_permanent_error_is_recorded_with_the_providers_code(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, _, twilio = providers
    twilio.enqueue(Reply(400, {"code": 21211, "message": "The 'To' number is not valid.",
                               "status": 400}))
    feed(rt, placed("o-1", START, "c-1"), follow("shipped", "o-1", START, "c-1"))
    run_to(rt, rt.definitions(), START + days(1))
    [message] = sent(rt, "c-1")
    assert message.status == "failed" and "21211" in (message.status_reason or "")


def test_a_send_that_got_no_answer_is_flagged_for_review_and_never_resent(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, _, twilio = providers
    twilio.enqueue(Reply(201, {}, delay=3.0))  # longer than the 1 s client timeout
    feed(rt, placed("o-1", START, "c-1"), follow("shipped", "o-1", START, "c-1"))
    run_to(rt, rt.definitions(), START + days(1), tick=timedelta(hours=6))
    [message] = sent(rt, "c-1")
    assert message.status == "unknown" and "no answer" in (message.status_reason or "")
    assert len(twilio.requests) == 1
    with rt.factory() as session:
        assert session.scalar(select(Message.attempts)) == 1


def test_a_stop_reported_by_the_send_itself_suppresses_the_number(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, _, twilio = providers
    twilio.enqueue(Reply(400, {"code": 21610, "message": "Attempt to send to unsubscribed "
                               "recipient", "status": 400}))
    feed(rt, placed("o-1", START, "c-1", email=None), follow("shipped", "o-1", START, "c-1"))
    run_to(rt, rt.definitions(), START)
    [first] = sent(rt, "c-1")
    assert (first.status, first.provider) == ("failed", "twilio")
    with rt.factory() as session:
        [row] = session.scalars(select(Suppression)).all()
    assert (row.channel, row.address, row.source) == ("sms", "+905321234567", "twilio")
    feed(rt, placed("o-2", START, "c-1", email=None), follow("shipped", "o-2", START, "c-1"))
    run_to(rt, rt.definitions(), START + timedelta(hours=1))
    second = next(m for m in sent(rt, "c-1") if m.id != first.id)
    assert second.status == "not_sent" and "suppressed" in (second.status_reason or "")
    assert len(twilio.requests) == 1  # the suppressed number was not tried again


def test_a_suppressed_email_matches_whatever_its_case(
        providers: tuple[Runtime, SendGridEmulator, TwilioEmulator]) -> None:
    rt, sendgrid, _ = providers
    with rt.factory() as session, session.begin():
        from aftersale.pipeline.suppression import suppress

        suppress(session, "email", "Ayse.Y@Example.com", None, "bounce", "test", START)
    feed(rt, placed("o-1", START, "c-1", email="Ayse.Y@example.com", phone=None),
         follow("shipped", "o-1", START, "c-1"))
    run_to(rt, rt.definitions(), START)
    [message] = sent(rt, "c-1")
    assert message.status == "not_sent" and "suppressed (bounce)" in (message.status_reason or "")
    assert sendgrid.requests == []


def test_real_providers_refuse_to_send_links_nobody_could_verify(settings: Settings) -> None:
    from aftersale.core.errors import ConfigError

    configured = Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
        "secret_key": None, "sms_provider": "twilio", "twilio_account_sid": ACCOUNT,
        "twilio_auth_token": TOKEN, "twilio_from": "+15017122661"})
    rt = open_runtime(configured, SimulatedClock(START))
    with pytest.raises(ConfigError, match="AFTERSALE_SECRET_KEY is required to send through twilio"):
        rt.links()
    rt.engine.dispose()
