"""Experiments' results and decisions on SQLite and PostgreSQL: each goal's numerator and
denominator (the closed-window rule, the first answer, a person's click and never a scanner's),
what was sent, opened and clicked per variant, one decision per version with its alert by
e-mail (the sandbox) and webhook (a local receiver), and ``aftersale experiments --format json``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.experiments import Experiment, Goal, GoalKind, Variant, WinnerRule, parse_goal
from aftersale.core.journeys.model import Journey, Reentry, Send
from aftersale.core.sequential import ALPHA, Arm, compare
from aftersale.db.models import (
    AlertRecord,
    Customer,
    DeliveryEvent,
    Enrollment,
    ExperimentAssignment,
    ExperimentDecision,
    JourneyVersion,
    Message,
    Order,
    SandboxOutbox,
    SurveyResponse,
)
from aftersale.metrics.experiment_decisions import KIND, decide
from aftersale.metrics.experiments import ExperimentResult, experiment_results
from aftersale.metrics.snapshots import EXPERIMENTS_KEY
from aftersale.orchestration.compute_metrics import compute_metrics
from aftersale.orchestration.flow_context import using_runtime
from aftersale.pipeline.alerts import deliver_alerts
from aftersale.pipeline.runtime import Runtime
from tests.conftest import START
from tests.factories import days
from tests.integration.helpers import aftersale
from tests.integration.test_alerts import ALERT_EMAIL, Receiver, make_rt, receiver  # noqa: F401 - fixtures
from tests.integration.test_flows import _latest_artifact

NOW = START + days(40)
_ids = itertools.count(1)


def experiment(name: str, goal: Goal | str, rule: WinnerRule = WinnerRule.MANUAL,
               min_per_variant: int = 2, max_days: int = 90, version: str = "v2",
               step_key: str = "3") -> Experiment:
    return Experiment(
        name=name, journey="onboarding", step_key=step_key, kind="message",
        variants=(Variant("a", 50.0), Variant("b", 50.0, template="product_tutorial_offer")),
        goal=parse_goal(goal) if isinstance(goal, str) else goal,
        min_per_variant=min_per_variant, max_days=max_days, rule=rule, version=version)


@dataclass
class Definitions:
    """The definitions as the results read them: journeys by name, each experiment on a send
    step of the onboarding journey's program."""

    experiments: list[Experiment]
    journeys: Mapping[str, Journey] = field(init=False)

    def __post_init__(self) -> None:
        program = tuple(Send(e.step_key, "t", ("email",), experiment=e) for e in self.experiments)
        self.journeys = {"onboarding": Journey(
            name="onboarding", trigger="order.placed", segments=(), exit_on=(),
            holdout_percent=0, reentry=Reentry.ONCE_PER_ORDER, program=program, version="1", source={})}


