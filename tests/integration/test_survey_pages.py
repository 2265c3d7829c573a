"""GET/POST /s/{token} and GET /r/{code}, called in this process, on both databases, with survey
e-mails the real journeys sent through the sandbox channel."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import func, select

from aftersale.config import Settings
from aftersale.core.links import Purpose, Signer, referral_code
from aftersale.core.survey_scales import COMMENT_LIMIT
from aftersale.db.models import (
    Customer,
    InboxEvent,
    Message,
    ReferralClick,
    SandboxOutbox,
    SurveyClick,
    SurveyResponse,
)
from aftersale.orchestration.passes import drain_inbox, settle_survey_clicks
from aftersale.pipeline.runtime import Runtime
from aftersale.surveys.clicks import SETTLE_AFTER
from aftersale.web.surveys import TEXTS_FILE, check_page_texts, surveys_router, with_ref
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import IN_PROCESS_URL, feed, in_process, run_to, sent, treated_customer

PUBLIC = "https://shop.example.com"
# A person's browser: survey clicks from HTTP libraries are a scanner's (surveys.scanners).
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
A_PERSON = {"User-Agent": FIREFOX}


def survey_app(settings: Settings, rt: Runtime) -> FastAPI:
    app = FastAPI()
    app.include_router(surveys_router(settings, rt))
    return app


@pytest.fixture
def browser(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(survey_app(settings, rt), headers=A_PERSON) as client:
        yield client


@pytest.fixture
def base_url(browser: TestClient) -> str:
    return IN_PROCESS_URL


# --- survey e-mails from the real journeys -----------------------------------------------------


def survey_email(rt: Runtime, kind: str = "nps", locale: str = "tr", prefix: str = "c") -> Message:
    """A survey e-mail the shipped journeys sent: NPS (vip-care), CSAT (onboarding) or CES
    (win-back). The customer has no phone, so every message goes by e-mail."""
    now = rt.now()  # a later call starts where the clock is: old orders start no journey
    if kind == "nps":  # a VIP order: personal check-in after 2 days, NPS 3 days later
        cid = treated_customer("vip-care", 10, prefix)
        feed(rt, placed(f"o-{cid}", now, cid, phone=None, locale=locale, total="1500.00",
                        currency="EUR"))
        until, template = now + days(6), "nps_survey"
    elif kind == "csat":  # a first order: tutorial a day after delivery, CSAT 6 days later
        cid = treated_customer("onboarding", 10, prefix)
        feed(rt, placed(f"o-{cid}", now, cid, phone=None, locale=locale))
        until, template = now + days(8), "csat_checkin"
    else:  # back after 100 days: win-back 3 days after delivery, CES a week later
        cid = treated_customer("win-back", 15, prefix)
        feed(rt, placed(f"o-{cid}-old", now - days(100), cid, phone=None, locale=locale))
        feed(rt, placed(f"o-{cid}", now, cid, phone=None, locale=locale))
        until, template = now + days(11), "ces_checkin"
    feed(rt, follow("shipped", f"o-{cid}", now, cid), follow("delivered", f"o-{cid}", now, cid))
    run_to(rt, rt.definitions(), until)
    [message] = [m for m in sent(rt, cid) if m.template == template]
    assert (message.channel, message.status) == ("email", "sent")
    return message


def links_in(rt: Runtime, message: Message, base_url: str) -> dict[int, str]:
    """score -> the link the e-mail carries, pointed at the app."""
    with rt.factory() as session:
        outbox = session.scalars(select(SandboxOutbox)
                                 .where(SandboxOutbox.message_id == message.id)).one()
    found = re.findall(r'href="(https://shop\.example\.com/s/[\w.-]+\?score=(\d+))"',
                       outbox.body_html or "")
    assert found, "the e-mail has score links"
    return {int(score): base_url + url.removeprefix(PUBLIC) for url, score in found}


def token_of(url: str) -> str:
    return url.split("/s/", 1)[1].split("?", 1)[0]


def signed(settings: Settings, payload: dict[str, Any], purpose: Purpose = Purpose.SURVEY) -> str:
    assert settings.secret_key is not None
    return Signer(settings.secret_key.get_secret_value().encode()).sign(purpose, payload)


def settle(rt: Runtime) -> None:
    """Let the burst window of the clicks so far pass: they become answers in the inbox."""
    rt.clock.advance(SETTLE_AFTER + timedelta(seconds=1))  # type: ignore[attr-defined]
    settle_survey_clicks(rt)


def inbox(rt: Runtime) -> list[dict[str, Any]]:
    """The survey answers waiting in the inbox (their ``survey`` part), once the clicks so far
    have waited out their burst window."""
    settle(rt)
    with rt.factory() as session:
        rows = session.scalars(select(InboxEvent).where(InboxEvent.type == "survey.responded")
                               .order_by(InboxEvent.seq))
        return [row.payload["survey"] for row in rows]


def responses(rt: Runtime) -> list[SurveyResponse]:
    settle(rt)
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        return list(session.scalars(select(SurveyResponse).order_by(SurveyResponse.id)))


def survey_clicks(rt: Runtime, message_id: str) -> list[tuple[int | None, str, str | None]]:
    """(score, verdict, reason) of every click recorded on the message, in order."""
    with rt.factory() as session:
        rows = session.execute(select(SurveyClick.score, SurveyClick.verdict, SurveyClick.reason)
                               .where(SurveyClick.message_id == message_id)
                               .order_by(SurveyClick.id)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def h1(html: str) -> str:
    match = re.search(r"<h1[^>]*>([^<]*)</h1>", html)
    assert match, html
    return match.group(1)


# --- a click records the answer -----------------------------------------------------------------


def test_the_email_links_name_the_message_customer_and_survey(
        settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt)
    links = links_in(rt, message, base_url)
    assert sorted(links) == list(range(11))
    assert len({token_of(u) for u in links.values()}) == 1  # one token, the score is the query
    assert settings.secret_key is not None
    claims = Signer(settings.secret_key.get_secret_value().encode()).verify(Purpose.SURVEY,
                                                                            token_of(links[0]))
    assert claims == {"m": message.id, "c": message.customer_id, "k": "nps"}


def test_a_click_records_the_answer_and_thanks_in_the_customers_language(
        rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt, locale="tr")
    page = browser.get(links_in(rt, message, base_url)[9])
    assert page.status_code == 200
    html = page.text
    assert '<html lang="tr">' in html and h1(html) == "Teşekkürler!"
    assert "Yanıtınızı kaydettik: 9." in html
    assert "Atlas Store mağazasını bir arkadaşınıza tavsiye etme olasılığınız nedir?" in html
    # the chosen score is marked, every other one is a link that changes the answer
    assert re.search(r'<span class="chosen" aria-current="true">9<span\s+class="vh"> \(yanıtınız\)',
                     html)
    assert re.findall(r'<a href="\?score=(\d+)">', html) == [str(n) for n in range(11) if n != 9]
    # the comment box
    assert '<form method="post">' in html
    assert '<input type="hidden" name="score" value="9">' in html
    assert '<label for="comment">' in html
    assert f'<textarea id="comment" name="comment" maxlength="{COMMENT_LIMIT}" required' in html
    assert '<button type="submit">Gönder</button>' in html
    # a small page for people: no scripts, nothing loaded from elsewhere, not cached or indexed
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<script" not in html and not re.search(r"""(src|href)=["']?https?:""", html)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-robots-tag"] == "noindex"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    [answer] = inbox(rt)
    assert answer == {"kind": "nps", "score": 9, "order_id": f"o-{message.customer_id}",
                      "message_id": message.id, "source": "email"}  # no comment yet
    [response] = responses(rt)
    assert (response.customer_id, response.message_id, response.kind, response.score,
            response.source) == (message.customer_id, message.id, "nps", 9, "email")


