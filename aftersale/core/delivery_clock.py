"""When a parcel that should have moved has not: business days in the destination country, and
the two moments aftersale derives itself, ``shipment.stalled`` and ``shipment.late``. Pure:
the caller passes the time and the shipment's dates.

* **Stalled**: no carrier update for N business days, counted in the destination country's
  calendar (its weekend and public holidays, from the ``holidays`` library, in its time zone).
  N is a setting, one for domestic and one for international parcels; a journey triggered by
  ``shipment.stalled`` may set its own. Business time is counted continuously: an update on
  Friday at 15:00 in Poland is 3 business days old on Wednesday at 15:00; one on Saturday
  starts counting on Monday at 00:00.
* **Late**: the estimated delivery *date* is over in the destination's time zone without a
  delivery: first the first estimate, then each later estimate that passes. Each date raises
  late at most once (an estimate already in the past when the shipment is created included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from babel.core import get_global

#: The weekend where a country's calendar is unknown to the holidays library.
DEFAULT_WEEKEND = frozenset({5, 6})  # Saturday, Sunday
MAX_DAYS_WALKED = 3660  # a shipment silent for ten years is silent enough


@dataclass(frozen=True)
class Calendar:
    """A destination's working calendar: its time zone, weekend days (Monday = 0) and public
    holidays (``holidays`` object, or none)."""

    country: str | None
    zone: ZoneInfo
    weekend: frozenset[int]
    holidays: Any  # holidays.HolidayBase | None: expands to more years as it is asked

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and (
            self.holidays is None or day not in self.holidays)

    def local_date(self, when: datetime) -> date:
        return when.astimezone(self.zone).date()

    def day_start(self, day: date) -> datetime:
        """The UTC moment the local day starts (DST days last 23 or 25 hours)."""
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)


def calendar_for(country: str | None, timezone: str | None = None) -> Calendar:
    """The calendar of ``country`` (ISO 3166 alpha-2). Its time zone: ``timezone`` (the
    recipient's) when it is one of the country's, else the country's only zone, else
    ``timezone``, else UTC. An unknown country counts Saturday and Sunday as the weekend and
    no holidays."""
    country = country.upper() if country else None
    return Calendar(country, local_zone(country, timezone), *_country_days(country))


@lru_cache(maxsize=256)
def _country_days(country: str | None) -> tuple[frozenset[int], Any]:
    if country is None:
        return DEFAULT_WEEKEND, None
    try:
        days = holidays.country_holidays(country)
    except NotImplementedError:  # a country the library does not know
        return DEFAULT_WEEKEND, None
    return frozenset(days.weekend), days


@lru_cache(maxsize=1024)
def local_zone(country: str | None, timezone: str | None) -> ZoneInfo:
    """The zone a parcel's days are counted in: the customer's when it is one of the
    country's, else the country's only one, else the customer's, else UTC."""
    zones: list[str] = list(get_global("territory_zones").get(country, ())) if country else []
    name = (timezone if timezone in zones
            else zones[0] if len(zones) == 1
            else timezone or "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def business_days_between(since: datetime, now: datetime, calendar: Calendar,
                          at_most: float | None = None) -> float:
    """Business days from ``since`` to ``now``: each business day counts as 1 in proportion
    to how much of it lies between them, other days as 0. With ``at_most``, counting stops
    once it is reached (a parcel lost for months is not walked day by day)."""
    if now <= since:
        return 0.0
    total = 0.0
    day = calendar.local_date(since)
    for _ in range(MAX_DAYS_WALKED):
        start, end = calendar.day_start(day), calendar.day_start(day + timedelta(days=1))
        if start >= now:
            break
        if calendar.is_business_day(day):
            overlap = min(end, now) - max(start, since)
            if overlap > timedelta(0):
                total += overlap / (end - start)
            if at_most is not None and total >= at_most:
                return total
        day += timedelta(days=1)
    return total


def silent_days(since: datetime, now: datetime, calendar: Calendar,
                at_most: float | None = None) -> int:
    """Whole business days without an update (what ``shipment.days_silent`` says)."""
    # A hair of float slack: 24 whole hours of a day count as a whole day.
    return int(business_days_between(since, now, calendar, at_most) + 1e-9)


@dataclass(frozen=True)
class StallDefaults:
    """The settings' business days of silence after which a parcel is stalled, both sides
    given (a journey's own ``stalled_after`` may leave one out: it takes these)."""

    domestic: int
    international: int

    def days(self, international: bool) -> int:
        return self.international if international else self.domestic


def stalled_thresholds(default: StallDefaults,
                       overrides: Iterable[Any]) -> tuple[frozenset[int], frozenset[int]]:
    """Every threshold some journey waits for, domestic and international: the settings' and
    each journey's ``stalled_after`` (a mapping or an object with ``domestic`` and
    ``international``; a side it leaves out takes the setting). A stall is derived once per
    distinct threshold, so each journey sees it at its own."""
    domestic, international = {default.domestic}, {default.international}
    for override in overrides:
        if override is None:
            continue
        domestic.add(_side(override, "domestic") or default.domestic)
        international.add(_side(override, "international") or default.international)
    return frozenset(domestic), frozenset(international)


def _side(override: Any, name: str) -> int | None:
    value = override.get(name) if isinstance(override, Mapping) else getattr(override, name, None)
    return int(value) if value is not None else None


def stalled_due(thresholds: Iterable[int], raised: int | None, silent: int) -> list[int]:
    """The thresholds (ascending) to raise now: reached by ``silent`` business days, above the
    largest one already raised for this shipment (``raised``)."""
    return sorted(n for n in set(thresholds) if (raised or 0) < n <= silent)


@dataclass(frozen=True)
class Late:
    """A ``shipment.late`` to raise: about ``estimate`` (local date ``day``), ``days_late``
    calendar days after it."""

    estimate: datetime
    day: date
    days_late: int


def late_due(first: datetime | None, latest: datetime | None, late_for: datetime | None,
             now: datetime, calendar: Calendar) -> Late | None:
    """Whether an estimated date has passed that no ``shipment.late`` was raised for.

    The date to judge is the latest estimate once its day is over, else the first one (a
    parcel promised for Monday and re-estimated for Thursday is late on Tuesday, and again on
    Friday). ``late_for`` is the estimate the last late was about: the same date, or an
    earlier one, raises nothing."""
    today = calendar.local_date(now)
    for estimate in (latest, first):
        if estimate is None or calendar.local_date(estimate) >= today:
            continue
        day = calendar.local_date(estimate)
        if late_for is not None and (day <= calendar.local_date(late_for)):
            return None
        return Late(estimate, day, (today - day).days)
    return None
