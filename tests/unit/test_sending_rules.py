"""Quiet hours and frequency caps: when a marketing message may go out."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.channel_choice import Contact, choose_channel
from aftersale.core.sending_rules import (
    FrequencyCap,
    QuietHours,
    parse_frequency_cap,
    parse_quiet_hours,
)

NIGHT = QuietHours(time(21), time(9))


@pytest.mark.parametrize(("utc", "zone", "expected"), [
    # 12:00 in Istanbul: allowed
    (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "Europe/Istanbul", None),
    # 22:30 in Istanbul: next 09:00 local is 06:00 UTC the next day
    (datetime(2026, 3, 2, 19, 30, tzinfo=UTC), "Europe/Istanbul",
     datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
    # 02:00 in Istanbul: 09:00 the same local day
    (datetime(2026, 3, 2, 23, 0, tzinfo=UTC), "Europe/Istanbul",
     datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
    # 08:59 in New York is still quiet; the first allowed minute is 09:00
    (datetime(2026, 7, 1, 12, 59, tzinfo=UTC), "America/New_York",
     datetime(2026, 7, 1, 13, 0, tzinfo=UTC)),
    # across the spring DST change in Warsaw: 21:30 CET, allowed at 09:00 CEST (07:00 UTC)
    (datetime(2026, 3, 28, 20, 30, tzinfo=UTC), "Europe/Warsaw",
     datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
    # and the autumn one: 22:00 CEST, allowed at 09:00 CET (08:00 UTC)
    (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), "Europe/Warsaw",
     datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    # unknown or missing zone: UTC
    (datetime(2026, 3, 2, 22, 0, tzinfo=UTC), None, datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
    (datetime(2026, 3, 2, 22, 0, tzinfo=UTC), "Mars/Olympus", datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
])
def test_quiet_hours_defer_to_the_first_allowed_local_minute(
        utc: datetime, zone: str | None, expected: datetime | None) -> None:
    assert NIGHT.next_allowed(utc, zone) == expected


def test_a_daytime_quiet_window_works_too() -> None:
    lunch = QuietHours(time(12), time(13))
    assert lunch.next_allowed(datetime(2026, 3, 2, 12, 30, tzinfo=UTC), "UTC") == \
        datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert lunch.next_allowed(datetime(2026, 3, 2, 13, 0, tzinfo=UTC), "UTC") is None


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from(["Europe/Istanbul", "Europe/Warsaw", "America/Los_Angeles", "UTC"]))
def test_the_deferred_time_is_never_earlier_and_is_itself_allowed(now: datetime, zone: str) -> None:
    allowed = NIGHT.next_allowed(now, zone)
    if allowed is not None:
        assert allowed > now
        assert NIGHT.next_allowed(allowed, zone) is None


def test_a_cap_lets_the_next_message_out_when_the_oldest_leaves_the_window() -> None:
    cap = FrequencyCap(2, timedelta(hours=24))
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert cap.next_allowed([], now) is None
    assert cap.next_allowed([now - timedelta(hours=3)], now) is None
    sent = [now - timedelta(hours=30), now - timedelta(hours=5), now - timedelta(hours=1)]
    assert cap.next_allowed(sent, now) == now + timedelta(hours=19)


@pytest.mark.parametrize(("text", "message"), [
    ("21-09", "not a quiet-hours window"), ("25:00-09:00", "impossible time"),
])
def test_bad_quiet_hours_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quiet_hours(text)


@pytest.mark.parametrize(("text", "message"), [
    ("once a day", "not a frequency cap"), ("0/24h", "allows no message"), ("1/day", "duration"),
])
def test_bad_caps_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_frequency_cap(text)


def test_parsed_rules_read_back_as_written() -> None:
    assert str(parse_quiet_hours("21:00-09:00")) == "21:00-09:00"
    assert parse_frequency_cap("3/7d") == FrequencyCap(3, timedelta(days=7))


def _choose(contact: Contact, transactional: bool = False, approved: bool = False) -> object:
    return choose_channel(["whatsapp", "sms", "email"], contact, transactional,
                          {"email", "sms", "whatsapp"}, lambda _: True, approved)


CONSENTED = {"email": True, "sms": True, "whatsapp": True}


def test_a_suppressed_channel_is_skipped_even_for_a_tracking_link() -> None:
    contact = Contact("a@example.com", "+905321234567", CONSENTED,
                      suppressed={"whatsapp": "stop", "sms": "stop"}, whatsapp_window_open=True)
    choice = _choose(contact, transactional=True)
    assert choice.channel == "email"  # type: ignore[attr-defined]
    assert choice.skipped == [("whatsapp", "suppressed (stop)"),  # type: ignore[attr-defined]
                              ("sms", "suppressed (stop)")]


def test_whatsapp_outside_the_window_needs_an_approved_template() -> None:
    closed = Contact("a@example.com", "+905321234567", CONSENTED, whatsapp_window_open=False)
    assert _choose(closed).channel == "sms"  # type: ignore[attr-defined]
    assert _choose(closed, approved=True).channel == "whatsapp"  # type: ignore[attr-defined]
