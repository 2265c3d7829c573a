"""Properties of the per-segment metrics over random small worlds (SQLite in memory).

Beyond shapes and bounds, the customer counts and repeat purchasers are checked against a
plain-Python reading of DESIGN section 4, so the SQL is tested by a second implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from aftersale.db.models import (
    Base,
    Customer,
    Enrollment,
    JourneyVersion,
    Message,
    Order,
    Referral,
    SurveyResponse,
)
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.model import Nps, Rate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = {"nps_survey": "nps", "csat_checkin": "csat", "ces_checkin": "ces"}
TEMPLATES = ["shipped", *KINDS]
SEGMENTS = ["a", "b", "c"]


@dataclass(frozen=True)
class Ord:
    customer: int
    day: int
    status: str


@dataclass(frozen=True)
class Enr:
    order: int
    segment: str
    holdout: bool
    delay_hours: int


@dataclass(frozen=True)
class World:
    customers: int
    orders: list[Ord]
    enrollments: list[Enr]
    messages: list[tuple[int, str, int, str, int | None]]  # enrollment, template, day, status, score
    answers: list[tuple[int, str, int, int]]  # customer, kind, score, day
    referrals: list[tuple[int, int, int, bool]]  # referrer, referred, order, first_order
    start: int | None
    end: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    customers = draw(st.integers(1, 5))
    cust = st.integers(0, customers - 1)
    orders = draw(st.lists(st.builds(Ord, cust, st.integers(0, 200),
                                     st.sampled_from(["delivered", "delivered", "cancelled", "refunded"])),
                           min_size=1, max_size=10))
    enrollments = draw(st.lists(st.builds(Enr, st.integers(0, len(orders) - 1), st.sampled_from(SEGMENTS),
                                          st.booleans(), st.integers(0, 48)), max_size=10))
    messages = draw(st.lists(st.tuples(st.integers(0, max(len(enrollments) - 1, 0)), st.sampled_from(TEMPLATES),
                                       st.integers(0, 220), st.sampled_from(["sent", "sent", "failed"]),
                                       st.none() | st.integers(0, 10)),
                             max_size=10 if enrollments else 0))
    answers = draw(st.lists(st.tuples(cust, st.sampled_from(["nps", "csat", "ces"]), st.integers(0, 10),
                                      st.integers(0, 220)), max_size=6))
    referrals = draw(st.lists(st.tuples(cust, cust, st.integers(0, len(orders) - 1), st.booleans()),
                              max_size=3, unique_by=lambda r: r[2]))
    start = draw(st.none() | st.integers(0, 150))
    end = draw(st.integers(0, 260))
    return World(customers, orders, enrollments, messages, answers, referrals, start, end)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def store(session: Session, w: World) -> None:
    session.add_all(Customer(id=f"c{i}", created_at=T0, updated_at=T0) for i in range(w.customers))
    session.add(JourneyVersion(id=1, journey="j", version="1", definition={}, created_at=T0))
    session.flush()
    session.add_all(Order(id=f"o{i}", customer_id=f"c{o.customer}", placed_at=day(o.day), total=1, items=[],
                          discount_codes=[], status=o.status) for i, o in enumerate(w.orders))
    session.flush()
    session.add_all(Enrollment(id=i + 1, journey="j", journey_version_id=1,
                               customer_id=f"c{w.orders[e.order].customer}", order_id=f"o{e.order}",
                               entry_key=str(i), segment=e.segment, holdout=e.holdout, status="done",
                               enrolled_at=day(w.orders[e.order].day) + timedelta(hours=e.delay_hours))
                    for i, e in enumerate(w.enrollments))
    session.flush()
    for i, (enr, template, sent, status, score) in enumerate(w.messages):
        cid = f"c{w.orders[w.enrollments[enr].order].customer}"
        session.add(Message(id=f"m{i}", enrollment_id=enr + 1, step_key=str(i), customer_id=cid, journey="j",
                            template=template, channels=[], status=status, created_at=T0, due_at=T0,
                            sent_at=day(sent) if status == "sent" else None))
        if score is not None and template in KINDS and status == "sent":
            kind = KINDS[template]
            session.add(SurveyResponse(event_id=f"m{i}", customer_id=cid, message_id=f"m{i}", kind=kind,
                                       score=min(score, 7 if kind == "ces" else 5 if kind == "csat" else 10),
                                       responded_at=day(sent + 1)))
    for i, (cid, kind, score, when) in enumerate(w.answers):
        session.add(SurveyResponse(event_id=f"a{i}", customer_id=f"c{cid}", kind=kind, score=score,
                                   responded_at=day(when)))
    for referrer, referred, order, first in w.referrals:
        session.add(Referral(code="x", referrer_id=f"c{referrer}", customer_id=f"c{referred}",
                             order_id=f"o{order}", first_order=first, created_at=T0))
    session.flush()


def expected_members(w: World) -> dict[str, dict[int, int]]:
    """segment (and "all") -> customer -> anchor order index, read straight from the contract:
    the first enrollment per segment, kept when its order is in the period; ``all`` takes the
    earliest of a customer's kept segment anchors."""
    end, start = day(w.end), None if w.start is None else day(w.start)
    firsts: dict[tuple[str, int], tuple[datetime, int, int]] = {}
    for i, e in enumerate(w.enrollments):
        o = w.orders[e.order]
        at = day(o.day) + timedelta(hours=e.delay_hours)
        key = (e.segment, o.customer)
        if at <= end and (key not in firsts or (at, i) < firsts[key][:2]):
            firsts[key] = (at, i, e.order)
    members: dict[str, dict[int, int]] = {}
    overall: dict[int, tuple[datetime, int, int]] = {}
    for (segment, customer), first in firsts.items():
        placed = day(w.orders[first[2]].day)
        if placed <= end and (start is None or placed >= start):
            members.setdefault(segment, {})[customer] = first[2]
            if customer not in overall or first[:2] < overall[customer][:2]:
                overall[customer] = first
    if overall:
        members["all"] = {customer: first[2] for customer, first in overall.items()}
    return members


