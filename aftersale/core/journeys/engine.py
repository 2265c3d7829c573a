"""The pure journey engine: given a journey, where an enrollment stands, what it has seen and
the time, decide what happens next. No database, no network, no clock of its own.

Sends and alerts are returned as actions for the adapter to apply; waits are returned as a due
time to store, so nothing ever sleeps in a process and a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from aftersale.core.experiments import Choice, Experiment, Variant
from aftersale.core.journeys.model import (
    Alert,
    End,
    Journey,
    Jump,
    OnTimeout,
    Send,
    Split,
    Test,
    Wait,
    WaitFor,
)


class Status(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


@dataclass(frozen=True)
class Position:
    """Where an enrollment stands: instruction index and, while waiting, until when and for what."""

    pc: int = 0
    wait_until: datetime | None = None
    waiting_for: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the adapter knows about the enrollment right now.

    ``context`` feeds conditions (customer, order, segment, response); ``seen`` maps each event
    type to when it happened for this enrollment (since it started, about its order or
    customer), which is what ``wait_for`` and ``exit_on`` look at.
    """

    context: Mapping[str, Any]
    seen: Mapping[str, datetime] = field(default_factory=dict)
    # The variant this enrollment gets at each of the journey's experiments, by experiment
    # name (``aftersale.core.experiments.choose``); the adapter fills it for every experiment.
    variants: Mapping[str, Choice] = field(default_factory=dict)


@dataclass(frozen=True)
class SendAction:
    step_key: str
    template: str
    channels: tuple[str, ...]
    # A message split's subject line per locale ("*": all); None: the template's own.
    subject: Mapping[str, str] | None = None


@dataclass(frozen=True)
class AlertAction:
    step_key: str
    kind: str


@dataclass(frozen=True)
class Skip:
    """A step whose ``when`` was false: recorded so previews and logs can say why."""

    step_key: str
    reason: str


@dataclass(frozen=True)
class Assigned:
    """The enrollment reached an experiment and got ``variant``. The adapter records it (once
    per customer and experiment) when ``randomized``; a decided winner is not an assignment."""

    step_key: str
    experiment: str
    version: str
    variant: str
    randomized: bool


Action = SendAction | AlertAction | Skip | Assigned


@dataclass(frozen=True)
class Outcome:
    actions: tuple[Action, ...]
    position: Position
    status: Status
    due_at: datetime | None  # when to look at this enrollment again (None: only on an event)
    reason: str = ""


