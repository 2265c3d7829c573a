"""Per-segment metrics on a small hand-built world, on SQLite and PostgreSQL.

The rows are inserted directly so every expected number below can be worked out by hand.
T is 2026-01-01; the report runs from T to END (2026-06-01), unless a test says otherwise.

    customer  segments (anchor)                orders after the anchor (days)
    A         vip (T), repeat (T+10)           T+10, T+50 -> vip 10 d, repeat 40 d, all 10 d
    B         vip (T+5, holdout)               T+20 cancelled, END+9 (after END) -> none
    C         repeat (END-45)                  END-20 -> 25 d
    D         vip (T+30, anchor cancelled)     T+40 refunded, T+130 -> 100 d
    G         new (END-10)                     none
    E         repeat (T-10: before the start)  none
    F         dormant (END+1: after the end)   -
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from aftersale.db.models import (
    Customer,
    Enrollment,
    JourneyVersion,
    Message,
    Order,
    Referral,
    SurveyResponse,
)
from aftersale.metrics.by_segment import segment_metrics
from aftersale.metrics.model import Mean, Nps, Rate, SegmentMetrics
from aftersale.pipeline.runtime import Runtime

T = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 6, 1, tzinfo=UTC)
KINDS = {"nps_survey": "nps", "csat_checkin": "csat", "ces_checkin": "ces"}


def d(n: float) -> timedelta:
    return timedelta(days=n)


class World:
    def __init__(self, session: Session):
        self.session = session
        self.session.add(JourneyVersion(id=1, journey="j", version="1", definition={}, created_at=T))
        self._ids = 0

    def customer(self, cid: str) -> None:
        self.session.add(Customer(id=cid, created_at=T - d(400), updated_at=T - d(400)))

    def order(self, oid: str, cid: str, at: datetime, status: str = "delivered", **extra: Any) -> None:
        self.session.add(Order(id=oid, customer_id=cid, placed_at=at, total=10, items=[],
                               discount_codes=[], status=status, **extra))

    def enroll(self, eid: int, cid: str, oid: str, segment: str, at: datetime,
               holdout: bool = False) -> None:
        self.session.add(Enrollment(id=eid, journey=f"j{eid}", journey_version_id=1, customer_id=cid,
                                    order_id=oid, entry_key=oid, segment=segment, holdout=holdout,
                                    status="done", enrolled_at=at))

    def message(self, mid: str, eid: int, cid: str, template: str, sent_at: datetime | None,
                status: str = "sent") -> None:
        self.session.add(Message(id=mid, enrollment_id=eid, step_key=mid, customer_id=cid, journey="j",
                                 template=template, channels=["email"], channel="email", status=status,
                                 created_at=T - d(30), due_at=T - d(30), sent_at=sent_at))

    def answer(self, cid: str, kind: str, score: int, at: datetime, message: str | None = None,
               updated_at: datetime | None = None) -> None:
        self._ids += 1
        self.session.add(SurveyResponse(event_id=f"ev{self._ids}", customer_id=cid, message_id=message,
                                        kind=kind, score=score, responded_at=at, updated_at=updated_at))

    def referral(self, referrer: str, cid: str, oid: str, first_order: bool) -> None:
        self.session.add(Referral(code=f"code-{referrer}", referrer_id=referrer, customer_id=cid,
                                  order_id=oid, first_order=first_order, created_at=T))


def build(w: World) -> None:
    for cid in ("A", "B", "C", "D", "E", "F", "G", "R1", "R2", "R3"):
        w.customer(cid)
    w.session.flush()
    # A: vip first, then repeat; a second vip enrollment later does not move the vip anchor.
    w.order("a1", "A", T)
    w.order("a2", "A", T + d(10))
    w.order("a3", "A", T + d(50))
    # B: a cancelled repeat order and one after END: no repeat purchase.
    w.order("b1", "B", T + d(5))
    w.order("b2", "B", T + d(20), status="cancelled", cancelled_at=T + d(21))
    w.order("b3", "B", END + d(9))
    w.order("c1", "C", END - d(45))
    w.order("c2", "C", END - d(20))
    # D: the anchor order itself was cancelled; a refund stamp (status never updated) also counts.
    w.order("d1", "D", T + d(30), status="cancelled", cancelled_at=T + d(31))
    w.order("d2", "D", T + d(40), refunded_at=T + d(45))
    w.order("d3", "D", T + d(130))
    w.order("e1", "E", T - d(10))
    w.order("f1", "F", END + d(1))
    w.order("g1", "G", END - d(10))
    w.order("r1", "R1", T + d(60))
    w.order("r2", "R2", T + d(60), status="cancelled", cancelled_at=T + d(61))
    w.order("r3", "R3", END + d(3))
    w.session.flush()

    w.enroll(1, "A", "a1", "vip", T)
    w.enroll(2, "A", "a2", "repeat", T + d(10))
    w.enroll(3, "A", "a3", "vip", T + d(50))
    w.enroll(4, "B", "b1", "vip", T + d(5), holdout=True)
    w.enroll(5, "C", "c1", "repeat", END - d(45))
    w.enroll(6, "D", "d1", "vip", T + d(30))
    w.enroll(7, "E", "e1", "repeat", T - d(10))
    w.enroll(8, "F", "f1", "dormant", END + d(1))
    w.enroll(9, "G", "g1", "new", END - d(10))
    w.session.flush()

    w.message("m1", 1, "A", "shipped", T + d(1))
    w.message("m2", 1, "A", "nps_survey", T + d(1))
    w.message("m3", 1, "A", "csat_checkin", T + d(2))
    w.message("m4", 2, "A", "nps_survey", T + d(11))
    w.message("m5", 2, "A", "csat_checkin", T + d(14))
    w.message("m6", 2, "A", "ces_checkin", T + d(14))
    w.message("m7", 2, "A", "shipped", None, status="failed")
    w.message("m8", 2, "A", "shipped", END + d(1))
    w.message("m9", 5, "C", "nps_survey", END - d(40))
    w.message("m10", 5, "C", "csat_checkin", END - d(11))
    w.message("m11", 6, "D", "ces_checkin", T + d(31))
    w.message("m12", 6, "D", "nps_survey", T + d(32))
    w.message("m13", 6, "D", "shipped", None, status="pending")
    w.message("m14", 7, "E", "nps_survey", T - d(9))
    w.session.flush()

    # A's first NPS answer was changed at T+20: it is the latest for vip and all; the repeat
    # anchor (T+10) is after it was given, so there the T+12 answer counts.
    w.answer("A", "nps", 10, T + d(1), "m2", updated_at=T + d(20))
    w.answer("A", "nps", 3, T + d(12), "m4")
    w.answer("A", "csat", 5, T + d(2), "m3")
    w.answer("A", "csat", 2, T + d(15), "m5")
    w.answer("B", "nps", 8, T + d(6))
    w.answer("B", "nps", 0, END + d(1))  # after END
    w.answer("B", "ces", 6, T + d(7))
    w.answer("C", "nps", 0, END - d(50))  # before C's anchor
    w.answer("C", "nps", 9, END + d(2), "m9")  # after END: m9 is not answered either
    w.answer("C", "csat", 4, END - d(10), "m10")
    w.answer("C", "csat", 1, END + d(1))
    w.answer("D", "ces", 3, T + d(31) + timedelta(hours=1), "m11")
    w.answer("D", "ces", 2, T + d(29))  # before D's anchor

    w.referral("A", "R1", "r1", first_order=True)
    w.referral("B", "C", "c2", first_order=False)  # an existing customer
    w.referral("D", "R2", "r2", first_order=True)  # the referred order was cancelled
    w.referral("C", "R3", "r3", first_order=True)  # after END


@pytest.fixture
def session(rt: Runtime) -> Iterator[Session]:
    with rt.factory() as s:
        with s.begin():
            build(World(s))
        yield s


def by_name(rows: list[SegmentMetrics]) -> dict[str, SegmentMetrics]:
    return {r.segment: r for r in rows}


def rate(numerator: int, denominator: int) -> Rate:
    return Rate.of(numerator, denominator)


def test_rows_are_the_segments_with_customers_then_all(session: Session) -> None:
    rows = segment_metrics(session, T, END, KINDS)
    assert [r.segment for r in rows] == ["new", "repeat", "vip", "all"]
    assert [r.customers for r in rows] == [1, 2, 3, 5]  # A counted in vip, repeat and once in all


def test_vip(session: Session) -> None:
    m = by_name(segment_metrics(session, T, END, KINDS))["vip"].metrics
    assert m["nps"] == Nps.of(promoters=1, passives=1, detractors=0)  # A 10 (changed last), B 8
    assert m["nps"].value == 50.0
    assert m["csat"] == rate(1, 2)
    assert m["ces"] == Mean(value=4.5, n=2)
    assert m["response_rate_nps"] == rate(1, 2)
    assert m["response_rate_csat"] == rate(1, 1)
    assert m["response_rate_ces"] == rate(1, 1)
    assert m["repeat_purchase_rate"] == rate(2, 3)
    assert m["retention_30d"] == rate(1, 3)
    assert m["retention_60d"] == rate(1, 3)
    assert m["retention_90d"] == rate(1, 3)
    assert m["churn_90d"] == rate(2, 3)
    assert m["referral_rate"] == rate(1, 3)
    assert m["median_days_to_second_order"] == Mean(value=55.0, n=2)
    assert m["messages_per_customer"] == Mean(value=1.67, n=3)


def test_repeat(session: Session) -> None:
    m = by_name(segment_metrics(session, T, END, KINDS))["repeat"].metrics
    assert m["nps"] == Nps.of(promoters=0, passives=0, detractors=1)
    assert m["nps"].value == -100.0
    assert m["csat"] == rate(1, 2)
    assert m["ces"] == Mean(value=None, n=0)
    assert m["response_rate_nps"] == rate(1, 2)
    assert m["response_rate_csat"] == rate(2, 2)
    assert m["response_rate_ces"] == rate(0, 1)
    assert m["response_rate_ces"].value == 0.0
    assert m["repeat_purchase_rate"] == rate(2, 2)
    assert m["retention_30d"] == rate(1, 2)  # A came back after 40 days, C after 25
    assert m["retention_60d"] == rate(1, 1)  # C's anchor is only 45 days old: immature
    assert m["retention_90d"] == rate(1, 1)
    assert m["churn_90d"] == rate(0, 1)
    assert m["referral_rate"] == rate(1, 2)
    assert m["median_days_to_second_order"] == Mean(value=32.5, n=2)
    assert m["messages_per_customer"] == Mean(value=2.5, n=2)


def test_new_has_zero_denominators(session: Session) -> None:
    m = by_name(segment_metrics(session, T, END, KINDS))["new"].metrics
    assert m["nps"] == Nps(value=None, n=0, promoters=0, passives=0, detractors=0)
    assert m["csat"] == Rate(value=None, numerator=0, denominator=0)
    for key in ("response_rate_nps", "response_rate_csat", "response_rate_ces",
                "retention_30d", "retention_60d", "retention_90d", "churn_90d"):
        assert m[key].value is None, key
    assert m["repeat_purchase_rate"] == rate(0, 1)
    assert m["median_days_to_second_order"] == Mean(value=None, n=0)
    assert m["messages_per_customer"] == Mean(value=0.0, n=1)


def test_all(session: Session) -> None:
    m = by_name(segment_metrics(session, T, END, KINDS))["all"].metrics
    assert m["nps"] == Nps.of(promoters=1, passives=1, detractors=0)
    assert m["csat"] == rate(2, 3)
    assert m["ces"] == Mean(value=4.5, n=2)
    assert m["response_rate_nps"] == rate(2, 4)
    assert m["response_rate_csat"] == rate(3, 3)
    assert m["response_rate_ces"] == rate(1, 2)
    assert m["repeat_purchase_rate"] == rate(3, 5)
    assert m["retention_30d"] == rate(2, 4)  # G's anchor is 10 days old
    assert m["retention_60d"] == rate(1, 3)
    assert m["retention_90d"] == rate(1, 3)
    assert m["churn_90d"] == rate(2, 3)
    assert m["referral_rate"] == rate(1, 5)
    assert m["median_days_to_second_order"] == Mean(value=25.0, n=3)
    assert m["messages_per_customer"] == Mean(value=2.0, n=5)


def test_without_start_the_earlier_anchor_counts(session: Session) -> None:
    rows = by_name(segment_metrics(session, None, END, KINDS))
    assert rows["repeat"].customers == 3 and rows["all"].customers == 6
    assert rows["repeat"].metrics["repeat_purchase_rate"] == rate(2, 3)
    assert rows["repeat"].metrics["response_rate_nps"] == rate(1, 3)  # E's survey, unanswered


def test_an_earlier_end_forgets_what_came_later(session: Session) -> None:
    # At T+15 only A, B (vip) and A (repeat) exist; A's T+50 order, D and the rest lie ahead.
    rows = by_name(segment_metrics(session, T, T + d(15), KINDS))
    assert [name for name in rows] == ["repeat", "vip", "all"]
    vip = rows["vip"].metrics
    assert rows["vip"].customers == 2
    assert vip["repeat_purchase_rate"] == rate(1, 2)
    assert vip["retention_30d"] == rate(0, 0)  # nobody is 30 days old yet
    assert vip["nps"] == Nps.of(promoters=1, passives=1, detractors=0)
    assert rows["repeat"].metrics["repeat_purchase_rate"] == rate(0, 1)
    # A's T+15 answer came exactly at the report time: it counts (END is inclusive).
    assert rows["repeat"].metrics["csat"] == rate(0, 1)
    assert rows["repeat"].metrics["response_rate_csat"] == rate(1, 1)


def test_segments_filter_keeps_all_whole(session: Session) -> None:
    rows = segment_metrics(session, T, END, KINDS, segments=["vip"])
    assert [r.segment for r in rows] == ["vip", "all"]
    assert rows[1] == by_name(segment_metrics(session, T, END, KINDS))["all"]


def test_unknown_survey_templates_are_plain_messages(session: Session) -> None:
    m = by_name(segment_metrics(session, T, END, {}))["all"].metrics
    assert m["response_rate_nps"] == rate(0, 0)
    assert m["messages_per_customer"] == Mean(value=2.0, n=5)
    assert m["nps"] == Nps.of(promoters=1, passives=1, detractors=0)  # answers still count
