"""Experiments in journey YAML: message splits (``variants:`` on a send step) and path splits
(``split:`` steps), compiled and validated like every journey problem, and run by the engine;
plus the assignment rule of ``core.experiments`` (hash and choice)."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aftersale.core.errors import Problem
from aftersale.core.experiments import (
    Choice,
    Experiment,
    GoalKind,
    Variant,
    WinnerRule,
    choose,
    hashed_variant,
    parse_goal,
)
from aftersale.core.journeys.engine import (
    Assigned,
    Facts,
    Position,
    SendAction,
    Status,
    advance,
    in_holdout,
)
from aftersale.core.journeys.loader import compile_journey
from aftersale.core.journeys.model import End, Journey, Jump, Send, Split, Wait
from aftersale.core.yaml_lines import parse_located
from aftersale.pipeline.definitions import check_definitions

PATH = "journeys/x.yaml"
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

MESSAGE_SPLIT = """\
journey: t
trigger: order.placed
steps:
  - send: product_tutorial
    channels: [email, whatsapp]
    variants:
      - name: guide
        weight: 50%
      - name: guide_and_offer
        weight: 50%
        template: nps_survey
        channels: [email]
        subject: "A gift for your next order"
    experiment:
      name: tutorial_offer
      goal: repeat_purchase within 30d
      min_per_variant: 300
      max_days: 120
      winner: auto
"""

PATH_SPLIT = """\
journey: t
trigger: order.placed
steps:
  - send: product_tutorial
  - split:
      - name: day7
        weight: 50%
        steps:
          - wait: 7d
          - send: nps_survey
      - name: day21
        weight: 50%
        steps:
          - wait: 21d
          - send: nps_survey
            channels: [whatsapp]
    experiment:
      name: nps_timing
      goal: response_rate within 30d
      min_per_variant: 200
      max_days: 90
      winner: manual
  - send: referral_invite
"""


def compile_text(text: str) -> tuple[Journey | None, list[Problem]]:
    doc, problems = parse_located(textwrap.dedent(text), PATH)
    assert doc is not None and problems == [], problems
    return compile_journey(doc)


def compiled(text: str) -> Journey:
    journey, problems = compile_text(text)
    assert problems == [], [str(p) for p in problems]
    assert journey is not None
    return journey


def marked(text: str) -> tuple[str, int]:
    """The text without its ``#!`` marker, and the line the marker was on."""
    lines = textwrap.dedent(text).splitlines()
    at = [i for i, line in enumerate(lines) if "#!" in line]
    assert len(at) == 1, "mark exactly one line with #!"
    lines[at[0]] = lines[at[0]].split("#!")[0].rstrip()
    return "\n".join(lines) + "\n", at[0] + 1


def the_problem(text: str) -> Problem:
    """The one problem of a journey whose bad line is marked ``#!``; it is on that line and
    says what to write."""
    source, line = marked(text)
    journey, problems = compile_text(source)
    assert journey is None
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert (problem.path, problem.line) == (PATH, line), str(problem)
    return problem


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# -- compiled shape -----------------------------------------------------------------------------

def test_a_message_split_compiles_to_a_send_carrying_its_experiment():
    journey = compiled(MESSAGE_SPLIT)
    (send,) = journey.program
    assert isinstance(send, Send)
    assert (send.key, send.template, send.channels) == ("0", "product_tutorial",
                                                        ("email", "whatsapp"))
    experiment = send.experiment
    assert experiment is not None
    assert (experiment.name, experiment.journey, experiment.step_key, experiment.kind) == (
        "tutorial_offer", "t", "0", "message")
    assert experiment.variants == (
        Variant("guide", 50.0),
        Variant("guide_and_offer", 50.0, template="nps_survey", channels=("email",),
                subject={"*": "A gift for your next order"}))
    assert experiment.control.name == "guide"
    assert experiment.goal == parse_goal("repeat_purchase within 30d")
    assert experiment.goal.kind is GoalKind.REPEAT_PURCHASE
    assert (experiment.min_per_variant, experiment.max_days) == (300, 120)
    assert (experiment.rule, experiment.chosen) == (WinnerRule.AUTO, None)
    assert experiment.line == 14  # the experiment mapping
    assert len(experiment.version) == 12
    assert journey.experiments() == (experiment,)
    assert journey.templates() == {"product_tutorial", "nps_survey"}


