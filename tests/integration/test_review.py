"""The operator's decisions on what is never retried by itself: sends whose outcome is unknown
and events that failed (aftersale.ops.review and ``aftersale review``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from aftersale.core.clock import SimulatedClock, as_utc
from aftersale.db.models import InboxEvent, Message, Order, SandboxOutbox
from aftersale.ops.review import NotUnderReview, confirm_sent, overview, requeue, resend
from aftersale.orchestration.passes import dispatch_due, drain_inbox
from aftersale.pipeline.advance import Recovered, recover_stale
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import follow, placed
from tests.integration.faults_helpers import seed_due_messages, statuses
from tests.integration.helpers import aftersale, feed

DIED_AT = START - timedelta(hours=1)


def _unknown_sends(rt: Runtime, count: int) -> list[str]:
    """``count`` messages whose sender died after claiming them, flagged as the next run does."""
    ids = seed_due_messages(rt, count, DIED_AT)
    with rt.factory() as session, session.begin():
        session.execute(update(Message).where(Message.id.in_(ids))
                        .values(status="sending", sending_at=DIED_AT, attempts=1,
                                claim_token="a" * 32, call_started_at=DIED_AT))
    assert recover_stale(rt.factory, rt.clock).flagged == count
    return ids


def test_stale_claims_are_flagged_only_where_a_call_may_have_started(rt: Runtime) -> None:
    """After the claim expires: a row whose call was marked started is flagged; a row claimed
    with a token but never called goes back to the queue; a row claimed without a token (by a
    sender of the release before call marks, e.g. the one this upgrade stopped) marked nothing
    and may have gone out, so it is flagged too, never sent again."""
    marked, unmarked, legacy = seed_due_messages(rt, 3, DIED_AT)
    with rt.factory() as session, session.begin():
        session.execute(update(Message).where(Message.id.in_([marked, unmarked, legacy]))
                        .values(status="sending", sending_at=DIED_AT, attempts=1))
        session.execute(update(Message).where(Message.id == marked)
                        .values(claim_token="a" * 32, call_started_at=DIED_AT))
        session.execute(update(Message).where(Message.id == unmarked)
                        .values(claim_token="a" * 32))
    assert recover_stale(rt.factory, rt.clock) == Recovered(flagged=2, released=1)
    now = statuses(rt)
    assert [now[marked], now[unmarked], now[legacy]] == ["unknown", "pending", "unknown"]


def _outbox_count(rt: Runtime, message_id: str) -> int:
    with rt.factory() as session:
        return session.scalar(select(func.count()).select_from(SandboxOutbox)
                              .where(SandboxOutbox.message_id == message_id)) or 0


def test_unknown_sends_are_resent_or_recorded_only_by_decision(rt: Runtime) -> None:
    again, confirmed, left, other = _unknown_sends(rt, 4)
    with rt.factory() as session:
        seen = overview(session)
    assert seen.messages == {"unknown": 4}
    assert [m.id for m in seen.unknown] == sorted([again, confirmed, left, other])

    # One id that is not an unknown send: the whole decision is refused and nothing changes.
    with pytest.raises(NotUnderReview, match="msg_nope"), \
            rt.factory() as session, session.begin():
        resend(session, [again, "msg_nope"], rt.now())
    assert set(statuses(rt).values()) == {"unknown"}

    with rt.factory() as session, session.begin():
        assert resend(session, [again], rt.now()) == 1
        assert confirm_sent(session, [confirmed], rt.now()) == 1
    dispatch_due(rt, rt.definitions())

    assert statuses(rt) == {again: "sent", confirmed: "sent", left: "unknown", other: "unknown"}
    assert _outbox_count(rt, again) == 1  # sent again, once
    assert _outbox_count(rt, confirmed) == 0  # recorded, not sent again
    with rt.factory() as session:
        recorded = session.get(Message, confirmed)
        assert recorded is not None and recorded.sent_at is not None
        assert as_utc(recorded.sent_at) == DIED_AT  # when it went out, not when it was reviewed
        assert recorded.status_reason == "confirmed sent after review"
    # The provider answered for this one after all (its id, a delivery callback): it went
    # out, so it cannot be sent again, only recorded.
    with rt.factory() as session, session.begin():
        session.execute(update(Message).where(Message.id == other)
                        .values(delivery_status="delivered"))
    with pytest.raises(NotUnderReview, match="review sent"), \
            rt.factory() as session, session.begin():
        resend(session, [other], rt.now())
    assert statuses(rt)[other] == "unknown"
    # A decision already taken cannot be taken again.
    with pytest.raises(NotUnderReview, match=confirmed), \
            rt.factory() as session, session.begin():
        resend(session, [confirmed], rt.now())


def test_a_failed_event_is_applied_once_requeued_after_its_cause_is_fixed(rt: Runtime) -> None:
    shipped = follow("shipped", "o-late", START)
    feed(rt, shipped)
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.advance(timedelta(days=4))  # the order never came: the shipment fails
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        seen = overview(session)
    assert seen.inbox == {"failed": 1}
    assert [e.event_id for e in seen.failed] == [shipped["id"]]

    with pytest.raises(NotUnderReview, match="evt-nope"), \
            rt.factory() as session, session.begin():
        requeue(session, [shipped["id"], "evt-nope"], rt.now())
    # The operator requeues it and imports the missing order, in either order: the requeued
    # shipment (first in the inbox) waits for its order instead of failing again.
    with rt.factory() as session, session.begin():
        assert requeue(session, [shipped["id"]], rt.now()) == 1
    feed(rt, placed("o-late", START))
    drain_inbox(rt, rt.definitions())
    clock.advance(timedelta(minutes=1))  # waiting events are tried again on the next run
    drain_inbox(rt, rt.definitions())

    with rt.factory() as session:
        assert dict(session.execute(select(InboxEvent.status, func.count())
                                    .group_by(InboxEvent.status)).tuples().all()) == {
            "processed": 2}
        order = session.get(Order, "o-late")
        assert order is not None and order.status == "shipped"


def test_the_review_commands(rt: Runtime, cli_env: dict[str, str], tmp_path: Path) -> None:
    ids = _unknown_sends(rt, 2)
    feed(rt, follow("shipped", "o-late", START))
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.advance(timedelta(days=4))
    drain_inbox(rt, rt.definitions())

    shown = aftersale("review", "show", env=cli_env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert all(i in shown.stdout for i in ids) and "evt-o-late-shipped" in shown.stdout
    assert "'aftersale review resend'" in shown.stdout

    refused = aftersale("review", "resend", ids[0], "msg_nope", env=cli_env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "msg_nope" in refused.stderr and "nothing changed" in refused.stderr
    assert set(statuses(rt).values()) == {"unknown"}

    done = aftersale("review", "sent", *ids, env=cli_env, cwd=tmp_path)
    assert done.returncode == 0 and "2 message(s) recorded as sent" in done.stdout
    assert set(statuses(rt).values()) == {"sent"}

    neither = aftersale("review", "requeue", env=cli_env, cwd=tmp_path)
    assert neither.returncode == 1 and "--all-failed" in neither.stderr
    queued = aftersale("review", "requeue", "--all-failed", env=cli_env, cwd=tmp_path)
    assert queued.returncode == 0 and "1 event(s) queued again" in queued.stdout
    with rt.factory() as session:
        assert session.scalar(select(InboxEvent.status)) == "pending"


@pytest.mark.parametrize("again", ["later", "in the same instant"])
def test_a_late_answer_does_not_undo_a_newer_claim(rt: Runtime, again: str) -> None:
    """Sender A claimed at T1 and was slow; the row was flagged, resent by review and claimed
    again by B, later or at the same instant (a simulated clock stands still within a tick).
    A's "not now" must not put B's claim back in the queue (a third sender would send it
    alongside B); A's "it went out" is still recorded."""
    from aftersale.channels.base import SendResult
    from aftersale.pipeline.advance import DispatchCounts
    from aftersale.pipeline.send import _record

    first, second = seed_due_messages(rt, 2, DIED_AT)
    again_at = DIED_AT if again == "in the same instant" else START + timedelta(minutes=10)
    with rt.factory() as session, session.begin():
        session.execute(update(Message).where(Message.id.in_([first, second]))
                        .values(status="sending", sending_at=again_at, claim_token="b" * 32))
    results = [SendResult(first, "retry", error="429"), SendResult(second, "sent", "SM1")]
    _record(rt.factory, results, {first: "email", second: "email"},
            {first: "sendgrid", second: "sendgrid"}, rt.clock, DispatchCounts(), "a" * 32)
    with rt.factory() as session:
        kept, recorded = session.get(Message, first), session.get(Message, second)
        assert kept is not None and recorded is not None
        assert (kept.status, as_utc(kept.sending_at)) == ("sending", again_at)
        assert recorded.status == "sent" and recorded.provider_message_id == "SM1"


