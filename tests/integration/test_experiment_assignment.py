"""Experiments in the running pipeline: who gets which variant, stored once, kept for good.

Journeys written in YAML (a message split and a path split) run through the real intake,
engine, database and channels on a simulated clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from aftersale.config import Settings
from aftersale.core.clock import SimulatedClock
from aftersale.core.experiments import Variant, hashed_variant
from aftersale.core.journeys.model import Journey
from aftersale.db.models import (
    Enrollment,
    ExperimentAssignment,
    ExperimentDecision,
    Message,
    SandboxOutbox,
)
from aftersale.emulators.sendgrid import SendGridEmulator
from aftersale.ops.preview import preview_journey, print_timeline
from aftersale.orchestration.passes import drain_inbox
from aftersale.pipeline import advance as dispatch
from aftersale.pipeline.assignments import (
    ASSIGNED_BEFORE,
    BY_HASH,
    DECIDED,
    Assignments,
)
from aftersale.pipeline.definitions import Definitions
from aftersale.pipeline.erasure import forget_customer
from aftersale.pipeline.runtime import Runtime, open_runtime
from tests.conftest import START
from tests.factories import days, placed
from tests.integration.helpers import feed, holdout_customer, run_to, sent, treated_customer

SEGMENTS = "[vip, at_risk, discount_hunter, repeat, first_time]"
SUBJECTS = '{en: "A gift for {{ customer.first_name }}", tr: "{{ customer.first_name }}, size bir hediye"}'


def trial_yaml(offer_template: str = "winback", guide: int = 30, offer: int = 70) -> str:
    """A message split: the tutorial (control) or another template with its own subject."""
    return f"""
journey: trial
trigger: order.placed
segments: {SEGMENTS}
exit_on: [order.cancelled]
holdout: 10%
reentry: once_per_order
quiet_hours: off        # the sends land on the test's ticks, at any hour
frequency_cap: off      # both journeys message the same customers the same day
steps:
  - wait: 1d
  - send: product_tutorial
    channels: [email]
    variants:
      - name: guide
        weight: {guide}%
      - name: offer
        weight: {offer}%
        template: {offer_template}
        subject: {SUBJECTS}
    experiment:
      name: tutorial_offer
      goal: repeat_purchase within 30d
      min_per_variant: 300
      max_days: 120
      winner: auto
  - wait: 2d
  - send: csat_checkin
    channels: [email]
"""


TIMING = f"""
journey: timing
trigger: order.placed
segments: {SEGMENTS}
exit_on: [order.cancelled]
holdout: 0%
reentry: once_per_order
quiet_hours: off        # the sends land on the test's ticks, at any hour
frequency_cap: off      # both journeys message the same customers the same day
steps:
  - split:
      - name: early
        weight: 50%
        steps:
          - wait: 1d
          - send: csat_checkin
            channels: [email]
      - name: late
        weight: 50%
        steps:
          - wait: 5d
          - send: nps_survey
            channels: [email]
    experiment:
      name: survey_timing
      goal: response_rate within 30d
      min_per_variant: 200
      max_days: 90
      winner: auto
  - send: referral_invite
    channels: [email]