def test_a_path_split_compiles_like_a_branch_with_each_path_jumping_past_all_paths():
    program = compiled(PATH_SPLIT).program
    assert [type(i).__name__ for i in program] == [
        "Send", "Split", "Wait", "Send", "Jump", "Wait", "Send", "Jump", "Send"]
    split = program[1]
    assert isinstance(split, Split)
    assert split.key == "1" and split.experiment.kind == "path"
    assert [(v.name, v.weight, v.start) for v in split.experiment.variants] == [
        ("day7", 50.0, 2), ("day21", 50.0, 5)]
    assert [i.key for i in program] == ["0", "1", "1.0.0", "1.0.1", "1.0.done", "1.1.0",
                                        "1.1.1", "1.1.done", "2"]
    assert program[4] == Jump("1.0.done", target=8)
    assert program[7] == Jump("1.1.done", target=8)
    assert program[6] == Send("1.1.1", "nps_survey", ("whatsapp",))
    assert program[5] == Wait("1.1.0", timedelta(days=21))
    assert split.experiment.rule is WinnerRule.MANUAL
    assert split.experiment.line == 17


def test_weights_left_out_split_equally_and_winner_defaults_to_manual():
    text = """\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b, channels: [sms]}, {name: c, template: winback}]
            experiment: {name: e, goal: nps, min_per_variant: 50, max_days: 30}
        """
    experiment = compiled(text).experiments()[0]
    assert [v.weight for v in experiment.variants] == pytest.approx([100 / 3] * 3)
    assert experiment.rule is WinnerRule.MANUAL and experiment.chosen is None
    assert experiment.goal.within == timedelta(days=30)  # nps's default window


@pytest.mark.parametrize(("weights", "expected"), [
    (("70%", "30%"), (70.0, 30.0)),
    (("70", "30"), (70.0, 30.0)),
    ((99.5, 0.5), (99.5, 0.5)),
])
def test_weights_are_percent_with_or_without_the_sign(weights, expected):
    text = edit(edit(MESSAGE_SPLIT, "weight: 50%\n      - name: guide_and_offer",
                     f"weight: {weights[0]}\n      - name: guide_and_offer"),
                "weight: 50%\n        template", f"weight: {weights[1]}\n        template")
    assert tuple(v.weight for v in compiled(text).experiments()[0].variants) == expected


def test_naming_a_variant_as_winner_ends_the_experiment_with_it():
    text = edit(PATH_SPLIT, "winner: manual", "winner: day21")
    experiment = compiled(text).experiments()[0]
    assert experiment.chosen == "day21" and experiment.rule is WinnerRule.MANUAL


def test_a_subject_may_be_given_per_locale():
    text = edit(MESSAGE_SPLIT, 'subject: "A gift for your next order"',
                'subject: {en: "A gift", tr: "Bir hediye", pl_PL: "Prezent"}')
    variant = compiled(text).experiments()[0].variants[1]
    assert variant.subject == {"en": "A gift", "tr": "Bir hediye", "pl_PL": "Prezent"}


NESTED = """\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                steps:
                  - send: nps_survey
                    variants: [{name: x}, {name: y, channels: [sms]}]
                    experiment: {name: inner_message, goal: nps, min_per_variant: 10, max_days: 10}
              - name: b
                steps:
                  - split:
                      - {name: fast, steps: [{send: winback}]}
                      - {name: slow, steps: [{wait: 3d}, {send: winback}]}
                    experiment: {name: inner_path, goal: click, min_per_variant: 10, max_days: 10}
            experiment: {name: outer, goal: csat within 20d, min_per_variant: 10, max_days: 10}
        """


