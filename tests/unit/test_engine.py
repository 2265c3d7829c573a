"""The pure journey engine: every step type, waits and timeouts, exits, branches, holdout and
versions, driven with explicit positions, facts and times."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aftersale.core.journeys.engine import (
    STATE_EVENTS,
    AlertAction,
    Facts,
    Outcome,
    Position,
    SendAction,
    Skip,
    Status,
    advance,
    in_holdout,
)
from aftersale.core.journeys.loader import compile_journey
from aftersale.core.journeys.model import Journey
from aftersale.core.yaml_lines import parse_located

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def journey(text: str, path: str = "journeys/x.yaml") -> Journey:
    doc, problems = parse_located(textwrap.dedent(text), path)
    assert doc is not None and problems == []
    compiled, problems = compile_journey(doc)
    assert compiled is not None, [str(p) for p in problems]
    return compiled


def steps(body: str, header: str = "") -> Journey:
    return journey("journey: t\ntrigger: order.placed\n" + header + "steps:\n"
                   + textwrap.indent(textwrap.dedent(body), "  "))


def order_ctx(categories=(), **fields):
    cats = {c.lower() for c in categories}
    return {**fields, "has_category": lambda name: str(name).lower() in cats,
            "has_sku": lambda sku: False, "has_discount_code": lambda code: False}


def facts(seen=None, response=None, **context) -> Facts:
    ctx = {"customer": {"id": "c-1", "orders_count": 1}, "order": order_ctx(),
           "response": response or {}, "segment": "first_time"}
    ctx.update(context)
    return Facts(context=ctx, seen=seen or {})


def sends(outcome: Outcome) -> list[tuple[str, str]]:
    return [(a.step_key, a.template) for a in outcome.actions if isinstance(a, SendAction)]


def keys(outcome: Outcome, kind=SendAction) -> list[str]:
    return [a.step_key for a in outcome.actions if isinstance(a, kind)]


# -- send, alert, end -------------------------------------------------------------------------

def test_sends_and_alerts_run_in_order_and_the_journey_completes():
    j = steps("""\
        - send: welcome
          channels: [whatsapp, email]
        - alert: vip_order
        - send: tips
        """)
    outcome = advance(j, Position(), facts(), T0)
    assert outcome.actions == (
        SendAction("0", "welcome", ("whatsapp", "email")),
        AlertAction("1", "vip_order"),
        SendAction("2", "tips", ("email",)),
    )
    assert outcome.status is Status.COMPLETED
    assert outcome.due_at is None
    assert outcome.position.pc == len(j.program)
    assert outcome.reason == "journey finished"


def test_an_end_step_stops_the_journey_before_later_steps():
    j = steps("""\
        - send: a
        - end:
          when: customer.orders_count == 1
        - send: b
        """)
    outcome = advance(j, Position(), facts(), T0)
    assert sends(outcome) == [("0", "a")]
    assert outcome.status is Status.COMPLETED
    assert outcome.reason == "end step 1"
    assert outcome.position.pc == 1


def test_an_end_step_whose_when_is_false_is_skipped_and_the_journey_goes_on():
    j = steps("""\
        - end:
          when: customer.orders_count > 1
        - send: b
        """)
    outcome = advance(j, Position(), facts(), T0)
    assert outcome.actions[0] == Skip("0", "when: customer.orders_count > 1 is false")
    assert sends(outcome) == [("1", "b")]
    assert outcome.status is Status.COMPLETED


def test_completing_an_already_finished_enrollment_sends_nothing_again():
    j = steps("- send: a\n")
    first = advance(j, Position(), facts(), T0)
    again = advance(j, first.position, facts(), T0 + DAY)
    assert sends(first) == [("0", "a")]
    assert again.actions == ()
    assert again.status is Status.COMPLETED


# -- when -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("categories", "expected"),
    [(["drones"], [("0", "product_tutorial"), ("1", "after")]), (["books"], [("1", "after")])],
)
def test_a_send_with_a_when_runs_only_if_its_condition_holds(categories, expected):
    j = steps("""\
        - send: product_tutorial
          when: order.has_category("drones")
        - send: after
        """)
    outcome = advance(j, Position(), facts(order=order_ctx(categories)), T0)
    assert sends(outcome) == expected
    skipped = [a for a in outcome.actions if isinstance(a, Skip)]
    if categories == ["books"]:
        assert skipped == [Skip("0", 'when: order.has_category("drones") is false')]
    else:
        assert skipped == []


@pytest.mark.parametrize("kind", ["alert: vip", "wait: 1d", "wait_for: order.shipped\n  timeout: 1d"])
def test_any_step_whose_when_is_false_is_skipped_with_the_reason(kind):
    j = steps(f"- {kind}\n  when: customer.orders_count >= 5\n- send: next\n")
    outcome = advance(j, Position(), facts(), T0)
    assert outcome.actions[0] == Skip("0", "when: customer.orders_count >= 5 is false")
    assert sends(outcome) == [("1", "next")]
    assert outcome.status is Status.COMPLETED


def test_a_wait_that_already_started_does_not_recheck_its_when():
    j = steps("""\
        - wait: 2d
          when: customer.orders_count == 1
        - send: after
        """)
    started = advance(j, Position(), facts(), T0)
    assert started.status is Status.ACTIVE
    # the customer places another order meanwhile: the condition is now false
    later = facts(customer={"id": "c-1", "orders_count": 2})
    done = advance(j, started.position, later, T0 + 2 * DAY)
    assert not any(isinstance(a, Skip) for a in done.actions)
    assert sends(done) == [("1", "after")]


def test_a_wait_for_that_already_started_does_not_recheck_its_when():
    j = steps("""\
        - wait_for: order.delivered
          timeout: 5d
          when: customer.orders_count == 1
        - send: after
        """)
    started = advance(j, Position(), facts(), T0)
    assert started.position.waiting_for == "order.delivered"
    later = facts(seen={"order.delivered": T0 + DAY},
                  customer={"id": "c-1", "orders_count": 2})
    done = advance(j, started.position, later, T0 + DAY)
    assert done.actions == (SendAction("1", "after", ("email",)),)


# -- wait -------------------------------------------------------------------------------------

def test_a_wait_returns_its_due_time_and_resumes_only_when_due():
    j = steps("""\
        - send: a
        - wait: 1d12h
        - send: b
        """)
    first = advance(j, Position(), facts(), T0)
    due = T0 + timedelta(days=1, hours=12)
    assert sends(first) == [("0", "a")]
    assert first.status is Status.ACTIVE
    assert first.due_at == due
    assert first.position == Position(1, due, None)

    early = advance(j, first.position, facts(), due - timedelta(seconds=1))
    assert early.actions == ()
    assert early.position == first.position
    assert early.due_at == due
    assert early.status is Status.ACTIVE

    on_time = advance(j, first.position, facts(), due)
    assert sends(on_time) == [("2", "b")]
    assert on_time.status is Status.COMPLETED


def test_a_late_dispatcher_still_runs_the_step_after_a_wait_exactly_once():
    j = steps("- wait: 1d\n- send: b\n- wait: 1d\n- send: c\n")
    first = advance(j, Position(), facts(), T0)
    late = advance(j, first.position, facts(), T0 + 10 * DAY)
    # the second wait starts from when the engine actually got there
    assert sends(late) == [("1", "b")]
    assert late.due_at == T0 + 11 * DAY


# -- wait_for ---------------------------------------------------------------------------------

def test_a_wait_for_shipment_is_satisfied_by_an_earlier_shipment():
    j = steps("""\
        - wait_for: order.shipped
          timeout: 7d
        - send: shipping_update
        """)
    shipped_before = facts(seen={"order.placed": T0 - DAY, "order.shipped": T0 - timedelta(hours=1)})
    outcome = advance(j, Position(), shipped_before, T0)
    assert sends(outcome) == [("1", "shipping_update")]
    assert outcome.status is Status.COMPLETED


@pytest.mark.parametrize("event", sorted(STATE_EVENTS - {"order.cancelled", "order.refunded"}))
def test_every_order_state_event_seen_earlier_satisfies_a_wait_for_it(event):
    j = steps(f"- wait_for: {event}\n  timeout: 1d\n- send: next\n")
    outcome = advance(j, Position(), facts(seen={event: T0 - 30 * DAY}), T0)
    assert sends(outcome) == [("1", "next")]


def test_a_wait_for_waits_with_the_event_and_the_timeout_as_due_time():
    j = steps("""\
        - wait_for: order.delivered
          timeout: 21d
        - send: tutorial
        """)
    waiting = advance(j, Position(), facts(), T0)
    assert waiting.actions == ()
    assert waiting.status is Status.ACTIVE
    assert waiting.position == Position(0, T0 + 21 * DAY, "order.delivered")
    assert waiting.due_at == T0 + 21 * DAY

    still = advance(j, waiting.position, facts(), T0 + 3 * DAY)
    assert still.actions == () and still.position == waiting.position

    delivered = facts(seen={"order.delivered": T0 + 4 * DAY})
    arrived = advance(j, waiting.position, delivered, T0 + 4 * DAY)
    assert sends(arrived) == [("1", "tutorial")]
    assert not any(isinstance(a, Skip) for a in arrived.actions)


def test_a_survey_answer_before_the_wait_started_does_not_satisfy_it():
    j = steps("""\
        - wait_for: survey.responded
          timeout: 7d
        - send: thanks
        """)
    earlier_answer = facts(seen={"survey.responded": T0 - timedelta(minutes=5)},
                           response={"csat": 5})
    waiting = advance(j, Position(), earlier_answer, T0)
    assert waiting.status is Status.ACTIVE
    assert waiting.actions == ()
    # still not satisfied on a later check while the old answer is the latest one
    again = advance(j, waiting.position, earlier_answer, T0 + 2 * DAY)
    assert again.actions == () and again.status is Status.ACTIVE


def test_a_survey_answer_after_the_wait_started_satisfies_it():
    j = steps("""\
        - send: nps_survey
        - wait_for: survey.responded
          timeout: 7d
        - send: thanks
        """)
    waiting = advance(j, Position(), facts(), T0)
    answered = facts(seen={"survey.responded": T0 + 2 * DAY}, response={"nps": 10})
    outcome = advance(j, waiting.position, answered, T0 + 2 * DAY)
    assert sends(outcome) == [("2", "thanks")]


def test_a_survey_answer_at_the_very_moment_the_wait_starts_counts():
    j = steps("- wait_for: survey.responded\n  timeout: 1d\n- send: thanks\n")
    outcome = advance(j, Position(), facts(seen={"survey.responded": T0}), T0)
    assert sends(outcome) == [("1", "thanks")]


def test_a_wait_for_that_times_out_with_continue_records_a_skip_and_goes_on():
    j = steps("""\
        - wait_for: order.shipped
          timeout: 7d
        - send: still_sent
        """)
    waiting = advance(j, Position(), facts(), T0)
    outcome = advance(j, waiting.position, facts(), T0 + 7 * DAY)
    assert outcome.actions == (Skip("0", "timed out waiting for order.shipped"),
                               SendAction("1", "still_sent", ("email",)))
    assert outcome.status is Status.COMPLETED


def test_a_wait_for_that_times_out_with_end_completes_without_later_steps():
    j = steps("""\
        - wait_for: order.delivered
          timeout: 21d
          on_timeout: end
        - send: never
        """)
    waiting = advance(j, Position(), facts(), T0)
    before = advance(j, waiting.position, facts(), T0 + 21 * DAY - timedelta(seconds=1))
    assert before.status is Status.ACTIVE
    outcome = advance(j, waiting.position, facts(), T0 + 21 * DAY)
    assert outcome.actions == ()
    assert outcome.status is Status.COMPLETED
    assert outcome.due_at is None
    assert outcome.reason == "timed out waiting for order.delivered"


def test_an_event_that_arrived_before_a_late_timeout_check_still_counts():
    j = steps("- wait_for: order.delivered\n  timeout: 2d\n  on_timeout: end\n- send: next\n")
    waiting = advance(j, Position(), facts(), T0)
    delivered = facts(seen={"order.delivered": T0 + DAY})
    outcome = advance(j, waiting.position, delivered, T0 + 5 * DAY)
    assert sends(outcome) == [("1", "next")]


def test_an_answer_given_after_the_deadline_takes_the_timeout_path_though_seen_first():
    # After an outage the late answer is stored before dispatch looks at the expired wait.
    j = steps("""\
        - wait_for: survey.responded
          timeout: 7d
          on_timeout: end
        - alert: detractor
        """)
    waiting = advance(j, Position(), facts(), T0)
    late = facts(seen={"survey.responded": T0 + 90 * DAY}, response={"nps": 1})
    outcome = advance(j, waiting.position, late, T0 + 90 * DAY)
    assert outcome.actions == ()
    assert outcome.status is Status.COMPLETED
    assert outcome.reason == "timed out waiting for survey.responded"
    at_deadline = facts(seen={"survey.responded": T0 + 7 * DAY}, response={"nps": 1})
    assert advance(j, waiting.position, at_deadline, T0 + 8 * DAY).actions == ()
    just_before = facts(seen={"survey.responded": T0 + 7 * DAY - timedelta(seconds=1)},
                        response={"nps": 1})
    assert advance(j, waiting.position, just_before, T0 + 8 * DAY).actions == (
        AlertAction("1", "detractor"),)


def test_a_shipment_after_the_deadline_continues_as_a_timeout():
    j = steps("""\
        - wait_for: order.shipped
          timeout: 2d
        - send: after
        """)
    waiting = advance(j, Position(), facts(), T0)
    shipped_late = facts(seen={"order.shipped": T0 + 3 * DAY})
    outcome = advance(j, waiting.position, shipped_late, T0 + 3 * DAY)
    assert outcome.actions == (Skip("0", "timed out waiting for order.shipped"),
                               SendAction("1", "after", ("email",)))


# -- exits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("event", ["order.cancelled", "order.refunded"])
def test_an_exit_event_ends_the_enrollment_immediately_even_mid_wait(event):
    j = steps("- wait: 3d\n- send: never\n", header="exit_on: [order.cancelled, order.refunded]\n")
    waiting = advance(j, Position(), facts(), T0)
    outcome = advance(j, waiting.position, facts(seen={event: T0 + DAY}), T0 + 3 * DAY)
    assert outcome.status is Status.EXITED
    assert outcome.actions == ()
    assert outcome.due_at is None
    assert outcome.reason == f"exit event {event}"
    assert outcome.position == waiting.position


def test_an_exit_event_seen_before_the_first_step_sends_nothing():
    j = steps("- send: welcome\n", header="exit_on: order.cancelled\n")
    outcome = advance(j, Position(), facts(seen={"order.cancelled": T0}), T0)
    assert outcome.status is Status.EXITED
    assert outcome.actions == ()


def test_an_event_not_listed_in_exit_on_does_not_exit():
    j = steps("- send: welcome\n", header="exit_on: order.cancelled\n")
    outcome = advance(j, Position(), facts(seen={"order.refunded": T0}), T0)
    assert outcome.status is Status.COMPLETED
    assert sends(outcome) == [("0", "welcome")]


# -- branches ---------------------------------------------------------------------------------

NPS_BRANCH = """\
    - branch:
        - if: response.nps <= 6
          then: [{alert: detractor}, {send: detractor_followup}]
        - if: response.nps >= 9
          then: [{send: referral_invite}]
    - send: after
    """


@pytest.mark.parametrize(
    ("response", "alerts", "sent"),
    [
        ({"nps": 0}, ["0.0.0"], [("0.0.1", "detractor_followup"), ("1", "after")]),
        ({"nps": 6}, ["0.0.0"], [("0.0.1", "detractor_followup"), ("1", "after")]),
        ({"nps": 7}, [], [("1", "after")]),
        ({"nps": 9}, [], [("0.1.0", "referral_invite"), ("1", "after")]),
        ({"nps": 10}, [], [("0.1.0", "referral_invite"), ("1", "after")]),
        ({}, [], [("1", "after")]),
        ({"csat": 1}, [], [("1", "after")]),
    ],
)
def test_a_branch_runs_the_case_that_matches_the_answer(response, alerts, sent):
    outcome = advance(steps(NPS_BRANCH), Position(), facts(response=response), T0)
    assert keys(outcome, AlertAction) == alerts
    assert sends(outcome) == sent
    assert outcome.status is Status.COMPLETED


def test_a_detractor_branch_does_not_fire_before_the_customer_answers():
    outcome = advance(steps(NPS_BRANCH), Position(), facts(response={}), T0)
    assert not any(isinstance(a, AlertAction) for a in outcome.actions)
    assert "detractor_followup" not in [t for _, t in sends(outcome)]


def test_the_first_matching_case_wins_even_when_later_cases_also_match():
    j = steps("""\
        - branch:
            - if: customer.orders_count >= 1
              then: [{send: first}]
            - if: customer.orders_count == 1
              then: [{send: second}]
            - else: [{send: fallback}]
        """)
    assert sends(advance(j, Position(), facts(), T0)) == [("0.0.0", "first")]


@pytest.mark.parametrize(
    ("segment", "expected"),
    [("vip", [("0.0.0", "vip_gift")]), ("repeat", [("0.1.0", "repeat_thanks")]),
     ("first_time", [("0.2.0", "welcome")])],
)
def test_else_runs_only_when_no_case_matches(segment, expected):
    j = steps("""\
        - branch:
            - if: segment == "vip"
              then: [{send: vip_gift}]
            - if: segment == "repeat"
              then: [{send: repeat_thanks}]
            - else: [{send: welcome}]
        """)
    assert sends(advance(j, Position(), facts(segment=segment), T0)) == expected


@pytest.mark.parametrize(
    ("orders", "total", "expected"),
    [
        (1, 500, ["0.0.0", "0.0.1.0.0", "1"]),
        (1, 50, ["0.0.0", "0.0.1.1.0", "1"]),
        (3, 500, ["0.1.0", "1"]),
    ],
)
def test_nested_branches_run_the_right_steps_with_nested_keys(orders, total, expected):
    j = steps("""\
        - branch:
            - if: customer.orders_count == 1
              then:
                - send: welcome
                - branch:
                    - if: order.total > 100
                      then: [{send: big_first}]
                    - else: [{send: small_first}]
            - else: [{send: again}]
        - send: after
        """)
    ctx = facts(customer={"id": "c", "orders_count": orders}, order=order_ctx(total=total))
    assert keys(advance(j, Position(), ctx, T0)) == expected


def test_a_wait_inside_a_branch_resumes_inside_that_case():
    j = steps("""\
        - branch:
            - if: response.csat <= 2
              then:
                - alert: unhappy
                - wait: 1d
                - send: apology
                - end
        - send: happy_path
        """)
    unhappy = facts(response={"csat": 1})
    first = advance(j, Position(), unhappy, T0)
    assert keys(first, AlertAction) == ["0.0.0"]
    assert first.status is Status.ACTIVE
    # the answer no longer matters once inside the case
    second = advance(j, first.position, facts(response={"csat": 5}), T0 + DAY)
    assert sends(second) == [("0.0.2", "apology")]
    assert second.status is Status.COMPLETED
    assert second.reason == "end step 0.0.3"


# -- the design example, end to end -----------------------------------------------------------

DESIGN = """\
    journey: post-purchase
    trigger: order.placed
    segments: [first_time, repeat, vip]
    exit_on: [order.cancelled, order.refunded]
    holdout: 10%
    steps:
      - wait_for: order.shipped
        timeout: 7d
      - send: shipping_update
        channels: [whatsapp, sms, email]
      - wait_for: order.delivered
        timeout: 21d
      - wait: 1d
      - send: product_tutorial
        when: order.has_category("drones")
      - wait: 7d
      - send: csat_checkin
      - wait: 21d
      - send: nps_survey
      - wait_for: survey.responded
        timeout: 7d
        on_timeout: end
      - branch:
          - if: response.nps <= 6
            then: [{alert: detractor}, {send: detractor_followup}]
          - if: response.nps >= 9
            then: [{send: referral_invite}]
    """


def drive(j: Journey, timeline: list[tuple[datetime, Facts]]) -> tuple[list[Outcome], Position]:
    position, outcomes = Position(), []
    for when, fact in timeline:
        outcome = advance(j, position, fact, when)
        outcomes.append(outcome)
        position = outcome.position
        if outcome.status is not Status.ACTIVE:
            break
    return outcomes, position


def test_the_design_journey_runs_from_order_to_referral():
    j = journey(DESIGN)
    drone = order_ctx(["drones"])
    shipped = {"order.placed": T0, "order.shipped": T0 + DAY}
    delivered = {**shipped, "order.delivered": T0 + 3 * DAY}
    answered = {**delivered, "survey.responded": T0 + 33 * DAY}
    outcomes, _ = drive(j, [
        (T0, facts(seen={"order.placed": T0}, order=drone)),
        (T0 + DAY, facts(seen=shipped, order=drone)),
        (T0 + 3 * DAY, facts(seen=delivered, order=drone)),
        (T0 + 4 * DAY, facts(seen=delivered, order=drone)),
        (T0 + 11 * DAY, facts(seen=delivered, order=drone)),
        (T0 + 32 * DAY, facts(seen=delivered, order=drone)),
        (T0 + 33 * DAY, facts(seen=answered, order=drone, response={"nps": 10})),
    ])
    assert [sends(o) for o in outcomes] == [
        [],
        [("1", "shipping_update")],
        [],
        [("4", "product_tutorial")],
        [("6", "csat_checkin")],
        [("8", "nps_survey")],
        [("10.1.0", "referral_invite")],
    ]
    assert [o.due_at for o in outcomes[:-1]] == [
        T0 + 7 * DAY, T0 + 22 * DAY, T0 + 4 * DAY, T0 + 11 * DAY, T0 + 32 * DAY, T0 + 39 * DAY]
    assert outcomes[-1].status is Status.COMPLETED


def test_the_design_journey_ends_quietly_when_the_nps_survey_is_never_answered():
    j = journey(DESIGN)
    seen = {"order.placed": T0, "order.shipped": T0, "order.delivered": T0}
    outcomes, _ = drive(j, [(T0 + n * DAY, facts(seen=seen)) for n in (0, 1, 8, 29, 36, 60)])
    assert outcomes[-1].status is Status.COMPLETED
    assert outcomes[-1].reason == "timed out waiting for survey.responded"
    all_actions = [a for o in outcomes for a in o.actions]
    assert not any(isinstance(a, AlertAction) for a in all_actions)
    assert [a.template for a in all_actions if isinstance(a, SendAction)] == [
        "shipping_update", "csat_checkin", "nps_survey"]  # no drones: no tutorial


# -- versions and keys ------------------------------------------------------------------------

def test_an_in_flight_enrollment_keeps_running_on_the_version_it_started_with():
    v1 = journey(DESIGN)
    v2 = journey(DESIGN.replace("      - send: csat_checkin\n",
                                "      - send: ces_checkin\n      - send: csat_checkin\n"))
    assert v1.version != v2.version
    seen = {"order.placed": T0, "order.shipped": T0, "order.delivered": T0}
    # enrollment on v1 is waiting on the 7d wait (key "5") before csat_checkin
    position = Position()
    for when in (T0, T0 + DAY):
        position = advance(v1, position, facts(seen=seen), when).position
    assert v1.program[position.pc].key == "5"
    outcome = advance(v1, position, facts(seen=seen), T0 + 8 * DAY)
    assert sends(outcome) == [("6", "csat_checkin")]
    # the same position on v2 would be a different step: versions are independent programs
    assert v2.program[position.pc + 1].template == "ces_checkin"
    new = advance(v2, position, facts(seen=seen), T0 + 8 * DAY)
    assert sends(new) == [("6", "ces_checkin"), ("7", "csat_checkin")]


def test_step_keys_in_actions_are_unique_and_match_the_program():
    j = journey(DESIGN)
    program_keys = [i.key for i in j.program]
    assert len(program_keys) == len(set(program_keys))
    sendable = {i.key for i in j.program if hasattr(i, "template")}
    assert sendable == {"1", "4", "6", "8", "10.0.1", "10.1.0"}


def test_editing_a_later_step_keeps_the_keys_of_earlier_steps():
    v1 = journey(DESIGN)
    v2 = journey(DESIGN.replace("wait: 21d", "wait: 14d"))
    assert v1.version != v2.version
    assert [i.key for i in v1.program] == [i.key for i in v2.program]


# -- holdout ----------------------------------------------------------------------------------

def test_holdout_is_deterministic_for_a_customer_and_journey():
    picks = [in_holdout("post-purchase", f"c-{n}", 10) for n in range(500)]
    assert picks == [in_holdout("post-purchase", f"c-{n}", 10) for n in range(500)]


@pytest.mark.parametrize("percent", [0, -5])
def test_a_zero_holdout_never_holds_anyone_out(percent):
    assert not any(in_holdout("j", f"c-{n}", percent) for n in range(2000))


def test_a_full_holdout_holds_everyone_out():
    assert all(in_holdout("j", f"c-{n}", 100) for n in range(2000))


@pytest.mark.parametrize("percent", [1, 5, 10, 12.5, 25, 50, 90])
def test_the_holdout_share_is_close_to_the_percent(percent):
    n = 20_000
    share = sum(in_holdout("post-purchase", f"cust-{i}", percent) for i in range(n)) / n * 100
    assert share == pytest.approx(percent, abs=1.0)


def test_holdout_groups_differ_between_journeys():
    a = [in_holdout("onboarding", f"c-{n}", 50) for n in range(1000)]
    b = [in_holdout("winback", f"c-{n}", 50) for n in range(1000)]
    assert a != b


@given(customer=st.text(min_size=1, max_size=20), low=st.floats(0, 100), high=st.floats(0, 100))
def test_a_customer_held_out_at_some_percent_stays_held_out_at_any_higher_percent(
        customer, low, high):
    low, high = min(low, high), max(low, high)
    if in_holdout("j", customer, low):
        assert in_holdout("j", customer, high)


def test_the_holdout_of_a_compiled_journey_feeds_in_holdout():
    j = journey(DESIGN)
    n = 5000
    share = sum(in_holdout(j.name, f"c-{i}", j.holdout_percent) for i in range(n)) / n
    assert share == pytest.approx(0.10, abs=0.015)


# -- property: driven forward in time, the engine settles and never repeats a step ------------

EVENTS = ["order.shipped", "order.delivered", "survey.responded", "order.cancelled"]


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from(["design", "branchy"]),
    gaps=st.lists(st.integers(min_value=0, max_value=15 * 24), min_size=1, max_size=25),
    arrivals=st.dictionaries(st.sampled_from(EVENTS), st.integers(min_value=0, max_value=60 * 24)),
    nps=st.one_of(st.none(), st.integers(0, 10)),
    csat=st.one_of(st.none(), st.integers(1, 5)),
    drones=st.booleans(),
)
def test_the_engine_always_settles_and_never_repeats_a_step_key(which, gaps, arrivals, nps,
                                                                 csat, drones):
    j = JOURNEYS[which]

    def facts_at(now: datetime) -> Facts:
        seen = {"order.placed": T0}
        seen.update({e: T0 + timedelta(hours=h) for e, h in arrivals.items()
                     if T0 + timedelta(hours=h) <= now})
        response = {}
        if "survey.responded" in seen:
            response = {k: v for k, v in (("nps", nps), ("csat", csat)) if v is not None}
        return facts(seen=seen, response=response, order=order_ctx(["drones"] if drones else []))

    # first at arbitrary times, then (after every event has happened) at each due time
    times = [T0 + timedelta(hours=sum(gaps[: i + 1])) for i in range(len(gaps))]
    position, status, now = Position(), Status.ACTIVE, T0
    due: datetime | None = None
    sent: list[str] = []
    for step in range(len(times) + 2 * len(j.program) + 2):
        if status is not Status.ACTIVE:
            break
        if step < len(times):
            now = max(now, times[step])
        else:
            now = max(now + timedelta(days=61), due or now)
        outcome = advance(j, position, facts_at(now), now)
        sent += [a.step_key for a in outcome.actions if isinstance(a, (SendAction, AlertAction))]
        assert len(sent) == len(set(sent)), sent
        if outcome.status is Status.ACTIVE:
            assert outcome.due_at is not None and outcome.due_at > now
            assert outcome.position.pc >= position.pc
        position, status, due = outcome.position, outcome.status, outcome.due_at
    assert status in (Status.COMPLETED, Status.EXITED)
    if status is Status.EXITED:
        assert T0 + timedelta(hours=arrivals["order.cancelled"]) <= now


BRANCHY = """\
    journey: branchy
    trigger: order.placed
    exit_on: order.cancelled
    steps:
      - send: hello
      - wait_for: survey.responded
        timeout: 3d
      - branch:
          - if: response.csat <= 2
            then:
              - alert: unhappy
              - wait: 1d
              - branch:
                  - if: response.nps != null
                    then: [{send: a}, {wait: 2h}, {send: b}]
                  - else: [end]
          - if: response.csat >= 4
            then:
              - wait_for: order.delivered
                timeout: 10d
                on_timeout: end
              - send: c
          - else:
              - send: d
      - wait: 6h
        when: order.has_category("drones")
      - send: bye
    """

JOURNEYS = {"design": journey(DESIGN), "branchy": journey(BRANCHY)}


# -- shipment journeys: the parcel in the context, its moments in `seen` ------------------------

def shipment_journey() -> Journey:
    return journey("""\
        journey: care
        trigger: [shipment.updated, shipment.stalled]
        reentry: once_per_shipment_moment
        stalled_after: {domestic: 2}
        steps:
          - branch:
              - if: shipment.status == "attempted_delivery"
                then: [{send: attempted}]
              - if: shipment.moment == "stalled"
                then: [{send: stalled}, {alert: stalled_parcel}]
          - wait_for: shipment.updated
            timeout: 2d
            on_timeout: end
          - send: still_waiting
            when: shipment.status == "ready_for_pickup" and shipment.days_since_update >= 2
        """)


def test_a_shipment_journey_branches_on_the_parcel_and_waits_for_its_next_update():
    care = shipment_journey()
    ship = {"status": "attempted_delivery", "moment": "attempted_delivery", "days_since_update": 0}
    first = advance(care, Position(), facts(shipment=ship), T0)
    assert sends(first) == [("0.0.0", "attempted")]
    assert first.position.waiting_for == "shipment.updated"
    # the update it was enrolled on (before the wait started) does not wake it
    still = advance(care, first.position, facts(seen={"shipment.updated": T0 - DAY},
                                                shipment=ship), T0 + DAY)
    assert still.status == Status.ACTIVE and still.due_at == T0 + 2 * DAY
    ready = {**ship, "status": "ready_for_pickup", "days_since_update": 2}
    woken = advance(care, first.position, facts(seen={"shipment.updated": T0 + DAY},
                                                shipment=ready), T0 + 3 * DAY)
    assert sends(woken) == [("2", "still_waiting")] and woken.status == Status.COMPLETED


def test_a_stall_raises_the_alert_and_a_silent_parcel_ends_the_journey_at_the_timeout():
    care = shipment_journey()
    stalled = {"status": "in_transit", "moment": "stalled", "days_since_update": 2}
    first = advance(care, Position(), facts(shipment=stalled), T0)
    assert sends(first) == [("0.1.0", "stalled")]
    assert [a.kind for a in first.actions if isinstance(a, AlertAction)] == ["stalled_parcel"]
    ended = advance(care, first.position, facts(shipment=stalled), T0 + 2 * DAY)
    assert ended.status == Status.COMPLETED and sends(ended) == []


def _shipment(**fields):
    from aftersale.db.models import Shipment

    defaults = {"id": "shopify:1", "order_id": "o-1", "carrier": "UPS", "status": "in_transit",
                "raw_status": "in_transit", "status_at": T0, "last_update_at": T0,
                "tracking_url": "https://t.example/1", "tracking_number": "1Z",
                "destination_country": "DE", "last_message": "Departed facility",
                "first_estimated_delivery_at": None, "estimated_delivery_at": None,
                "delivered_at": None, "stalled_at": None, "late_for": None, "late_at": None,
                "shipped_at": T0}
    return Shipment(**(defaults | fields))


def test_the_shipment_context_reads_the_row_as_conditions_and_templates_need_it():
    from aftersale.pipeline.contexts import shipment_context

    row = _shipment(first_estimated_delivery_at=T0 + DAY, estimated_delivery_at=T0 + 3 * DAY)
    ctx = shipment_context(row, "delayed", T0 + 4 * DAY + timedelta(hours=1), "TR")
    assert (ctx["status"], ctx["moment"], ctx["carrier"]) == ("in_transit", "delayed", "UPS")
    assert ctx["days_late"] == 3  # against the first promise, not the revised date
    assert ctx["days_since_update"] == 4 and ctx["has_estimate"] is True
    assert ctx["is_international"] is True
    assert ctx["tracking_url"] == "https://t.example/1"
    assert ctx["last_message"] == "Departed facility"
    assert ctx["estimated_delivery_at"] == T0 + 3 * DAY
    on_time = shipment_context(_shipment(first_estimated_delivery_at=T0 + DAY,
                                         delivered_at=T0, status="delivered"), None, T0 + 9 * DAY)
    assert on_time["days_late"] == 0 and on_time["is_international"] is False
    assert shipment_context(row, None, T0, "de")["is_international"] is False
    assert shipment_context(_shipment(), None, T0)["days_late"] is None
    # conditions read the kind of moment; the entry key keeps its threshold or date
    assert [shipment_context(row, m, T0)["moment"] for m in ("stalled:3", "late:2026-03-05")] \
        == ["stalled", "late"]


def test_the_moment_of_a_shipment_event_and_its_entry_key_round_trip():
    from aftersale.core.events import STORED, Event
    from aftersale.pipeline.contexts import moment_of_entry, shipment_moment

    def event(kind, **shipment):  # as the inbox reads them: derived ones too
        return Event.model_validate(
            {"id": "e", "type": kind, "occurred_at": "2026-03-02T09:00:00+00:00",
             "order": {"id": "o-1"}, "shipment": {"id": "shopify:1", **shipment}},
            context=STORED)

    row = _shipment(status="attempted_delivery")
    assert shipment_moment(event("shipment.updated", status="attempted_delivery"), row) \
        == "attempted_delivery"
    # an older scan that did not become the parcel's status is no moment
    assert shipment_moment(event("shipment.updated", status="in_transit"), row) is None
    assert shipment_moment(event("shipment.stalled"), row) == "stalled"
    assert shipment_moment(event("shipment.stalled", days_silent=5), row) == "stalled:5"
    assert shipment_moment(event("shipment.stalled", days_silent=6, stalled_after=5), row) \
        == "stalled:5"
    # the date the clock judged late (the customer's local date) names the moment
    assert shipment_moment(event("shipment.late", late_for="2026-03-05",
                                 estimated_delivery_at="2026-03-09T18:00:00+00:00"), row) \
        == "late:2026-03-05"
    assert shipment_moment(event("shipment.late",
                                 estimated_delivery_at="2026-03-04T18:00:00+00:00"), row) \
        == "late:2026-03-04"
    assert moment_of_entry("shipment:shopify:1:late:2026-03-04", "shopify:1") == "late:2026-03-04"
    assert moment_of_entry("order:o-1", "shopify:1") is None
    assert moment_of_entry(None, "shopify:1") is None


def test_a_stall_derived_for_a_threshold_starts_only_the_journeys_of_that_threshold():
    from aftersale.core.events import STORED, Event
    from aftersale.pipeline.contexts import stall_concerns

    def stalled(**shipment):
        return Event.model_validate(
            {"id": "e", "type": "shipment.stalled", "occurred_at": "2026-03-02T09:00:00+00:00",
             "order": {"id": "o-1"}, "shipment": {"id": "s-1", **shipment}}, context=STORED)

    own = shipment_journey()  # stalled_after: {domestic: 2}
    default = journey("journey: d\ntrigger: shipment.stalled\nsteps: [{send: a}]\n")
    two = stalled(stalled_after=2, days_silent=2, shop_threshold=False)
    three = stalled(stalled_after=3, days_silent=4, shop_threshold=True)
    assert stall_concerns(own, two, False) and not stall_concerns(own, three, False)
    assert not stall_concerns(default, two, False) and stall_concerns(default, three, False)
    # abroad the journey has no threshold of its own: it takes the settings' one
    assert stall_concerns(own, three, True) and not stall_concerns(own, two, True)
    # the event says which side the parcel is on, when it knows
    assert not stall_concerns(own, stalled(stalled_after=2, is_international=True,
                                           shop_threshold=False), False)
    # an event with only the days of silence was derived for them
    assert stall_concerns(own, stalled(days_silent=2), False)
    assert stall_concerns(own, stalled(), False) and stall_concerns(default, stalled(), False)
    # without the flag, the settings' thresholds say which stall is everyone else's
    from aftersale.core.delivery_clock import StallDefaults

    settings = StallDefaults(domestic=3, international=5)
    at = {n: stalled(stalled_after=n, days_silent=n) for n in (2, 3, 5)}
    assert [n for n, e in at.items() if stall_concerns(default, e, False, settings)] == [3]
    assert [n for n, e in at.items() if stall_concerns(default, e, True, settings)] == [5]
    assert [n for n, e in at.items() if stall_concerns(own, e, False, settings)] == [2]
    assert [n for n, e in at.items() if stall_concerns(own, e, True, settings)] == [5]


def test_the_parcels_moments_are_seen_when_they_happened():
    from aftersale.pipeline.contexts import shipment_seen

    row = _shipment(last_update_at=T0, stalled_at=T0 + DAY, late_for=T0 + DAY,
                    late_at=T0 + 2 * DAY)
    assert shipment_seen(row) == {"shipment.updated": T0, "shipment.stalled": T0 + DAY,
                                  "shipment.late": T0 + 2 * DAY}
    assert shipment_seen(_shipment()) == {"shipment.updated": T0}


