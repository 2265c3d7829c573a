"""Delivery metrics per segment on a small hand-built world, on SQLite and PostgreSQL.

Orders, shipments and answers are inserted directly, so every expected number below is worked
out by hand. T is Monday 2026-03-02 00:00 UTC; the report runs from T to END (2026-05-01).
Estimates are dates (00:00 UTC) unless noted; a parcel is on time when delivered before 00:00
UTC of the day after its first estimate. "h" = hours from the order's shipped_at to its
delivered_at (whole hours, floor).

    customer  segment: anchor order  parcels (first estimate -> delivered)     order problem
    P1        vip: p1 (T)            S1: T+3 -> T+3 15:30 on time (same day)    -        53.5 -> 53 h
              new: p1b (T+20)        S1b: T+23 -> not delivered (exception)     T+22
    P2        vip: p2 (T)            S2a: T+2 -> T+2 23:00 on time              T+3 (late)  49 h
                                     S2b: T+2 -> T+3 01:00 late
    P3        vip: p3 (T+1)          S3: T+3 18:00 -> T+4 09:00 late            - (never recorded)  45 h
    P4        vip: p4 (T+2)          S4: T+5 -> not delivered (exception)       T+4
    P5        vip: p5 (END-2)        S5: END+1 -> on its way: not judged yet   END+1h (after END)
    N1        new: n1 (T+10)         S6: no estimate -> T+12                    -        24 h
    N2        new: n2 (T+10)         none (order.shipped/delivered told directly) -     72 h
    N3        new: n3 (T+10)         S7: T+14 -> T+13 on time                   -        48 h
    N4        new: n4 (T+10)         S8: T+15 -> T+14 on time (after an attempt) T+12    72 h
    N5        new: n5 (T+15)         none, not shipped                          -

P1 is in ``all`` through p1 (vip, enrolled first); in ``new`` through p1b.
Purchases after the anchors: P1 p1b (T+20), P4 T+40; N4's T+50 order was cancelled.
NPS answers: P1 9 at T+4, 4 at T+25; P2 3 at T+2, 6 at T+5; P4 9 at T+6 changed at T+8, 2 at
T+7; N3 0 at T+12, 10 at T+13 12:00; P3 10 at T+5.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from aftersale.db.models import Customer, Enrollment, JourneyVersion, Order, Shipment, SurveyResponse
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.model import GroupOutcome, Lift, LoyaltyByDelivery, Mean, Nps, Rate, SegmentMetrics
from aftersale.pipeline.runtime import Runtime

T = datetime(2026, 3, 2, tzinfo=UTC)
END = datetime(2026, 5, 1, tzinfo=UTC)
KINDS = {"nps_survey": "nps"}


def d(n: float) -> timedelta:
    return timedelta(days=n)


def h(n: float) -> timedelta:
    return timedelta(hours=n)


class World:
    def __init__(self, session: Session):
        self.session = session
        session.add(JourneyVersion(id=1, journey="j", version="1", definition={}, created_at=T))
        self.ids = 0

    def customer(self, cid: str) -> None:
        self.session.add(Customer(id=cid, created_at=T - d(400), updated_at=T - d(400)))
        self.session.flush()

    def order(self, oid: str, cid: str, at: datetime, segment: str | None = None,
              status: str = "placed", **extra: Any) -> None:
        self.session.add(Order(id=oid, customer_id=cid, placed_at=at, total=10, items=[],
                               discount_codes=[], status=status, **extra))
        self.session.flush()
        if segment is not None:
            self.ids += 1
            self.session.add(Enrollment(id=self.ids, journey="j", journey_version_id=1,
                                        customer_id=cid, order_id=oid, entry_key=oid,
                                        segment=segment, status="done", enrolled_at=at))

    def parcel(self, sid: str, oid: str, shipped: datetime, estimate: datetime | None,
               delivered: datetime | None, status: str = "delivered") -> None:
        last = delivered or shipped
        self.session.add(Shipment(id=sid, order_id=oid, status=status, status_at=last,
                                  last_update_at=last, first_estimated_delivery_at=estimate,
                                  estimated_delivery_at=estimate, shipped_at=shipped,
                                  delivered_at=delivered, created_at=shipped, updated_at=last))

    def answer(self, cid: str, score: int, at: datetime, updated_at: datetime | None = None) -> None:
        self.ids += 1
        self.session.add(SurveyResponse(event_id=f"ev{self.ids}", customer_id=cid, kind="nps",
                                        score=score, responded_at=at, updated_at=updated_at))


def build(w: World) -> None:
    for cid in ("P1", "P2", "P3", "P4", "P5", "N1", "N2", "N3", "N4", "N5"):
        w.customer(cid)
    w.order("p1", "P1", T, "vip", shipped_at=T + d(1) + h(10), delivered_at=T + d(3) + h(15.5))
    w.parcel("S1", "p1", T + d(1) + h(10), T + d(3), T + d(3) + h(15.5))
    w.order("p1b", "P1", T + d(20), "new", shipped_at=T + d(21), delivery_problem_at=T + d(22))
    w.parcel("S1b", "p1b", T + d(21), T + d(23), None, status="exception")

    w.order("p2", "P2", T, "vip", shipped_at=T + d(1), delivered_at=T + d(3) + h(1),
            delivery_problem_at=T + d(3))
    w.parcel("S2a", "p2", T + d(1), T + d(2), T + d(2) + h(23))
    w.parcel("S2b", "p2", T + d(1), T + d(2), T + d(3) + h(1))

    w.order("p3", "P3", T + d(1), "vip", shipped_at=T + d(2) + h(12), delivered_at=T + d(4) + h(9))
    w.parcel("S3", "p3", T + d(2) + h(12), T + d(3) + h(18), T + d(4) + h(9))
    w.order("p3b", "P3", T + d(30))

    w.order("p4", "P4", T + d(2), "vip", shipped_at=T + d(3), delivery_problem_at=T + d(4))
    w.parcel("S4", "p4", T + d(3), T + d(5), None, status="exception")
    w.order("p4b", "P4", T + d(40))

    w.order("p5", "P5", END - d(2), "vip", shipped_at=END - d(1), delivery_problem_at=END + h(1))
    w.parcel("S5", "p5", END - d(1), END + d(1), None, status="in_transit")

    w.order("n1", "N1", T + d(10), "new", shipped_at=T + d(11), delivered_at=T + d(12))
    w.parcel("S6", "n1", T + d(11), None, T + d(12))
    w.order("n2", "N2", T + d(10), "new", shipped_at=T + d(10), delivered_at=T + d(13))
    w.order("n3", "N3", T + d(10), "new", shipped_at=T + d(11), delivered_at=T + d(13))
    w.parcel("S7", "n3", T + d(11), T + d(14), T + d(13))
    w.order("n4", "N4", T + d(10), "new", shipped_at=T + d(11), delivered_at=T + d(14),
            delivery_problem_at=T + d(12))
    w.parcel("S8", "n4", T + d(11), T + d(15), T + d(14))
    w.order("n4b", "N4", T + d(50), status="cancelled", cancelled_at=T + d(51))
    w.order("n5", "N5", T + d(15), "new")

    w.answer("P1", 9, T + d(4))
    w.answer("P1", 4, T + d(25))
    w.answer("P2", 3, T + d(2))  # before P2's problem: not about it
    w.answer("P2", 6, T + d(5))
    w.answer("P4", 9, T + d(6), updated_at=T + d(8))  # changed last: the latest
    w.answer("P4", 2, T + d(7))
    w.answer("N3", 0, T + d(12))  # before N3's parcel arrived
    w.answer("N3", 10, T + d(13) + h(12))
    w.answer("P3", 10, T + d(5))  # P3 is in neither group


@pytest.fixture
def session(rt: Runtime) -> Iterator[Session]:
    with rt.factory() as s:
        with s.begin():
            build(World(s))
        yield s


def metrics(session: Session, end: datetime = END) -> dict[str, dict[str, Any]]:
    rows: list[SegmentMetrics] = segment_metrics(session, T, end, KINDS)
    return {r.segment: r.metrics for r in rows}


def loyalty(m: dict[str, Any]) -> LoyaltyByDelivery:
    value = m["loyalty_by_delivery"]
    assert isinstance(value, LoyaltyByDelivery)
    return value


def test_on_time_delivery_rate_counts_parcels_judged_by_the_end_of_their_first_estimated_day(
        session: Session) -> None:
    m = metrics(session)
    # vip: S1, S2a on time; S2b (01:00 the next day), S3 (estimate 18:00, delivered 09:00 the
    # next day) late; S4 estimate passed undelivered; S5 still before its day: not judged -> 2/5
    assert m["vip"]["on_time_delivery_rate"] == Rate.of(2, 5)
    assert m["vip"]["on_time_delivery_rate"].value == 40.0
    # new: S1b passed undelivered, S7 and S8 on time; S6 had no estimate -> 2/3
    assert m["new"]["on_time_delivery_rate"] == Rate.of(2, 3)
    # all: P1 through p1 (S1), so vip's five judged plus S7, S8 -> (2 + 2)/7
    assert m["all"]["on_time_delivery_rate"] == Rate.of(4, 7)
    assert m["all"]["on_time_delivery_rate"].value == 57.1


def test_delivery_problem_rate_is_over_shipped_anchor_orders(session: Session) -> None:
    m = metrics(session)
    # vip: p1..p5 shipped; p2, p4 had a problem (p5's came after END) -> 2/5
    assert m["vip"]["delivery_problem_rate"] == Rate.of(2, 5)
    # new: p1b, n1, n2, n3, n4 shipped (n5 not); p1b, n4 -> 2/5
    assert m["new"]["delivery_problem_rate"] == Rate.of(2, 5)
    # all: p1..p5, n1..n4 shipped (p1b is not P1's anchor in all); p2, p4, n4 -> 3/9
    assert m["all"]["delivery_problem_rate"] == Rate.of(3, 9)
    assert m["all"]["delivery_problem_rate"].value == 33.3


def test_median_days_to_deliver_in_whole_hours(session: Session) -> None:
    m = metrics(session)
    # vip: 45, 49, 53 h -> 49 h = 2.0417 days
    assert m["vip"]["median_days_to_deliver"] == Mean(value=2.04, n=3)
    # new: n1 24, n2 72 (no shipment rows), n3 48, n4 72 -> (48 + 72) / 2 = 60 h = 2.5 days
    assert m["new"]["median_days_to_deliver"] == Mean(value=2.5, n=4)
    # all: 24, 45, 48, 49, 53, 72, 72 -> 49 h
    assert m["all"]["median_days_to_deliver"] == Mean(value=2.04, n=7)


def test_loyalty_by_delivery_vip(session: Session) -> None:
    lo = loyalty(metrics(session)["vip"])
    # on time: P1 only (P3 was late with no problem recorded, P5 is on its way: neither).
    # P1's latest answer since S1 arrived is the 4 at T+25: a detractor; bought p1b again.
    assert lo.on_time == GroupOutcome(customers=1, repeat_purchase_rate=Rate.of(1, 1),
                                      nps=Nps.of(0, 0, 1))
    # problem: P2 (6 at T+5: detractor; the 3 came before the problem) and P4 (the 9 changed
    # at T+8 is later than the 2 at T+7: promoter); P4 bought again -> 1/2, NPS 0
    assert lo.problem == GroupOutcome(customers=2, repeat_purchase_rate=Rate.of(1, 2),
                                      nps=Nps.of(1, 0, 1))
    # NPS: 0 - (-100) = +100; Var(problem) = (.5 + .5 - 0²)/2 = .5, Var(on time) =
    # (0 + 1 - 1²)/1 = 0; 1.96 x sqrt(.5) = 1.386 -> -38.6 to 238.6, clamped to 200
    assert lo.difference.nps == Lift(difference=100.0, ci_low=-38.6, ci_high=200.0)
    # repeat: 1/2 - 1/1 = -50 pp. Wilson 1/2 = (.0945, .9055), 1/1 = (.2065, 1):
    # low = -.5 - sqrt(.4055² + 0²) = -.9055; high = -.5 + sqrt(.4055² + .7935²) = .3911
    assert lo.difference.repeat_purchase_rate == Lift(difference=-50.0, ci_low=-90.5, ci_high=39.1)


def test_loyalty_by_delivery_new_follows_the_segment_anchor(session: Session) -> None:
    lo = loyalty(metrics(session)["new"])
    # on time: N3 (the 10 after delivery; the 0 came before). N1's parcel had no estimate, N2
    # no parcel, N5 was never shipped: neither.
    assert lo.on_time == GroupOutcome(customers=1, repeat_purchase_rate=Rate.of(0, 1),
                                      nps=Nps.of(1, 0, 0))
    # problem: N4 (a problem though the parcel came on time; no answer; its next order was
    # cancelled) and P1 through p1b (the 4 at T+25, after the problem at T+22; no order after)
    assert lo.problem == GroupOutcome(customers=2, repeat_purchase_rate=Rate.of(0, 2),
                                      nps=Nps.of(0, 0, 1))
    # NPS: -100 - 100 = -200, both variances 0 -> a point at -200
    assert lo.difference.nps == Lift(difference=-200.0, ci_low=-200.0, ci_high=-200.0)
    # repeat: 0/2 - 0/1 = 0. Wilson 0/2 = (0, .6576), 0/1 = (0, .7935):
    # low = 0 - sqrt(0² + .7935²) = -.7935; high = 0 + sqrt(.6576² + 0²) = .6576
    assert lo.difference.repeat_purchase_rate == Lift(difference=0.0, ci_low=-79.3, ci_high=65.8)


def test_loyalty_by_delivery_all(session: Session) -> None:
    lo = loyalty(metrics(session)["all"])
    # on time: P1 (through p1: detractor, bought again), N3 (promoter) -> 1/2, NPS 0
    assert lo.on_time == GroupOutcome(customers=2, repeat_purchase_rate=Rate.of(1, 2),
                                      nps=Nps.of(1, 0, 1))
    # problem: P2 (detractor), P4 (promoter, bought again), N4 (no answer) -> 1/3, NPS 0 (n=2)
    assert lo.problem == GroupOutcome(customers=3, repeat_purchase_rate=Rate.of(1, 3),
                                      nps=Nps.of(1, 0, 1))
    # NPS: 0 - 0; each variance (.5 + .5 - 0)/2 = .5, se = 1 -> +-196
    assert lo.difference.nps == Lift(difference=0.0, ci_low=-196.0, ci_high=196.0)
    # repeat: 1/3 - 1/2 = -16.7 pp. Wilson 1/3 = (.0615, .7923), 1/2 = (.0945, .9055):
    # low = -.1667 - sqrt(.2718² + .4055²) = -.6548; high = -.1667 + sqrt(.4590² + .4055²) = .4458
    assert lo.difference.repeat_purchase_rate == Lift(difference=-16.7, ci_low=-65.5, ci_high=44.6)


def test_an_earlier_report_time_judges_only_what_was_known_then(session: Session) -> None:
    end = T + d(3) + h(12)
    vip = metrics(session, end)["vip"]
    # Anchors P1..P4. S2a on time and S2b late (both delivered by then); S1 (delivered 15:30),
    # S3 and S4 are still before the end of their day: not judged -> 1/2
    assert vip["on_time_delivery_rate"] == Rate.of(1, 2)
    # p1..p4 shipped; only p2's problem (T+3 00:00) is known; p4's comes at T+4 -> 1/4
    assert vip["delivery_problem_rate"] == Rate.of(1, 4)
    assert vip["median_days_to_deliver"] == Mean(value=2.04, n=1)  # p2: 49 h
    lo = loyalty(vip)
    # P2 alone has a group (problem), and has not answered since; no one is on time yet
    assert lo.problem == GroupOutcome(customers=1, repeat_purchase_rate=Rate.of(0, 1),
                                      nps=Nps.of(0, 0, 0))
    assert lo.on_time.customers == 0
    assert lo.difference.nps == Lift(difference=None, ci_low=None, ci_high=None)
    assert lo.difference.repeat_purchase_rate == Lift(difference=None, ci_low=None, ci_high=None)


def test_a_segment_without_parcels_has_empty_delivery_figures(rt: Runtime) -> None:
    with rt.factory() as s:
        with s.begin():
            w = World(s)
            w.customer("Z")
            w.order("z1", "Z", T, "quiet")
        m = metrics(s)["quiet"]
    assert m["on_time_delivery_rate"] == Rate.of(0, 0)
    assert m["on_time_delivery_rate"].value is None
    assert m["delivery_problem_rate"] == Rate.of(0, 0)
    assert m["median_days_to_deliver"] == Mean(value=None, n=0)
    lo = loyalty(m)
    assert (lo.on_time.customers, lo.problem.customers) == (0, 0)
    assert lo.difference.nps.difference is None
