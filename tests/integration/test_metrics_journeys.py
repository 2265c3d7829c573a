"""Holdout lift, message funnel and cohort retention on both databases, from rows written
directly, against numbers worked out by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from aftersale.db.models import (
    Customer,
    DeliveryEvent,
    Enrollment,
    JourneyVersion,
    Message,
    Order,
    SurveyResponse,
)
from aftersale.metrics.cohorts import cohorts
from aftersale.metrics.compute import compute
from aftersale.metrics.journeys import funnel, journey_lifts
from aftersale.metrics.model import FunnelStep, Lift, Nps, Rate
from aftersale.pipeline.runtime import Runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 7, 1, tzinfo=UTC)
_ids = itertools.count(1)


def at(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


class Shop:
    """Writes rows the way the engine would have left them; only what the metrics read."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.versions: dict[str, int] = {}
        self.customers: set[str] = set()

    def order(self, cid: str, oid: str, placed: datetime, status: str = "placed",
              cancelled: datetime | None = None) -> str:
        if cid not in self.customers:
            self.session.add(Customer(id=cid, created_at=placed, updated_at=placed))
            self.customers.add(cid)
            self.session.flush()
        self.session.add(Order(id=oid, customer_id=cid, placed_at=placed, total=Decimal("10.00"),
                               items=[], discount_codes=[], status=status, cancelled_at=cancelled))
        self.session.flush()
        return oid

    def enroll(self, journey: str, cid: str, oid: str | None, when: datetime,
               holdout: bool = False, segment: str = "first_time") -> Enrollment:
        if journey not in self.versions:
            version = JourneyVersion(journey=journey, version="v1", definition={}, created_at=when)
            self.session.add(version)
            self.session.flush()
            self.versions[journey] = version.id
        if cid not in self.customers:
            self.session.add(Customer(id=cid, created_at=when, updated_at=when))
            self.customers.add(cid)
        enrollment = Enrollment(journey=journey, journey_version_id=self.versions[journey],
                                customer_id=cid, order_id=oid, entry_key=oid or f"e-{next(_ids)}",
                                segment=segment, holdout=holdout, status="completed",
                                enrolled_at=when)
        self.session.add(enrollment)
        self.session.flush()
        return enrollment

    def bought(self, journey: str, cid: str, placed: datetime, holdout: bool = False) -> Enrollment:
        """A customer's order that enrolled them in ``journey``."""
        oid = self.order(cid, f"o-{next(_ids)}", placed)
        return self.enroll(journey, cid, oid, placed, holdout)

    def answer(self, cid: str, score: int, when: datetime, kind: str = "nps") -> None:
        self.session.add(SurveyResponse(event_id=f"ev-{next(_ids)}", customer_id=cid, kind=kind,
                                        score=score, responded_at=when))

    def message(self, enrollment: Enrollment, step: str, template: str, channel: str,
                sent: datetime | None, *events: tuple[str, datetime], status: str = "sent") -> str:
        """``sent``: the last send attempt; the sending time too when the status is 'sent'."""
        mid = f"m-{next(_ids)}"
        self.session.add(Message(id=mid, enrollment_id=enrollment.id, step_key=step,
                                 customer_id=enrollment.customer_id, journey=enrollment.journey,
                                 template=template, channels=[channel], channel=channel,
                                 status=status, created_at=sent or at(3, 1), due_at=sent or at(3, 1),
                                 sending_at=sent, sent_at=sent if status == "sent" else None))
        self.session.flush()
        for kind, when in events:
            self.session.add(DeliveryEvent(provider="test", provider_event_id=f"pe-{next(_ids)}",
                                           message_id=mid, kind=kind, occurred_at=when,
                                           received_at=when, raw={}))
        self.session.flush()
        return mid


# --- holdout lift ------------------------------------------------------------------------------


