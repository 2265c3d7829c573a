"""When a marketing message may go out: quiet hours in the customer's time zone and frequency
caps across journeys. Pure: the dispatcher asks, and defers the message to the answer.

A deferral never drops a message: it moves its due time to the first allowed minute.
Transactional messages (a tracking link) are exempt from both rules.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aftersale.core.durations import parse_duration

_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class QuietHours:
    """Local hours with no marketing, e.g. 21:00-09:00 (the window may cross midnight)."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def _quiet(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, now: datetime, timezone: str | None) -> datetime | None:
        """None if ``now`` is allowed; else the first allowed minute (aware UTC)."""
        zone = _zone(timezone)
        local = now.astimezone(zone)
        if not self._quiet(local.time()):
            return None
        end_day = local.date()
        if self.start > self.end and local.time() >= self.start:
            end_day += timedelta(days=1)  # quiet since this evening: allowed tomorrow morning
        allowed = datetime.combine(end_day, self.end, tzinfo=zone)
        return allowed.astimezone(now.tzinfo)


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``messages`` per customer and channel in any window of ``per``."""

    messages: int
    per: timedelta

    def __str__(self) -> str:
        hours = self.per.total_seconds() / 3600
        return f"{self.messages}/{hours:g}h"

    def next_allowed(self, sent: list[datetime], now: datetime) -> datetime | None:
        """None if another message fits now; else when the oldest one in the window expires.
        ``sent`` must be sorted."""
        recent = sent[bisect_right(sent, now - self.per):]
        recent = [t for t in recent if t <= now]
        if len(recent) < self.messages:
            return None
        return recent[len(recent) - self.messages] + self.per


def parse_quiet_hours(text: str) -> QuietHours:
    match = _QUIET.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not a quiet-hours window; write e.g. 21:00-09:00, or off")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        return QuietHours(time(h1, m1), time(h2, m2))
    except ValueError:
        raise ValueError(f"'{text}' has an impossible time; hours 0-23, minutes 0-59") from None


def parse_frequency_cap(text: str) -> FrequencyCap:
    match = _CAP.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not a frequency cap; write e.g. 1/24h or 3/7d, or off")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"'{text}' allows no message at all; use off to remove the cap instead")
    return FrequencyCap(count, parse_duration(match.group(2)))


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
