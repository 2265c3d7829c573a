"""Journey YAML to a compiled program: structure, step keys, versions, and every problem with
its file and line."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from aftersale.core.errors import Problem
from aftersale.core.journeys.loader import (
    compile_journey,
    journey_from_source,
    parse_holdout,
    version_of,
)
from aftersale.core.journeys.model import (
    Alert,
    End,
    Journey,
    Jump,
    OnTimeout,
    Reentry,
    Send,
    StalledAfter,
    Wait,
    WaitFor,
)
from aftersale.core.journeys.model import Test as Case  # not "Test*": pytest would try to collect it
from aftersale.core.yaml_lines import parse_located

PATH = "journeys/x.yaml"


def compile_text(text: str) -> tuple[Journey | None, list[Problem]]:
    doc, problems = parse_located(textwrap.dedent(text), PATH)
    if doc is None:
        return None, problems
    assert problems == [], problems
    return compile_journey(doc)


def compiled(text: str) -> Journey:
    journey, problems = compile_text(text)
    assert problems == [], [str(p) for p in problems]
    assert journey is not None
    return journey


def problems_of(text: str) -> list[Problem]:
    journey, problems = compile_text(text)
    assert journey is None
    assert problems
    for problem in problems:
        assert problem.path == PATH
    return problems


def lines_and_messages(text: str) -> list[tuple[int, str]]:
    return sorted((p.line, p.message) for p in problems_of(text))


POST_PURCHASE = """\
    journey: post-purchase
    description: The example from the design
    trigger: order.placed
    segments: [first_time, repeat, vip]
    exit_on: [order.cancelled, order.refunded]
    holdout: 10%
    reentry: once_per_customer
    steps:
      - wait_for: order.shipped
        timeout: 7d
      - send: shipping_update
        channels: [whatsapp, sms, email]
      - wait_for: order.delivered
        timeout: 21d
        on_timeout: end
      - wait: 1d
      - send: product_tutorial
        when: order.has_category("drones")
      - wait: 7d
      - send: nps_survey
      - branch:
          - if: response.nps <= 6
            then: [{alert: detractor}, {send: detractor_followup}]
          - if: response.nps >= 9
            then: [{send: referral_invite}]
          - else:
              - end
    """


def test_the_design_example_compiles_to_a_flat_program_with_its_settings():
    journey = compiled(POST_PURCHASE)
    assert journey.name == "post-purchase"
    assert journey.description == "The example from the design"
    assert journey.trigger == "order.placed"
    assert journey.segments == ("first_time", "repeat", "vip")
    assert journey.exit_on == ("order.cancelled", "order.refunded")
    assert journey.holdout_percent == 10.0
    assert journey.reentry is Reentry.ONCE_PER_CUSTOMER
    assert journey.path == PATH
    assert journey.templates() == {"shipping_update", "product_tutorial", "nps_survey",
                                   "detractor_followup", "referral_invite"}
    kinds = [type(i).__name__ for i in journey.program]
    assert kinds == ["WaitFor", "Send", "WaitFor", "Wait", "Send", "Wait", "Send",
                     "Test", "Alert", "Send", "Jump",
                     "Test", "Send", "Jump",
                     "Test", "End", "Jump"]


def test_steps_compile_with_their_values():
    program = compiled(POST_PURCHASE).program
    assert program[0] == WaitFor("0", "order.shipped", timedelta(days=7), OnTimeout.CONTINUE)
    assert program[1] == Send("1", "shipping_update", ("whatsapp", "sms", "email"))
    assert program[2] == WaitFor("2", "order.delivered", timedelta(days=21), OnTimeout.END)
    assert program[3] == Wait("3", timedelta(days=1))
    assert isinstance(program[4], Send)
    assert program[4].when is not None
    assert program[4].when.source == 'order.has_category("drones")'
    assert program[6] == Send("6", "nps_survey", ("email",))  # email is the default channel
    assert program[8] == Alert("7.0.0", "detractor")


def test_branches_are_flattened_into_tests_and_forward_jumps_past_the_branch():
    program = compiled(POST_PURCHASE).program
    tests = [(at, i) for at, i in enumerate(program) if isinstance(i, Case)]
    assert [i.key for _, i in tests] == ["7.0", "7.1", "7.2"]
    # each failed test jumps to the next case; the else case has no condition
    assert tests[0][1].on_false == tests[1][0]
    assert tests[1][1].on_false == tests[2][0]
    assert tests[2][1].condition is None
    assert tests[2][1].on_false == len(program)
    jumps = [i for i in program if isinstance(i, Jump)]
    assert [j.key for j in jumps] == ["7.0.done", "7.1.done", "7.2.done"]
    assert all(j.target == len(program) for j in jumps)


def test_step_keys_follow_the_position_in_the_file_and_are_unique():
    journey = compiled("""\
        journey: nested
        trigger: order.placed
        steps:
          - send: a
          - branch:
              - if: customer.orders_count == 1
                then:
                  - send: b
                  - branch:
                      - if: order.total > 100
                        then:
                          - send: c
                          - alert: big_first_order
                      - else:
                          - send: d
              - else:
                  - send: e
          - send: f
        """)
    keys = {i.template: i.key for i in journey.program if isinstance(i, Send)}
    assert keys == {"a": "0", "b": "1.0.0", "c": "1.0.1.0.0", "d": "1.0.1.1.0",
                    "e": "1.1.0", "f": "2"}
    all_keys = [i.key for i in journey.program]
    assert len(all_keys) == len(set(all_keys))
    assert [i.key for i in journey.program if isinstance(i, Alert)] == ["1.0.1.0.1"]


def test_every_jump_and_test_in_a_nested_branch_goes_forward():
    journey = compiled("""\
        journey: nested
        trigger: order.placed
        steps:
          - branch:
              - if: customer.orders_count == 1
                then:
                  - branch:
                      - if: order.total > 100
                        then: [{send: c}]
          - send: f
        """)
    for at, instruction in enumerate(journey.program):
        if isinstance(instruction, Jump):
            assert instruction.target > at
        if isinstance(instruction, Case):
            assert instruction.on_false > at


def test_a_bare_end_and_an_end_mapping_both_compile_to_an_end_step():
    journey = compiled("""\
        journey: ends
        trigger: order.placed
        steps:
          - end:
            when: order.total > 100
          - send: a
          - end
        """)
    assert isinstance(journey.program[0], End)
    assert journey.program[0].when is not None
    assert journey.program[2] == End("2")


@pytest.mark.parametrize(
    ("written", "percent"),
    [("10%", 10.0), ("0.1", 10.0), ("10", 10.0), ("0%", 0.0), ("100%", 100.0), ("0.5", 50.0),
     ("0.5%", 0.5), ("1", 1.0), (" 25 % ", 25.0), ("12.5%", 12.5), ("0", 0.0), ("100", 100.0)],
)
def test_holdout_is_read_as_a_percentage_in_every_written_form(written, percent):
    assert parse_holdout(written) == pytest.approx(percent)


@pytest.mark.parametrize(
    ("value", "percent"), [("10%", 10.0), (0.1, 10.0), (10, 10.0), (0, 0.0), ("0%", 0.0)],
)
def test_holdout_in_yaml_sets_the_journey_percent(value, percent):
    journey = compiled(f"""\
        journey: h
        trigger: order.placed
        holdout: {value}
        steps: [{{send: a}}]
        """)
    assert journey.holdout_percent == pytest.approx(percent)


@pytest.mark.parametrize("value", ["150%", "-5", "abc", "true", ".nan"])
def test_a_holdout_outside_zero_to_hundred_percent_is_a_problem_on_its_line(value):
    problems = problems_of(f"""\
        journey: h
        trigger: order.placed
        holdout: {value}
        steps: [{{send: a}}]
        """)
    assert [(p.line, p.message.startswith("bad holdout")) for p in problems] == [(3, True)]
    assert problems[0].hint == "write e.g. 10%"


def test_the_default_reentry_rule_is_once_per_order_and_holdout_is_zero():
    journey = compiled("journey: d\ntrigger: order.placed\nsteps: [{send: a}]\n")
    assert journey.reentry is Reentry.ONCE_PER_ORDER
    assert journey.holdout_percent == 0.0
    assert journey.exit_on == ()
    assert journey.segments == ()


def test_single_strings_are_accepted_for_lists():
    journey = compiled("""\
        journey: s
        trigger: order.placed
        segments: vip
        exit_on: order.cancelled
        steps:
          - send: a
            channels: sms
        """)
    assert journey.segments == ("vip",)
    assert journey.exit_on == ("order.cancelled",)
    assert journey.program[0] == Send("0", "a", ("sms",))


# -- versions ---------------------------------------------------------------------------------

def test_the_version_is_stable_for_the_same_definition_and_ignores_key_order():
    first = compiled(POST_PURCHASE)
    again = compiled(POST_PURCHASE)
    assert first.version == again.version
    assert len(first.version) == 12
    reordered = dict(reversed(list(first.source.items())))
    assert version_of(reordered) == first.version


def test_an_edited_journey_gets_a_different_version():
    original = compiled(POST_PURCHASE)
    edited = compiled(POST_PURCHASE.replace("wait: 7d", "wait: 8d"))
    assert edited.version != original.version
    assert original.program[5] == Wait("5", timedelta(days=7))  # the old one is untouched
    assert edited.program[5] == Wait("5", timedelta(days=8))


def test_a_stored_source_rebuilds_the_same_version_and_program():
    original = compiled(POST_PURCHASE)
    rebuilt = journey_from_source(original.source)
    assert rebuilt.version == original.version
    assert [type(i) for i in rebuilt.program] == [type(i) for i in original.program]
    assert [i.key for i in rebuilt.program] == [i.key for i in original.program]


def test_rebuilding_an_invalid_stored_source_raises_with_the_problems():
    with pytest.raises(ValueError, match="missing 'steps'"):
        journey_from_source({"journey": "x", "trigger": "order.placed"})


# -- problems with exact lines ----------------------------------------------------------------

def test_an_unknown_top_level_field_is_reported_on_its_line_with_the_known_fields():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
        exit_when: order.cancelled
        """)
    assert [(p.line, p.message) for p in problems] == [(5, "unknown field 'exit_when'")]
    assert "exit_on" in problems[0].hint and "holdout" in problems[0].hint