@pytest.mark.parametrize(("locale", "lang", "title", "question"), [
    ("pl-PL", "pl", "Dziękujemy!", "Jak prawdopodobne jest, że polecisz Atlas Store znajomym?"),
    ("en", "en", "Thank you!", "How likely are you to recommend Atlas Store to a friend?"),
    ("de", "en", "Thank you!", "How likely are you to recommend Atlas Store to a friend?"),
])
def test_the_thank_you_page_speaks_the_customers_language_or_english(
        rt: Runtime, base_url: str, browser: TestClient, locale: str, lang: str, title: str, question: str) -> None:
    page = browser.get(links_in(rt, survey_email(rt, locale=locale), base_url)[10])
    assert page.status_code == 200
    assert f'<html lang="{lang}">' in page.text
    assert h1(page.text) == title and question in page.text


@pytest.mark.parametrize(("kind", "locale", "scale", "question"), [
    ("csat", "pl", range(1, 6), "Jak bardzo jesteś zadowolony(-a) ze swojego zamówienia?"),
    ("ces", "en", range(1, 8), "How easy was it to shop with Atlas Store, from ordering to delivery?"),
])
def test_csat_and_ces_ask_on_their_own_scales(
        rt: Runtime, base_url: str, browser: TestClient, kind: str, locale: str, scale: range, question: str) -> None:
    message = survey_email(rt, kind, locale)
    links = links_in(rt, message, base_url)
    assert sorted(links) == list(scale)
    url = links[scale[0]].split("?")[0]
    # without a score: the question, one button per score, nothing stored
    page = browser.get(url)
    assert page.status_code == 200 and h1(page.text) == question
    assert re.findall(r'<a href="\?score=(\d+)">', page.text) == [str(n) for n in scale]
    for bad in (scale[0] - 1, scale[-1] + 1):
        assert browser.get(f"{url}?score={bad}").status_code == 400
    assert inbox(rt) == []
    assert browser.get(links[scale[-1]]).status_code == 200
    [response] = responses(rt)
    assert (response.kind, response.score, response.message_id) == (kind, scale[-1], message.id)