def expected_repeaters(w: World, members: dict[int, int]) -> int:
    return sum(any(o.customer == c and o.status == "delivered" and w.orders[a].day < o.day <= w.end
                   for o in w.orders) for c, a in members.items())


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def clear(session: Session) -> None:
    for model in (Referral, SurveyResponse, Message, Enrollment, Order, JourneyVersion, Customer):
        session.execute(delete(model))


def check_rate(rate: Rate) -> None:
    assert 0 <= rate.numerator <= rate.denominator
    assert (rate.value is None) == (rate.denominator == 0)
    assert rate.value is None or 0 <= rate.value <= 100


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=worlds())
def test_metric_properties(engine: Engine, w: World) -> None:
    with Session(engine) as session:
        clear(session)
        store(session, w)
        start = None if w.start is None else day(w.start)
        rows = segment_metrics(session, start, day(w.end), KINDS)
        session.rollback()

    assert rows[-1].segment == "all"
    segments = rows[:-1]
    assert [r.segment for r in segments] == sorted(r.segment for r in segments)
    assert all(r.customers > 0 for r in segments)
    everyone = rows[-1].customers
    assert everyone <= sum(r.customers for r in segments)
    assert everyone >= max((r.customers for r in segments), default=0)

    members = expected_members(w)
    assert {r.segment: r.customers for r in rows} == {
        **{s: len(c) for s, c in members.items() if s != "all"}, "all": len(members.get("all", {}))}

    for row in rows:
        m = row.metrics
        for value in m.values():
            if isinstance(value, Rate):
                check_rate(value)
        nps = m["nps"]
        assert isinstance(nps, Nps)
        assert nps.n == nps.promoters + nps.passives + nps.detractors
        assert nps.value is None or -100 <= nps.value <= 100
        retention, churn = m["retention_90d"], m["churn_90d"]
        assert isinstance(retention, Rate) and isinstance(churn, Rate)
        assert churn.denominator == retention.denominator
        assert churn.numerator + retention.numerator == retention.denominator
        if retention.value is not None and churn.value is not None:
            assert abs(retention.value + churn.value - 100) < 0.11
        repeat = m["repeat_purchase_rate"]
        assert isinstance(repeat, Rate)
        assert repeat.denominator == row.customers
        assert repeat.numerator == expected_repeaters(w, members.get(row.segment, {}))
        assert m["median_days_to_second_order"].n == repeat.numerator
        assert m["messages_per_customer"].n == row.customers
        ces = m["ces"]
        assert ces.value is None or 0 <= ces.value <= 10  # the random answers score 0-10