def test_an_unknown_field_in_a_step_is_reported_on_its_line():
    assert lines_and_messages("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
            channels: [email]
            delay: 1d
          - wait: 1d
            timeout: 2d
        """) == [(6, "unknown field 'delay' in a send step"),
                 (8, "unknown field 'timeout' in a wait step")]


def test_a_bad_duration_is_reported_on_the_line_of_the_value():
    assert lines_and_messages("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
          - wait: 7 days
          - wait_for: order.shipped
            timeout: soon
          - wait: 3
        """) == [
        (5, "'7 days' is not a duration; write e.g. 30m, 6h, 1d, 2w or 1d12h"),
        (7, "'soon' is not a duration; write e.g. 30m, 6h, 1d, 2w or 1d12h"),
        (8, "a duration needs a unit: write 3d or 3h, not 3"),
    ]


@pytest.mark.parametrize("value", ["1000000000d", "99999999999999999999s"])
def test_a_duration_too_large_to_represent_is_a_problem_not_a_crash(value):
    assert lines_and_messages(f"""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
          - wait: {value}
        """)[0][0] == 5


def test_unknown_events_in_trigger_wait_for_and_exit_on_are_reported_on_their_lines():
    problems = problems_of("""\
        journey: j
        trigger: order.paid
        exit_on:
          - order.cancelled
          - order.returned
        steps:
          - wait_for: order.shiped
            timeout: 7d
        """)
    assert sorted((p.line, p.message) for p in problems) == [
        (2, "unknown event 'order.paid'"),
        (5, "unknown event 'order.returned'"),
        (7, "unknown event 'order.shiped'"),
    ]
    for problem in problems:
        assert "order.placed" in problem.hint and "survey.responded" in problem.hint


