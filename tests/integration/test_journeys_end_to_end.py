"""Orders in, messages out: the real intake, engine, database and sandbox channel, on SQLite
and PostgreSQL, with a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aftersale.db.models import (
    AlertRecord,
    Customer,
    Enrollment,
    InboxEvent,
    Message,
    SandboxOutbox,
    SurveyResponse,
)
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import answer, days, follow, placed
from tests.integration.helpers import feed, holdout_customer, run_to, sent, treated_customer


def _enrollments(rt: Runtime, customer_id: str) -> dict[str, Enrollment]:
    with rt.factory() as session:
        rows = session.scalars(select(Enrollment).where(Enrollment.customer_id == customer_id))
        return {e.journey: e for e in rows}


def test_a_first_time_drone_buyer_gets_tracking_tutorial_checkin_and_nps(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid))
    run_to(rt, definitions, START + days(1))
    enrollments = _enrollments(rt, cid)
    assert set(enrollments) == {"order-updates", "onboarding"}
    assert enrollments["onboarding"].segment == "first_time"
    assert enrollments["onboarding"].journey_version_id is not None
    assert sent(rt, cid) == []  # nothing before the parcel ships

    feed(rt, follow("shipped", "o-1", START + days(1), cid))
    run_to(rt, definitions, START + days(3))
    shipping = [m for m in sent(rt, cid) if m.template == "shipping_update"]
    assert len(shipping) == 1
    # [whatsapp, sms, email]: WhatsApp free text needs the 24-hour window, which is closed
    assert shipping[0].channel == "sms" and shipping[0].recipient == "+905321234567"
    assert shipping[0].skips == [["whatsapp", "outside the 24-hour window and no approved template"]]
    assert "https://track.example.com/o-1" in (shipping[0].body_text or "")

    feed(rt, follow("delivered", "o-1", START + days(3), cid))
    run_to(rt, definitions, START + days(11))
    templates = [m.template for m in sent(rt, cid)]
    assert templates == ["shipping_update", "product_tutorial", "csat_checkin"]
    tutorial = sent(rt, cid)[1]
    assert tutorial.sent_at is not None and tutorial.sent_at >= START + days(4)
    assert tutorial.locale == "tr"

    feed(rt, answer("a-1", "csat", 5, START + days(11, ), cid))
    run_to(rt, definitions, START + days(27))
    nps = [m for m in sent(rt, cid) if m.template == "nps_survey"]
    assert len(nps) == 1
    assert "/s/" in (nps[0].body_text or nps[0].body_html or "")

    feed(rt, answer("a-2", "nps", 3, START + days(27), cid, comment="kırık geldi"))
    run_to(rt, definitions, START + days(29))
    assert [m.template for m in sent(rt, cid)][-1] == "detractor_followup"
    with rt.factory() as session:
        alerts = session.scalars(select(AlertRecord)).all()
        assert [(a.kind, a.customer_id) for a in alerts] == [("detractor", cid)]
        assert alerts[0].details["response"]["nps"] == 3
        onboarding = session.get(Enrollment, _enrollments(rt, cid)["onboarding"].id)
        assert onboarding is not None and onboarding.status == "completed"
        delivered = session.scalar(select(func.count()).select_from(SandboxOutbox))
        assert delivered == len(sent(rt, cid))


def test_a_cancelled_order_ends_its_journeys_at_once_and_sends_nothing(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid))
    run_to(rt, definitions, START + days(1))
    feed(rt, follow("cancelled", "o-1", START + days(1), cid))
    run_to(rt, definitions, START + days(60), tick=days(1) / 4)
    assert sent(rt, cid) == []
    assert {e.status for e in _enrollments(rt, cid).values()} == {"exited"}
    assert all(e.end_reason == "exit event order.cancelled"
               for e in _enrollments(rt, cid).values())


def test_a_cancellation_after_the_message_was_queued_stops_it(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START, cid))
    from aftersale.orchestration.passes import dispatch_due, drain_inbox
    from aftersale.pipeline.advance import advance_due

    drain_inbox(rt, definitions)
    advance_due(rt.factory, definitions, rt.clock)  # queued, not yet sent
    feed(rt, follow("cancelled", "o-1", START, cid))
    drain_inbox(rt, definitions)
    dispatch_due(rt, definitions)
    [message] = sent(rt, cid)
    assert message.status == "not_sent"
    assert message.status_reason == "order.cancelled before sending"


def test_the_holdout_group_is_enrolled_and_recorded_but_gets_nothing(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = holdout_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START + days(1), cid),
         follow("delivered", "o-1", START + days(2), cid))
    run_to(rt, definitions, START + days(40), tick=days(1) / 2)
    onboarding = _enrollments(rt, cid)["onboarding"]
    assert onboarding.holdout is True and onboarding.status == "completed"
    # the transactional journey has no holdout: the tracking link still goes out
    assert [m.template for m in sent(rt, cid)] == ["shipping_update"]


def test_replayed_events_and_repeated_runs_never_double_anything(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    events = [placed("o-1", START, cid), follow("shipped", "o-1", START, cid),
              follow("delivered", "o-1", START + days(1), cid)]
    first = feed(rt, *events)
    second = feed(rt, *events)
    assert (first.stored, second.stored, second.duplicates) == (3, 0, 3)
    run_to(rt, definitions, START + days(8))
    before = [(m.enrollment_id, m.step_key) for m in sent(rt, cid)]
    feed(rt, *events)
    run_to(rt, definitions, START + days(8))  # same time again: nothing new is due
    after = [(m.enrollment_id, m.step_key) for m in sent(rt, cid)]
    assert before == after and len(after) == len(set(after)) == 3
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 3
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 2


def test_one_bad_event_fails_alone_and_the_rest_of_the_batch_goes_on(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    stolen = placed("o-1", START, "c-thief") | {"id": "evt-stolen"}  # someone else's order
    feed(rt, stolen, placed("o-2", START, "c-ok"))
    run_to(rt, definitions, START)
    with rt.factory() as session:
        rows = {r.event_id: r for r in session.scalars(select(InboxEvent))}
    assert rows["evt-stolen"].status == "failed"
    assert "order o-1 belongs to customer c-1, not c-thief" in (rows["evt-stolen"].error or "")
    assert rows["evt-o-2-placed"].status == "processed"
    assert _enrollments(rt, "c-ok")


def test_a_shipment_that_arrives_before_its_order_waits_for_it(rt: Runtime) -> None:
    """Webhooks come out of order (a retried orders/create after fulfillments/create)."""
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, follow("shipped", "o-1", START, cid), follow("shipped", "o-lost", START, "c-x"))
    run_to(rt, definitions, START + timedelta(hours=1))
    feed(rt, placed("o-1", START - timedelta(minutes=5), cid))
    run_to(rt, definitions, START + days(1))
    with rt.factory() as session:
        rows = {r.event_id: r for r in session.scalars(select(InboxEvent))}
    assert rows["evt-o-1-shipped"].status == "processed"
    assert [m.template for m in sent(rt, cid)] == ["shipping_update"]
    assert rows["evt-o-lost-shipped"].status == "waiting"
    assert "waiting for its order.placed" in (rows["evt-o-lost-shipped"].error or "")
    run_to(rt, definitions, START + days(4), tick=days(1))  # its order never came
    with rt.factory() as session:
        lost = session.scalars(select(InboxEvent).where(InboxEvent.event_id == "evt-o-lost-shipped")).one()
    assert lost.status == "failed"


def test_a_customer_nobody_can_reach_is_skipped_with_the_reason(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid, email=None, phone=None,
                    consent={"email": False, "sms": False, "whatsapp": False}),
         follow("shipped", "o-1", START, cid))
    run_to(rt, definitions, START + days(1))
    [message] = sent(rt, cid)
    assert message.status == "not_sent"
    assert message.status_reason is not None and "no phone number" in message.status_reason
    assert "no e-mail address" in message.status_reason


def test_marketing_needs_consent_but_the_tracking_link_does_not(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid, consent={"email": False, "sms": False, "whatsapp": False}),
         follow("shipped", "o-1", START, cid), follow("delivered", "o-1", START, cid))
    run_to(rt, definitions, START + days(3))
    by_template = {m.template: m for m in sent(rt, cid)}
    assert by_template["shipping_update"].status == "sent"
    assert by_template["product_tutorial"].status == "not_sent"
    assert "no consent" in (by_template["product_tutorial"].status_reason or "")


def test_a_mug_buyer_gets_no_drone_tutorial(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid, category="headphones_none"),
         follow("shipped", "o-1", START, cid), follow("delivered", "o-1", START, cid))
    run_to(rt, definitions, START + days(8))
    assert "product_tutorial" not in [m.template for m in sent(rt, cid)]


def test_an_edited_journey_keeps_enrollments_in_flight_on_their_version(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START, cid),
         follow("delivered", "o-1", START, cid))
    run_to(rt, rt.definitions(), START + days(2))
    old_version = _enrollments(rt, cid)["onboarding"].journey_version_id
    # The marketer removes the tutorial and the CSAT step: only new enrollments see that.
    path = journeys / "onboarding.yaml"
    text = path.read_text()
    text = text.replace("  - send: csat_checkin\n    channels: [email, whatsapp, sms]\n", "")
    path.write_text(text)
    edited = rt.definitions()
    run_to(rt, edited, START + days(8))
    assert "csat_checkin" in [m.template for m in sent(rt, cid)]
    other = treated_customer("onboarding", 10, prefix="n")
    feed(rt, placed("o-2", START + days(8), other), follow("shipped", "o-2", START + days(8), other),
         follow("delivered", "o-2", START + days(8), other))
    run_to(rt, edited, START + days(16))
    assert _enrollments(rt, other)["onboarding"].journey_version_id != old_version
    assert "csat_checkin" not in [m.template for m in sent(rt, other)]


def test_an_invalid_edit_is_refused_and_the_last_valid_set_keeps_running(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    cid = treated_customer("onboarding", 10)
    rt.definitions()  # records the valid set
    (journeys / "onboarding.yaml").write_text("journey: onboarding\ntrigger: order.placed\n"
                                              "steps:\n  - wait: soon\n")
    definitions = rt.definitions()
    assert rt.problems and rt.problems[0].path.endswith("onboarding.yaml")
    assert rt.problems[0].line == 4
    assert "onboarding" in definitions.journeys
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START, cid),
         follow("delivered", "o-1", START, cid))
    run_to(rt, definitions, START + days(2))
    assert [m.template for m in sent(rt, cid)] == ["shipping_update", "product_tutorial"]


def test_a_recorded_set_is_found_by_its_digest_after_the_files_changed(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    """What a send helper process runs: the set the process that started it activated,
    even if the files changed in between, and without recording anything itself."""
    from aftersale.db.models import DefinitionSet
    from aftersale.pipeline.definitions import recorded

    journeys, content = definitions_dirs
    first = rt.definitions()
    with rt.factory() as session:
        same = recorded(session, first.digest, journeys, content)
    assert same.digest == first.digest and same.journeys.keys() == first.journeys.keys()
    (journeys / "winback.yaml").unlink()  # a valid edit: a new set on the files
    with rt.factory() as session:
        restored = recorded(session, first.digest, journeys, content)
        assert session.scalar(select(func.count()).select_from(DefinitionSet)) == 1
    assert restored.digest == first.digest
    assert restored.journeys.keys() == first.journeys.keys()  # winback included


def test_segments_follow_priority_when_a_customer_matches_several(rt: Runtime) -> None:
    definitions = rt.definitions()
    # The second order makes 2 orders, both discounted, over 1,000 EUR in all: vip,
    # discount_hunter and repeat all match, and vip is listed first.
    feed(rt, placed("o-1", START, "c-9", total="30000.00", codes=["SAVE10"]))
    feed(rt, placed("o-2", START + days(10), "c-9", total="30000.00", codes=["SAVE10"]))
    run_to(rt, definitions, START + days(10), tick=days(1))
    with rt.factory() as session:
        segments = session.execute(select(Enrollment.order_id, Enrollment.segment)
                                   .where(Enrollment.journey != "order-updates")
                                   .order_by(Enrollment.order_id)).all()
    assert [tuple(r) for r in segments] == [("o-1", "first_time"), ("o-2", "vip")]


def test_every_sent_message_is_in_the_sandbox_outbox_once(rt: Runtime) -> None:
    definitions = rt.definitions()
    for n in range(12):
        cid = f"c-{n}"
        feed(rt, placed(f"o-{n}", START, cid), follow("shipped", f"o-{n}", START, cid),
             follow("delivered", f"o-{n}", START + days(1), cid))
    run_to(rt, definitions, START + days(9), tick=days(1) / 4)
    with rt.factory() as session:
        sent_ids = set(session.scalars(select(Message.id).where(Message.status == "sent")))
        outbox = session.scalars(select(SandboxOutbox.message_id)).all()
    assert sent_ids and sorted(outbox) == sorted(sent_ids)


def test_win_back_is_entered_once_per_customer_however_often_they_come_back(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("win-back", 15)
    # An order long ago, then two returns each after more than 90 days: at risk both times.
    feed(rt, placed("o-1", START - days(400), cid))
    run_to(rt, definitions, START, tick=days(1))
    feed(rt, placed("o-2", START, cid))
    run_to(rt, definitions, START)
    rt.clock.set(START + days(120))  # type: ignore[attr-defined]
    feed(rt, placed("o-3", START + days(120), cid))
    run_to(rt, definitions, START + days(121), tick=days(1) / 2)
    with rt.factory() as session:
        rows = session.execute(select(Enrollment.journey, Enrollment.order_id, Enrollment.segment)
                               .where(Enrollment.customer_id == cid)
                               .order_by(Enrollment.order_id, Enrollment.journey)).all()
    assert [tuple(r) for r in rows] == [
        ("order-updates", "o-2", "at_risk"), ("win-back", "o-2", "at_risk"),
        ("order-updates", "o-3", "at_risk"),
    ]


def test_sandbox_can_also_write_each_message_as_a_file(rt: Runtime, tmp_path: Path) -> None:
    rt.settings = rt.settings.model_copy(update={"sandbox_dir": tmp_path / "outbox"})
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1", email="ayse@example.com"),
         follow("shipped", "o-1", START, "c-1"))
    run_to(rt, definitions, START)
    [message] = sent(rt, "c-1")
    written = (tmp_path / "outbox" / f"{message.id}.sms.txt").read_text(encoding="utf-8")
    assert written.startswith("To: +905321234567\nChannel: sms\n")
    assert "https://track.example.com/o-1" in written


def _last_inbound_whatsapp(rt: Runtime, customer_id: str, when: datetime) -> None:
    with rt.factory() as session, session.begin():
        customer = session.get(Customer, customer_id)
        assert customer is not None
        customer.whatsapp_last_inbound_at = when


def test_whatsapp_free_text_goes_out_inside_the_24_hour_window(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START)
    _last_inbound_whatsapp(rt, "c-1", START - timedelta(hours=23))
    feed(rt, follow("shipped", "o-1", START, "c-1"))
    run_to(rt, definitions, START)
    [message] = sent(rt, "c-1")
    assert (message.channel, message.recipient) == ("whatsapp", "whatsapp:+905321234567")


def test_outside_the_window_an_approved_whatsapp_template_is_used(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    _, content = definitions_dirs
    path = content / "shipping_update" / "tr.yaml"
    path.write_text(path.read_text(encoding="utf-8") + (
        "whatsapp_template:\n  content_sid: HX0123456789abcdef0123456789abcdef\n"
        "  variables:\n    \"1\": \"{{ customer.first_name }}\"\n"
        "    \"2\": \"{{ order.tracking.url }}\"\n"), encoding="utf-8")
    definitions = rt.definitions()
    assert rt.problems == []
    content_library = definitions.content
    rendered = content_library.whatsapp_template(
        "shipping_update", "tr", {"customer": {"first_name": "Ayşe"},
                                  "order": {"tracking": {"url": "https://t.example/1"}}})
    assert rendered == ("HX0123456789abcdef0123456789abcdef",
                        {"1": "Ayşe", "2": "https://t.example/1"})
    feed(rt, placed("o-1", START, "c-1"), follow("shipped", "o-1", START, "c-1"))
    run_to(rt, definitions, START)
    [message] = sent(rt, "c-1")
    assert message.channel == "whatsapp" and message.status == "sent"


def test_marketing_waits_for_the_end_of_quiet_hours_in_the_customers_time_zone(
        rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    # Delivered at 19:30 UTC = 22:30 in Istanbul: the tutorial (due a day later, 22:30) must
    # wait for 09:00 local (06:00 UTC); the tracking link is transactional and goes at once.
    evening = datetime(2026, 3, 2, 19, 30, tzinfo=UTC)
    rt.clock.set(evening)  # type: ignore[attr-defined]
    feed(rt, placed("o-1", evening, cid), follow("shipped", "o-1", evening, cid),
         follow("delivered", "o-1", evening, cid))
    run_to(rt, definitions, evening + days(2), tick=timedelta(minutes=30))
    by_template = {m.template: m for m in sent(rt, cid)}
    assert by_template["shipping_update"].sent_at == evening
    tutorial = by_template["product_tutorial"]
    assert tutorial.sent_at == datetime(2026, 3, 4, 6, 0, tzinfo=UTC)


def test_the_frequency_cap_defers_a_second_marketing_message_on_the_same_channel(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    (journeys / "twice.yaml").write_text(
        "journey: twice\ntrigger: order.placed\nsegments: [first_time]\n"
        "steps:\n  - send: referral_invite\n    channels: [email]\n"
        "  - wait: 2h\n  - send: winback\n    channels: [email]\n", encoding="utf-8")
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START + days(2))
    by_template = {m.template: m for m in sent(rt, "c-1") if m.journey == "twice"}
    assert by_template["referral_invite"].sent_at == START
    # 1 per 24 h per channel: the second waits a day after the first, not two hours
    assert by_template["winback"].sent_at == START + days(1)


def test_the_frequency_cap_counts_messages_from_every_journey(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    for name, template in (("first-hello", "referral_invite"), ("second-hello", "winback")):
        (journeys / f"{name}.yaml").write_text(
            f"journey: {name}\ntrigger: order.placed\nsegments: [first_time]\n"
            f"steps:\n  - send: {template}\n    channels: [email]\n", encoding="utf-8")
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, "c-1"))
    run_to(rt, definitions, START + days(2))
    times = sorted(m.sent_at for m in sent(rt, "c-1") if m.journey.endswith("-hello"))
    assert times == [START, START + days(1)]


@pytest.mark.parametrize(("answered", "resumes"), [(-timedelta(hours=1), True), (days(29), False)],
                         ids=["answered-in-time", "answered-after-the-deadline"])
def test_an_answer_stored_after_an_outage_resumes_only_if_given_before_the_deadline(
        rt: Runtime, answered: timedelta, resumes: bool) -> None:
    from aftersale.orchestration.passes import dispatch_due, drain_inbox

    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START + days(1), cid),
         follow("delivered", "o-1", START + days(3), cid))
    run_to(rt, definitions, START + days(11))
    waiting = _enrollments(rt, cid)["onboarding"]
    assert waiting.waiting_for == "survey.responded" and waiting.wait_until is not None
    deadline = waiting.wait_until
    # Nothing runs for a month; then the answer (a very unhappy one) is stored and processed
    # before dispatch looks at the expired wait.
    rt.clock.set(deadline + days(30))  # type: ignore[attr-defined]
    feed(rt, answer("a-late", "csat", 1, deadline + answered, cid))
    processed = drain_inbox(rt, definitions)
    assert (processed.processed, processed.resumed) == (1, int(resumes))
    dispatch_due(rt, definitions)
    with rt.factory() as session:
        alerts = session.scalars(select(AlertRecord.kind)).all()
        stored = session.scalars(select(SurveyResponse.score)).all()
    assert stored == [1]  # the late answer is kept, whatever it does to the journey
    assert alerts == (["unhappy_customer"] if resumes else [])
    followups = [m for m in sent(rt, cid) if m.template == "detractor_followup"]
    assert len(followups) == int(resumes)
    onboarding = _enrollments(rt, cid)["onboarding"]
    if resumes:
        assert onboarding.status == "completed"
    else:  # the timeout path: on to the 14-day wait before the NPS question
        assert onboarding.status == "active" and onboarding.waiting_for is None


def test_two_processes_recording_the_same_set_at_once_both_go_on(rt: Runtime) -> None:
    """A webhook starts process-events and dispatch-messages together, and on a fresh
    database both record the definition set and its journey versions. The one that loses the
    race waits for the winner's commit and then goes on with the same rows; it used to fail on
    the unique digest, and its flow run crashed."""
    import threading

    from aftersale.db.models import DefinitionSet, JourneyVersion
    from aftersale.pipeline.definitions import activate

    settings = rt.settings
    results: list[object] = []

    def second() -> None:
        try:
            with rt.factory() as session, session.begin():
                definitions, _ = activate(session, settings.journeys_dir, settings.content_dir,
                                          rt.clock)
            results.append(definitions.digest)
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            results.append(exc)

    with rt.factory() as session, session.begin():
        first, _ = activate(session, settings.journeys_dir, settings.content_dir, rt.clock)
        other = threading.Thread(target=second)
        other.start()
        other.join(1.0)  # it waits for this transaction's writes (lock or unique index)
    other.join(60)
    assert results == [first.digest]
    with rt.factory() as session:
        assert session.scalar(select(func.count()).select_from(DefinitionSet)) == 1
        versions = session.scalar(select(func.count()).select_from(JourneyVersion))
    assert versions == len(first.journeys)
