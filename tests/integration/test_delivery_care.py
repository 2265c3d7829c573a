"""The delivery-care journey end to end through the sandbox, on SQLite and PostgreSQL: carrier
moments in as ``shipment.updated`` events, the clock deriving ``shipment.stalled``, and the
right messages and team alerts out (issue 17, "Done when")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import AlertRecord, Enrollment, Message, SandboxOutbox
from aftersale.pipeline.contexts import moment_of_entry
from aftersale.pipeline.runtime import Runtime, open_runtime
from aftersale.web.tracking import tracking_router
from tests.conftest import START
from tests.factories import days, placed
from tests.integration.helpers import feed, in_process, run_to, sent, serve, treated_customer

ALERT_EMAIL = "team@atlas-store.example"
SHIPMENT = "shopify:9001"
CARRIER_WORDS = "Alıcı adreste bulunamadı, ihbar bırakıldı"
# The carrier's tracking page, or ours (/t/{token}) where the tracking page replaces it.
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"  # a person
TRACKING_LINK = re.compile(r"https://track\.example\.com/YK9001|https?://\S+/t/\S+")


@pytest.fixture
def team_hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local receiver for the alert webhook (Slack-compatible JSON): its URL and its posts."""
    posts: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/hooks/alerts")
    async def hook(request: Request) -> PlainTextResponse:
        posts.append(await request.json())
        return PlainTextResponse("ok")

    with serve(app) as base:
        yield f"{base}/hooks/alerts", posts


@pytest.fixture
def care_rt(settings: Settings, team_hook: tuple[str, list[dict[str, Any]]]
            ) -> Iterator[Runtime]:
    """The test runtime with the team's alert routes set: e-mail and the webhook."""
    configured = Settings(_env_file=None, **settings.model_dump() | {
        "alert_email": ALERT_EMAIL, "alert_webhook_url": team_hook[0]})
    runtime = open_runtime(configured, SimulatedClock(START))
    yield runtime
    runtime.engine.dispose()


def parcel(status: str, at: datetime, cid: str, n: int, message: str | None = None,
           order: str = "o-1", shipment_id: str = SHIPMENT) -> dict[str, Any]:
    """A carrier moment of an order's one parcel, as POST /events takes it."""
    shipment = {"id": shipment_id, "status": status, "carrier": "Yurtiçi Kargo",
                "tracking_number": "YK9001", "tracking_url": "https://track.example.com/YK9001",
                "destination_country": "TR", "message": message}
    return {"id": f"evt-parcel-{n}", "type": "shipment.updated", "occurred_at": at.isoformat(),
            "customer": {"id": cid}, "order": {"id": order}, "shipment": shipment}


def care_enrollments(rt: Runtime, cid: str) -> list[Enrollment]:
    with rt.factory() as session:
        return list(session.scalars(
            select(Enrollment).where(Enrollment.customer_id == cid,
                                     Enrollment.journey == "delivery-care")
            .order_by(Enrollment.enrolled_at, Enrollment.id)))


def delivered(rt: Runtime, message: Message) -> SandboxOutbox:
    with rt.factory() as session:
        row = session.scalar(select(SandboxOutbox).where(SandboxOutbox.message_id == message.id))
    assert row is not None, f"{message.template} was not sent: {message.status_reason}"
    return row


def alerts(rt: Runtime) -> list[AlertRecord]:
    with rt.factory() as session:
        return list(session.scalars(select(AlertRecord).order_by(AlertRecord.id)))


def team_mail(rt: Runtime, alert: AlertRecord) -> SandboxOutbox:
    with rt.factory() as session:
        row = session.scalar(select(SandboxOutbox)
                             .where(SandboxOutbox.message_id == f"alert_{alert.id}"))
    assert row is not None, "the team was not e-mailed"
    return row


