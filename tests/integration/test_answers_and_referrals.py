"""process-events: one answer per survey message (latest wins) and referral attribution."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from aftersale.core.links import referral_code
from aftersale.core.survey_scales import COMMENT_LIMIT, clean_comment
from aftersale.db.models import Customer, InboxEvent, Message, Referral, SurveyResponse
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline.runtime import Runtime
from aftersale.surveys.answers import store_answer, survey_message
from tests.conftest import START
from tests.factories import days, follow, placed
from tests.integration.helpers import feed, run_to, treated_customer


def _referred(oid: str, cid: str, code: str | None, at_days: float) -> dict[str, Any]:
    event = placed(oid, START + days(at_days), cid)
    event["order"]["referral_code"] = code
    return event


def _referrals(rt: Runtime) -> list[tuple[str, str, str, bool]]:
    with rt.factory() as session:
        return [tuple(r) for r in session.execute(
            select(Referral.referrer_id, Referral.customer_id, Referral.order_id,
                   Referral.first_order).order_by(Referral.order_id)).all()]


def test_every_customer_gets_a_stable_unique_referral_code(rt: Runtime) -> None:
    feed(rt, placed("o-1", START, "c-1"), placed("o-2", START, "c-2"))
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        codes = dict(session.execute(select(Customer.id, Customer.referral_code)).tuples().all())
    assert codes == {"c-1": referral_code("c-1"), "c-2": referral_code("c-2")}
    assert codes["c-1"] != codes["c-2"] and codes["c-1"].startswith("R")


def test_an_order_with_another_customers_code_records_a_referral(rt: Runtime) -> None:
    code = referral_code("alice")
    feed(rt, placed("o-a", START, "alice"))
    drain_inbox(rt, rt.definitions())
    feed(rt,
         _referred("o-b1", "bob", code.lower(), 1),       # codes are case-insensitive
         _referred("o-b2", "bob", code, 2),               # bob's second order: not a new customer
         _referred("o-a2", "alice", code, 3),             # her own code: not a referral
         _referred("o-x", "carol", "RNOSUCHCODE", 4),     # unknown code: nothing
         placed("o-c0", START + days(0.5), "dave"))
    drain_inbox(rt, rt.definitions())
    feed(rt, _referred("o-d1", "dave", code, 5))          # dave was a customer already
    drain_inbox(rt, rt.definitions())
    assert _referrals(rt) == [("alice", "bob", "o-b1", True), ("alice", "bob", "o-b2", False),
                              ("alice", "dave", "o-d1", False)]


def test_a_replayed_referred_order_is_recorded_once(rt: Runtime) -> None:
    feed(rt, placed("o-a", START, "alice"))
    drain_inbox(rt, rt.definitions())
    event = _referred("o-b", "bob", referral_code("alice"), 1)
    feed(rt, event)
    drain_inbox(rt, rt.definitions())
    feed(rt, event | {"id": "evt-replay"})
    drain_inbox(rt, rt.definitions())
    assert len(_referrals(rt)) == 1


def _nps_message(rt: Runtime) -> Message:
    """Drive a first-time buyer through onboarding until the NPS survey is sent."""
    definitions = rt.definitions()
    cid = treated_customer("onboarding", 10)
    feed(rt, placed("o-1", START, cid), follow("shipped", "o-1", START + days(1), cid),
         follow("delivered", "o-1", START + days(2), cid))
    run_to(rt, definitions, START + days(40), tick=days(0.5))
    with rt.factory() as session:
        message = session.scalars(select(Message).where(Message.template == "nps_survey",
                                                        Message.status == "sent")).one()
        session.expunge(message)
    return message


def _answer(rt: Runtime, message: Message, score: int, comment: str | None = None) -> None:
    with rt.factory() as session, session.begin():
        survey = survey_message(session, message.id, "nps")
        assert survey is not None
        store_answer(session, survey, score, comment, "email", rt.now())
    drain_inbox(rt, rt.definitions())


def test_a_second_answer_to_the_same_survey_changes_it(rt: Runtime) -> None:
    message = _nps_message(rt)
    _answer(rt, message, 9)
    rt.clock.advance(days(0.01))  # type: ignore[attr-defined]
    _answer(rt, message, 4, "the box was <b>crushed</b>")
    rt.clock.advance(days(0.01))  # type: ignore[attr-defined]
    _answer(rt, message, 5)       # a new score without a comment keeps the comment
    with rt.factory() as session:
        rows = session.scalars(select(SurveyResponse)).all()
        statuses = session.scalars(select(InboxEvent.status)
                                   .where(InboxEvent.type == "survey.responded")).all()
    assert statuses == ["processed"] * 3
    assert [(r.message_id, r.score, r.comment, r.source) for r in rows] == [
        (message.id, 5, "the box was <b>crushed</b>", "email")]
    assert rows[0].updated_at is not None and rows[0].updated_at > rows[0].responded_at
    assert rows[0].order_id == "o-1"


def test_an_answer_naming_someone_elses_message_is_rejected(rt: Runtime) -> None:
    message = _nps_message(rt)
    feed(rt, placed("o-9", START + days(40), "mallory"))
    feed(rt, {"id": "evt-forged", "type": "survey.responded",
              "occurred_at": (START + days(40)).isoformat(), "customer": {"id": "mallory"},
              "survey": {"kind": "nps", "score": 0, "message_id": message.id}})
    drain_inbox(rt, rt.definitions())
    with rt.factory() as session:
        forged = session.scalars(select(InboxEvent).where(InboxEvent.event_id == "evt-forged")).one()
        assert session.scalars(select(SurveyResponse)).all() == []
    assert forged.status == "failed" and "was not sent to customer mallory" in (forged.error or "")


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("   ", None), ("\x00 ok \x00", "ok"), ("👍", "👍"),
    ("x" * (COMMENT_LIMIT + 50), "x" * (COMMENT_LIMIT - 1) + "…"),
])
def test_comments_are_cleaned_and_cut_at_the_documented_limit(raw: str | None,
                                                              expected: str | None) -> None:
    assert clean_comment(raw) == expected
