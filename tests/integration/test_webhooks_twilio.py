"""Twilio's status callbacks and inbound messages, called in this process: ``X-Twilio-Signature`` over
PUBLIC_URL + path + parameters (computed with Twilio's own RequestValidator), delivery
statuses, suppression by error code, STOP/START/HELP, WhatsApp's 24-hour window."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.core.errors import WebhookRejected
from aftersale.db.models import Customer, DeliveryEvent, InboundMessage, Message, Suppression
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.suppression import is_suppressed
from aftersale.web.app import create_app
from aftersale.webhooks import twilio as tw
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import feed, in_process, run_to, sent

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://shop.example.com"
PHONE = "+905321234567"
ACCOUNT = "AC" + "0" * 32


@pytest.fixture
def twilio_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"twilio_auth_token": SecretStr(TOKEN)})


@pytest.fixture
def web(twilio_settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(twilio_settings, rt)) as client:
        yield client


@pytest.fixture
def message(rt: Runtime) -> Message:
    """A shipping update really sent by SMS to c-1 (Turkish, consent on every channel)."""
    feed(rt, placed("o-1", START), follow("shipped", "o-1", START))
    run_to(rt, rt.definitions(), START)
    [msg] = sent(rt)
    assert (msg.channel, msg.recipient) == ("sms", PHONE)
    return msg


def post(web: TestClient, path: str, params: dict[str, str], *, signed_url: str | None = None,
         signature: str | None = None) -> httpx2.Response:
    """Post a form the way Twilio does, signed for PUBLIC_URL + path (or ``signed_url``)."""
    if signature is None:
        signature = RequestValidator(TOKEN).compute_signature(signed_url or PUBLIC + path, params)
    return web.post(path, data=params, headers={tw.SIGNATURE_HEADER: signature})


def status_params(status: str, sid: str = "SM" + "a" * 32, to: str = PHONE,
                  **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "From": "+15017122661", "To": to,
            "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            **extra}


def inbound_params(body: str, sid: str = "SM" + "b" * 32, sender: str = PHONE,
                   **extra: str) -> dict[str, str]:
    params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "MessageSid": sid,
              "SmsMessageSid": sid, "SmsSid": sid, "From": sender, "To": "+15017122661",
              "Body": body, "NumMedia": "0", "NumSegments": "1", "FromCountry": "TR"}
    if sender.startswith("whatsapp:"):
        params |= {"To": "whatsapp:+14155238886", "ProfileName": "Ayşe", "WaId": sender[10:]}
    return params | extra


def status_path(message_id: str) -> str:
    return f"{tw.STATUS_PATH}?{urlencode({'m': message_id})}"


def count(rt: Runtime, model: type) -> int:
    with rt.factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def customer(rt: Runtime, cid: str = "c-1") -> Customer:
    with rt.factory() as session:
        found = session.get(Customer, cid)
        assert found is not None
        return found


def suppressed(rt: Runtime, channel: str = "sms", address: str = PHONE) -> bool:
    with rt.factory() as session:
        return is_suppressed(session, channel, address)


def delivery_status(rt: Runtime, message_id: str) -> str | None:
    with rt.factory() as session:
        return session.get(Message, message_id).delivery_status  # type: ignore[union-attr]


# --- the signature -----------------------------------------------------------------------------


def test_twilios_own_documentation_example_verifies() -> None:
    settings = Settings(public_url="https://mycompany.com", twilio_auth_token="12345",
                        _env_file=None)  # type: ignore[call-arg]
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    signature = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert RequestValidator("12345").compute_signature(
        "https://mycompany.com/myapp.php?foo=1&bar=2", params) == signature
    tw.verify(settings, "/myapp.php?foo=1&bar=2", params, signature)
    with pytest.raises(WebhookRejected) as rejected:
        tw.verify(settings, "/myapp.php?foo=1&bar=3", params, signature)
    assert rejected.value.status == 403
    with pytest.raises(WebhookRejected):
        tw.verify(settings, "/myapp.php?foo=1&bar=2", params | {"Digits": "1235"}, signature)


def test_a_public_url_with_a_base_path_is_part_of_the_signed_url() -> None:
    settings = Settings(public_url="https://example.com/aftersale/", twilio_auth_token=TOKEN,
                        _env_file=None)  # type: ignore[call-arg]
    params = {"MessageSid": "SM1", "MessageStatus": "sent"}
    url = "https://example.com/aftersale/webhooks/twilio/status?m=msg_1"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    tw.verify(settings, "/webhooks/twilio/status?m=msg_1", params, signature)


@pytest.mark.parametrize("case", ["wrong token", "signed for the request's own host",
                                  "parameter changed", "message id changed", "no signature"])
def test_a_bad_signature_gets_403_and_writes_nothing(web: TestClient, rt: Runtime, message: Message,
                                                     case: str) -> None:
    params = status_params("undelivered", ErrorCode="21610")
    path = status_path(message.id)
    if case == "wrong token":
        response = post(web, path, params,
                        signature=RequestValidator("other").compute_signature(PUBLIC + path, params))
    elif case == "signed for the request's own host":
        response = post(web, path, params, signed_url=str(web.base_url.join(path)))
    elif case == "parameter changed":
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
        response = post(web, path, params | {"ErrorCode": "30003"}, signature=signature)
    elif case == "message id changed":
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
        response = post(web, status_path("msg_other"), params, signature=signature)
    else:
        response = web.post(path, data=params)
    assert response.status_code == 403
    assert count(rt, DeliveryEvent) == 0 and count(rt, Suppression) == 0
    assert delivery_status(rt, message.id) is None
    inbound = post(web, tw.INBOUND_PATH, inbound_params("STOP"), signature="bm90IGl0")
    assert inbound.status_code == 403
    assert count(rt, InboundMessage) == 0 and not suppressed(rt)


def test_without_an_auth_token_webhooks_answer_503(settings: Settings, rt: Runtime) -> None:
    with in_process(create_app(settings, rt)) as client:
        response = post(client, tw.INBOUND_PATH, inbound_params("STOP"))
    assert response.status_code == 503 and "AFTERSALE_TWILIO_AUTH_TOKEN" in response.text
    assert count(rt, InboundMessage) == 0


# --- status callbacks --------------------------------------------------------------------------


def test_status_callbacks_are_stored_and_move_the_message_forward(
        web: TestClient, rt: Runtime, message: Message) -> None:
    path = status_path(message.id)
    for status in ("queued", "sent", "delivered"):
        response = post(web, path, status_params(status))
        assert response.status_code == 200 and response.content == b""
    late = post(web, path, status_params("sent"))  # Twilio retrying an earlier callback
    assert late.status_code == 200
    with rt.factory() as session:
        stored = list(session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)))
    assert [(r.kind, r.provider_event_id) for r in stored] == [
        ("queued", f"SM{'a' * 32}:queued"), ("sent", f"SM{'a' * 32}:sent"),
        ("delivered", f"SM{'a' * 32}:delivered")]
    row = stored[-1]
    assert (row.provider, row.message_id, row.provider_message_id, row.recipient) == (
        "twilio", message.id, "SM" + "a" * 32, PHONE)
    assert row.occurred_at == START and row.error_code is None
    assert row.raw == status_params("delivered")
    assert delivery_status(rt, message.id) == "delivered"
    assert not suppressed(rt)


@pytest.mark.parametrize(("status", "code", "reason", "consent"), [
    ("undelivered", "21610", "stop", False),
    ("failed", "21211", "invalid", True),
    ("failed", "21614", "invalid", True),
])
def test_an_error_code_that_rules_out_the_number_suppresses_it(
        web: TestClient, rt: Runtime, message: Message, status: str, code: str, reason: str,
        consent: bool) -> None:
    response = post(web, status_path(message.id), status_params(status, ErrorCode=code))
    assert response.status_code == 200
    assert suppressed(rt) and not suppressed(rt, "whatsapp")
    with rt.factory() as session:
        row = session.scalars(select(Suppression)).one()
        assert (row.channel, row.address, row.reason, row.source, row.customer_id) == (
            "sms", PHONE, reason, "twilio", "c-1")
        event = session.scalars(select(DeliveryEvent)).one()
        assert (event.kind, event.error_code) == (status, code)
    assert customer(rt).consent_sms is consent
    assert delivery_status(rt, message.id) == status


def test_a_transient_failure_does_not_suppress(web: TestClient, rt: Runtime, message: Message) -> None:
    post(web, status_path(message.id), status_params("undelivered", ErrorCode="30003"))
    assert not suppressed(rt)
    with rt.factory() as session:
        assert session.scalars(select(DeliveryEvent.reason)).one() == "unreachable handset"


def test_a_whatsapp_read_receipt_is_a_whatsapp_event(web: TestClient, rt: Runtime) -> None:
    to = f"whatsapp:{PHONE}"
    post(web, status_path("msg_wa"), status_params("read", to=to))
    post(web, status_path("msg_wa"), status_params("failed", sid="SM" + "c" * 32, to=to,
                                                        ErrorCode="21610"))
    with rt.factory() as session:
        kinds = list(session.scalars(select(DeliveryEvent.kind).order_by(DeliveryEvent.id)))
    assert kinds == ["read", "failed"]
    assert suppressed(rt, "whatsapp") and not suppressed(rt, "sms")


def test_a_status_callback_without_message_sid_gets_400(web: TestClient, rt: Runtime) -> None:
    params = {"MessageStatus": "delivered", "To": PHONE}
    assert post(web, status_path("msg_1"), params).status_code == 400
    assert count(rt, DeliveryEvent) == 0


# --- inbound messages --------------------------------------------------------------------------


@pytest.fixture
def known(rt: Runtime) -> None:
    """c-1 (Turkish, phone +905321234567) is a customer."""
    feed(rt, placed("o-1", START))
    run_to(rt, rt.definitions(), START)
    assert customer(rt).consent_sms is True


def twiml(response: httpx2.Response) -> ET.Element:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)


@pytest.mark.parametrize("body", ["STOP", "stop", " Stop ", "Stop.", "UNSUBSCRIBE", "quit", "OptOut"])
def test_stop_in_any_case_suppresses_sms_and_withdraws_consent(
        web: TestClient, rt: Runtime, known: None, body: str) -> None:
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params(body)))
    assert root.tag == "Response" and len(root) == 0
    assert suppressed(rt) and not suppressed(rt, "whatsapp")
    assert customer(rt).consent_sms is False and customer(rt).consent_whatsapp is True
    with rt.factory() as session:
        stored = session.scalars(select(InboundMessage)).one()
        assert (stored.channel, stored.from_address, stored.body, stored.customer_id) == (
            "sms", PHONE, body, "c-1")
        assert stored.raw["MessageSid"] == "SM" + "b" * 32


def test_start_lifts_the_stop_and_grants_consent_again(web: TestClient, rt: Runtime,
                                                        known: None) -> None:
    post(web, tw.INBOUND_PATH, inbound_params("STOP", sid="SM1"))
    assert suppressed(rt)
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params("start", sid="SM2")))
    assert len(root) == 0
    assert not suppressed(rt) and customer(rt).consent_sms is True
    with rt.factory() as session:
        assert session.scalars(select(Suppression.lifted_at)).one() == START


def test_a_sentence_containing_stop_is_not_an_opt_out(web: TestClient, rt: Runtime,
                                                      known: None) -> None:
    twiml(post(web, tw.INBOUND_PATH, inbound_params("Please don't stop, I love it")))
    assert not suppressed(rt) and customer(rt).consent_sms is True
    assert count(rt, InboundMessage) == 1


def test_advanced_opt_out_types_win_over_the_words(web: TestClient, rt: Runtime, known: None) -> None:
    post(web, tw.INBOUND_PATH, inbound_params("ARRET", OptOutType="STOP"))
    assert suppressed(rt)


def test_help_is_answered_with_the_shops_help_text_in_the_customers_language(
        web: TestClient, rt: Runtime, known: None) -> None:
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params("help")))
    [reply] = root.findall("Message")
    assert reply.text is not None
    assert reply.text.startswith("Atlas Store: Sorunuz mu var?")
    assert "help@atlas-store.example" in reply.text and "STOP" in reply.text
    assert not suppressed(rt)


def test_help_from_an_unknown_number_is_answered_in_the_default_language(
        web: TestClient, rt: Runtime) -> None:
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params("INFO", sender="+48601234567")))
    reply = root.find("Message")
    assert reply is not None and reply.text is not None
    assert reply.text.startswith("Atlas Store: Questions?")
    with rt.factory() as session:
        assert session.scalars(select(InboundMessage.customer_id)).one() is None


def test_a_whatsapp_message_opens_the_24_hour_window(web: TestClient, rt: Runtime, known: None) -> None:
    assert customer(rt).whatsapp_last_inbound_at is None
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(START + timedelta(hours=2))
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params("Merhaba!", sender=f"whatsapp:{PHONE}")))
    assert len(root) == 0
    assert customer(rt).whatsapp_last_inbound_at == START + timedelta(hours=2)
    with rt.factory() as session:
        stored = session.scalars(select(InboundMessage)).one()
        assert (stored.channel, stored.from_address, stored.to_address) == (
            "whatsapp", PHONE, "whatsapp:+14155238886")
    assert not suppressed(rt, "whatsapp")


def test_stop_on_whatsapp_suppresses_whatsapp_only(web: TestClient, rt: Runtime, known: None) -> None:
    post(web, tw.INBOUND_PATH, inbound_params("STOP", sender=f"whatsapp:{PHONE}"))
    assert suppressed(rt, "whatsapp") and not suppressed(rt, "sms")
    assert customer(rt).consent_whatsapp is False and customer(rt).consent_sms is True


def test_a_repeated_message_sid_is_stored_once_and_acted_on_once(web: TestClient, rt: Runtime,
                                                                known: None) -> None:
    stop = inbound_params("STOP", sid="SM-stop")
    post(web, tw.INBOUND_PATH, stop)
    post(web, tw.INBOUND_PATH, inbound_params("START", sid="SM-start"))
    again = post(web, tw.INBOUND_PATH, stop)  # Twilio retrying the first request
    assert again.status_code == 200
    assert count(rt, InboundMessage) == 2
    assert not suppressed(rt) and customer(rt).consent_sms is True


def test_an_ordinary_reply_is_stored_and_answered_with_nothing(web: TestClient, rt: Runtime,
                                                               known: None) -> None:
    root = twiml(post(web, tw.INBOUND_PATH, inbound_params("9")))
    assert len(root) == 0
    with rt.factory() as session:
        assert session.scalars(select(InboundMessage.body)).one() == "9"
    assert not suppressed(rt)


def test_an_inbound_message_without_a_sender_gets_400(web: TestClient, rt: Runtime) -> None:
    params: dict[str, Any] = inbound_params("STOP")
    del params["From"]
    assert post(web, tw.INBOUND_PATH, params).status_code == 400
    assert count(rt, InboundMessage) == 0


def test_a_callback_without_to_suppresses_the_address_the_message_went_to(
        web: TestClient, rt: Runtime, message: Message) -> None:
    params = status_params("undelivered", ErrorCode="21610")
    del params["To"]
    post(web, status_path(message.id), params)
    assert suppressed(rt)
