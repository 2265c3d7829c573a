"""The clock check: parcels that go silent or miss their estimated date become
shipment.stalled / shipment.late in the inbox, once each, counted in the destination country's
business days, on the simulated clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aftersale.core.clock import SimulatedClock
from aftersale.core.delivery_clock import StallDefaults
from aftersale.db.models import Enrollment, InboxEvent, Message, Order, Shipment
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime, open_runtime
from aftersale.pipeline.shipment_checks import check_shipments
from tests.conftest import make_settings
from tests.factories import follow, placed
from tests.integration.helpers import feed, run_to, sent, treated_customer
from tests.integration.test_shipments import update

WARSAW, ISTANBUL = ZoneInfo("Europe/Warsaw"), ZoneInfo("Europe/Istanbul")
# Friday 3 April 2026; Easter Monday (6 April) is a public holiday in Poland, not in Türkiye.
BEGIN = datetime(2026, 4, 1, 8, tzinfo=UTC)


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(BEGIN)


def _runtime(url: str, dirs: tuple[Path, Path], clock: SimulatedClock,
             **settings: Any) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(url, dirs, batch_size=50, **settings), clock)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def domestic_rt(migrated_database_url: str, definitions_dirs: tuple[Path, Path],
                clock: SimulatedClock) -> Iterator[Runtime]:
    """No shop country: every parcel is domestic (3 business days)."""
    yield from _runtime(migrated_database_url, definitions_dirs, clock)


@pytest.fixture
def turkish_shop(migrated_database_url: str, definitions_dirs: tuple[Path, Path],
                 clock: SimulatedClock) -> Iterator[Runtime]:
    yield from _runtime(migrated_database_url, definitions_dirs, clock, shop_country="tr")


def _tick(rt: Runtime, until: datetime, step: timedelta = timedelta(hours=1)) -> None:
    """Drain the inbox at every step up to ``until``, as the flows do on a simulated clock."""
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    defs = rt.definitions()
    while True:
        drain_inbox(rt, defs, due_by=clock.now())
        if clock.now() >= until:
            return
        clock.set(min(clock.now() + step, until))


def _derived(rt: Runtime, kind: str) -> dict[str, InboxEvent]:
    with rt.factory() as session:
        return {e.event_id: e for e in session.scalars(
            select(InboxEvent).where(InboxEvent.type == f"shipment.{kind}"))}


def _shipment(rt: Runtime, sid: str) -> Shipment:
    with rt.factory() as session:
        shipment = session.get(Shipment, sid)
        assert shipment is not None
        return shipment


def _order(rt: Runtime, oid: str) -> Order:
    with rt.factory() as session:
        order = session.get(Order, oid)
        assert order is not None
        return order


def _ship_to_poland_and_turkey(rt: Runtime) -> None:
    """Two parcels, last scanned on Friday 3 April at 15:00 local time in each country."""
    feed(rt, placed("o-pl", BEGIN, "c-pl", timezone="Europe/Warsaw", country="PL"),
         placed("o-tr", BEGIN, "c-tr"),
         update("u-pl", "o-pl", "s-pl", "in_transit", local(WARSAW, 2026, 4, 3, 15),
                destination_country="PL"),
         update("u-tr", "o-tr", "s-tr", "in_transit", local(ISTANBUL, 2026, 4, 3, 15),
                destination_country="TR"))


def test_stalled_counts_business_days_in_each_destination(domestic_rt: Runtime) -> None:
    rt = domestic_rt
    _ship_to_poland_and_turkey(rt)
    _tick(rt, local(ISTANBUL, 2026, 4, 8, 14))
    assert _derived(rt, "stalled") == {}  # the weekend does not count
    _tick(rt, local(ISTANBUL, 2026, 4, 8, 15))
    stalled = _derived(rt, "stalled")
    assert list(stalled) == ["derived:s-tr:stalled:3"]  # Easter Monday counts in Türkiye
    event = stalled["derived:s-tr:stalled:3"]
    assert event.source == "aftersale" and event.status == "processed"
    assert event.payload["shipment"]["days_silent"] == 3
    assert event.payload["shipment"]["stalled_after"] == 3
    assert event.payload["shipment"]["shop_threshold"] is True
    assert event.payload["shipment"]["is_international"] is False
    shipment = _shipment(rt, "s-tr")
    assert shipment.stalled_at == local(ISTANBUL, 2026, 4, 8, 15)
    assert shipment.stalled_days == 3 and shipment.problem_at == shipment.stalled_at
    assert _order(rt, "o-tr").delivery_problem_at == shipment.stalled_at
    assert _order(rt, "o-pl").delivery_problem_at is None

    _tick(rt, local(WARSAW, 2026, 4, 9, 14))
    assert "derived:s-pl:stalled:3" not in _derived(rt, "stalled")  # Easter Monday: a holiday
    _tick(rt, local(WARSAW, 2026, 4, 9, 15))
    assert _derived(rt, "stalled")["derived:s-pl:stalled:3"].status == "processed"
    _tick(rt, local(WARSAW, 2026, 4, 20), timedelta(hours=6))
    assert len(_derived(rt, "stalled")) == 2  # once per shipment, however long it stays silent


def test_an_international_parcel_waits_five_business_days(turkish_shop: Runtime) -> None:
    rt = turkish_shop
    _ship_to_poland_and_turkey(rt)
    _tick(rt, local(WARSAW, 2026, 4, 13, 14), timedelta(hours=2))
    stalled = _derived(rt, "stalled")
    assert list(stalled) == ["derived:s-tr:stalled:3"]  # domestic for a Turkish shop
    # Poland: Tue 7, Wed 8, Thu 9, Fri 10, Mon 13 at 15:00 Warsaw (Easter Monday left out)
    _tick(rt, local(WARSAW, 2026, 4, 13, 15))
    event = _derived(rt, "stalled")["derived:s-pl:stalled:5"]
    assert event.payload["shipment"]["is_international"] is True
    assert event.payload["shipment"]["days_silent"] == 5


def test_a_carrier_update_restarts_the_silence(domestic_rt: Runtime) -> None:
    rt = domestic_rt
    _ship_to_poland_and_turkey(rt)
    _tick(rt, local(ISTANBUL, 2026, 4, 7, 10))
    feed(rt, update("u-tr2", "o-tr", "s-tr", "in_transit", local(ISTANBUL, 2026, 4, 7, 10)))
    _tick(rt, local(ISTANBUL, 2026, 4, 9, 12), timedelta(hours=3))
    assert "derived:s-tr:stalled:3" not in _derived(rt, "stalled")
    _tick(rt, local(ISTANBUL, 2026, 4, 10, 10))
    assert "derived:s-tr:stalled:3" in _derived(rt, "stalled")


def test_a_scan_waiting_in_the_inbox_is_applied_before_the_clock_looks(
        domestic_rt: Runtime) -> None:
    """The check runs between two drains: a scan that reached the inbox while the parcel
    looked silent is applied first, so no stall (or late) is raised for a parcel that moved."""
    rt = domestic_rt
    _ship_to_poland_and_turkey(rt)
    _tick(rt, local(ISTANBUL, 2026, 4, 3, 16))
    clock = rt.clock
    assert isinstance(clock, SimulatedClock)
    # Wednesday: 3 business days of silence for the last *applied* scan, but the carrier's
    # Tuesday scan is in the inbox, unapplied, when the drain starts.
    feed(rt, update("u-tr2", "o-tr", "s-tr", "in_transit", local(ISTANBUL, 2026, 4, 7, 10)))
    clock.set(local(ISTANBUL, 2026, 4, 8, 16))
    drain_inbox(rt, rt.definitions(), due_by=clock.now())
    assert "derived:s-tr:stalled:3" not in _derived(rt, "stalled")
    assert _order(rt, "o-tr").delivery_problem_at is None


def test_delivered_returned_cancelled_and_waiting_parcels_are_never_stalled(
        domestic_rt: Runtime) -> None:
    rt = domestic_rt
    feed(rt, placed("o-1", BEGIN), placed("o-2", BEGIN), placed("o-3", BEGIN),
         placed("o-4", BEGIN),
         update("u-1", "o-1", "s-1", "delivered", BEGIN + timedelta(hours=1)),
         update("u-2", "o-2", "s-2", "returned_to_sender", BEGIN + timedelta(hours=1)),
         update("u-3", "o-3", "s-3", "in_transit", BEGIN + timedelta(hours=1),
                estimated_delivery_at=(BEGIN + timedelta(days=1)).isoformat()),
         follow("cancelled", "o-3", BEGIN + timedelta(hours=2)),
         update("u-4", "o-4", "s-4", "ready_for_pickup", BEGIN + timedelta(hours=1),
                estimated_delivery_at=(BEGIN + timedelta(days=1)).isoformat()),
         # reported failed: that was its problem moment, no stall or late on top of it
         placed("o-5", BEGIN),
         update("u-5", "o-5", "s-5", "exception", BEGIN + timedelta(hours=1),
                estimated_delivery_at=(BEGIN + timedelta(days=1)).isoformat()))
    _tick(rt, BEGIN + timedelta(days=12), timedelta(hours=6))
    assert _derived(rt, "stalled") == {} and _derived(rt, "late") == {}


def test_late_once_for_the_first_estimate_and_again_for_a_revised_one(
        domestic_rt: Runtime) -> None:
    rt = domestic_rt
    first = local(WARSAW, 2026, 4, 7, 18)
    feed(rt, placed("o-1", BEGIN),
         update("u-1", "o-1", "s-1", "in_transit", local(WARSAW, 2026, 4, 6, 9),
                destination_country="PL", estimated_delivery_at=first.isoformat()),
         update("u-2", "o-1", "s-1", "in_transit", local(WARSAW, 2026, 4, 7, 9),
                destination_country="PL"))
    _tick(rt, local(WARSAW, 2026, 4, 7, 23, 30))
    assert _derived(rt, "late") == {}  # 7 April is not over in Warsaw
    _tick(rt, local(WARSAW, 2026, 4, 8, 0, 30))
    late = _derived(rt, "late")
    assert list(late) == ["derived:s-1:late:2026-04-07"]
    assert late["derived:s-1:late:2026-04-07"].payload["shipment"]["days_late"] == 1
    assert late["derived:s-1:late:2026-04-07"].status == "processed"
    assert _shipment(rt, "s-1").late_for == first
    assert _order(rt, "o-1").delivery_problem_at == local(WARSAW, 2026, 4, 8, 0, 30)
    revised = local(WARSAW, 2026, 4, 10, 12)
    feed(rt, update("u-3", "o-1", "s-1", "delayed", local(WARSAW, 2026, 4, 8, 9),
                    estimated_delivery_at=revised.isoformat()))
    _tick(rt, local(WARSAW, 2026, 4, 10, 23), timedelta(hours=2))
    assert list(_derived(rt, "late")) == ["derived:s-1:late:2026-04-07"]
    _tick(rt, local(WARSAW, 2026, 4, 11, 1))
    assert sorted(_derived(rt, "late")) == ["derived:s-1:late:2026-04-07",
                                            "derived:s-1:late:2026-04-10"]
    # the parcel keeps silent: stalled too, but late never twice for one date
    _tick(rt, local(WARSAW, 2026, 4, 20), timedelta(hours=6))
    assert len(_derived(rt, "late")) == 2
    assert _shipment(rt, "s-1").late_for == revised


def test_an_estimate_already_past_at_creation_is_kept_and_late_once(
        domestic_rt: Runtime) -> None:
    rt = domestic_rt
    past = BEGIN - timedelta(days=4)
    feed(rt, placed("o-1", BEGIN - timedelta(days=10)),
         update("u-1", "o-1", "s-1", "in_transit", BEGIN,
                estimated_delivery_at=past.isoformat()),
         update("u-2", "o-1", "s-1", "in_transit", BEGIN + timedelta(hours=2),
                estimated_delivery_at=past.isoformat()))
    _tick(rt, BEGIN + timedelta(days=3), timedelta(hours=4))
    shipment = _shipment(rt, "s-1")
    assert shipment.first_estimated_delivery_at == past
    assert list(_derived(rt, "late")) == [f"derived:s-1:late:{past.date().isoformat()}"]


def test_each_journeys_own_threshold_is_raised_once(domestic_rt: Runtime) -> None:
    """A journey with ``stalled_after: {domestic: 2}`` and the settings' 3: two stalls, each
    once; only the shop's own threshold marks the order as having had a problem."""
    rt = domestic_rt
    _ship_to_poland_and_turkey(rt)
    _tick(rt, local(WARSAW, 2026, 4, 3, 16), timedelta(hours=12))  # both parcels applied
    eager = SimpleNamespace(triggers=("shipment.stalled",), stalled_after={"domestic": 2})
    other = SimpleNamespace(triggers=("order.placed",), stalled_after={"domestic": 1})
    default = StallDefaults(3, 5)
    when = local(ISTANBUL, 2026, 4, 7, 15)
    counts = check_shipments(rt.factory, [eager, other], when, default)  # type: ignore[list-item]
    assert counts.stalled == 1
    assert list(_derived(rt, "stalled")) == ["derived:s-tr:stalled:2"]
    assert _derived(rt, "stalled")["derived:s-tr:stalled:2"].payload["shipment"][
        "shop_threshold"] is False
    assert _shipment(rt, "s-tr").stalled_days == 2
    assert _shipment(rt, "s-tr").stalled_at is None  # a journey's threshold: no problem yet
    assert check_shipments(rt.factory, [eager], when, default).stalled == 0  # type: ignore[list-item]
    later = local(ISTANBUL, 2026, 4, 9, 15)
    assert check_shipments(rt.factory, [eager], later, default).stalled == 2  # type: ignore[list-item]
    assert sorted(_derived(rt, "stalled")) == ["derived:s-pl:stalled:2",
                                               "derived:s-tr:stalled:2",
                                               "derived:s-tr:stalled:3"]
    assert _shipment(rt, "s-tr").stalled_at == later
    assert check_shipments(rt.factory, [eager], later + timedelta(days=9),
                           default).stalled == 1  # type: ignore[list-item]  # s-pl at 3


