"""Shipments applied by process-events: every carrier moment in the history, the status never
backwards, the order shipped by its first moving parcel and delivered when all its parcels
are (derived into the inbox), on SQLite and PostgreSQL with a simulated clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from aftersale.db.models import Enrollment, InboxEvent, Order, Shipment, ShipmentUpdate
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, run_to, sent, treated_customer


def update(eid: str, oid: str, sid: str, status: str, at: datetime,
           happened: datetime | None = None, **shipment: Any) -> dict[str, Any]:
    """A shipment.updated event as a source would post it."""
    return {"id": eid, "type": "shipment.updated", "occurred_at": at.isoformat(),
            "order": {"id": oid},
            "shipment": {"id": sid, "status": status, "carrier": "InPost",
                         "tracking_number": f"TN-{sid}",
                         "tracking_url": f"https://track.example.com/{sid}",
                         "happened_at": (happened or at).isoformat(), **shipment}}


def _shipments(rt: Runtime) -> dict[str, Shipment]:
    with rt.factory() as session:
        return {s.id: s for s in session.scalars(select(Shipment))}


def _history(rt: Runtime, sid: str) -> list[tuple[str, str]]:
    with rt.factory() as session:
        return [(u.event_id, u.status) for u in session.scalars(
            select(ShipmentUpdate).where(ShipmentUpdate.shipment_id == sid)
            .order_by(ShipmentUpdate.happened_at))]


def _order(rt: Runtime, oid: str) -> Order:
    with rt.factory() as session:
        order = session.get(Order, oid)
        assert order is not None
        return order


def _inbox(rt: Runtime) -> dict[str, InboxEvent]:
    with rt.factory() as session:
        return {e.event_id: e for e in session.scalars(select(InboxEvent))}


def test_out_of_order_and_duplicate_updates_never_move_a_shipment_back(rt: Runtime) -> None:
    defs = rt.definitions()
    eta1, eta2 = START + days(4), START + days(6)
    feed(rt, placed("o-1", START))
    drain_inbox(rt, defs)
    feed(rt,
         update("u-1", "o-1", "s-1", "label_created", START + days(0.1),
                estimated_delivery_at=eta1.isoformat(), message="Label printed"),
         update("u-3", "o-1", "s-1", "delivered", START + days(3), message="Left at door"),
         # older than the delivery, arriving after it (a retried webhook)
         update("u-2", "o-1", "s-1", "in_transit", START + days(3.1), START + days(1),
                estimated_delivery_at=eta2.isoformat(), message="In the hub"))
    counts = drain_inbox(rt, defs)
    assert counts.shipment_updates == 3
    shipment = _shipments(rt)["s-1"]
    assert (shipment.status, shipment.status_at) == ("delivered", START + days(3))
    assert shipment.delivered_at == START + days(3)
    assert shipment.shipped_at == START + days(1)  # the first moving scan, though it came last
    assert shipment.last_update_at == START + days(3)
    assert shipment.last_message == "Left at door"  # the newest update's words
    assert shipment.first_estimated_delivery_at == eta1
    assert shipment.estimated_delivery_at == eta1  # the older update's estimate is history
    assert _history(rt, "s-1") == [("u-1", "label_created"), ("u-2", "in_transit"),
                                   ("u-3", "delivered")]
    # the same event again (a source retrying): stored once, applied once
    assert feed(rt, update("u-2", "o-1", "s-1", "in_transit", START + days(1))).stored == 0
    assert drain_inbox(rt, defs).shipment_updates == 0
    assert len(_history(rt, "s-1")) == 3
    order = _order(rt, "o-1")
    assert (order.status, order.shipped_at, order.delivered_at) == (
        "delivered", START + days(1), START + days(3))
    assert order.tracking_number == "TN-s-1" and order.carrier == "InPost"
    derived = {k: v for k, v in _inbox(rt).items() if k.startswith("derived:")}
    assert sorted(derived) == ["derived:o-1:order.delivered", "derived:o-1:order.shipped"]
    assert {e.source for e in derived.values()} == {"aftersale"}
    assert {e.status for e in derived.values()} == {"processed"}


def test_a_later_estimate_revises_the_latest_but_not_the_first(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START),
         update("u-1", "o-1", "s-1", "in_transit", START + days(1),
                estimated_delivery_at=(START + days(3)).isoformat()),
         update("u-2", "o-1", "s-1", "delayed", START + days(2), message="Weather",
                estimated_delivery_at=(START + days(5)).isoformat()))
    drain_inbox(rt, defs)
    shipment = _shipments(rt)["s-1"]
    assert shipment.first_estimated_delivery_at == START + days(3)
    assert shipment.estimated_delivery_at == START + days(5)
    assert (shipment.status, shipment.last_message) == ("delayed", "Weather")
    assert shipment.problem_at == START + days(2)
    assert _order(rt, "o-1").delivery_problem_at == START + days(2)


def test_one_parcel_reported_by_two_sources_is_one_shipment(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START),
         update("u-1", "o-1", "shopify:77", "in_transit", START + days(1),
                tracking_number="PL123"),
         update("u-2", "o-1", "aftership:ab", "out_for_delivery", START + days(2),
                tracking_number="PL123", destination_country="pl"))
    drain_inbox(rt, defs)
    shipments = _shipments(rt)
    assert list(shipments) == ["shopify:77"]
    assert shipments["shopify:77"].status == "out_for_delivery"
    assert shipments["shopify:77"].destination_country == "PL"
    assert _history(rt, "shopify:77") == [("u-1", "in_transit"), ("u-2", "out_for_delivery")]


def test_an_order_is_delivered_when_all_its_shipments_are(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START),
         update("u-a1", "o-1", "s-a", "in_transit", START + days(1)),
         update("u-b1", "o-1", "s-b", "label_created", START + days(1)),
         update("u-a2", "o-1", "s-a", "delivered", START + days(2)))
    drain_inbox(rt, defs)
    order = _order(rt, "o-1")
    assert (order.status, order.shipped_at, order.delivered_at) == (
        "shipped", START + days(1), None)
    assert order.tracking_number == "TN-s-a"  # the parcel that shipped it
    assert "derived:o-1:order.delivered" not in _inbox(rt)

    feed(rt, update("u-b2", "o-1", "s-b", "in_transit", START + days(2.5)),
         update("u-b3", "o-1", "s-b", "delivered", START + days(4)))
    drain_inbox(rt, defs)
    order = _order(rt, "o-1")
    assert (order.status, order.delivered_at) == ("delivered", START + days(4))
    assert _inbox(rt)["derived:o-1:order.delivered"].status == "processed"


def test_a_withdrawn_parcel_no_longer_counts_for_its_order(rt: Runtime) -> None:
    """A cancelled fulfillment (a wrong label) is kept as ``cancelled``, whatever the carrier
    said before or after; the order is delivered when its remaining parcels are."""
    defs = rt.definitions()
    feed(rt, placed("o-1", START),
         update("u-a1", "o-1", "s-a", "in_transit", START + days(1)),
         update("u-b1", "o-1", "s-b", "in_transit", START + days(1)),
         update("u-a2", "o-1", "s-a", "cancelled", START + days(1.5)),
         update("u-a3", "o-1", "s-a", "out_for_delivery", START + days(1.7)),
         update("u-b2", "o-1", "s-b", "delivered", START + days(2)))
    drain_inbox(rt, defs)
    with rt.factory() as session:
        withdrawn = session.get(Shipment, "s-a")
        assert withdrawn is not None and withdrawn.status == "cancelled"
    order = _order(rt, "o-1")
    assert (order.status, order.delivered_at) == ("delivered", START + days(2))


def test_a_delivered_without_any_earlier_scan_ships_and_delivers_the_order(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START), update("u-1", "o-1", "s-1", "delivered", START + days(2)))
    drain_inbox(rt, defs)
    shipment = _shipments(rt)["s-1"]
    assert (shipment.shipped_at, shipment.delivered_at) == (START + days(2), START + days(2))
    order = _order(rt, "o-1")
    assert (order.status, order.shipped_at, order.delivered_at) == (
        "delivered", START + days(2), START + days(2))
    inbox = _inbox(rt)
    # shipped is applied before delivered: the inbox keeps the order they were derived in
    assert inbox["derived:o-1:order.shipped"].seq < inbox["derived:o-1:order.delivered"].seq


def test_derived_shipped_and_delivered_drive_todays_journeys(rt: Runtime) -> None:
    """order-updates waits for order.shipped and sends the tracking link; onboarding waits for
    order.delivered: both now come from the carrier's updates alone."""
    defs = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid))
    run_to(rt, defs, START + days(1))
    assert sent(rt, cid) == []
    feed(rt, update("u-1", "o-1", "shopify:1", "in_transit", START + days(1)))
    run_to(rt, defs, START + days(2))
    shipping = [m for m in sent(rt, cid) if m.template == "shipping_update"]
    assert len(shipping) == 1
    # today's shipping_update text, its link now aftersale's tracking page for that parcel
    assert "https://shop.example.com/t/" in (shipping[0].body_text or "")
    feed(rt, update("u-2", "o-1", "shopify:1", "delivered", START + days(3)))
    run_to(rt, defs, START + days(6))
    assert "product_tutorial" in [m.template for m in sent(rt, cid)]


