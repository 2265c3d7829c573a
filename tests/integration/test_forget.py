"""``aftersale forget``: a customer's personal data goes from every table, the counts stay.

The world is built through the real paths (intake, processing, journeys on a simulated clock,
the sandbox channels, survey answers, SMS replies, STOP/START, provider reports, a team alert
e-mail); then every column of every table is scanned for the customer's strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.config import Settings
from aftersale.core.links import referral_code
from aftersale.db.models import (
    AlertRecord,
    Base,
    Customer,
    Enrollment,
    InboxEvent,
    Message,
    Order,
    SandboxOutbox,
    Suppression,
)
from aftersale.metrics.compute import compute
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.advance import advance_due
from aftersale.pipeline.erasure import REASON, ForgetSummary, UnknownCustomer, forget_customer
from aftersale.pipeline.runtime import Runtime
from aftersale.pipeline.send_outcomes import Delivery, DeliveryKind, Inbound, apply_deliveries, apply_inbound
from aftersale.pipeline.suppression import is_suppressed
from aftersale.surveys.answers import store_answer, survey_message
from aftersale.surveys.sms_answers import survey_kinds
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import aftersale, feed, run_to, sent, treated_customer

EMAIL = "zeynep.forgetme@example.org"
PHONE = "+905327654321"
FIRST, LAST = "Zeynepcan", "Unutulmazoğlu"
CSAT_COMMENT = "the propeller was cracked, XYZZY-CSAT"
SMS_TEXT = "kargo çok geç geldi QWERTY-SMS"
NOTE = "ring twice, flat 5 NOTE-SECRET"  # an unknown field: kept by intake, must go too
STREET = "Papatya Sokak 7 STREET-SECRET"
TRACKING = "YKof-1"  # tests.factories.follow: the carrier's number leads to the address
SECRETS = (EMAIL, EMAIL.split("@")[0], PHONE, PHONE.lstrip("+"), FIRST, LAST, CSAT_COMMENT,
           "XYZZY-CSAT", "QWERTY-SMS", "NOTE-SECRET", "STREET-SECRET", TRACKING)
KEEPER_EMAIL = "keeper.stays@example.net"
END = START + days(16)  # the metrics report time


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Alerts e-mailed to the team and sandbox messages written as files too: both are copies
    of personal data that forget must reach."""
    return settings.model_copy(update={"alert_email": "team@shop.example",
                                       "sandbox_dir": tmp_path / "sandbox"})


@dataclass(frozen=True)
class World:
    cid: str
    pending: str  # a queued (not yet sent) message of the customer at forget time


def _forget(rt: Runtime, cid: str) -> ForgetSummary:
    with rt.factory() as session, session.begin():
        return forget_customer(session, cid, rt.now())


