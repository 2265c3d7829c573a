"""GET/POST /t/{token} called in this process, on both databases: the shipping update the
order-updates journey really sent links to the page (the shipment rows are built directly),
the page tells the shipment's story, a person's visit is one click of that message, a scanner's
is nothing, and "tell us about a problem" becomes one alert through the existing routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.core.links import Purpose, Signer
from aftersale.db.models import (
    AlertRecord,
    Customer,
    DeliveryEvent,
    Message,
    Order,
    SandboxOutbox,
    Shipment,
    ShipmentUpdate,
)
from aftersale.metrics.journeys import funnel
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.alerts import AlertView, _Claimed, deliver_alerts
from aftersale.pipeline.runtime import Runtime, open_runtime
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind, apply_deliveries
from aftersale.web.tracking import ALERT_KIND, MAX_REPORTS, tracking_router
from tests.factories import follow, placed
from tests.integration.helpers import feed, in_process, run_to, sent

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
A_PERSON = {"User-Agent": FIREFOX}
CARRIER_URL = "https://track.example.com/YK-1"


def tracking_app(settings: Settings, rt: Runtime) -> FastAPI:
    app = FastAPI()
    app.include_router(tracking_router(settings, rt))
    return app


@pytest.fixture
def client(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with in_process(tracking_app(settings, rt), headers=A_PERSON) as c:
        yield c


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def clock(rt: Runtime) -> SimulatedClock:
    assert isinstance(rt.clock, SimulatedClock)
    return rt.clock


# --- a shipped order whose shipping update the journey sent ------------------------------------


def add_shipment(rt: Runtime, order_id: str, shipment_id: str, status: str,
                 updates: list[tuple[str, datetime, str | None]], **fields: Any) -> None:
    """A shipment row and its carrier updates, as the intake would have stored them."""
    now = rt.now()
    last = max((at for _, at, _ in updates), default=now)
    row = {"carrier": "Yurtiçi Kargo", "tracking_number": "YK-1", "tracking_url": CARRIER_URL,
           "destination_country": "TR", "status": status, "status_at": last,
           "last_update_at": last, "created_at": now, "updated_at": now, **fields}
    with rt.factory() as session, session.begin():
        session.add(Shipment(id=shipment_id, order_id=order_id, **row))
        for n, (update_status, at, text) in enumerate(updates):
            session.add(ShipmentUpdate(shipment_id=shipment_id, event_id=f"evt-{shipment_id}-{n}",
                                       status=update_status, happened_at=at, message=text,
                                       recorded_at=now))


def shipped(rt: Runtime, cid: str, locale: str = "tr", status: str = "in_transit",
            updates: list[tuple[str, datetime, str | None]] | None = None,
            shipment: bool = True, **fields: Any) -> Message:
    """The shipping update e-mail the order-updates journey sent ``cid`` (no phone: e-mail),
    for an order that has a shipment row unless ``shipment`` is False."""
    start = rt.now()
    oid = f"o-{cid}"
    feed(rt, placed(oid, start, cid, phone=None, locale=locale))
    drain_inbox(rt, rt.definitions(), due_by=start)
    if shipment:
        add_shipment(rt, oid, f"shopify:{cid}", status, updates if updates is not None else [
            ("label_created", start - hours(30), "Label printed"),
            ("in_transit", start - hours(2), "Left the Istanbul hub")], **fields)
    feed(rt, follow("shipped", oid, start, cid))
    run_to(rt, rt.definitions(), start + hours(1))
    [message] = [m for m in sent(rt, cid) if m.template == "shipping_update"]
    assert (message.channel, message.status) == ("email", "sent")
    return message


def body_of(rt: Runtime, message: Message) -> str:
    with rt.factory() as session:
        outbox = session.scalars(select(SandboxOutbox)
                                 .where(SandboxOutbox.message_id == message.id)).one()
    return f"{outbox.body_text}\n{outbox.body_html}"


def page_link(rt: Runtime, message: Message) -> str:
    """The tracking page link the message carries, as a path for the in-process client."""
    found = set(re.findall(r"https://shop\.example\.com(/t/[\w.-]+)", body_of(rt, message)))
    assert len(found) == 1, "the message carries one tracking page link"
    return found.pop()


def signed(settings: Settings, payload: dict[str, Any]) -> str:
    assert settings.secret_key is not None
    return Signer(settings.secret_key.get_secret_value().encode()).sign(Purpose.TRACKING, payload)


def clicks(rt: Runtime) -> list[tuple[str | None, str, str]]:
    with rt.factory() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(DeliveryEvent.message_id, DeliveryEvent.kind, DeliveryEvent.provider)
            .order_by(DeliveryEvent.id))]


def alerts(rt: Runtime) -> list[AlertRecord]:
    with rt.factory() as session:
        return list(session.scalars(select(AlertRecord).order_by(AlertRecord.id)))


def h1(html: str) -> str:
    match = re.search(r"<h1[^>]*>([^<]*)</h1>", html)
    assert match, html
    return match.group(1)


# --- messages link to the page ---------------------------------------------------------------------


def test_the_shipping_update_links_to_the_tracking_page_of_its_shipment(
        settings: Settings, rt: Runtime) -> None:
    message = shipped(rt, "c-1")
    body = body_of(rt, message)
    assert CARRIER_URL not in body  # the page instead of the carrier, with no content change
    path = page_link(rt, message)
    assert settings.secret_key is not None
    claims = Signer(settings.secret_key.get_secret_value().encode()).verify(
        Purpose.TRACKING, path.removeprefix("/t/"))
    assert claims == {"s": "shopify:c-1", "c": "c-1", "m": message.id,
                      "d": rt.now().date().isoformat()}
    assert "Yurtiçi Kargo" in body and "YK" in body  # carrier and number stay as they were


def test_without_a_shipment_row_or_with_the_carrier_setting_the_carriers_link_stays(
        settings: Settings, rt: Runtime) -> None:
    legacy = shipped(rt, "c-2", shipment=False)  # order.shipped alone: no shipment row
    assert "https://track.example.com/o-c-2" in body_of(rt, legacy)
    assert "/t/" not in body_of(rt, legacy)

    carrier = open_runtime(settings.model_copy(update={"tracking_link": "carrier"}),
                           SimulatedClock(rt.now()))
    try:
        message = shipped(carrier, "c-3")
        assert "https://track.example.com/o-c-3" in body_of(carrier, message)
        assert "/t/" not in body_of(carrier, message)
    finally:
        carrier.engine.dispose()


# --- the page --------------------------------------------------------------------------------------


def test_the_page_tells_the_story_newest_first_in_the_customers_language_and_zone(
        rt: Runtime, client: TestClient) -> None:
    start = rt.now()  # 2 March 2026, 09:00 UTC; the customer is in Istanbul (UTC+3)
    message = shipped(
        rt, "c-1", locale="tr", status="in_transit",
        updates=[("label_created", start - hours(30), "Etiket basıldı"),
                 ("in_transit", start - hours(20), "Aktarma merkezinde"),
                 ("in_transit", start - hours(2), "İstanbul aktarma merkezinden çıktı")],
        first_estimated_delivery_at=datetime(2026, 3, 4, 15, 0, tzinfo=start.tzinfo),
        estimated_delivery_at=datetime(2026, 3, 6, 15, 0, tzinfo=start.tzinfo))
    clock(rt).advance(hours(1))
    page = client.get(page_link(rt, message))
    assert page.status_code == 200
    html = page.text
    assert '<html lang="tr">' in html
    assert h1(html) == "Kargonuz yolda"
    assert "Sipariş #o-c-1" in html
    # newest first, each at its local time (07:00 UTC is 10:00 in Istanbul)
    entries = re.findall(r"<li><strong>([^<]+)</strong><span>([^<]+)</span>"
                         r'<time datetime="([^"]+)">([^<]+)</time></li>', html)
    assert [(label, text) for label, text, _, _ in entries] == [
        ("Yolda", "İstanbul aktarma merkezinden çıktı"), ("Yolda", "Aktarma merkezinde"),
        ("Kargo etiketi oluşturuldu", "Etiket basıldı")]
    assert entries[0][3] == "2 Mar Pzt, 10:00"
    assert entries[2][3] == "1 Mar Paz, 06:00"  # 1 March 03:00 UTC
    # the latest estimate, and the first one it moved from, as the customer's days
    assert "<strong>6 Mart 2026 Cuma</strong>" in html
    assert "(önceki tarih: 4 Mart 2026 Çarşamba)" in html
    # the carrier, its number and its own page
    assert "<dd>Yurtiçi Kargo</dd>" in html and "<dd>YK-1</dd>" in html
    assert f'href="{CARRIER_URL}"' in html and "Yurtiçi Kargo sitesinde takip edin" in html
    # the shop's help text in Turkish; no problem, so no form
    assert "Sorunuz mu var? Bu e-postayı yanıtlamanız" in html
    assert "<form" not in html
    # a small page for people: no script, not cached, not indexed, a strict CSP
    assert "<script" not in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(("status", "fields", "headline"), [
    ("attempted_delivery", {}, "The carrier could not deliver your parcel"),
    ("exception", {}, "There is a problem with your parcel"),
    ("returned_to_sender", {}, "Your parcel is on its way back to us"),
    ("delayed", {}, "Your parcel is delayed"),
    ("in_transit", {"stalled_at": "now"}, "Your parcel has not moved for a few days"),
    ("in_transit", {"estimated_delivery_at": "yesterday"}, "Your parcel is late"),
])
def test_a_problem_shows_what_to_do_and_the_form(
        rt: Runtime, client: TestClient, status: str, fields: dict[str, str],
        headline: str) -> None:
    moments = {"now": rt.now(), "yesterday": rt.now() - timedelta(days=1)}
    message = shipped(rt, "c-1", locale="en", status=status,
                      updates=[(status, rt.now() - hours(3), "Carrier's words")],
                      **{k: moments[v] for k, v in fields.items()})
    html = client.get(page_link(rt, message)).text
    assert h1(html) == headline
    assert '<p class="alert">' in html  # what happened and what to do
    assert '<form method="post" aria-labelledby="problem">' in html
    assert '<textarea id="words" name="words"' in html


def test_a_missed_delivery_followed_by_silence_tells_both(rt: Runtime, client: TestClient) -> None:
    """Issue 17's story: the headline is the missed delivery, and the page also says since when
    the carrier has been silent (the clock check set stalled_at), in the customer's zone."""
    attempt = rt.now() - timedelta(days=4)
    message = shipped(rt, "c-1", locale="en", status="attempted_delivery",
                      updates=[("attempted_delivery", attempt, "No one at home")],
                      stalled_at=rt.now())
    html = client.get(page_link(rt, message)).text
    assert h1(html) == "The carrier could not deliver your parcel"
    day = format_date(attempt.astimezone(ZoneInfo("Europe/Istanbul")), "full", locale="en")
    assert f"No news from the carrier since {day}" in html