class Seed:
    """Rows as the pipeline leaves them: a customer with an order and an enrollment, assigned
    to a variant; then messages with their delivery events, later orders and answers."""

    def __init__(self, session: Session) -> None:
        self.session = session
        version = session.scalar(select(JourneyVersion).where(
            JourneyVersion.journey == "onboarding", JourneyVersion.version == "1"))
        if version is None:
            version = JourneyVersion(journey="onboarding", version="1", definition={},
                                     created_at=START)
            session.add(version)
            session.flush()
        self.version = version

    def assigned(self, exp: Experiment, variant: str, at: datetime, version: str | None = None
                 ) -> tuple[str, int]:
        n = next(_ids)
        cid, oid = f"c-{n}", f"o-{n}"
        self.session.add(Customer(id=cid, email=f"{cid}@example.com", locale="en",
                                  created_at=START, updated_at=START))
        self.session.flush()
        self.order(cid, START - days(1), oid)
        enrollment = Enrollment(journey=exp.journey, journey_version_id=self.version.id,
                                customer_id=cid, order_id=oid, entry_key=oid, segment="all",
                                holdout=False, status="active", enrolled_at=START - days(1))
        self.session.add(enrollment)
        self.session.flush()
        self.session.add(ExperimentAssignment(
            journey=exp.journey, experiment=exp.name, version=version or exp.version,
            variant=variant, customer_id=cid, enrollment_id=enrollment.id,
            step_key=exp.step_key, assigned_at=at))
        self.session.flush()
        return cid, enrollment.id

    def order(self, cid: str, at: datetime, oid: str | None = None, status: str = "placed"
              ) -> None:
        self.session.add(Order(id=oid or f"o-{next(_ids)}", customer_id=cid, placed_at=at,
                               total=Decimal("10.00"), currency="EUR", items=[],
                               discount_codes=[], status=status,
                               cancelled_at=at if status == "cancelled" else None))
        self.session.flush()

    def message(self, cid: str, enrollment_id: int, step_key: str, at: datetime,
                events: tuple[str, ...] = (), status: str = "sent") -> str:
        mid = f"m-{next(_ids)}"
        self.session.add(Message(id=mid, enrollment_id=enrollment_id, step_key=step_key,
                                 customer_id=cid, journey="onboarding", template="t",
                                 channels=["email"], channel="email", status=status,
                                 created_at=at, due_at=at,
                                 sent_at=at if status == "sent" else None))
        self.session.flush()
        for i, kind in enumerate(events):
            self.session.add(DeliveryEvent(
                provider="sendgrid", provider_event_id=f"{mid}-{i}", message_id=mid, kind=kind,
                occurred_at=at + timedelta(hours=i + 1), received_at=at + timedelta(hours=i + 1),
                raw={}))
        self.session.flush()
        return mid

    def answer(self, cid: str, kind: str, score: int, at: datetime) -> None:
        n = next(_ids)
        self.session.add(SurveyResponse(event_id=f"e-{n}", customer_id=cid, kind=kind,
                                        score=score, responded_at=at, message_id=f"s-{n}"))
        self.session.flush()


def results(rt: Runtime, *exps: Experiment, now: datetime = NOW) -> dict[str, ExperimentResult]:
    with rt.factory() as session:
        report = experiment_results(session, Definitions(list(exps)), now)
    return {r.experiment: r for r in report.experiments}


def goal_of(result: ExperimentResult) -> dict[str, tuple[int, int]]:
    return {v.name: (v.goal.numerator, v.goal.denominator) for v in result.variants}


def test_repeat_purchase_counts_orders_inside_each_closed_window_of_the_current_version(
        rt: Runtime) -> None:
    exp = experiment("offer", "repeat_purchase within 30d")
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        cid, _ = seed.assigned(exp, "a", START)
        seed.order(cid, START + days(10))  # bought again: counts
        cid, _ = seed.assigned(exp, "a", START)
        seed.order(cid, START + days(31))  # a day after the window: does not
        cid, _ = seed.assigned(exp, "a", START + days(20))  # window still open at day 40
        seed.order(cid, START + days(25))
        cid, _ = seed.assigned(exp, "a", START)
        seed.order(cid, START + days(5), status="cancelled")  # not a purchase
        cid, _ = seed.assigned(exp, "b", START)
        seed.order(cid, START + days(30))  # on the window's last instant: counts
        cid, _ = seed.assigned(exp, "b", START + days(5))  # only the anchor, before assignment
        cid, _ = seed.assigned(exp, "b", START)
        seed.order(cid, START + days(1))
        cid, _ = seed.assigned(exp, "b", START, version="v1")  # an earlier version
        seed.order(cid, START + days(1))

    result = results(rt, exp)["offer"]
    assert {v.name: v.assigned for v in result.variants} == {"a": 4, "b": 3}
    assert goal_of(result) == {"a": (1, 3), "b": (2, 3)}
    assert [v.goal.value for v in result.variants] == [33.3, 66.7]
    assert result.first_assigned_at == START
    assert result.horizon_at == START + days(90)
    [control, b] = result.variants
    assert control.control and control.vs_control is None
    assert b.vs_control is not None and b.vs_control.ci_low < b.vs_control.difference < b.vs_control.ci_high
    assert result.verdict  # the sentence, whatever it says with so few customers


