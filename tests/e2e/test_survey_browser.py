"""Answering a survey from the e-mail in a real headless browser (Debian's chromium, driven by
Playwright): the e-mail the journeys really sent, opened on a phone-sized screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.db.models import InboxEvent, SandboxOutbox, SurveyResponse
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from tests.integration.helpers import serve
from tests.integration.test_survey_pages import PUBLIC, settle, survey_app, survey_email, token_of

PHONE = {"width": 375, "height": 812}
# A phone's browser; headless Chromium's own User-Agent names it, as a scanner's sandbox would.
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36")


@pytest.fixture
def base_url(settings: Settings, rt: Runtime) -> Iterator[str]:
    with serve(survey_app(settings, rt)) as url:
        yield url


def open_email(browser: Browser, rt: Runtime, base_url: str, message_id: str,
               locale: str = "en-US") -> tuple[Page, list[str]]:
    """The e-mail as the sandbox delivered it, its links pointed at the test server, in a
    phone-sized page; also the console errors (a CSP violation would show there)."""
    with rt.factory() as session:
        html = session.scalars(select(SandboxOutbox.body_html)
                               .where(SandboxOutbox.message_id == message_id)).one()
    assert html and f"{PUBLIC}/s/" in html
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale=locale,
                                  user_agent=PHONE_UA)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_content(html.replace(PUBLIC, base_url))
    return page, errors


def fits_the_phone(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for element in [*page.locator(".scale a, .scale span.chosen").all(),
                    *page.get_by_role("button").all()]:
        box = element.bounding_box()
        assert box is not None and box["width"] >= 44 and box["height"] >= 44, element


def stored(rt: Runtime) -> list[SurveyResponse]:
    settle(rt)  # the clicks wait out the burst window before they are answers
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        return list(session.scalars(select(SurveyResponse)))


def test_a_customer_answers_from_the_email_changes_their_mind_and_leaves_a_comment(
        browser: Browser, base_url: str, rt: Runtime, tmp_path: Path) -> None:
    message = survey_email(rt, "nps", locale="tr")
    page, console_errors = open_email(browser, rt, base_url, message.id)
    # the honeypot for mail scanners: in the e-mail, but not for people, eyes or keyboard
    honeypot = page.locator('a[href*="hp=1"]')
    assert honeypot.count() == 1 and not honeypot.is_visible()
    assert page.get_by_role("link", name="9", exact=True).count() == 1
    page.keyboard.press("Tab")  # the first link a keyboard reaches is the shop's, not the trap
    assert "hp=1" not in page.evaluate("document.activeElement.href || ''")

    with page.expect_navigation():  # the action does not wait for the page it opens
        page.get_by_role("link", name="9", exact=True).click()  # in the e-mail
    assert page.url.startswith(f"{base_url}/s/") and page.url.endswith("?score=9")
    assert page.locator("html").get_attribute("lang") == "tr"
    assert page.locator("h1").inner_text() == "Teşekkürler!"
    assert page.get_by_role("status").inner_text() == "Yanıtınızı kaydettik: 9."
    assert page.locator("[aria-current=true]").inner_text().startswith("9")
    fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "thanks.png"), full_page=True)
    assert (tmp_path / "thanks.png").stat().st_size > 1000

    with page.expect_navigation():  # the action does not wait for the page it opens
        page.get_by_role("link", name="10", exact=True).click()  # changed their mind
    assert page.get_by_role("status").inner_text() == "Yanıtınızı kaydettik: 10."

    box = page.get_by_label("Bize biraz daha anlatmak ister misiniz? (isteğe bağlı)")
    assert box.get_attribute("maxlength") == "2000"
    comment = "Kargo çok hızlıydı 🚀 <b>teşekkürler</b>"
    box.fill(comment)
    # keyboard users see where they are
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.tagName, "
                            "getComputedStyle(document.activeElement).outlineWidth]")
    assert focused == ["BUTTON", "3px"]
    with page.expect_navigation():  # the action does not wait for the page it opens
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "Teşekkürler, yorumunuzu aldık"
    assert page.locator("blockquote").inner_text() == comment  # shown as text, not markup
    assert page.locator("blockquote b").count() == 0
    fits_the_phone(page)
    assert console_errors == []

    [response] = stored(rt)
    assert (response.message_id, response.kind, response.score, response.comment,
            response.source) == (message.id, "nps", 10, comment, "email")


def test_the_question_page_fits_a_phone_and_a_bad_score_asks_again(
        browser: Browser, base_url: str, rt: Runtime) -> None:
    message = survey_email(rt, "nps", locale="pl")
    page, console_errors = open_email(browser, rt, base_url, message.id)
    link = page.get_by_role("link", name="0", exact=True).get_attribute("href")
    assert link is not None
    response = page.goto(link.replace("score=0", "score=11"))
    assert response is not None and response.status == 400
    assert page.get_by_role("alert").inner_text() == "Wybierz jedną z poniższych ocen."
    assert page.locator("h1").inner_text() == (
        "Jak prawdopodobne jest, że polecisz Atlas Store znajomym?")
    scores = page.get_by_role("list", name="Jak prawdopodobne jest, że polecisz Atlas Store znajomym?")
    assert scores.get_by_role("link").all_inner_texts() == [str(n) for n in range(11)]
    fits_the_phone(page)
    with rt.factory() as session:
        assert session.scalars(select(InboxEvent).where(
            InboxEvent.type == "survey.responded")).all() == []

    with page.expect_navigation():  # the action does not wait for the page it opens
        scores.get_by_role("link", name="3", exact=True).tap()
    assert page.locator("h1").inner_text() == "Dziękujemy!"
    # the 400 itself is logged as a failed load; nothing was refused by the page's CSP
    assert [e for e in console_errors if "400" not in e] == []
    assert [r.score for r in stored(rt)] == [3]


def test_a_tampered_link_shows_a_friendly_page_in_the_browsers_language(
        browser: Browser, base_url: str, rt: Runtime) -> None:
    message = survey_email(rt, "nps", locale="tr")
    page, _ = open_email(browser, rt, base_url, message.id, locale="pl-PL")
    href = page.get_by_role("link", name="5", exact=True).get_attribute("href")
    assert href is not None
    token = token_of(href)
    response = page.goto(href.replace(token, token[:-3] + ("xyz" if token[-3:] != "xyz" else "abc")))
    assert response is not None and response.status == 403
    assert page.locator("html").get_attribute("lang") == "pl"
    assert page.locator("h1").inner_text() == "Ten link nie działa"
    assert "Traceback" not in page.content()
    with rt.factory() as session:
        assert session.scalars(select(InboxEvent).where(
            InboxEvent.type == "survey.responded")).all() == []