"""


@pytest.fixture
def definitions_dirs(definitions_dirs: tuple[Path, Path]) -> tuple[Path, Path]:
    """Only the two experiment journeys (and the shipped segments and content)."""
    journeys, content = definitions_dirs
    for path in journeys.glob("*.yaml"):
        if path.name != "segments.yaml":
            path.unlink()
    (journeys / "trial.yaml").write_text(trial_yaml())
    (journeys / "timing.yaml").write_text(TIMING)
    return journeys, content


def customer_with(variant: str, journey: str = "trial", prefix: str = "c",
                  variants: tuple[Variant, ...] = (Variant("guide", 30), Variant("offer", 70)),
                  experiment: str = "tutorial_offer", holdout: float = 10) -> str:
    """A treated customer id whose hash gives ``variant``."""
    for n in range(10_000):
        cid = treated_customer(journey, holdout, f"{prefix}{n}-")
        if hashed_variant(journey, experiment, cid, variants) == variant:
            return cid
    raise AssertionError(f"no customer gets {variant}")


PATHS = (Variant("early", 50), Variant("late", 50))


def assignments(rt: Runtime, journey: str | None = None) -> list[ExperimentAssignment]:
    with rt.factory() as session:
        query = select(ExperimentAssignment).order_by(ExperimentAssignment.id)
        if journey:
            query = query.where(ExperimentAssignment.journey == journey)
        return list(session.scalars(query))


def of(rt: Runtime, cid: str, journey: str) -> list[Message]:
    return [m for m in sent(rt, cid) if m.journey == journey]


def experiment_of(definitions: Definitions, journey: str) -> Any:
    [experiment] = definitions.journeys[journey].experiments()
    return experiment


def advance_all(rt: Runtime, definitions: Definitions) -> None:
    while dispatch.advance_due(rt.factory, definitions, rt.clock, 500).advanced == 500:
        pass


def test_a_reentered_customer_keeps_the_variant_and_has_one_assignment(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = customer_with("offer")
    feed(rt, placed("o-1", START, cid))
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=12))
    feed(rt, placed("o-2", START + days(2), cid))
    run_to(rt, definitions, START + days(4), tick=timedelta(hours=12))
    tutorials = [m for m in of(rt, cid, "trial") if m.step_key == "1"]
    assert len(tutorials) == 2 and len({m.enrollment_id for m in tutorials}) == 2
    assert {m.template for m in tutorials} == {"winback"}
    [row] = assignments(rt, "trial")
    assert (row.customer_id, row.experiment, row.variant) == (cid, "tutorial_offer", "offer")
    assert row.enrollment_id == min(m.enrollment_id for m in tutorials)
    assert row.version == experiment_of(definitions, "trial").version
    assert row.step_key == "1" and row.assigned_at == START + days(1)


def test_holdout_customers_reach_no_experiment_and_get_no_assignment(rt: Runtime) -> None:
    definitions = rt.definitions()
    held, treated = holdout_customer("trial", 10), treated_customer("trial", 10)
    feed(rt, placed("o-1", START, held), placed("o-2", START, treated))
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=12))
    assert [r.customer_id for r in assignments(rt, "trial")] == [treated]
    assert of(rt, held, "trial") == []


def test_the_weights_hold_across_a_thousand_customers(rt: Runtime) -> None:
    definitions = rt.definitions()
    feed(rt, *[placed(f"o-{n}", START, f"w-{n}") for n in range(1000)])
    drain_inbox(rt, definitions)
    advance_all(rt, definitions)  # the path split draws; the message split's day starts
    rt.clock.set(START + days(1))  # type: ignore[attr-defined]
    advance_all(rt, definitions)
    rows = assignments(rt, "trial")
    with rt.factory() as session:
        treated = session.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.journey == "trial", Enrollment.holdout.is_(False)))
    assert treated is not None and len(rows) == treated > 850  # 10% holdout
    offers = sum(r.variant == "offer" for r in rows)
    # Binomial noise: within 4 standard errors of 70% (a 50/50 split would be ~13 SE off).
    assert abs(offers - 0.7 * treated) <= 4 * math.sqrt(treated * 0.7 * 0.3)
    # Each stored draw is the customer's hash, and the message sent is that variant's.
    variants = experiment_of(definitions, "trial").variants
    assert all(r.variant == hashed_variant("trial", "tutorial_offer", r.customer_id, variants)
               for r in rows)
    with rt.factory() as session:
        templates = dict(session.execute(select(Message.customer_id, Message.template)
                                         .where(Message.journey == "trial")).all())
    expected = {"guide": "product_tutorial", "offer": "winback"}
    assert {r.customer_id: expected[r.variant] for r in rows} == templates
    # The path split too, 50/50, with its own draw.
    paths = Counter(r.variant for r in assignments(rt, "timing"))
    assert sum(paths.values()) == 1000
    assert abs(paths["early"] - 500) <= 4 * math.sqrt(1000 * 0.25)


def test_an_edited_experiment_moves_nobody_already_assigned(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    journeys, _ = definitions_dirs
    old_definitions = rt.definitions()
    old_version = experiment_of(old_definitions, "trial").version
    # Under the new weights (90/10) this customer's hash says guide; they were given offer.
    moved = (Variant("guide", 90), Variant("offer", 10))
    cid = next(c for n in range(200) if hashed_variant(
        "trial", "tutorial_offer", c := customer_with("offer", prefix=f"e{n}-"), moved) == "guide")
    inflight = customer_with("offer", prefix="f")  # enrolled before the edit, not yet sent
    feed(rt, placed("o-1", START, cid))
    drain_inbox(rt, old_definitions)
    advance_all(rt, old_definitions)  # its day's wait starts
    rt.clock.set(START + timedelta(hours=12))  # type: ignore[attr-defined]
    feed(rt, placed("o-2", START + timedelta(hours=12), inflight))
    drain_inbox(rt, old_definitions)
    advance_all(rt, old_definitions)  # and inflight's
    rt.clock.set(START + days(1))  # type: ignore[attr-defined]
    advance_all(rt, old_definitions)  # cid reaches the split; inflight still waits
    assert [r.customer_id for r in assignments(rt, "trial")] == [cid]
    (journeys / "trial.yaml").write_text(trial_yaml("referral_invite", 90, 10))
    definitions = rt.definitions()
    new_version = experiment_of(definitions, "trial").version
    assert new_version != old_version

    newcomer = customer_with("guide", prefix="n", variants=moved)
    feed(rt, placed("o-3", START + days(1), cid), placed("o-4", START + days(1), newcomer))
    run_to(rt, definitions, START + days(3), tick=timedelta(hours=12))
    by_customer = {r.customer_id: r for r in assignments(rt, "trial")}
    assert len(assignments(rt, "trial")) == 3
    assert (by_customer[cid].variant, by_customer[cid].version) == ("offer", old_version)
    assert (by_customer[inflight].variant, by_customer[inflight].version) == (
        "offer", old_version)  # its enrollment runs the version it started on
    assert (by_customer[newcomer].variant, by_customer[newcomer].version) == ("guide", new_version)
    # The first enrollment ran its own version (winback); the re-entry runs the new one
    # (referral_invite) and keeps the variant, although the new weights would say guide.
    assert [m.template for m in of(rt, cid, "trial") if m.step_key == "1"] == [
        "winback", "referral_invite"]
    assert [m.template for m in of(rt, inflight, "trial") if m.step_key == "1"] == ["winback"]


def test_a_decision_sends_new_arrivals_the_winner_and_lets_paths_finish(rt: Runtime) -> None:
    definitions = rt.definitions()
    version = experiment_of(definitions, "timing").version
    inside = customer_with("late", "timing", "i", PATHS, "survey_timing", 0)
    feed(rt, placed("o-1", START, inside))
    run_to(rt, definitions, START + days(1), tick=timedelta(hours=12))  # on the late path
    with rt.factory() as session, session.begin():
        session.add(ExperimentDecision(
            journey="timing", experiment="survey_timing", version=version, outcome="winner",
            variant="early", decided_at=START + days(1), figures={}))
    newcomer = customer_with("late", "timing", "n", PATHS, "survey_timing", 0)
    feed(rt, placed("o-2", START + days(1), newcomer))
    run_to(rt, definitions, START + days(7), tick=timedelta(hours=12))
    # The one inside the late path finishes it: its messages are the path's (keys "0.1.*").
    assert [(m.step_key, m.template) for m in of(rt, inside, "timing")] == [
        ("0.1.1", "nps_survey"), ("1", "referral_invite")]
    # The newcomer gets the winner and is not an assignment (results count only the draw).
    assert [(m.step_key, m.template) for m in of(rt, newcomer, "timing")] == [
        ("0.0.1", "csat_checkin"), ("1", "referral_invite")]
    assert [(r.customer_id, r.variant) for r in assignments(rt, "timing")] == [(inside, "late")]


def test_the_variant_subject_is_rendered_and_reaches_the_mail(rt: Runtime) -> None:
    definitions = rt.definitions()
    offer, guide = customer_with("offer", prefix="s"), customer_with("guide", prefix="g")
    feed(rt, placed("o-1", START, offer), placed("o-2", START, guide, locale="en"))
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=12))
    [mail] = [m for m in of(rt, offer, "trial") if m.step_key == "1"]
    assert mail.subject_override == {"en": "A gift for {{ customer.first_name }}",
                                     "tr": "{{ customer.first_name }}, size bir hediye"}
    assert mail.subject == "Ayşe, size bir hediye"  # tr customer: the tr line, rendered
    [control] = [m for m in of(rt, guide, "trial") if m.step_key == "1"]
    assert control.subject_override is None and control.subject == "Tips for your new Drone X"
    with rt.factory() as session:
        outbox = session.scalars(select(SandboxOutbox.subject)
                                 .where(SandboxOutbox.message_id == mail.id)).all()
        assert outbox == ["Ayşe, size bir hediye"]
        # The html layout's title is the subject the customer sees, not the template's.
        assert "<title>Ayşe, size bir hediye</title>" in (mail.body_html or "")


KEY = "SG.test-key"


@pytest.fixture
def sendgrid_rt(settings: Settings) -> Iterator[tuple[Runtime, SendGridEmulator]]:
    with SendGridEmulator(api_key=KEY) as sendgrid:
        configured = Settings(_env_file=None, **settings.model_dump() | {  # type: ignore[call-arg]
            "email_provider": "sendgrid", "sendgrid_api_key": KEY,
            "sendgrid_base_url": sendgrid.base_url, "provider_timeout_seconds": 1.0})
        rt = open_runtime(configured, SimulatedClock(START))
        yield rt, sendgrid
        rt.engine.dispose()


def test_the_variant_subject_goes_to_sendgrid(
        sendgrid_rt: tuple[Runtime, SendGridEmulator]) -> None:
    rt, sendgrid = sendgrid_rt
    cid = customer_with("offer", prefix="sg")
    feed(rt, placed("o-1", START, cid, locale="en"))
    run_to(rt, rt.definitions(), START + days(1), tick=timedelta(hours=12))
    [tutorial] = [m for m in of(rt, cid, "trial") if m.step_key == "1"]
    [(provider_id, mail)] = [(i, m) for i, m in sendgrid.sent
                             if m["custom_args"]["aftersale_message_id"] == tutorial.id]
    assert mail["subject"] == "A gift for Ayşe" == tutorial.subject
    assert tutorial.provider_message_id == provider_id


def test_a_batch_that_fails_stores_no_assignment_and_its_retry_one_each(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    definitions = rt.definitions()
    customers = [customer_with(v, prefix=f"r{v}") for v in ("offer", "guide")]
    feed(rt, *[placed(f"o-{n}", START, c) for n, c in enumerate(customers)])
    drain_inbox(rt, definitions)
    real_apply, calls = dispatch._apply, []

    def crash_on_the_last(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 4:  # every enrollment of the batch has drawn by now (timing's split)
            raise OperationalError("UPDATE enrollments", {}, Exception("connection lost"))
        real_apply(*args, **kwargs)

    monkeypatch.setattr(dispatch, "_apply", crash_on_the_last)
    with pytest.raises(OperationalError):
        dispatch.advance_due(rt.factory, definitions, rt.clock)
    assert len(calls) == 4
    assert assignments(rt) == [] and sent(rt) == []
    monkeypatch.setattr(dispatch, "_apply", real_apply)
    advance_all(rt, definitions)
    advance_all(rt, definitions)  # nothing more is due: nothing is drawn or queued again
    run_to(rt, definitions, START + days(8), tick=timedelta(hours=12))
    rows = assignments(rt)
    assert sorted((r.journey, r.customer_id) for r in rows) == sorted(
        [("trial", c) for c in customers] + [("timing", c) for c in customers])
    steps = [(m.enrollment_id, m.step_key) for m in sent(rt)]
    assert len(steps) == len(set(steps)) == 2 * 2 + 2 * 2  # trial: 2 sends, timing: 2 sends


def test_another_dispatchers_draw_wins_over_this_batchs(rt: Runtime) -> None:
    """Two dispatchers advancing two enrollments of one customer: the second finds the first's
    row (which, across versions with other weights, may name another variant) and keeps it."""
    definitions = rt.definitions()
    journey: Journey = definitions.journeys["trial"]
    cid = customer_with("offer", prefix="d")
    feed(rt, placed("o-1", START, cid), placed("o-2", START, cid))
    drain_inbox(rt, definitions)
    with rt.factory() as session, session.begin():
        first, second = session.scalars(select(Enrollment).where(
            Enrollment.journey == "trial").order_by(Enrollment.id)).all()
        session.add(ExperimentAssignment(
            journey="trial", experiment="tutorial_offer", version="older", variant="guide",
            customer_id=cid, enrollment_id=first.id, step_key="1", assigned_at=START))
    rt.clock.set(START + days(1))  # type: ignore[attr-defined]
    with rt.factory() as session, session.begin():
        stale = Assignments()  # loaded before the other dispatcher committed
        assert stale.choices(journey, cid)["tutorial_offer"].variant == "offer"
        from aftersale.core.journeys.engine import Facts, Position, advance

        outcome = advance(journey, Position(1), Facts(
            {}, variants=stale.choices(journey, cid)), START + days(1))
        assert not stale.record(session, "trial", cid, second.id, outcome, START + days(1))
        assert stale.assigned[("trial", "tutorial_offer", cid)] == "guide"
        assert stale.choices(journey, cid)["tutorial_offer"].variant == "guide"
    # Through the pipeline: both enrollments send the stored variant, one row stays.
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=12))
    assert {m.template for m in of(rt, cid, "trial") if m.step_key == "1"} == {
        "product_tutorial"}
    assert [(r.variant, r.version) for r in assignments(rt, "trial")] == [("guide", "older")]


def test_preview_says_which_variant_and_why(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = customer_with("offer", prefix="p")
    feed(rt, placed("o-1", START, cid))
    drain_inbox(rt, definitions)
    timeline = preview_journey(rt, "trial", cid)
    assert assignments(rt) == []  # previewing records nothing
    [note] = timeline.variants
    assert (note.experiment, note.variant, note.why) == ("tutorial_offer", "offer", BY_HASH)
    assert (note.template, note.channels) == ("winback", ("email",))
    [tutorial] = [e for e in timeline.entries if e.step == "1"]
    assert tutorial.subject == "Ayşe, size bir hediye"
    assert tutorial.variant == "tutorial_offer: offer"
    run_to(rt, definitions, START + days(1), tick=timedelta(hours=12))
    stored = len(assignments(rt))
    assert preview_journey(rt, "trial", cid).variants[0].why == ASSIGNED_BEFORE
    with rt.factory() as session, session.begin():
        session.add(ExperimentDecision(
            journey="trial", experiment="tutorial_offer",
            version=experiment_of(definitions, "trial").version, outcome="winner",
            variant="guide", decided_at=START + days(1), figures={}))
    decided = preview_journey(rt, "trial", cid)
    assert (decided.variants[0].variant, decided.variants[0].why) == ("guide", DECIDED)
    console = Console(record=True, width=200)
    print_timeline(console, preview_journey(rt, "timing", cid))
    printed = console.export_text()
    assert "experiment survey_timing (path split at step 0): variant" in printed
    assert len(assignments(rt)) == stored


def test_forget_keeps_the_assignment_and_erases_the_rest(rt: Runtime) -> None:
    definitions = rt.definitions()
    cid = customer_with("offer", prefix="fg")
    feed(rt, placed("o-1", START, cid))
    run_to(rt, definitions, START + days(1), tick=timedelta(hours=12))
    with rt.factory() as session, session.begin():
        forget_customer(session, cid, START + days(1))
    [row] = assignments(rt, "trial")
    assert (row.customer_id, row.variant) == (cid, "offer")
    [mail] = [m for m in of(rt, cid, "trial") if m.step_key == "1"]
    assert mail.subject is None and mail.body_text is None


def test_a_winner_named_in_the_yaml_reaches_enrollments_on_the_older_journey_version(
        rt: Runtime, definitions_dirs: tuple[Path, Path]) -> None:
    """Naming the winner changes the journey's version, not the experiment's: a customer who
    enrolled before the edit and reaches the split after it gets the winner, not a draw."""
    journeys, _ = definitions_dirs
    old_definitions = rt.definitions()
    waiting = customer_with("guide", prefix="w")  # the hash says guide; the marketer says offer
    feed(rt, placed("o-1", START, waiting))
    drain_inbox(rt, old_definitions)
    advance_all(rt, old_definitions)  # its day's wait starts on the old journey version
    (journeys / "trial.yaml").write_text(
        trial_yaml().replace("      winner: auto", "      winner: offer"))
    definitions = rt.definitions()
    assert experiment_of(definitions, "trial").version == \
        experiment_of(old_definitions, "trial").version
    assert definitions.journeys["trial"].version != old_definitions.journeys["trial"].version
    run_to(rt, definitions, START + days(2), tick=timedelta(hours=12))
    assert [m.template for m in of(rt, waiting, "trial") if m.step_key == "1"] == ["winback"]
    assert assignments(rt, "trial") == []  # the experiment is over: no draw is recorded