def advance(journey: Journey, position: Position, facts: Facts, now: datetime) -> Outcome:
    """Run the journey from ``position`` until it has to wait or ends."""
    actions: list[Action] = []
    for event in journey.exit_on:
        if event in facts.seen:
            return Outcome((), position, Status.EXITED, None, f"exit event {event}")
    program = journey.program
    pos = position
    # A well-formed program only jumps forward, so it ends within len(program) steps; the bound
    # turns a compiler bug into an error instead of a hung dispatcher.
    for _ in range(len(program) * 2 + 2):
        if pos.pc >= len(program):
            return Outcome(tuple(actions), replace(pos, wait_until=None, waiting_for=None),
                           Status.COMPLETED, None, "journey finished")
        step = program[pos.pc]
        when = getattr(step, "when", None)
        # A step already waiting has passed its condition when it started waiting.
        if when is not None and pos.wait_until is None and not when.evaluate(facts.context):
            actions.append(Skip(step.key, f"when: {when.source} is false"))
            pos = Position(pos.pc + 1)
            continue
        match step:
            case Send():
                if step.experiment is None:
                    actions.append(SendAction(step.key, step.template, step.channels))
                else:
                    variant = _choose(step.experiment, step.key, facts, actions)
                    actions.append(SendAction(step.key, variant.template or step.template,
                                              variant.channels or step.channels,
                                              variant.subject))
                pos = Position(pos.pc + 1)
            case Split():
                variant = _choose(step.experiment, step.key, facts, actions)
                assert variant.start is not None, "a path split's variant has steps"
                pos = Position(variant.start)
            case Alert():
                actions.append(AlertAction(step.key, step.kind))
                pos = Position(pos.pc + 1)
            case End():
                return Outcome(tuple(actions), Position(pos.pc), Status.COMPLETED, None,
                               f"end step {step.key}")
            case Jump():
                pos = Position(step.target)
            case Test():
                passed = step.condition is None or step.condition.evaluate(facts.context)
                pos = Position(pos.pc + 1 if passed else step.on_false)
            case Wait():
                if pos.wait_until is None:
                    until = now + step.duration
                    return Outcome(tuple(actions), Position(pos.pc, until), Status.ACTIVE, until)
                if pos.wait_until > now:
                    return Outcome(tuple(actions), pos, Status.ACTIVE, pos.wait_until)
                pos = Position(pos.pc + 1)
            case WaitFor():
                if _arrived(step, pos, facts, now):
                    pos = Position(pos.pc + 1)
                    continue
                if pos.wait_until is None:
                    until = now + step.timeout
                    return Outcome(tuple(actions), Position(pos.pc, until, step.event),
                                   Status.ACTIVE, until)
                if pos.wait_until > now:
                    return Outcome(tuple(actions), pos, Status.ACTIVE, pos.wait_until)
                if step.on_timeout == OnTimeout.END:
                    return Outcome(tuple(actions), Position(pos.pc), Status.COMPLETED, None,
                                   f"timed out waiting for {step.event}")
                actions.append(Skip(step.key, f"timed out waiting for {step.event}"))
                pos = Position(pos.pc + 1)
    raise RuntimeError(f"journey {journey.name} did not settle; its program loops")


def _choose(experiment: Experiment, step_key: str, facts: Facts, actions: list[Action]
            ) -> Variant:
    choice = facts.variants.get(experiment.name)
    if choice is None:
        raise KeyError(f"no variant chosen for experiment {experiment.name}: the adapter "
                       f"must fill Facts.variants for every experiment of the journey")
    actions.append(Assigned(step_key, experiment.name, experiment.version, choice.variant,
                            choice.randomized))
    return experiment.variant(choice.variant)


#: Events that describe the state of the enrollment's order: once it has shipped, a later
#: ``wait_for: order.shipped`` is satisfied at once. Other events (a survey answer) count only
#: if they happen while the step waits, so a CSAT answer does not satisfy the NPS wait after it.
STATE_EVENTS = frozenset({"order.placed", "order.shipped", "order.delivered", "order.cancelled",
                          "order.refunded"})


def _arrived(step: WaitFor, pos: Position, facts: Facts, now: datetime) -> bool:
    seen_at = facts.seen.get(step.event)
    if seen_at is None:
        return False
    if not in_time(seen_at, pos.wait_until):
        return False
    if step.event in STATE_EVENTS:
        return True
    started = now if pos.wait_until is None else pos.wait_until - step.timeout
    return seen_at >= started


def in_time(happened_at: datetime, deadline: datetime | None) -> bool:
    """Whether an event that happened at ``happened_at`` counts for a wait ending at
    ``deadline`` (None: no deadline). One that happened after it came too late, even if it is
    seen before the timeout is (dispatch was down, the answer was stored after an outage): the
    step times out, as it would have at its deadline. Processing (no wake-up), dispatch (the
    steps after the timeout do not read it) and this engine all decide by this."""
    return deadline is None or happened_at < deadline


def in_holdout(journey_name: str, customer_id: str, percent: float) -> bool:
    """Deterministic control group: the same customer is always in or out for a journey,
    independent of process, machine or Python's hash seed."""
    if percent <= 0:
        return False
    import hashlib

    digest = hashlib.sha256(f"{journey_name}:{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") % 10_000
    return bucket < percent * 100
