"""JSON Lines intake: every line validated, every bad line reported with its number and reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.intake.jsonl import LineError, ParsedFile, parse_file, parse_lines


def line(event_id: str, kind: str = "order.placed", **extra) -> str:
    data = {"id": event_id, "type": kind, "occurred_at": "2026-03-01T10:00:00+03:00",
            "customer": {"id": "c-1", "email": "ayse@example.com"},
            "order": {"id": "o-1", "total": "129.90", "currency": "TRY"}}
    data.update(extra)
    return json.dumps(data) + "\n"


def test_a_file_of_good_lines_gives_every_event_in_order():
    parsed = parse_file([line("e-1"), line("e-2", "order.shipped"), line("e-3", "order.delivered")])
    assert isinstance(parsed, ParsedFile)
    assert [e.id for e in parsed.events] == ["e-1", "e-2", "e-3"]
    assert [e.type for e in parsed.events] == ["order.placed", "order.shipped", "order.delivered"]
    assert parsed.errors == []
    assert parsed.duplicates_in_file == 0


def test_every_bad_line_is_reported_with_its_number_and_reason_and_good_lines_still_parse():
    parsed = parse_file([
        line("e-1"),
        "{not json\n",
        line("e-2", "order.exploded"),
        "\n",
        line("e-3", occurred_at="2026-03-01T10:00:00"),
        "[1, 2]\n",
        line("e-4"),
        '{"id": "e-5", "type": "order.placed"',
    ])
    assert [e.id for e in parsed.events] == ["e-1", "e-4"]
    assert [err.line for err in parsed.errors] == [2, 3, 5, 6, 8]
    reasons = [err.reason for err in parsed.errors]
    assert reasons[0] == "not valid JSON (Expecting property name enclosed in double quotes "\
                         "at column 2)"
    assert reasons[1].startswith("type: unknown event type 'order.exploded'; known types: ")
    assert reasons[2] == ("occurred_at: occurred_at needs a UTC offset, "
                          "e.g. 2026-03-01T10:00:00+03:00")
    assert reasons[3] == "an event must be a JSON object"
    assert reasons[4].startswith("not valid JSON (")


def test_a_line_error_prints_as_line_number_and_reason():
    assert str(LineError(7, "not valid JSON")) == "line 7: not valid JSON"


@pytest.mark.parametrize("blank", ["", "\n", "   \n", "\t\r\n"])
def test_blank_lines_are_ignored_but_still_counted_for_line_numbers(blank):
    parsed = parse_file([blank, line("e-1"), blank, "oops\n"])
    assert [e.id for e in parsed.events] == ["e-1"]
    assert [(err.line, err.reason.startswith("not valid JSON")) for err in parsed.errors] == [
        (4, True)]


def test_a_repeated_id_within_a_file_is_kept_once_and_counted():
    parsed = parse_file([line("e-1"), line("e-2"), line("e-1"), line("e-1"), line("e-3")])
    assert [e.id for e in parsed.events] == ["e-1", "e-2", "e-3"]
    assert parsed.duplicates_in_file == 2
    assert parsed.errors == []


def test_the_first_copy_of_a_repeated_id_is_the_one_kept():
    first = line("e-1", customer={"id": "c-first"})
    second = line("e-1", customer={"id": "c-second"})
    parsed = parse_file([first, second])
    assert [e.customer_id for e in parsed.events] == ["c-first"]


def test_a_bad_line_with_a_repeated_id_is_an_error_not_a_duplicate():
    parsed = parse_file([line("e-1"), line("e-1", type="nope")])
    assert parsed.duplicates_in_file == 0
    assert [err.line for err in parsed.errors] == [2]


def test_parse_lines_yields_the_line_number_with_each_result():
    results = list(parse_lines(["\n", line("e-1"), "x\n"]))
    assert [n for n, _ in results] == [2, 3]
    assert results[0][1].id == "e-1"
    assert isinstance(results[1][1], LineError)


def test_a_line_with_an_ill_typed_event_type_is_reported_not_a_crash():
    parsed = parse_file([line("e-1"), line("e-2", type=["order.placed"]), line("e-3")])
    assert [e.id for e in parsed.events] == ["e-1", "e-3"]
    assert [err.line for err in parsed.errors] == [2]


def test_an_empty_file_has_nothing():
    parsed = parse_file([])
    assert (parsed.events, parsed.errors, parsed.duplicates_in_file) == ([], [], 0)


@given(st.lists(st.one_of(st.sampled_from(["e-1", "e-2", "e-3", "e-4"]).map(line),
                          st.sampled_from(["\n", "{\n", "null\n", '{"id": "x"}\n'])),
                max_size=20))
def test_every_non_blank_line_is_an_event_an_error_or_a_duplicate(lines):
    parsed = parse_file(lines)
    non_blank = sum(1 for text in lines if text.strip())
    assert len(parsed.events) + len(parsed.errors) + parsed.duplicates_in_file == non_blank
    ids = [e.id for e in parsed.events]
    assert len(ids) == len(set(ids))
    assert all(1 <= err.line <= len(lines) for err in parsed.errors)
    assert [err.line for err in parsed.errors] == sorted(err.line for err in parsed.errors)