def test_a_legacy_shipped_event_still_ships_and_nothing_is_derived_again(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START), follow("shipped", "o-1", START + days(1)))
    drain_inbox(rt, defs)
    feed(rt, update("u-1", "o-1", "s-1", "in_transit", START + days(2)))
    drain_inbox(rt, defs)
    order = _order(rt, "o-1")
    assert order.shipped_at == START + days(1) and order.tracking_number == "YKo-1"
    assert "derived:o-1:order.shipped" not in _inbox(rt)
    assert not [e for e in _shipments(rt) if e != "s-1"]


def test_a_cancelled_order_derives_nothing(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START), follow("cancelled", "o-1", START + days(0.5)),
         update("u-1", "o-1", "s-1", "delivered", START + days(2)))
    drain_inbox(rt, defs)
    assert _shipments(rt)["s-1"].status == "delivered"  # the parcel's story is kept
    assert not [k for k in _inbox(rt) if k.startswith("derived:")]
    assert _order(rt, "o-1").status == "cancelled"


def test_an_update_before_its_order_waits_then_applies(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, update("u-1", "o-1", "s-1", "in_transit", START))
    assert drain_inbox(rt, defs).waiting == 1
    assert _inbox(rt)["u-1"].status == "waiting"
    assert "waiting for its order.placed" in (_inbox(rt)["u-1"].error or "")
    assert _shipments(rt) == {}
    feed(rt, placed("o-1", START))
    drain_inbox(rt, defs)
    assert _inbox(rt)["u-1"].status == "waiting"  # tried again a minute after it waited
    rt.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
    drain_inbox(rt, defs)
    assert _inbox(rt)["u-1"].status == "processed"
    assert _shipments(rt)["s-1"].status == "in_transit"
    assert _order(rt, "o-1").status == "shipped"


