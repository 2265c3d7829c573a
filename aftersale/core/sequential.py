"""The experiments' decision rule: always-valid comparisons that may be looked at every day.

Pure: no database, no clock. SKELETON: the interface the rest of the product codes against;
the method (a normal-mixture sequential test / confidence sequence) is filled in with its
references and the A/A and power simulations that prove its error rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

#: The error rate the rule promises: a false winner in at most 5% of A/A experiments, however
#: often the results are looked at.
ALPHA = 0.05


@dataclass(frozen=True)
class Arm:
    """One variant's outcomes on the goal's scale: per unit (a customer whose window closed, or
    an answer) a value: 0/1 for a rate, -1/0/+1 for NPS (promoter +1, detractor -1)."""

    name: str
    n: int
    total: float  # sum of the values
    total_sq: float  # sum of their squares

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class State(StrEnum):
    COLLECTING = "collecting"  # some variant has fewer than min_per_variant units
    RUNNING = "running"  # enough units, no variant separated from the control yet
    WINNER = "winner"  # a variant (or the control) is better than the rest, always-valid
    NO_DIFFERENCE = "no_difference"  # the horizon came without a winner


@dataclass(frozen=True)
class Comparison:
    """A variant minus the control, in points (percentage points for a rate, NPS points),
    with the always-valid 95% interval (a confidence sequence: valid at every look)."""

    variant: str
    difference: float
    low: float
    high: float


@dataclass(frozen=True)
class Evaluation:
    state: State
    leader: str | None  # the variant with the best mean so far (None without data)
    winner: str | None  # set when state is WINNER
    comparisons: tuple[Comparison, ...]  # one per non-control variant, in YAML order
    needed: int  # min_per_variant
    smallest: int  # the fewest units any variant has


def evaluate(arms: Sequence[Arm], min_per_variant: int, horizon_reached: bool,
             alpha: float = ALPHA) -> Evaluation:
    """Judge an experiment now; ``arms[0]`` is the control. Safe to call at every look."""
    raise NotImplementedError


def verdict(evaluation: Evaluation, goal_words: str) -> str:
    """The plain sentence: "B leads; no decision yet: 212 of 500 needed", "B wins: +4.1 points
    of repeat purchase (95% CI +1.2 to +7.0)", "no difference detected at the horizon"."""
    raise NotImplementedError