def test_a_second_click_changes_the_answer_rather_than_adding_one(
        rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt)
    links = links_in(rt, message, base_url)
    assert browser.get(links[3]).status_code == 200
    assert [r.score for r in responses(rt)] == [3]
    rt.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    assert browser.get(links[10]).status_code == 200
    rt.clock.advance(timedelta(seconds=30))  # type: ignore[attr-defined]  # a second thought
    assert browser.get(links[8]).status_code == 200
    [response] = responses(rt)  # processing keeps one answer per message: the latest
    assert (response.message_id, response.score) == (message.id, 8)
    # the question page (no score) now marks the recorded answer
    page = browser.get(links[0].split("?")[0])
    assert '<span class="chosen" aria-current="true">8' in page.text


def test_a_score_outside_the_scale_shows_the_buttons_again_and_stores_nothing(
        rt: Runtime, base_url: str, browser: TestClient) -> None:
    url = links_in(rt, survey_email(rt, locale="en"), base_url)[0].split("?")[0]
    for score in ["11", "-1", "abc", "7.5", "", "１", "+7", "1_0", "999999999999", "😀"]:
        page = browser.get(url, params={"score": score})
        assert page.status_code == 400, score
        assert h1(page.text) == "How likely are you to recommend Atlas Store to a friend?"
        assert 'role="alert">Please pick one of the scores below.' in page.text
        assert len(re.findall(r'<a href="\?score=\d+">', page.text)) == 11
        assert browser.post(url, data={"score": score, "comment": "hi"}).status_code == 400
    assert inbox(rt) == []


def test_a_head_request_from_a_link_checker_is_only_a_suspect_mark(
        rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt)
    response = browser.head(links_in(rt, message, base_url)[0])
    assert response.status_code == 200 and response.content == b""
    assert inbox(rt) == []
    assert survey_clicks(rt, message.id) == [(0, "suspect", "prefetch")]


