"""The delivery metrics over random small worlds (SQLite in memory), checked against a plain
Python reading of their definitions (README, Metrics: Delivery), so the SQL is tested by a
second implementation: parcels judged and on time, shipped orders and problems, and who is
in the on-time and problem groups, per segment and for ``all``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from aftersale.db.models import Base, Customer, Enrollment, JourneyVersion, Order, Shipment
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.model import LoyaltyByDelivery, Rate

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOURS = st.integers(0, 24 * 12)  # times in hours from T0: day boundaries are crossed often
MAYBE = st.none() | HOURS


@dataclass(frozen=True)
class Parcel:
    created: int
    estimate: int | None
    delivered: int | None


@dataclass(frozen=True)
class Ord:
    customer: int
    segment: str
    placed: int
    shipped: int | None
    delivered: int | None
    problem: int | None
    parcels: tuple[Parcel, ...]


@dataclass(frozen=True)
class World:
    customers: int
    orders: list[Ord]
    end: int


@st.composite
def parcels(draw: st.DrawFn) -> Parcel:
    """Created in the first two days, estimated one to four days later (or not at all),
    delivered within a day and a half of the estimate either way (or not yet): the estimated
    day itself often."""
    created = draw(st.integers(0, 48))
    estimate = created + draw(st.integers(24, 96)) if draw(st.integers(0, 3)) else None
    delivered = None
    if draw(st.integers(0, 3)):
        delivered = max(created, (created + 48 if estimate is None else estimate) + draw(st.integers(-36, 36)))
    return Parcel(created, estimate, delivered)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    customers = draw(st.integers(1, 4))
    parcel = parcels()
    orders = draw(st.lists(st.builds(Ord, st.integers(0, customers - 1), st.sampled_from(["a", "b"]),
                                     st.integers(0, 48), MAYBE, MAYBE, MAYBE,
                                     st.lists(parcel, min_size=1, max_size=3).map(tuple)),
                           min_size=1, max_size=8))
    # the report time: often on the day some parcel was expected
    estimates = [p.estimate for o in orders for p in o.parcels if p.estimate is not None]
    if estimates and draw(st.integers(0, 3)):
        end = draw(st.sampled_from(estimates)) + draw(st.integers(-30, 30))
    else:
        end = draw(st.integers(48, 24 * 12))
    return World(customers, orders, max(0, end))


def at(hours: int | None) -> datetime | None:
    return None if hours is None else T0 + timedelta(hours=hours)


def store(session: Session, w: World) -> None:
    session.add_all(Customer(id=f"c{i}", created_at=T0, updated_at=T0) for i in range(w.customers))
    session.add(JourneyVersion(id=1, journey="j", version="1", definition={}, created_at=T0))
    session.flush()
    for i, o in enumerate(w.orders):
        session.add(Order(id=f"o{i}", customer_id=f"c{o.customer}", placed_at=at(o.placed), total=1,
                          items=[], discount_codes=[], status="placed", shipped_at=at(o.shipped),
                          delivered_at=at(o.delivered), delivery_problem_at=at(o.problem)))
    session.flush()
    for i, o in enumerate(w.orders):
        session.add(Enrollment(id=i + 1, journey="j", journey_version_id=1, customer_id=f"c{o.customer}",
                               order_id=f"o{i}", entry_key=str(i), segment=o.segment, status="done",
                               enrolled_at=at(o.placed)))
        for k, p in enumerate(o.parcels):
            created = at(p.created)
            assert created is not None
            session.add(Shipment(id=f"s{i}-{k}", order_id=f"o{i}", status="in_transit", status_at=created,
                                 last_update_at=created, first_estimated_delivery_at=at(p.estimate),
                                 delivered_at=at(p.delivered), created_at=created, updated_at=created))
    session.flush()


def anchors(w: World) -> dict[str, list[int]]:
    """segment (and "all") -> the anchor order of each customer in it: the first enrollment
    (by time, then id) of the customer in the segment, by ``end``; ``all`` takes the earliest
    of a customer's segment anchors."""
    firsts: dict[tuple[str, int], int] = {}
    for i, o in enumerate(w.orders):
        key = (o.segment, o.customer)
        if o.placed <= w.end and (key not in firsts or (o.placed, i) < (w.orders[firsts[key]].placed, firsts[key])):
            firsts[key] = i
    result: dict[str, list[int]] = {}
    overall: dict[int, int] = {}
    for (segment, customer), i in firsts.items():
        result.setdefault(segment, []).append(i)
        if customer not in overall or (w.orders[i].placed, i) < (w.orders[overall[customer]].placed, overall[customer]):
            overall[customer] = i
    if overall:
        result["all"] = list(overall.values())
    return result


def by_end(hours: int | None, end: int) -> bool:
    return hours is not None and hours <= end


def day(hours: int) -> int:
    return hours // 24


def expected(w: World, orders: list[int]) -> dict[str, int]:
    counts = dict.fromkeys(("judged", "on_time", "shipped", "problems", "on_time_group", "problem_group"), 0)
    for i in orders:
        o = w.orders[i]
        parcels = [p for p in o.parcels if p.created <= w.end]
        flags = []
        for p in parcels:
            on_time = (p.estimate is not None and p.delivered is not None and by_end(p.delivered, w.end)
                       and day(p.delivered) <= day(p.estimate))
            flags.append(on_time)
            if p.estimate is not None and (by_end(p.delivered, w.end) or day(p.estimate) < day(w.end)):
                counts["judged"] += 1
                counts["on_time"] += on_time
        shipped, problem = by_end(o.shipped, w.end), by_end(o.problem, w.end)
        counts["shipped"] += shipped
        counts["problems"] += shipped and problem
        if problem:
            counts["problem_group"] += 1
        elif by_end(o.delivered, w.end) and flags and all(flags):
            counts["on_time_group"] += 1
    return counts


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=worlds())
def test_delivery_metrics_match_their_definitions(engine: Engine, w: World) -> None:
    with Session(engine) as session:
        for model in (Shipment, Enrollment, Order, JourneyVersion, Customer):
            session.execute(delete(model))
        store(session, w)
        rows = segment_metrics(session, None, at(w.end) or T0, {})
        session.rollback()

    members = anchors(w)
    assert {r.segment for r in rows} == set(members) | {"all"}
    for row in rows:
        want = expected(w, members.get(row.segment, []))
        m = row.metrics
        assert m["on_time_delivery_rate"] == Rate.of(want["on_time"], want["judged"]), row.segment
        assert m["delivery_problem_rate"] == Rate.of(want["problems"], want["shipped"]), row.segment
        loyalty = m["loyalty_by_delivery"]
        assert isinstance(loyalty, LoyaltyByDelivery)
        assert (loyalty.on_time.customers, loyalty.problem.customers) == (
            want["on_time_group"], want["problem_group"]), row.segment
        for group in (loyalty.on_time, loyalty.problem):
            assert group.repeat_purchase_rate.denominator == group.customers
            assert group.nps.n <= group.customers
        assert m["median_days_to_deliver"].n <= want["shipped"]