def test_an_unknown_channel_is_reported_on_its_own_line():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
            channels:
              - email
              - telegram
        """)
    assert [(p.line, p.message, p.hint) for p in problems] == [
        (7, "unknown channel 'telegram'", "use email, sms, whatsapp")]


def test_a_channel_listed_twice_is_a_problem():
    assert lines_and_messages("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
            channels: [email, sms, email]
        """) == [(5, "a channel is listed twice")]


def test_a_wait_for_without_a_timeout_is_reported_on_the_step_line():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
          - wait_for: order.delivered
          - send: b
        """)
    assert [(p.line, p.message, p.hint) for p in problems] == [
        (5, "wait_for needs a timeout", "add e.g. 'timeout: 7d'")]


def test_a_bad_on_timeout_is_reported_on_its_line():
    assert lines_and_messages("""\
        journey: j
        trigger: order.placed
        steps:
          - wait_for: order.delivered
            timeout: 7d
            on_timeout: stop
        """) == [(6, "on_timeout must be continue or end, not 'stop'")]


def test_a_step_after_an_unconditional_end_is_unreachable_and_reported_on_its_line():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
          - end
          - send: b
          - wait: 1d
        """)
    assert [(p.line, p.message) for p in problems] == [
        (6, "this step can never run: an 'end' step comes before it"),
        (7, "this step can never run: an 'end' step comes before it"),
    ]


