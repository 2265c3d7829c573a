"""Parse journey YAML into a :class:`Journey`, collecting every problem with its line.

The parser is hand-written rather than a pydantic model because marketers need messages that
talk about steps ("a wait step needs a duration such as 1d"), not about union discriminators.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aftersale.core.conditions import FIELDS, Condition, ConditionError, parse_condition
from aftersale.core.durations import parse_duration
from aftersale.core.errors import Problem
from aftersale.core.events import SHIPMENT_EVENTS, EventType
from aftersale.core.experiments import Experiment, Variant, WinnerRule, parse_goal
from aftersale.core.journeys.model import (
    Alert,
    End,
    Instruction,
    Journey,
    Jump,
    OnTimeout,
    Reentry,
    Send,
    Split,
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
STEP_KINDS = ("send", "wait", "wait_for", "branch", "split", "alert", "end")
MODIFIERS = {
    "send": {"channels", "when", "variants", "experiment"},
    "split": {"experiment"},
    "wait": {"when"},
    "wait_for": {"timeout", "on_timeout", "when"},
    "branch": set(),
    "alert": {"when"},
    "end": {"when"},
}
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
#: Words ``winner:`` reads as a rule, so no variant may be called so.
RESERVED_VARIANT_NAMES = frozenset(r.value for r in WinnerRule)
#: Experiment and variant names are stored in String(64) columns (experiment_assignments).
NAME_MAX = 64
EXPERIMENT_KEYS = ("name", "goal", "min_per_variant", "max_days", "winner")
MESSAGE_VARIANT_KEYS = ("name", "weight", "template", "channels", "subject")
PATH_VARIANT_KEYS = ("name", "weight", "steps")
#: A split inside a split's path is fine; deeper nesting is a tree nobody can read results of.
MAX_SPLIT_DEPTH = 1
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z]{4})?(?:[-_](?:[A-Za-z]{2}|\d{3}))?$")
_GOAL_HINT = ("goal: repeat_purchase within 60d, nps, csat, response_rate or click, the last "
              "four optionally with 'within 14d'")
_EXPERIMENT_EXAMPLE = ("e.g. experiment: {name: tutorial_offer, goal: repeat_purchase within 30d, "
                       "min_per_variant: 300, max_days: 120, winner: manual}")


@dataclass
class _Compiler:
    doc: Located
    problems: list[Problem] = field(default_factory=list)
    program: list[Instruction] = field(default_factory=list)
    # What step conditions can read: ``shipment`` only in journeys a shipment event starts.
    roots: frozenset[str] = frozenset(FIELDS) | {"segment"}
    journey: str = ""
    # How many split paths enclose the steps being compiled now.
    split_depth: int = 0
    # Experiment names seen so far, for "used twice".
    experiment_names: set[str] = field(default_factory=set)

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
            if kind == "split" and extra == "when":
                self.problem((*loc, extra), "a split step takes no 'when': skipping it would "
                             "send everyone down the first path",
                             "put the split inside a branch case, or give the steps of its "
                             "paths a 'when'")
                continue
            allowed = ", ".join(sorted(MODIFIERS[kind])) or "nothing else"
            self.problem((*loc, extra), f"unknown field '{extra}' in a {kind} step",
                         f"a {kind} step takes {allowed}")
        when = None if kind == "split" else self.condition(step.get("when"), (*loc, "when"))
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
        elif kind == "split":
            self.split(value, step, loc, key)
        else:
            self.branch(value, vloc, key)
        return False

    def send(self, template: Any, step: dict[str, Any], loc: Loc, key: str, when: Condition | None) -> None:
        if not isinstance(template, str) or not _NAME.match(template):
            self.problem((*loc, "send"), "send needs a template name such as 'nps_survey'")
            return
        channels = self.channels(step.get("channels", ["email"]), (*loc, "channels"))
        experiment = None
        if "variants" in step or "experiment" in step:
            experiment = self.message_split(step, loc, key, channels or ())
        if channels is not None:
            self.program.append(Send(key, template, channels, when, experiment))

    def channels(self, value: Any, loc: Loc) -> tuple[str, ...] | None:
        """A send's (or a variant's) ``channels:``: one name or a list of known ones."""
        channels = [value] if isinstance(value, str) else value
        if not isinstance(channels, list) or not channels:
            self.problem(loc, "channels must be a list such as [whatsapp, email]")
            return None
        known = True
        for i, channel in enumerate(channels):
            if not isinstance(channel, str) or channel not in CHANNELS:
                self.problem((*loc, i), f"unknown channel '{channel}'",
                             f"use {', '.join(CHANNELS)}")
                known = False
        if not known:
            return None
        if len(set(channels)) != len(channels):
            self.problem(loc, "a channel is listed twice")
        return tuple(channels)

    # -- experiments -----------------------------------------------------------------------
    def message_split(self, step: dict[str, Any], loc: Loc, key: str,
                      channels: tuple[str, ...]) -> Experiment | None:
        """``variants:`` + ``experiment:`` on a send step."""
        if "experiment" not in step:
            self.problem((*loc, "variants"), "variants need an 'experiment:' that says what "
                         "they are compared on", _EXPERIMENT_EXAMPLE)
            return None
        if "variants" not in step:
            self.problem((*loc, "experiment"), "an experiment on a send step needs "
                         "'variants:' to compare",
                         "e.g. variants: [{name: a, weight: 50%}, {name: b, weight: 50%, "
                         "template: other_template}]")
            return None
        self.nesting(loc, "variants on a send step")
        count = len(self.problems)
        entries = self.variant_entries(step["variants"], (*loc, "variants"),
                                       MESSAGE_VARIANT_KEYS, "a message")
        variants: list[Variant] = []
        for index, entry, name, weight in entries:
            vloc: Loc = (*loc, "variants", index)
            template = entry.get("template")
            if "template" in entry and (not isinstance(template, str)
                                        or not _NAME.match(template)):
                self.problem((*vloc, "template"), "template needs a template name such as "
                             "'product_tutorial_offer'",
                             "the name of a folder in content/; leave it out to send the "
                             "step's own template")
                template = None
            own = (self.channels(entry["channels"], (*vloc, "channels"))
                   if "channels" in entry else None)
            subject = (self.subject(entry["subject"], (*vloc, "subject"), own or channels)
                       if "subject" in entry else None)
            variants.append(Variant(name, weight, template=template, channels=own,
                                    subject=subject))
        experiment = self.experiment(step, loc, key, "message", variants)
        return experiment if len(self.problems) == count else None

    def split(self, value: Any, step: dict[str, Any], loc: Loc, key: str) -> None:
        """``split:`` (named paths of steps) + ``experiment:``: compiled like a branch, each
        path a block ending in a jump past the last one; the Split instruction jumps to the
        chosen path's first instruction."""
        vloc: Loc = (*loc, "split")
        if "experiment" not in step:
            self.problem(loc, "a split step needs an 'experiment:' that says what its paths "
                         "are compared on", _EXPERIMENT_EXAMPLE)
        self.nesting(loc, "a split")
        count = len(self.problems)
        entries = self.variant_entries(value, vloc, PATH_VARIANT_KEYS, "a path")
        at = len(self.program)
        self.program.append(Jump(key, target=-1))  # the Split, once its paths are compiled
        variants: list[Variant] = []
        jumps: list[int] = []
        self.split_depth += 1
        for index, entry, name, weight in entries:
            variants.append(Variant(name, weight, start=len(self.program)))
            ploc: Loc = (*vloc, index)
            if "steps" not in entry:
                self.problem(ploc, f"path '{name}' has no steps",
                             "give it 'steps:' with at least one step, e.g. '- wait: 7d'")
            else:
                self.block(entry["steps"], (*ploc, "steps"), f"{key}.{index}.")
            jumps.append(len(self.program))
            self.program.append(Jump(f"{key}.{index}.done", target=-1))
        self.split_depth -= 1
        after = len(self.program)
        for jump_at in jumps:
            self.program[jump_at] = Jump(self.program[jump_at].key, target=after)
        if "experiment" in step:
            experiment = self.experiment(step, loc, key, "path", variants)
            if experiment is not None and len(self.problems) == count:
                self.program[at] = Split(key, experiment)

    def nesting(self, loc: Loc, what: str) -> None:
        if self.split_depth > MAX_SPLIT_DEPTH:
            self.problem(loc, f"{what} is nested too deep: a split can be nested in another "
                         "split's path only one level deep",
                         "move this experiment up a level, or make it a separate journey")

    def variant_entries(self, value: Any, loc: Loc, keys: tuple[str, ...], kind: str
                        ) -> list[tuple[int, dict[str, Any], str, float]]:
        """Each variant mapping's index, mapping, name and weight (percent; equal when none is
        given). Whatever is wrong is reported; the caller goes on checking the rest (the paths'
        steps, the experiment) so that a file shows all its problems at once, and compiles
        nothing if any was found."""
        if not isinstance(value, list) or len(value) < 2:
            found = len(value) if isinstance(value, list) else 0
            self.problem(loc, f"an experiment needs at least 2 variants (found {found})",
                         "the first variant is the control the others are compared to")
        listed = value if isinstance(value, list) else []
        entries: list[tuple[int, dict[str, Any], str, float]] = []
        seen: set[str] = set()
        weights: list[float | None] = []
        for index, entry in enumerate(listed):
            eloc: Loc = (*loc, index)
            if not isinstance(entry, dict):
                self.problem(eloc, "a variant must be a mapping with 'name' and 'weight'")
                continue
            for extra in set(entry) - set(keys):
                self.problem((*eloc, extra), f"unknown field '{extra}' in {kind} variant",
                             f"a variant takes {', '.join(keys)}")
            name = entry.get("name")
            if "name" not in entry:
                self.problem(eloc, "a variant needs a name", "add e.g. 'name: control'")
            elif not isinstance(name, str) or not _NAME.match(name):
                self.problem((*eloc, "name"), f"bad variant name '{name}'",
                             "use lowercase letters, digits, - and _, starting with a letter")
            elif len(name) > NAME_MAX:
                self.problem((*eloc, "name"), f"variant name '{name}' is longer than "
                             f"{NAME_MAX} characters", "use a shorter name")
            elif name in RESERVED_VARIANT_NAMES:
                self.problem((*eloc, "name"), f"'{name}' cannot name a variant: 'winner: "
                             f"{name}' means the {name} rule", "choose another name")
            elif name in seen:
                self.problem((*eloc, "name"), f"two variants are named '{name}'",
                             "give each variant its own name")
            else:
                seen.add(name)
            weight = self.weight(entry["weight"], (*eloc, "weight")) if "weight" in entry else None
            weights.append(weight if "weight" in entry else None)
            entries.append((index, entry, str(name), 0.0))
        given = [w for w in weights if w is not None]
        written = sum(1 for _, entry, _, _ in entries if "weight" in entry)
        if written and written != len(entries):
            self.problem(loc, "give every variant a weight, or none (an equal split)",
                         "e.g. weight: 50% on each")
        elif not written:
            return [(i, e, n, 100 / len(entries)) for i, e, n, _ in entries]
        elif len(given) == len(entries) and abs(sum(given) - 100) > 1e-6:
            self.problem(loc, f"the variants' weights add up to {sum(given):g}%, not 100%",
                         "make them add up to 100%, e.g. 50% and 50%")
        if len(given) != len(entries):
            return entries  # reported above; the weights are never used
        return [(i, e, n, w) for (i, e, n, _), w in zip(entries, given, strict=True)]

    def weight(self, value: Any, loc: Loc) -> float | None:
        """``50%`` or ``50``: percent of the customers reaching the experiment."""
        text = value.strip().removesuffix("%").strip() if isinstance(value, str) else value
        try:
            number = None if isinstance(text, bool) else float(text)
        except (TypeError, ValueError):
            number = None
        if number is None or number != number:  # NaN is a float too
            self.problem(loc, f"weight '{value}' is not a percentage", "write e.g. 50%")
            return None
        if number < 0:
            self.problem(loc, f"weight {value} is negative", "weights are 0% to 100%")
            return None
        if number == 0:
            # Nobody would ever get it, so no winner could be declared (every variant needs
            # min_per_variant customers) and an auto experiment would end in "no difference".
            self.problem(loc, "a variant with weight 0% gets nobody and blocks every decision",
                         "remove the variant (that starts a new version), or give it a share")
            return None
        if number > 100:
            self.problem(loc, f"weight {value} is more than 100%", "weights are 0% to 100%")
            return None
        return number

    def subject(self, value: Any, loc: Loc, channels: tuple[str, ...]
                ) -> dict[str, str] | None:
        """One subject line for every locale (``"*"``), or ``{en: ..., tr: ...}``."""
        if channels and "email" not in channels:
            self.problem(loc, "a subject line only changes e-mails, and this variant sends none",
                         "add email to its channels, or remove the subject")
        if isinstance(value, str) and value.strip():
            return {"*": value}
        if not isinstance(value, dict) or not value:
            self.problem(loc, "subject must be a line of text or one per locale",
                         "e.g. subject: \"A gift for you\", or subject: {en: ..., tr: ...}")
            return None
        found: dict[str, str] = {}
        for locale, text in value.items():
            if not isinstance(locale, str) or not _LOCALE.match(locale):
                self.problem((*loc, locale), f"'{locale}' is not a locale name",
                             "e.g. en, tr, pl_PL (quote it if YAML reads it as something else: "
                             "'no')")
            elif not isinstance(text, str) or not text.strip():
                self.problem((*loc, locale), f"the {locale} subject must be a line of text")
            else:
                found[locale] = text
        return found if len(found) == len(value) else None

    def experiment(self, step: dict[str, Any], loc: Loc, key: str, kind: str,
                   variants: list[Variant]) -> Experiment | None:
        """The step's ``experiment:`` mapping, with these variants."""
        eloc: Loc = (*loc, "experiment")
        spec = step["experiment"]
        if not isinstance(spec, dict):
            self.problem(eloc, "experiment must be a mapping with name, goal, min_per_variant, "
                         "max_days and winner", _EXPERIMENT_EXAMPLE)
            return None
        count = len(self.problems)
        for extra in set(spec) - set(EXPERIMENT_KEYS):
            self.problem((*eloc, extra), f"unknown field '{extra}' in an experiment",
                         f"an experiment takes {', '.join(EXPERIMENT_KEYS)}")
        for required in ("name", "goal", "min_per_variant", "max_days"):
            if required not in spec:
                self.problem(eloc, f"the experiment needs '{required}'", _EXPERIMENT_EXAMPLE)
        name = spec.get("name")
        if "name" in spec:
            if not isinstance(name, str) or not _NAME.match(name):
                self.problem((*eloc, "name"), f"bad experiment name '{name}'",
                             "use lowercase letters, digits, - and _, starting with a letter")
            elif len(name) > NAME_MAX:
                self.problem((*eloc, "name"), f"experiment name '{name}' is longer than "
                             f"{NAME_MAX} characters", "use a shorter name")
            elif name in self.experiment_names:
                self.problem((*eloc, "name"), f"experiment '{name}' is used twice in this "
                             "journey", "give each experiment its own name: its results are "
                             "kept by name")
            else:
                self.experiment_names.add(name)
        goal = None
        if "goal" in spec:
            try:
                goal = parse_goal(spec["goal"])
            except ValueError as exc:
                self.problem((*eloc, "goal"), str(exc), _GOAL_HINT)
        counts = {field_: self.whole(spec, field_, eloc)
                  for field_ in ("min_per_variant", "max_days") if field_ in spec}
        days = counts.get("max_days")
        if goal is not None and not goal.per_answer and days and \
                timedelta(days=days) <= goal.within:
            # A customer counts once their window has closed: with a horizon no longer than
            # the window nobody would count by then, and auto would end it on no data.
            self.problem((*eloc, "max_days"), f"max_days {days} leaves no time to measure "
                         f"{goal.describe()}: nobody's window closes before the horizon",
                         f"make max_days longer than {goal.within.days} days, several windows "
                         f"long (e.g. {max(3 * goal.within.days, goal.within.days + 30)})")
        names = [v.name for v in variants
                 if _NAME.match(v.name) and v.name not in RESERVED_VARIANT_NAMES]
        winner = spec.get("winner", WinnerRule.MANUAL.value)
        chosen = None
        if isinstance(winner, str) and winner in RESERVED_VARIANT_NAMES:
            rule = WinnerRule(winner)
        elif isinstance(winner, str) and winner in names:
            rule, chosen = WinnerRule.MANUAL, winner
        else:
            rule = WinnerRule.MANUAL
            self.problem((*eloc, "winner"), f"winner '{winner}' is not auto, manual or a "
                         f"variant", f"the variants are {', '.join(names)}")
        if len(self.problems) > count or goal is None or None in counts.values():
            return None
        return Experiment(
            name=str(name), journey=self.journey, step_key=key, kind=kind,
            variants=tuple(variants), goal=goal, min_per_variant=counts["min_per_variant"] or 1,
            max_days=counts["max_days"] or 1, rule=rule, chosen=chosen,
            version=version_of(_without_winners(step)),
            line=self.doc.line(eloc))

    def whole(self, spec: dict[str, Any], key: str, loc: Loc) -> int | None:
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem((*loc, key), f"{key} must be a whole number, 1 or more, not '{value}'",
                         "e.g. min_per_variant: 300 (customers per variant), max_days: 120")
            return None
        return value

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
    c.journey = str(name)
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


def _without_winners(value: Any) -> Any:
    """A step as written, less every ``experiment.winner`` in it (its own and those of the
    experiments in its paths): naming a winner ends an experiment, it does not change what is
    compared, so it must not start a new version of this one or of one around it."""
    if isinstance(value, list):
        return [_without_winners(v) for v in value]
    if not isinstance(value, dict):
        return value
    found = {k: _without_winners(v) for k, v in value.items()}
    if isinstance(found.get("experiment"), dict):
        found["experiment"] = {k: v for k, v in found["experiment"].items() if k != "winner"}
    return found


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
