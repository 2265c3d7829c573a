"""Experiment variants for a batch of enrollments, and each customer's first draw stored once.

The variant itself is :func:`aftersale.core.experiments.choose`; this module gives it what the
database knows: the variant a customer was assigned before (``experiment_assignments``, one row
per journey, experiment and customer, whatever the version) and the decided winner of the
enrollment's own version (``experiment_decisions``). Both are loaded per batch in a few
queries, and the batch's map is updated as it records, so two enrollments of one customer in a
batch agree.

Recording is an insert that ignores a conflict: two dispatchers (on PostgreSQL) advancing two
enrollments of one customer at once cannot both store a draw; the second waits for the first
to commit and then reads its row. If that row names another variant (the weights changed
between the versions the two enrollments run), the caller advances its enrollment again with
the stored one, so a customer never gets two variants of one experiment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.core.experiments import Choice, Experiment, choose
from aftersale.core.journeys.engine import Assigned, Outcome
from aftersale.core.journeys.model import Journey
from aftersale.db.lookup import in_chunks
from aftersale.db.models import ExperimentAssignment, ExperimentDecision
from aftersale.db.upsert import insert

Key = tuple[str, str, str]  # (journey, experiment, customer id)

#: Why a customer gets a variant, in the order :func:`choose` looks (for ``aftersale preview``).
NAMED_IN_YAML = "the winner named in the YAML"
DECIDED = "the decided winner of this version"
ASSIGNED_BEFORE = "assigned before"
BY_HASH = "by hash"


@dataclass
class Assignments:
    """What one batch knows about experiments: stored first draws and decided winners."""

    assigned: dict[Key, str] = field(default_factory=dict)
    # (journey, experiment, version) -> the variant new arrivals get after the decision
    decided: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (journey, experiment, version) -> the winner the current YAML names. Naming it changes
    # the journey's version but not the experiment's: enrollments still on an older journey
    # version that have not reached the experiment must get it too, not a random draw.
    named: dict[tuple[str, str, str], str] = field(default_factory=dict)
    recorded: int = 0  # rows this batch stored

    @classmethod
    def load(cls, session: Session, customer_ids: Iterable[str],
             journeys: Iterable[Journey], current: Iterable[Journey] = ()) -> Assignments:
        """The assignments of these customers and every decision, for these journeys (the
        versions the enrollments run), and the winners named in the ``current`` definitions;
        two queries (more only past a thousand customers), none for a batch without
        experiments."""
        names = {j.name for j in journeys if j.experiments()}
        found = cls()
        for journey in current:
            for experiment in journey.experiments():
                if experiment.chosen is not None:
                    found.named[(journey.name, experiment.name, experiment.version)] = \
                        experiment.chosen
        if not names:
            return found
        table = ExperimentAssignment
        query = select(table.journey, table.experiment, table.customer_id, table.variant) \
            .where(table.journey.in_(sorted(names)))
        for chunk in in_chunks(customer_ids):
            for journey, experiment, customer_id, variant in session.execute(
                    query.where(table.customer_id.in_(chunk))):
                found.assigned[(journey, experiment, customer_id)] = variant
        decision = ExperimentDecision
        for journey, experiment, version, variant in session.execute(
                select(decision.journey, decision.experiment, decision.version, decision.variant)
                .where(decision.journey.in_(sorted(names)))):
            found.decided[(journey, experiment, version)] = variant
        return found

    def choice(self, journey: Journey, experiment: Experiment, customer_id: str) -> Choice:
        version = (journey.name, experiment.name, experiment.version)
        return choose(experiment, customer_id,
                      self.assigned.get((journey.name, experiment.name, customer_id)),
                      self.named.get(version) or self.decided.get(version))

    def choices(self, journey: Journey, customer_id: str) -> dict[str, Choice]:
        """``Facts.variants``: the choice at every experiment of the journey (the version the
        enrollment runs)."""
        return {e.name: self.choice(journey, e, customer_id) for e in journey.experiments()}

    def why(self, journey: Journey, experiment: Experiment, customer_id: str) -> str:
        """Which of :func:`choose`'s rules gave this customer their variant."""
        choice = self.choice(journey, experiment, customer_id)
        if experiment.chosen is not None or \
                (journey.name, experiment.name, experiment.version) in self.named:
            return NAMED_IN_YAML
        if not choice.randomized:
            return DECIDED
        before = self.assigned.get((journey.name, experiment.name, customer_id))
        return ASSIGNED_BEFORE if before == choice.variant else BY_HASH

    def record(self, session: Session, journey: str, customer_id: str, enrollment_id: int,
               outcome: Outcome, now: datetime) -> bool:
        """Store the outcome's random draws that are the customer's first. False when another
        dispatcher stored a different variant first: this map now has it, and the caller
        must advance the enrollment again (nothing of this outcome may be applied)."""
        agreed = True
        for action in outcome.actions:
            if not isinstance(action, Assigned) or not action.randomized:
                continue
            key = (journey, action.experiment, customer_id)
            if key in self.assigned:  # a first draw exists: it is the one that counts
                continue
            # RETURNING, not the row count: psycopg reports -1 for an INSERT ... ON CONFLICT.
            stored = session.execute(
                insert(session, ExperimentAssignment).values(
                    journey=journey, experiment=action.experiment, version=action.version,
                    variant=action.variant, customer_id=customer_id,
                    enrollment_id=enrollment_id, step_key=action.step_key, assigned_at=now)
                .on_conflict_do_nothing(index_elements=["journey", "experiment", "customer_id"])
                .returning(ExperimentAssignment.id)).first()
            if stored is not None:
                self.assigned[key] = action.variant
                self.recorded += 1
                continue
            # Another dispatcher's row, committed meanwhile (the insert waited for it).
            variant = session.scalar(select(ExperimentAssignment.variant).where(
                ExperimentAssignment.journey == journey,
                ExperimentAssignment.experiment == action.experiment,
                ExperimentAssignment.customer_id == customer_id))
            assert variant is not None, "a conflicting assignment row exists"
            self.assigned[key] = variant
            agreed = agreed and variant == action.variant
        return agreed