def test_an_update_for_an_order_that_never_comes_gives_up_after_three_days(
        rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, update("u-1", "o-lost", "s-1", "in_transit", START))
    drain_inbox(rt, defs)
    rt.clock.advance(days(3) - timedelta(minutes=1))  # type: ignore[attr-defined]
    drain_inbox(rt, defs)
    assert _inbox(rt)["u-1"].status == "waiting"
    rt.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
    drain_inbox(rt, defs)
    assert _inbox(rt)["u-1"].status == "failed"
    assert _shipments(rt) == {}


def test_a_shipment_of_another_order_is_refused_and_nothing_is_written(rt: Runtime) -> None:
    defs = rt.definitions()
    feed(rt, placed("o-1", START), placed("o-2", START),
         update("u-1", "o-1", "s-1", "in_transit", START + days(1)))
    drain_inbox(rt, defs)
    feed(rt, update("u-2", "o-2", "s-1", "delivered", START + days(2)))
    counts = drain_inbox(rt, defs)
    assert counts.failed == 1
    inbox = _inbox(rt)
    assert inbox["u-2"].status == "failed"
    assert "shipment s-1 belongs to order o-1, not o-2" in (inbox["u-2"].error or "")
    assert _shipments(rt)["s-1"].status == "in_transit"
    assert _history(rt, "s-1") == [("u-1", "in_transit")]
    assert _order(rt, "o-2").status == "placed"


