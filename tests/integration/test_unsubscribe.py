"""GET/POST /u/{token} through an HTTP client calling the app in this process (the unsubscribe
page and RFC 8058 one-click), and the suppression store behind it on both databases."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.core.links import Purpose, Signer
from aftersale.db.models import Customer, Message, Suppression
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.suppression import is_suppressed, lift, suppress, suppressed_addresses
from aftersale.web.app import create_app
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.helpers import feed, in_process, run_to, sent


def one_click(web: TestClient, url: str, **headers: str) -> httpx2.Response:
    """What a mailbox provider sends for RFC 8058 one-click unsubscribe."""
    return web.post(url, content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded", **headers})


@pytest.fixture
def web(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(create_app(settings, rt)) as client:
        yield client


def email_message(rt: Runtime, cid: str = "c-1", locale: str = "tr") -> Message:
    feed(rt, placed(f"o-{cid}", START, cid=cid, phone=None, locale=locale),
         follow("shipped", f"o-{cid}", START, cid=cid))
    run_to(rt, rt.definitions(), START)
    [message] = sent(rt, cid)
    assert message.channel == "email"
    return message


def link(rt: Runtime, message: Message, channel: str = "email") -> str:
    """The path of the link we put in the message."""
    url = rt.links().unsubscribe(message.id, message.customer_id, channel)
    assert url.startswith("https://shop.example.com/u/")
    return url.removeprefix("https://shop.example.com")


def suppressions(rt: Runtime) -> list[Suppression]:
    with rt.factory() as session:
        return list(session.scalars(select(Suppression)))


def customer(rt: Runtime, cid: str = "c-1") -> Customer:
    with rt.factory() as session:
        found = session.get(Customer, cid)
        assert found is not None
        return found


def tampered(url: str) -> str:
    body, mac = url.rsplit("/", 1)[1].split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    return url.rsplit("/", 1)[0] + f"/{flipped}.{mac}"


# --- the page ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "lang", "button"), [
    ("tr", "tr", "Abonelikten çık"), ("pl-PL", "pl", "Wypisz się"), ("en", "en", "Unsubscribe"),
    ("de", "en", "Unsubscribe"),
])
def test_the_page_asks_in_the_customers_language_and_writes_nothing(
        web: TestClient, rt: Runtime, locale: str, lang: str, button: str) -> None:
    page = web.get(link(rt, email_message(rt, locale=locale)))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f'<html lang="{lang}">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert re.search(r"<h1>[^<]+</h1>", html)
    assert '<form method="post">' in html
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in html
    assert f'<button type="submit">{button}</button>' in html
    assert "Atlas Store" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html), "no external assets"
    assert "<script" not in html
    assert page.headers["cache-control"] == "no-store"
    assert suppressions(rt) == [] and customer(rt).consent_email is True


def test_one_click_unsubscribes_the_address_and_confirms_in_the_customers_language(
        web: TestClient, rt: Runtime) -> None:
    message = email_message(rt)
    url = link(rt, message)
    response = one_click(web, url)
    assert response.status_code == 200
    assert '<html lang="tr">' in response.text
    assert "<h1>Abonelikten çıktınız</h1>" in response.text
    assert "e-posta ile mesaj göndermeyecek" in response.text
    [row] = suppressions(rt)
    assert (row.channel, row.address, row.customer_id, row.reason, row.source, row.lifted_at) == (
        "email", "c-1@example.com", "c-1", "unsubscribe", "unsubscribe_link", None)
    assert customer(rt).consent_email is False and customer(rt).consent_sms is True
    with rt.factory() as session:
        assert is_suppressed(session, "email", "C-1@example.com")
    again = one_click(web, url)
    assert again.status_code == 200 and len(suppressions(rt)) == 1


def test_the_pages_button_unsubscribes_too(web: TestClient, rt: Runtime) -> None:
    url = link(rt, email_message(rt, locale="pl"))
    # What a browser sends for the form: its hidden field, form-encoded.
    response = web.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and '<html lang="pl">' in response.text
    assert "Wypisano Cię" in response.text
    assert [s.reason for s in suppressions(rt)] == ["unsubscribe"]


def test_an_sms_link_suppresses_the_phone_number_on_sms(web: TestClient, rt: Runtime) -> None:
    feed(rt, placed("o-1", START), follow("shipped", "o-1", START))
    run_to(rt, rt.definitions(), START)
    [message] = sent(rt)
    assert message.channel == "sms"
    one_click(web, link(rt, message, "sms"))
    [row] = suppressions(rt)
    assert (row.channel, row.address) == ("sms", "+905321234567")
    assert customer(rt).consent_sms is False and customer(rt).consent_email is True


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_tampered_token_gets_a_friendly_400_page_and_writes_nothing(
        web: TestClient, rt: Runtime, method: str) -> None:
    url = tampered(link(rt, email_message(rt)))
    language = {"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.8"}
    response = one_click(web, url, **language) if method == "POST" else web.get(url, headers=language)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="pl">' in response.text and "<h1>Ten link nie działa</h1>" in response.text
    assert "<form" not in response.text
    assert suppressions(rt) == [] and customer(rt).consent_email is True


@pytest.mark.parametrize("payload", [
    {"m": "msg_1", "c": "c-1", "ch": "fax"},
    {"m": "msg_1", "ch": "email"},
    {"m": 5, "c": "c-1", "ch": "email"},
])
def test_a_token_with_wrong_claims_or_another_key_is_refused(web: TestClient, rt: Runtime,
                                                             payload: dict[str, object]) -> None:
    good = Signer(b"test-secret-key").sign(Purpose.UNSUBSCRIBE, payload)
    foreign = Signer(b"another-key").sign(Purpose.UNSUBSCRIBE, {"m": "msg_1", "c": "c-1", "ch": "email"})
    for token in (good, foreign, "garbage", "a.b.c"):
        response = one_click(web, f"/u/{token}")
        assert response.status_code == 400
        assert '<html lang="en">' in response.text
    assert suppressions(rt) == []


def old_format(payload: dict[str, object], secret: bytes = b"test-secret-key") -> str:
    """A token as links were signed before itsdangerous and purposes (aftersale.core.links at
    7b825b9): HMAC-SHA256 of the base64url JSON body under the bare key, for every purpose."""
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True)
                                    .encode()).rstrip(b"=").decode()
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_links_sent_before_and_under_the_previous_key_still_unsubscribe(
        settings: Settings, rt: Runtime, web: TestClient) -> None:
    first, second, third = (email_message(rt, cid) for cid in ("c-1", "c-2", "c-3"))
    sent_link = link(rt, first)  # signed with today's key, before the rotation
    old = old_format({"m": second.id, "c": second.customer_id, "ch": "email"})
    assert one_click(web, f"/u/{old}").status_code == 200  # the old format, current key
    survey_shaped = old_format({"m": third.id, "c": third.customer_id, "k": "nps"})
    assert one_click(web, f"/u/{survey_shaped}").status_code == 400
    assert {s.customer_id for s in suppressions(rt)} == {"c-2"}
    rotation = {"secret_key": SecretStr("new-secret-key"), "secret_key_previous": settings.secret_key}
    with in_process(create_app(settings.model_copy(update=rotation), rt)) as client:
        assert one_click(client, sent_link).status_code == 200
        old = old_format({"m": third.id, "c": third.customer_id, "ch": "email"})
        assert one_click(client, f"/u/{old}").status_code == 200  # the old format, previous key
        unknown = Signer(b"another-key").sign(Purpose.UNSUBSCRIBE,
                                              {"m": third.id, "c": "c-3", "ch": "sms"})
        refused, tampered_page = (one_click(client, f"/u/{unknown}"),
                                  one_click(client, tampered(sent_link)))
    assert refused.status_code == tampered_page.status_code == 400
    assert refused.text == tampered_page.text  # the same page as a tampered link
    assert sorted((s.customer_id, s.channel) for s in suppressions(rt)) == [
        ("c-1", "email"), ("c-2", "email"), ("c-3", "email")]


def test_without_a_secret_key_links_cannot_be_checked(settings: Settings, rt: Runtime) -> None:
    token = Signer(b"test-secret-key").sign(Purpose.UNSUBSCRIBE, {"m": "msg_1", "c": "c-1", "ch": "email"})
    with in_process(create_app(settings.model_copy(update={"secret_key": None}), rt)) as client:
        response = one_click(client, f"/u/{token}")
    assert response.status_code == 503 and "<h1>" in response.text
    assert suppressions(rt) == []


def test_a_link_for_a_forgotten_customer_still_answers(web: TestClient, rt: Runtime) -> None:
    token = Signer(b"test-secret-key").sign(Purpose.UNSUBSCRIBE, {"m": "msg_gone", "c": "c-gone", "ch": "email"})
    response = one_click(web, f"/u/{token}")
    assert response.status_code == 200 and '<html lang="en">' in response.text
    assert suppressions(rt) == []


# --- the suppression store ---------------------------------------------------------------------


def test_addresses_are_compared_normalized(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        assert suppress(session, "email", " Ayse@Example.COM ", None, "bounce", "sendgrid", START)
        assert suppress(session, "whatsapp", "whatsapp:+905321234567", None, "stop", "twilio", START)
    with rt.factory() as session:
        stored = {(s.channel, s.address) for s in session.scalars(select(Suppression))}
        assert stored == {("email", "ayse@example.com"), ("whatsapp", "+905321234567")}
        assert is_suppressed(session, "email", "ayse@example.com")
        assert is_suppressed(session, "whatsapp", "+905321234567")
        assert not is_suppressed(session, "sms", "+905321234567")
        pairs = [("email", "AYSE@example.com"), ("sms", "+905321234567"),
                 ("whatsapp", "whatsapp:+905321234567"), ("email", "other@example.com"),
                 ("email", "")]
        assert suppressed_addresses(session, pairs) == {("email", "AYSE@example.com"),
                                                        ("whatsapp", "whatsapp:+905321234567")}
        assert suppressed_addresses(session, []) == set()


def test_suppressing_twice_keeps_one_row_and_the_first_reason(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        assert suppress(session, "email", "a@example.com", None, "bounce", "sendgrid", START)
        assert not suppress(session, "email", "a@example.com", None, "spam_report", "sendgrid",
                            START + timedelta(hours=1))
    [row] = suppressions(rt)
    assert (row.reason, row.created_at) == ("bounce", START)


def test_lifting_keeps_the_row_and_suppressing_again_clears_lifted_at(rt: Runtime) -> None:
    later = START + timedelta(days=1)
    with rt.factory() as session, session.begin():
        suppress(session, "sms", "+905321234567", "c-1", "stop", "twilio_inbound", START)
        assert lift(session, "sms", "+905321234567", later)
        assert not lift(session, "sms", "+905321234567", later)  # nothing left to lift
        assert not is_suppressed(session, "sms", "+905321234567")
    [row] = suppressions(rt)
    assert row.lifted_at == later
    with rt.factory() as session, session.begin():
        assert suppress(session, "sms", "+905321234567", None, "invalid", "twilio", later)
    [row] = suppressions(rt)
    assert (row.lifted_at, row.reason, row.created_at, row.customer_id) == (None, "invalid", later, "c-1")


def test_lifting_can_be_limited_to_some_reasons(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        suppress(session, "email", "a@example.com", None, "bounce", "sendgrid", START)
        assert not lift(session, "email", "a@example.com", START, reasons=["unsubscribe"])
        assert is_suppressed(session, "email", "a@example.com")


def test_only_the_customers_own_choices_change_consent(rt: Runtime) -> None:
    feed(rt, placed("o-1", START, email="Ayse.Yilmaz@Example.com"))
    run_to(rt, rt.definitions(), START)
    with rt.factory() as session, session.begin():
        suppress(session, "email", "ayse.yilmaz@example.com", None, "bounce", "sendgrid", START)
    assert customer(rt).consent_email is True
    with rt.factory() as session, session.begin():
        suppress(session, "sms", "+905321234567", None, "stop", "twilio_inbound", START)
    assert customer(rt).consent_sms is False and customer(rt).updated_at == START
    with rt.factory() as session, session.begin():
        lift(session, "sms", "+905321234567", START)
    assert customer(rt).consent_sms is True
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 2


def test_an_unknown_channel_is_refused(rt: Runtime) -> None:
    with rt.factory() as session, pytest.raises(ValueError, match="unknown channel"):
        suppress(session, "fax", "+905321234567", None, "stop", "test", START)
