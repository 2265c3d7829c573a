"""When to try again after a "not now": exponential backoff with jitter, no sooner than the
other side asked with ``Retry-After`` (RFC 9110 section 10.2.3).

Pure (the standard library only): the sender, the alert deliverer and the channels share it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

#: The longest wait a server can ask of us, in seconds. A day covers every real rate limit; a
#: larger (or infinite) value is a broken header, and would overflow a ``timedelta``.
RETRY_AFTER_CAP = 24 * 60 * 60.0
#: Doublings stop here (base x 4096): the delay stays finite however many attempts are made.
MAX_DOUBLINGS = 12


class Uniform(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


@dataclass(frozen=True)
class Backoff:
    """``base``, then twice that after each further attempt, times a random 1 to 1.5 so that
    what failed together does not come back together; never sooner than ``retry_after``, and
    never later than ``cap`` (when there is one)."""

    base: timedelta
    cap: timedelta | None = None

    def delay(self, attempts: int, retry_after: float | None = None,
              rng: Uniform | None = None) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (the first counts as 1)."""
        jitter = (rng or random).uniform(1.0, 1.5)
        delay = self.base * (1 << min(max(attempts, 1) - 1, MAX_DOUBLINGS)) * jitter
        delay = max(delay, timedelta(seconds=retry_after or 0))
        return delay if self.cap is None else min(delay, self.cap)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (epoch seconds, default the current
    time): delay-seconds or an HTTP date, at least 0 and at most :data:`RETRY_AFTER_CAP`.
    None when there is no header or it says neither."""
    if not value:
        return None
    value = value.strip()
    try:
        return capped_wait(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with the sender's own zone unknown (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return capped_wait(when.timestamp() - (time.time() if now is None else now))


def capped_wait(seconds: float) -> float | None:
    """A wait the other side asked for, within 0 and :data:`RETRY_AFTER_CAP`; None if it is
    not a number ("nan")."""
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)