def test_a_step_after_a_conditional_end_or_an_end_inside_a_branch_is_reachable():
    compiled("""\
        journey: j
        trigger: order.placed
        steps:
          - end:
            when: order.total > 100
          - branch:
              - if: response.csat <= 2
                then: [{alert: unhappy}, end]
          - send: b
        """)


def test_an_end_inside_a_branch_makes_the_rest_of_that_case_unreachable():
    assert lines_and_messages("""\
        journey: j
        trigger: order.placed
        steps:
          - branch:
              - if: response.csat <= 2
                then:
                  - end
                  - send: never
          - send: b
        """) == [(8, "this step can never run: an 'end' step comes before it")]


def test_else_that_is_not_the_last_case_is_reported_on_its_line():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - branch:
              - if: response.nps <= 6
                then: [{send: a}]
              - else: [{send: b}]
              - if: response.nps >= 9
                then: [{send: c}]
        """)
    assert [(p.line, p.message, p.hint) for p in problems] == [
        (7, "the cases after 'else' can never run", "put 'else' last")]


@pytest.mark.parametrize(
    ("case", "line", "message"),
    [
        ("- if: response.nps <= 6", 5, "a branch case needs both 'if' and 'then'"),
        ("- then: [{send: a}]", 5, "a branch case needs both 'if' and 'then'"),
        ("- if: response.nps <= 6\n        then: [{send: a}]\n        when: true", 7,
         "unknown field 'when' in a branch case"),
        ("- just text", 5, "a branch case must be a mapping with 'if' and 'then'"),
        ("- if: response.score <= 6\n        then: [{send: a}]", 5,
         "unknown field response.score; known: ces, comment, csat, nps"),
        ("- if: response.nps <= 6\n        then: []", 6, "steps must be a non-empty list"),
    ],
)
def test_a_malformed_branch_case_is_reported_on_its_line(case, line, message):
    text = ("journey: j\ntrigger: order.placed\nsteps:\n  - branch:\n      "
            + case + "\n")
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert [(p.line, p.message) for p in problems] == [(line, message)]


def test_a_bad_condition_in_when_is_reported_on_its_line_with_the_reason():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
            when: __import__('os').system('rm -rf /')
          - send: b
            when: customer.vip == true
        """)
    assert [p.line for p in problems] == [5, 7]
    assert "is not allowed in a condition" in problems[0].message
    assert problems[1].message.startswith("unknown field customer.vip; known: ")