def test_sent_opens_and_clicks_count_people_on_in_scope_messages_after_assignment(
        rt: Runtime) -> None:
    exp = experiment("clicks", "click within 7d", step_key="3")
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        cid, eid = seed.assigned(exp, "a", START)
        seed.message(cid, eid, "3", START, ("delivered", "opened", "clicked"))  # a person: hit
        seed.message(cid, eid, "4", START, ("delivered", "opened", "clicked"))  # out of scope
        cid, eid = seed.assigned(exp, "a", START)
        seed.message(cid, eid, "3", START, ("delivered", "machine_opened", "suspect_clicked"))
        cid, eid = seed.assigned(exp, "a", START + days(1))
        seed.message(cid, eid, "3", START)  # sent before assignment (an earlier entry)
        seed.message(cid, eid, "3.1.0", START + days(1), status="failed")
        cid, eid = seed.assigned(exp, "b", START)
        seed.message(cid, eid, "3.1.0", START + days(2), ("delivered", "clicked"))  # inside a path
        seed.message(cid, eid, "30", START + days(2), ("clicked",))  # not "3." : out of scope
        cid, eid = seed.assigned(exp, "b", START)
        seed.message(cid, eid, "3", START + days(8), ("clicked",))  # clicked after the window

    result = results(rt, exp)["clicks"]
    engagement = {v.name: (v.sent, v.opened, v.clicked) for v in result.variants}
    # a: the person's message (opened, clicked) and the scanner's (neither); b: the path's
    # message (a click is an open too) and the late one (its click still counts as a click).
    assert engagement == {"a": (2, 1, 1), "b": (2, 2, 2)}
    # The goal: a person's click within 7 days of assignment, over the closed windows.
    assert goal_of(result) == {"a": (1, 3), "b": (1, 2)}


def test_response_rate_counts_any_answer_in_the_window(rt: Runtime) -> None:
    exp = experiment("asked", "response_rate within 14d")
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        cid, _ = seed.assigned(exp, "a", START)
        seed.answer(cid, "csat", 2, START + days(3))
        cid, _ = seed.assigned(exp, "a", START)
        seed.answer(cid, "nps", 9, START - days(1))  # before assignment
        seed.answer(cid, "nps", 9, START + days(15))  # after the window
        cid, _ = seed.assigned(exp, "b", START + days(30))  # window open at day 40
        seed.answer(cid, "nps", 9, START + days(31))
    assert goal_of(results(rt, exp)["asked"]) == {"a": (1, 2), "b": (0, 0)}


def test_nps_and_csat_take_each_customers_first_answer_in_the_window(rt: Runtime) -> None:
    nps, csat = experiment("nps_timing", "nps within 30d"), experiment("csat_test", "csat")
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        cid, _ = seed.assigned(nps, "a", START)
        seed.answer(cid, "nps", 3, START + days(2))  # first: a detractor
        seed.answer(cid, "nps", 10, START + days(3))
        cid, _ = seed.assigned(nps, "a", START + days(35))  # window open: counted once answered
        seed.answer(cid, "nps", 10, START + days(36))
        cid, _ = seed.assigned(nps, "a", START)
        seed.answer(cid, "nps", 8, START + days(31))  # after the window
        cid, _ = seed.assigned(nps, "b", START)
        seed.answer(cid, "nps", 7, START + days(1))  # passive
        seed.answer(cid, "csat", 5, START + days(1))  # another kind
        cid, _ = seed.assigned(csat, "a", START)
        seed.answer(cid, "csat", 4, START + days(1))
        cid, _ = seed.assigned(csat, "a", START)
        seed.answer(cid, "csat", 3, START + days(1))
        cid, _ = seed.assigned(csat, "b", START)
        seed.answer(cid, "csat", 5, START + days(1))

    found = results(rt, nps, csat)
    [a, b] = found["nps_timing"].variants
    assert (a.goal.numerator, a.goal.denominator, a.goal.promoters, a.goal.detractors) == (0, 2, 1, 1)
    assert (a.goal.value, b.goal.value, b.goal.denominator) == (0.0, 0.0, 1)
    assert goal_of(found["csat_test"]) == {"a": (1, 2), "b": (1, 1)}
    assert found["csat_test"].variants[0].goal.promoters is None
    # The interval is the rule's on the NPS scale (-1..+1 per answer), not a rate's 0..1.
    expected = compare(Arm.nps("a", 1, 1, 2), Arm.nps("b", 0, 0, 1), nps.min_per_variant, ALPHA)
    assert b.vs_control is not None
    assert (b.vs_control.ci_low, b.vs_control.ci_high) == pytest.approx(
        (expected.low, expected.high), abs=0.051)


