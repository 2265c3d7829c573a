"""Fault injection: providers failing for a while, a dispatcher killed at each stage of a send,
the database going away mid-run, webhooks out of order or late, and an invalid journey edit
while enrollments are in flight. Each test checks that nothing is lost, nothing is sent
twice, and the next run recovers by itself."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.db.models import Enrollment, InboxEvent, Message, Order, SandboxOutbox
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.emulators.server import Emulator, Reply
from aftersale.emulators.twilio import TwilioEmulator
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline import advance as dispatch
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import PG_URL, START, make_settings, needs_postgres, postgres_schema
from tests.factories import days, follow, placed
from tests.integration.faults_helpers import (
    ACCOUNT,
    KEY,
    TOKEN,
    CutProxy,
    accepted_ids,
    accepted_once_each,
    hold_rate_limit,
    kill,
    seed_due_messages,
    set_rate_limit,
    start_dispatcher,
    statuses,
    via,
    wait_until,
    with_providers,
)
from tests.integration.helpers import feed, run_to, sent, treated_customer

NOW = START + timedelta(hours=1)


@pytest.fixture
def sendgrid() -> Iterator[SendGridEmulator]:
    with SendGridEmulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def twilio() -> Iterator[TwilioEmulator]:
    with TwilioEmulator(account_sid=ACCOUNT, auth_token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def sqlite_settings(definitions_dirs: tuple[Path, Path], tmp_path: Path) -> Settings:
    return make_settings(f"sqlite:///{tmp_path / 'aftersale.db'}", definitions_dirs)


def runtime(settings: Settings, sendgrid: SendGridEmulator | None,
            twilio: TwilioEmulator | None, **extra: Any) -> Runtime:
    configured = with_providers(settings, sendgrid, twilio, **{
        "sendgrid_rate_per_second": 10_000.0, "twilio_rate_per_second": 10_000.0,
        "send_concurrency": 1, **extra})
    return open_runtime(configured, SimulatedClock(NOW))


_definitions: dict[int, Definitions] = {}


def dispatch_at(rt: Runtime, offset: timedelta) -> None:
    """One dispatch run (what the dispatch-messages flow runs) at NOW + offset."""
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(NOW + offset)
    if id(rt) not in _definitions:
        _definitions.clear()
        _definitions[id(rt)] = rt.definitions()
    dispatch_due(rt, _definitions[id(rt)])


def error(provider: str, status: int, retry_after: int | None = None) -> Reply:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if provider == "sendgrid":
        return Reply(status, {"errors": [{"message": f"fault {status}", "field": None}]}, headers)
    return Reply(status, {"code": 20000 + status, "message": f"fault {status}", "status": status},
                 headers)


def rows(rt: Runtime) -> dict[str, Message]:
    with rt.factory() as session:
        return {m.id: m for m in session.scalars(select(Message))}


# -- the provider fails for a while, then recovers -------------------------------------------
CASES = [("sendgrid", fault) for fault in ("429", "500", "503", "timeout", "refused")] + [
    ("twilio", fault) for fault in ("500", "timeout", "refused")]  # twilio 429/503: test_dispatch_providers


@pytest.mark.parametrize(("provider", "fault"), CASES)
def test_a_provider_failing_for_a_while_ends_with_each_message_sent_once_or_flagged(
        sqlite_settings: Settings, sendgrid: SendGridEmulator, twilio: TwilioEmulator,
        provider: str, fault: str) -> None:
    emulator: Emulator = sendgrid if provider == "sendgrid" else twilio
    rt = runtime(sqlite_settings, sendgrid, twilio,
                 send_concurrency=3 if fault == "timeout" else 1)
    ids = seed_due_messages(rt, 3, START, channel="email" if provider == "sendgrid" else "sms")
    if fault == "429":
        emulator.enqueue(*[error(provider, 429, retry_after=120)] * 3)
    elif fault in ("500", "503"):
        emulator.enqueue(*[error(provider, int(fault))] * 6)  # two runs' worth
    elif fault == "timeout":
        emulator.hold()  # accepted, but the answer comes after the client's 1 s timeout
    else:
        emulator.stop()  # the port refuses connections

    dispatch_at(rt, timedelta(0))
    first = rows(rt)
    if fault == "timeout":
        # The provider has them; the answer never came: flagged for review, not resent.
        emulator.release()
        assert {m.status for m in first.values()} == {"unknown"}
        assert "no answer" in (first[ids[0]].status_reason or "")
    else:
        assert {(m.status, m.attempts) for m in first.values()} == {("pending", 1)}
        reason = first[ids[0]].status_reason or ""
        assert ("could not reach" in reason) if fault == "refused" else (fault in reason)
    if fault == "429":  # Retry-After (120 s) beats the first backoff (60-90 s)
        assert {m.due_at for m in first.values()} == {NOW + timedelta(seconds=120)}
        dispatch_at(rt, timedelta(seconds=119))
        assert set(statuses(rt).values()) == {"pending"}
    if fault == "refused":
        emulator.start()  # back on the same port

    for minute in range(1, 16):  # the scheduler's next runs, a minute apart
        if "pending" not in statuses(rt).values():
            break
        dispatch_at(rt, timedelta(minutes=minute))
    final = statuses(rt)
    accepted = accepted_once_each(emulator, ids)  # type: ignore[arg-type]
    assert set(final.values()) == ({"unknown"} if fault == "timeout" else {"sent"})
    if fault == "timeout":  # after the claim expired too: still never resent
        dispatch_at(rt, timedelta(hours=1))
        assert accepted_ids(emulator) == accepted  # type: ignore[arg-type]
    # The others go on: a new message goes straight out.
    [later] = seed_due_messages(rt, 1, NOW + timedelta(hours=1), prefix="later",
                                channel="email" if provider == "sendgrid" else "sms")
    dispatch_at(rt, timedelta(hours=1))
    assert statuses(rt)[later] == "sent" and accepted_ids(emulator)[later] == 1  # type: ignore[arg-type]
    rt.engine.dispose()


def test_a_send_slot_after_the_claims_half_life_is_not_waited_for(
        settings: Settings, twilio: TwilioEmulator) -> None:
    """At 2 SMS a second, 14 messages take 6.5 s; with a 10 s claim the sender starts no call
    after 5 s. Had it waited, the batch could still be sending when another worker flags it
    ``unknown`` (and an operator resends it). The rest go back to the queue, not as a failed
    attempt, and the next run sends them: each message exactly once."""
    rt = runtime(settings, None, twilio, twilio_rate_per_second=2.0, claim_seconds=10)
    ids = seed_due_messages(rt, 14, START, channel="sms")
    dispatch_at(rt, timedelta(0))
    first = rows(rt)
    waiting = sorted(i for i in ids if first[i].status == "pending")
    assert 1 <= len(waiting) <= 4  # 11 slots (0 to 5 s) fit, give or take the run's own time
    assert {first[i].status for i in ids if i not in waiting} == {"sent"}
    for i in waiting:
        assert first[i].status_reason == "deferred: rate limit"
        assert (first[i].attempts, first[i].sending_at) == (0, None)
    assert not set(waiting) & set(accepted_ids(twilio))
    dispatch_at(rt, timedelta(minutes=1))
    assert set(statuses(rt).values()) == {"sent"}
    accepted_once_each(twilio, ids)
    rt.engine.dispose()


# -- the dispatcher is killed at each stage of a send ----------------------------------------
@pytest.mark.subprocess
@pytest.mark.parametrize("provider", ["sendgrid", "twilio"])
@pytest.mark.parametrize("stage", ["claimed", "accepted", "recorded"])
def test_a_dispatcher_killed_mid_send_never_causes_a_resend_and_the_next_run_goes_on(
        settings: Settings, sendgrid: SendGridEmulator, twilio: TwilioEmulator, stage: str,
        provider: str) -> None:
    """Three messages (e-mail through SendGrid, or SMS through Twilio), one per batch. The
    dispatcher runs in its own process and is SIGKILLed

    - claimed: after the claim committed them ``sending``, before any provider call. It is
      stopped there by the shared rate limit: its slot is reserved two minutes ahead, as a burst
      of other senders would, so it waits between the claim and the call. Never handed to the
      provider, the message goes back to the queue once the claim expires, and is sent;
    - accepted: the provider accepted the first message and holds its answer back;
    - recorded: the first message's answer is recorded; the second is accepted, unanswered.
    Those two are in doubt: flagged for review, never resent.
    """
    emulator: Emulator = sendgrid if provider == "sendgrid" else twilio
    rt = (runtime(settings, sendgrid, None, batch_size=1) if provider == "sendgrid"
          else runtime(settings, None, twilio, batch_size=1))
    ids = seed_due_messages(rt, 3, START, channel="email" if provider == "sendgrid" else "sms")
    if stage == "claimed":
        # Held for less than half the claim: a slot later than that is not waited for.
        hold_rate_limit(rt, provider, rt.settings.claim_seconds / 2 - 30)
    else:
        emulator.hold(after=1 if stage == "recorded" else 0)
    child = start_dispatcher(rt.settings, NOW)
    try:
        if stage == "claimed":
            wait_until(lambda: statuses(rt)[ids[0]] == "sending", what="the claim")
        else:
            emulator.wait_for(lambda: emulator.held == 1)
    finally:
        kill(child)
    in_doubt = ids[1] if stage == "recorded" else ids[0]
    before = statuses(rt)
    assert before[in_doubt] == "sending"
    assert before[ids[0]] == ("sent" if stage == "recorded" else "sending")
    assert accepted_ids(emulator)[in_doubt] == (0 if stage == "claimed" else 1)  # type: ignore[arg-type]

    emulator.release()
    set_rate_limit(rt, provider, 0.0)  # the burst is over
    # Within the claim (5 min) the row is left alone; the others go out.
    dispatch_at(rt, timedelta(minutes=1))
    assert statuses(rt)[in_doubt] == "sending"
    # Once the claim has expired, the next run flags it for review instead of resending, or,
    # when its call never started, sends it.
    dispatch_at(rt, timedelta(seconds=rt.settings.claim_seconds + 1))
    final = rows(rt)
    if stage == "claimed":
        assert (final[in_doubt].status, final[in_doubt].attempts) == ("sent", 1)
    else:
        assert final[in_doubt].status == "unknown"
        assert "check the provider log" in (final[in_doubt].status_reason or "")
    assert {final[i].status for i in ids if i != in_doubt} == {"sent"}
    accepted = accepted_ids(emulator)  # type: ignore[arg-type]
    assert all(accepted[i] == 1 for i in ids)
    dispatch_at(rt, timedelta(hours=2))
    assert accepted_ids(emulator) == accepted  # and never later either  # type: ignore[arg-type]
    rt.engine.dispose()


# -- the database goes away for a moment (PostgreSQL, through a proxy) -----------------------
@pytest.fixture
def proxied(sqlite_settings: Settings) -> Iterator[tuple[Settings, CutProxy]]:
    """Settings whose database is a private PostgreSQL schema reached through a CutProxy."""
    server = make_url(PG_URL)
    with CutProxy((server.host or "127.0.0.1", server.port or 5432)) as proxy, \
            postgres_schema(via(PG_URL, "127.0.0.1", proxy.port)) as db:
        yield Settings(_env_file=None, **sqlite_settings.model_dump()  # type: ignore[call-arg]
                       | {"database_url": db}), proxy


@needs_postgres
def test_the_database_going_away_mid_processing_fails_the_run_and_the_next_one_does_it_all(
        proxied: tuple[Settings, CutProxy]) -> None:
    settings, proxy = proxied
    rt = open_runtime(settings, SimulatedClock(START))
    definitions = rt.definitions()
    cids = [treated_customer("onboarding", 10, prefix=f"p{n}") for n in range(5)]
    for n, cid in enumerate(cids):
        feed(rt, placed(f"o-{n}", START, cid), follow("shipped", f"o-{n}", START, cid))
    proxy.cut_when(b"INSERT INTO enrollments")
    # A lost connection is not the event's fault: the run fails with it, nothing commits,
    # and no event is marked failed for it.
    with pytest.raises(DBAPIError) as lost:
        drain_inbox(rt, definitions)
    assert lost.value.connection_invalidated
    assert proxy.cuts == 1
    with pytest.raises(DBAPIError):  # still away: the run fails at once, writes nothing
        drain_inbox(rt, definitions)
    assert proxy.refused >= 1
    proxy.restore()
    run_to(rt, definitions, START + timedelta(hours=1))
    with rt.factory() as session:
        assert set(session.scalars(select(InboxEvent.status))) == {"processed"}
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 10
        assert session.scalar(select(func.count()).select_from(SandboxOutbox)) == 5
    shipping = [m for m in sent(rt) if m.template == "shipping_update"]
    assert len(shipping) == 5 and {m.status for m in shipping} == {"sent"}
    rt.engine.dispose()


@needs_postgres
def test_the_database_going_away_during_the_claim_fails_the_run_and_nothing_is_sent(
        proxied: tuple[Settings, CutProxy], sendgrid: SendGridEmulator) -> None:
    settings, proxy = proxied
    rt = runtime(settings, sendgrid, None)
    ids = seed_due_messages(rt, 5, START)
    proxy.cut_when(b"UPDATE messages SET channel")  # the claim marking rows ``sending``
    with pytest.raises(DBAPIError):
        dispatch_at(rt, timedelta(0))
    assert proxy.cuts == 1 and sendgrid.requests == []
    proxy.restore()
    assert set(statuses(rt).values()) == {"pending"}  # rolled back: nothing lost, nothing claimed
    dispatch_at(rt, timedelta(minutes=1))
    accepted_once_each(sendgrid, ids)
    assert set(statuses(rt).values()) == {"sent"}
    rt.engine.dispose()


@needs_postgres
def test_the_database_going_away_while_answers_are_recorded_is_retried_within_the_run(
        proxied: tuple[Settings, CutProxy], sendgrid: SendGridEmulator) -> None:
    settings, proxy = proxied
    rt = runtime(settings, sendgrid, None)
    ids = seed_due_messages(rt, 5, START)
    proxy.cut_when(b", provider=")  # recording the answers (UPDATE messages SET status=.., provider=..)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            dispatch_at(rt, timedelta(0))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: proxy.refused >= 1 or not thread.is_alive(), what="a retry")
    proxy.restore()
    thread.join(60)
    assert not failure, "".join(traceback.format_exception(failure[0]))
    assert proxy.cuts == 1
    accepted = accepted_once_each(sendgrid, ids)
    assert set(statuses(rt).values()) == {"sent"}  # the answers were kept, not lost to review
    dispatch_at(rt, timedelta(hours=1))
    assert accepted_ids(sendgrid) == accepted
    rt.engine.dispose()


# -- webhooks out of order or late; an invalid edit with enrollments in flight ---------------
def test_delivered_before_shipped_still_sends_each_step_once(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("delivered", "o-1", START + days(1), cid))
    run_to(rt, definitions, START + days(1))
    feed(rt, follow("shipped", "o-1", START + days(1), cid))  # the late fulfilment webhook
    feed(rt, follow("delivered", "o-1", START + days(1), cid) | {"id": "evt-redelivered"})
    run_to(rt, definitions, START + days(3))
    assert [m.template for m in sent(rt, cid)] == ["shipping_update", "product_tutorial"]
    with rt.factory() as session:
        assert set(session.scalars(select(InboxEvent.status))) == {"processed"}
        order = session.get(Order, "o-1")
        assert order is not None and order.delivered_at is not None and order.shipped_at is not None


def test_a_shipment_after_the_journey_gave_up_waiting_sends_nothing_late(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid))
    run_to(rt, definitions, START + days(11), tick=days(1))  # order-updates waits 10 days
    with rt.factory() as session:
        [updates] = session.scalars(select(Enrollment).where(Enrollment.journey == "order-updates"))
        assert updates.status != "active"
    feed(rt, follow("shipped", "o-1", START + days(11), cid))
    run_to(rt, definitions, START + days(12), tick=days(1))
    assert sent(rt, cid) == []
    with rt.factory() as session:
        assert set(session.scalars(select(InboxEvent.status))) == {"processed"}
        assert session.scalar(select(func.count()).select_from(Enrollment)
                              .where(Enrollment.journey == "order-updates")) == 1


def test_an_invalid_edit_while_enrollments_wait_leaves_them_running_once(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    cid = treated_customer("onboarding", 10)
    definitions = rt.definitions()
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START, cid),
         follow("delivered", "o-1", START, cid))
    run_to(rt, definitions, START + timedelta(hours=2))  # onboarding now waits a day
    assert [m.template for m in sent(rt, cid)] == ["shipping_update"]
    good = (journeys / "onboarding.yaml").read_text()
    (journeys / "onboarding.yaml").write_text(good.replace("  - wait: 1d\n", "  - wait: soon\n"))
    broken = rt.definitions()
    assert rt.problems and rt.problems[0].path.endswith("onboarding.yaml")
    run_to(rt, broken, START + days(2))
    assert [m.template for m in sent(rt, cid)] == ["shipping_update", "product_tutorial"]
    (journeys / "onboarding.yaml").write_text(good)  # fixed again: nothing is replayed
    fixed = rt.definitions()
    assert rt.problems == []
    run_to(rt, fixed, START + days(3))
    assert [m.template for m in sent(rt, cid)] == ["shipping_update", "product_tutorial"]


# -- one message or enrollment that cannot be handled must not hold up the rest --------------
def test_a_message_whose_template_is_gone_waits_while_the_others_go_out(
        sqlite_settings: Settings, sendgrid: SendGridEmulator) -> None:
    """A template renamed or retired after its messages were queued. Before, the exception
    rolled the whole batch back, and the message, due first, blocked every run."""
    rt = runtime(sqlite_settings, sendgrid, None)
    ids = seed_due_messages(rt, 3, START)
    with rt.factory() as session, session.begin():
        session.execute(update(Message).where(Message.id == ids[0])
                        .values(template="shipping_update_old"))
        gone = session.get(Message, ids[1])
        assert gone is not None
        # Sent earlier with the old name, to a customer of this batch: read by the cap check.
        session.add(Message(
            id="msg_earlier", enrollment_id=gone.enrollment_id, step_key="0",
            customer_id=gone.customer_id, journey="order-updates", template="retired",
            channels=["email"], channel="email", status="sent", attempts=1,
            created_at=START, due_at=START, sending_at=NOW - timedelta(hours=1),
            sent_at=NOW - timedelta(hours=1)))

    dispatch_at(rt, timedelta(0))
    first = rows(rt)
    assert (first[ids[1]].status, first[ids[2]].status) == ("sent", "sent")
    waiting = first[ids[0]]
    assert (waiting.status, waiting.attempts, waiting.due_at) == (
        "pending", 0, NOW + timedelta(hours=1))
    assert (waiting.status_reason or "").startswith(
        "deferred: could not prepare: UnknownTemplate: no content template "
        "'shipping_update_old'")
    assert accepted_ids(sendgrid)[ids[0]] == 0

    with rt.factory() as session, session.begin():  # the template is back
        session.execute(update(Message).where(Message.id == ids[0])
                        .values(template="shipping_update"))
    dispatch_at(rt, timedelta(minutes=59))
    assert statuses(rt)[ids[0]] == "pending"  # deferred means deferred
    dispatch_at(rt, timedelta(hours=1))
    assert statuses(rt)[ids[0]] == "sent"
    accepted_once_each(sendgrid, ids)
    rt.engine.dispose()


def test_an_enrollment_whose_step_raises_waits_while_the_others_advance(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    definitions = rt.definitions()
    good, bad = treated_customer("order-updates", 10, "g"), treated_customer(
        "order-updates", 10, "b")
    feed(rt, placed("o-good", START, good), placed("o-bad", START, bad))
    drain_inbox(rt, definitions)
    with rt.factory() as session:
        due_for_bad = session.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.customer_id == bad, Enrollment.status == "active",
            Enrollment.due_at <= START)) or 0
    assert due_for_bad > 0
    real = dispatch.advance

    def broken(journey: Any, position: Any, facts: Any, now: Any) -> Any:
        if facts.context["customer"]["id"] == bad:
            raise KeyError("a bug")
        return real(journey, position, facts, now)

    monkeypatch.setattr(dispatch, "advance", broken)
    counts = dispatch.advance_due(rt.factory, definitions, rt.clock)
    assert counts.advance_errors == due_for_bad
    with rt.factory() as session:
        enrollments = list(session.scalars(select(Enrollment)))
        stuck = [e for e in enrollments if e.customer_id == bad]
        assert stuck and {(e.status, e.due_at) for e in stuck} == {
            ("active", START + timedelta(hours=1))}
        assert {(e.pc, e.waiting_for) for e in stuck} == {(0, None)}  # nothing changed
        moved = [e for e in enrollments if e.customer_id == good]
        assert moved and all(e.pc > 0 or e.waiting_for for e in moved)  # the others went on
    monkeypatch.undo()  # fixed
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(START + timedelta(hours=1))
    assert dispatch.advance_due(rt.factory, definitions, rt.clock).advance_errors == 0
    with rt.factory() as session:
        resumed = list(session.scalars(select(Enrollment).where(Enrollment.customer_id == bad)))
        assert all(e.pc > 0 or e.waiting_for for e in resumed)
