"""How each experiment is doing: per variant, who was assigned, what they were sent, what
people opened and clicked, the goal's figure, the difference to the control with its
always-valid 95% interval and the verdict in words.

Only the current version of each experiment counts (an edit starts a new one; people assigned
before keep their variant but are not mixed into the new figures). Outcomes are measured from
each customer's own ``assigned_at`` within the goal's window:

- repeat_purchase: another purchase (:func:`aftersale.metrics.anchors.is_purchase`) placed in
  (assigned_at, assigned_at + within]; click: a person's click (the funnel's definition, never
  a scanner's) on one of the experiment's messages in the window; response_rate: any survey
  answer in the window. These three count only customers whose window has closed.
- nps / csat: the customer's first answer of that kind in the window (NPS +1 promoter,
  0 passive, -1 detractor; CSAT 1 for 4-5), over the customers who answered.

Three or four grouped queries per experiment (assignments, messages, goal), each returning one
row per variant (and score): nothing per customer comes back to Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table
from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from aftersale.core.experiments import Experiment, GoalKind, WinnerRule
from aftersale.core.journeys.model import Journey
from aftersale.core.sequential import Arm, Evaluation, State, evaluate, verdict
from aftersale.core.survey_scales import CSAT_SATISFIED_MIN, NPS_DETRACTOR_MAX, NPS_PROMOTER_MIN
from aftersale.db.models import (
    DeliveryEvent,
    Enrollment,
    ExperimentAssignment,
    ExperimentDecision,
    Message,
    SurveyResponse,
)
from aftersale.metrics.anchors import is_purchase, orders_t, seconds_between
from aftersale.metrics.journeys import STAGES

SCHEMA_VERSION = 1

A = ExperimentAssignment


class HasJourneys(Protocol):
    """The definitions (``aftersale.pipeline.definitions.Definitions``), as far as read here."""

    @property
    def journeys(self) -> Mapping[str, Journey]: ...


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class GoalFigure(_Out):
    """The goal for one variant: ``value`` = 100 x numerator / denominator (percent for a rate,
    NPS points for nps), null when the denominator is 0. The numerator is the sum of the units'
    values: customers who bought again / answered / clicked, CSAT answers of 4-5, or promoters
    minus detractors."""

    value: float | None
    numerator: int
    denominator: int
    promoters: int | None = None  # nps only
    detractors: int | None = None  # nps only


class Difference(_Out):
    """This variant minus the control in points, with the always-valid 95% interval."""

    difference: float
    ci_low: float
    ci_high: float


class VariantResult(_Out):
    name: str
    weight: float  # percent
    control: bool
    assigned: int  # assignments of the current version
    sent: int  # in-scope messages sent to them at or after assignment
    opened: int  # of those, opened by a person (the funnel's rule: no machine opens)
    clicked: int  # of those, clicked by a person (no scanner clicks)
    goal: GoalFigure
    vs_control: Difference | None  # None for the control


class DecisionResult(_Out):
    decided_at: datetime
    outcome: str  # winner | no_difference
    variant: str  # what new arrivals get
    version: str
    verdict: str  # the verdict the decision was taken on
    figures: dict[str, Any]  # the ExperimentResult then, as JSON


class ExperimentResult(_Out):
    journey: str
    experiment: str
    version: str
    kind: str  # message | path
    step_key: str
    goal: str  # "repeat purchase within 30 days"
    goal_kind: str
    within_days: float
    min_per_variant: int
    max_days: int
    rule: str  # auto | manual
    first_assigned_at: datetime | None
    horizon_at: datetime | None  # first assignment + max_days
    state: str  # collecting | running | winner | no_difference | ended (named in the YAML)
    leader: str | None
    winner: str | None  # the decided or named variant
    verdict: str  # plain words; a stored decision's or the marketer's ending wins
    evaluation_verdict: str  # what the rule says about today's figures
    decision: DecisionResult | None
    ended_by_marketer: str | None  # ``winner: <variant>`` in the YAML
    variants: list[VariantResult]


class ExperimentsReport(_Out):
    schema_version: int = SCHEMA_VERSION
    as_of: datetime
    experiments: list[ExperimentResult]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def current_experiments(definitions: HasJourneys, journey: str | None = None
                        ) -> list[Experiment]:
    """Every experiment of the current definitions (journeys by name, then program order)."""
    return [e for name, j in sorted(definitions.journeys.items())
            if journey is None or name == journey for e in j.experiments()]


def experiment_results(session: Session, definitions: HasJourneys, now: datetime,
                       journey: str | None = None) -> ExperimentsReport:
    return ExperimentsReport(as_of=now, experiments=[
        result_of(session, e, now) for e in current_experiments(definitions, journey)])


def result_of(session: Session, experiment: Experiment, now: datetime) -> ExperimentResult:
    assigned, first_at = _assigned(session, experiment)
    engagement = _engagement(session, experiment, now)
    goals = _goal(session, experiment, now)
    arms = [_arm(v.name, goals.get(v.name), experiment.goal.kind) for v in experiment.variants]
    horizon = first_at + timedelta(days=experiment.max_days) if first_at else None
    evaluation = evaluate(arms, experiment.min_per_variant,
                          horizon_reached=horizon is not None and now >= horizon)
    said = verdict(evaluation, experiment.goal.words)
    decision = _decision(session, experiment)
    comparisons = {c.variant: c for c in evaluation.comparisons}
    variants = []
    for i, variant in enumerate(experiment.variants):
        sent, opened, clicked = engagement.get(variant.name, (0, 0, 0))
        c = comparisons.get(variant.name)
        variants.append(VariantResult(
            name=variant.name, weight=variant.weight, control=i == 0,
            assigned=assigned.get(variant.name, 0), sent=sent, opened=opened, clicked=clicked,
            goal=_figure(experiment.goal.kind, goals.get(variant.name)),
            vs_control=None if c is None or i == 0 else Difference(
                difference=round(c.difference, 2), ci_low=round(c.low, 2),
                ci_high=round(c.high, 2))))
    state, winner, shown = _standing(experiment, evaluation, said, decision)
    return ExperimentResult(
        journey=experiment.journey, experiment=experiment.name, version=experiment.version,
        kind=experiment.kind, step_key=experiment.step_key, goal=experiment.goal.describe(),
        goal_kind=experiment.goal.kind.value,
        within_days=experiment.goal.within / timedelta(days=1),
        min_per_variant=experiment.min_per_variant, max_days=experiment.max_days,
        rule=experiment.rule.value, first_assigned_at=first_at, horizon_at=horizon,
        state=state, leader=evaluation.leader, winner=winner, verdict=shown,
        evaluation_verdict=said, decision=decision, ended_by_marketer=experiment.chosen,
        variants=variants)


def _standing(experiment: Experiment, evaluation: Evaluation, said: str,
              decision: DecisionResult | None) -> tuple[str, str | None, str]:
    """(state, winner, verdict shown): the marketer's ending, else a stored decision, else the
    rule's reading of today's figures."""
    if experiment.chosen is not None:
        return ("ended", experiment.chosen,
                f"ended by the marketer: {experiment.chosen} for everyone new (today's "
                f"figures: {said})")
    if decision is not None:
        return (decision.outcome, decision.variant if decision.outcome == "winner" else None,
                f"decided {decision.decided_at:%Y-%m-%d}: {decision.verdict}; "
                f"{decision.variant} for everyone new")
    if experiment.rule is WinnerRule.MANUAL and evaluation.state in (State.WINNER,
                                                                     State.NO_DIFFERENCE):
        return (evaluation.state.value, evaluation.winner,
                f"{said} (winner: manual: name it in the YAML to end the experiment)")
    return evaluation.state.value, evaluation.winner, said


# --- the queries -------------------------------------------------------------------------------


def _current(experiment: Experiment) -> ColumnElement[bool]:
    return and_(A.journey == experiment.journey, A.experiment == experiment.name,
                A.version == experiment.version)


def _in_scope(step_key: Any, experiment: Experiment) -> ColumnElement[bool]:
    """SQL of :meth:`Experiment.in_scope` (a prefix compare: ``_`` in keys is no wildcard)."""
    prefix = f"{experiment.step_key}."
    return or_(step_key == experiment.step_key,
               func.substr(step_key, 1, len(prefix)) == prefix)


def _assigned(session: Session, experiment: Experiment
              ) -> tuple[dict[str, int], datetime | None]:
    rows = session.execute(
        select(A.variant, func.count().label("n"), func.min(A.assigned_at).label("first"))
        .where(_current(experiment)).group_by(A.variant)).all()
    firsts = [r.first for r in rows if r.first is not None]
    return {r.variant: int(r.n) for r in rows}, (min(firsts) if firsts else None)


def _reached(kinds: Iterable[str], now: datetime) -> ColumnElement[bool]:
    return exists().where(DeliveryEvent.message_id == Message.id,
                          DeliveryEvent.kind.in_(list(kinds)), DeliveryEvent.occurred_at <= now)


def _engagement(session: Session, experiment: Experiment, now: datetime
                ) -> dict[str, tuple[int, int, int]]:
    """Per variant: in-scope messages sent to the assigned enrollments at or after assignment,
    and how many of them a person opened and clicked (the funnel's stages)."""
    opened = _reached((k.value for k in STAGES["opened"]), now)
    clicked = _reached((k.value for k in STAGES["clicked"]), now)
    rows = session.execute(
        select(A.variant, func.count(Message.id).label("sent"),
               func.coalesce(func.sum(case((opened, 1), else_=0)), 0).label("opened"),
               func.coalesce(func.sum(case((clicked, 1), else_=0)), 0).label("clicked"))
        .join(Message, Message.enrollment_id == A.enrollment_id)
        .where(_current(experiment), Message.status == "sent",
               Message.sent_at >= A.assigned_at, Message.sent_at <= now,
               _in_scope(Message.step_key, experiment))
        .group_by(A.variant)).all()
    return {r.variant: (int(r.sent), int(r.opened), int(r.clicked)) for r in rows}


def _in_window(at: Any, experiment: Experiment, now: datetime) -> ColumnElement[bool]:
    """assigned_at < at <= assigned_at + within, and by ``now``."""
    seconds = int(experiment.goal.within.total_seconds())
    start: Any = A.assigned_at
    return and_(at > start, at <= now, seconds_between(start, at) <= seconds)


class _Tally:
    """One variant's units: n, the sum of their values and of the squares; NPS bands."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0
        self.total_sq = 0
        self.promoters = 0
        self.detractors = 0

    def add(self, value: int, count: int) -> None:
        self.n += count
        self.total += value * count
        self.total_sq += value * value * count
        if value > 0:
            self.promoters += count
        elif value < 0:
            self.detractors += count


def _goal(session: Session, experiment: Experiment, now: datetime) -> dict[str, _Tally]:
    kind = experiment.goal.kind
    tallies: dict[str, _Tally] = {}
    if kind in (GoalKind.NPS, GoalKind.CSAT):
        for row in session.execute(_first_answers(experiment, now)):
            value = _score_value(kind, int(row.score))
            tallies.setdefault(row.variant, _Tally()).add(value, int(row.n))
        return tallies
    outcome = _binary_outcome(experiment, now)
    closed = A.assigned_at <= now - experiment.goal.within
    rows = session.execute(
        select(A.variant, func.count().label("n"),
               func.coalesce(func.sum(case((outcome, 1), else_=0)), 0).label("hits"))
        .where(_current(experiment), closed).group_by(A.variant)).all()
    for row in rows:
        tally = tallies.setdefault(row.variant, _Tally())
        tally.add(1, int(row.hits))
        tally.add(0, int(row.n) - int(row.hits))
    return tallies


def _binary_outcome(experiment: Experiment, now: datetime) -> ColumnElement[bool]:
    kind = experiment.goal.kind
    if kind is GoalKind.REPEAT_PURCHASE:
        later = orders_t.alias("later")
        # Not the order the journey is about, whatever the clocks say of its time.
        anchor = select(Enrollment.order_id).where(Enrollment.id == A.enrollment_id) \
            .correlate_except(Enrollment).scalar_subquery()
        return exists().where(later.c.customer_id == A.customer_id,
                              _in_window(later.c.placed_at, experiment, now),
                              later.c.id != func.coalesce(anchor, ""),
                              is_purchase(later, now))
    if kind is GoalKind.RESPONSE_RATE:
        return exists().where(SurveyResponse.customer_id == A.customer_id,
                              _in_window(SurveyResponse.responded_at, experiment, now))
    # click: a person's click on one of the experiment's messages to this enrollment
    return exists().where(
        Message.enrollment_id == A.enrollment_id, _in_scope(Message.step_key, experiment),
        DeliveryEvent.message_id == Message.id,
        DeliveryEvent.kind.in_([k.value for k in STAGES["clicked"]]),
        _in_window(DeliveryEvent.occurred_at, experiment, now))


def _first_answers(experiment: Experiment, now: datetime) -> Any:
    """Per (variant, score): the assigned customers whose first answer of the goal's kind in
    their window was that score."""
    first = (select(SurveyResponse.score)
             .where(SurveyResponse.customer_id == A.customer_id,
                    SurveyResponse.kind == experiment.goal.kind.value,
                    _in_window(SurveyResponse.responded_at, experiment, now))
             .order_by(SurveyResponse.responded_at, SurveyResponse.id)
             .limit(1).scalar_subquery())
    # OFFSET 0 keeps SQLite from flattening this into the grouping query, where the look-up
    # would run twice per row (as in aftersale.metrics.journeys).
    per = (select(A.variant, first.label("score")).where(_current(experiment))
           .offset(0).subquery("per_assignment"))
    return (select(per.c.variant, per.c.score, func.count().label("n"))
            .where(per.c.score.is_not(None)).group_by(per.c.variant, per.c.score))


def _score_value(kind: GoalKind, score: int) -> int:
    """The unit of an answer: NPS +1 promoter / 0 passive / -1 detractor; CSAT 1 for 4-5."""
    if kind is GoalKind.NPS:
        return 1 if score >= NPS_PROMOTER_MIN else (-1 if score <= NPS_DETRACTOR_MAX else 0)
    return 1 if score >= CSAT_SATISFIED_MIN else 0


def _arm(name: str, tally: _Tally | None, kind: GoalKind) -> Arm:
    # An NPS answer runs from -1 (detractor) to +1: the rule's smoothing adds a pseudo-answer
    # at each end of the scale, so it must know the low end (a rate's is 0).
    low = -1.0 if kind is GoalKind.NPS else 0.0
    if tally is None:
        return Arm(name, 0, 0.0, 0.0, low=low)
    return Arm(name, tally.n, float(tally.total), float(tally.total_sq), low=low)


def _figure(kind: GoalKind, tally: _Tally | None) -> GoalFigure:
    t = tally or _Tally()
    value = None if t.n == 0 else round(100.0 * t.total / t.n, 1)
    nps = kind is GoalKind.NPS
    return GoalFigure(value=value, numerator=t.total, denominator=t.n,
                      promoters=t.promoters if nps else None,
                      detractors=t.detractors if nps else None)


def _decision(session: Session, experiment: Experiment) -> DecisionResult | None:
    row = session.scalars(select(ExperimentDecision).where(
        ExperimentDecision.journey == experiment.journey,
        ExperimentDecision.experiment == experiment.name,
        ExperimentDecision.version == experiment.version)).first()
    if row is None:
        return None
    return DecisionResult(decided_at=row.decided_at, outcome=row.outcome, variant=row.variant,
                          version=row.version, verdict=str(row.figures.get("verdict", "")),
                          figures=row.figures)


# --- shown to people (the CLI table, the artifact, the report) ---------------------------------

#: Table columns, in the order a marketer reads them.
COLUMNS = ("variant", "weight", "assigned", "sent", "opened", "clicked", "goal",
           "vs control (95% CI)")


def goal_text(figure: GoalFigure, kind: str) -> str:
    """'12.5% (25/200)', 'NPS +20.0 (n=40)', '–' without data."""
    if figure.value is None:
        return "–"
    if kind == GoalKind.NPS.value:
        return f"NPS {figure.value:+.1f} (n={figure.denominator})"
    return f"{figure.value:.1f}% ({figure.numerator}/{figure.denominator})"


def difference_text(variant: VariantResult) -> str:
    if variant.control:
        return "control"
    d = variant.vs_control
    if d is None:
        return "–"
    return f"{d.difference:+.1f} ({d.ci_low:+.1f} to {d.ci_high:+.1f})"


def rows(result: ExperimentResult) -> list[list[str]]:
    """One row of :data:`COLUMNS` per variant, as text."""
    return [[v.name, f"{v.weight:g}%", str(v.assigned), str(v.sent), str(v.opened),
             str(v.clicked), goal_text(v.goal, result.goal_kind), difference_text(v)]
            for v in result.variants]


def title(result: ExperimentResult) -> str:
    return (f"{result.journey} / {result.experiment} (version {result.version}, "
            f"{result.goal}, winner: {result.rule})")


def markdown(report: ExperimentsReport) -> str:
    """The compute-metrics artifact: per experiment its table and its verdict."""
    lines = [f"# Experiments as of {report.as_of:%Y-%m-%d %H:%M} UTC", ""]
    if not report.experiments:
        return "\n".join([*lines, "No experiment in the current journeys."])
    for result in report.experiments:
        lines += [f"## {title(result)}", "", "| " + " | ".join(COLUMNS) + " |",
                  "|---|" + "---:|" * (len(COLUMNS) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
        lines += ["", f"**Verdict:** {result.verdict}", ""]
    return "\n".join(lines).rstrip() + "\n"


def print_table(console: Console, report: ExperimentsReport) -> None:
    """``aftersale experiments``: per experiment a table, the verdict and the decision."""
    if not report.experiments:
        console.print("No experiment in the current journeys.")
    for result in report.experiments:
        table = Table(title=title(result), title_justify="left")
        for i, column in enumerate(COLUMNS):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows(result):
            table.add_row(*row)
        console.print(table)
        console.print(f"Verdict: {result.verdict}", highlight=False)
        if result.decision is not None:
            d = result.decision
            console.print(f"Decision: {d.outcome}, {d.variant} for everyone new, decided "
                          f"{d.decided_at:%Y-%m-%d %H:%M} UTC (version {d.version})",
                          highlight=False)
        console.print()