def test_a_message_split_inside_a_path_and_a_split_one_level_deep_are_allowed():
    journey = compiled(NESTED)
    assert [(e.name, e.step_key, e.kind) for e in journey.experiments()] == [
        ("outer", "0", "path"), ("inner_message", "0.0.0", "message"),
        ("inner_path", "0.1.0", "path")]
    assert [i.key for i in journey.program] == [
        "0", "0.0.0", "0.0.done", "0.1.0", "0.1.0.0.0", "0.1.0.0.done", "0.1.0.1.0",
        "0.1.0.1.1", "0.1.0.1.done", "0.1.done"]
    # the inner paths jump past the inner split, the outer ones past the outer split
    assert [(i.key, i.target) for i in journey.program if isinstance(i, Jump)] == [
        ("0.0.done", 10), ("0.1.0.0.done", 9), ("0.1.0.1.done", 9), ("0.1.done", 10)]


# -- versions -------------------------------------------------------------------------------

def version(text: str) -> str:
    return compiled(text).experiments()[0].version


def test_the_same_experiment_has_the_same_version():
    assert version(MESSAGE_SPLIT) == version(MESSAGE_SPLIT)
    # where the step stands, or what else the journey does, is not the experiment's definition
    moved = MESSAGE_SPLIT.replace("steps:\n", "steps:\n  - wait: 1d\n", 1)
    assert version(moved) == version(MESSAGE_SPLIT)


@pytest.mark.parametrize(("old", "new"), [
    ("template: nps_survey", "template: winback"),
    ('subject: "A gift for your next order"', 'subject: "A gift for you"'),
    ("weight: 50%\n      - name: guide_and", "weight: 40%\n      - name: guide_and"),
    ("min_per_variant: 300", "min_per_variant: 500"),
    ("goal: repeat_purchase within 30d", "goal: repeat_purchase within 60d"),
    ("channels: [email, whatsapp]", "channels: [whatsapp, email]"),
])
def test_editing_a_variant_or_the_experiment_makes_a_new_version(old, new):
    text = edit(MESSAGE_SPLIT, old, new)
    if "40%" in new:
        text = edit(text, "weight: 50%", "weight: 60%")
    assert version(text) != version(MESSAGE_SPLIT)


def test_editing_a_path_makes_a_new_version():
    assert version(edit(PATH_SPLIT, "wait: 21d", "wait: 28d")) != version(PATH_SPLIT)


@pytest.mark.parametrize("winner", ["manual", "guide_and_offer", "guide"])
def test_naming_the_winner_keeps_the_version(winner):
    text = edit(MESSAGE_SPLIT, "winner: auto", f"winner: {winner}")
    assert version(text) == version(MESSAGE_SPLIT)
    assert version(edit(MESSAGE_SPLIT, "      winner: auto\n", "")) == version(MESSAGE_SPLIT)


# -- bad input: each a problem on its line, saying what to write -----------------------------

