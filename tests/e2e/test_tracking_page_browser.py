"""The tracking page in a real headless browser (Debian's chromium, driven by Playwright), on a
360 px wide phone: the link the shipping update really carried, a parcel the carrier could not
deliver, and the customer telling the team about it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from aftersale.config import Settings
from aftersale.pipeline.runtime import Runtime
from tests.integration.helpers import serve
from tests.integration.test_tracking_page import alerts, clicks, page_link, shipped, tracking_app

PHONE = {"width": 360, "height": 740}
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36")


@pytest.fixture
def base_url(settings: Settings, rt: Runtime) -> Iterator[str]:
    with serve(tracking_app(settings, rt)) as url:
        yield url


def test_the_tracking_page_on_a_small_phone(browser: Browser, base_url: str, rt: Runtime,
                                            tmp_path: Path) -> None:
    start = rt.now()
    message = shipped(
        rt, "c-1", locale="pl", status="attempted_delivery",
        updates=[("label_created", start - timedelta(hours=50), "Etykieta nadana"),
                 ("in_transit", start - timedelta(hours=30),
                  "Przesyłka opuściła sortownię w Warszawie i jedzie do oddziału doręczającego"),
                 ("attempted_delivery", start - timedelta(hours=2),
                  "Nieudana próba doręczenia: adresata nie było w domu")],
        tracking_number="PL-0000-1111-2222-3333-4444-5555-6666",  # long: must wrap, not scroll
        first_estimated_delivery_at=start - timedelta(days=1),
        estimated_delivery_at=start + timedelta(days=2))
    rt.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  user_agent=PHONE_UA, locale="en-US")
    page = context.new_page()
    errors: list[str] = []  # a CSP violation shows here
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(base_url + page_link(rt, message))
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy") or ""
    assert csp.startswith("default-src 'none'") and "script-src" not in csp
    assert page.locator("script").count() == 0 and "<script" not in page.content()

    # the customer's language, not the browser's
    assert page.locator("html").get_attribute("lang") == "pl"
    assert page.locator("h1").inner_text() == "Przewoźnik nie mógł doręczyć przesyłki"
    # fits a 360 px phone: nothing to scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # the timeline, newest first, visible
    timeline = page.get_by_role("list", name="Historia przesyłki")
    assert timeline.is_visible()
    entries = timeline.locator("li")
    assert entries.count() == 3
    assert entries.first.locator("strong").inner_text() == "Próba doręczenia"
    assert entries.last.locator("strong").inner_text() == "Etykieta utworzona"
    for n in range(3):
        box = entries.nth(n).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.get_by_text("(wcześniej: niedziela, 1 marca 2026)").is_visible()
    carrier = page.get_by_role("link", name="Śledź na stronie Yurtiçi Kargo")
    assert carrier.get_attribute("href") == "https://track.example.com/YK-1"
    page.screenshot(path=str(tmp_path / "tracking.png"), full_page=True)
    assert (tmp_path / "tracking.png").stat().st_size > 1000

    # a person's visit: one click of the shipping update
    assert clicks(rt) == [(message.id, "clicked", "aftersale")]

    # tell the team, with a tap on a button big enough for a thumb
    page.get_by_label("Co poszło nie tak?").fill("Byłam w domu cały dzień, nikt nie dzwonił.")
    button = page.get_by_role("button", name="Wyślij do naszego zespołu")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 44
    with page.expect_navigation():
        button.click()
    assert page.get_by_role("status").inner_text().startswith("Dziękujemy.")
    assert page.locator("form").count() == 0
    [alert] = alerts(rt)
    assert alert.details["answer"] == {"comment": "Byłam w domu cały dzień, nikt nie dzwonił."}
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert errors == []
    context.close()


def test_a_tampered_link_shows_a_page_for_people(browser: Browser, base_url: str,
                                                 rt: Runtime) -> None:
    message = shipped(rt, "c-2", locale="tr")
    path = page_link(rt, message)
    page = browser.new_page(viewport=PHONE, locale="tr-TR")
    response = page.goto(base_url + path[:-3] + ("xyz" if not path.endswith("xyz") else "abc"))
    assert response is not None and response.status == 403
    assert page.locator("h1").inner_text() == "Bu bağlantı çalışmıyor"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert alerts(rt) == [] and clicks(rt) == []
