"""A journey compiled to a flat program: what the engine executes.

Nested ``branch`` blocks are flattened into tests and jumps so an enrollment's position is one
integer (``pc``) that survives restarts. Each instruction keeps a ``key`` derived from where the
step stands in the file (``3``, ``7.0.1``): messages are unique per (enrollment, key), and an
enrollment stays on the version it started with, so keys never shift under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from aftersale.core.conditions import Condition
from aftersale.core.experiments import Experiment
from aftersale.core.sending_rules import FrequencyCap, QuietHours


class Reentry(StrEnum):
    ONCE_PER_ORDER = "once_per_order"
    ONCE_PER_CUSTOMER = "once_per_customer"
    # Shipment journeys: once per parcel and moment (its status, "stalled", or "late" per
    # estimated date), so an attempted delivery and a later stall each get their message.
    ONCE_PER_SHIPMENT_MOMENT = "once_per_shipment_moment"


class OnTimeout(StrEnum):
    CONTINUE = "continue"
    END = "end"


@dataclass(frozen=True)
class Send:
    key: str
    template: str
    channels: tuple[str, ...]
    when: Condition | None = None
    # A message split (``variants:`` on the step): each variant may change template,
    # channels and subject; the engine sends the one the enrollment's choice names.
    experiment: Experiment | None = None


@dataclass(frozen=True)
class Wait:
    key: str
    duration: timedelta
    when: Condition | None = None


@dataclass(frozen=True)
class WaitFor:
    key: str
    event: str
    timeout: timedelta
    on_timeout: OnTimeout = OnTimeout.CONTINUE
    when: Condition | None = None


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str
    when: Condition | None = None


@dataclass(frozen=True)
class End:
    key: str
    when: Condition | None = None


@dataclass(frozen=True)
class Test:
    """``branch`` case: fall through into the case's steps if true, else jump to ``on_false``."""

    key: str
    condition: Condition | None  # None is the ``else`` case
    on_false: int


@dataclass(frozen=True)
class Split:
    """``split:`` step: jump to the start of the chosen variant's steps (``Variant.start``);
    each path ends with a jump past the last one, like a ``branch`` case."""

    key: str
    experiment: Experiment
    when: Condition | None = None


@dataclass(frozen=True)
class Jump:
    key: str
    target: int


Instruction = Send | Wait | WaitFor | Alert | End | Test | Split | Jump


@dataclass(frozen=True)
class StalledAfter:
    """``stalled_after:`` of a journey triggered by ``shipment.stalled``: after how many
    business days without a carrier update a parcel counts as stalled for this journey, in
    its own country and abroad. None: the setting's default for that kind of parcel."""

    domestic: int | None = None
    international: int | None = None

    def days(self, international: bool) -> int | None:
        return self.international if international else self.domestic


@dataclass(frozen=True)
class Journey:
    name: str
    trigger: str
    segments: tuple[str, ...]
    exit_on: tuple[str, ...]
    holdout_percent: float
    reentry: Reentry
    program: tuple[Instruction, ...]
    version: str
    source: dict[str, Any] = field(repr=False, compare=False)
    description: str = ""
    path: str = ""
    # None: the defaults from settings; False: switched off for this journey.
    quiet_hours: QuietHours | Literal[False] | None = None
    frequency_cap: FrequencyCap | Literal[False] | None = None
    # More events that start it besides ``trigger`` (``trigger:`` may be a list in YAML).
    also_triggered_by: tuple[str, ...] = ()
    # ``when:`` at the journey's top: checked at entry on the segment context (plus
    # ``shipment`` for shipment events); an event it rejects enrolls nobody.
    entry_when: Condition | None = None
    # Per-journey stall thresholds (only with a ``shipment.stalled`` trigger); None: settings.
    stalled_after: StalledAfter | None = None

    @property
    def triggers(self) -> tuple[str, ...]:
        return (self.trigger, *self.also_triggered_by)

    def templates(self) -> set[str]:
        found = {i.template for i in self.program if isinstance(i, Send)}
        for experiment in self.experiments():
            found |= {v.template for v in experiment.variants if v.template}
        return found

    def experiments(self) -> tuple[Experiment, ...]:
        """The journey's experiments in program order (message splits and path splits)."""
        return tuple(i.experiment for i in self.program
                     if isinstance(i, (Send, Split)) and i.experiment is not None)