BAD_INPUTS = {
    "one variant": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:  #!
              - name: only
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "at least 2 variants (found 1)"),
    "one path": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:  #!
              - {name: only, steps: [{send: nps_survey}]}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "at least 2 variants (found 1)"),
    "no name": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - template: winback  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "a variant needs a name"),
    "bad name": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: Big Offer  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "bad variant name 'Big Offer'"),
    "reserved name": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: auto  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "'auto' cannot name a variant"),
    "same name": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                steps: [{send: nps_survey}]
              - name: a  #!
                steps: [{send: winback}]
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "two variants are named 'a'"),
    "unknown message variant key": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                steps: [{send: winback}]  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "unknown field 'steps' in a message variant"),
    "unknown path variant key": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                template: winback  #!
                steps: [{send: nps_survey}]
              - name: b
                steps: [{send: winback}]
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "unknown field 'template' in a path variant"),
    "unknown experiment key": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: nps
              confidence: 95%  #!
              min_per_variant: 5
              max_days: 5
        """, "unknown field 'confidence' in an experiment"),
    "some weights": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:  #!
              - {name: a, weight: 50%}
              - {name: b}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "give every variant a weight, or none"),
    "weights not 100": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:  #!
              - {name: a, weight: 60%}
              - {name: b, weight: 30%}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "weights add up to 90%, not 100%"),
    "negative weight": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - {name: a, weight: 50%}
              - {name: b, weight: -50%}  #!
              - {name: c, weight: 100%}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "weight -50% is negative"),
    "weight over 100": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - {name: a, weight: 120%}  #!
              - {name: b, weight: "-20"}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, None),
    "weight not a number": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - {name: a, weight: half}  #!
              - {name: b, weight: 50%}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, None),
    "path without steps": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                steps: [{send: nps_survey}]
              - name: b  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, None),
    "goal not measurable": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: open_rate within 7d  #!
              min_per_variant: 5
              max_days: 5
        """, "goal 'open_rate within 7d' is not something aftersale can measure"),
    "repeat purchase without window": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: repeat_purchase  #!
              min_per_variant: 5
              max_days: 5
        """, "repeat_purchase needs a window"),
    "min_per_variant zero": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: nps
              min_per_variant: 0  #!
              max_days: 5
        """, "min_per_variant must be a whole number, 1 or more, not '0'"),
    "max_days fraction": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: nps
              min_per_variant: 5
              max_days: 7.5  #!
        """, "max_days must be a whole number, 1 or more, not '7.5'"),
    "missing max_days": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:  #!
              name: e
              goal: nps
              min_per_variant: 5
        """, "the experiment needs 'max_days'"),
    "winner not a variant": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: nps
              min_per_variant: 5
              max_days: 5
              winner: c  #!
        """, "winner 'c' is not auto, manual or a variant"),
    "variants without experiment": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]  #!
        """, "variants need an 'experiment:'"),
    "experiment without variants": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}  #!
        """, "needs 'variants:' to compare"),
    "split without experiment": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:  #!
              - {name: a, steps: [{send: nps_survey}]}
              - {name: b, steps: [{send: winback}]}
        """, "a split step needs an 'experiment:'"),
    "when on a split": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - {name: a, steps: [{send: nps_survey}]}
              - {name: b, steps: [{send: winback}]}
            when: customer.orders_count > 1  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "a split step takes no 'when'"),
    "experiment name twice": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
          - send: winback
            variants: [{name: a}, {name: b}]
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}  #!
        """, "experiment 'e' is used twice in this journey"),
    "split nested two levels": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                steps:
                  - split:
                      - name: x
                        steps:
                          - split:  #!
                              - {name: p, steps: [{send: nps_survey}]}
                              - {name: q, steps: [{send: winback}]}
                            experiment: {name: deep, goal: nps, min_per_variant: 5, max_days: 5}
                      - {name: y, steps: [{send: winback}]}
                    experiment: {name: mid, goal: nps, min_per_variant: 5, max_days: 5}
              - {name: b, steps: [{send: winback}]}
            experiment: {name: top, goal: nps, min_per_variant: 5, max_days: 5}
        """, "a split can be nested in another split's path only one level deep"),
    "message split nested two levels": ("""\
        journey: t
        trigger: order.placed
        steps:
          - split:
              - name: a
                steps:
                  - split:
                      - name: x
                        steps:
                          - send: nps_survey  #!
                            variants: [{name: p}, {name: q}]
                            experiment: {name: deep, goal: nps, min_per_variant: 5, max_days: 5}
                      - {name: y, steps: [{send: winback}]}
                    experiment: {name: mid, goal: nps, min_per_variant: 5, max_days: 5}
              - {name: b, steps: [{send: winback}]}
            experiment: {name: top, goal: nps, min_per_variant: 5, max_days: 5}
        """, "only one level deep"),
    "bad variant channel": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                channels: [email, pigeon]  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "unknown channel 'pigeon'"),
    "bad variant template": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                template: Other Template  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "template needs a template name"),
    "subject without email": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                channels: [sms]
                subject: Hello  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "a subject line only changes e-mails"),
    "subject locale": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                subject:
                  en: Hello
                  english: Hello  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "'english' is not a locale name"),
    "subject not text": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: b
                subject: [Hello]  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "subject must be a line of text or one per locale"),
    "zero weight": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - {name: a, weight: 100%}
              - {name: b, weight: 0%}  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """, "a variant with weight 0% gets nobody"),
    "experiment name too long": (f"""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{{name: a}}, {{name: b}}]
            experiment:
              name: {"e" * 65}  #!
              goal: nps
              min_per_variant: 5
              max_days: 5
        """, "is longer than 64 characters"),
    "variant name too long": (f"""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - name: a
              - name: {"b" * 65}  #!
            experiment: {{name: e, goal: nps, min_per_variant: 5, max_days: 5}}
        """, "is longer than 64 characters"),
    "horizon within the goal's window": ("""\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants: [{name: a}, {name: b}]
            experiment:
              name: e
              goal: repeat_purchase within 60d
              min_per_variant: 5
              max_days: 60  #!
        """, "nobody's window closes before the horizon"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_experiment_input_is_a_problem_on_its_line_with_a_hint(case):
    text, message = BAD_INPUTS[case]
    if case == "weight over 100":
        return  # two problems: the test below
    problem = the_problem(text)
    if message is not None:
        assert message in problem.message, str(problem)
    assert problem.hint, str(problem)


def test_a_winner_that_is_not_a_variant_names_the_variants():
    problem = the_problem(BAD_INPUTS["winner not a variant"][0])
    assert problem.hint == "the variants are a, b"


def test_weights_out_of_range_are_each_reported_even_when_they_add_up_to_100():
    source, _ = marked(BAD_INPUTS["weight over 100"][0])
    _, problems = compile_text(source)
    assert [(p.line, p.message) for p in problems] == [
        (6, "weight 120% is more than 100%"), (7, "weight -20 is negative")]


@pytest.mark.parametrize("winner", ["[a]", "{a: 1}", "true", "3"])
def test_a_winner_of_another_kind_is_a_problem_not_a_crash(winner):
    text = edit(BAD_INPUTS["winner not a variant"][0], "winner: c  #!", f"winner: {winner}  #!")
    assert "is not auto, manual or a variant" in the_problem(text).message


def test_a_split_with_when_says_why_it_cannot_have_one():
    problem = the_problem(BAD_INPUTS["when on a split"][0])
    assert "first path" in problem.message


def test_every_problem_of_an_experiment_is_reported_at_once():
    text = """\
        journey: t
        trigger: order.placed
        steps:
          - send: nps_survey
            variants:
              - {name: a, colour: red}
              - {name: a}
            experiment: {name: e, goal: opens, min_per_variant: -1, max_days: 5, winner: z}
        """
    _, problems = compile_text(text)
    assert sorted((p.line, p.message.split(" ")[0]) for p in problems) == [
        (6, "unknown"), (7, "two"), (8, "goal"), (8, "min_per_variant"), (8, "winner")]


def test_the_rest_of_the_journey_is_validated_as_before():
    text = edit(PATH_SPLIT, "wait: 7d", "wait: 7 days")
    text = edit(text, "send: referral_invite", "send: referral_invite\n    channels: [fax]")
    _, problems = compile_text(text)
    assert sorted(p.line for p in problems) == [9, 24]


# -- the engine ---------------------------------------------------------------------------

def facts(**variants: str) -> Facts:
    return Facts(context={"customer": {"id": "c-1"}},
                 variants={name: Choice(v, randomized=True) for name, v in variants.items()})


def test_a_message_split_sends_the_chosen_variant_after_recording_the_assignment():
    journey = compiled(MESSAGE_SPLIT)
    experiment = journey.experiments()[0]
    control = advance(journey, Position(), facts(tutorial_offer="guide"), T0)
    assert control.actions == (
        Assigned("0", "tutorial_offer", experiment.version, "guide", True),
        SendAction("0", "product_tutorial", ("email", "whatsapp"), None))
    offer = advance(journey, Position(), facts(tutorial_offer="guide_and_offer"), T0)
    assert offer.actions[1] == SendAction("0", "nps_survey", ("email",),
                                          {"*": "A gift for your next order"})
    assert offer.status is Status.COMPLETED


def test_a_decided_winner_is_sent_but_not_recorded_as_random():
    journey = compiled(MESSAGE_SPLIT)
    decided = Facts(context={}, variants={"tutorial_offer": Choice("guide_and_offer", False)})
    assigned = advance(journey, Position(), decided, T0).actions[0]
    assert isinstance(assigned, Assigned) and assigned.randomized is False


def test_an_experiment_without_a_choice_is_an_adapter_error():
    with pytest.raises(KeyError, match="tutorial_offer"):
        advance(compiled(MESSAGE_SPLIT), Position(), Facts(context={}), T0)


def sent_keys(outcome) -> list[str]:
    return [a.step_key for a in outcome.actions if isinstance(a, SendAction)]


@pytest.mark.parametrize(("variant", "wait", "key"), [("day7", 7, "1.0.1"),
                                                      ("day21", 21, "1.1.1")])
def test_a_path_split_runs_the_chosen_path_resumes_inside_it_and_continues_after_all_paths(
        variant, wait, key):
    journey = compiled(PATH_SPLIT)
    chosen = facts(nps_timing=variant)
    first = advance(journey, Position(), chosen, T0)
    assert sent_keys(first) == ["0"]
    assert [a.variant for a in first.actions if isinstance(a, Assigned)] == [variant]
    assert first.status is Status.ACTIVE and first.due_at == T0 + wait * DAY
    assert first.position.pc == journey.experiments()[0].variant(variant).start
    # woken early: still waiting inside the path, nothing assigned again
    early = advance(journey, first.position, chosen, T0 + DAY)
    assert early.actions == () and early.position == first.position
    # at the due time it continues inside its path, then jumps past the other path
    later = advance(journey, first.position, chosen, T0 + wait * DAY)
    assert sent_keys(later) == [key, "2"]
    assert not any(isinstance(a, Assigned) for a in later.actions)
    assert later.status is Status.COMPLETED


def test_end_inside_a_path_ends_the_journey():
    text = edit(PATH_SPLIT, "- wait: 7d\n          - send: nps_survey",
                "- send: nps_survey\n          - end")
    journey = compiled(text)
    assert isinstance(journey.program[3], End)
    outcome = advance(journey, Position(), facts(nps_timing="day7"), T0)
    assert sent_keys(outcome) == ["0", "1.0.0"]
    assert outcome.status is Status.COMPLETED and outcome.reason == "end step 1.0.1"


def test_a_message_split_inside_a_path_split_uses_both_choices():
    text = edit(PATH_SPLIT, "- wait: 7d\n          - send: nps_survey", """\
