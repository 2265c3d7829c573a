"""Experiments inside journeys: what is being compared, on which goal, and who gets what.

Pure: no database, no clock. A journey declares an experiment on a ``send`` step
(``variants:``, a message split) or as a ``split:`` step (named paths of steps); this module
holds the compiled experiment and the one rule that decides which variant a customer gets.

Assignment is a hash of journey, experiment and customer (never of the version): the same
customer gets the same variant on every entry and on every machine, and the bucket is
independent of the holdout's hash, whose customers never reach an experiment at all. The
first variant is the control the others are compared to.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from aftersale.core.durations import parse_duration

#: Buckets of the assignment hash: weights are honoured to 0.01 percentage points.
BUCKETS = 10_000


class GoalKind(StrEnum):
    REPEAT_PURCHASE = "repeat_purchase"  # bought again within the window (rate)
    NPS = "nps"  # mean of +100/0/-100 over the NPS answers given within the window
    CSAT = "csat"  # share of CSAT answers of 4 or 5 within the window (rate)
    RESPONSE_RATE = "response_rate"  # answered any survey within the window (rate)
    CLICK = "click"  # a person (not a scanner) clicked the experiment's messages (rate)


#: How long after assignment an outcome counts when the YAML does not say. Repeat purchase has
#: no default: "within how long" is the question the marketer must answer.
DEFAULT_WITHIN: Mapping[GoalKind, timedelta] = {
    GoalKind.NPS: timedelta(days=30),
    GoalKind.CSAT: timedelta(days=30),
    GoalKind.RESPONSE_RATE: timedelta(days=14),
    GoalKind.CLICK: timedelta(days=7),
}

#: What a goal's figure is called in sentences ("+4.1 points of repeat purchase").
GOAL_WORDS: Mapping[GoalKind, str] = {
    GoalKind.REPEAT_PURCHASE: "repeat purchase",
    GoalKind.NPS: "NPS",
    GoalKind.CSAT: "CSAT",
    GoalKind.RESPONSE_RATE: "response rate",
    GoalKind.CLICK: "click rate",
}

_GOAL = re.compile(r"^\s*([a-z_]+)\s*(?:within\s+(.+?))?\s*$")


@dataclass(frozen=True)
class Goal:
    kind: GoalKind
    within: timedelta  # outcomes count from assignment until assignment + within

    @property
    def per_answer(self) -> bool:
        """NPS and CSAT are measured over the people who answered, the others over everyone
        assigned whose window has closed."""
        return self.kind in (GoalKind.NPS, GoalKind.CSAT)

    @property
    def words(self) -> str:
        return GOAL_WORDS[self.kind]

    def describe(self) -> str:
        return f"{self.words} within {self.within.days} days"


def parse_goal(text: object) -> Goal:
    """``repeat_purchase within 60d``, ``nps``, ``click within 3d``; ValueError says what to
    write."""
    kinds = ", ".join(k.value for k in GoalKind)
    match = _GOAL.match(text) if isinstance(text, str) else None
    if match is None or match.group(1) not in {k.value for k in GoalKind}:
        raise ValueError(f"goal '{text}' is not something aftersale can measure; use one of "
                         f"{kinds} (e.g. 'repeat_purchase within 60d')")
    kind = GoalKind(match.group(1))
    if match.group(2) is None:
        if kind not in DEFAULT_WITHIN:
            raise ValueError("repeat_purchase needs a window: write e.g. "
                             "'repeat_purchase within 60d'")
        return Goal(kind, DEFAULT_WITHIN[kind])
    return Goal(kind, parse_duration(match.group(2)))


class WinnerRule(StrEnum):
    AUTO = "auto"  # the sequential rule decides; new entrants then get the winner
    MANUAL = "manual"  # results only; the marketer ends it by naming the winner in the YAML


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float  # percent of the customers who reach the experiment; the weights sum to 100
    # Message split: what this variant changes on the send step (None: the step's own).
    template: str | None = None
    channels: tuple[str, ...] | None = None
    # Subject line per locale ("*": every locale), a template string like the content's own.
    subject: Mapping[str, str] | None = None
    # Path split: index in the journey's program where this variant's steps begin.
    start: int | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    journey: str
    step_key: str  # the send or split step; messages in its scope have this key or key.*
    kind: str  # "message" (variants on a send step) or "path" (a split step)
    variants: tuple[Variant, ...]
    goal: Goal
    min_per_variant: int
    max_days: int  # the horizon, counted from the version's first assignment
    rule: WinnerRule
    # ``winner: <variant>`` in the YAML: the marketer ended it; everybody new gets this one.
    chosen: str | None = None
    version: str = ""  # content hash of the experiment's definition (``winner:`` left out)
    line: int = 0  # where it is declared, for messages

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"experiment {self.name} has no variant {name!r}")

    def in_scope(self, step_key: str) -> bool:
        """Whether a message of this step belongs to the experiment (its own send step, or any
        step inside the split's paths)."""
        return step_key == self.step_key or step_key.startswith(f"{self.step_key}.")


@dataclass(frozen=True)
class Choice:
    """The variant an enrollment gets at an experiment, and whether that was the random draw
    (recorded as an assignment and counted in the results) or a decided winner (not counted:
    after a decision the split is over)."""

    variant: str
    randomized: bool


def hashed_variant(journey: str, experiment: str, customer_id: str,
                   variants: tuple[Variant, ...]) -> str:
    """The variant by weight for this customer: deterministic across processes and machines
    (SHA-256, not Python's salted ``hash``)."""
    digest = hashlib.sha256(f"experiment:{journey}:{experiment}:{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % BUCKETS
    edge = 0.0
    for variant in variants:
        edge += variant.weight * BUCKETS / 100
        if bucket < edge:
            return variant.name
    # Weights sum to 100, so only rounding reaches here: the last variant with any weight.
    return next(v.name for v in reversed(variants) if v.weight > 0)


def choose(experiment: Experiment, customer_id: str, assigned: str | None,
           decided: str | None) -> Choice:
    """Which variant this customer gets now.

    - A winner named in the YAML (``winner: b``) or decided by the rule (``decided``): the
      experiment is over, every new arrival gets it (in-flight paths finish where they are:
      their position is already inside a path).
    - Else the variant the customer was given before (re-entry, or a later version that still
      has it): an edit never moves people already assigned.
    - Else the weighted hash."""
    if experiment.chosen is not None:
        return Choice(experiment.chosen, randomized=False)
    if decided is not None and decided in experiment.names:
        return Choice(decided, randomized=False)
    if assigned is not None and assigned in experiment.names:
        return Choice(assigned, randomized=True)
    return Choice(hashed_variant(experiment.journey, experiment.name, customer_id,
                                 experiment.variants), randomized=True)