def test_a_missed_delivery_then_four_silent_business_days_gives_three_messages_and_one_alert(
        care_rt: Runtime) -> None:
    rt, definitions = care_rt, care_rt.definitions()
    cid = treated_customer("onboarding", 10)
    # Monday 2 March: ordered, with consent; Tuesday: on its way; Wednesday 11:00 UTC: the
    # courier finds nobody at home.
    feed(rt, placed("o-1", START, cid))
    feed(rt, parcel("in_transit", START + days(1), cid, 1, "Gönderi yola çıktı"))
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=3))
    assert care_enrollments(rt, cid) == []  # in transit: nothing to say beyond the tracking link
    assert [m.template for m in sent(rt, cid)] == ["shipping_update"]

    attempt = START + days(2) + timedelta(hours=2)
    feed(rt, parcel("attempted_delivery", attempt, cid, 2, CARRIER_WORDS))
    run_to(rt, definitions, attempt + timedelta(hours=3), tick=timedelta(hours=3))
    assert [m.template for m in sent(rt, cid)] == ["shipping_update", "delivery_attempted"]
    assert alerts(rt) == []  # a missed delivery alone is the customer's to rebook

    # Then silence: Thursday, Friday, (the weekend), Monday and Tuesday, four business days.
    run_to(rt, definitions, attempt + days(6) + timedelta(hours=4), tick=timedelta(hours=3))

    messages = sent(rt, cid)
    assert [m.template for m in messages] == [
        "shipping_update", "delivery_attempted", "delivery_delayed"]
    assert {m.status for m in messages} == {"sent"}
    attempted, apology = delivered(rt, messages[1]), delivered(rt, messages[2])
    # SMS (consent given; WhatsApp's 24-hour window is closed), in Turkish, with the link.
    assert attempted.channel == "sms" and apology.channel == "sms"
    assert "teslim edilemedi" in attempted.body_text
    assert TRACKING_LINK.search(attempted.body_text)
    assert "özür dileriz" in apology.body_text
    assert "Kargo firmasıyla görüşüyoruz" in apology.body_text  # the team is on it, as alerted

    [alert] = alerts(rt)
    assert (alert.kind, alert.customer_id, alert.order_id) == ("delivery_problem", cid, "o-1")
    assert alert.status == "delivered" and alert.email_status == "sent"
    mail = team_mail(rt, alert)
    assert mail.recipient == ALERT_EMAIL
    assert mail.subject == "Delivery problem: order #o-1 (Yurtiçi Kargo, stalled)"
    assert f"Carrier's words: {CARRIER_WORDS}" in mail.body_text
    assert "stopped moving after a failed delivery attempt" in mail.body_text

    # one enrollment per moment: the missed delivery, and the stall after 3 business days
    moments = [(e.shipment_id, moment_of_entry(e.entry_key, SHIPMENT))
               for e in care_enrollments(rt, cid)]
    assert moments == [(SHIPMENT, "attempted_delivery"), (SHIPMENT, "stalled:3")]

    # More silence derives nothing new: each moment once.
    run_to(rt, definitions, attempt + days(12), tick=timedelta(hours=6))
    assert len(sent(rt, cid)) == 3 and len(alerts(rt)) == 1


def test_arriving_today_is_sent_only_when_the_shop_turns_it_on(
        settings: Settings, definitions_dirs: tuple[Path, Path]) -> None:
    cid = treated_customer("onboarding", 10)
    shop = definitions_dirs[1] / "shop.yaml"
    for switched_on in (False, True):
        shop.write_text(shop.read_text().replace(
            f"arriving_today_messages: {str(not switched_on).lower()}",
            f"arriving_today_messages: {str(switched_on).lower()}"))
        rt = open_runtime(settings, SimulatedClock(START))
        try:
            definitions = rt.definitions()
            customer, order = f"{cid}-{switched_on}", f"o-{switched_on}"
            feed(rt, placed(order, START, customer),
                 parcel("out_for_delivery", START + days(1), customer, 10 + switched_on,
                        order=order, shipment_id=f"shopify:out-{switched_on}"))
            run_to(rt, definitions, START + days(1) + timedelta(hours=2),
                   tick=timedelta(hours=1))
            templates = [m.template for m in sent(rt, customer)]
            assert ("delivery_arriving_today" in templates) is switched_on, templates
            assert len(care_enrollments(rt, customer)) == int(switched_on)
        finally:
            rt.engine.dispose()


def test_a_parcel_at_the_pickup_point_gets_a_reminder_only_if_still_there_two_days_later(
        care_rt: Runtime) -> None:
    rt, definitions = care_rt, care_rt.definitions()
    cid = treated_customer("onboarding", 10)
    where = "Kadıköy şubesinde teslim alınmayı bekliyor"
    feed(rt, placed("o-1", START, cid), parcel("in_transit", START + days(1), cid, 1))
    feed(rt, parcel("ready_for_pickup", START + days(2), cid, 2, where))
    run_to(rt, definitions, START + days(3), tick=timedelta(hours=3))
    messages = sent(rt, cid)
    assert [m.template for m in messages] == ["shipping_update", "delivery_pickup_ready"]
    assert where in delivered(rt, messages[1]).body_text
    run_to(rt, definitions, START + days(5), tick=timedelta(hours=3))
    assert [m.template for m in sent(rt, cid)][-1] == "delivery_pickup_reminder"

    # Another customer collects on the next day: no reminder.
    other = treated_customer("onboarding", 10, prefix="p")
    feed(rt, placed("o-2", START + days(5), other))
    for n, (status, at) in enumerate((("in_transit", days(6)), ("ready_for_pickup", days(7)),
                                      ("delivered", days(8))), start=20):
        feed(rt, parcel(status, START + at, other, n, where if status != "delivered" else None,
                        order="o-2", shipment_id="shopify:9002"))
    run_to(rt, definitions, START + days(12), tick=timedelta(hours=3))
    templates = [m.template for m in sent(rt, other)]
    assert "delivery_pickup_ready" in templates
    assert "delivery_pickup_reminder" not in templates