def test_shipment_events_reach_the_enrollments_of_their_order(rt: Runtime) -> None:
    """A journey waiting for a shipment.* event of its order is woken by it (the same
    exit/resume every event goes through)."""
    defs = rt.definitions()
    feed(rt, placed("o-1", START), placed("o-2", START + days(0.1)))
    drain_inbox(rt, defs)
    with rt.factory() as session, session.begin():
        for enrollment in session.scalars(select(Enrollment)):
            enrollment.waiting_for, enrollment.due_at = "shipment.updated", None
    feed(rt, update("u-1", "o-1", "s-1", "in_transit", START + days(1)))
    counts = drain_inbox(rt, defs)
    with rt.factory() as session:
        woken = {e.order_id for e in session.scalars(select(Enrollment))
                 if e.due_at is not None}
    assert woken == {"o-1"}
    assert counts.resumed >= 1



def _parcels(n: int, prefix: str) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        oid, sid = f"{prefix}o-{i}", f"{prefix}s-{i}"
        events += [placed(oid, START, f"{prefix}c-{i}"),
                   update(f"{prefix}u-{i}-1", oid, sid, "in_transit", START + days(1)),
                   update(f"{prefix}u-{i}-2", oid, sid, "attempted_delivery", START + days(2)),
                   update(f"{prefix}u-{i}-3", oid, sid, "delivered", START + days(3))]
    return events


def _state(rt: Runtime, prefix: str) -> tuple[Any, ...]:
    """What a prefix's parcels left, with the prefix taken out of every id."""
    def strip(value: Any) -> Any:
        return value.replace(prefix, "") if isinstance(value, str) else value

    with rt.factory() as session:
        shipments = sorted(tuple(map(strip, (
            s.id, s.order_id, s.status, s.shipped_at, s.delivered_at, s.problem_at,
            s.last_update_at))) for s in session.scalars(select(Shipment))
            if s.id.startswith(prefix))
        history = sorted(tuple(map(strip, (u.shipment_id, u.event_id, u.status)))
                         for u in session.scalars(select(ShipmentUpdate))
                         if u.shipment_id.startswith(prefix))
        orders = sorted(tuple(map(strip, (o.id, o.status, o.shipped_at, o.delivered_at,
                                          o.delivery_problem_at)))
                        for o in session.scalars(select(Order)) if o.id.startswith(prefix))
        inbox = sorted((strip(e.event_id), e.status) for e in session.scalars(
            select(InboxEvent)) if prefix in e.event_id)
    return shipments, history, orders, inbox