- send: nps_survey
            variants: [{name: mail}, {name: text, channels: [sms]}]
            experiment: {name: channel, goal: response_rate, min_per_variant: 5, max_days: 30}""")
    journey = compiled(text)
    outcome = advance(journey, Position(), facts(nps_timing="day7", channel="text"), T0)
    assert [(a.experiment, a.variant, a.step_key) for a in outcome.actions
            if isinstance(a, Assigned)] == [("nps_timing", "day7", "1"),
                                            ("channel", "text", "1.0.0")]
    assert [(a.step_key, a.channels) for a in outcome.actions
            if isinstance(a, SendAction)] == [("0", ("email",)), ("1.0.0", ("sms",)),
                                              ("2", ("email",))]
    experiments = {e.name: e for e in journey.experiments()}
    assert experiments["nps_timing"].in_scope("1.0.0")
    assert not experiments["channel"].in_scope("1")


def test_a_when_inside_a_path_skips_only_that_step():
    text = edit(PATH_SPLIT, "- wait: 7d", "- wait: 7d\n            when: customer.id == \"x\"")
    outcome = advance(compiled(text), Position(), facts(nps_timing="day7"), T0)
    assert sent_keys(outcome) == ["0", "1.0.1", "2"]


# -- assignment: core.experiments -------------------------------------------------------------

def experiment(*weights: float, chosen: str | None = None) -> Experiment:
    variants = tuple(Variant(chr(ord("a") + i), w) for i, w in enumerate(weights))
    return Experiment("e", "j", "0", "message", variants, parse_goal("nps"), 10, 10,
                      WinnerRule.AUTO, chosen)


def test_the_hashed_variant_is_deterministic_and_depends_on_journey_and_experiment():
    variants = experiment(50, 50).variants
    draws = [hashed_variant("j", "e", f"c-{i}", variants) for i in range(200)]
    assert draws == [hashed_variant("j", "e", f"c-{i}", variants) for i in range(200)]
    assert draws != [hashed_variant("j", "other", f"c-{i}", variants) for i in range(200)]
    assert draws != [hashed_variant("k", "e", f"c-{i}", variants) for i in range(200)]
    # known values: SHA-256 of "experiment:j:e:c-0" etc., so no release or machine moves anyone
    assert "".join(draws[:16]) == "abbbaabbaaababba"


def within_four_se(count: int, n: int, share: float) -> bool:
    return abs(count / n - share) <= 4 * math.sqrt(share * (1 - share) / n)


def test_weights_are_honoured_within_binomial_noise():
    variants = experiment(70, 30).variants
    n = 20_000
    draws = [hashed_variant("j", "e", f"customer-{i}", variants) for i in range(n)]
    assert within_four_se(draws.count("a"), n, 0.7), draws.count("a")
    three = experiment(20, 30, 50).variants
    draws = [hashed_variant("j", "e", f"customer-{i}", three) for i in range(n)]
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert within_four_se(draws.count(name), n, share), (name, draws.count(name))


def test_a_variant_weighted_zero_is_never_drawn():
    variants = experiment(0, 100).variants
    assert {hashed_variant("j", "e", f"c-{i}", variants) for i in range(2_000)} == {"b"}
    variants = experiment(100, 0).variants
    assert {hashed_variant("j", "e", f"c-{i}", variants) for i in range(2_000)} == {"a"}


def test_the_variant_shares_hold_among_the_customers_outside_the_holdout():
    variants = experiment(70, 30).variants
    outside = [f"customer-{i}" for i in range(25_000) if not in_holdout("j", f"customer-{i}", 20)]
    assert within_four_se(len(outside), 25_000, 0.8)
    draws = [hashed_variant("j", "e", c, variants) for c in outside]
    assert within_four_se(draws.count("a"), len(outside), 0.7), draws.count("a")
    held = [f"customer-{i}" for i in range(25_000) if in_holdout("j", f"customer-{i}", 20)]
    held_draws = [hashed_variant("j", "e", c, variants) for c in held]
    assert within_four_se(held_draws.count("a"), len(held), 0.7)


def test_choose_prefers_the_named_winner_then_the_decision_then_the_assignment_then_the_hash():
    open_ = experiment(50, 50)
    hashed = hashed_variant("j", "e", "c-1", open_.variants)
    other = "b" if hashed == "a" else "a"
    assert choose(open_, "c-1", None, None) == Choice(hashed, randomized=True)
    assert choose(open_, "c-1", other, None) == Choice(other, randomized=True)
    assert choose(open_, "c-1", other, hashed) == Choice(hashed, randomized=False)
    ended = experiment(50, 50, chosen=other)
    assert choose(ended, "c-1", hashed, hashed) == Choice(other, randomized=False)


def test_an_assignment_or_decision_the_new_version_lacks_falls_back():
    edited = experiment(50, 50)
    hashed = hashed_variant("j", "e", "c-1", edited.variants)
    assert choose(edited, "c-1", "removed", None) == Choice(hashed, randomized=True)
    assert choose(edited, "c-1", "b", "removed") == Choice("b", randomized=True)


# -- validate: content cross-checks -------------------------------------------------------

def validate(tmp_path: Path, text: str) -> list[Problem]:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "segments.yaml").write_text(
        (ROOT / "journeys" / "segments.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (journeys / "x.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    definitions, problems = check_definitions(journeys, ROOT / "content")
    assert (definitions is None) == bool(problems)
    return problems


def test_a_valid_experiment_passes_validate(tmp_path: Path):
    assert validate(tmp_path, PATH_SPLIT) == []


def test_validate_checks_each_variants_template_channels_and_subject_locales(tmp_path: Path):
    text = """\
        journey: t
        trigger: order.placed
        steps:
          - send: product_tutorial
            channels: [email, whatsapp]
            variants:
              - name: a
              - name: b
                template: no_such_template
              - name: c
                channels: [email, sms]
              - name: d
                subject: {en: Hi, tr-TR: Merhaba, de: Hallo}
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
          - split:
              - name: p
                steps:
                  - send: nps_survey
              - name: q
                steps:
                  - send: missing_too
            experiment: {name: f, goal: nps, min_per_variant: 5, max_days: 5}
        """
    problems = validate(tmp_path, text)
    assert [(p.line, p.message) for p in problems] == [
        (9, "unknown template 'no_such_template'"),
        (11, "template 'product_tutorial' has no sms content"),
        (13, "no content is written in locale 'de'"),
        (21, "unknown template 'missing_too'"),
    ], [str(p) for p in problems]


# -- hostile input --------------------------------------------------------------------------

JUNK = [None, True, 0, -1, 1.5, "", "x", "auto", [], {}, [1], {"a": 1}, [{"name": "k"}], "nan",
        float("nan"), "50%", {"en": None}]


def _places(value, at=()):
    yield at
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, inner in items:
        yield from _places(inner, (*at, key))


def test_any_value_anywhere_in_an_experiment_is_a_problem_never_a_crash():
    import copy
    import random

    from aftersale.core.yaml_lines import Located

    nested = compiled(NESTED).source["steps"]
    base = {**compiled(MESSAGE_SPLIT).source, "steps": [
        *compiled(MESSAGE_SPLIT).source["steps"], *compiled(PATH_SPLIT).source["steps"],
        *nested]}
    assert compile_journey(Located(PATH, base))[1] == []
    places = [p for p in _places(base) if p]
    rnd = random.Random(18)
    for _ in range(1_500):
        data = copy.deepcopy(base)
        for _ in range(rnd.randint(1, 3)):
            *outer, last = rnd.choice(places)
            try:
                target = data
                for key in outer:
                    target = target[key]
                if rnd.random() < 0.2 and isinstance(target, dict):
                    del target[last]
                else:
                    target[last] = copy.deepcopy(rnd.choice(JUNK))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier change removed or replaced the place
        journey, problems = compile_journey(Located(PATH, data))
        assert (journey is None) == bool(problems)
        for experiment in journey.experiments() if journey else ():
            assert sum(v.weight for v in experiment.variants) == pytest.approx(100)


def test_naming_an_inner_experiments_winner_keeps_the_outer_version():
    """The outer split's step holds the inner experiment: naming the inner winner ends the
    inner one, and must not restart the experiment around it."""
    inner_winner = edit(NESTED, "click, min_per_variant: 10, max_days: 10}",
                        "click, min_per_variant: 10, max_days: 10, winner: slow}")
    before, after = compiled(NESTED).experiments(), compiled(inner_winner).experiments()
    assert after[2].chosen == "slow" and before[2].chosen is None
    assert [e.version for e in after] == [e.version for e in before]


def test_a_variant_subject_that_cannot_render_is_a_problem_on_its_line(tmp_path: Path):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "segments.yaml").write_text((ROOT / "journeys" / "segments.yaml").read_text())
    text, line = marked("""\
        journey: t
        trigger: order.placed
        steps:
          - send: product_tutorial
            variants:
              - name: a
              - name: b
                subject: "Hi {{ customer.first_name "  #!
            experiment: {name: e, goal: nps, min_per_variant: 5, max_days: 5}
        """)
    (journeys / "t.yaml").write_text(text)
    _, problems = check_definitions(journeys, ROOT / "content")
    assert [(p.line, "subject cannot be read" in p.message) for p in problems] == [(line, True)]
    (journeys / "t.yaml").write_text(text.replace('"Hi {{ customer.first_name "',
                                                  '"Hi {{ nobody.name }}"'))
    _, problems = check_definitions(journeys, ROOT / "content")
    assert [p.line for p in problems] == [line] and "nobody" in problems[0].message, problems