@pytest.mark.parametrize(
    ("step", "line", "message"),
    [
        ("- send: Bad Name", 4, "send needs a template name such as 'nps_survey'"),
        ("- alert: 42", 4, "alert needs a kind such as 'detractor'"),
        ("- send: a\n    wait: 1d", 4,
         "a step needs exactly one of send, wait, wait_for, branch, split, alert, end (found send, wait)"),
        ("- channels: [email]", 4,
         "a step needs exactly one of send, wait, wait_for, branch, split, alert, end (found none)"),
        ("- 42", 4, "a step must be a mapping such as '- send: nps_survey'"),
        ("- branch: {}", 4, "branch needs a list of cases: '- if: ...' with 'then: [...]'"),
        ("- send: a\n    channels: []", 5, "channels must be a list such as [whatsapp, email]"),
    ],
)
def test_a_malformed_step_is_reported_on_its_line(step, line, message):
    text = "journey: j\ntrigger: order.placed\nsteps:\n  " + step + "\n"
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert [(p.line, p.message) for p in problems] == [(line, message)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trigger: order.placed\nsteps: [{send: a}]\n", [(1, "missing 'journey'")]),
        ("journey: j\nsteps: [{send: a}]\n", [(1, "missing 'trigger'")]),
        ("journey: j\ntrigger: order.placed\n", [(1, "missing 'steps'")]),
        ("journey: j\ntrigger: order.placed\nsteps: []\n",
         [(3, "steps must be a non-empty list")]),
        ("journey: Post Purchase\ntrigger: order.placed\nsteps: [{send: a}]\n",
         [(1, "journey needs a name of lowercase letters, digits, - and _")]),
        ("journey: j\ntrigger: order.placed\nreentry: always\nsteps: [{send: a}]\n",
         [(3, "unknown reentry rule 'always'")]),
        ("journey: j\ntrigger: order.placed\nsegments: {vip: 1}\nsteps: [{send: a}]\n",
         [(3, "segments must be a list of segment names")]),
        ("- just\n- a list\n",
         [(1, "a journey file must be a mapping with journey, trigger and steps")]),
    ],
)
def test_structural_problems_name_the_line(text, expected):
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert [(p.line, p.message) for p in problems] == expected


def test_every_problem_is_collected_not_just_the_first():
    problems = problems_of("""\
        journey: j
        trigger: order.paid
        colour: blue
        steps:
          - wait: 1x
          - send: a
            channels: [fax]
        """)
    assert sorted(p.line for p in problems) == [2, 3, 5, 7]


def test_a_yaml_syntax_error_is_reported_with_the_line_where_parsing_stopped():
    doc, problems = parse_located(textwrap.dedent("""\
        journey: j
        trigger: order.placed
        steps:
          - send: a
            channels: [email, sms
          - wait: 1d
        """), PATH)
    assert doc is None
    assert len(problems) == 1
    assert problems[0].path == PATH
    assert problems[0].line == 6
    assert problems[0].message.startswith("YAML syntax error: ")


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("exit_on:\n", 3),
        ("exit_on: 5\n", 3),
        ("reentry: [once_per_order]\n", 3),
        ("exit_on: {order.cancelled: true}\n", 3),
    ],
)
def test_an_ill_typed_top_level_value_is_a_problem_not_a_crash(extra, line):
    text = "journey: j\ntrigger: order.placed\n" + extra + "steps:\n  - send: a\n"
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert problems
    assert line in [p.line for p in problems]