def test_a_batch_replayed_event_by_event_applies_shipments_the_same(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error no check foresaw replays the batch event by event: the shipments, their
    history and the derived events come out as they do all at once."""
    from aftersale.pipeline import apply_events

    defs = rt.definitions()
    feed(rt, *_parcels(3, "A_"))
    together = drain_inbox(rt, defs)
    feed(rt, *_parcels(3, "B_"))
    original = apply_events._apply_together

    def fail_once(applier: Any, events: Any) -> None:
        monkeypatch.setattr(apply_events, "_apply_together", original)
        raise apply_events._TakeCare from RuntimeError("no check foresaw this")

    monkeypatch.setattr(apply_events, "_apply_together", fail_once)
    alone = drain_inbox(rt, defs)
    assert alone.replayed_batches == 1
    assert (alone.shipment_updates, together.shipment_updates) == (9, 9)
    assert _state(rt, "B_") == _state(rt, "A_")
    assert len(_state(rt, "A_")[3]) == 18  # 12 events in, 6 derived
    assert _state(rt, "A_")[2][0][1:] == ("delivered", START + days(1), START + days(3),
                                         START + days(2))


def test_a_batch_of_parcels_costs_the_same_statements_however_many_events(
        rt: Runtime) -> None:
    """Shipments are loaded with the batch's other rows and written with one statement per
    table: the statements a batch sends do not grow with its events."""
    from sqlalchemy import event as sa_event

    from aftersale.pipeline.apply_events import process_batch

    defs = rt.definitions()
    sent_statements: list[str] = []

    def count(*args: Any) -> None:
        sent_statements.append(args[2])

    def statements_for(events: list[dict[str, Any]]) -> int:
        feed(rt, *events)
        sent_statements.clear()
        sa_event.listen(rt.engine, "before_cursor_execute", count)
        try:
            counts = process_batch(rt.factory, defs, rt.clock, 1000)
        finally:
            sa_event.remove(rt.engine, "before_cursor_execute", count)
        assert counts.failed == counts.waiting == 0 and counts.shipment_updates > 0
        return len(sent_statements)

    statements_for(_parcels(1, "W_"))  # the journeys' versions are recorded once
    assert statements_for(_parcels(40, "M_")) == statements_for(_parcels(2, "F_"))


def test_a_carrier_time_without_an_offset_is_refused_naming_the_field(rt: Runtime) -> None:
    from aftersale.core.errors import EventError
    from aftersale.core.events import parse_event

    naive = update("u-1", "o-1", "s-1", "in_transit", START)
    naive["shipment"]["happened_at"] = "2026-03-03T10:00:00"
    with pytest.raises(EventError, match=r"shipment\.happened_at: needs a UTC offset"):
        parse_event(naive)
    late = update("u-2", "o-1", "s-1", "in_transit", START,
                  estimated_delivery_at="2026-03-05")
    with pytest.raises(EventError, match=r"shipment\.estimated_delivery_at"):
        parse_event(late)
    assert _inbox(rt) == {} and _shipments(rt) == {}


def test_an_update_that_fails_leaves_no_derived_event_behind(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replayed event by event, an update that breaks a rule after deriving its order's
    moment takes that moment with it; the others' are stored."""
    from aftersale.pipeline.apply_events import _Applier

    enroll = _Applier.enroll

    def broken(self: _Applier, event: Any, customer: Any, order: Any) -> None:
        if customer.id == "c-bad" and event.type.value == "shipment.updated":
            raise ValueError("a rule blew up")
        enroll(self, event, customer, order)

    feed(rt, placed("o-1", START), placed("o-bad", START, "c-bad"))
    drain_inbox(rt, rt.definitions())
    monkeypatch.setattr(_Applier, "enroll", broken)
    feed(rt, update("u-bad", "o-bad", "s-bad", "in_transit", START + days(1)),
         update("u-1", "o-1", "s-1", "in_transit", START + days(1)))
    counts = drain_inbox(rt, rt.definitions())
    assert (counts.replayed_batches, counts.failed) == (1, 1)
    inbox = _inbox(rt)
    assert inbox["u-bad"].status == "failed" and inbox["u-1"].status == "processed"
    assert "derived:o-bad:order.shipped" not in inbox
    assert inbox["derived:o-1:order.shipped"].status == "processed"
    assert list(_shipments(rt)) == ["s-1"]
