"""The HTML report opened as a marketer would open a file they were sent: in a real headless
browser (Debian's chromium via Playwright) that is not allowed to load anything, so a report
that needed the network would show up here as a recorded request or a missing chart."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, Route

from aftersale.metrics.compute import compute, nps_by_month
from aftersale.metrics.model import Nps
from aftersale.metrics.present import MonthNps
from aftersale.metrics.report import TITLE, write_report
from aftersale.pipeline.runtime import Runtime
from aftersale.surveys.sms_answers import survey_kinds
from tests.conftest import START
from tests.unit.test_metrics_present import sample_report

CHART_KEYS = ("satisfaction", "nps-trend", "cohorts", "funnel", "lift")
TREND = [MonthNps("2026-03", Nps.of(5, 3, 4)), MonthNps("2026-04", Nps.of(0, 0, 0)),
         MonthNps("2026-05", Nps.of(12, 2, 1))]


def open_offline(browser: Browser, path: Path) -> tuple[Page, list[str], list[str]]:
    """The report from disk with every network request refused and recorded, and the console
    errors (a resource the page's Content-Security-Policy refused would show there)."""
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    requests: list[str] = []

    def refuse(route: Route) -> None:
        requests.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:).*"), refuse)  # everything but the file itself
    page = context.new_page()
    page.on("request", lambda r: None if r.url.startswith("file:") else requests.append(r.url))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, requests, errors


def no_external_references(html: str) -> None:
    refs = re.findall(r"""\b(?:src|href|xlink:href|action|poster)\s*=\s*["']?([^"'\s>]+)""", html)
    assert [r for r in refs if re.match(r"(?i)(https?:)?//", r)] == []
    assert "url(http" not in html and "@import" not in html
    assert "<script" not in html.lower()


def test_the_report_draws_every_chart_offline(browser: Browser, tmp_path: Path) -> None:
    path = write_report(tmp_path / "report.html", sample_report(), TREND)
    html = path.read_text(encoding="utf-8")
    no_external_references(html)
    assert "http://" not in html and "https://" not in html  # not even SVG namespaces or metadata

    page, requests, errors = open_offline(browser, path)
    assert page.title() == f"{TITLE} · 2026-03-01 to 2026-06-30"
    assert page.get_by_role("heading", level=1).inner_text() == TITLE
    header = page.locator("header").inner_text()
    assert "Period: 2026-03-01 to 2026-06-30" in header and "as of 2026-06-30 12:00 UTC" in header
    assert "Journey post-purchase: works: treated customers buy again more often" in header
    assert "Journey win-back: not enough data yet." in header
    assert "Happiest segment: vip" in header

    for key in CHART_KEYS:
        chart = page.locator(f"section#{key} figure svg")
        assert chart.count() == 1, key
        assert chart.is_visible(), key
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, (key, box)
        assert chart.get_attribute("role") == "img" and chart.get_attribute("aria-label")
    assert page.get_by_role("heading", level=2).all_inner_texts() == [
        "NPS and CSAT by segment", "NPS over time", "Cohort retention", "Message funnel by journey",
        "Holdout lift per journey"]
    # chart ids are unique across the page, so no chart can borrow another's clip paths
    ids = page.evaluate("[...document.querySelectorAll('[id]')].map(e => e.id)")
    assert len(ids) == len(set(ids))

    # the numbers are there for screen readers and spreadsheets, one click away
    details = page.locator("section#satisfaction details")
    details.locator("summary").click()
    table = details.get_by_role("table")
    assert table.is_visible()
    assert "lapsed" in table.inner_text() and "–" in table.inner_text()
    assert "+77.8 (n=18)" in table.inner_text()

    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 20_000
    assert requests == []
    assert errors == []


def test_names_are_text_not_markup(browser: Browser, tmp_path: Path) -> None:
    report = sample_report()
    hostile = report.model_copy(update={"journeys": [
        j.model_copy(update={"journey": '<img src="https://evil.example/x.png"> $x$'}) for j in report.journeys]})
    path = write_report(tmp_path / "report.html", hostile)
    html = path.read_text(encoding="utf-8")
    assert "<img" not in html
    page, requests, errors = open_offline(browser, path)
    assert '<img src="https://evil.example/x.png"> $x$' in page.locator("header").inner_text()
    assert requests == [] and errors == []


def test_an_empty_database_gives_a_report_that_says_no_data_yet(
        browser: Browser, rt: Runtime, tmp_path: Path) -> None:
    kinds = survey_kinds(rt.definitions().content)
    with rt.factory() as session:
        report = compute(session, None, START, kinds, as_of=START)
        trend = nps_by_month(session, None, START)
    assert trend == []
    path = write_report(tmp_path / "empty.html", report, trend)
    no_external_references(path.read_text(encoding="utf-8"))

    page, requests, errors = open_offline(browser, path)
    assert page.get_by_role("heading", level=1).inner_text() == TITLE
    assert page.get_by_role("status").get_by_role("heading").inner_text() == "No data yet"
    assert "aftersale ingest" in page.get_by_role("status").inner_text()
    assert page.locator("svg").count() == 0
    page.screenshot(path=str(tmp_path / "empty.png"), full_page=True)
    assert requests == [] and errors == []