@pytest.mark.parametrize(
    "step",
    [
        "- wait_for: order.shipped\n    timeout: 1d\n    on_timeout: [end]",
        "- send: a\n    channels: [[email]]",
    ],
)
def test_an_ill_typed_step_value_is_a_problem_not_a_crash(step):
    text = "journey: j\ntrigger: order.placed\nsteps:\n  " + step + "\n"
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert problems and all(p.line >= 4 for p in problems)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("journey:\ntrigger: order.placed\nsteps: [{send: a}]\n", 1),
        ("journey: j\ntrigger:\nsteps: [{send: a}]\n", 2),
    ],
)
def test_an_empty_journey_name_or_trigger_is_a_problem(text, line):
    doc, _ = parse_located(text, PATH)
    journey, problems = compile_journey(doc)
    assert journey is None
    assert [p.line for p in problems] == [line]


# -- the YAML layer itself --------------------------------------------------------------------

def test_yaml_lines_are_recorded_for_keys_and_list_items():
    doc, problems = parse_located("a: 1\nb:\n  - x\n  - c: 2\n", PATH)
    assert problems == []
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}]}
    assert doc.line(("a",)) == 1
    assert doc.line(("b", 0)) == 3
    assert doc.line(("b", 1, "c")) == 4
    assert doc.line(("b", 1, "missing")) == 4  # nearest ancestor
    assert doc.line(("nothing",)) == 1


def test_a_duplicate_key_is_a_problem_on_the_second_occurrence():
    doc, problems = parse_located("journey: a\ntrigger: order.placed\njourney: b\n", PATH)
    assert [(p.line, p.message) for p in problems] == [(3, "duplicate key 'journey'")]
    assert doc is not None


def test_a_key_that_is_not_a_plain_word_is_a_problem():
    doc, problems = parse_located("? [a, b]\n: 1\nc: 2\n", PATH)
    assert [(p.line, p.message) for p in problems] == [(1, "a key must be a plain word")]
    assert doc.data == {"c": 2}


def test_an_empty_document_has_no_data_and_compiles_to_a_problem():
    doc, problems = parse_located("", PATH)
    assert problems == [] and doc is not None and doc.data is None
    journey, problems = compile_journey(doc)
    assert journey is None
    assert [(p.line, p.message) for p in problems] == [
        (1, "a journey file must be a mapping with journey, trigger and steps")]


def test_problems_print_as_path_line_message_and_hint():
    problem = Problem(PATH, 7, "unknown channel 'telegram'", "use email, sms, whatsapp")
    assert str(problem) == ("journeys/x.yaml:7: unknown channel 'telegram' "
                            "(hint: use email, sms, whatsapp)")
    assert str(Problem(PATH, 1, "missing 'steps'")) == "journeys/x.yaml:1: missing 'steps'"


def test_the_shipped_journeys_compile_without_problems():
    from pathlib import Path

    from aftersale.core.yaml_lines import load_located

    root = Path(__file__).resolve().parents[2] / "journeys"
    files = sorted(p for p in root.glob("*.yaml") if p.name != "segments.yaml")
    assert files
    for path in files:
        doc, problems = load_located(path)
        assert problems == []
        journey, problems = compile_journey(doc)
        assert problems == [], [str(p) for p in problems]
        assert journey is not None and journey.name


# -- shipment journeys: trigger lists, an entry `when`, per-moment re-entry, stall thresholds --

DELIVERY = """\
    journey: delivery-care
    trigger: [shipment.updated, shipment.stalled, shipment.late]
    when: shipment.status != "delivered" and not shipment.is_international
    reentry: once_per_shipment_moment
    stalled_after: {domestic: 2, international: 4}
    steps:
      - send: apology
        when: shipment.moment == "stalled" or shipment.days_late >= 1
      - wait_for: shipment.updated
        timeout: 2d
      - send: pickup_reminder
        when: shipment.status == "ready_for_pickup"
    """