def test_news_after_the_stall_ends_it_on_the_page(rt: Runtime, client: TestClient) -> None:
    """stalled_at is never cleared; a carrier update after it means the parcel moves again."""
    message = shipped(rt, "c-1", locale="en", status="in_transit",
                      updates=[("in_transit", rt.now() + hours(1), "Back on the road")],
                      stalled_at=rt.now())
    html = client.get(page_link(rt, message)).text
    assert h1(html) != "Your parcel has not moved for a few days"
    assert "No news from the carrier since" not in html


def test_a_delivered_parcel_shows_its_day_and_no_estimate(rt: Runtime, client: TestClient) -> None:
    start = rt.now()
    message = shipped(rt, "c-1", locale="pl", status="delivered",
                      updates=[("in_transit", start - hours(30), None),
                               ("delivered", start - hours(3), "Doręczono do rąk własnych")],
                      delivered_at=start - hours(3),
                      estimated_delivery_at=start + timedelta(days=2))
    html = client.get(page_link(rt, message)).text
    assert h1(html) == "Przesyłka została doręczona"
    assert "<dt>Doręczono</dt><dd><strong>poniedziałek, 2 marca 2026</strong></dd>" in html
    assert "Przewidywane doręczenie" not in html and "<form" not in html


# --- signed-token rules --------------------------------------------------------------------------


