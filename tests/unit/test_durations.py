"""Durations as marketers write them: parse_duration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aftersale.core.durations import parse_duration


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