def test_a_trigger_list_starts_the_journey_on_each_event_the_first_being_its_trigger():
    journey = compiled(DELIVERY)
    assert journey.trigger == "shipment.updated"
    assert journey.also_triggered_by == ("shipment.stalled", "shipment.late")
    assert journey.triggers == ("shipment.updated", "shipment.stalled", "shipment.late")
    assert journey.reentry == Reentry.ONCE_PER_SHIPMENT_MOMENT
    assert journey.stalled_after == StalledAfter(domestic=2, international=4)
    assert journey.stalled_after.days(international=True) == 4
    assert isinstance(journey.program[1], WaitFor) and journey.program[1].event == "shipment.updated"


def test_a_single_trigger_has_no_others_and_no_entry_condition_or_stall_threshold():
    journey = compiled(POST_PURCHASE)
    assert journey.triggers == ("order.placed",)
    assert journey.entry_when is None and journey.stalled_after is None


def test_the_entry_when_is_a_condition_on_the_shipment_order_customer_and_segment():
    when = compiled(DELIVERY).entry_when
    assert when is not None
    assert when.evaluate({"shipment": {"status": "attempted_delivery", "is_international": False}})
    assert not when.evaluate({"shipment": {"status": "delivered", "is_international": False}})
    journey = compiled("""\
        journey: j
        trigger: order.placed
        when: segment == "vip" and order.total >= 100 and not order.had_delivery_problem
        steps: [{send: a}]
        """)
    assert journey.entry_when.evaluate({"segment": "vip", "order": {"total": 120}})
    assert not journey.entry_when.evaluate({"segment": "repeat", "order": {"total": 120}})


def test_the_new_fields_change_the_version():
    base = "journey: j\ntrigger: shipment.stalled\nsteps: [{send: a}]\n"
    versions = {compiled(base).version,
                compiled(base + "when: shipment.carrier == 'UPS'\n").version,
                compiled(base + "stalled_after: {domestic: 2}\n").version,
                compiled(base + "reentry: once_per_shipment_moment\n").version,
                compiled(base.replace("shipment.stalled", "[shipment.stalled, shipment.late]"))
                .version}
    assert len(versions) == 5


def test_a_stored_shipment_journey_rebuilds_with_its_triggers_and_thresholds():
    journey = compiled(DELIVERY)
    rebuilt = journey_from_source(journey.source)
    assert (rebuilt.triggers, rebuilt.entry_when.source, rebuilt.stalled_after, rebuilt.version) \
        == (journey.triggers, journey.entry_when.source, journey.stalled_after, journey.version)


def test_unknown_and_repeated_events_in_a_trigger_list_are_reported_on_their_lines():
    problems = problems_of("""\
        journey: j
        trigger:
          - shipment.updated
          - shipment.stuck
          - shipment.updated
        steps: [{send: a}]
        """)
    assert sorted((p.line, p.message) for p in problems) == [
        (4, "unknown event 'shipment.stuck'"),
        (5, "event 'shipment.updated' is listed twice"),
    ]
    assert "shipment.late" in problems[0].hint or "shipment.late" in problems[1].hint


def test_an_empty_trigger_list_is_a_problem_with_an_example():
    problems = problems_of("journey: j\ntrigger: []\nsteps: [{send: a}]\n")
    assert [(p.line, p.message) for p in problems] == [(2, "trigger needs at least one event")]
    assert "trigger: order.placed" in problems[0].hint


