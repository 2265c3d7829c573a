"""Business days in the destination's calendar, and when a parcel is stalled or late."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aftersale.core.delivery_clock import (
    StallDefaults,
    business_days_between,
    calendar_for,
    late_due,
    silent_days,
    stalled_due,
    stalled_thresholds,
)
from aftersale.core.journeys.model import StalledAfter
from aftersale.core.shipments import is_international

WARSAW, ISTANBUL = ZoneInfo("Europe/Warsaw"), ZoneInfo("Europe/Istanbul")
PL, TR = calendar_for("PL"), calendar_for("tr")


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def test_each_country_has_its_own_zone_weekend_and_holidays() -> None:
    assert (PL.zone, TR.zone) == (WARSAW, ISTANBUL)
    assert PL.weekend == TR.weekend == frozenset({5, 6})
    assert not PL.is_business_day(date(2026, 4, 6))  # Easter Monday in Poland
    assert TR.is_business_day(date(2026, 4, 6))
    assert not TR.is_business_day(date(2026, 4, 23))  # National Sovereignty Day in Türkiye
    assert PL.is_business_day(date(2026, 4, 23))
    saudi = calendar_for("SA")  # the weekend is Friday and Saturday
    assert saudi.weekend == frozenset({4, 5})
    assert not saudi.is_business_day(date(2026, 4, 10)) and saudi.is_business_day(
        date(2026, 4, 12))


def test_an_unknown_country_counts_saturday_and_sunday_and_no_holidays() -> None:
    nowhere = calendar_for("ZZ")
    assert nowhere.zone == ZoneInfo("UTC") and nowhere.holidays is None
    assert nowhere.is_business_day(date(2026, 1, 1)) and not nowhere.is_business_day(
        date(2026, 1, 3))
    assert calendar_for(None).zone == ZoneInfo("UTC")


def test_the_recipients_zone_is_used_when_it_is_one_of_the_countrys() -> None:
    assert calendar_for("US", "America/Chicago").zone == ZoneInfo("America/Chicago")
    assert calendar_for("PL", "America/Chicago").zone == WARSAW  # one zone: the country's
    assert calendar_for("US").zone == ZoneInfo("UTC")  # several and no hint: UTC
    assert calendar_for("US", "Not/AZone").zone == ZoneInfo("UTC")


def test_a_friday_update_is_three_business_days_old_on_wednesday_at_the_same_hour() -> None:
    friday = local(WARSAW, 2026, 3, 13, 15)
    assert silent_days(friday, local(WARSAW, 2026, 3, 18, 14, 59), PL) == 2
    assert silent_days(friday, local(WARSAW, 2026, 3, 18, 15), PL) == 3
    assert business_days_between(friday, local(WARSAW, 2026, 3, 16, 3), PL) == pytest.approx(
        9 / 24 + 3 / 24)  # the weekend does not count


def test_an_update_on_a_saturday_starts_counting_on_monday() -> None:
    saturday = local(WARSAW, 2026, 3, 14, 10)
    assert business_days_between(saturday, local(WARSAW, 2026, 3, 16, 0), PL) == 0
    assert silent_days(saturday, local(WARSAW, 2026, 3, 18, 23, 59), PL) == 2
    assert silent_days(saturday, local(WARSAW, 2026, 3, 19, 0), PL) == 3


def test_a_public_holiday_is_not_counted_in_its_country_only() -> None:
    """Friday 3 April 2026 at 15:00 local: Easter Monday (6 April) is a holiday in Poland, not
    in Türkiye, so the Turkish parcel is stalled a day earlier."""
    pl_friday, tr_friday = local(WARSAW, 2026, 4, 3, 15), local(ISTANBUL, 2026, 4, 3, 15)
    assert silent_days(tr_friday, local(ISTANBUL, 2026, 4, 8, 15), TR) == 3
    assert silent_days(pl_friday, local(WARSAW, 2026, 4, 8, 15), PL) == 2
    assert silent_days(pl_friday, local(WARSAW, 2026, 4, 9, 15), PL) == 3


def test_a_day_that_changes_the_clocks_still_counts_as_one() -> None:
    # Poland moves to summer time on 29 March 2026 (a Sunday): Friday noon to Wednesday noon
    friday = local(WARSAW, 2026, 3, 27, 12)
    assert business_days_between(friday, local(WARSAW, 2026, 4, 1, 12), PL) == pytest.approx(3)


def test_counting_stops_at_the_most_it_is_asked_for() -> None:
    long_ago = local(WARSAW, 2020, 1, 1, 0)
    assert business_days_between(long_ago, local(WARSAW, 2026, 1, 1), PL, at_most=5) == 5
    assert business_days_between(local(WARSAW, 2026, 1, 2), long_ago, PL) == 0


def test_domestic_or_international() -> None:
    assert not is_international("TR", None)  # no shop country: everything is domestic
    assert not is_international(None, "TR")
    assert not is_international("tr", "TR")
    assert is_international("PL", "TR")


def test_each_journeys_threshold_is_its_own_and_the_rest_is_the_setting() -> None:
    default = StallDefaults(domestic=3, international=5)
    assert default.days(international=True) == 5
    assert stalled_thresholds(default, []) == ({3}, {5})
    domestic, international = stalled_thresholds(
        default, [None, {"domestic": 2}, StalledAfter(4, 8), {"international": 7}])
    assert (domestic, international) == ({2, 3, 4}, {5, 7, 8})


def test_thresholds_are_raised_once_each_in_order() -> None:
    assert stalled_due({2, 3, 5}, None, 1) == []
    assert stalled_due({2, 3, 5}, None, 3) == [2, 3]
    assert stalled_due({2, 3, 5}, 3, 4) == []
    assert stalled_due({2, 3, 5}, 3, 9) == [5]


def test_late_once_the_estimated_day_is_over_in_the_destination() -> None:
    estimate = local(ISTANBUL, 2026, 4, 6, 18)
    assert late_due(estimate, estimate, None, local(ISTANBUL, 2026, 4, 6, 23, 59), TR) is None
    late = late_due(estimate, estimate, None, local(ISTANBUL, 2026, 4, 7, 0, 1), TR)
    assert late is not None and (late.day, late.days_late) == (date(2026, 4, 6), 1)
    # the same moment is still 6 April in Warsaw (an hour behind): not late there yet
    assert late_due(estimate, estimate, None, local(ISTANBUL, 2026, 4, 7, 0, 30), PL) is None
    assert late_due(estimate, estimate, estimate, local(ISTANBUL, 2026, 4, 9), TR) is None


def test_late_for_the_first_estimate_then_again_for_a_revised_one() -> None:
    first, revised = local(WARSAW, 2026, 4, 7, 12), local(WARSAW, 2026, 4, 10, 12)
    on_8th = late_due(first, revised, None, local(WARSAW, 2026, 4, 8, 9), PL)
    assert on_8th is not None and on_8th.estimate == first
    assert late_due(first, revised, first, local(WARSAW, 2026, 4, 9, 9), PL) is None
    on_11th = late_due(first, revised, first, local(WARSAW, 2026, 4, 11, 9), PL)
    assert on_11th is not None and (on_11th.estimate, on_11th.days_late) == (revised, 1)
    assert late_due(first, revised, revised, local(WARSAW, 2026, 4, 20), PL) is None
    # a revision back to an earlier date raises nothing again
    assert late_due(first, first, revised, local(WARSAW, 2026, 4, 20), PL) is None


def test_an_estimate_already_past_at_creation_is_late_once() -> None:
    past = local(WARSAW, 2026, 3, 1, 12)
    now = local(WARSAW, 2026, 3, 10, 12)
    late = late_due(past, past, None, now, PL)
    assert late is not None and late.days_late == 9
    assert late_due(past, past, late.estimate, now + timedelta(days=3), PL) is None