# --- comments ------------------------------------------------------------------------------------


def test_a_comment_is_kept_with_the_score(rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt, locale="pl")
    link = links_in(rt, message, base_url)[6]
    assert browser.get(link).status_code == 200
    page = browser.post(link, data={"score": "6", "comment": "  Paczka przyszła zgnieciona 📦😞  "})
    assert page.status_code == 200
    assert h1(page.text) == "Dziękujemy, otrzymaliśmy Twój komentarz"
    assert "<blockquote>Paczka przyszła zgnieciona 📦😞</blockquote>" in page.text
    assert "Twoja ocena: 6." in page.text
    [response] = responses(rt)
    assert (response.score, response.comment) == (6, "Paczka przyszła zgnieciona 📦😞")


def test_a_comment_without_a_score_keeps_the_recorded_score(rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt, locale="en")
    link = links_in(rt, message, base_url)[2]
    browser.get(link)
    assert [r.score for r in responses(rt)] == [2]
    page = browser.post(link.split("?")[0], data={"comment": "late delivery"})
    assert page.status_code == 200 and "Your score: 2." in page.text
    [response] = responses(rt)
    assert (response.score, response.comment) == (2, "late delivery")


def test_a_comment_before_any_score_asks_for_the_score(rt: Runtime, base_url: str, browser: TestClient) -> None:
    url = links_in(rt, survey_email(rt, locale="en"), base_url)[2].split("?")[0]
    page = browser.post(url, data={"comment": "no score yet"})
    assert page.status_code == 400 and "Please pick one of the scores below." in page.text
    assert inbox(rt) == []


@pytest.mark.parametrize("comment", ["", "   \n\t ", "\x00"])
def test_an_empty_comment_stores_nothing_and_offers_the_box_again(
        rt: Runtime, base_url: str, browser: TestClient, comment: str) -> None:
    link = links_in(rt, survey_email(rt, locale="en"), base_url)[7]
    browser.get(link)
    before = inbox(rt)
    page = browser.post(link, data={"score": "7", "comment": comment})
    assert page.status_code == 400
    assert "The comment box was empty" in page.text and "<textarea" in page.text
    assert inbox(rt) == before


def test_a_very_long_comment_is_cut_at_the_documented_limit(rt: Runtime, base_url: str, browser: TestClient) -> None:
    link = links_in(rt, survey_email(rt, locale="en"), base_url)[5]
    long = "ü" * (COMMENT_LIMIT - 5) + " 😀" * 1000
    page = browser.post(link, data={"score": "5", "comment": long})
    assert page.status_code == 200
    [answer] = inbox(rt)
    assert len(answer["comment"]) == COMMENT_LIMIT and answer["comment"].endswith("…")
    assert answer["comment"] in page.text
    [response] = responses(rt)
    assert response.comment == answer["comment"]


def test_a_body_far_beyond_any_comment_is_refused(rt: Runtime, base_url: str, browser: TestClient) -> None:
    link = links_in(rt, survey_email(rt, locale="en"), base_url)[5]
    page = browser.post(link, data={"score": "5", "comment": "x" * 200_000})
    assert page.status_code == 413 and "<h1" in page.text
    assert inbox(rt) == []


def test_html_in_a_comment_is_shown_as_text_on_every_page(rt: Runtime, base_url: str, browser: TestClient) -> None:
    link = links_in(rt, survey_email(rt, locale="en"), base_url)[1]
    evil = '<script>alert("x")</script><b onmouseover=alert(1)>bold</b>'
    escaped = ("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
               "&lt;b onmouseover=alert(1)&gt;bold&lt;/b&gt;")
    page = browser.post(link, data={"score": "1", "comment": evil})
    assert page.status_code == 200
    assert escaped in page.text and "<script" not in page.text and "<b " not in page.text
    assert [r.comment for r in responses(rt)] == [evil]  # stored as written, escaped when shown
    # the thank-you page of a later click shows the recorded comment in the box, escaped too
    again = browser.get(link.replace("score=1", "score=2"))
    assert f">{escaped}</textarea>" in again.text and "<script" not in again.text