def test_reentry_once_per_shipment_moment_needs_only_shipment_triggers():
    problems = problems_of("""\
        journey: j
        trigger: [shipment.updated, order.delivered]
        reentry: once_per_shipment_moment
        steps: [{send: a}]
        """)
    assert [(p.line, p.message) for p in problems] == [
        (3, "reentry once_per_shipment_moment needs every trigger to be a shipment event, "
            "but order.delivered is not")]
    assert "once_per_order" in problems[0].hint
    assert compiled("journey: j\ntrigger: shipment.late\nreentry: once_per_shipment_moment\n"
                    "steps: [{send: a}]\n").reentry == Reentry.ONCE_PER_SHIPMENT_MOMENT


def test_reading_the_shipment_in_a_journey_no_shipment_event_starts_is_a_problem_on_its_line():
    problems = problems_of("""\
        journey: j
        trigger: order.placed
        when: shipment.status == "delayed"
        steps:
          - send: a
            when: shipment.days_late > 2
        """)
    assert [p.line for p in problems] == [3, 6]
    for problem in problems:
        assert "unknown root 'shipment'" in problem.message
        assert "triggered by shipment.late, shipment.stalled, shipment.updated" in problem.hint


def test_an_entry_when_cannot_read_a_survey_answer_nor_an_unknown_shipment_field():
    assert lines_and_messages("""\
        journey: j
        trigger: shipment.updated
        when: response.nps <= 6 or shipment.colour == "red"
        steps: [{send: a}]
        """)[0][0] == 3
    problems = problems_of("journey: j\ntrigger: shipment.updated\nwhen: shipment.colour == 1\n"
                           "steps: [{send: a}]\n")
    assert "unknown field shipment.colour" in problems[0].message
    assert "days_since_update" in problems[0].message
    problems = problems_of("journey: j\ntrigger: shipment.updated\nwhen: response.nps <= 6\n"
                           "steps: [{send: a}]\n")
    assert "unknown root 'response'" in problems[0].message


@pytest.mark.parametrize(
    ("value", "line", "message"),
    [
        ("{domestic: 0}", 3, "stalled_after domestic must be a whole number of business days, "
                             "1 or more, not '0'"),
        ("{international: 2.5}", 3, "stalled_after international must be a whole number of "
                                    "business days, 1 or more, not '2.5'"),
        ("{domestic: yes}", 3, "stalled_after domestic must be a whole number of business days, "
                               "1 or more, not 'True'"),
        ("{abroad: 4}", 3, "unknown field 'abroad' in stalled_after"),
        ("3", 3, "stalled_after must be a mapping with domestic and/or international"),
        ("{}", 3, "stalled_after must be a mapping with domestic and/or international"),
    ],
)
def test_a_bad_stalled_after_is_reported_on_its_line(value, line, message):
    problems = problems_of(f"journey: j\ntrigger: shipment.stalled\nstalled_after: {value}\n"
                           "steps: [{send: a}]\n")
    assert [(p.line, p.message) for p in problems] == [(line, message)]
    assert problems[0].hint


def test_stalled_after_needs_a_shipment_stalled_trigger():
    problems = problems_of("journey: j\ntrigger: shipment.late\nstalled_after: {domestic: 2}\n"
                           "steps: [{send: a}]\n")
    assert [(p.line, p.message) for p in problems] == [
        (3, "stalled_after needs the journey to be triggered by shipment.stalled")]
    assert "add shipment.stalled to trigger" in problems[0].hint


def test_one_stall_threshold_may_be_left_to_the_settings():
    journey = compiled("journey: j\ntrigger: shipment.stalled\nstalled_after:\n  international: 6\n"
                       "steps: [{send: a}]\n")
    assert journey.stalled_after == StalledAfter(domestic=None, international=6)
    assert journey.stalled_after.days(international=False) is None


@pytest.mark.parametrize("event", ["shipment.updated", "shipment.stalled", "shipment.late"])
def test_wait_for_accepts_every_shipment_moment(event):
    journey = compiled(f"journey: j\ntrigger: shipment.updated\nsteps:\n"
                       f"  - wait_for: {event}\n    timeout: 3d\n")
    assert journey.program[0] == WaitFor("0", event, timedelta(days=3))
