"""process-events applies a batch all at once (rows loaded up front, written at the end): the
result must be what applying its events one at a time gives, and an event that breaks the
batch in a way no check foresaw must fail alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.core.clock import SimulatedClock
from aftersale.core.links import referral_code
from aftersale.db.models import (
    Customer,
    Enrollment,
    InboxEvent,
    Order,
    Referral,
    SurveyResponse,
)
from aftersale.pipeline.apply_events import ProcessCounts, _Applier, process_batch
from aftersale.pipeline.runtime import Runtime, open_runtime
from bench.events import generate
from tests.conftest import START, make_settings, postgres_schema
from tests.factories import answer, follow, placed
from tests.integration.helpers import feed

END = START + timedelta(hours=48)


def _stream() -> list[dict[str, Any]]:
    """A realistic stream (repeat buyers, shipments, deliveries, answers, cancellations,
    consent changes) plus what only happens between events of one batch."""
    events = list(generate(400, start=START, span=timedelta(hours=40), seed=5))
    first = events[0]["customer"]["id"]
    late = START + timedelta(hours=41)
    referred = placed("o-ref", late, "new-friend")
    referred["order"]["referral_code"] = referral_code(first).lower()
    stolen = placed("o-ref", late + timedelta(minutes=3), "someone-else")
    stolen["id"] = "evt-o-ref-again"
    return [*events,
            referred,                                                   # a code from this batch
            follow("shipped", "o-ahead", late),                        # before its order
            placed("o-ahead", late + timedelta(minutes=1), "c-ahead"),
            follow("delivered", "o-ahead", late + timedelta(minutes=2), "c-ahead"),
            stolen,                                                     # not their order
            answer("a-1", "nps", 3, late + timedelta(minutes=4), "c-ahead"),
            answer("a-2", "nps", 9, late + timedelta(minutes=5), "c-ahead")]


@contextmanager
def _second_database(rt: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    """An empty database of the same kind, with the same definitions and clock."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'one-by-one.db'}" if rt.engine.dialect.name == "sqlite"
               else stack.enter_context(postgres_schema()))
        definitions = (rt.settings.journeys_dir, rt.settings.content_dir)
        other = open_runtime(make_settings(url, definitions), SimulatedClock(rt.now()))
        stack.callback(other.engine.dispose)
        yield other


def _drain(rt: Runtime, limit: int) -> ProcessCounts:
    total, definitions = ProcessCounts(), rt.definitions()
    while True:
        counts = process_batch(rt.factory, definitions, rt.clock, limit, max_trigger_age=None)
        total.add(counts)
        if counts.events < limit:
            return total