def test_the_order_a_journey_is_about_is_never_its_own_repeat_purchase(rt: Runtime) -> None:
    """Even when the shop's clock put it after the assignment (a split at the first step runs
    in the tick the order arrives; a shop clock may run ahead of ours)."""
    exp = experiment("offer", "repeat_purchase within 30d")
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        cid, _ = seed.assigned(exp, "a", START)
        anchor = session.get(Order, "o-" + cid.removeprefix("c-"))
        assert anchor is not None
        anchor.placed_at = START + timedelta(minutes=1)
        cid, _ = seed.assigned(exp, "b", START)
        seed.order(cid, START + timedelta(minutes=1))  # a second order: counts
    assert goal_of(results(rt, exp)["offer"]) == {"a": (0, 1), "b": (1, 1)}


def _decided_at_the_horizon(rt: Runtime, exp: Experiment) -> None:
    """Equal outcomes in both variants, the first assignment ``max_days`` before NOW."""
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        for variant in ("a", "b"):
            for i in range(6):
                cid, _ = seed.assigned(exp, variant, NOW - days(exp.max_days))
                if i % 2:
                    seed.order(cid, NOW - days(exp.max_days) + days(1))


def test_a_decision_is_stored_once_per_version_with_one_alert_by_email_and_webhook(
        make_rt: Any, receiver: Receiver) -> None:  # noqa: F811 - test_alerts' fixtures
    rt = make_rt(alert_email=ALERT_EMAIL, alert_webhook_url=receiver.url)
    exp = experiment("offer", "repeat_purchase within 30d", rule=WinnerRule.AUTO,
                     min_per_variant=3, max_days=35)
    manual = experiment("manual_one", "repeat_purchase within 30d", rule=WinnerRule.MANUAL,
                        min_per_variant=3, max_days=35)
    _decided_at_the_horizon(rt, exp)
    _decided_at_the_horizon(rt, manual)
    definitions = Definitions([exp, manual])

    with rt.factory() as session, session.begin():
        [decided] = decide(session, definitions, NOW)
    assert (decided.experiment, decided.outcome, decided.variant) == ("offer", "no_difference", "a")
    with rt.factory() as session, session.begin():
        assert decide(session, definitions, NOW + days(1)) == []  # decided: never again
    with rt.factory() as session:
        [row] = session.scalars(select(ExperimentDecision)).all()
        [alert] = session.scalars(select(AlertRecord)).all()
    assert (row.journey, row.experiment, row.version, row.outcome, row.variant) == (
        "onboarding", "offer", "v2", "no_difference", "a")
    assert row.figures["variants"][0]["goal"]["denominator"] == 6
    assert (alert.kind, alert.customer_id, alert.enrollment_id) == (KIND, None, None)
    assert alert.step_key == "experiment:onboarding:offer:v2"

    shown = results(rt, exp, manual, now=NOW + days(2))
    assert shown["offer"].decision is not None and shown["offer"].state == "no_difference"
    assert shown["offer"].verdict.startswith(f"decided {NOW:%Y-%m-%d}: ")
    assert shown["manual_one"].decision is None  # manual: the marketer names the winner

    counts = deliver_alerts(rt)
    assert counts.delivered == 1
    [post] = receiver.posts
    assert post["alert"]["customer"] is None and post["alert"]["order"] is None
    assert post["alert"]["experiment"]["name"] == "offer"
    assert post["alert"]["experiment"]["variants"][1]["denominator"] == 6
    assert post["text"].startswith("Experiment decided: onboarding / offer (version v2): new "
                                   "arrivals get no difference at the horizon: the control, a.")
    with rt.factory() as session:
        [mail] = session.scalars(select(SandboxOutbox)).all()
    assert (mail.recipient, mail.message_id) == (ALERT_EMAIL, f"alert_{alert.id}")
    assert mail.subject is not None and "onboarding / offer" in mail.subject
    assert "- b: assigned 6" in mail.body_text
    deliver_alerts(rt)
    assert len(receiver.posts) == 1  # delivered: never again


