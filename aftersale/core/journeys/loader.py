"""Parse journey YAML into a :class:`Journey`, collecting every problem with its line.

The parser is hand-written rather than a pydantic model because marketers need messages that
talk about steps ("a wait step needs a duration such as 1d"), not about union discriminators.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aftersale.core.conditions import FIELDS, Condition, ConditionError, parse_condition
from aftersale.core.durations import parse_duration
from aftersale.core.errors import Problem
from aftersale.core.events import SHIPMENT_EVENTS, EventType
from aftersale.core.journeys.model import (
    Alert,
    End,
    Instruction,
    Journey,
    Jump,
    OnTimeout,
    Reentry,
    Send,
    StalledAfter,
    Test,
    Wait,
    WaitFor,
)
from aftersale.core.sending_rules import parse_frequency_cap, parse_quiet_hours
from aftersale.core.yaml_lines import Loc, Located

CHANNELS = ("email", "sms", "whatsapp")
EVENT_NAMES = tuple(t.value for t in EventType)
SHIPMENT_EVENT_NAMES = tuple(sorted(t.value for t in SHIPMENT_EVENTS))
TOP_KEYS = {"journey", "description", "trigger", "when", "segments", "exit_on", "holdout",
            "reentry", "stalled_after", "quiet_hours", "frequency_cap", "steps"}
#: What a journey's top-level ``when`` (checked at entry) can read: what steps can, but no
#: survey answer (nobody has answered yet).
ENTRY_ROOTS = (frozenset(FIELDS) | {"segment"}) - {"response"}
STALLED_AFTER_KEYS = ("domestic", "international")
_SHIPMENT_ONLY = (f"shipment.* is known only in journeys triggered by "
                  f"{', '.join(SHIPMENT_EVENT_NAMES)}")
STEP_KINDS = ("send", "wait", "wait_for", "branch", "alert", "end")
MODIFIERS = {
    "send": {"channels", "when"},
    "wait": {"when"},
    "wait_for": {"timeout", "on_timeout", "when"},
    "branch": set(),
    "alert": {"when"},
    "end": {"when"},
}
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass
class _Compiler:
    doc: Located
    problems: list[Problem] = field(default_factory=list)
    program: list[Instruction] = field(default_factory=list)
    # What step conditions can read: ``shipment`` only in journeys a shipment event starts.
    roots: frozenset[str] = frozenset(FIELDS) | {"segment"}

    def problem(self, loc: Loc, message: str, hint: str = "") -> None:
        self.problems.append(self.doc.problem(loc, message, hint))

    # -- steps -----------------------------------------------------------------------------
    def block(self, steps: Any, loc: Loc, key_prefix: str) -> None:
        if not isinstance(steps, list) or not steps:
            self.problem(loc, "steps must be a non-empty list", "write '- send: template' items")
            return
        ended = False
        for index, step in enumerate(steps):
            step_loc = (*loc, index)
            if ended:
                self.problem(step_loc, "this step can never run: an 'end' step comes before it",
                             "remove it, or give the 'end' step a 'when' condition")
            key = f"{key_prefix}{index}"
            ended = self.step(step, step_loc, key) or ended

    def step(self, step: Any, loc: Loc, key: str) -> bool:
        """Compile one step; returns True if it unconditionally ends the journey."""
        if isinstance(step, str) and step == "end":
            step = {"end": True}
        if not isinstance(step, dict):
            self.problem(loc, "a step must be a mapping such as '- send: nps_survey'")
            return False
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            self.problem(loc, f"a step needs exactly one of {', '.join(STEP_KINDS)} (found {found})")
            return False
        kind = kinds[0]
        for extra in set(step) - {kind} - MODIFIERS[kind]:
            allowed = ", ".join(sorted(MODIFIERS[kind])) or "nothing else"
            self.problem((*loc, extra), f"unknown field '{extra}' in a {kind} step",
                         f"a {kind} step takes {allowed}")
        when = self.condition(step.get("when"), (*loc, "when"))
        value = step[kind]
        vloc = (*loc, kind)
        if kind == "send":
            self.send(value, step, loc, key, when)
        elif kind == "wait":
            duration = self.duration(value, vloc)
            if duration:
                self.program.append(Wait(key, duration, when))
        elif kind == "wait_for":
            self.wait_for(value, step, loc, key, when)
        elif kind == "alert":
            if not isinstance(value, str) or not _NAME.match(value):
                self.problem(vloc, "alert needs a kind such as 'detractor'")
            else:
                self.program.append(Alert(key, value, when))
        elif kind == "end":
            self.program.append(End(key, when))
            return when is None
        else:
            self.branch(value, vloc, key)
        return False

    def send(self, template: Any, step: dict[str, Any], loc: Loc, key: str, when: Condition | None) -> None:
        if not isinstance(template, str) or not _NAME.match(template):
            self.problem((*loc, "send"), "send needs a template name such as 'nps_survey'")
            return
        channels = step.get("channels", ["email"])
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not channels:
            self.problem((*loc, "channels"), "channels must be a list such as [whatsapp, email]")
            return
        known = True
        for i, channel in enumerate(channels):
            if not isinstance(channel, str) or channel not in CHANNELS:
                self.problem((*loc, "channels", i), f"unknown channel '{channel}'",
                             f"use {', '.join(CHANNELS)}")
                known = False
        if not known:
            return
        if len(set(channels)) != len(channels):
            self.problem((*loc, "channels"), "a channel is listed twice")
        self.program.append(Send(key, template, tuple(channels), when))

    def wait_for(self, event: Any, step: dict[str, Any], loc: Loc, key: str, when: Condition | None) -> None:
        if event not in EVENT_NAMES:
            self.problem((*loc, "wait_for"), f"unknown event '{event}'",
                         f"use one of {', '.join(EVENT_NAMES)}")
        if "timeout" not in step:
            self.problem(loc, "wait_for needs a timeout", "add e.g. 'timeout: 7d'")
            return
        timeout = self.duration(step["timeout"], (*loc, "timeout"))
        on_timeout = step.get("on_timeout", OnTimeout.CONTINUE.value)
        if not isinstance(on_timeout, str) or on_timeout not in {o.value for o in OnTimeout}:
            self.problem((*loc, "on_timeout"), f"on_timeout must be continue or end, not '{on_timeout}'")
            return
        if timeout and event in EVENT_NAMES:
            self.program.append(WaitFor(key, event, timeout, OnTimeout(on_timeout), when))

    def branch(self, cases: Any, loc: Loc, key: str) -> None:
        if not isinstance(cases, list) or not cases:
            self.problem(loc, "branch needs a list of cases: '- if: ...' with 'then: [...]'")
            return
        jumps: list[int] = []
        for index, case in enumerate(cases):
            cloc = (*loc, index)
            if not isinstance(case, dict):
                self.problem(cloc, "a branch case must be a mapping with 'if' and 'then'")
                continue
            is_else = "else" in case
            if is_else and index != len(cases) - 1:
                self.problem(cloc, "the cases after 'else' can never run", "put 'else' last")
            allowed = {"else"} if is_else else {"if", "then"}
            for extra in set(case) - allowed:
                self.problem((*cloc, extra), f"unknown field '{extra}' in a branch case",
                             "a case is 'if' + 'then', or a final 'else'")
            condition = None
            if not is_else:
                if "if" not in case or "then" not in case:
                    self.problem(cloc, "a branch case needs both 'if' and 'then'")
                    continue
                condition = self.condition(case["if"], (*cloc, "if"))
                if condition is None:
                    continue
            test_at = len(self.program)
            self.program.append(Test(f"{key}.{index}", condition, on_false=-1))
            body = case["else"] if is_else else case["then"]
            self.block(body, (*cloc, "else" if is_else else "then"), f"{key}.{index}.")
            jumps.append(len(self.program))
            self.program.append(Jump(f"{key}.{index}.done", target=-1))
            self.program[test_at] = Test(f"{key}.{index}", condition, on_false=len(self.program))
        after = len(self.program)
        for at in jumps:
            self.program[at] = Jump(self.program[at].key, target=after)

    # -- values ----------------------------------------------------------------------------
    def rule(self, data: dict[str, Any], key: str, parse: Any) -> Any:
        """A per-journey override: absent (None, the default), off (False), or a value."""
        if key not in data:
            return None
        value = data[key]
        if value is False or value == "off":
            return False
        try:
            return parse(value)
        except ValueError as exc:
            self.problem((key,), str(exc))
            return None

    def duration(self, value: Any, loc: Loc) -> Any:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problem(loc, str(exc))
            return None

    def condition(self, value: Any, loc: Loc, roots: frozenset[str] | None = None
                  ) -> Condition | None:
        if value is None:
            return None
        roots = self.roots if roots is None else roots
        try:
            return parse_condition(str(value) if isinstance(value, bool) else value, roots)
        except ConditionError as exc:
            hint = (_SHIPMENT_ONLY if "shipment" not in roots and "'shipment'" in str(exc)
                    else "")
            self.problem(loc, str(exc), hint)
            return None

    def triggers(self, value: Any) -> list[str]:
        """``trigger:`` is one event or a list of them; the known ones, in order."""
        listed = value if isinstance(value, list) else [value]
        if not listed:
            self.problem(("trigger",), "trigger needs at least one event",
                         "e.g. trigger: order.placed, or trigger: [shipment.updated, "
                         "shipment.stalled]")
            return []
        found: list[str] = []
        for i, event in enumerate(listed):
            loc: Loc = ("trigger", i) if isinstance(value, list) else ("trigger",)
            if not isinstance(event, str) or event not in EVENT_NAMES:
                self.problem(loc, f"unknown event '{event}'",
                             f"use one of {', '.join(EVENT_NAMES)}")
            elif event in found:
                self.problem(loc, f"event '{event}' is listed twice", "keep only one of them")
            else:
                found.append(event)
        return found

    def stalled_after(self, data: dict[str, Any], triggers: list[str]) -> StalledAfter | None:
        """``stalled_after: {domestic: 2, international: 4}``: business days without a carrier
        update before a parcel counts as stalled for this journey."""
        if "stalled_after" not in data:
            return None
        value = data["stalled_after"]
        example = "e.g. stalled_after: {domestic: 3, international: 5} (business days)"
        if EventType.SHIPMENT_STALLED.value not in triggers:
            self.problem(("stalled_after",), "stalled_after needs the journey to be triggered "
                         "by shipment.stalled", "add shipment.stalled to trigger, or remove "
                         "stalled_after")
            return None
        if not isinstance(value, dict) or not value:
            self.problem(("stalled_after",), "stalled_after must be a mapping with domestic "
                         "and/or international", example)
            return None
        days: dict[str, int] = {}
        for key, number in value.items():
            if key not in STALLED_AFTER_KEYS:
                self.problem(("stalled_after", key), f"unknown field '{key}' in stalled_after",
                             "use domestic and/or international")
            elif isinstance(number, bool) or not isinstance(number, int) or number < 1:
                self.problem(("stalled_after", key), f"stalled_after {key} must be a whole "
                             f"number of business days, 1 or more, not '{number}'", example)
            else:
                days[key] = number
        if len(days) != len(value):
            return None
        return StalledAfter(**days)


def parse_holdout(value: Any) -> float:
    """``10%``, ``10`` or ``0.1`` all mean ten percent."""
    text = str(value).strip()
    number = float(text.rstrip("%"))
    if not text.endswith("%") and 0 < number < 1:
        number *= 100
    if not 0 <= number <= 100:
        raise ValueError("holdout must be between 0% and 100%")
    return number


def compile_journey(doc: Located) -> tuple[Journey | None, list[Problem]]:
    """Compile one journey document; returns it only if it has no problems."""
    c = _Compiler(doc)
    data = doc.data
    if not isinstance(data, dict):
        c.problem((), "a journey file must be a mapping with journey, trigger and steps")
        return None, c.problems
    for key in set(data) - TOP_KEYS:
        c.problem((key,), f"unknown field '{key}'", f"known fields: {', '.join(sorted(TOP_KEYS))}")
    for required in ("journey", "trigger", "steps"):
        if required not in data:
            c.problem((), f"missing '{required}'")
    name = data.get("journey")
    if "journey" in data and (not isinstance(name, str) or not _NAME.match(name)):
        c.problem(("journey",), "journey needs a name of lowercase letters, digits, - and _")
    triggers = c.triggers(data["trigger"]) if "trigger" in data else []
    on_shipments = [t for t in triggers if t in SHIPMENT_EVENT_NAMES]
    if not on_shipments:
        c.roots = c.roots - {"shipment"}
    entry_when = c.condition(data.get("when"), ("when",), ENTRY_ROOTS & c.roots)
    exit_on = data.get("exit_on", [])
    if isinstance(exit_on, str):
        exit_on = [exit_on]
    if not isinstance(exit_on, list):
        c.problem(("exit_on",), "exit_on must be a list of events",
                  "e.g. exit_on: [order.cancelled, order.refunded]")
        exit_on = []
    for i, event in enumerate(exit_on):
        if event not in EVENT_NAMES:
            c.problem(("exit_on", i), f"unknown event '{event}'", f"use one of {', '.join(EVENT_NAMES)}")
    segments = data.get("segments", [])
    if isinstance(segments, str):
        segments = [segments]
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        c.problem(("segments",), "segments must be a list of segment names")
        segments = []
    holdout = 0.0
    try:
        holdout = parse_holdout(data.get("holdout", 0))
    except ValueError as exc:
        c.problem(("holdout",), f"bad holdout '{data.get('holdout')}': {exc}", "write e.g. 10%")
    reentry = data.get("reentry", Reentry.ONCE_PER_ORDER.value)
    if not isinstance(reentry, str) or reentry not in {r.value for r in Reentry}:
        c.problem(("reentry",), f"unknown reentry rule '{reentry}'",
                  f"use {', '.join(r.value for r in Reentry)}")
        reentry = Reentry.ONCE_PER_ORDER.value
    if reentry == Reentry.ONCE_PER_SHIPMENT_MOMENT and triggers and on_shipments != triggers:
        others = ", ".join(t for t in triggers if t not in on_shipments)
        c.problem(("reentry",), f"reentry once_per_shipment_moment needs every trigger to be a "
                  f"shipment event, but {others} is not",
                  f"trigger on {', '.join(SHIPMENT_EVENT_NAMES)} only, or use once_per_order")
    stalled_after = c.stalled_after(data, triggers)
    quiet_hours = c.rule(data, "quiet_hours", parse_quiet_hours)
    frequency_cap = c.rule(data, "frequency_cap", parse_frequency_cap)
    if "steps" in data:
        c.block(data["steps"], ("steps",), "")
    if c.problems:
        return None, c.problems
    journey = Journey(
        name=data["journey"],  # both present and checked: a problem above otherwise
        trigger=triggers[0],
        also_triggered_by=tuple(triggers[1:]),
        entry_when=entry_when,
        stalled_after=stalled_after,
        segments=tuple(str(s) for s in segments),
        exit_on=tuple(exit_on),
        holdout_percent=holdout,
        reentry=Reentry(reentry),
        program=tuple(c.program),
        version=version_of(data),
        source=data,
        description=str(data.get("description", "")),
        path=doc.path,
        quiet_hours=quiet_hours,
        frequency_cap=frequency_cap,
    )
    return journey, []


def version_of(data: dict[str, Any]) -> str:
    """A short content hash: the same definition always gets the same version."""
    canonical = json.dumps(_text_keys(data), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _text_keys(value: Any) -> Any:
    """Keys as JSON writes them (``1:`` is "1"), so keys of mixed types can be sorted; a
    definition whose keys are all text (every real one) hashes as before."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(k, default=str): _text_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    return value


def journey_from_source(source: dict[str, Any], path: str = "<stored>") -> Journey:
    """Rebuild a stored version (enrollments in flight keep the version they started on)."""
    journey, problems = compile_journey(Located(path, source))
    if journey is None:
        raise ValueError("; ".join(str(p) for p in problems))
    return journey