# --- bad tokens ----------------------------------------------------------------------------------


def _tamper(token: str) -> str:
    body, mac = token.split(".")
    return body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac


def test_a_tampered_or_foreign_token_gets_a_friendly_403_and_stores_nothing(
        settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt, locale="tr")
    link = links_in(rt, message, base_url)[10]
    token = token_of(link)
    other_key = Signer(b"another-key").sign(Purpose.SURVEY, {"m": message.id,
                                                             "c": message.customer_id, "k": "nps"})
    unsubscribe = signed(settings, {"m": message.id, "c": message.customer_id, "ch": "email"},
                         Purpose.UNSUBSCRIBE)
    for bad in (_tamper(token), token[:-4], "nonsense", other_key, unsubscribe,
                signed(settings, {"m": message.id, "c": message.customer_id, "k": "abc"}),
                signed(settings, ["not", "an", "object"])):  # type: ignore[arg-type]
        for response in (browser.get(f"{base_url}/s/{bad}?score=10",
                                   headers={"Accept-Language": "pl;q=0.9, en;q=0.8"}),
                         browser.post(f"{base_url}/s/{bad}", data={"score": "10", "comment": "hi"})):
            assert response.status_code == 403, bad
            assert "<h1" in response.text and "Traceback" not in response.text
    # the error page has no customer to take the language from: Accept-Language decides
    page = browser.get(f"{base_url}/s/{_tamper(token)}?score=1", headers={"Accept-Language": "pl"})
    assert '<html lang="pl">' in page.text and h1(page.text) == "Ten link nie działa"
    assert inbox(rt) == []


def test_a_token_cannot_answer_for_another_customer_or_message(
        settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    mine = survey_email(rt, prefix="a")
    theirs = survey_email(rt, prefix="b")
    forged = [
        {"m": theirs.id, "c": mine.customer_id, "k": "nps"},   # my name on their message
        {"m": mine.id, "c": theirs.customer_id, "k": "nps"},   # their name on my message
        {"m": "msg-does-not-exist", "c": mine.customer_id, "k": "nps"},
    ]
    for payload in forged:
        token = signed(settings, payload)
        assert browser.get(f"{base_url}/s/{token}?score=0").status_code == 403
        assert browser.post(f"{base_url}/s/{token}", data={"score": "0"}).status_code == 403
    assert inbox(rt) == []


def test_without_a_secret_key_the_page_says_try_later(
        settings: Settings, rt: Runtime) -> None:
    message = survey_email(rt)
    token = signed(settings, {"m": message.id, "c": message.customer_id, "k": "nps"})
    keyless = settings.model_copy(update={"secret_key": None})
    with in_process(survey_app(keyless, rt), headers=A_PERSON) as browser:
        page = browser.get(f"{IN_PROCESS_URL}/s/{token}?score=5")
    assert page.status_code == 503 and h1(page.text) == "Please try again later"
    assert inbox(rt) == []


# --- key rotation and links sent before -------------------------------------------------------


def old_format(secret: str, payload: dict[str, Any]) -> str:
    """A token as links were signed before itsdangerous and purposes (aftersale.core.links at
    7b825b9): HMAC-SHA256 of the base64url JSON body under the bare key, for every purpose."""
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True)
                                    .encode()).rstrip(b"=").decode()
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def rotated(settings: Settings) -> Settings:
    """The settings after a key rotation: a new key signs, the one the e-mails used verifies."""
    return settings.model_copy(update={"secret_key": SecretStr("new-secret-key"),
                                       "secret_key_previous": settings.secret_key})