def test_a_carrier_exception_tells_the_customer_and_the_team_in_the_carriers_words(
        care_rt: Runtime, team_hook: tuple[str, list[dict[str, Any]]]) -> None:
    rt, definitions = care_rt, care_rt.definitions()
    cid = treated_customer("onboarding", 10)
    words = "Paket hasarlı, gönderici ile iletişime geçiliyor"
    feed(rt, placed("o-1", START, cid), parcel("in_transit", START + days(1), cid, 1))
    feed(rt, parcel("exception", START + days(2), cid, 2, words))
    run_to(rt, definitions, START + days(3), tick=timedelta(hours=3))
    messages = sent(rt, cid)
    assert [m.template for m in messages] == ["shipping_update", "delivery_problem"]
    assert "bir iş günü içinde" in delivered(rt, messages[1]).body_text
    [alert] = alerts(rt)
    assert alert.kind == "delivery_problem"
    mail = team_mail(rt, alert)
    assert mail.subject == "Delivery problem: order #o-1 (Yurtiçi Kargo, exception)"
    assert f"Carrier's words: {words}" in mail.body_text
    [post] = team_hook[1]
    assert post["text"] == (
        f"Delivery problem alert: Ayşe Yılmaz on order #o-1, parcel exception (Yurtiçi Kargo "
        f'YK9001): carrier says "{words}" (first_time, delivery-care)')
    parcel_sent = post["alert"]["shipment"]
    assert (parcel_sent["id"], parcel_sent["status"], parcel_sent["moment"]) == (
        SHIPMENT, "exception", "exception")
    assert parcel_sent["last_message"] == words
    assert parcel_sent["tracking_url"] == "https://track.example.com/YK9001"


def test_onboarding_asks_for_nps_a_week_later_after_a_delivery_problem(
        care_rt: Runtime) -> None:
    """Two first-time buyers, delivered the same day; one parcel missed a delivery first."""
    rt, definitions = care_rt, care_rt.definitions()
    smooth = treated_customer("onboarding", 10, prefix="s")
    bumpy = treated_customer("onboarding", 10, prefix="b")
    for n, (cid, oid) in enumerate(((smooth, "o-s"), (bumpy, "o-b"))):
        feed(rt, placed(oid, START, cid))
        moments = [("in_transit", days(1))]
        if cid == bumpy:
            moments.append(("attempted_delivery", days(2)))
        moments.append(("delivered", days(3)))
        for m, (status, at) in enumerate(moments):
            feed(rt, parcel(status, START + at, cid, 100 * (n + 1) + m, order=oid,
                            shipment_id=f"shopify:{oid}"))
    run_to(rt, definitions, START + days(45), tick=timedelta(hours=6))

    def nps_sent_at(cid: str) -> datetime:
        [nps] = [m for m in sent(rt, cid) if m.template == "nps_survey"]
        assert nps.sent_at is not None
        return nps.sent_at

    assert nps_sent_at(bumpy) - nps_sent_at(smooth) >= days(7)
    assert nps_sent_at(bumpy) - nps_sent_at(smooth) < days(8)


def test_a_problem_told_on_the_tracking_page_reaches_the_team_with_both_sides_words(
        care_rt: Runtime) -> None:
    """The missed-delivery SMS links to the tracking page; the customer writes what happened
    there, and the team's e-mail quotes the customer and the carrier."""
    rt, definitions = care_rt, care_rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), parcel("in_transit", START + days(1), cid, 1))
    feed(rt, parcel("attempted_delivery", START + days(2), cid, 2, CARRIER_WORDS))
    run_to(rt, definitions, START + days(2) + timedelta(hours=3), tick=timedelta(hours=3))
    [attempted] = [m for m in sent(rt, cid) if m.template == "delivery_attempted"]
    link = re.search(r"https?://[^/\s]+(/t/\S+)", delivered(rt, attempted).body_text)
    assert link, "the message links to the tracking page"
    app = FastAPI()
    app.include_router(tracking_router(rt.settings, rt))
    with in_process(app, headers={"User-Agent": FIREFOX}) as client:
        assert client.post(link.group(1), data={"words": "Kimse zile basmadı"}).status_code == 200
    run_to(rt, definitions, rt.now() + timedelta(hours=1))
    [alert] = alerts(rt)
    assert alert.kind == "delivery_problem_report"
    mail = team_mail(rt, alert)
    assert mail.subject == ("Delivery problem reported: order #o-1 "
                            "(Yurtiçi Kargo, attempted delivery)")
    assert "Their words: Kimse zile basmadı" in mail.body_text
    assert f"Carrier's words: {CARRIER_WORDS}" in mail.body_text