def _lift_data(shop: Shop) -> None:
    # onboarding, treated: 40 customers with an anchor order in the period, 20 of whom bought
    # again. t20 bought again but cancelled; t21 bought again only after END: neither counts.
    for i in range(40):
        shop.bought("onboarding", f"t{i:02}", at(2, 1) + timedelta(hours=i))
        if i < 20:
            shop.order(f"t{i:02}", f"t{i:02}-again", at(3, 15))
    shop.order("t20", "t20-again", at(3, 15), status="cancelled", cancelled=at(3, 16))
    shop.order("t21", "t21-again", END + timedelta(days=1))
    # ... and one treated customer whose enrollment no order started: a customer of the group,
    # but not in the repeat-purchase rate, which needs an anchor order.
    shop.enroll("onboarding", "t-no-order", None, at(2, 5))
    # onboarding, holdout: 39 customers, 7 bought again, plus x-switch (below): 40 and 8.
    for i in range(39):
        shop.bought("onboarding", f"h{i:02}", at(2, 2) + timedelta(hours=i), holdout=True)
        if i < 7:
            shop.order(f"h{i:02}", f"h{i:02}-again", at(4, 1))
    # Entered first in the holdout, then again as treated: stays in the holdout, and the second
    # order is their repeat purchase.
    shop.bought("onboarding", "x-switch", at(2, 10), holdout=True)
    shop.bought("onboarding", "x-switch", at(3, 10), holdout=False)
    # Anchored before the period: not counted at all, although they bought again in it.
    shop.bought("onboarding", "x-early", at(1, 1) - timedelta(days=31))
    shop.order("x-early", "x-early-again", at(2, 1))
    # NPS, treated: t00 changed their mind (2, then 9: the latest counts), t01 a passive, t02 a
    # detractor; t03 answered before enrolling and t04 after END: neither counts. 1/1/1: NPS 0.
    shop.answer("t00", 2, at(3, 1))
    shop.answer("t00", 9, at(4, 1))
    shop.answer("t01", 8, at(3, 1))
    shop.answer("t02", 3, at(3, 1))
    shop.answer("t03", 10, at(1, 15))
    shop.answer("t04", 10, END + timedelta(hours=1))

    # winback: too small to judge; both groups were asked.
    for cid in ("w0", "w1", "w2"):
        shop.bought("winback", cid, at(3, 1))
    for cid in ("w3", "w4"):
        shop.bought("winback", cid, at(3, 2), holdout=True)
    shop.order("w0", "w0-again", at(3, 20))
    shop.answer("w0", 10, at(3, 5))
    shop.answer("w1", 6, at(3, 5))
    shop.answer("w3", 9, at(3, 5))
    shop.answer("w4", 7, at(3, 5))