def test_a_journey_triggered_by_a_stall_sends_its_message(
        domestic_rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    (journeys / "stalled_care.yaml").write_text(
        "journey: stalled-care\n"
        "description: A word when a parcel stops moving\n"
        "trigger: shipment.stalled\n"
        "segments: [vip, at_risk, discount_hunter, repeat, first_time]\n"
        "holdout: 0%\n"
        "reentry: once_per_order\n"
        "steps:\n"
        "  - send: shipping_update\n"
        "    channels: [email]\n")
    rt = domestic_rt
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", BEGIN, cid),
         update("u-1", "o-1", "s-1", "in_transit", local(ISTANBUL, 2026, 4, 3, 15),
                destination_country="TR"))
    run_to(rt, rt.definitions(), local(ISTANBUL, 2026, 4, 8, 16), timedelta(hours=2))
    with rt.factory() as session:
        enrollment = session.scalars(select(Enrollment).where(
            Enrollment.journey == "stalled-care")).one()
        assert (enrollment.order_id, enrollment.shipment_id) == ("o-1", "s-1")
        messages = session.scalars(select(Message).where(
            Message.enrollment_id == enrollment.id)).all()
    assert [m.template for m in messages] == ["shipping_update"]
    assert [m.template for m in sent(rt, cid)].count("shipping_update") == 2


