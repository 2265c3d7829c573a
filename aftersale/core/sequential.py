"""The experiments' decision rule: always-valid comparisons that may be looked at every day.

Pure: no database, no clock. A fixed-sample 95% test promises 5% false winners only if it is
read once, at a size fixed in advance; read every day and stopped at the first "significant"
day, its false winners pile up (the A/A simulation in tests/unit/test_experiment_simulations.py
shows it). This rule instead compares each variant with the control through a *confidence
sequence*: an interval that covers the true difference at every look at once, with
probability 95%, so a winner is declared only when a whole interval leaves zero.

The interval is the normal-mixture one, the inverted mixture sequential probability ratio test
(mSPRT):

- Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B Tests: Why it matters, and what to do
  about it", KDD 2017, pp. 1517-1525 (the mSPRT with a N(0, τ²) mixture over the difference);
  Johari, Pekelis & Walsh (2022), "Always Valid Inference: Continuous Monitoring of A/B Tests",
  Operations Research 70(3):1806-1821.
- Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
  confidence sequences", Annals of Statistics 49(2):1055-1080 (the normal-mixture boundary and
  the rule that tunes it to be tightest at a chosen size).
- Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024), "Time-uniform central limit theory and
  asymptotic confidence sequences", Annals of Statistics 52(6):2613-2640: the same
  boundary with the variance estimated from the data stays valid asymptotically.

With d̂ = mean(variant) - mean(control), V = s²_A/n_A + s²_B/n_B and mixing variance τ², the
mixture likelihood ratio sqrt(V/(V+τ²))·exp(τ²(d̂-d)²/(2V(V+τ²))) reaches 1/α exactly when

    |d̂ - d| >= sqrt( V(V+τ²)/τ² · (2 log(1/α) + log((V+τ²)/V)) )

so that radius around d̂ is the interval, at level α for both sides together (Ville's
inequality bounds the two-sided mixture's crossing by α; splitting α into α/2 per side, as
some implementations do, would only be conservative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

#: The error rate the rule promises: a false winner in at most 5% of A/A experiments, however
#: often the results are looked at.
ALPHA = 0.05

#: Differences are shown in points: percentage points for a rate, NPS points for NPS (an NPS
#: answer is -1/0/+1, so x100 is the usual -100..+100 scale). Same scale as metrics/stats.py.
POINTS = 100.0


@dataclass(frozen=True)
class Arm:
    """One variant's outcomes on the goal's scale: per unit (a customer whose window closed, or
    an answer) a value: 0/1 for a rate, -1/0/+1 for NPS (promoter +1, detractor -1).

    ``low`` is the worst value a unit can take (0 for a rate, -1 for NPS; the best is 1 on
    both): it only shapes the smoothed variance (:func:`smoothed_variance`)."""

    name: str
    n: int
    total: float  # sum of the values
    total_sq: float  # sum of their squares
    low: float = 0.0

    @classmethod
    def rate(cls, name: str, successes: int, n: int) -> Arm:
        return cls(name, n, float(successes), float(successes))

    @classmethod
    def nps(cls, name: str, promoters: int, detractors: int, n: int) -> Arm:
        return cls(name, n, float(promoters - detractors), float(promoters + detractors), low=-1.0)

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
    # One per non-control variant, in YAML order, once it and the control both have a unit
    # (a difference needs two means); look one up by name with :meth:`comparison`.
    comparisons: tuple[Comparison, ...]
    needed: int  # min_per_variant
    smallest: int  # the fewest units any variant has

    def comparison(self, variant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.variant == variant), None)


def smoothed_variance(arm: Arm) -> float:
    """The variance of one unit, from the arm's values plus one pseudo-unit at each end of the
    scale (``arm.low`` and 1).

    For a rate this is p̃(1-p̃) with p̃ = (x+1)/(n+2) (the Agresti-Coull/Laplace "add one success
    and one failure" estimate); for NPS it adds one detractor and one promoter. The plain sample
    variance is 0 at 0/n or n/n (no purchase yet in either arm), which would make the interval a
    point and declare a winner on the first unit that differs; the pseudo-units keep it honest
    for small n and vanish in weight as n grows."""
    n = arm.n + 2
    mean = (arm.total + arm.low + 1.0) / n
    mean_sq = (arm.total_sq + arm.low * arm.low + 1.0) / n
    return max(mean_sq - mean * mean, 0.0)


def mixing_variance(v_planned: float, alpha: float) -> float:
    """τ² that makes the interval tightest when V = ``v_planned`` (Howard et al. 2021's
    approximately optimal choice: ρ = m / (2 log(1/α) + log(1 + 2 log(1/α))) for intrinsic
    time m, which is τ² = V*·(2 log(1/α) + log(1 + 2 log(1/α))) on the scale of means)."""
    two_log = 2.0 * math.log(1.0 / alpha)
    return v_planned * (two_log + math.log(1.0 + two_log))


def radius(v: float, tau2: float, alpha: float) -> float:
    """Half-width of the always-valid interval for a difference whose estimate has variance
    ``v``, with mixing variance ``tau2`` (see the module docstring)."""
    return math.sqrt(v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((v + tau2) / v)))


def compare(control: Arm, variant: Arm, planned: int, alpha: float) -> Comparison:
    """``variant`` minus ``control`` with its always-valid interval at level ``alpha``, tuned
    to be tightest when both arms have ``planned`` units; both arms need a unit."""
    mean_a, mean_b = control.mean, variant.mean
    if mean_a is None or mean_b is None:
        raise ValueError("a comparison needs at least one unit in each arm")
    var_a, var_b = smoothed_variance(control), smoothed_variance(variant)
    v = var_a / control.n + var_b / variant.n
    # Tuned with today's variance estimates: the planned size is in units, the variance it
    # implies is only known from the data.
    tau2 = mixing_variance((var_a + var_b) / planned, alpha)
    d = mean_b - mean_a
    r = radius(v, tau2, alpha)
    return Comparison(variant.name, POINTS * d, POINTS * (d - r), POINTS * (d + r))


def evaluate(arms: Sequence[Arm], min_per_variant: int, horizon_reached: bool,
             alpha: float = ALPHA) -> Evaluation:
    """Judge an experiment now; ``arms[0]`` is the control. Safe to call at every look.

    Each variant is compared with the control at level alpha/(k-1) (Bonferroni over the k-1
    comparisons, so all intervals hold together with probability 1-alpha). No winner before
    every arm has ``min_per_variant`` units; then the variant with the largest difference among
    those whose interval lies wholly above 0 wins, or the control when every variant's interval
    lies wholly below 0. At the horizon without a winner: no difference."""
    if len(arms) < 2:
        raise ValueError("an experiment compares at least two variants")
    if min_per_variant < 1:
        raise ValueError("min_per_variant must be at least 1")
    control, variants = arms[0], arms[1:]
    each = alpha / len(variants)
    comparisons = tuple(compare(control, arm, min_per_variant, each)
                        for arm in variants if arm.n and control.n)
    # The first of equal means leads (the control leads a tie); None before any data.
    leader, best = None, -math.inf
    for arm in arms:
        if arm.n and arm.total / arm.n > best:
            leader, best = arm.name, arm.total / arm.n
    smallest = min(arm.n for arm in arms)
    state, winner = State.RUNNING, None
    if smallest >= min_per_variant:
        above = [c for c in comparisons if c.low > 0]
        if above:
            state, winner = State.WINNER, max(above, key=lambda c: c.difference).variant
        elif all(c.high < 0 for c in comparisons):
            state, winner = State.WINNER, control.name
    else:
        state = State.COLLECTING
    if horizon_reached and state is not State.WINNER:
        state = State.NO_DIFFERENCE
    return Evaluation(state, leader, winner, comparisons, min_per_variant, smallest)

def _points(value: float) -> str:
    # round first, then + 0.0: a rounded -0.04 must read "+0.0", not "-0.0" (as metrics/stats)
    return f"{round(value, 1) + 0.0:+.1f}"


def _ci(comparison: Comparison) -> str:
    return f"95% CI {_points(comparison.low)} to {_points(comparison.high)}"


def _flipped(comparison: Comparison) -> Comparison:
    """The control minus that variant: how far the control is ahead of it."""
    return Comparison(comparison.variant, -comparison.difference, -comparison.high, -comparison.low)


def _lead(evaluation: Evaluation, goal_words: str) -> tuple[str, Comparison] | None:
    """(sentence start, interval) for the leader: a variant against the control, or the
    control (the leader without a comparison of its own) against the closest variant."""
    if evaluation.leader is None:
        return None
    own = evaluation.comparison(evaluation.leader)
    if own is not None:
        return f"{evaluation.leader} leads by {_points(own.difference)} points of {goal_words}", own
    if not evaluation.comparisons:
        return None
    closest = _flipped(max(evaluation.comparisons, key=lambda c: c.difference))
    return (f"{evaluation.leader} leads by {_points(closest.difference)} points of {goal_words} "
            f"over {closest.variant}", closest)


def verdict(evaluation: Evaluation, goal_words: str) -> str:
    """The plain sentence: "B leads; no decision yet: 212 of 500 needed", "B wins: +4.1 points
    of repeat purchase (95% CI +1.2 to +7.0)", "no difference detected at the horizon"."""
    state = evaluation.state
    if state is State.COLLECTING:
        if evaluation.leader is None:
            return "no data yet"
        return (f"{evaluation.leader} leads; no decision yet: "
                f"{evaluation.smallest} of {evaluation.needed} needed")
    lead = _lead(evaluation, goal_words)
    if state is State.WINNER and evaluation.winner is not None and evaluation.comparisons:
        won = evaluation.comparison(evaluation.winner)
        if won is not None:
            return (f"{evaluation.winner} wins: {_points(won.difference)} points of {goal_words} "
                    f"({_ci(won)})")
        # the control: it has no comparison of its own, so say by how much it beat the closest
        closest = _flipped(max(evaluation.comparisons, key=lambda c: c.difference))
        return (f"{evaluation.winner} wins: {_points(closest.difference)} points of "
                f"{goal_words} over {closest.variant} ({_ci(closest)})")
    if state is State.NO_DIFFERENCE:
        text = "no difference detected at the horizon"
        if evaluation.leader is None:
            return f"{text} (no data)"
        details = [] if lead is None else [f"{lead[0]}, {_ci(lead[1])}"]
        if evaluation.smallest < evaluation.needed:
            details.append(f"only {evaluation.smallest} of the {evaluation.needed} needed")
        return f"{text} ({'; '.join(details)})" if details else text
    if lead is None:  # RUNNING always has comparisons; kept for the type checker
        return "no decision yet"
    return f"{lead[0]}; not yet decisive ({_ci(lead[1])})"