def test_a_new_version_is_judged_and_decided_on_its_own(rt: Runtime) -> None:
    old = experiment("offer", "repeat_purchase within 30d", rule=WinnerRule.AUTO,
                     min_per_variant=3, max_days=35, version="v1")
    _decided_at_the_horizon(rt, old)
    with rt.factory() as session, session.begin():
        assert len(decide(session, Definitions([old]), NOW)) == 1
    new = experiment("offer", "repeat_purchase within 30d", rule=WinnerRule.AUTO,
                     min_per_variant=3, max_days=35, version="v2")
    with rt.factory() as session, session.begin():
        assert decide(session, Definitions([new]), NOW) == []  # nobody assigned in v2 yet
    result = results(rt, new)["offer"]
    assert result.decision is None and {v.assigned for v in result.variants} == {0}
    assert result.state == "collecting"


def test_a_winner_named_in_the_yaml_is_shown_as_ended_by_the_marketer(rt: Runtime) -> None:
    exp = experiment("offer", "repeat_purchase within 30d", rule=WinnerRule.AUTO,
                     min_per_variant=3, max_days=35)
    ended = Experiment(**{**exp.__dict__, "chosen": "b"})
    _decided_at_the_horizon(rt, ended)
    with rt.factory() as session, session.begin():
        assert decide(session, Definitions([ended]), NOW) == []  # the marketer decided
    result = results(rt, ended)["offer"]
    assert (result.state, result.winner, result.ended_by_marketer) == ("ended", "b", "b")
    assert result.verdict.startswith("ended by the marketer: b")


@pytest.fixture
def winner_data(rt: Runtime) -> Experiment:
    exp = experiment("offer", Goal(GoalKind.REPEAT_PURCHASE, timedelta(days=30)),
                     rule=WinnerRule.AUTO, min_per_variant=100, max_days=120)
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        for variant, buyers in (("a", 10), ("b", 60)):
            for i in range(150):
                cid, _ = seed.assigned(exp, variant, START)
                if i < buyers:
                    seed.order(cid, START + days(2))
    return exp


def test_a_clear_winner_is_decided_and_new_arrivals_get_it(rt: Runtime,
                                                          winner_data: Experiment) -> None:
    with rt.factory() as session, session.begin():
        [decided] = decide(session, Definitions([winner_data]), NOW)
    assert (decided.outcome, decided.variant) == ("winner", "b")
    result = results(rt, winner_data)["offer"]
    assert goal_of(result) == {"a": (10, 150), "b": (60, 150)}
    assert (result.state, result.winner) == ("winner", "b")
    assert result.decision is not None and result.decision.figures["state"] == "winner"


SPLIT_JOURNEY = """\
journey: tutorial_test
trigger: order.placed
steps:
  - send: product_tutorial
    channels: [email]
    variants:
      - name: guide
        weight: 50%
      - name: guide_and_offer
        weight: 50%
        template: product_tutorial_offer
    experiment:
      name: tutorial_offer
      goal: repeat_purchase within 30d
      min_per_variant: 300
      max_days: 120
      winner: auto
"""