def test_links_sent_in_the_old_format_still_record_answers(
        settings: Settings, rt: Runtime, browser: TestClient) -> None:
    message = survey_email(rt, locale="en")
    token = old_format("test-secret-key", {"m": message.id, "c": message.customer_id, "k": "nps"})
    assert browser.get(f"/s/{token}?score=7").status_code == 200
    later = survey_email(rt, locale="en", prefix="b")  # the key is the previous one now
    token = old_format("test-secret-key", {"m": later.id, "c": later.customer_id, "k": "nps"})
    with in_process(survey_app(rotated(settings), rt), headers=A_PERSON) as client:
        assert client.get(f"/s/{token}?score=8").status_code == 200
    assert sorted(a["score"] for a in inbox(rt)) == [7, 8]


def test_sent_links_keep_working_after_the_key_is_rotated_and_unknown_keys_do_not(
        settings: Settings, rt: Runtime) -> None:
    message = survey_email(rt, locale="en")
    with in_process(survey_app(rotated(settings), rt), headers=A_PERSON) as client:
        links = links_in(rt, message, IN_PROCESS_URL)  # signed before the rotation
        assert client.get(links[6]).status_code == 200
        claims = {"m": message.id, "c": message.customer_id, "k": "nps"}
        unknown = Signer(b"another-key").sign(Purpose.SURVEY, claims)
        refused = client.get(f"/s/{unknown}?score=1")
        tampered_page = client.get(f"/s/{_tamper(token_of(links[1]))}?score=1")
    assert refused.status_code == tampered_page.status_code == 403
    assert refused.text == tampered_page.text  # the same page as a tampered link
    # once the previous key is dropped, what it signed is refused the same way
    with in_process(survey_app(rotated(settings).model_copy(update={"secret_key_previous": None}),
                               rt), headers=A_PERSON) as client:
        dropped = client.get(links_in(rt, message, IN_PROCESS_URL)[2])
    assert dropped.status_code == 403 and dropped.text == tampered_page.text
    assert [a["score"] for a in inbox(rt)] == [6]