def test_a_tampered_link_is_403_and_writes_nothing(rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1")
    clock(rt).advance(hours(1))
    path = page_link(rt, message)
    tampered = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    for answer in (client.get(tampered), client.post(tampered, data={"words": "Where is it?"})):
        assert answer.status_code == 403
        assert h1(answer.text) == "This link does not work"  # no customer: the browser's language
        assert "<script" not in answer.text
    assert clicks(rt) == [] and alerts(rt) == []


def test_a_link_for_another_customers_shipment_or_message_is_403(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    mine = shipped(rt, "c-1")
    theirs = shipped(rt, "c-2")
    day = rt.now().date().isoformat()
    for payload in ({"s": "shopify:c-2", "c": "c-1", "d": day},  # not my shipment
                    {"s": "shopify:c-1", "c": "c-1", "d": day, "m": theirs.id},  # not my message
                    {"s": "shopify:none", "c": "c-1", "d": day}):  # no such shipment
        assert client.get(f"/t/{signed(settings, payload)}").status_code in (403, 404)
    assert client.get(page_link(rt, mine)).status_code == 200


def test_a_survey_token_does_not_open_the_tracking_page(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1")
    assert settings.secret_key is not None
    survey = Signer(settings.secret_key.get_secret_value().encode()).sign(
        Purpose.SURVEY, {"s": "shopify:c-1", "c": "c-1", "d": "2026-03-02", "m": message.id})
    assert client.get(f"/t/{survey}").status_code == 403


def test_an_expired_link_shows_a_friendly_page_and_counts_nothing(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    start = rt.now()
    message = shipped(rt, "c-1", locale="en", status="delivered",
                      updates=[("delivered", start - hours(1), None)],
                      delivered_at=start - hours(1))
    path = page_link(rt, message)  # sent at start + 1 h
    clock(rt).advance(timedelta(days=settings.tracking_days) - hours(3))
    assert client.get(path).status_code == 200  # an hour before TRACKING_DAYS after delivery
    with rt.factory() as session, session.begin():
        session.query(DeliveryEvent).delete()
    clock(rt).advance(hours(2))
    answer = client.get(path)
    assert answer.status_code == 410
    assert h1(answer.text) == "This tracking link has expired"
    assert "Questions? Just reply to this email" in answer.text  # the shop's help
    assert "<form" not in answer.text and "<li>" not in answer.text
    posted = client.post(path, data={"words": "It never came"})
    assert posted.status_code == 410
    assert clicks(rt) == [] and alerts(rt) == []


def test_a_parcel_still_travelling_keeps_its_link_open(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1")
    path = page_link(rt, message)
    clock(rt).advance(timedelta(days=settings.tracking_days + 5))
    with rt.factory() as session, session.begin():  # the carrier spoke again yesterday
        row = session.get(Shipment, "shopify:c-1")
        assert row is not None
        row.last_update_at = rt.now() - timedelta(days=1)
    assert client.get(path).status_code == 200


# --- visits count as clicks --------------------------------------------------------------------


def funnel_step(rt: Runtime) -> Any:
    with rt.factory() as session:
        [step] = [s for s in funnel(session, None, rt.now()) if s.template == "shipping_update"]
    return step


def test_a_scanners_visit_creates_nothing_and_a_persons_counts_one_click(
        rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1")
    path = page_link(rt, message)
    # a mail scanner at delivery time: too soon after the send, whatever it claims to be
    assert message.sent_at is not None
    clock(rt).set(message.sent_at + timedelta(seconds=3))
    assert client.get(path).status_code == 200
    clock(rt).advance(hours(1))
    for scanner in ({"User-Agent": "python-httpx/0.28"}, {"User-Agent": ""},
                    {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"},
                    {**A_PERSON, "Sec-Purpose": "prefetch"}):
        answer = client.get(path, headers=scanner)
        assert answer.status_code == 200 and "Kargonuz yolda" in answer.text  # the same page
    assert client.head(path).status_code == 200  # a link checker
    assert clicks(rt) == []
    assert funnel_step(rt).clicked == 0

    # a person, twice: one click of the message that carried the link
    assert client.get(path).status_code == 200
    clock(rt).advance(hours(1))
    assert client.get(path).status_code == 200
    assert clicks(rt) == [(message.id, "clicked", "aftersale")]
    with rt.factory() as session:
        row = session.get(Message, message.id)
        assert row is not None and row.delivery_status == "clicked"
    step = funnel_step(rt)
    assert (step.sent, step.clicked, step.suspect_clicked) == (1, 1, 0)

    # SendGrid's click tracking reports the same link: still one clicked message
    with rt.factory() as session, session.begin():
        apply_deliveries(session, [Delivery(
            provider="sendgrid", provider_event_id="sg-click-1", kind=DeliveryKind.CLICKED,
            message_id=message.id, provider_message_id=None, recipient=None,
            occurred_at=rt.now(), channel="email",
            raw={"url": f"https://shop.example.com{path}", "useragent": FIREFOX})], rt.now())
    assert [kind for _, kind, _ in clicks(rt)] == ["clicked", "clicked"]
    step = funnel_step(rt)
    assert (step.sent, step.clicked, step.suspect_clicked) == (1, 1, 0)


def test_a_link_without_a_message_shows_the_page_and_counts_nothing(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    shipped(rt, "c-1")
    clock(rt).advance(hours(1))
    token = signed(settings, {"s": "shopify:c-1", "c": "c-1", "d": rt.now().date().isoformat()})
    assert client.get(f"/t/{token}").status_code == 200
    assert clicks(rt) == []


# --- tell us about a problem ---------------------------------------------------------------------


def test_the_form_creates_exactly_one_alert_with_the_customers_words(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1", locale="en", status="attempted_delivery",
                      updates=[("attempted_delivery", rt.now() - hours(2), "Nobody home")])
    path = page_link(rt, message)
    clock(rt).advance(hours(1))
    answer = client.post(path, data={"words": "  I was at home all day!  "})
    assert answer.status_code == 200
    assert "Thank you. Your message is with our team" in answer.text
    assert "<form" not in answer.text  # sent: no second box
    [alert] = alerts(rt)
    assert (alert.kind, alert.customer_id, alert.order_id, alert.enrollment_id,
            alert.status) == (ALERT_KIND, "c-1", "o-c-1", message.enrollment_id, "pending")
    assert alert.details["answer"] == {"comment": "I was at home all day!"}
    assert alert.details["shipment"]["id"] == "shopify:c-1"
    assert alert.details["shipment"]["problem"] == "attempted_delivery"
    assert alert.details["message_id"] == message.id

    # the same words again (a reload, a double tap): still one alert
    assert client.post(path, data={"words": "I was at home all day!"}).status_code == 200
    assert len(alerts(rt)) == 1
    # an empty box stores nothing and asks again
    empty = client.post(path, data={"words": "   "})
    assert empty.status_code == 400
    assert "Please write a few words before sending." in empty.text
    assert len(alerts(rt)) == 1
    # the form posts no click: the visit counts, the report is not a second one
    assert clicks(rt) == []


def test_a_post_for_a_parcel_without_a_problem_creates_no_alert(
        rt: Runtime, client: TestClient) -> None:
    """The form is offered only for a problem; a post made anyway (an old form, a script)
    alerts nobody."""
    message = shipped(rt, "c-1", locale="en")  # in transit, on time
    assert client.post(page_link(rt, message), data={"words": "Hello?"}).status_code == 200
    assert alerts(rt) == []


def test_a_shipment_takes_a_bounded_number_of_reports(rt: Runtime, client: TestClient) -> None:
    message = shipped(rt, "c-1", status="exception", updates=[("exception", rt.now(), "Damaged")])
    path = page_link(rt, message)
    for n in range(MAX_REPORTS + 3):
        assert client.post(path, data={"words": f"report {n}"}).status_code == 200
    assert len(alerts(rt)) == MAX_REPORTS


def test_the_alert_reaches_the_team_through_the_existing_routes(
        settings: Settings, rt: Runtime) -> None:
    team = open_runtime(settings.model_copy(update={"alert_email": "team@example.com"}),
                        SimulatedClock(rt.now()))
    try:
        message = shipped(team, "c-1", status="exception",
                          updates=[("exception", team.now(), "Parcel damaged")])
        clock(team).advance(hours(1))
        with in_process(tracking_app(team.settings, team), headers=A_PERSON) as c:
            assert c.post(page_link(team, message),
                          data={"words": "The box arrived crushed"}).status_code == 200
        counts = deliver_alerts(team)
        assert (counts.claimed, counts.delivered) == (1, 1)
        [alert] = alerts(team)
        assert (alert.status, alert.email_status, alert.webhook_status) == (
            "delivered", "sent", "skipped")
        with team.factory() as session:
            outbox = session.scalars(select(SandboxOutbox).where(
                SandboxOutbox.message_id == f"alert_{alert.id}")).one()
        assert outbox.recipient == "team@example.com"
        assert "The box arrived crushed" in (outbox.body_text or "")
        summary = AlertView.of(_Claimed(alert, None, None)).summary()
        assert summary.startswith("Delivery problem report alert: customer c-1")
        assert '"The box arrived crushed"' in summary
    finally:
        team.engine.dispose()


def test_without_an_enrollment_the_page_offers_help_instead_of_the_form(
        settings: Settings, rt: Runtime, client: TestClient) -> None:
    """A link no message carried, for a shipment whose order started no journey: there is
    nothing to hang an alert on, so the page shows the shop's help and stores nothing."""
    now = rt.now()
    with rt.factory() as session, session.begin():  # rows no event made: no journey started
        session.add(Customer(id="c-x", locale="en", timezone="Europe/Warsaw", created_at=now,
                             updated_at=now))
        session.flush()
        session.add(Order(id="o-x", customer_id="c-x", number="#x", placed_at=now,
                          total=Decimal("10.00"), currency="EUR", items=[], discount_codes=[],
                          status="shipped"))
    add_shipment(rt, "o-x", "shopify:x", "exception", [("exception", now, "Lost")])
    token = signed(settings, {"s": "shopify:x", "c": "c-x", "d": now.date().isoformat()})
    page = client.get(f"/t/{token}")
    assert page.status_code == 200 and "<form" not in page.text
    assert "Questions? Just reply to this email" in page.text
    posted = client.post(f"/t/{token}", data={"words": "Lost?"})
    assert posted.status_code == 200 and "Thank you" not in posted.text
    assert alerts(rt) == []
