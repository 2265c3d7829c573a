"""Ending ``winner: auto`` experiments: once the rule finds a winner (or the horizon comes
without one), the decision is stored for the experiment's version and the team is alerted.

A decision is stored once per version (``uq_experiment_decision``): two deciders racing store
one, and only the one that stored it raises the alert, in the same transaction, so there is
never a decision without its alert nor an alert twice. From then on new arrivals get the
decided variant (:func:`aftersale.core.experiments.choose`); people already in another variant
finish it. Called by the compute-metrics flow (and the demo), never by ``aftersale
experiments``, which only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from aftersale.core.experiments import Experiment, WinnerRule
from aftersale.core.sequential import State
from aftersale.db.models import AlertRecord, ExperimentDecision
from aftersale.db.upsert import insert
from aftersale.metrics.experiments import (
    ExperimentResult,
    HasJourneys,
    current_experiments,
    result_of,
)

KIND = "experiment_decided"  # the alert's kind (content/alert_experiment_decided)
DECIDING = (State.WINNER.value, State.NO_DIFFERENCE.value)


@dataclass(frozen=True)
class Decided:
    """A decision this call stored."""

    journey: str
    experiment: str
    version: str
    outcome: str  # winner | no_difference
    variant: str
    verdict: str


def alert_step_key(experiment: Experiment) -> str:
    """The alert's key (``alerts.step_key`` holds 64 characters; the details name it whole)."""
    return f"experiment:{experiment.journey}:{experiment.name}:{experiment.version}"[:64]


def decide(session: Session, definitions: HasJourneys, now: datetime) -> list[Decided]:
    """Decide every ``winner: auto`` experiment of the current definitions whose current
    version is undecided and whose evaluation now is a winner or no difference at the horizon
    (then the control stays). Idempotent: a decided version is never decided again. Runs in
    the caller's transaction."""
    decided = []
    for experiment in current_experiments(definitions):
        if experiment.rule is not WinnerRule.AUTO or experiment.chosen is not None:
            continue
        result = result_of(session, experiment, now)
        if result.decision is not None or result.state not in DECIDING:
            continue
        variant = result.winner if result.state == State.WINNER.value else None
        outcome = _store(session, experiment, result, variant or experiment.control.name, now)
        if outcome is not None:
            decided.append(outcome)
    return decided


def _store(session: Session, experiment: Experiment, result: ExperimentResult,
           variant: str, now: datetime) -> Decided | None:
    figures = json.loads(result.model_dump_json())
    stored = session.execute(
        insert(session, ExperimentDecision.__table__)
        .values(journey=experiment.journey, experiment=experiment.name,
                version=experiment.version, outcome=result.state, variant=variant,
                decided_at=now, figures=figures)
        .on_conflict_do_nothing(index_elements=["journey", "experiment", "version"])
        .returning(ExperimentDecision.__table__.c.id)).first()
    if stored is None:
        return None  # another decider stored it first: theirs is the alert
    session.add(AlertRecord(
        enrollment_id=None, customer_id=None, order_id=None, kind=KIND,
        step_key=alert_step_key(experiment), created_at=now,
        details={"experiment": _alert_details(result, variant, now),
                 "journey": experiment.journey}))
    session.flush()
    return Decided(experiment.journey, experiment.name, experiment.version, result.state,
                   variant, result.verdict)


def _alert_details(result: ExperimentResult, variant: str, now: datetime) -> dict[str, object]:
    """What the team's e-mail and webhook show: the decision and the figures per variant."""
    return {
        "journey": result.journey, "name": result.experiment, "version": result.version,
        "outcome": result.state, "variant": variant, "decided_at": now.isoformat(),
        "goal": result.goal, "verdict": result.verdict,
        "variants": [{
            "name": v.name, "control": v.control, "assigned": v.assigned, "sent": v.sent,
            "opened": v.opened, "clicked": v.clicked, "goal": v.goal.value,
            "numerator": v.goal.numerator, "denominator": v.goal.denominator,
            "difference": None if v.vs_control is None else v.vs_control.difference,
            "ci_low": None if v.vs_control is None else v.vs_control.ci_low,
            "ci_high": None if v.vs_control is None else v.vs_control.ci_high,
        } for v in result.variants],
    }