def test_the_experiments_command_prints_json_and_a_table_and_decides_nothing(
        rt: Runtime, cli_env: dict[str, str], definitions_dirs: tuple[Path, Path],
        tmp_path: Path) -> None:
    journeys, _ = definitions_dirs
    (journeys / "tutorial_test.yaml").write_text(SPLIT_JOURNEY, encoding="utf-8")
    [exp] = rt.definitions().journeys["tutorial_test"].experiments()
    # The command reads the wall clock: 40 days ago, every 30-day window has closed and the
    # 120-day horizon is far.
    assigned_at = datetime.now(UTC) - days(40)
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        for variant, buyers in (("guide", 1), ("guide_and_offer", 2)):
            for i in range(3):
                cid, _ = seed.assigned(exp, variant, assigned_at)
                if i < buyers:
                    seed.order(cid, assigned_at + days(3))

    result = aftersale("experiments", "--format", "json", "--journey", "tutorial_test",
                       env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    [found] = data["experiments"]
    assert (found["journey"], found["experiment"], found["version"], found["rule"]) == (
        "tutorial_test", "tutorial_offer", exp.version, "auto")
    assert found["goal"] == "repeat purchase within 30 days"
    assert [(v["name"], v["weight"], v["control"], v["assigned"]) for v in found["variants"]] == [
        ("guide", 50.0, True, 3), ("guide_and_offer", 50.0, False, 3)]
    assert [v["goal"] for v in found["variants"]] == [
        {"value": 33.3, "numerator": 1, "denominator": 3, "promoters": None, "detractors": None},
        {"value": 66.7, "numerator": 2, "denominator": 3, "promoters": None, "detractors": None}]
    assert found["variants"][0]["vs_control"] is None
    assert set(found["variants"][1]["vs_control"]) == {"difference", "ci_low", "ci_high"}
    assert found["state"] == "collecting" and "300" in found["verdict"]
    assert found["decision"] is None

    table = aftersale("experiments", env=cli_env, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "tutorial_test / tutorial_offer" in table.stdout and "Verdict: " in table.stdout
    assert "66.7% (2/3)" in table.stdout
    with rt.factory() as session:
        assert session.scalars(select(ExperimentDecision)).all() == []  # read-only

    unknown = aftersale("experiments", "--journey", "nope", env=cli_env, cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("unknown journey 'nope'; journeys: ")


@pytest.mark.usefixtures("prefect_server")
def test_compute_metrics_decides_then_publishes_the_experiments_artifact(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    short = SPLIT_JOURNEY.replace("min_per_variant: 300", "min_per_variant: 3").replace(
        "max_days: 120", "max_days: 35")
    (journeys / "tutorial_test.yaml").write_text(short, encoding="utf-8")
    [exp] = rt.definitions().journeys["tutorial_test"].experiments()
    now = rt.now()
    with rt.factory() as session, session.begin():
        seed = Seed(session)
        for variant in ("guide", "guide_and_offer"):
            for i in range(6):  # the same outcomes: at the horizon, no difference
                cid, _ = seed.assigned(exp, variant, now - days(35))
                if i % 2:
                    seed.order(cid, now - days(30))
    with using_runtime(rt):
        compute_metrics()
        compute_metrics()  # a second run decides nothing more
    text = _latest_artifact(EXPERIMENTS_KEY)
    assert isinstance(text, str)
    assert "## tutorial_test / tutorial_offer (version " in text
    assert "| guide_and_offer | 50% | 6 | 0 | 0 | 0 | 50.0% (3/6) |" in text
    assert f"**Verdict:** decided {now:%Y-%m-%d}: no difference detected at the horizon" in text
    with rt.factory() as session:
        [decision] = session.scalars(select(ExperimentDecision)).all()
        alerts = session.scalars(select(AlertRecord).where(AlertRecord.kind == KIND)).all()
    assert (decision.outcome, decision.variant, decision.version) == (
        "no_difference", "guide", exp.version)
    assert len(alerts) == 1