def _rows(rt: Runtime) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table.column, row) for every row of every table, values as text (JSON as JSON)."""
    with rt.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()).mappings():
                yield table.name, {
                    name: json.dumps(value, ensure_ascii=False, default=str)
                    if isinstance(value, dict | list) else str(value)
                    for name, value in row.items()}


def _hits(rt: Runtime, needles: tuple[str, ...]) -> set[tuple[str, str]]:
    """(table.column, needle) wherever a needle appears, case-insensitively."""
    found = set()
    for table, row in _rows(rt):
        for column, text in row.items():
            found.update((f"{table}.{column}", n) for n in needles if n.lower() in text.lower())
    return found


def _dump(rt: Runtime) -> list[tuple[str, list[tuple[str, str]]]]:
    return sorted((table, sorted(row.items())) for table, row in _rows(rt))


def _metrics(rt: Runtime) -> dict[str, Any]:
    with rt.factory() as session, session.begin():
        report = compute(session, None, END, survey_kinds(rt.definitions().content), as_of=END)
    return report.model_dump(mode="json")


def _build_world(rt: Runtime) -> World:
    """The customer buys, gets the tracking link, tutorial and CSAT check-in, answers 1 with a
    comment (an alert e-mailed to the team, a follow-up), replies by SMS, sends STOP by SMS,
    STOP then START on WhatsApp, refers a friend and buys again; one step is queued, not sent."""
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10, prefix="f")
    first = placed("of-1", START, cid, email=EMAIL, phone=PHONE, first_name=FIRST, last_name=LAST,
                   notes=NOTE, consent={"email": True, "sms": True, "whatsapp": True,
                                        "order_updates": {"sms": True, "whatsapp": True}})
    first["order"]["shipping_address"] = {"address1": STREET, "phone": PHONE}
    feed(rt, first, placed("ok-1", START, "keep-1", email=KEEPER_EMAIL, phone="+905321112233"),
         *(follow(kind, oid, START + days(n), who) for kind, n in (("shipped", 1), ("delivered", 2))
           for oid, who in (("of-1", cid), ("ok-1", "keep-1"))))
    run_to(rt, definitions, START + days(10), tick=days(0.5))
    [csat] = [m for m in sent(rt, cid) if m.template == "csat_checkin"]
    assert csat.status == "sent" and csat.recipient == EMAIL
    with rt.factory() as session, session.begin():
        survey = survey_message(session, csat.id, "csat")
        assert survey is not None
        store_answer(session, survey, 1, CSAT_COMMENT, "email", rt.now())
        # A send retried after a provider error keeps the error text, which may quote the
        # address (Twilio's do); written here because the sandbox never fails.
        shipping = session.scalars(select(Message).where(
            Message.customer_id == cid, Message.template == "shipping_update")).one()
        shipping.status_reason = f"twilio: the 'To' number {PHONE} is unreachable (30003)"
    run_to(rt, definitions, START + days(11), tick=days(0.5))
    now = rt.now()
    with rt.factory() as session, session.begin():
        for n, (channel, body) in enumerate((("sms", SMS_TEXT), ("sms", "STOP"),
                                             ("whatsapp", "STOP"), ("whatsapp", "START"))):
            apply_inbound(session, Inbound(
                "twilio", f"SM-f-{n}", channel, PHONE, "+15017122661", body,  # type: ignore[arg-type]
                raw={"From": f"whatsapp:{PHONE}" if channel == "whatsapp" else PHONE,
                     "Body": body, "ProfileName": f"{FIRST} {LAST}"}), now)
        apply_deliveries(session, [
            Delivery("sendgrid", "sg-f-1", DeliveryKind.DELIVERED, csat.id, None, EMAIL, now,
                     raw={"email": EMAIL, "event": "delivered", "ip": "203.0.113.9"}),
            Delivery("sendgrid", "sg-f-2", DeliveryKind.DEFERRED, csat.id, None, EMAIL, now,
                     reason=f"450 4.2.2 <{EMAIL}>: mailbox full", raw={"email": EMAIL}),
            # A report that names the address but none of our messages.
            Delivery("sendgrid", "sg-f-3", DeliveryKind.OPENED, None, None, EMAIL, now,
                     raw={"email": EMAIL, "useragent": "Mozilla/5.0"}),
        ], now)
    referred = placed("or-1", START + days(12), "ref-1", email="friend@example.com")
    referred["order"]["referral_code"] = referral_code(cid)
    feed(rt, referred, placed("of-2", START + days(15), cid, email=EMAIL, phone=PHONE,
                              first_name=FIRST, last_name=LAST))
    run_to(rt, definitions, START + days(15.5), tick=days(0.5))
    feed(rt, follow("shipped", "of-2", START + days(15.5), cid))
    rt.clock.set(START + days(16))  # type: ignore[attr-defined]
    drain_inbox(rt, definitions)
    advance_due(rt.factory, definitions, rt.clock)  # the tracking link is queued, not sent
    with rt.factory() as session:
        pending = session.scalars(select(Message.id).where(
            Message.customer_id == cid, Message.status == "pending")).one()
        alert = session.scalars(select(AlertRecord).where(AlertRecord.customer_id == cid)).one()
        assert alert.status == "delivered" and alert.details["answer"]["comment"] == CSAT_COMMENT
        team_mail = session.scalars(select(SandboxOutbox).where(
            SandboxOutbox.message_id == f"alert_{alert.id}")).one()
        assert team_mail.recipient == "team@shop.example" and FIRST in team_mail.body_text
    return World(cid, pending)


def test_forget_erases_every_trace_and_keeps_the_metrics(rt: Runtime) -> None:
    world = _build_world(rt)
    # The scan finds every secret before: it can see into every kind of column.
    before = {needle for _, needle in _hits(rt, SECRETS)}
    assert before == set(SECRETS)
    assert ("messages.body_text", FIRST) in _hits(rt, (FIRST,))
    metrics = _metrics(rt)
    assert metrics["segments"] and any(s["customers"] for s in metrics["segments"])

    summary = _forget(rt, world.cid)

    assert not summary.already_forgotten and summary.forgotten_at == rt.now()
    # Only the active opt-out keeps the phone number, unlinked from the customer.
    assert _hits(rt, SECRETS) == {("suppressions.address", PHONE),
                                  ("suppressions.address", PHONE.lstrip("+"))}
    with rt.factory() as session:
        [kept] = session.scalars(select(Suppression)).all()  # the lifted WhatsApp one is gone
        customer = session.get(Customer, world.cid)
        assert customer is not None
        assert is_suppressed(session, "sms", PHONE)  # STOP goes on holding for this number
    assert (kept.channel, kept.address, kept.customer_id, kept.lifted_at) == ("sms", PHONE, None,
                                                                              None)
    assert customer.forgotten_at == summary.forgotten_at
    assert (customer.email, customer.phone, customer.first_name, customer.last_name,
            customer.timezone) == (None, None, None, None, None)
    assert not (customer.consent_email or customer.consent_sms or customer.consent_whatsapp)
    assert not (customer.order_updates_sms or customer.order_updates_whatsapp)
    assert customer.fact_times is None
    assert customer.referral_code == referral_code(world.cid)
    assert summary.suppressions_kept == 1 and summary.erased["lifted suppressions"] == 1
    assert summary.erased["customer"] == 1 and summary.erased["survey comments"] == 1
    assert summary.erased["inbound messages"] == 4 and summary.erased["delivery events"] == 3
    assert summary.erased["alerts"] == 1 and summary.erased["orders (tracking)"] == 2
    # Rows that held something: the tracking link, tutorial, CSAT and follow-up were rendered
    # (the queued one was not); every event but the bare "delivered" one carried something.
    assert summary.erased["messages"] == 4 and summary.erased["inbox events"] == 5
    # Everyone else is untouched.
    assert {n for _, n in _hits(rt, (KEEPER_EMAIL, "friend@example.com"))} == {
        KEEPER_EMAIL, "friend@example.com"}
    assert _metrics(rt) == metrics


def test_a_forgotten_customer_is_sent_nothing_more(rt: Runtime) -> None:
    world = _build_world(rt)
    summary = _forget(rt, world.cid)
    forgotten = rt.now()
    assert summary.enrollments_ended == 1 and summary.messages_cancelled == 1
    with rt.factory() as session:
        ended = session.scalars(select(Enrollment).where(Enrollment.customer_id == world.cid,
                                                         Enrollment.end_reason == REASON)).all()
        pending = session.get(Message, world.pending)
    # Onboarding had ended (the detractor branch), order-updates had queued its last step.
    assert [(e.journey, e.order_id, e.status) for e in ended] == [("repeat-nps", "of-2", "exited")]
    assert pending is not None and (pending.status, pending.status_reason) == ("not_sent", REASON)

    # The parcel arrives; then the shop sends a new order for the same id, without contact
    # details: it enters a journey, and dispatch records its step as not sent, with the reason.
    rt.clock.advance(days(1))  # type: ignore[attr-defined]
    now = rt.now()
    feed(rt, follow("delivered", "of-2", now, world.cid),
         {"id": "evt-of-3", "type": "order.placed", "occurred_at": now.isoformat(),
          "customer": {"id": world.cid},
          "order": {"id": "of-3", "total": "10.00", "currency": "TRY", "items": []}},
         follow("shipped", "of-3", now, world.cid))
    run_to(rt, rt.definitions(), forgotten + days(45), tick=days(0.5))
    later = [m for m in sent(rt, world.cid) if m.created_at > forgotten]
    assert [m for m in sent(rt, world.cid) if m.sent_at and m.sent_at > forgotten] == []
    assert later and {m.status for m in later} == {"not_sent"}
    assert all("no e-mail address" in (m.status_reason or "") for m in later)
    with rt.factory() as session:
        failed = session.scalars(select(InboxEvent.event_id).where(
            InboxEvent.status != "processed")).all()
    assert failed == []


def test_forgetting_twice_is_harmless_and_a_second_run_erases_late_data(rt: Runtime) -> None:
    cid = "c-twice"
    feed(rt, placed("o-t", START, cid, email=EMAIL, phone=PHONE, first_name=FIRST),
         follow("shipped", "o-t", START + days(1), cid))
    run_to(rt, rt.definitions(), START + days(2), tick=days(0.5))
    [message] = [m for m in sent(rt, cid) if m.status == "sent"]
    first = _forget(rt, cid)
    assert first.changed > 0 and not first.already_forgotten
    snapshot = _dump(rt)

    rt.clock.advance(days(1))  # type: ignore[attr-defined]
    again = _forget(rt, cid)
    assert again.already_forgotten and again.changed == 0
    assert again.forgotten_at == first.forgotten_at
    assert _dump(rt) == snapshot

    # A provider report that arrives after the erasure names the address again.
    with rt.factory() as session, session.begin():
        apply_deliveries(session, [Delivery(
            "twilio", "late-1", DeliveryKind.DELIVERED, message.id, None, PHONE, rt.now(),
            raw={"To": PHONE})], rt.now())
    assert _hits(rt, (PHONE,))
    late = _forget(rt, cid)
    assert late.already_forgotten and late.erased["delivery events"] == 1 and late.changed == 1
    assert _hits(rt, (PHONE, EMAIL, FIRST)) == set()


def test_an_unknown_customer_is_refused_and_nothing_changes(rt: Runtime, cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    feed(rt, placed("o-1", START, "c-1"))
    drain_inbox(rt, rt.definitions())
    snapshot = _dump(rt)
    with rt.factory() as session, session.begin(), pytest.raises(UnknownCustomer):
        forget_customer(session, "c-nobody", rt.now())
    result = aftersale("forget", "c-nobody", env=cli_env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == ("unknown customer 'c-nobody': no customer has this id; "
                                     "nothing was changed")
    assert _dump(rt) == snapshot


def test_the_cli_forgets_a_customer_and_their_sandbox_files(rt: Runtime, settings: Settings,
                                                           cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    cid = treated_customer("onboarding", 10, prefix="f")
    feed(rt, placed("o-f", START, cid, email=EMAIL, phone=PHONE, first_name=FIRST),
         placed("o-k", START, "keep-1", email=KEEPER_EMAIL),
         follow("shipped", "o-f", START + days(1), cid),
         follow("shipped", "o-k", START + days(1), "keep-1"))
    run_to(rt, rt.definitions(), START + days(2), tick=days(0.5))
    folder = settings.sandbox_dir
    assert folder is not None
    mine = {m.id for m in sent(rt, cid) if m.status == "sent"}
    theirs = {m.id for m in sent(rt, "keep-1") if m.status == "sent"}
    assert mine and theirs
    files = {p.name.split(".")[0] for p in folder.iterdir()}
    assert mine | theirs <= files
    env = cli_env | {"AFTERSALE_SANDBOX_DIR": str(folder)}

    result = aftersale("forget", cid, env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"forgot customer {cid}: personal data erased, anonymous counts kept" in result.stdout
    assert "Erased" in result.stdout and "sandbox files" in result.stdout
    left = {p.name.split(".")[0] for p in folder.iterdir()}
    assert not (mine & left) and theirs <= left
    assert _hits(rt, (EMAIL, PHONE, FIRST)) == set()
    assert ("customers.email", KEEPER_EMAIL) in _hits(rt, (KEEPER_EMAIL,))

    again = aftersale("forget", cid, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"customer {cid} was already forgotten on" in again.stdout
    assert "nothing left to erase" in again.stdout



def test_a_late_event_from_before_the_erasure_brings_no_personal_data_back(rt: Runtime) -> None:
    cid = "c-late"
    feed(rt, placed("o-l", START, cid, email=EMAIL, phone=PHONE, first_name=FIRST),
         follow("shipped", "o-l", START + days(1), cid))
    run_to(rt, rt.definitions(), START + days(2), tick=days(0.5))
    _forget(rt, cid)
    assert _hits(rt, (EMAIL, PHONE, FIRST)) == set()

    # The shop retries a webhook of before the erasure, with the contact details it had then.
    late = follow("delivered", "o-l", START + days(1.5), cid)
    late["customer"] |= {"email": EMAIL, "phone": PHONE, "first_name": FIRST,
                         "consent": {"email": True, "sms": True}}
    feed(rt, late)
    assert _hits(rt, (EMAIL,)) == {("inbox_events.payload", EMAIL)}  # stored before it is read
    drain_inbox(rt, rt.definitions())

    assert _hits(rt, (EMAIL, PHONE, FIRST)) == set()
    with rt.factory() as session:
        row = session.scalars(select(InboxEvent).where(InboxEvent.event_id == late["id"])).one()
        customer = session.get(Customer, cid)
        order = session.get(Order, "o-l")
    assert row.status == "processed" and row.payload["customer"] == {"id": cid}
    assert customer is not None and not (customer.consent_email or customer.consent_sms)
    assert order is not None and order.status == "delivered"  # the event itself still counts

    # An order placed after the erasure is a new relationship: its details are taken.
    feed(rt, placed("o-new", rt.now() + days(1), cid, email=KEEPER_EMAIL))
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        customer = session.get(Customer, cid)
    assert customer is not None and customer.email == KEEPER_EMAIL