def _state(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row process-events writes, without surrogate ids."""
    def rows(*columns: Any) -> list[tuple[Any, ...]]:
        with rt.factory() as session:
            return sorted(tuple(r) for r in session.execute(select(*columns)))

    return {
        "inbox": rows(InboxEvent.event_id, InboxEvent.status, InboxEvent.error),
        "customers": rows(*[c for c in Customer.__table__.c]),
        "orders": rows(*[c for c in Order.__table__.c]),
        "enrollments": rows(*[c for c in Enrollment.__table__.c
                              if c.name not in ("id", "journey_version_id")]),
        "referrals": rows(*[c for c in Referral.__table__.c if c.name != "id"]),
        "answers": rows(*[c for c in SurveyResponse.__table__.c if c.name != "id"]),
    }


def test_a_batch_applies_as_its_events_would_one_at_a_time(rt: Runtime, tmp_path: Path) -> None:
    rt.clock.set(END)  # type: ignore[attr-defined]
    events = _stream()
    feed(rt, *events)
    together = _drain(rt, limit=1000)
    assert together.events == len(events) and together.replayed_batches == 0
    with _second_database(rt, tmp_path) as alone_rt:
        feed(alone_rt, *events)
        alone = _drain(alone_rt, limit=1)
        assert _state(rt) == _state(alone_rt)
    assert together.summary() == alone.summary()
    assert together.enrolled > 100 and together.exited > 0
    assert (together.referrals, together.waiting, together.failed) == (1, 1, 1)
    rt.clock.set(END + timedelta(minutes=2))  # type: ignore[attr-defined]
    assert _drain(rt, limit=1000).processed == 1  # the shipment that came before its order
    with rt.factory() as session:
        ahead = session.get(Order, "o-ahead")
        assert ahead is not None and ahead.shipped_at is not None
        assert ahead.status == "delivered"  # a late shipment does not move it back
        scores = session.scalars(select(SurveyResponse.score).where(
            SurveyResponse.customer_id == "c-ahead")).all()
        assert sorted(scores) == [3, 9]  # answers without a message are two answers
        stolen = session.get(Order, "o-ref")
        assert stolen is not None and stolen.customer_id == "new-friend"
        referral = session.scalars(select(Referral)).one()
        assert (referral.referrer_id, referral.customer_id, referral.first_order) == (
            events[0]["customer"]["id"], "new-friend", True)


def _break_enroll_for(monkeypatch: pytest.MonkeyPatch, customer_id: str,
                      error: Exception) -> None:
    enroll = _Applier.enroll

    def broken(self: _Applier, event: Any, customer: Customer, order: Any) -> None:
        if customer.id == customer_id:
            raise error
        enroll(self, event, customer, order)

    monkeypatch.setattr(_Applier, "enroll", broken)


def _statuses(rt: Runtime) -> dict[str, tuple[str, str | None]]:
    with rt.factory() as session:
        return {row.event_id: (row.status, row.error) for row in session.execute(
            select(InboxEvent.event_id, InboxEvent.status, InboxEvent.error))}


def _four_events(rt: Runtime) -> None:
    feed(rt, placed("o-1", START, "c-1"), placed("o-2", START, "c-bad"),
         placed("o-3", START, "c-3"), follow("shipped", "o-1", START, "c-1"))


def _only_the_bad_event_left_out(rt: Runtime) -> None:
    with rt.factory() as session:
        assert session.get(Customer, "c-bad") is None  # nothing of the bad event is kept
        assert session.get(Order, "o-2") is None
        assert set(session.scalars(select(Enrollment.customer_id))) == {"c-1", "c-3"}
        shipped = session.get(Order, "o-1")
        assert shipped is not None and shipped.status == "shipped"


def test_an_event_that_breaks_a_rule_fails_alone(rt: Runtime,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _four_events(rt)
    _break_enroll_for(monkeypatch, "c-bad", ValueError("segment rule blew up"))
    counts = process_batch(rt.factory, rt.definitions(), rt.clock, 50)
    assert (counts.replayed_batches, counts.processed, counts.failed) == (1, 3, 1)
    assert _statuses(rt) == {
        "evt-o-1-placed": ("processed", None), "evt-o-3-placed": ("processed", None),
        "evt-o-2-placed": ("failed", "segment rule blew up"),
        "evt-o-1-shipped": ("processed", None)}
    _only_the_bad_event_left_out(rt)


def test_an_unexpected_error_neither_blocks_the_inbox_nor_loses_the_event(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here a KeyError) in one event: the others apply, the event waits and is tried
    again a minute later, and applies once the bug is gone."""
    _four_events(rt)
    _break_enroll_for(monkeypatch, "c-bad", KeyError("c-bad"))
    counts = process_batch(rt.factory, rt.definitions(), rt.clock, 50)
    assert (counts.replayed_batches, counts.processed, counts.failed) == (1, 3, 0)
    assert (counts.waiting, counts.unexpected) == (1, 1)
    assert _statuses(rt)["evt-o-2-placed"] == ("waiting", "KeyError: 'c-bad'")
    _only_the_bad_event_left_out(rt)
    assert process_batch(rt.factory, rt.definitions(), rt.clock, 50).events == 0  # not yet

    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    clock.advance(timedelta(minutes=1))
    assert process_batch(rt.factory, rt.definitions(), rt.clock, 50).unexpected == 1  # still
    monkeypatch.undo()  # the fix is deployed
    clock.advance(timedelta(minutes=1))
    counts = process_batch(rt.factory, rt.definitions(), rt.clock, 50)
    assert (counts.events, counts.processed) == (1, 1)
    assert _statuses(rt)["evt-o-2-placed"] == ("processed", None)
    with rt.factory() as session:
        assert session.get(Order, "o-2") is not None


def test_a_journey_started_by_a_delivery_sees_the_purchase_history(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    """A batch loads purchase histories only for the customers whose events can start a
    journey: a journey triggered by order.delivered must get them too."""
    journeys, _ = definitions_dirs
    (journeys / "delivered_thanks.yaml").write_text(
        "journey: delivered-thanks\ntrigger: order.delivered\nholdout: 0%\n"
        "reentry: once_per_order\nsteps:\n  - send: referral_invite\n    channels: [email]\n",
        encoding="utf-8")
    feed(rt, placed("o-1", START, "c-1"), placed("o-2", START + timedelta(hours=1), "c-1"))
    assert _drain(rt, limit=50).failed == 0
    rt.clock.set(START + timedelta(hours=3))  # type: ignore[attr-defined]
    # A batch of deliveries only: no order is placed in it, and the events carry no customer.
    delivered = [follow("delivered", oid, START + timedelta(hours=2)) for oid in ("o-1", "o-2")]
    for event in delivered:
        del event["customer"]
    feed(rt, *delivered)
    counts = _drain(rt, limit=50)
    assert (counts.processed, counts.failed) == (2, 0)
    with rt.factory() as session:
        segments = dict(session.execute(
            select(Enrollment.order_id, Enrollment.segment)
            .where(Enrollment.journey == "delivered-thanks")).tuples().all())
    # As of o-1, c-1 had one purchase; as of o-2, two.
    assert segments == {"o-1": "first_time", "o-2": "repeat"}


def test_a_journey_version_first_seen_by_a_failed_event_is_stored_by_the_next(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replayed event by event, the first event to enroll into a journey version not yet
    stored creates its row inside its savepoint. If that event then fails, the row is rolled
    back with it, and the next event must not use the id it had."""
    from aftersale.pipeline.definitions import check_definitions

    definitions, problems = check_definitions(rt.settings.journeys_dir, rt.settings.content_dir)
    assert definitions is not None and not problems  # loaded, but no version stored yet
    feed(rt, placed("o-1", START, "c-bad"), placed("o-2", START, "c-2"))
    enroll = _Applier.enroll

    def fails_after_enrolling(self: _Applier, event: Any, customer: Customer,
                              order: Any) -> None:
        enroll(self, event, customer, order)
        if customer.id == "c-bad":
            raise ValueError("broke after the version was stored")

    monkeypatch.setattr(_Applier, "enroll", fails_after_enrolling)
    counts = process_batch(rt.factory, definitions, rt.clock, 50)
    assert (counts.replayed_batches, counts.processed, counts.failed) == (1, 1, 1)
    with rt.factory() as session:
        assert session.scalar(select(InboxEvent.status).where(
            InboxEvent.event_id == "evt-o-2-placed")) == "processed"
        assert set(session.scalars(select(Enrollment.customer_id))) == {"c-2"}