def test_a_survey_closes_after_survey_days(settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    message = survey_email(rt, locale="tr")
    assert message.sent_at is not None
    links = links_in(rt, message, base_url)
    rt.clock.set(message.sent_at + timedelta(days=settings.survey_days) - timedelta(minutes=1))  # type: ignore[attr-defined]
    assert browser.get(links[4]).status_code == 200
    rt.clock.set(message.sent_at + timedelta(days=settings.survey_days, minutes=1))  # type: ignore[attr-defined]
    for response in (browser.get(links[5]), browser.post(links[5], data={"score": "5", "comment": "geç"})):
        assert response.status_code == 410
        assert h1(response.text) == "Bu anket kapandı"
        assert f"{settings.survey_days} gün" in response.text
    assert [a["score"] for a in inbox(rt)] == [4]


# --- referrals -----------------------------------------------------------------------------------


def customer_with_code(rt: Runtime, cid: str = "c-1") -> str:
    """A customer as processing stores one: with the stable code their links carry."""
    feed(rt, placed(f"o-{cid}", START, cid))
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        customer = session.get(Customer, cid)
        assert customer is not None and customer.referral_code == referral_code(cid)
        return customer.referral_code


def clicks(rt: Runtime) -> list[tuple[str, str | None]]:
    with rt.factory() as session:
        return [(c.code, c.referrer_id) for c in session.scalars(select(ReferralClick))]


def test_a_referral_click_is_counted_and_goes_to_the_shop_with_the_code(
        settings: Settings, rt: Runtime) -> None:
    code = customer_with_code(rt)
    shop = settings.model_copy(update={"shop_url": AnyHttpUrl(
        "https://atlas-store.example/welcome?utm_source=referral&ref=old#top")})
    with in_process(survey_app(shop, rt), headers=A_PERSON) as browser:
        response = browser.get(f"{IN_PROCESS_URL}/r/{code}")
        assert response.status_code == 302
        assert response.headers["location"] == (
            f"https://atlas-store.example/welcome?utm_source=referral&ref={code}#top")
        assert response.headers["cache-control"] == "no-store"
        assert browser.get(f"{IN_PROCESS_URL}/r/{code.lower()}").status_code == 302  # retyped in lower case
    assert clicks(rt) == [(code, "c-1"), (code, "c-1")]
    with rt.factory() as session:
        assert session.scalars(select(ReferralClick.clicked_at)).all() == [START, START]


def test_the_referral_link_we_send_works(settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    code = customer_with_code(rt)
    link = rt.links().referral("c-1")
    assert link == f"{PUBLIC}/r/{code}"
    response = browser.get(base_url + link.removeprefix(PUBLIC))
    assert response.headers["location"] == with_ref(str(settings.shop_url), code)
    assert response.headers["location"] == f"https://shop.example.com/?ref={code}"
    assert clicks(rt) == [(code, "c-1")]


def test_an_unknown_code_still_reaches_the_shop_but_stores_nothing(
        settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    customer_with_code(rt)
    response = browser.get(f"{base_url}/r/{referral_code('nobody')}")
    assert response.status_code == 302
    assert response.headers["location"] == str(settings.shop_url)
    assert clicks(rt) == []


def test_a_malformed_code_gets_a_friendly_404_and_stores_nothing(
        rt: Runtime, base_url: str, browser: TestClient) -> None:
    customer_with_code(rt)
    for code in ["XABCDEF", "R", "R0O1", "R" + "A" * 32, "R<script>", "RAB%20CD", "R😀"]:
        response = browser.get(f"{base_url}/r/{code}", headers={"Accept-Language": "tr"})
        assert response.status_code == 404, code
        assert '<html lang="tr">' in response.text and h1(response.text) == "Bu bağlantı çalışmıyor"
        assert ('<a class="button" href="https://shop.example.com/">Atlas Store sitesine git</a>'
                in response.text)
        assert "<script>" not in response.text
    assert clicks(rt) == []


# --- the texts ----------------------------------------------------------------------------------


def test_the_shipped_page_texts_are_complete(settings: Settings) -> None:
    assert check_page_texts(settings.content_dir) == []


def test_a_broken_text_is_reported_with_its_line(settings: Settings) -> None:
    path = settings.content_dir / TEXTS_FILE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('send: "Gönder"', 'sendd: "Gönder {shopp}"'), encoding="utf-8")
    problems = check_page_texts(settings.content_dir)
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1) if "sendd:" in row)
    assert [(p.line, p.message) for p in problems] == [(line, "unknown text 'sendd'")]
    path.write_text(text.replace('send: "Send"', 'send: "Send {shopp}"'), encoding="utf-8")
    assert [p.message for p in check_page_texts(settings.content_dir)] == [
        "unknown placeholder {shopp}"]


def test_a_missing_translation_falls_back_to_english(
        settings: Settings, rt: Runtime, base_url: str, browser: TestClient) -> None:
    path = settings.content_dir / TEXTS_FILE
    path.write_text(path.read_text(encoding="utf-8").replace('  send: "Wyślij"\n', ""),
                    encoding="utf-8")
    page = browser.get(links_in(rt, survey_email(rt, locale="pl"), base_url)[8])
    assert '<html lang="pl">' in page.text and h1(page.text) == "Dziękujemy!"
    assert '<button type="submit">Send</button>' in page.text


def test_nothing_is_left_in_the_inbox_unprocessed_or_failed(rt: Runtime, base_url: str, browser: TestClient) -> None:
    link = links_in(rt, survey_email(rt), base_url)[9]
    browser.get(link)
    browser.post(link, data={"score": "9", "comment": "harika"})
    responses(rt)
    with rt.factory() as session:
        statuses = session.execute(select(InboxEvent.status, func.count())
                                   .where(InboxEvent.type == "survey.responded")
                                   .group_by(InboxEvent.status)).all()
    # the comment is the person's act that makes the click an answer: one event, not two
    assert [tuple(s) for s in statuses] == [("processed", 1)]