def test_two_claims_in_the_same_instant_are_told_apart(rt: Runtime) -> None:
    """Sender A waits for a slow provider; meanwhile the message is flagged, resent by review
    and claimed again by sender B in the same instant (a simulated clock stands still within
    a tick). A's "not now" must not take the message from B: B's claim stands, and B sends."""
    import threading
    from collections.abc import Sequence

    from aftersale.channels.base import CallGate, OutboundMessage, SendResult
    from aftersale.pipeline.send import send_pending

    [message] = seed_due_messages(rt, 1, START)
    definitions, links = rt.definitions(), rt.links()
    sandbox = rt.channels()["email"]
    b_claimed, b_may_answer = threading.Event(), threading.Event()

    class Held:  # B's provider: answers once A has recorded its own answer
        name, provider = "email", "sandbox"

        def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                       gate: CallGate | None = None) -> list[SendResult]:
            b_claimed.set()
            b_may_answer.wait(30)
            return sandbox.send_batch(messages, deadline, gate)

    sender_b = threading.Thread(target=send_pending, args=(
        rt.factory, definitions, {"email": Held()}, links, rt.clock))

    class Meanwhile:  # A's provider: "not now", once B holds the message
        name, provider = "email", "sendgrid"

        def send_batch(self, messages: Sequence[OutboundMessage], deadline: float | None = None,
                       gate: CallGate | None = None) -> list[SendResult]:
            with rt.factory() as session, session.begin():
                session.execute(update(Message).where(Message.id == message)
                                .values(status="unknown"))
            with rt.factory() as session, session.begin():
                resend(session, [message], rt.now())
            sender_b.start()
            assert b_claimed.wait(30)
            return [SendResult(message, "retry", error="503 try later")]

    send_pending(rt.factory, definitions, {"email": Meanwhile()}, links, rt.clock)
    assert statuses(rt)[message] == "sending"  # still B's, not back in the queue
    b_may_answer.set()
    sender_b.join(30)
    assert statuses(rt)[message] == "sent" and _outbox_count(rt, message) == 1