def test_journey_lift_compares_treated_and_holdout_by_their_first_enrollment(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        _lift_data(Shop(session))
    with rt.factory() as session:
        onboarding, winback = journey_lifts(session, START, END)

    assert onboarding.journey == "onboarding"
    assert onboarding.treated.customers == 41
    assert onboarding.treated.repeat_purchase_rate == Rate.of(20, 40)
    assert onboarding.treated.repeat_purchase_rate.value == 50.0
    assert onboarding.treated.nps == Nps(value=0.0, n=3, promoters=1, passives=1, detractors=1)
    assert onboarding.holdout.customers == 40
    assert onboarding.holdout.repeat_purchase_rate == Rate.of(8, 40)
    assert onboarding.holdout.nps.n == 0
    assert onboarding.holdout.nps.value is None
    # 50% - 20% = 30 points. Newcombe by hand: Wilson 20/40 = (0.35199, 0.64801), 8/40 =
    # (0.10500, 0.34758); low = 0.3 - sqrt(0.14801² + 0.14758²) = 0.09098, high = 0.3 +
    # sqrt(0.14801² + 0.09500²) = 0.47587.
    assert onboarding.repeat_purchase_lift == Lift(difference=30.0, ci_low=9.1, ci_high=47.6)
    assert onboarding.nps_lift is None  # the holdout was never asked
    assert onboarding.verdict == "lifts repeat purchase by 30.0 points (95% CI +9.1 to +47.6)"

    assert winback.journey == "winback"
    assert (winback.treated.customers, winback.holdout.customers) == (3, 2)
    assert winback.treated.repeat_purchase_rate == Rate(value=33.3, numerator=1, denominator=3)
    assert winback.holdout.repeat_purchase_rate == Rate(value=0.0, numerator=0, denominator=2)
    assert winback.verdict == "not enough data yet (3 treated, 2 holdout; need at least 30 in each)"
    # NPS 0 (1 promoter, 1 detractor of 2) vs 50 (1 promoter, 1 passive of 2): -50 points.
    # Var = (0.5 + 0.5 - 0²) / 2 = 0.5 and (0.5 + 0 - 0.5²) / 2 = 0.125; se = sqrt(0.625) =
    # 0.79057; -50 ± 154.95 -> -204.95 (clamped to -200) to +104.95.
    assert winback.nps_lift == Lift(difference=-50.0, ci_low=-200.0, ci_high=105.0)


def test_journey_lift_period_and_report_time(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        _lift_data(Shop(session))
    with rt.factory() as session:
        # Without a start, x-early is in (and bought again): treated 42 customers, 21/41.
        onboarding = journey_lifts(session, None, END)[0]
        assert onboarding.treated.customers == 42
        assert onboarding.treated.repeat_purchase_rate == Rate.of(21, 41)
        # As of 1 March nobody has bought again yet, and winback had not started.
        early = journey_lifts(session, START, at(3, 1, 0))
        assert [j.journey for j in early] == ["onboarding"]
        assert early[0].treated.repeat_purchase_rate == Rate.of(0, 40)
        assert early[0].holdout.repeat_purchase_rate == Rate.of(0, 40)
        assert early[0].verdict == "no detectable effect on repeat purchase (-8.8 to +8.8 points)"


def test_journey_lift_of_an_empty_database_is_empty(rt: Runtime) -> None:
    with rt.factory() as session:
        assert journey_lifts(session, START, END) == []
        assert funnel(session, START, END) == []
        assert cohorts(session, START, END) == []


# --- funnel ------------------------------------------------------------------------------------


def test_funnel_counts_each_message_once_per_stage_it_reached(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        shop = Shop(session)
        e = [shop.bought("onboarding", f"f{i:02}", at(2, 1)) for i in range(12)]
        sent = at(2, 1, 13)
        soon = sent + timedelta(minutes=5)
        email = ("welcome", "welcome", "email")
        shop.message(e[0], *email, sent, ("delivered", soon), ("opened", soon), ("clicked", soon))
        # A click with no delivered or opened report: it was delivered and opened.
        shop.message(e[1], *email, sent, ("processed", soon), ("clicked", soon))
        shop.message(e[2], *email, sent, ("processed", soon), ("bounced", soon))
        # A spam report: delivered, and counted as an unsubscribe (not as an open).
        shop.message(e[3], *email, sent, ("delivered", soon), ("spam_report", soon))
        shop.message(e[4], *email, sent, status="failed")  # the send itself failed
        shop.message(e[5], *email, sent, ("dropped", soon))  # the provider would not try
        shop.message(e[6], *email, sent, ("delivered", END + timedelta(hours=1)))  # after END
        shop.message(e[7], *email, at(1, 1) - timedelta(days=1), ("delivered", at(1, 1)))  # before
        shop.message(e[8], *email, sent, ("delivered", soon), ("opened", soon), ("opened", soon))
        whatsapp = ("welcome", "welcome", "whatsapp")
        shop.message(e[9], *whatsapp, sent, ("sent", soon), ("delivered", soon), ("read", soon))
        shop.message(e[10], *whatsapp, sent, ("undelivered", soon))
        # Sent weeks later: listed after "welcome" although "review" sorts before it.
        review = ("review", "review_request", "email")
        shop.message(e[0], *review, at(3, 1), ("delivered", at(3, 1)), ("unsubscribed", at(3, 2)))
        shop.message(e[1], *review, None, status="pending")  # not sent yet
    with rt.factory() as session:
        steps = funnel(session, START, END)

    def step(step: str, template: str, channel: str, **counts: int) -> FunnelStep:
        zero = dict.fromkeys(("sent", "delivered", "opened", "clicked", "bounced", "failed",
                              "unsubscribed"), 0)
        return FunnelStep(journey="onboarding", step=step, template=template, channel=channel,
                          **(zero | counts))

    assert steps == [
        # sent: all but the failed send and the one before the period (7); delivered: 0, 1, 3
        # and 8; opened: 0, 1, 8; clicked: 0, 1; failed: the failed send and the dropped one.
        step("welcome", "welcome", "email", sent=7, delivered=4, opened=3, clicked=2, bounced=1,
             failed=2, unsubscribed=1),
        step("welcome", "welcome", "whatsapp", sent=2, delivered=1, opened=1, failed=1),
        step("review", "review_request", "email", sent=1, delivered=1, unsubscribed=1),
    ]


def test_funnel_counts_opens_and_clicks_of_people_and_the_machines_beside(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        shop = Shop(session)
        e = [shop.bought("onboarding", f"m{i:02}", at(2, 1)) for i in range(4)]
        sent = at(2, 1, 13)
        soon, later = sent + timedelta(seconds=2), sent + timedelta(hours=3)
        email = ("welcome", "welcome", "email")
        # Apple Mail Privacy Protection opened it, the scanner clicked it: delivered, no more
        shop.message(e[0], *email, sent, ("machine_opened", soon), ("suspect_clicked", soon))
        # the same, then the person opened and clicked it
        shop.message(e[1], *email, sent, ("delivered", soon), ("machine_opened", soon),
                     ("suspect_clicked", soon), ("opened", later), ("clicked", later))
        # a scanner's click alone still proves delivery
        shop.message(e[2], *email, sent, ("processed", soon), ("suspect_clicked", soon))
        shop.message(e[3], *email, sent, ("delivered", soon))
    with rt.factory() as session:
        [step] = funnel(session, START, END)
    assert (step.sent, step.delivered, step.opened, step.clicked) == (4, 4, 1, 1)
    assert (step.machine_opened, step.suspect_clicked) == (2, 3)


# --- cohorts -----------------------------------------------------------------------------------

COHORT_END = datetime(2026, 6, 15, tzinfo=UTC)


def _cohort_data(shop: Shop) -> None:
    # January: a1 back after 26 days, a2 after 54, a3 cancelled after 10 days and came back
    # after 78 days, a4 never. Anchored 31 January 23:00 UTC is still January (it is already
    # 1 February in Auckland).
    shop.bought("onboarding", "a1", at(1, 10))
    shop.order("a1", "a1-2", at(2, 5))
    shop.bought("onboarding", "a2", at(1, 20))
    shop.order("a2", "a2-2", at(3, 15))
    shop.bought("onboarding", "a3", at(1, 31, 23))
    shop.order("a3", "a3-2", at(2, 10), status="cancelled", cancelled=at(2, 11))
    shop.order("a3", "a3-3", at(4, 20))
    shop.bought("winback", "a4", at(1, 5))
    # February: b1 back exactly 30 days later (within 30 days), b2 one second more.
    shop.bought("onboarding", "b1", at(2, 14))
    shop.order("b1", "b1-2", at(2, 14) + timedelta(days=30))
    shop.bought("onboarding", "b2", at(2, 28))
    shop.order("b2", "b2-2", at(2, 28) + timedelta(days=30, seconds=1))
    # March: d1's first enrollment anchors them; the order of the second one is the return
    # (39 days later).
    shop.bought("onboarding", "d1", at(3, 2))
    shop.bought("repeat_nps", "d1", at(4, 10))
    # May: back after a week, but the cohort is not 30 days past its month yet.
    shop.bought("onboarding", "c1", at(5, 3))
    shop.order("c1", "c1-2", at(5, 10))
    # Not in any cohort: an enrollment without an order, and one whose order is after the end.
    shop.enroll("onboarding", "n1", None, at(2, 1))
    shop.bought("onboarding", "n2", COHORT_END + timedelta(days=1))


def test_cohorts_retention_by_anchor_month_leaves_out_immature_months(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        _cohort_data(Shop(session))
    with rt.factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            # The month is the UTC month, whatever the session's time zone.
            session.execute(text("SET TIME ZONE 'Pacific/Auckland'"))
        result = {c.month: c for c in cohorts(session, None, COHORT_END)}

    assert list(result) == ["2026-01", "2026-02", "2026-03", "2026-05"]
    # January ends 1 February: +30 = 3 March, +60 = 2 April, +90 = 2 May, +120 = 1 June are
    # before 15 June; +150 = 1 July is not. Returned within 30: a1; 60: a2; 90: a3.
    assert result["2026-01"].customers == 4
    assert result["2026-01"].retained == [Rate.of(1, 4), Rate.of(2, 4), Rate.of(3, 4), Rate.of(3, 4)]
    assert [r.value for r in result["2026-01"].retained] == [25.0, 50.0, 75.0, 75.0]
    # February ends 1 March: +30, +60, +90 (30 May) are mature; +120 (29 June) is not.
    assert result["2026-02"].customers == 2
    assert result["2026-02"].retained == [Rate.of(1, 2), Rate.of(2, 2), Rate.of(2, 2)]
    # March ends 1 April: +30 (1 May) and +60 (31 May) only.
    assert result["2026-03"].retained == [Rate.of(0, 1), Rate.of(1, 1)]
    # May ends 1 June; 1 July is after the end: no entry at all yet.
    assert result["2026-05"].customers == 1
    assert result["2026-05"].retained == []


def test_cohorts_follow_the_period_of_the_anchor_order(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        _cohort_data(Shop(session))
    with rt.factory() as session:
        from_february = cohorts(session, at(2, 1, 0), COHORT_END)
        assert [c.month for c in from_february] == ["2026-02", "2026-03", "2026-05"]
        # As of 1 April, January's 30-day window has passed (3 March), its 60-day one has not
        # (2 April), and a2's return (15 March) was after 30 days. February's 30-day window
        # closed on 31 March (b1 back on 16 March); March's closes on 1 May.
        as_of_april = cohorts(session, None, at(4, 1, 0))
        assert [(c.month, c.customers) for c in as_of_april] == [("2026-01", 4), ("2026-02", 2),
                                                                  ("2026-03", 1)]
        assert as_of_april[0].retained == [Rate.of(1, 4)]
        assert as_of_april[1].retained == [Rate.of(1, 2)]
        assert as_of_april[2].retained == []


# --- the whole report --------------------------------------------------------------------------


def test_a_report_computed_on_two_connections_equals_one_computed_on_one(rt: Runtime) -> None:
    with rt.factory() as session, session.begin():
        shop = Shop(session)
        _lift_data(shop)
        _cohort_data(shop)
        enrollment = shop.bought("onboarding", "f01", at(2, 1))
        shop.message(enrollment, "welcome", "welcome", "email", at(2, 1, 13),
                     ("delivered", at(2, 1, 14)), ("clicked", at(2, 2)))
    kinds = {"nps_survey": "nps"}
    with rt.factory() as session:
        alone = compute(session, START, COHORT_END, kinds, as_of=COHORT_END)
    with rt.factory() as session:
        parallel = compute(session, START, COHORT_END, kinds, as_of=COHORT_END, parallel=True)

    assert parallel == alone
    assert {"onboarding", "winback"} <= {j.journey for j in parallel.journeys}
    assert parallel.funnel[0].clicked == 1
    assert parallel.cohorts and parallel.segments[-1].segment == "all"