@pytest.mark.usefixtures("prefect_server")
def test_the_process_events_flow_checks_parcels_and_applies_what_it_derived(
        domestic_rt: Runtime, clock: SimulatedClock) -> None:
    """One process-events run: the clock check first, then the batches, until the events
    derived on the way (order.shipped from a parcel, the stall) are applied too."""
    from aftersale.orchestration.flow_context import using_runtime
    from aftersale.orchestration.process_events import process_events

    rt = domestic_rt
    feed(rt, placed("o-1", BEGIN), placed("o-2", BEGIN),
         update("u-1", "o-1", "s-1", "in_transit", BEGIN + timedelta(hours=1)),
         update("u-2", "o-2", "s-2", "in_transit", BEGIN + timedelta(hours=1)))
    clock.set(BEGIN + timedelta(hours=2))
    with using_runtime(rt):
        first = process_events(reason="test")
    assert (first["events"], first["derived"], first["failed"]) == (6, 2, 0)
    clock.set(BEGIN + timedelta(days=6))  # Wed 1 April 10:00 to Tue 7: 3.96 business days
    with using_runtime(rt):
        second = process_events(reason="schedule")
    assert (second["stalled"], second["events"], second["processed"]) == (2, 2, 2)
    assert sorted(_derived(rt, "stalled")) == ["derived:s-1:stalled:3", "derived:s-2:stalled:3"]
    assert _order(rt, "o-1").status == "shipped"
