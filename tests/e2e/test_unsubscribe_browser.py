"""The unsubscribe page in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.db.models import Customer, Suppression
from aftersale.pipeline.runtime import Runtime
from aftersale.web.app import create_app
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, run_to, sent, serve
from tests.integration.test_unsubscribe import email_message, link


@pytest.fixture
def base_url(settings: Settings, rt: Runtime) -> Iterator[str]:
    with serve(create_app(settings, rt)) as url:
        yield url


def test_a_customer_unsubscribes_with_one_tap_on_a_phone(
        browser: Browser, base_url: str, rt: Runtime, tmp_path: Path) -> None:
    message = email_message(rt, "c-1", locale="tr")
    page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
    page.goto(base_url + link(rt, message))
    assert page.locator("html").get_attribute("lang") == "tr"
    assert page.locator("h1").inner_text() == "Abonelikten çık"
    # fits a small phone: no sideways scrolling, a button big enough to tap
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    button = page.get_by_role("button", name="Abonelikten çık")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 44
    page.screenshot(path=str(tmp_path / "unsubscribe.png"))
    assert (tmp_path / "unsubscribe.png").stat().st_size > 1000

    with page.expect_navigation():  # the click does not wait for the page it opens
        button.click()
    assert page.locator("h1").inner_text() == "Abonelikten çıktınız"
    with rt.factory() as session:
        [row] = session.scalars(select(Suppression)).all()
        customer = session.get(Customer, "c-1")
    assert (row.channel, row.address, row.lifted_at) == ("email", "c-1@example.com", None)
    assert customer is not None and customer.consent_email is False

    # the next marketing message skips the suppressed address
    feed(rt, placed("o-2", START, "c-1", phone=None, locale="tr"),
         follow("shipped", "o-2", START, "c-1"), follow("delivered", "o-2", START, "c-1"))
    run_to(rt, rt.definitions(), START + days(2))
    later = [m for m in sent(rt, "c-1") if m.id != message.id and m.template == "shipping_update"]
    assert later and later[0].status == "not_sent"
    assert "suppressed" in (later[0].status_reason or "")


def test_a_tampered_link_shows_a_friendly_page_and_changes_nothing(
        browser: Browser, base_url: str, rt: Runtime) -> None:
    message = email_message(rt, "c-2", locale="pl")
    url = base_url + link(rt, message)
    page = browser.new_page()
    response = page.goto(url[:-3] + "xyz")
    assert response is not None and response.status == 400
    assert page.locator("h1").inner_text()  # a page for people, not a traceback
    assert "Traceback" not in page.content()
    with rt.factory() as session:
        assert session.scalars(select(Suppression)).all() == []
