"""The delivery-care texts: every message in every language says what the moment needs (the
carrier's words, the new date in the customer's time zone, the tracking link), and the shop's
"arriving today" switch is read from shop.yaml."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aftersale.content import ContentLibrary, sample_context
from aftersale.content.library import SHOP_SWITCHES
from aftersale.core.conditions import FIELDS, parse_condition

CONTENT = Path(__file__).resolve().parents[2] / "content"
LOCALES = ("en", "tr", "pl")
CHANNELS = ("email", "sms", "whatsapp")
CARRIER_WORDS = "Alıcı adreste bulunamadı, ihbar bırakıldı"
TRACKING = "https://atlas.example/t/tok-42"

#: template -> the moments (shipment.moment) the delivery-care journey sends it for
MOMENTS = {
    "delivery_arriving_today": ["out_for_delivery"],
    "delivery_attempted": ["attempted_delivery"],
    "delivery_pickup_ready": ["ready_for_pickup"],
    "delivery_pickup_reminder": ["ready_for_pickup"],
    "delivery_delayed": ["delayed", "stalled", "late"],
    "delivery_problem": ["exception", "returned_to_sender"],
}
#: templates whose e-mail quotes the carrier's last message
QUOTES_CARRIER = {"delivery_attempted", "delivery_pickup_ready", "delivery_pickup_reminder",
                  "delivery_delayed", "delivery_problem"}


@pytest.fixture(scope="module")
def library() -> ContentLibrary:
    return ContentLibrary.load(CONTENT)


def context(template: str, locale: str, moment: str, **shipment: Any) -> dict[str, Any]:
    ctx = sample_context(template, locale)
    ctx["shipment"] = {**ctx["shipment"], "moment": moment, "status": moment,
                       "last_message": CARRIER_WORDS, "tracking_url": TRACKING, **shipment}
    return ctx


CASES = [(t, m, loc, ch) for t, moments in MOMENTS.items() for m in moments
         for loc in LOCALES for ch in CHANNELS]


def test_every_delivery_template_is_shipped_transactional_in_three_languages(
        library: ContentLibrary) -> None:
    shipped = {t for t in library.templates() if t.startswith("delivery_")}
    assert shipped == set(MOMENTS)
    for template in shipped:
        assert library.is_transactional(template), template
        assert library.channels_for(template) == set(CHANNELS)
        assert {library.resolve_locale(template, loc) for loc in LOCALES} == set(LOCALES)


@pytest.mark.parametrize(("template", "moment", "locale", "channel"), CASES)
def test_each_moment_renders_with_the_parcel_in_each_language_and_channel(
        library: ContentLibrary, template: str, moment: str, locale: str, channel: str) -> None:
    rendered = library.render(template, channel, locale, context(template, locale, moment))
    assert rendered.locale == locale
    body = rendered.text
    assert "{{" not in body and "{%" not in body and "None" not in body
    assert "#1001" in body  # the order number
    if channel == "email":
        assert rendered.subject and "#1001" in rendered.subject
        assert rendered.html is not None and TRACKING in rendered.html
        if template in QUOTES_CARRIER:
            assert CARRIER_WORDS in body and CARRIER_WORDS in rendered.html
    if template != "delivery_problem":  # the problem SMS promises a call instead of a link
        assert TRACKING in body


@pytest.mark.parametrize(("locale", "expected"), [
    ("en", "Friday, March 6, 2026"), ("tr", "6 Mart 2026 Cuma"), ("pl", "piątek, 6 marca 2026")])
def test_a_delay_gives_the_new_date_in_the_customers_language_and_time_zone(
        library: ContentLibrary, locale: str, expected: str) -> None:
    # 22:30 UTC on the 5th is already the 6th in Istanbul, the sample customer's zone.
    new_date = datetime(2026, 3, 5, 22, 30, tzinfo=UTC)
    ctx = context("delivery_delayed", locale, "delayed", estimated_delivery_at=new_date)
    assert expected in library.render("delivery_delayed", "email", locale, ctx).text
    assert expected in library.render("delivery_delayed", "whatsapp", locale, ctx).text


def test_a_delay_without_a_new_date_says_the_carrier_has_not_given_one(
        library: ContentLibrary) -> None:
    ctx = context("delivery_delayed", "en", "delayed", estimated_delivery_at=None,
                  new_estimate=None)
    text = library.render("delivery_delayed", "email", "en", ctx).text
    assert "has not given a new date yet" in text and "New estimated delivery" not in text


def test_a_late_parcel_is_not_promised_the_date_it_already_missed(
        library: ContentLibrary) -> None:
    missed = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    # the context (aftersale.pipeline.contexts.shipment_context) gives a late moment the date
    # it missed, and a new estimate only when the carrier's latest date is still to come
    ctx = context("delivery_delayed", "en", "late", estimated_delivery_at=missed,
                  missed_date=missed, new_estimate=None)
    text = library.render("delivery_delayed", "email", "en", ctx).text
    assert "should have reached you by Thursday, March 5, 2026" in text
    assert "New estimated delivery" not in text
    later = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    revised = context("delivery_delayed", "en", "late", estimated_delivery_at=later,
                      missed_date=missed, new_estimate=later)
    text = library.render("delivery_delayed", "email", "en", revised).text
    assert "should have reached you by Thursday, March 5, 2026" in text
    assert "New estimated delivery: Monday, March 9, 2026" in text


def test_a_stall_after_a_missed_delivery_says_the_team_is_on_it(
        library: ContentLibrary) -> None:
    stalled = context("delivery_delayed", "en", "stalled", status="attempted_delivery")
    moving = context("delivery_delayed", "en", "stalled", status="in_transit")
    assert "Our team is checking with the carrier" in library.render(
        "delivery_delayed", "email", "en", stalled).text
    assert "Our team is checking" not in library.render(
        "delivery_delayed", "email", "en", moving).text


def test_a_returned_parcel_reads_differently_from_an_exception(library: ContentLibrary) -> None:
    returned = library.render("delivery_problem", "email", "pl",
                              context("delivery_problem", "pl", "returned_to_sender"))
    failed = library.render("delivery_problem", "email", "pl",
                            context("delivery_problem", "pl", "exception"))
    assert returned.subject == "Zamówienie #1001 wraca do nas"
    assert failed.subject == "Problem z doręczeniem zamówienia #1001"


def test_a_message_without_parcel_details_still_renders(library: ContentLibrary) -> None:
    for template in MOMENTS:
        for channel in CHANNELS:
            ctx = {"customer": {"first_name": "Sam", "locale": "tr"}, "order": {"number": "#7"},
                   "shipment": None}
            assert "#7" in library.render(template, channel, "tr", ctx).text


def test_the_team_alert_quotes_the_carrier(library: ContentLibrary) -> None:
    ctx = context("alert_delivery_problem", "en", "stalled", status="attempted_delivery")
    rendered = library.render("alert_delivery_problem", "email", "en", ctx)
    assert rendered.subject == ("Delivery problem: order #1001 (Yurtiçi Kargo, stalled)")
    assert f"Carrier's words: {CARRIER_WORDS}" in rendered.text
    assert "stopped moving after a failed delivery attempt" in rendered.text


# --- the shop's switches -----------------------------------------------------------------------


def test_arriving_today_messages_are_off_unless_shop_yaml_turns_them_on(
        library: ContentLibrary, tmp_path: Path) -> None:
    assert library.shop_switches() == {"arriving_today_messages": False}
    content = tmp_path / "content"
    shutil.copytree(CONTENT, content)
    shop = content / "shop.yaml"
    shop.write_text(shop.read_text().replace("arriving_today_messages: false",
                                             "arriving_today_messages: true"))
    assert ContentLibrary.load(content).shop_switches() == {"arriving_today_messages": True}


def test_a_switch_that_is_not_true_or_false_is_refused_with_its_line(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(CONTENT, content)
    shop = content / "shop.yaml"
    text = shop.read_text().replace("arriving_today_messages: false",
                                    'arriving_today_messages: "yes"')
    shop.write_text(text)
    library, problems = ContentLibrary.check(content)
    assert library is None
    [problem] = problems
    line = next(i for i, row in enumerate(text.splitlines(), 1)
                if row.startswith("arriving_today_messages"))
    assert (Path(problem.path).name, problem.line) == ("shop.yaml", line)
    assert "'arriving_today_messages' must be true or false" in problem.message


def test_conditions_read_exactly_the_shop_switches() -> None:
    assert FIELDS["shop"] == frozenset(SHOP_SWITCHES)
    condition = parse_condition("shop.arriving_today_messages")
    assert condition.evaluate({"shop": {"arriving_today_messages": True}})
    assert not condition.evaluate({"shop": {"arriving_today_messages": False}})
    assert not condition.evaluate({})  # a context without the shop: off
