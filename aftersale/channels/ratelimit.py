"""A per-provider send rate shared by every sender, in every thread and process.

Each batch reserves a block of send slots in one short transaction on a row per provider
(``rate_limits.next_at``, wall-clock seconds); the senders then wait for their slot. Reserving
a block rather than a slot per message keeps the database out of the hot path, and the row
makes the limit hold across workers on the same database. Prefect's own ``rate_limit`` is not
used: on a SQLite Prefect server it delivers a fraction of the asked rate (see PREFECT.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from aftersale.db.models import RateLimitState
from aftersale.db.upsert import insert


class RateLimiter:
    def __init__(self, factory: sessionmaker[Session], provider: str, per_second: float,
                 now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.provider, self.per_second = provider, per_second
        self._factory, self._now, self._sleep = factory, now, sleep
        self._lock = threading.Lock()

    def reserve(self, count: int, deadline: float | None = None) -> list[float]:
        """Wall-clock times (epoch seconds) at which up to ``count`` sends may start; with a
        ``deadline``, only the slots that start by then. A sender must not call a provider
        once its claim may have expired (the message would be flagged ``unknown`` and could
        be sent again by review), so it takes no slot it could not use in time, and leaves
        the ones after it to whoever comes next."""
        if count <= 0:
            return []
        gap = 1.0 / self.per_second
        with self._lock, self._factory() as session, session.begin():
            # A no-op UPDATE first: it takes the row's lock on PostgreSQL and the write lock on
            # SQLite, so reading the next slot and moving it on are one step for every sender.
            lock = (update(RateLimitState).where(RateLimitState.provider == self.provider)
                    .values(next_at=RateLimitState.next_at).returning(RateLimitState.next_at))
            next_at = session.execute(lock).scalar()
            if next_at is None:
                session.execute(insert(session, RateLimitState)
                                .values(provider=self.provider, next_at=0.0)
                                .on_conflict_do_nothing(index_elements=["provider"]))
                next_at = session.execute(lock).scalar_one()
            start = max(next_at, self._now())  # idle for a while: no burst credit, start now
            if deadline is not None:
                count = min(count, max(0, math.floor((deadline - start) / gap) + 1))
            if count:
                session.execute(update(RateLimitState)
                                .where(RateLimitState.provider == self.provider)
                                .values(next_at=start + count * gap))
        return [start + i * gap for i in range(count)]

    def wait_until(self, moment: float, stop: threading.Event | None = None) -> None:
        """Until ``moment``, or until ``stop`` is set (a stopping sender makes no more calls)."""
        delay = moment - self._now()
        if delay > 0:
            if stop is None:
                self._sleep(delay)
            else:
                stop.wait(delay)
