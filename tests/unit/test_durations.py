"""Durations as marketers write them: parse_duration and its inverse format_duration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 1d 12h ", timedelta(days=1, hours=12)),
        ("90m", timedelta(minutes=90)),
        ("0d1h", timedelta(hours=1)),
    ],
)
def test_a_duration_in_marketer_notation_parses_to_the_right_timedelta(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not a duration"),
        ("7", "not a duration"),
        ("d", "not a duration"),
        ("7 days", "not a duration"),
        ("1y", "not a duration"),
        ("7D", "not a duration"),
        ("-1d", "not a duration"),
        ("1.5d", "not a duration"),
        ("1d-2h", "not a duration"),
        ("0d", "zero"),
        ("0h0m", "zero"),
    ],
)
def test_text_that_is_not_a_positive_duration_is_rejected_with_the_accepted_forms(text, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        parse_duration(text)
    if fragment == "not a duration":
        assert "1d" in str(info.value)


def test_a_bare_number_is_rejected_with_a_hint_to_add_a_unit():
    with pytest.raises(ValueError, match=r"needs a unit: write 7d or 7h"):
        parse_duration(7)


@pytest.mark.parametrize("value", [True, None, 1.5, ["1d"], {"d": 1}])
def test_a_value_that_is_neither_text_nor_a_number_is_rejected(value):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


@pytest.mark.parametrize("text", ["1000000000d", "99999999999999999999s", "200000000w"])
def test_a_duration_too_large_for_a_timedelta_is_a_value_error_not_an_overflow(text):
    # Callers (the journey loader) turn ValueError into a problem with a line number; any other
    # exception escapes validation and crashes `aftersale validate`.
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=6), "6h"),
        (timedelta(days=1), "1d"),
        (timedelta(days=14), "2w"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(days=9, minutes=1), "1w2d1m"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_writes_the_shortest_marketer_notation(delta, text):
    assert format_duration(delta) == text


@given(st.integers(min_value=1, max_value=10**9))
def test_formatting_then_parsing_gives_back_the_same_whole_second_duration(seconds):
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


_PART = st.tuples(st.integers(min_value=0, max_value=500), st.sampled_from("smhdw"))


@given(st.lists(_PART, min_size=1, max_size=5).filter(lambda ps: any(n for n, _ in ps)))
def test_parsing_then_formatting_is_a_canonical_form_that_round_trips(parts):
    text = "".join(f"{n}{u}" for n, u in parts)
    canonical = format_duration(parse_duration(text))
    assert parse_duration(canonical) == parse_duration(text)
    assert format_duration(parse_duration(canonical)) == canonical
